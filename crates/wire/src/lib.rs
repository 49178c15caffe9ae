//! The Vellum wire format: every type that crosses the network between a device, the
//! delivery server and an administrator, and the one canonical way requests are signed.
//!
//! Nothing else in the workspace defines what goes over the wire. Binary MLS messages are
//! carried as standard base64 inside JSON ([`B64`]).

use serde::{Deserialize, Serialize};

mod auth;
mod b64;
mod blobs;
pub mod fuzz_bodies;
mod log_hash;
pub mod nodes;
mod payload;
pub mod timer;

pub use auth::{request_signing_bytes, AuthHeaders, MAX_CLOCK_SKEW_SECS};
pub use b64::B64;
pub use blobs::{BlobCreated, BlobStatus, CreateBlob, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
pub use log_hash::{log_hash_next, log_hash_start};
pub use payload::{
    is_one_emoji, AppPayload, AttachmentRef, PayloadError, MAX_ATTACHMENTS, MAX_EMOJI_BYTES,
    MAX_FILE_NAME_BYTES, MAX_MENTIONS, MAX_REACTIONS_PER_MEMBER, MAX_TEXT_BYTES, MAX_UNKNOWN_BYTES,
};

/// Prefix of every versioned API route.
pub const API_V1: &str = "/v1";

/// The body of every error response: a stable machine-readable `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// Stable error codes; clients branch on these, never on messages.
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const MALFORMED_MLS: &str = "malformed_mls";
    pub const INVALID_MLS: &str = "invalid_mls";
    pub const STALE_EPOCH: &str = "stale_epoch";
    pub const NOT_MEMBER: &str = "not_member";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const REPLAYED: &str = "replayed_request";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const UNKNOWN_CHAT: &str = "unknown_chat";
    pub const CONFLICT: &str = "conflict";
    pub const INVALID_CODE: &str = "invalid_enrollment_code";
    pub const TOO_LARGE: &str = "payload_too_large";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const NO_KEY_PACKAGE: &str = "no_key_package";
    pub const POLICY_VIOLATION: &str = "policy_violation";
    pub const RECORDS_NOT_CONFIGURED: &str = "records_not_configured";
    /// The org keeps this chat as records but it is still transitory: a member commits its
    /// conversion (the record-chat extension and the org's archiver) before anything else.
    pub const RECORD_REQUIRED: &str = "record_required";
    /// A record chat whose archiver is no longer the org's (it was replaced): a member
    /// switches it to the archiver the custodians bound before anything more is said.
    pub const ARCHIVER_REPLACED: &str = "archiver_replaced";
    /// The device that signed the request was revoked (answered only to a request with its
    /// valid signature): it is no longer part of the org and should wipe itself.
    pub const DEVICE_REVOKED: &str = "device_revoked";
    pub const INTERNAL: &str = "internal";
    /// The request's timestamp is from before the server started: nonces seen before then
    /// are forgotten, so it cannot be checked for a replay. Sign it again with a timestamp
    /// at or after the second in the `x-vellum-server-start` response header.
    pub const BEFORE_SERVER_START: &str = "timestamp_before_server_start";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const TIMEOUT: &str = "timeout";
    pub const INSUFFICIENT_STORAGE: &str = "insufficient_storage";
    pub const UNAVAILABLE: &str = "unavailable";
    /// The archive is sealed: the records office must unseal it first.
    pub const SEALED: &str = "sealed";
    /// 503: the records search index is still catching up after an unseal (the message and
    /// the status say how far); retry shortly.
    pub const INDEXING: &str = "indexing";
    pub const BAD_SHARE: &str = "bad_share";
    /// The checkpoint push's `old_size` is not the size of the newest checkpoint the server
    /// holds (`GET /v1/records/checkpoints` says which); prove consistency from that one.
    pub const CHECKPOINT_CONFLICT: &str = "checkpoint_conflict";
    /// The pushed checkpoint is older than the newest one the server holds.
    pub const CHECKPOINT_ROLLBACK: &str = "checkpoint_rollback";
    /// The pushed checkpoint is not a consistent extension of the newest one the server holds.
    pub const CHECKPOINT_FORK: &str = "checkpoint_fork";
    /// No archiver is bound by the custodians yet.
    pub const RECORDS_NOT_BOUND: &str = "records_not_bound";
    /// 403: the device is waiting for approval by a device of its user.
    pub const DEVICE_PENDING: &str = "device_pending";
    /// 422: a directory change that breaks the directory's rules (bad signature, unknown
    /// device, out of order).
    pub const DIRECTORY_REFUSED: &str = "directory_refused";
    /// 409: an approval step out of order (no commitment yet, no hello yet, already done).
    pub const APPROVAL_OUT_OF_ORDER: &str = "approval_out_of_order";
    /// 403: the commit makes a change only the chat's admins may make (issue 10 roles).
    pub const NOT_CHAT_ADMIN: &str = "not_chat_admin";
    /// 413: the file is larger than the org's `max_file_bytes`.
    pub const FILE_TOO_LARGE: &str = "file_too_large";
    /// 413: the file would take the user past the org's `user_quota_bytes`.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// 403: the org's policy forbids files in this chat's class.
    pub const FILES_FORBIDDEN: &str = "files_forbidden";
    /// 409: a chunk other than the next one expected (`GET /v1/blobs/{id}` says which).
    pub const CHUNK_OUT_OF_ORDER: &str = "chunk_out_of_order";
    /// 409: this chunk is already stored.
    pub const CHUNK_EXISTS: &str = "chunk_exists";
    /// 400: the chunk's length is not the one its index and the blob's size imply.
    pub const CHUNK_SIZE: &str = "chunk_size";
    /// 409: the blob is not complete (finish it, or wait for its uploader to).
    pub const BLOB_INCOMPLETE: &str = "blob_incomplete";
    /// 409: the blob is complete: it takes no more chunks.
    pub const BLOB_COMPLETE: &str = "blob_complete";
}

