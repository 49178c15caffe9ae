//! Durable state of the delivery server behind one [`Store`] trait.
//!
//! Every backend runs the same conformance suite ([`store_conformance_tests!`]); SQLite is
//! the embedded default. The store holds only ciphertext, public MLS state and metadata:
//! it never sees a plaintext message or a private key.
//!
//! Schemas change only through the numbered SQL files in `migrations/` ([`schema`], also
//! used for device profiles); an applied migration is never edited, only followed by a new
//! one.

use async_trait::async_trait;
use vellum_wire::{DeviceState, EntryKind, OrgPolicy};

pub mod backend;
pub mod conformance;
pub mod schema;
mod sqlite;

pub use schema::SchemaError;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("enrollment code is unknown, expired or already used")]
    InvalidCode,
    #[error("group is at epoch {current}")]
    StaleEpoch { current: u64 },
    /// The group is still at `epoch`, but its tracked state changed since the append's was
    /// computed from it (another member's leave through another node, issue 13).
    #[error("group state changed at epoch {epoch}")]
    StaleState { epoch: u64 },
    #[error("device is not a member of this group")]
    NotMember,
    #[error("{0}")]
    Forbidden(String),
    /// The request contradicts what is stored (a lower serial, a reserved name); the
    /// message says what.
    #[error("{0}")]
    Refused(String),
    /// Text the backend cannot hold (PostgreSQL's text cannot contain NUL): no stored row
    /// can match it, and nothing was written.
    #[error("{0}")]
    InvalidText(String),
    #[error("storage backend: {0}")]
    Backend(String),
    /// The database cannot be opened: damaged, written by a newer version, or a migration
    /// failed.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The disk is full: writes fail until space is freed, reads keep working.
    #[error("the disk is full")]
    DiskFull,
    /// A new blob would take its uploader's user past the org's quota (issue 10).
    #[error(
        "{used} bytes of files stored, {quota} allowed: this file of {size} bytes does not fit"
    )]
    QuotaExceeded { used: u64, size: u64, quota: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What `records init`, the archiver's enrollment and the custodians' binding stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsConfig {
    /// The text of `records.pub`.
    pub records_public: String,
    /// The org's archiver device (not revoked), once it enrolled.
    pub archiver_device: Option<String>,
    /// The custodians' newest binding (a `SignedBinding` as JSON) and its serial.
    pub binding: Option<(u64, String)>,
}

/// A binding to store: the caller verified it against `expected_public`.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub serial: u64,
    pub binding: String,
    /// The device it names: the archiver on file, or (none on file) the one to adopt.
    pub archiver_device: String,
    /// The `records.pub` text the binding was verified against; refused if it changed since.
    pub expected_public: String,
    /// A `records.pub` replacing the stored one (version 1 to 2 of the same key).
    pub new_public: Option<String>,
    /// The binding names another log key than the one before: the checkpoint chain of the
    /// old key is closed, and the new key's starts empty (in the same transaction).
    pub new_log: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: String,
    pub user: String,
    pub signature_key: Vec<u8>,
}

/// A device as the server keeps it, revoked ones included (issue 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device: Device,
    pub state: DeviceState,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// Unix seconds of its latest sync.
    pub last_seen: Option<i64>,
}

/// What an appended directory entry changes on the devices, in the entry's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange {
    /// The device becomes approved (its identity, or an approval by a device of its user).
    /// With `sealed_identity`, the approval completes its exchange: refused (`Refused`)
    /// unless the device revealed its offer and no identity was sealed to it yet.
    Approve {
        device_id: String,
        sealed_identity: Option<Vec<u8>>,
    },
    /// The device is revoked: it can no longer authenticate or be claimed, and its key
    /// packages and approval exchange are dropped.
    Revoke { device_id: String },
    /// Every device of the user, pending ones too, is revoked (a reset took effect).
    RevokeUser { user: String },
}

/// One leaf to append to the directory log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDirectoryEntry {
    /// Its index: the log's size before it (else `Conflict`, and nothing is appended).
    pub index: u64,
    /// The entry's user ('' for the end of the upgrade listing).
    pub user: String,
    /// The leaf's exact bytes.
    pub body: Vec<u8>,
    pub change: Option<DeviceChange>,
}

/// The approval exchange of one device, as relayed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approval {
    pub device_id: String,
    /// Hex SHA-256 commitment to the new device's offer.
    pub commitment: Option<String>,
    /// JSON of the approver's hello.
    pub hello: Option<String>,
    /// JSON of the new device's revealed offer.
    pub offer: Option<String>,
    pub sealed_identity: Option<Vec<u8>>,
    pub updated_at: i64,
}

