//! The Vellum device: enrollment, MLS group membership, sending, durable exactly-once
//! receiving, and the local decrypted history, over the delivery server's HTTP API.
//!
//! All MLS state and history live in the device's own SQLite file (`HOME/vellum.db`, 0600).
//! Every state change of an MLS group is persisted before its effect leaves the device.

mod api;
mod chats;
mod devices;
mod directory;
mod events;
mod files;
mod leave;
mod lock;
mod messages;
mod monitor;
mod names;
mod rewind;
mod rich;
mod roles;
mod servers;
mod store;
mod sync;
mod trust;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vellum_mls::mls_rs::ExtensionList;
use vellum_mls::{
    device_client, last_resort_extensions, DeviceCertificate, DeviceClient, DeviceKey,
    DeviceMlsConfig, OrgIdentityProvider,
};
use vellum_wire::*;

pub use api::{normalize_server_url, Api, Signer, Timeouts};
pub use chats::{device_fingerprint, ChatClass, MemberDevice, MemberDeviceState};
pub use devices::{ApprovalStep, DeviceEntry, DevicesView, Revocation, VetoedReset};
pub use directory::{KnownIdentity, SafetyNumber, DIRECTORY_ALARM};
pub use events::ChatEvent;
pub use files::{
    shred_file, Downloaded, FileCipher, Progress, SavedCopy, CHUNK_SIZE, SAVED_COPY_GRACE_MS,
};
use lock::ProfileLock;
pub use messages::{MessageTimers, OutgoingMessage};
pub use monitor::{RecordsLogView, RECORDS_LOG_CHANGED};
pub use names::MIN_PREFIX;
pub use reqwest::Method;
pub use rich::{fold_reactions, parse_mentions, ReactionCount};
pub use roles::Manage;
pub use store::{
    ChatRow, HistoryCursor, LocalStore, LogPosition, MessageExtra, MessageKind, MessageRow,
    ShredReason, Shredded, StoredReceipt,
};
use store::{MlsGroupStorage, MlsKeyPackageStorage};
pub use sync::{CANNOT_DISPLAY, SHRED_TICK};
pub use trust::{archive_label, RecordsTrust};

type Config = DeviceMlsConfig<MlsGroupStorage, MlsKeyPackageStorage>;
pub(crate) type Group = vellum_mls::mls_rs::group::Group<Config>;

/// Single-use key packages kept on the server; replenished below half.
const KEY_PACKAGE_TARGET: u64 = 20;
/// How often a state-changing operation is rebased after losing an epoch race.
pub(crate) const MAX_REBASES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the server: {0}")]
    Network(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no profile in {0}: run `vellum enroll` first")]
    NotEnrolled(PathBuf),
    #[error("{0} already holds an enrolled device")]
    AlreadyEnrolled(PathBuf),
    /// No chat has that id, id prefix or title; the message suggests close titles.
    #[error("{0}")]
    UnknownChat(String),
    /// More than one chat matches; the message lists each (id and title).
    #[error("{0}")]
    AmbiguousChat(String),
    #[error("you are no longer a member of this chat")]
    RemovedFromChat,
    #[error("MLS: {0}")]
    Mls(String),
    /// The key directory could not be checked or failed a check (issue 9).
    #[error("key directory: {0}")]
    Directory(String),
    #[error("local store: {0}")]
    Store(String),
    #[error("{0}")]
    Io(String),
    /// The server answered `device_revoked`: the profile was wiped (remote wipe).
    #[error("this device was revoked: its profile has been wiped")]
    Revoked,
}

impl Error {
    pub(crate) fn is_code(&self, wanted: &str) -> bool {
        matches!(self, Error::Api { code, .. } if code == wanted)
    }
}

impl From<vellum_mls::Error> for Error {
    fn from(e: vellum_mls::Error) -> Self {
        Error::Mls(e.to_string())
    }
}

impl From<vellum_mls::mls_rs::error::MlsError> for Error {
    fn from(e: vellum_mls::mls_rs::error::MlsError) -> Self {
        Error::Mls(e.to_string())
    }
}

/// This device's clock, Unix ms.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_id() -> String {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

/// A member device of a chat, from the verified MLS roster.
pub use vellum_record::Member;