/// `POST /v1/admin/users` and `POST /v1/admin/users/{name}/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateUserRequest {
    pub name: String,
}

/// A single-use enrollment code for one new device of `user`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentCode {
    pub user: String,
    pub code: String,
    /// Unix seconds after which the code no longer works.
    pub expires_at: i64,
}

/// `POST /v1/enroll`: a new device presents its code and its MLS signature public key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollRequest {
    pub user: String,
    pub code: String,
    pub signature_key: B64,
}

/// The org (the authentication service) answers with a signed device credential.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollResponse {
    pub device_id: String,
    /// The encoded, org-signed device certificate to put in the MLS BasicCredential.
    pub credential: B64,
    /// The org's Ed25519 public key, pinned by the client from now on.
    pub org_key: B64,
    /// `approved` for a user's first device (which then publishes the user's identity),
    /// `pending` when the user already has a device that must approve this one.
    #[serde(default = "approved")]
    pub state: DeviceState,
}

fn approved() -> DeviceState {
    DeviceState::Approved
}

/// `POST /v1/key-packages`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadKeyPackages {
    pub key_packages: Vec<B64>,
    /// Replaces the device's last-resort key package, handed out when the others run out.
    pub last_resort: Option<B64>,
}

/// `GET /v1/key-packages/count`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyPackageCount {
    pub single_use: u64,
    pub has_last_resort: bool,
}

/// `POST /v1/key-packages/claim`: one key package for every device of each user in
/// `users`, and one for each device in `devices`. The user `records` stands for the org's
/// archiver device alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimKeyPackages {
    pub users: Vec<String>,
    /// Devices by id (a record chat's creator claims the bound archiver this way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimedKeyPackage {
    pub user: String,
    pub device_id: String,
    pub key_package: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimedKeyPackages {
    pub key_packages: Vec<ClaimedKeyPackage>,
}