/// The timers of a chat's current policy, as far as the server enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatTimers {
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub group_id: String,
    pub epoch: u64,
    pub state: Vec<u8>,
    pub timers: ChatTimers,
    /// A record chat (its GroupContext names the archiver), or transitory.
    pub record: bool,
    pub creator_device: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct GroupState {
    pub group_id: String,
    pub epoch: u64,
    pub timers: ChatTimers,
    /// A record chat. False too for a group stored before chat classes were kept, until
    /// [`Store::set_group_class`] is given its class.
    pub record: bool,
    /// A transitory chat with a current member under a legal hold: its timers are suspended.
    pub held: bool,
    /// The tracker's serialised public state.
    pub state: Vec<u8>,
    /// Bumped with every write of `state` (commits and leave proposals): what an append
    /// computed from this state names, and what a node's cached copy is keyed on.
    pub state_version: u64,
}

/// An accepted commit, appended atomically with its membership changes and Welcomes.
#[derive(Debug, Clone)]
pub struct CommitAppend {
    pub group_id: String,
    pub expected_epoch: u64,
    /// The [`GroupState::state_version`] `state` was computed from (`StaleState` otherwise).
    pub expected_state_version: u64,
    pub new_epoch: u64,
    pub state: Vec<u8>,
    pub timers: ChatTimers,
    /// The group's class after the commit.
    pub record: bool,
    pub sender_device: String,
    pub payload: Vec<u8>,
    pub received_at: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub welcome: Option<Vec<u8>>,
}

/// Leaving (issue 10): a member's proposals removing its own user's devices, appended at
/// the current epoch with the tracker's state that caches them. Those devices get nothing
/// after the last proposal.
#[derive(Debug, Clone)]
pub struct ProposalAppend {
    pub group_id: String,
    pub epoch: u64,
    /// The [`GroupState::state_version`] `state` was computed from (`StaleState` otherwise).
    pub expected_state_version: u64,
    pub state: Vec<u8>,
    pub sender_device: String,
    pub payloads: Vec<Vec<u8>>,
    pub received_at: i64,
    pub leaving: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MessageAppend {
    pub group_id: String,
    pub epoch: u64,
    pub sender_device: String,
    /// Idempotency key chosen by the sender: a retry returns the first append.
    pub client_msg_id: String,
    pub payload: Vec<u8>,
    pub received_at: i64,
    /// Unix ms at which the ciphertext is purged, delivered or not.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub epoch: u64,
    /// True when this exact entry was already in the log (a retried request).
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub epoch: u64,
    pub kind: EntryKind,
    pub sender_device: String,
    pub received_at: i64,
    pub payload: Vec<u8>,
    /// The group's running log hash after this entry (`vellum_wire::log_hash_next`).
    pub log_hash: [u8; 32],
}

/// Where a group's log ends: its last seq and the running hash after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub seq: u64,
    pub log_hash: [u8; 32],
}

/// What remembering a request nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// First time: the request may proceed.
    Fresh,
    /// This device sent this nonce with this timestamp before: a replay.
    Replayed,
    /// The timestamp is older than the window: its nonce may already be forgotten.
    Expired,
    /// The timestamp is from before this store started (Unix seconds): nonces seen then
    /// are forgotten, so a replay could not be told apart. The client signs again.
    BeforeStart { started_at: i64 },
}

/// One checkpoint of the archiver's chain, as the server accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The signed note, with the bound witnesses' cosignature lines.
    pub note: String,
    /// The chain's checkpoint before this one (0: none).
    pub previous_size: u64,
    /// Hex hashes: the consistency proof from `previous_size`.
    pub proof: Vec<String>,
    /// Server ms: first accepted, last published again, first carrying the witness quorum.
    pub received_at: i64,
    pub renewed_at: i64,
    pub witnessed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWelcome {
    pub id: u64,
    pub group_id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub welcomes: Vec<StoredWelcome>,
    pub groups: Vec<(String, Vec<StoredEntry>)>,
    pub more: bool,
    /// For each group in `groups`, where its log ends.
    pub heads: Vec<(String, LogHead)>,
}

/// The device list shows when a device last synced to this precision: a sync within it
/// writes nothing.
pub const LAST_SEEN_PRECISION_SECS: i64 = 60;