/// An enrolled device with its profile directory open.
pub struct Client {
    /// The profile directory (remote wipe deletes the profile's files in it).
    home: PathBuf,
    store: LocalStore,
    lock: ProfileLock,
    api: Api,
    user: String,
    device_id: String,
    key: DeviceKey,
    identity: OrgIdentityProvider,
    mls: DeviceClient<MlsGroupStorage, MlsKeyPackageStorage>,
    /// Where chat events go instead of the local history (the org's archiver).
    sink: Option<Box<dyn RecordSink>>,
    /// Set while unconfirmed sends are being retried (or a send converts its chat), so that
    /// a catch-up sync meanwhile does not send them again from under it.
    flushing: bool,
    /// When this process last fetched the org's records trust (see `trust.rs`).
    trust_checked: Option<std::time::Instant>,
    /// Whether the current sync fetched it: an entry that adds an unknown device of
    /// `records` is refused only against a fresh look.
    trust_fresh: bool,
    /// When this process last refreshed the key directory (see `directory.rs`).
    directory_checked: Option<std::time::Instant>,
    /// Set while this device commits the removal of devices the directory does not vouch
    /// for: the syncs inside do not start another.
    enforcing: bool,
    /// Events and account notices a directory refresh produced, for the next sync to show.
    directory_shown: Vec<MessageRow>,
    /// The server's receive time of the log entry being processed: the events it causes
    /// carry it, so they sort among messages in the server's order (issue 10).
    entry_time: Option<i64>,
    /// Leave proposals received per chat (the devices leaving), for this device to commit
    /// after its sync (issue 10).
    leaves_to_commit: std::collections::BTreeMap<String, Vec<String>>,
    /// Set while those are committed: the syncs inside do not start again.
    committing_leaves: bool,
    /// Whether a roster or the directory copy changed since every chat was last checked
    /// for devices the directory does not vouch for (and at a process's first sync).
    rosters_to_check: bool,
    /// Messages a member deleted for everyone that this process's syncs shredded (chat, id),
    /// for a window to take off its screen (issue 12). Drained by [`Client::take_deleted`].
    deleted: Vec<(String, String)>,
    /// See [`Client::unanswered_at_enrollment`].
    unanswered_at_enrollment: Vec<String>,
}

/// The files an enrollment creates in a home that holds no profile yet: removed again when
/// it fails before the device is saved, so that a retry starts from a clean home.
struct NewProfileFiles(Vec<PathBuf>);

impl NewProfileFiles {
    fn before(home: &Path) -> Self {
        let mut new = Vec::new();
        if !home.join("vellum.db").exists() {
            // SQLite's WAL files come and go with the database.
            new.extend(["vellum.db", "vellum.db-wal", "vellum.db-shm"].map(|f| home.join(f)));
        }
        if !home.join("lock").exists() {
            new.push(home.join("lock"));
        }
        if !home.exists() {
            new.push(home.to_owned());
        }
        Self(new)
    }

    fn remove(&self) {
        for path in &self.0 {
            // The home itself last, and only if nothing else came into it meanwhile.
            let removed = match path.is_dir() {
                true => std::fs::remove_dir(path),
                false => std::fs::remove_file(path),
            };
            if let Err(e) = removed {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %e, "could not remove after a failed enrollment");
                }
            }
        }
    }
}

/// Receives chat events instead of the local history. `record` must be durable when it
/// returns: the entry is acknowledged to the server right after.
/// Every event reaches it as a [`vellum_record::Record`], made by the same dispatch that
/// writes a member's history.
pub trait RecordSink: Send + Sync {
    fn record(&mut self, event: vellum_record::Record) -> Result<(), String>;
}

mod profile_keys {
    pub const USER: &str = "user";
    pub const DEVICE_ID: &str = "device_id";
    pub const DEVICE_KEY: &str = "device_key";
    pub const CREDENTIAL: &str = "credential";
    pub const ORG_KEY: &str = "org_key";
}

impl Client {
    /// Enrolls a new device for `user` with a single-use code, pinning the org key.
    pub async fn enroll(home: &Path, server: &str, user: &str, code: &str) -> Result<Self, Error> {
        Self::enroll_at(home, &[server], user, code).await
    }