/// `POST /v1/groups`: the creator registers a new group by its epoch-0 GroupInfo.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateGroup {
    pub group_info: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupCreated {
    pub group_id: String,
    pub epoch: u64,
}

/// `POST /v1/groups/{id}/commits`: a PublicMessage commit, with the Welcome for added devices.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostCommit {
    pub commit: B64,
    pub welcome: Option<B64>,
}

/// `POST /v1/groups/{id}/leave`: PublicMessage proposals, each removing one device of the
/// requester's own user (all of them: the user leaves), at the group's current epoch.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaveChat {
    pub proposals: Vec<B64>,
}

/// `POST /v1/groups/{id}/messages`: a PrivateMessage. `client_msg_id` makes retries idempotent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostMessage {
    pub client_msg_id: String,
    pub message: B64,
    /// When the server must purge this ciphertext (Unix ms), delivered or not. The server
    /// shortens it to the chat's and the org's limits; it never lengthens it.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// The org's policy: bounds on disappearing-message timers and chat classes. `GET /v1/policy`
/// for devices; `PUT /v1/admin/policy` (fields left out are unchanged) for the admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgPolicy {
    /// Longest allowed expiration timer, seconds; `None`: no limit.
    pub max_expire_secs: Option<u64>,
    /// Longest allowed burn-on-read timer, seconds; `None`: no limit.
    pub max_burn_secs: Option<u64>,
    /// Whether a chat may have no expiration timer at all.
    pub allow_no_expiry: bool,
    /// Whether new chats are record chats unless their creator says otherwise.
    #[serde(default)]
    pub default_record: bool,
    /// Whether chats may be transitory (not kept as records) once records are configured.
    #[serde(default = "yes")]
    pub allow_transitory: bool,
    /// The org's archiver device, once `records init` has run and the archiver enrolled.
    /// Before that every chat is transitory. Filled in by the server, never set directly.
    /// Devices accept as the archiver only the device `records_binding` names.
    #[serde(default)]
    pub archiver_device: Option<String>,
    /// The text of `records.pub` registered by `records init` (devices pin it). Filled in
    /// by the server.
    #[serde(default)]
    pub records_public: Option<String>,
    /// The custodians' binding of the archiver (a `vellum_record::SignedBinding` as JSON):
    /// its device, identity key, log key, origin and witnesses, signed with the binding key
    /// of `records_public`. Absent until k custodians first unseal the archiver. Filled in by
    /// the server.
    #[serde(default)]
    pub records_binding: Option<String>,
    /// What a legal hold on a person does to that person's transitory chats.
    #[serde(default)]
    pub on_hold: HoldAction,
    /// After how long (seconds) a missing receipt or a checkpoint not renewed or not
    /// witnessed is an alarm, on devices and in `admin status`.
    #[serde(default = "default_receipt_alarm")]
    pub receipt_alarm_secs: u64,
    /// How long (seconds) an administrator's reset of a user's identity waits, during which
    /// any device of that user can veto it.
    #[serde(default = "default_reset_wait")]
    pub reset_wait_secs: u64,
    /// Whether chats may turn on read receipts ("read up to here" markers). When false no
    /// device sends them, whatever a chat's settings say.
    #[serde(default = "yes")]
    pub allow_read_receipts: bool,
    /// Largest attachment, plaintext bytes.
    #[serde(default = "default_max_file")]
    pub max_file_bytes: u64,
    /// Most bytes of attachments one user may keep on the server at once.
    #[serde(default = "default_user_quota")]
    pub user_quota_bytes: u64,
    /// Whether files may be sent in transitory chats.
    #[serde(default = "yes")]
    pub files_in_transitory: bool,
    /// Whether files may be sent in record chats.
    #[serde(default = "yes")]
    pub files_in_record: bool,
}

/// The default of [`OrgPolicy::reset_wait_secs`]: 72 hours.
pub const DEFAULT_RESET_WAIT_SECS: u64 = 72 * 3600;

