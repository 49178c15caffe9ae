//! The Vellum device: enrollment, MLS group membership, sending, durable exactly-once
//! receiving, and the local decrypted history, over the delivery server's HTTP API.
//!
//! All MLS state and history live in the device's own SQLite file (`HOME/vellum.db`, 0600).
//! Every state change of an MLS group is persisted before its effect leaves the device.

mod api;
mod lock;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use vellum_mls::mls_rs::group::{CommitEffect, ReceivedMessage};
use vellum_mls::mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{
    device_client, last_resort_extensions, roster, DeviceCertificate, DeviceClient, DeviceKey,
    DeviceMlsConfig, OrgIdentityProvider,
};
use vellum_wire::*;

pub use api::{Api, Signer};
use lock::ProfileLock;
pub use store::{ChatRow, LocalStore, MessageRow};
use store::{MlsGroupStorage, MlsKeyPackageStorage};

type Config = DeviceMlsConfig<MlsGroupStorage, MlsKeyPackageStorage>;
type Group = vellum_mls::mls_rs::group::Group<Config>;

/// Single-use key packages kept on the server; replenished below half.
const KEY_PACKAGE_TARGET: u64 = 20;
/// How often a state-changing operation is rebased after losing an epoch race.
const MAX_REBASES: usize = 8;

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
    #[error("no chat matches {0:?}")]
    UnknownChat(String),
    #[error("{0:?} matches more than one chat; use the chat id")]
    AmbiguousChat(String),
    #[error("you are no longer a member of this chat")]
    RemovedFromChat,
    #[error("MLS: {0}")]
    Mls(String),
    #[error("local store: {0}")]
    Store(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    fn is_code(&self, wanted: &str) -> bool {
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

fn now_millis() -> i64 {
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub user: String,
    pub device_id: String,
}

/// An enrolled device with its profile directory open.
pub struct Client {
    store: LocalStore,
    lock: ProfileLock,
    api: Api,
    user: String,
    device_id: String,
    key: DeviceKey,
    identity: OrgIdentityProvider,
    mls: DeviceClient<MlsGroupStorage, MlsKeyPackageStorage>,
}

mod profile_keys {
    pub const SERVER: &str = "server";
    pub const USER: &str = "user";
    pub const DEVICE_ID: &str = "device_id";
    pub const DEVICE_KEY: &str = "device_key";
    pub const CREDENTIAL: &str = "credential";
    pub const ORG_KEY: &str = "org_key";
}

impl Client {
    /// Enrolls a new device for `user` with a single-use code, pinning the org key.
    pub async fn enroll(home: &Path, server: &str, user: &str, code: &str) -> Result<Self, Error> {
        let api = Api::new(server)?;
        let store = LocalStore::open(home)?;
        let _held = ProfileLock::open(home)?.hold()?;
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
            store.profile_set(SERVER, api.base().as_bytes())?;
            store.profile_set(USER, user.as_bytes())?;
            store.profile_set(DEVICE_ID, response.device_id.as_bytes())?;
            store.profile_set(DEVICE_KEY, &key.seed())?;
            store.profile_set(CREDENTIAL, &response.credential)?;
            store.profile_set(ORG_KEY, &response.org_key)
        })();
        match saved {
            Ok(()) => store.commit()?,
            Err(e) => {
                store.rollback();
                return Err(e);
            }
        }
        let mut client = Self::open(home)?;
        client.replenish_key_packages(true).await?;
        Ok(client)
    }

    /// Opens an enrolled device's profile.
    pub fn open(home: &Path) -> Result<Self, Error> {
        if !home.join("vellum.db").exists() {
            return Err(Error::NotEnrolled(home.to_owned()));
        }
        let store = LocalStore::open(home)?;
        let lock = ProfileLock::open(home)?;
        use profile_keys::*;
        let get = |k: &str| {
            store
                .profile_get(k)?
                .ok_or_else(|| Error::NotEnrolled(home.to_owned()))
        };
        let text = |k: &str| -> Result<String, Error> {
            String::from_utf8(get(k)?).map_err(|_| Error::Store(format!("profile {k} is corrupt")))
        };
        let api = Api::new(&text(SERVER)?)?;
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
        Ok(Self {
            store,
            lock,
            api,
            user,
            device_id,
            key,
            identity,
            mls,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
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

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, Error> {
        self.api
            .call(method, path, body, Some(&self.signer()), None)
            .await
    }

    /// Keeps enough single-use key packages (and a last-resort one) on the server.
    async fn replenish_key_packages(&mut self, force: bool) -> Result<(), Error> {
        let count: KeyPackageCount = self
            .call(Method::GET, "/v1/key-packages/count", None::<&()>)
            .await?;
        if !force && count.single_use >= KEY_PACKAGE_TARGET / 2 && count.has_last_resort {
            return Ok(());
        }
        // Private keys are stored in one transaction: one fsync, not one per key package.
        self.store.begin()?;
        let generated = self.generate_key_packages(count.single_use, count.has_last_resort);
        let upload = self.finish_tx(generated)?;
        if upload.key_packages.is_empty() && upload.last_resort.is_none() {
            return Ok(());
        }
        let _: () = self
            .call(Method::POST, "/v1/key-packages", Some(&upload))
            .await?;
        Ok(())
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
        let raw = hex::decode(group_id).map_err(|_| Error::UnknownChat(group_id.to_owned()))?;
        Ok(self.mls.load_group(&raw)?)
    }

    /// Resolves CHAT: a chat id, or the unique title of a chat.
    pub fn resolve_chat(&self, chat: &str) -> Result<String, Error> {
        let chats = self.store.chats()?;
        if let Some(c) = chats.iter().find(|c| c.group_id == chat) {
            return Ok(c.group_id.clone());
        }
        let mut titled = chats.iter().filter(|c| c.title.as_deref() == Some(chat));
        match (titled.next(), titled.next()) {
            (Some(c), None) => Ok(c.group_id.clone()),
            (Some(_), Some(_)) => Err(Error::AmbiguousChat(chat.to_owned())),
            _ => Err(Error::UnknownChat(chat.to_owned())),
        }
    }

    pub fn chats(&self) -> Result<Vec<ChatRow>, Error> {
        self.store.chats()
    }

    /// The chat's members from this device's verified MLS roster (not from the server).
    pub fn members(&self, chat: &str) -> Result<Vec<Member>, Error> {
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        let group = self.load_group(&group_id)?;
        Ok(roster(&group, &self.identity)?
            .into_iter()
            .map(|(_, cert)| Member {
                user: cert.user,
                device_id: cert.device_id,
            })
            .collect())
    }

    pub fn history(&self, chat: &str) -> Result<Vec<MessageRow>, Error> {
        self.store.history(&self.resolve_chat(chat)?)
    }

    /// Creates a chat titled `title` with every device of `with` (and this user's other devices).
    pub async fn create_chat(&mut self, title: &str, with: &[String]) -> Result<String, Error> {
        let _held = self.lock.hold()?;
        if title.is_empty() || title.len() > 200 {
            return Err(Error::Invalid("a chat title is 1 to 200 bytes".into()));
        }
        // Claim first: an unknown user or a missing key package must leave no chat behind.
        let mut users = with.to_vec();
        users.push(self.user.clone());
        let key_packages = self.claim(users).await?;
        let mut group = self
            .mls
            .create_group(ExtensionList::new(), Default::default(), None)?;
        let info = group.group_info_message(true)?.to_bytes()?;
        let created: GroupCreated = self
            .call(
                Method::POST,
                "/v1/groups",
                Some(&CreateGroup {
                    group_info: info.into(),
                }),
            )
            .await?;
        let group_id = created.group_id;
        self.store.begin()?;
        let saved = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.add_chat(&group_id, Some(title), now_millis()));
        self.finish_tx(saved)?;
        self.add_key_packages(&group_id, key_packages).await?;
        self.send_payload(
            &group_id,
            AppPayload::ChatInfo {
                title: title.to_owned(),
            },
            None,
        )
        .await?;
        Ok(group_id)
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

    /// Adds every device of `users` that is not in the chat yet.
    pub async fn add_members(&mut self, chat: &str, users: &[String]) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        let key_packages = self.claim(users.to_vec()).await?;
        self.add_key_packages(&group_id, key_packages).await?;
        if let Some(title) = self.store.chat(&group_id)?.and_then(|c| c.title) {
            // Newcomers learn the title from the members, never from the server.
            self.send_payload(&group_id, AppPayload::ChatInfo { title }, None)
                .await?;
        }
        Ok(())
    }

    /// One key package for every device of `users` (but this one).
    async fn claim(&self, mut users: Vec<String>) -> Result<Vec<(String, MlsMessage)>, Error> {
        users.sort();
        users.dedup();
        let request = ClaimKeyPackages { users };
        let claimed: ClaimedKeyPackages = self
            .call(Method::POST, "/v1/key-packages/claim", Some(&request))
            .await?;
        claimed
            .key_packages
            .into_iter()
            .map(|kp| {
                Ok((
                    kp.device_id,
                    vellum_mls::key_package_message(&kp.key_package)?,
                ))
            })
            .collect()
    }

    /// Adds the devices of `key_packages` that are not in the chat yet.
    async fn add_key_packages(
        &mut self,
        group_id: &str,
        key_packages: Vec<(String, MlsMessage)>,
    ) -> Result<(), Error> {
        let identity = self.identity.clone();
        self.commit_with_rebase(group_id, move |group| {
            let present: Vec<String> = roster(group, &identity)?
                .into_iter()
                .map(|(_, c)| c.device_id)
                .collect();
            let mut builder = group.commit_builder();
            let mut any = false;
            for (device_id, kp) in &key_packages {
                if !present.contains(device_id) {
                    builder = builder.add_member(kp.clone())?;
                    any = true;
                }
            }
            Ok(if any { Some(builder.build()?) } else { None })
        })
        .await
    }

    /// Removes every device of `users` from the chat.
    pub async fn remove_members(&mut self, chat: &str, users: &[String]) -> Result<(), Error> {
        let _held = self.lock.hold()?;
        let group_id = self.resolve_chat(chat)?;
        let identity = self.identity.clone();
        let me = self.device_id.clone();
        let users = users.to_vec();
        {
            let group = self.load_group(&group_id)?;
            let members = roster(&group, &identity)?;
            for user in &users {
                if !members.iter().any(|(_, c)| &c.user == user) {
                    return Err(Error::Invalid(format!(
                        "{user} is not a member of this chat"
                    )));
                }
            }
        }
        self.commit_with_rebase(&group_id, move |group| {
            let members = roster(group, &identity)?;
            let mut builder = group.commit_builder();
            let mut any = false;
            for (index, cert) in members {
                if users.contains(&cert.user) && cert.device_id != me {
                    builder = builder.remove_member(index)?;
                    any = true;
                }
            }
            Ok(if any { Some(builder.build()?) } else { None })
        })
        .await
    }

    /// Builds a commit with `build` at the latest epoch and submits it; when another commit
    /// won the epoch, catches up and builds again. The pending commit is persisted before it
    /// is sent, so a crash in between is recovered when the commit comes back in the log.
    async fn commit_with_rebase<F>(&mut self, group_id: &str, mut build: F) -> Result<(), Error>
    where
        F: FnMut(&mut Group) -> Result<Option<vellum_mls::mls_rs::group::CommitOutput>, Error>,
    {
        for _ in 0..MAX_REBASES {
            self.sync().await?;
            if self.store.chat(group_id)?.is_some_and(|c| c.removed) {
                return Err(Error::RemovedFromChat);
            }
            let mut group = self.load_group(group_id)?;
            let Some(output) = build(&mut group)? else {
                return Ok(());
            };
            group.write_to_storage()?;
            let request = PostCommit {
                commit: output.commit_message.to_bytes()?.into(),
                welcome: output
                    .welcome_messages
                    .first()
                    .map(|w| w.to_bytes())
                    .transpose()?
                    .map(B64::from),
            };
            let path = format!("/v1/groups/{group_id}/commits");
            match self.post_with_retry::<_, Accepted>(&path, &request).await {
                Ok(accepted) => {
                    self.store.begin()?;
                    let applied = group
                        .apply_pending_commit()
                        .map_err(Error::from)
                        .and_then(|_| group.write_to_storage().map_err(Error::from))
                        .and_then(|_| self.store.set_last_seq(group_id, accepted.seq));
                    return self.finish_tx(applied);
                }
                Err(e) if e.is_code(codes::STALE_EPOCH) => {
                    group.clear_pending_commit();
                    group.write_to_storage()?;
                }
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) => {
                    group.clear_pending_commit();
                    group.write_to_storage()?;
                    return Err(e);
                }
            }
        }
        Err(Error::Invalid(
            "the chat is changing too fast; try again".into(),
        ))
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
            match self.call(Method::POST, path, Some(body)).await {
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

    /// Sends a text message; returns it once the server has durably accepted it.
    pub async fn send(&mut self, chat: &str, text: &str) -> Result<MessageRow, Error> {
        let _held = self.lock.hold()?;
        if text.is_empty() {
            return Err(Error::Invalid("message text is empty".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::Invalid(format!(
                "message text is {} bytes; the limit is {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let group_id = self.resolve_chat(chat)?;
        if self.store.chat(&group_id)?.is_some_and(|c| c.removed) {
            return Err(Error::RemovedFromChat);
        }
        let id = random_id();
        let row = MessageRow {
            group_id: group_id.clone(),
            id: id.clone(),
            sender_user: self.user.clone(),
            sender_device: self.device_id.clone(),
            sent_at: now_millis(),
            received_at: now_millis(),
            seq: None,
            text: text.to_owned(),
        };
        let payload = AppPayload::Text {
            id: id.clone(),
            text: text.to_owned(),
            sent_at: row.sent_at,
        };
        let seq = self.send_payload(&group_id, payload, Some(&row)).await?;
        Ok(MessageRow {
            seq: Some(seq),
            ..row
        })
    }

    /// Encrypts and submits one payload, re-encrypting at the new epoch if the group moved.
    /// A text message is recorded locally in the same transaction as the ratchet advance.
    async fn send_payload(
        &mut self,
        group_id: &str,
        payload: AppPayload,
        row: Option<&MessageRow>,
    ) -> Result<u64, Error> {
        let client_msg_id = random_id();
        let path = format!("/v1/groups/{group_id}/messages");
        for _ in 0..MAX_REBASES {
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
            };
            match self.post_with_retry::<_, Accepted>(&path, &request).await {
                Ok(accepted) => {
                    if let Some(row) = row {
                        self.store
                            .set_message_seq(group_id, &row.id, accepted.seq)?;
                    }
                    return Ok(accepted.seq);
                }
                Err(e) if e.is_code(codes::STALE_EPOCH) => {
                    self.sync().await?;
                }
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) => {
                    if let Some(row) = row {
                        self.store.delete_message(group_id, &row.id)?;
                    }
                    return Err(e);
                }
            }
        }
        Err(Error::Invalid(
            "the chat is changing too fast; try again".into(),
        ))
    }

    /// Fetches and processes everything pending, acknowledging only what is durably stored.
    /// Returns the new messages from others, oldest first.
    pub async fn sync(&mut self) -> Result<Vec<MessageRow>, Error> {
        let _held = self.lock.hold()?;
        let mut new_messages = Vec::new();
        let mut joined_any = false;
        loop {
            let batch: SyncResponse = self.call(Method::GET, "/v1/sync", None::<&()>).await?;
            let mut ack = AckRequest::default();
            for welcome in &batch.welcomes {
                self.join(welcome)?;
                joined_any = true;
                ack.welcomes.push(welcome.id);
            }
            let mut groups: HashMap<String, Group> = HashMap::new();
            for entries in &batch.groups {
                let mut last = None;
                for entry in &entries.entries {
                    if let Some(m) = self.process_entry(&entries.group_id, entry, &mut groups)? {
                        new_messages.push(m);
                    }
                    last = Some(entry.seq);
                }
                if let Some(seq) = last {
                    ack.cursors.push(GroupCursor {
                        group_id: entries.group_id.clone(),
                        seq,
                    });
                }
            }
            if !ack.welcomes.is_empty() || !ack.cursors.is_empty() {
                let _: () = self.post_with_retry("/v1/ack", &ack).await?;
            }
            if !batch.more {
                break;
            }
        }
        if joined_any {
            self.replenish_key_packages(false).await?;
        }
        Ok(new_messages)
    }

    fn join(&mut self, welcome: &QueuedWelcome) -> Result<(), Error> {
        if self
            .store
            .chat(&welcome.group_id)?
            .is_some_and(|c| !c.removed)
        {
            return Ok(()); // joined before; the ack was lost
        }
        let message = MlsMessage::from_bytes(&welcome.welcome)?;
        let (mut group, _) = match self.mls.join_group(None, &message, None) {
            Ok(joined) => joined,
            Err(e) => {
                // An unusable Welcome cannot become usable later: report it and move on.
                tracing::warn!(group = %welcome.group_id, error = %e, "ignoring a Welcome this device cannot use");
                return Ok(());
            }
        };
        if vellum_mls::group_id_hex(group.group_id()) != welcome.group_id {
            tracing::warn!(group = %welcome.group_id, "ignoring a Welcome for a different group than announced");
            return Ok(());
        }
        self.store.begin()?;
        let saved = group
            .write_to_storage()
            .map_err(Error::from)
            .and_then(|_| self.store.add_chat(&welcome.group_id, None, now_millis()));
        self.finish_tx(saved)
    }

    /// Processes one log entry in one local transaction (MLS state, history, cursor).
    fn process_entry(
        &mut self,
        group_id: &str,
        entry: &LogEntry,
        groups: &mut HashMap<String, Group>,
    ) -> Result<Option<MessageRow>, Error> {
        let Some(chat) = self.store.chat(group_id)? else {
            return Ok(None); // not joined (an unusable Welcome); nothing to do
        };
        if entry.seq <= chat.last_seq || chat.removed {
            return Ok(None);
        }
        if !groups.contains_key(group_id) {
            groups.insert(group_id.to_owned(), self.load_group(group_id)?);
        }
        let group = groups.get_mut(group_id).expect("inserted above");
        let own = entry.sender_device == self.device_id;
        let already_applied =
            entry.kind == EntryKind::Commit && entry.epoch < group.current_epoch();
        self.store.begin()?;
        let result = (|| -> Result<Option<MessageRow>, Error> {
            let mut shown = None;
            if !(already_applied || (own && entry.kind == EntryKind::Application)) {
                let message = MlsMessage::from_bytes(&entry.payload);
                match message
                    .map_err(Error::from)
                    .and_then(|m| group.process_incoming_message(m).map_err(Error::from))
                {
                    Ok(ReceivedMessage::ApplicationMessage(app)) => {
                        let sender = group
                            .member_at_index(app.sender_index)
                            .map(|m| self.identity.certificate(&m.signing_identity))
                            .transpose()?;
                        match (AppPayload::decode(app.data()), sender) {
                            (Ok(AppPayload::Text { id, text, sent_at }), Some(sender)) => {
                                let row = MessageRow {
                                    group_id: group_id.to_owned(),
                                    id,
                                    sender_user: sender.user,
                                    sender_device: sender.device_id,
                                    sent_at,
                                    received_at: entry.received_at,
                                    seq: Some(entry.seq),
                                    text,
                                };
                                if self.store.add_message(&row)? {
                                    shown = Some(row);
                                }
                            }
                            (Ok(AppPayload::ChatInfo { title }), Some(_)) => {
                                self.store.set_title(group_id, &title)?
                            }
                            (Err(e), _) => {
                                tracing::warn!(group = group_id, seq = entry.seq, error = %e, "dropping an undecodable message")
                            }
                            (_, None) => tracing::warn!(
                                group = group_id,
                                seq = entry.seq,
                                "dropping a message from an unknown leaf"
                            ),
                        }
                    }
                    Ok(ReceivedMessage::Commit(commit)) => {
                        if matches!(commit.effect, CommitEffect::Removed { .. }) {
                            self.store.set_removed(group_id)?;
                        }
                    }
                    Ok(_) => {}
                    // A member's malformed or undecryptable entry must not block the chat forever.
                    Err(e) => {
                        tracing::warn!(group = group_id, seq = entry.seq, error = %e, "skipping an entry this device cannot process")
                    }
                }
                group.write_to_storage()?;
            }
            self.store.set_last_seq(group_id, entry.seq)?;
            Ok(shown)
        })();
        if result.is_err() {
            groups.remove(group_id); // in-memory state may be ahead of the rolled-back store
        }
        self.finish_tx(result)
    }

    /// Opens the server's WebSocket and calls `on_messages` with each batch of new messages
    /// until the connection fails (the caller reconnects).
    pub async fn watch_once<F: FnMut(&[MessageRow])>(
        &mut self,
        on_messages: &mut F,
    ) -> Result<(), Error> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws", self.api.base().replacen("http", "ws", 1));
        let mut request = url
            .into_client_request()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        for (name, value) in self.signer().headers("GET", "/v1/ws", b"") {
            request.headers_mut().insert(
                name,
                value
                    .parse()
                    .map_err(|_| Error::Invalid("bad header".into()))?,
            );
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| Error::Network(e.to_string()))?;
        while let Some(frame) = socket.next().await {
            let frame = frame.map_err(|e| Error::Network(e.to_string()))?;
            if frame.is_text() {
                let batch = self.sync().await?;
                if !batch.is_empty() {
                    on_messages(&batch);
                }
            } else if frame.is_close() {
                break;
            }
        }
        Err(Error::Network("the server closed the connection".into()))
    }
}