    /// Enrolls with a server of several nodes sharing one database (issue 13). Every URL is
    /// checked first (a malformed one, or a node of another server, refuses the enrollment
    /// before the code is spent); the code is redeemed at the first node that answers. The
    /// profile keeps the nodes that answered, in the order given, then those that did not
    /// ([`Client::unanswered_at_enrollment`]). An enrollment that fails before the device
    /// is saved leaves the home as it was.
    pub async fn enroll_at<S: AsRef<str>>(
        home: &Path,
        servers: &[S],
        user: &str,
        code: &str,
    ) -> Result<Self, Error> {
        let given = Api::with_servers(servers)?.servers();
        let surveyed = servers::survey(&given).await?;
        let ordered: Vec<&String> = surveyed
            .answering
            .iter()
            .chain(&surveyed.unanswered)
            .collect();
        let api = Api::with_servers(&ordered)?;
        let created = NewProfileFiles::before(home);
        let mut client = Self::enroll_with(home, api, user, code, &created).await?;
        client.unanswered_at_enrollment = surveyed.unanswered;
        Ok(client)
    }

    /// The servers that could not be reached when this device enrolled (kept, after the
    /// others); empty for a profile opened later.
    pub fn unanswered_at_enrollment(&self) -> &[String] {
        &self.unanswered_at_enrollment
    }

    async fn enroll_with(
        home: &Path,
        api: Api,
        user: &str,
        code: &str,
        created: &NewProfileFiles,
    ) -> Result<Self, Error> {
        let redeemed = Self::redeem(home, &api, user, code).await;
        if redeemed.is_err() {
            created.remove();
        }
        let lock = redeemed?;
        let mut client = Self::open_with(home, lock)?;
        // The node that answered stays the current one.
        client.api = api;
        // The key directory's log key and witnesses are pinned now, as the org key is.
        client.pin_directory().await?;
        // The identity (or the commitment that starts the approval) first: others take a key
        // package only of a device the directory vouches for.
        client.publish_enrollment().await?;
        client.replenish_key_packages(true).await?;
        // records.pub is pinned at enrollment (or, before records init, at first sight).
        client.refresh_trust().await?;
        Ok(client)
    }

    /// Redeems the code and saves the device in the profile (one transaction); returns the
    /// profile's lock.
    async fn redeem(home: &Path, api: &Api, user: &str, code: &str) -> Result<ProfileLock, Error> {
        let store = LocalStore::open(home)?;
        let lock = ProfileLock::open(home)?;
        let held = lock.hold()?;
        if store.profile_get(profile_keys::DEVICE_ID)?.is_some() {
            return Err(Error::AlreadyEnrolled(home.to_owned()));
        }
        let key = DeviceKey::generate();
        let request = EnrollRequest {
            user: user.to_owned(),
            code: code.to_owned(),
            signature_key: key.public_key().to_vec().into(),
        };
        let response: EnrollResponse = api
            .call(Method::POST, "/v1/enroll", Some(&request), None, None)
            .await?;
        let identity = OrgIdentityProvider::from_bytes(&response.org_key)?;
        let cert = DeviceCertificate::verify(&response.credential, identity.org_key())?;
        if cert.user != user
            || cert.device_id != response.device_id
            || cert.signature_key != key.public_key()
        {
            return Err(Error::Invalid(
                "the server issued a credential for someone else".into(),
            ));
        }
        use profile_keys::*;
        store.begin()?;
        let saved = (|| {
            store.set_servers(&api.servers())?;
            store.profile_set(USER, user.as_bytes())?;
            store.profile_set(DEVICE_ID, response.device_id.as_bytes())?;
            store.profile_set(DEVICE_KEY, &key.seed())?;
            store.profile_set(CREDENTIAL, &response.credential)?;
            store.profile_set(ORG_KEY, &response.org_key)?;
            devices::save_enrollment_secret(&store, user, response.state, &response.device_id, &key)
        })();
        match saved {
            Ok(()) => store.commit()?,
            Err(e) => {
                store.rollback();
                return Err(e);
            }
        }
        drop(held);
        Ok(lock)
    }

    /// Opens an enrolled device's profile.
    pub fn open(home: &Path) -> Result<Self, Error> {
        if !home.join("vellum.db").exists() {
            return Err(Error::NotEnrolled(home.to_owned()));
        }
        Self::open_with(home, ProfileLock::open(home)?)
    }