fn default_reset_wait() -> u64 {
    DEFAULT_RESET_WAIT_SECS
}

/// The default of [`OrgPolicy::max_file_bytes`]: 1 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

fn default_max_file() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

/// The default of [`OrgPolicy::user_quota_bytes`]: 10 GiB.
pub const DEFAULT_USER_QUOTA_BYTES: u64 = 10 << 30;

fn default_user_quota() -> u64 {
    DEFAULT_USER_QUOTA_BYTES
}

/// The default of [`OrgPolicy::receipt_alarm_secs`]: 10 minutes.
pub const DEFAULT_RECEIPT_ALARM_SECS: u64 = 600;

fn default_receipt_alarm() -> u64 {
    DEFAULT_RECEIPT_ALARM_SECS
}

fn yes() -> bool {
    true
}

/// What a legal hold on a person (`records hold create --custodian USER`) does to the
/// transitory chats that person is a member of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldAction {
    /// The default: members' devices (and the server) stop expiring and burning the chat's
    /// messages while the hold lasts, and resume when it is released. The chat stays
    /// transitory: nothing is archived.
    #[default]
    SuspendTimers,
    /// The chat must also become a record chat (as with `allow_transitory` false) before
    /// anything else is said in it; its timers are suspended until then, and from then on
    /// the archiver keeps it, for good.
    Convert,
}

impl OrgPolicy {
    /// Whether every chat must be a record chat now: records are set up (the archiver has
    /// enrolled) and transitory chats are not allowed.
    pub fn requires_records(&self) -> bool {
        self.archiver_device.is_some() && !self.allow_transitory
    }
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            max_expire_secs: None,
            max_burn_secs: None,
            allow_no_expiry: true,
            default_record: false,
            allow_transitory: true,
            archiver_device: None,
            records_public: None,
            records_binding: None,
            on_hold: HoldAction::default(),
            receipt_alarm_secs: DEFAULT_RECEIPT_ALARM_SECS,
            reset_wait_secs: DEFAULT_RESET_WAIT_SECS,
            allow_read_receipts: true,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            user_quota_bytes: DEFAULT_USER_QUOTA_BYTES,
            files_in_transitory: true,
            files_in_record: true,
        }
    }
}

/// `PUT /v1/admin/policy`. A field that is absent is left as it is; `0` clears a maximum.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicyUpdate {
    pub max_expire_secs: Option<u64>,
    pub max_burn_secs: Option<u64>,
    pub allow_no_expiry: Option<bool>,
    #[serde(default)]
    pub default_record: Option<bool>,
    #[serde(default)]
    pub allow_transitory: Option<bool>,
    #[serde(default)]
    pub on_hold: Option<HoldAction>,
    /// Seconds, at least 1.
    #[serde(default)]
    pub receipt_alarm_secs: Option<u64>,
    /// Seconds, at least 1.
    #[serde(default)]
    pub reset_wait_secs: Option<u64>,
    #[serde(default)]
    pub allow_read_receipts: Option<bool>,
    /// Bytes, at least 1.
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
    /// Bytes, at least 1.
    #[serde(default)]
    pub user_quota_bytes: Option<u64>,
    #[serde(default)]
    pub files_in_transitory: Option<bool>,
    #[serde(default)]
    pub files_in_record: Option<bool>,
}

/// `POST /v1/admin/records`: registers the records public key (from `records init`) and
/// issues the enrollment code of the org's archiver device (user `records`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordsInit {
    /// The contents of `records.pub`.
    pub records_public: String,
}