/// What one sync hands a device (see [`Store::sync_view`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncView {
    pub pending: Pending,
    /// Archive receipts queued for the device: (queue id, receipt).
    pub receipts: Vec<(u64, String)>,
    /// The transitory chats the device is a current member of that have a current member
    /// under a legal hold (its own user included).
    pub held_chats: Vec<String>,
}

/// Whether a sync at `now` should be noted ([`Store::touch_device`]) for a device whose
/// record says it was last seen at `last_seen`.
pub fn last_seen_is_stale(last_seen: Option<i64>, now: i64) -> bool {
    last_seen.is_none_or(|seen| seen <= now - LAST_SEEN_PRECISION_SECS)
}

/// A new attachment blob (issue 10): `size` plaintext bytes sealed in chunks of
/// `chunk_size` (the last may be shorter; an empty file is one empty chunk), each chunk's
/// ciphertext [`BLOB_TAG_BYTES`] longer than its plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlob {
    pub blob_id: String,
    pub group_id: String,
    pub uploader_device: String,
    pub size: u64,
    pub chunk_size: u32,
    /// Uploaded to a record chat: kept past expiry and deletion until the archiver fetched it.
    pub record: bool,
    /// Unix ms at which it is purged (its message's expiry).
    pub expires_at: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Bytes the uploader's user may hold in blobs, this one included
    /// ([`Error::QuotaExceeded`] past it; nothing is stored then).
    pub user_quota: u64,
}

/// The authentication tag each chunk's ciphertext adds (AES-GCM).
pub const BLOB_TAG_BYTES: u64 = 16;

impl NewBlob {
    /// How many chunks a file of `size` bytes takes.
    pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
        size.div_ceil(u64::from(chunk_size.max(1))).max(1)
    }
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub blob_id: String,
    pub group_id: String,
    pub uploader_device: String,
    pub uploader_user: String,
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: u64,
    /// Chunks stored: always `0..present`, since they are taken in order.
    pub present: u64,
    pub finished: bool,
    pub record: bool,
    pub expires_at: Option<i64>,
    pub archived: bool,
    pub deleted: bool,
}

impl BlobInfo {
    /// The exact ciphertext length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> Option<u64> {
        if index >= self.chunks {
            return None;
        }
        let start = index * u64::from(self.chunk_size);
        Some(
            self.size
                .saturating_sub(start)
                .min(u64::from(self.chunk_size))
                + BLOB_TAG_BYTES,
        )
    }
}

/// Jobs that exactly one node of a deployment may run at a time (issue 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Purging expired ciphertext and blobs, and applying due identity resets.
    Purge,
    /// Submitting the key directory's checkpoints to its witnesses.
    DirectoryWitness,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Purge => "purge",
            Job::DirectoryWitness => "directory-witness",
        }
    }
}

/// A node's hold on a [`Job`]: while it is held, no other node holds the same job's. It is
/// given up when dropped, and lost when the node's connection to the shared database is
/// (the node then stops the job until it gets the lease again).
pub trait JobLease: Send + Sync {
    /// False once the lease was lost: the job must stop and ask again.
    fn is_held(&self) -> bool;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The lease on `job` if no other node holds it, `None` if one does. A backend that
    /// only one process can open (SQLite: `DATA/lock`) always grants it.
    async fn try_job_lease(&self, job: Job) -> Result<Option<Box<dyn JobLease>>>;