    /// Opens with `lock`, which this process may already hold (flock is per open file, so a
    /// second lock on the same profile in one process would wait for ever).
    fn open_with(home: &Path, lock: ProfileLock) -> Result<Self, Error> {
        let store = LocalStore::open(home)?;
        use profile_keys::*;
        let get = |k: &str| {
            store
                .profile_get(k)?
                .ok_or_else(|| Error::NotEnrolled(home.to_owned()))
        };
        let text = |k: &str| -> Result<String, Error> {
            String::from_utf8(get(k)?).map_err(|_| Error::Store(format!("profile {k} is corrupt")))
        };
        let servers = store.servers()?;
        if servers.is_empty() {
            return Err(Error::NotEnrolled(home.to_owned()));
        }
        let api = Api::with_servers(&servers)?;
        let user = text(USER)?;
        let device_id = text(DEVICE_ID)?;
        let key = DeviceKey::from_seed(&get(DEVICE_KEY)?)?;
        let identity = OrgIdentityProvider::from_bytes(&get(ORG_KEY)?)?;
        let cert = DeviceCertificate::verify(&get(CREDENTIAL)?, identity.org_key())?;
        let mls = device_client(
            &cert,
            &key,
            identity.clone(),
            store.mls_groups(),
            store.mls_key_packages(),
        );
        let client = Self {
            home: home.to_owned(),
            store,
            lock,
            api,
            user,
            device_id,
            key,
            identity,
            mls,
            sink: None,
            flushing: false,
            trust_checked: None,
            trust_fresh: false,
            directory_checked: None,
            enforcing: false,
            directory_shown: Vec::new(),
            entry_time: None,
            rosters_to_check: true,
            leaves_to_commit: Default::default(),
            unanswered_at_enrollment: Vec::new(),
            committing_leaves: false,
            deleted: Vec::new(),
        };
        // Whatever expired while the device was off goes before anything can show it.
        {
            let _held = client.lock.hold()?;
            client.shred()?;
        }
        Ok(client)
    }