/// `GET /v1/admin/status`: what an administrator should know at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdminStatus {
    pub records_configured: bool,
    pub archiver_device: Option<String>,
    /// The serial of the custodians' binding on file; `None`: the archiver is not bound yet
    /// (record chats cannot be created).
    #[serde(default)]
    pub archiver_binding_serial: Option<u64>,
    /// Record-chat entries the archiver has not acknowledged yet.
    pub archiver_backlog: u64,
    /// Age of the oldest of them, milliseconds.
    pub archiver_lag_ms: Option<i64>,
    /// Chats that are not compliant: transitory while the org requires records (each
    /// converts at its next commit). The first [`MAX_LISTED_CHATS`] group ids.
    #[serde(default)]
    pub noncompliant_chats: Vec<String>,
    /// How many chats are not compliant in all.
    #[serde(default)]
    pub noncompliant_chat_count: u64,
    /// The size of the newest checkpoint the archiver published to this server.
    #[serde(default)]
    pub checkpoint_size: Option<u64>,
    /// Milliseconds since the archiver last published or renewed it.
    #[serde(default)]
    pub checkpoint_age_ms: Option<i64>,
    /// How many of the bound witnesses cosigned it (the binding's quorum is in `warnings`).
    #[serde(default)]
    pub checkpoint_cosigners: Option<u64>,
    /// Record-chat messages without a receipt for longer than the policy's alarm time.
    #[serde(default)]
    pub unreceipted_messages: u64,
    pub warnings: Vec<String>,
}

/// The most group ids a status lists; the count says how many there are.
pub const MAX_LISTED_CHATS: usize = 100;

/// The user name of the org's archiver device.
pub const RECORDS_USER: &str = "records";

/// The server's acknowledgement: the entry is durably stored at `seq` in the group log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    pub seq: u64,
    pub epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Commit,
    Application,
    /// A member's PublicMessage proposal to remove its own user's devices (leaving, issue
    /// 10); the next commit by another member includes it by reference.
    Proposal,
}

/// One entry of a group's ordered log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    pub seq: u64,
    pub epoch: u64,
    pub kind: EntryKind,
    pub sender_device: String,
    /// Server receive time, Unix milliseconds.
    pub received_at: i64,
    pub payload: B64,
    /// The group's running log hash after this entry ([`log_hash_next`]), hex. Absent from
    /// servers older than 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupEntries {
    pub group_id: String,
    pub entries: Vec<LogEntry>,
    /// Where the server's log of this group stands; absent from servers older than 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<LogHead>,
}

/// The end of a group's log on the server: a device that has processed further, or holds
/// another hash for a position it has, is talking to a server that went back in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogHead {
    /// Random, created with the server's database: another id is another database.
    pub instance_id: String,
    /// The group's last seq (the entry itself may have been purged since).
    pub seq: u64,
    /// The running log hash after `seq`, hex.
    pub log_hash: String,
}

/// A Welcome waiting in this device's queue.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueuedWelcome {
    pub id: u64,
    pub group_id: String,
    pub welcome: B64,
}

/// Issue 10: how far one member device of a chat has acknowledged its log (delivery state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceCursor {
    pub user: String,
    pub device_id: String,
    /// The highest log position this device has acknowledged (0: nothing yet).
    pub acked_seq: u64,
}

/// `GET /v1/groups/{group_id}/cursors`: every current member device's cursor, for members.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupCursors {
    pub cursors: Vec<DeviceCursor>,
}

/// `GET /v1/sync`: everything pending for the calling device, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncResponse {
    pub welcomes: Vec<QueuedWelcome>,
    pub groups: Vec<GroupEntries>,
    /// Archive receipts for messages this device sent.
    #[serde(default)]
    pub receipts: Vec<QueuedReceipt>,
    /// This device's transitory chats with a member under a legal hold (all of them, each
    /// time): their disappearing timers are suspended until the hold is released. Who is
    /// under hold is not said.
    #[serde(default)]
    pub held_chats: Vec<String>,
    /// The key directory's size: a device holding fewer entries catches up.
    #[serde(default)]
    pub directory_size: u64,
    /// True when a limit cut the answer short; sync again after acking.
    pub more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupCursor {
    pub group_id: String,
    pub seq: u64,
}