    async fn create_user(&self, name: &str, now: i64) -> Result<()>;
    async fn user_exists(&self, name: &str) -> Result<bool>;
    /// Stores the hash of a single-use enrollment code for `user`.
    async fn add_enrollment_code(
        &self,
        user: &str,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<()>;
    /// The user a live (unused, unexpired) code belongs to.
    async fn enrollment_code_user(&self, code_hash: [u8; 32], now: i64) -> Result<String>;
    /// Consumes the code and registers the device, atomically: a code enrolls one device.
    /// A device of the `records` user becomes the org's archiver, and only while there is
    /// none: no second archiver device is ever registered.
    /// Returns its state: `approved` for the archiver, and for a user's first device
    /// (no other device that is not revoked, and no identity in the key directory: the
    /// caller says whether the user `has_identity`); `pending` otherwise.
    async fn enroll_device(
        &self,
        code_hash: [u8; 32],
        now: i64,
        device: Device,
        has_identity: bool,
    ) -> Result<DeviceState>;
    /// A registered device that is not revoked.
    async fn device(&self, device_id: &str) -> Result<Option<Device>>;
    /// A registered device, revoked or not, and when it was revoked (Unix seconds): a
    /// request a revoked device signed is told so.
    async fn device_status(&self, device_id: &str) -> Result<Option<(Device, Option<i64>)>>;
    /// The user's devices that are not revoked.
    async fn user_devices(&self, user: &str) -> Result<Vec<Device>>;
    /// A registered device, revoked or not, with its state.
    async fn device_record(&self, device_id: &str) -> Result<Option<DeviceRecord>>;
    /// Revokes a device at `at` (Unix seconds): it can no longer authenticate or be claimed,
    /// and its key packages and approval exchange are dropped. Revoking it again keeps the
    /// first time; a device never enrolled is `NotFound`. (A device the key directory lists
    /// is revoked by a directory entry instead, see [`DeviceChange::Revoke`].)
    async fn revoke_device(&self, device_id: &str, at: i64) -> Result<()>;
    /// Every device the user ever enrolled, revoked ones too, oldest first.
    async fn user_device_records(&self, user: &str) -> Result<Vec<DeviceRecord>>;
    /// Devices in the `legacy` state of every user but `records`, oldest first: the
    /// directory's upgrade listing.
    async fn legacy_devices(&self) -> Result<Vec<DeviceRecord>>;
    /// Notes the device's sync at `now` (Unix seconds) unless the last one noted is less than
    /// [`LAST_SEEN_PRECISION_SECS`] old. Callers skip it when [`last_seen_is_stale`] says
    /// no for the device's record, so most syncs write nothing.
    async fn touch_device(&self, device_id: &str, now: i64) -> Result<()>;
    /// Remembers the nonce of a signed request made at `timestamp` (Unix seconds, signed
    /// with it, so a replay carries the same one). Timestamps before `forget_before` are
    /// outside the window and refused, and their nonces may be dropped. Must not write to
    /// disk: every signed request calls it. Timestamps from before the store started are
    /// refused too, so a restart cannot reopen the window.
    async fn remember_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        timestamp: i64,
        forget_before: i64,
    ) -> Result<NonceCheck>;
    /// Random, created with the database and kept in it: a restored backup has the same id,
    /// a new database another one.
    async fn instance_id(&self) -> Result<String>;