    /// Sends every chat event to `sink` instead of keeping a local history: the archiver's
    /// mode. Nothing a member says is then stored on this device.
    pub fn set_sink(&mut self, sink: Box<dyn RecordSink>) {
        self.sink = Some(sink);
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The delivery server's node this process talks to now.
    pub fn server(&self) -> &str {
        self.api.base()
    }

    /// The profile directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// This device's signature (identity) public key: what its credential, key packages and
    /// requests are signed with.
    pub fn signature_key(&self) -> Vec<u8> {
        self.key.public_key().to_vec()
    }

    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            device_id: &self.device_id,
            key: &self.key,
        }
    }

    /// A request to the delivery server signed as this device (the archiver posts receipts
    /// with it too).
    pub async fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, Error> {
        match self
            .api
            .call(method, path, body, Some(&self.signer()), None)
            .await
        {
            // The one place every signed answer passes: a device the directory says was
            // revoked wipes itself.
            Err(e) if e.is_code(codes::DEVICE_REVOKED) => Err(self.revoked_answer(e).await),
            other => other,
        }
    }

    /// Keeps enough single-use key packages (and a last-resort one) on the server.
    async fn replenish_key_packages(&mut self, force: bool) -> Result<(), Error> {
        let count: KeyPackageCount = self
            .request(Method::GET, "/v1/key-packages/count", None::<&()>)
            .await?;
        if !force && count.single_use >= KEY_PACKAGE_TARGET / 2 && count.has_last_resort {
            return self.store.profile_set(sync::KEY_PACKAGES_READY, b"1");
        }
        // Private keys are stored in one transaction: one fsync, not one per key package.
        self.store.begin()?;
        let generated = self.generate_key_packages(count.single_use, count.has_last_resort);
        let upload = self.finish_tx(generated)?;
        if upload.key_packages.is_empty() && upload.last_resort.is_none() {
            return self.store.profile_set(sync::KEY_PACKAGES_READY, b"1");
        }
        let _: () = self
            .request(Method::POST, "/v1/key-packages", Some(&upload))
            .await?;
        self.store.profile_set(sync::KEY_PACKAGES_READY, b"1")
    }

    fn generate_key_packages(
        &self,
        have: u64,
        have_last_resort: bool,
    ) -> Result<UploadKeyPackages, Error> {
        let mut upload = UploadKeyPackages::default();
        for _ in have..KEY_PACKAGE_TARGET {
            let kp = self.mls.generate_key_package_message(
                ExtensionList::new(),
                ExtensionList::new(),
                None,
            )?;
            upload.key_packages.push(kp.to_bytes()?.into());
        }
        if !have_last_resort {
            let kp = self.mls.generate_key_package_message(
                last_resort_extensions(),
                ExtensionList::new(),
                None,
            )?;
            upload.last_resort = Some(kp.to_bytes()?.into());
        }
        Ok(upload)
    }

    fn load_group(&self, group_id: &str) -> Result<Group, Error> {
        let raw = hex::decode(group_id)
            .map_err(|_| Error::UnknownChat(format!("no chat matches {group_id:?}")))?;
        Ok(self.mls.load_group(&raw)?)
    }

    fn finish_tx<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Ok(v) => {
                self.store.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.store.rollback();
                Err(e)
            }
        }
    }

    /// Builds a commit with `build` at the latest epoch and submits it; when another commit
    /// won the epoch, catches up and builds again.
    ///
    /// The pending commit and the request carrying it are persisted before the request is
    /// sent. The commit is applied by syncing up to it, so that whatever the log holds before
    /// it (messages at the old epoch) is processed first. A commit whose fate is unknown (lost
    /// connection, crash) is sent again before anything new; the server acknowledges a
    /// repeated commit once.
    /// Does nothing when `build` finds nothing to do.
    /// With `convert_if_required`, a commit refused because the org now keeps the chat as
    /// records (`record_required`) is built again after this device converted the chat.
    async fn commit_with_rebase<F>(
        &mut self,
        group_id: &str,
        mut convert_if_required: bool,
        mut build: F,
    ) -> Result<(), Error>
    where
        F: FnMut(&mut Group) -> Result<Option<vellum_mls::mls_rs::group::CommitOutput>, Error>,
    {
        let stored_request = format!("pending_commit:{group_id}");
        let path = format!("/v1/groups/{group_id}/commits");
        for _ in 0..MAX_REBASES {
            self.sync_quiet().await?;
            if self.store.chat(group_id)?.is_some_and(|c| c.removed) {
                return Err(Error::RemovedFromChat);
            }
            let mut group = self.load_group(group_id)?;
            if group.has_pending_commit() {
                let earlier = self.store.profile_get(&stored_request)?;
                let resent = match earlier.as_deref().map(serde_json::from_slice::<PostCommit>) {
                    Some(Ok(request)) => self
                        .post_with_retry::<_, Accepted>(&path, &request)
                        .await
                        .map(Some),
                    _ => Ok(None),
                };
                match resent {
                    // Accepted after all: the next sync applies it.
                    Ok(Some(_)) => continue,
                    Err(e @ Error::Network(_)) => return Err(e),
                    // Refused, stale, or nothing to resend: it never happened.
                    Ok(None) | Err(_) => self.abandon_commit(&mut group, &stored_request)?,
                }
            }
            let Some(output) = build(&mut group)? else {
                return Ok(());
            };
            let request = PostCommit {
                commit: output.commit_message.to_bytes()?.into(),
                welcome: output
                    .welcome_messages
                    .first()
                    .map(|w| w.to_bytes())
                    .transpose()?
                    .map(B64::from),
            };
            let request_bytes =
                serde_json::to_vec(&request).map_err(|e| Error::Invalid(e.to_string()))?;
            self.store.begin()?;
            let saved = group
                .write_to_storage()
                .map_err(Error::from)
                .and_then(|_| self.store.profile_set(&stored_request, &request_bytes));
            self.finish_tx(saved)?;
            match self.post_with_retry::<_, Accepted>(&path, &request).await {
                Ok(accepted) => {
                    self.sync_quiet().await?;
                    if self
                        .store
                        .chat(group_id)?
                        .is_some_and(|c| c.last_seq < accepted.seq)
                    {
                        return Err(Error::Invalid("the server accepted the change but has not delivered it yet; sync again".into()));
                    }
                    return self.store.profile_delete(&stored_request);
                }
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) => {
                    self.abandon_commit(&mut group, &stored_request)?;
                    if convert_if_required && e.is_code(codes::RECORD_REQUIRED) {
                        // Once: the conversion's own commit never asks for another.
                        convert_if_required = false;
                        Box::pin(self.convert_to_record(group_id)).await?;
                    } else if !e.is_code(codes::STALE_EPOCH) {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::Invalid(
            "the chat is changing too fast; try again".into(),
        ))
    }

    /// Forgets a pending commit the server definitely did not take, with its stored request.
    fn abandon_commit(&self, group: &mut Group, stored_request: &str) -> Result<(), Error> {
        group.clear_pending_commit();
        self.store.begin()?;
        let cleared = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.profile_delete(stored_request));
        self.finish_tx(cleared)
    }

    /// POSTs with a few retries on network failure; the server's idempotency (client message
    /// ids, commit re-acknowledgement) makes every retry safe.
    async fn post_with_retry<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.request(Method::POST, path, Some(body)).await {
                Err(Error::Network(e)) if attempt < 6 => {
                    tracing::debug!(%e, "retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Encrypts and submits one payload, re-encrypting at the new epoch if the group moved.
    /// A text message is recorded locally in the same transaction as the ratchet advance.
    async fn send_payload(
        &mut self,
        group_id: &str,
        payload: AppPayload,
        row: Option<&MessageRow>,
        expires_at: Option<i64>,
    ) -> Result<u64, Error> {
        // A text message's own id makes every retry of it idempotent, across restarts too.
        let client_msg_id = row.map(|r| r.id.clone()).unwrap_or_else(random_id);
        let path = format!("/v1/groups/{group_id}/messages");
        let mut converted = false;
        let mut switched = false;
        for _ in 0..MAX_REBASES {
            // Nothing is encrypted to a device the key directory does not vouch for: it is
            // removed first, or nothing is sent.
            match self.remove_unvouched(group_id).await {
                Ok(()) => {}
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) => {
                    if let Some(row) = row {
                        self.store.shred(group_id, &row.id)?;
                    }
                    return Err(e);
                }
            }
            let mut group = self.load_group(group_id)?;
            let ciphertext = group.encrypt_application_message(&payload.encode(), Vec::new())?;
            self.store.begin()?;
            let saved = group
                .write_to_storage()
                .map_err(Error::from)
                .and_then(|_| match row {
                    Some(row) => self.store.add_message(row).map(|_| ()),
                    None => Ok(()),
                });
            self.finish_tx(saved)?;
            let request = PostMessage {
                client_msg_id: client_msg_id.clone(),
                message: ciphertext.to_bytes()?.into(),
                expires_at,
            };
            match self.post_with_retry::<_, Accepted>(&path, &request).await {
                Ok(accepted) => {
                    if let Some(row) = row {
                        self.check_position(group_id, accepted.seq, &row.id, true)?;
                        self.store
                            .set_message_seq(group_id, &row.id, accepted.seq)?;
                    }
                    return Ok(accepted.seq);
                }
                Err(e) if e.is_code(codes::STALE_EPOCH) => {
                    self.sync_quiet().await?;
                }
                // The org keeps this chat as records now: convert it (once), then encrypt
                // again at the epoch after the conversion, which every member sees first.
                Err(e) if e.is_code(codes::RECORD_REQUIRED) && !converted => {
                    converted = true;
                    match Box::pin(self.convert_to_record(group_id)).await {
                        Ok(()) => {}
                        Err(e @ Error::Network(_)) => return Err(e),
                        Err(e) => {
                            if let Some(row) = row {
                                self.store.shred(group_id, &row.id)?;
                            }
                            return Err(e);
                        }
                    }
                }
                // The org's archiver was replaced: switch the chat to the bound one (once),
                // if the custodians have bound it, and encrypt again after the switch.
                Err(e) if e.is_code(codes::ARCHIVER_REPLACED) && !switched => {
                    switched = true;
                    self.refresh_trust().await?;
                    Box::pin(self.switch_archiver_if_needed(group_id)).await?;
                    self.sync_quiet().await?;
                }
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) => {
                    if let Some(row) = row {
                        self.store.shred(group_id, &row.id)?;
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::Invalid(
            "the chat is changing too fast; try again".into(),
        ))
    }
}