/// `POST /v1/ack`: the device has durably processed these.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AckRequest {
    pub welcomes: Vec<u64>,
    pub cursors: Vec<GroupCursor>,
    #[serde(default)]
    pub receipts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueuedReceipt {
    pub id: u64,
    /// A [`Receipt`], as JSON.
    pub receipt: String,
}

/// Proof that the archive holds a message: its leaf, an inclusion proof, and the signed
/// checkpoint the proof is against. The sender's device verifies it with the org's log key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub chat_id: String,
    pub seq: u64,
    pub message_id: Option<String>,
    pub leaf_index: u64,
    /// The leaf's bytes, base64 (its record body is sealed: it reveals nothing).
    pub leaf: B64,
    /// Hex hashes, RFC 6962 inclusion proof.
    pub proof: Vec<String>,
    /// C2SP signed-note checkpoint.
    pub checkpoint: String,
}

/// `POST /v1/receipts`, by the org's archiver device only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostReceipts {
    pub receipts: Vec<ReceiptFor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReceiptFor {
    pub device_id: String,
    pub receipt: String,
}

/// `PUT /v1/records/binding`, by the org's archiver device: the custodians' binding it got
/// at an unseal. The server keeps it if it verifies against the stored `records.pub`, names
/// the calling device and its registered key, and has a higher serial than the one on file.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBinding {
    /// A `vellum_record::SignedBinding`, as JSON.
    pub binding: String,
    /// `records.pub` version 2 replacing a stored version 1 of the same key (the upgrade of
    /// an archive from before bindings); only with the first binding that needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_public: Option<String>,
}

/// `PUT /v1/records/held-users`, by the org's archiver device: every user a legal hold in
/// force names as its custodian (replaces the previous list).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldUsers {
    pub users: Vec<String>,
}

/// `GET /v1/records/transitory-chats`, for the org's archiver: the chats it is not in, and so
/// does not archive, as metadata only (the server knows no title or content).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransitoryChats {
    /// How many transitory chats have a member.
    pub total: u64,
    /// The oldest `chats.len()` of them.
    pub chats: Vec<TransitoryChat>,
}

/// One transitory chat, as the delivery server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransitoryChat {
    pub id: String,
    /// The users with a device in it, sorted.
    pub members: Vec<String>,
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
    /// A member is under a legal hold: its timers are suspended.
    pub held: bool,
}

/// `PUT /v1/records/checkpoint`, by the org's archiver: its newest checkpoint (a C2SP signed
/// note, with the cosignature lines of the witnesses that cosigned it) and the RFC 9162
/// consistency proof from the newest one the server holds (`old_size`; 0 and no proof for
/// the first). The same checkpoint again renews it and adds cosignatures.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPush {
    pub old_size: u64,
    /// Hex hashes.
    pub proof: Vec<String>,
    pub note: String,
}

/// One checkpoint of the chain the server accepted from the archiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainedCheckpoint {
    pub size: u64,
    /// The signed note, with the witnesses' cosignature lines the server has for it.
    pub note: String,
    /// The size of the chain's checkpoint before this one (0 for the first).
    pub previous_size: u64,
    /// Hex hashes: the consistency proof from `previous_size` to `size`.
    pub proof: Vec<String>,
}

/// `GET /v1/records/checkpoints`: the archiver's checkpoints as the server accepted them,
/// oldest first, each consistent with the one before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointChain {
    pub checkpoints: Vec<ChainedCheckpoint>,
    /// The size of the newest checkpoint the server holds.
    pub head_size: Option<u64>,
    /// When the archiver last published or renewed that newest one (server clock, Unix ms).
    pub renewed_at: Option<i64>,
    /// True when the limit cut the answer short.
    pub more: bool,
}

/// A WebSocket frame from the server: something new is waiting; call `/v1/sync`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wake {
    pub pending: bool,
}

// ---- Issue 9: the key directory and device approval. ----
//
// Directory payloads (`vellum_directory::Change`, `DeviceOffer`, `ApproverHello`) travel as
// JSON objects; vellum-directory defines and checks them (it sits above this crate).