    async fn add_key_packages(
        &self,
        device_id: &str,
        single_use: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> Result<()>;
    /// (single-use key packages left, whether a last-resort one is on file)
    async fn key_package_count(&self, device_id: &str) -> Result<(u64, bool)>;
    /// Takes one single-use key package, or else returns (and keeps) the last-resort one.
    async fn claim_key_package(&self, device_id: &str) -> Result<Option<Vec<u8>>>;

    async fn create_group(&self, group: NewGroup) -> Result<()>;
    async fn group(&self, group_id: &str) -> Result<Option<GroupState>>;
    /// Groups whose class is not known (stored before classes were kept), with their
    /// tracked public state to read it from.
    async fn unclassified_groups(&self) -> Result<Vec<(String, Vec<u8>)>>;
    async fn set_group_class(&self, group_id: &str, record: bool) -> Result<()>;
    /// Transitory chats that still have a member: how many, and the first `limit` ids.
    async fn transitory_chats(&self, limit: usize) -> Result<(u64, Vec<String>)>;
    /// Current member devices.
    async fn group_members(&self, group_id: &str) -> Result<Vec<String>>;
    async fn is_member(&self, group_id: &str, device_id: &str) -> Result<bool>;
    /// Issue 10: each current member device's acknowledged position, by device id.
    async fn group_cursors(&self, group_id: &str) -> Result<Vec<vellum_wire::DeviceCursor>>;
    /// Appends a commit if the group is still at `expected_epoch` (first commit wins) and its
    /// state at `expected_state_version` (`StaleState` otherwise).
    async fn append_commit(&self, commit: CommitAppend) -> Result<Appended>;
    /// The seq of the commit `sender` made at `epoch`, if it is exactly `payload`: lets a
    /// retried commit be acknowledged again instead of failing as stale.
    async fn find_commit(
        &self,
        group_id: &str,
        epoch: u64,
        sender_device: &str,
        payload: &[u8],
    ) -> Result<Option<u64>>;
    /// Appends a member's leave proposals at the current epoch (`StaleEpoch` otherwise) and
    /// state version (`StaleState` otherwise), and
    /// stops delivering to the leaving devices after them. Returns the last one's position.
    async fn append_proposals(&self, proposals: ProposalAppend) -> Result<Appended>;
    /// Appends an application message from a current member at the current epoch.
    async fn append_message(&self, message: MessageAppend) -> Result<Appended>;
    /// Everything a sync hands the device, read in one transaction: what it has not
    /// acknowledged yet (oldest first, at most `limit` entries and `limit` receipts) and
    /// which of its chats are held.
    async fn sync_view(&self, device_id: &str, limit: usize) -> Result<SyncView>;
    /// What the device has not acknowledged yet, oldest first, at most `limit` entries.
    async fn pending(&self, device_id: &str, limit: usize) -> Result<Pending> {
        Ok(self.sync_view(device_id, limit).await?.pending)
    }
    /// One transaction: cursors move forward only (`NotMember`, or `NotFound` past a
    /// group's end, and nothing changes), the device's Welcomes and receipts leave their
    /// queues.
    async fn ack(
        &self,
        device_id: &str,
        welcome_ids: &[u64],
        cursors: &[(String, u64)],
        receipt_ids: &[u64],
    ) -> Result<()>;

    async fn org_policy(&self) -> Result<OrgPolicy>;
    async fn set_org_policy(&self, policy: OrgPolicy) -> Result<()>;
    /// The records public key file registered by `records init`.
    async fn records_public(&self) -> Result<Option<String>>;
    /// Replaces the users under a legal hold (the archiver's list).
    async fn set_held_users(&self, users: Vec<String>) -> Result<()>;
    async fn held_users(&self) -> Result<Vec<String>>;
    async fn records_config(&self) -> Result<Option<RecordsConfig>>;
    /// `records init`, atomically: registers `records.pub`, creates the user `records` and
    /// stores the archiver's enrollment code. Refused once records are configured, and when
    /// a user named `records` exists that records init did not create.
    async fn init_records(
        &self,
        records_public: &str,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<()>;
    /// Replacing the archiver, atomically: revokes its device (it can no longer sign in or
    /// be claimed) and stores the enrollment code of the next one. Returns the revoked
    /// device, if there was one.
    async fn replace_archiver(
        &self,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<Option<String>>;
    /// Stores the custodians' binding if its serial is higher than the one on file (the
    /// same binding again changes nothing), it names the archiver on file (or, none on
    /// file, makes that device the archiver), and `records.pub` is still `expected_public`.
    async fn set_records_binding(&self, binding: NewBinding) -> Result<()>;
    /// The archiver's checkpoints of size `from` or more, oldest first, at most `limit`.
    async fn records_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>>;
    /// The newest checkpoint of the chain.
    async fn records_checkpoint_head(&self) -> Result<Option<StoredCheckpoint>>;
    /// The newest checkpoint of the chain that carried the witness quorum.
    async fn records_checkpoint_witnessed(&self) -> Result<Option<StoredCheckpoint>>;
    /// Appends `checkpoint` to the chain if its newest is still of `previous_size` (0: the
    /// chain is empty); otherwise `Conflict`, and nothing changes.
    async fn append_records_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()>;
    /// The newest checkpoint, published again at `now`: its note replaced by `note` (the
    /// same tree, with more cosignatures) if given, `witnessed_at` set at `now` if `witnessed`
    /// and not set yet. `Conflict` if `size` is no longer the newest.
    async fn renew_records_checkpoint(
        &self,
        size: u64,
        note: Option<String>,
        witnessed: bool,
        now: i64,
    ) -> Result<()>;
    /// Notes that the archiver's verified receipts for these entries (group, seq) arrived.
    async fn mark_receipted(&self, entries: Vec<(String, u64)>, now: i64) -> Result<()>;
    /// Application messages of record chats (after the archiver joined them) with no
    /// receipt, received before `received_before`: how many, and the oldest's receipt time.
    async fn unreceipted(&self, received_before: i64) -> Result<(u64, Option<i64>)>;
    /// Queues archive receipts for devices (device id, receipt).
    async fn queue_receipts(&self, receipts: Vec<(String, String)>) -> Result<()>;
    /// Entries of record chats the archiver has not acknowledged, and the oldest one's
    /// receipt time (Unix ms): the archiver's lag.
    async fn archiver_backlog(&self) -> Result<(u64, Option<i64>)>;
    /// Removes application messages that expired at or before `now`, or were received before
    /// `received_before` (the undelivered-retention limit). Commits are kept, and so is any
    /// message of a record chat that the org's archiver has not acknowledged yet: an archiver
    /// outage never costs a record. Expiry waits while a legal hold covers a member of a
    /// transitory chat (it resumes when the hold is released). Returns how many.
    async fn purge_expired(&self, now: i64, received_before: i64) -> Result<u64>;
    /// Delete for everyone: drops the ciphertext at `seq` if a device of `requester`'s user
    /// sent it.
    async fn delete_message(&self, group_id: &str, seq: u64, requester_device: &str) -> Result<()>;

    /// Registers a blob being uploaded (issue 10); `Conflict` if the id is taken,
    /// [`Error::QuotaExceeded`] past the uploader's user's quota.
    async fn create_blob(&self, blob: NewBlob) -> Result<()>;
    async fn blob(&self, blob_id: &str) -> Result<Option<BlobInfo>>;
    /// Stores chunks `first`, `first + 1`, … of an unfinished blob in one transaction.
    /// Chunks come in order: `first` must be the number already stored (else `Refused`,
    /// and `Refused` past the blob's last chunk); a chunk already stored is `Conflict`.
    /// The caller checked the uploader and the chunks' lengths.
    async fn put_blob_chunks(&self, blob_id: &str, first: u64, chunks: Vec<Vec<u8>>) -> Result<()>;
    /// Marks a blob complete once every chunk is stored (else `Refused`); again is fine.
    async fn finish_blob(&self, blob_id: &str) -> Result<()>;
    async fn blob_chunk(&self, blob_id: &str, index: u64) -> Result<Option<Vec<u8>>>;
    /// Delete for everyone by a device of the uploader's user (else `Forbidden`). A record
    /// blob the archiver has not fetched is hidden (`deleted`) and dropped once it has.
    async fn delete_blob(&self, blob_id: &str, requester_device: &str) -> Result<()>;
    /// The archiver fetched and sealed the blob: from now on it goes at expiry or deletion.
    async fn mark_blob_archived(&self, blob_id: &str) -> Result<()>;
    /// Removes blobs expired at or before `now` (unless a legal hold suspends their
    /// transitory chat's timers), deleted ones, and uploads never finished that were created
    /// before `created_before`; never a finished record blob the archiver has not fetched.
    /// Returns how many.
    async fn purge_blobs(&self, now: i64, created_before: i64) -> Result<u64>;

    /// Appends leaves to the key directory, each with its change to the devices, and
    /// replaces the stored checkpoint by `checkpoint` (signed over the log they make), in one
    /// transaction. The first index must be the log's size (else `Conflict`); a change that
    /// cannot be made (see [`DeviceChange::Approve`]) appends nothing.
    async fn append_directory_entries(
        &self,
        entries: Vec<NewDirectoryEntry>,
        checkpoint: String,
        now: i64,
    ) -> Result<()>;
    /// Up to `limit` leaves of the directory from index `start`, in order.
    async fn directory_entries(&self, start: u64, limit: u64) -> Result<Vec<Vec<u8>>>;
    /// The directory's stored checkpoint note.
    async fn directory_checkpoint(&self) -> Result<Option<String>>;
    /// Replaces the stored checkpoint note by `note` (the same checkpoint with more
    /// cosignatures) if it is still `previous`; false, and nothing changes, if another node
    /// stored a newer checkpoint meanwhile.
    async fn set_directory_checkpoint(&self, previous: String, note: String) -> Result<bool>;
    /// The device's approval exchange, if one was started.
    async fn approval(&self, device_id: &str) -> Result<Option<Approval>>;
    /// Step 1: (re)starts the device's exchange with its commitment; an earlier hello,
    /// offer or sealed identity is dropped.
    async fn set_approval_commitment(
        &self,
        device_id: &str,
        commitment: &str,
        now: i64,
    ) -> Result<()>;
    /// Step 2: the approver's hello, only after a commitment and before the offer (it may
    /// replace an earlier hello until then); otherwise `Refused`.
    async fn set_approval_hello(&self, device_id: &str, hello: &str, now: i64) -> Result<()>;
    /// Step 3: the new device's offer, only after a hello and once; otherwise `Refused`.
    async fn set_approval_offer(&self, device_id: &str, offer: &str, now: i64) -> Result<()>;
    /// Ends the device's exchange. With `keep_sealed`, an exchange whose identity was
    /// sealed already is kept and `Refused` (the approver's cancel comes too late); a
    /// missing exchange is fine either way.
    async fn delete_approval(&self, device_id: &str, keep_sealed: bool) -> Result<()>;
}