/// `GET /v1/directory/config` (no authentication): what a device pins at enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryConfig {
    /// The directory log's checkpoint origin.
    pub origin: String,
    /// The log's note verifier key (C2SP signed-note vkey, Ed25519).
    pub log_key: String,
    /// Witnesses' cosignature/v1 verifier keys; `quorum` of them must cosign a checkpoint.
    pub witnesses: Vec<String>,
    pub quorum: usize,
    /// The shortest waiting period (seconds) an identity reset may have. Pinned too: an
    /// operator who lowers it later cannot rush a reset past devices enrolled before.
    #[serde(default)]
    pub min_reset_wait_secs: u64,
}

/// `GET /v1/directory/checkpoint`: the newest signed checkpoint with its cosignatures.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryCheckpoint {
    /// A C2SP signed note: the checkpoint, the log's signature and witnesses' cosignatures.
    pub note: String,
}

/// `GET /v1/directory/entries?start=N&limit=M` (at most 1000): leaves from `start`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryEntries {
    pub start: u64,
    /// Each leaf's exact bytes (a `vellum_directory::DirectoryEntry` as JSON text).
    pub entries: Vec<B64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
pub struct DirectoryRange {
    pub start: u64,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `POST /v1/directory/changes`: a change signed by the calling device's user's identity key
/// (`identity`, `revoked_by_user`, `reset_vetoed`). Answers the log index it was appended at.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostDirectoryChange {
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DirectoryAppended {
    pub index: u64,
}

/// A device's state as the server keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Chained to its user's identity in the directory.
    Approved,
    /// Enrolled, waiting for an approved device of its user: it receives nothing.
    Pending,
    /// Existed before the directory; listed at upgrade, to be confirmed or revoked.
    Legacy,
    Revoked,
}

/// One device, for `GET /v1/devices` (own user) and `GET /v1/admin/users/{name}/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceInfo {
    pub device_id: String,
    pub user: String,
    pub state: DeviceState,
    pub signature_key: B64,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// Unix seconds of its latest sync, if any.
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceInfo>,
}

/// The approval exchange of one pending device, as the server relays it
/// (`GET /v1/approvals/{device_id}` for an approved device of the same user,
/// `GET /v1/approvals/me` for the pending device itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalExchange {
    pub device_id: String,
    /// Step 1 (new device): hex SHA-256 commitment to its offer.
    pub commitment: Option<String>,
    /// Step 2 (approver): a `vellum_directory::ApproverHello`.
    #[schema(value_type = Option<Object>)]
    pub hello: Option<serde_json::Value>,
    /// Step 3 (new device): its revealed `vellum_directory::DeviceOffer`.
    #[schema(value_type = Option<Object>)]
    pub offer: Option<serde_json::Value>,
    /// After approval: the identity key sealed to the new device (80 bytes).
    pub sealed_identity: Option<B64>,
}

/// `PUT /v1/approvals/me/commitment` (pending device): starts or restarts its exchange;
/// clears any hello and offer of an earlier one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PutCommitment {
    pub commitment: String,
}

/// `PUT /v1/approvals/{device_id}/hello` (an approved device of the same user).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PutHello {
    #[schema(value_type = Object)]
    pub hello: serde_json::Value,
}

/// `PUT /v1/approvals/me/offer` (pending device, after a hello): reveals its offer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PutOffer {
    #[schema(value_type = Object)]
    pub offer: serde_json::Value,
}

/// `POST /v1/approvals/{device_id}/complete` (the approver, after the codes matched): the
/// identity-signed `approved` change and the identity key sealed to the new device.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompleteApproval {
    #[schema(value_type = Object)]
    pub change: serde_json::Value,
    pub sealed_identity: B64,
}

/// `POST /v1/admin/users/{name}/reset`: when the reset takes effect unless vetoed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetScheduled {
    pub user: String,
    pub request_id: String,
    /// Unix seconds.
    pub effective_at: i64,
}
