//! The device's verified copy of the org's key directory (issue 9), and every check that
//! uses it.
//!
//! - **Pinning.** The directory's configuration (checkpoint origin, log key, witnesses and
//!   quorum) is pinned at enrollment (profile key `directory_config`). A profile enrolled
//!   before the directory existed pins it at its first refresh: trust on first use, as for
//!   `records.pub`. A different configuration offered later is refused, loudly.
//! - **Refresh.** The newest checkpoint must be signed by the pinned log key and cosigned
//!   by the pinned witness quorum; the entries from the copy's size to it are replayed by
//!   [`Mirror::extend`] (every rule, and the root against the checkpoint) and the copy is
//!   stored (profile key `directory_mirror`) in one local transaction with what it implies.
//!   A refresh that fails a check changes nothing: the copy is never replaced by a bad one.
//! - **Alarms.** A changed configuration, a checkpoint not signed by the pinned key, a
//!   rollback, a fork or a broken rule is kept for good (profile key `directory_watch`); a
//!   checkpoint short of the witness quorum is kept until a refresh succeeds. Each is a loud
//!   event in every chat once, and [`Client::directory_alarms`] makes `status` fail.
//! - **Who may read.** Claims take only devices the copy vouches for (`chats.rs`); devices
//!   the copy does not vouch for are removed from chats before anything is sent there
//!   ([`Client::remove_unvouched`]), and every member shows why a device was removed.
//! - **Other users' identities** (profile key `known_identities`): taken on first sight; a
//!   reset is an event in every chat shared with the user, and the user cannot be added to
//!   a chat until this device confirms the new identity (`vellum safety USER --confirm`).
//! - **Own account.** What the directory says of this device's user (approvals, revocations,
//!   resets) and any device the server lists for the user that the directory does not vouch
//!   for become account notices. They belong to no chat (the history's rows need one), so
//!   they are kept as a list under profile key `account_notices` and shown by `sync` and
//!   `watch` as event rows with an empty chat id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use vellum_directory::{safety_number, user_digits, Change, DirectoryEntry, Key32, Mirror, Vouch};
use vellum_mls::{roster, DeviceCertificate};
use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_tlog::{Checkpoint, NoteVerifier};
use vellum_wire::{
    DeviceInfo, DeviceList, DirectoryCheckpoint, DirectoryConfig, DirectoryEntries, RECORDS_USER,
};

use crate::events::ChatEvent;
use crate::{now_millis, random_id, Client, Error, Group, MessageKind, MessageRow};

/// What every chat shows, and `status` reports, when the server's key directory fails a
/// check.
pub const DIRECTORY_ALARM: &str = "Warning: the server's key directory failed this device's checks";

const DIRECTORY_CONFIG: &str = "directory_config";
const DIRECTORY_MIRROR: &str = "directory_mirror";
const DIRECTORY_WATCH: &str = "directory_watch";
const KNOWN_IDENTITIES: &str = "known_identities";
const ACCOUNT_NOTICES: &str = "account_notices";
/// The newest account notices kept.
const NOTICES_KEPT: usize = 500;
/// Entries asked for per page (the server's maximum).
const ENTRIES_PAGE: u64 = 1000;
/// A running client (`watch`) refreshes the directory at least this often, so that a
/// device the server lists for this user without the directory is noticed; each CLI
/// command, a process of its own, refreshes at its first sync.
const DIRECTORY_REFRESH: Duration = Duration::from_secs(30);

/// How long a device waits for the checkpoint to cover an entry it posted (with witnesses,
/// the checkpoint served lags the appends by their cosigning).
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// What this device knows of another user's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownIdentity {
    /// The identity key as hex; empty while the user has none (before its first identity
    /// or after a reset).
    pub identity: String,
    /// Confirmed by this device's user (`vellum safety USER --confirm`).
    pub confirmed: bool,
    /// How many resets of the user's identity this device has taken in.
    #[serde(default)]
    pub generation: u32,
    /// The identity was reset since it was first seen or last confirmed: the user is not
    /// added to chats until it is confirmed again.
    #[serde(default)]
    pub reset_seen: bool,
}

/// The safety number of this device's user and `user`, to compare out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    pub user: String,
    /// `user`'s identity key, hex.
    pub identity_key: String,
    /// 60 digits for another user (the same on both sides), 30 for one's own.
    pub number: String,
    pub confirmed: bool,
    pub reset_seen: bool,
}

/// One account notice, kept in the profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountNotice {
    id: String,
    /// This device's clock, Unix ms.
    at: i64,
    text: String,
}

/// What this device keeps about the directory's failures and its account checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DirectoryWatch {
    /// Failures kept for good, by kind (one announcement per kind).
    alarms: BTreeMap<String, String>,
    /// The newest checkpoint lacked the witness quorum: kept until a refresh succeeds.
    short_of_quorum: Option<String>,
    /// Devices the server listed for this user without the directory, already reported.
    ghosts: Vec<String>,
    /// Such devices not reported yet, with the checkpoint size when first seen: with
    /// witnesses, the checkpoint served may lag the server's newest approvals.
    #[serde(default)]
    suspects: BTreeMap<String, u64>,
}

/// A failed check of what the server shows of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    Config(String),
    Signature(String),
    Quorum(String),
    Rollback(String),
    Fork(String),
    Rule(String),
    /// The server refuses this device as revoked, but the directory does not say so.
    Refused(String),
    /// The directory does not hold the identity this device holds for its user.
    Identity(String),
    /// A veto of this device's was not published.
    Veto(String),
}

impl Problem {
    fn kind(&self) -> &'static str {
        match self {
            Problem::Config(_) => "config",
            Problem::Signature(_) => "signature",
            Problem::Quorum(_) => "quorum",
            Problem::Rollback(_) => "rollback",
            Problem::Fork(_) => "fork",
            Problem::Rule(_) => "rule",
            Problem::Refused(_) => "refused",
            Problem::Identity(_) => "identity",
            Problem::Veto(_) => "veto",
        }
    }

    fn why(&self) -> &str {
        match self {
            Problem::Config(w)
            | Problem::Signature(w)
            | Problem::Quorum(w)
            | Problem::Rollback(w)
            | Problem::Fork(w)
            | Problem::Rule(w)
            | Problem::Refused(w)
            | Problem::Identity(w)
            | Problem::Veto(w) => w,
        }
    }
}

/// The shortest reset wait the pinned configuration allows, as the rules count it.
fn pinned_reset_wait(config: &DirectoryConfig) -> i64 {
    i64::try_from(config.min_reset_wait_secs).unwrap_or(i64::MAX)
}

/// Checks a configuration before pinning it: every key must parse and the quorum be
/// reachable.
fn check_config(config: &DirectoryConfig) -> Result<(), Error> {
    let bad =
        |why: String| Error::Directory(format!("the server's directory configuration: {why}"));
    NoteVerifier::parse(&config.log_key).map_err(|e| bad(format!("log key: {e}")))?;
    for witness in &config.witnesses {
        CosignatureVerifier::parse(witness).map_err(|e| bad(format!("witness key: {e}")))?;
    }
    if config.quorum > config.witnesses.len() {
        return Err(bad(format!(
            "a quorum of {} among {} witnesses",
            config.quorum,
            config.witnesses.len()
        )));
    }
    Ok(())
}

/// Opens a signed checkpoint note under the pinned configuration: signed by the log key,
/// of the pinned origin, and cosigned by at least `quorum` distinct pinned witnesses.
pub(crate) fn verify_checkpoint(
    config: &DirectoryConfig,
    note: &str,
) -> Result<Checkpoint, Problem> {
    let log = NoteVerifier::parse(&config.log_key)
        .map_err(|e| Problem::Signature(format!("the pinned log key does not parse ({e})")))?;
    let text = NoteVerifier::open(note, &[log]).map_err(|e| {
        Problem::Signature(format!(
            "its checkpoint is not signed by the pinned directory log key ({e})"
        ))
    })?;
    let checkpoint = Checkpoint::parse(text)
        .map_err(|e| Problem::Signature(format!("its signed checkpoint does not parse ({e})")))?;
    if checkpoint.origin != config.origin {
        return Err(Problem::Signature(format!(
            "its checkpoint is of the log {:?}, not the pinned {:?}",
            checkpoint.origin, config.origin
        )));
    }
    let mut counted: Vec<&String> = Vec::new();
    for witness in &config.witnesses {
        if counted.contains(&witness) {
            continue;
        }
        let cosigned = CosignatureVerifier::parse(witness)
            .ok()
            .is_some_and(|w| w.verify(note).is_ok());
        if cosigned {
            counted.push(witness);
        }
    }
    if counted.len() < config.quorum {
        return Err(Problem::Quorum(format!(
            "its checkpoint of {} entries carries {} of the {} witness cosignatures this device requires",
            checkpoint.size,
            counted.len(),
            config.quorum
        )));
    }
    Ok(checkpoint)
}

/// Which alarm a copy that does not extend is (an error that is none: the copy is kept).
fn extend_problem(e: vellum_directory::Error) -> Result<Problem, Error> {
    let why = e.to_string();
    Ok(match e {
        vellum_directory::Error::Rollback { .. } => Problem::Rollback(why),
        vellum_directory::Error::Fork { .. } => Problem::Fork(why),
        vellum_directory::Error::BrokenRule { .. } => Problem::Rule(why),
        _ => return Err(Error::Directory(why)),
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("directory state serialises")
}

pub(crate) fn rfc3339_secs(unix_secs: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

impl Client {
    fn profile_json<T: serde::de::DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<T, Error> {
        match self.store.profile_get(key)? {
            None => Ok(T::default()),
            Some(raw) => serde_json::from_slice(&raw)
                .map_err(|e| Error::Store(format!("profile {key} is corrupt: {e}"))),
        }
    }

    /// The configuration this device pinned, if any.
    pub(crate) fn pinned_directory(&self) -> Result<Option<DirectoryConfig>, Error> {
        self.store
            .profile_get(DIRECTORY_CONFIG)?
            .map(|raw| {
                serde_json::from_slice(&raw).map_err(|e| {
                    Error::Store(format!("profile {DIRECTORY_CONFIG} is corrupt: {e}"))
                })
            })
            .transpose()
    }

    async fn offered_directory(&self) -> Result<DirectoryConfig, Error> {
        self.api
            .call(Method::GET, "/v1/directory/config", None::<&()>, None, None)
            .await
    }

    /// Pins the server's directory configuration (log key, witnesses, quorum) at enrollment,
    /// or at the first refresh of a profile enrolled before the directory (trust on first
    /// use). Once pinned it never changes.
    pub(crate) async fn pin_directory(&mut self) -> Result<(), Error> {
        if self.pinned_directory()?.is_some() {
            return Ok(());
        }
        let config = self.offered_directory().await?;
        check_config(&config)?;
        self.store.profile_set(DIRECTORY_CONFIG, &to_json(&config))
    }

    /// Fetches the newest checkpoint, checks its signatures against the pinned log key and
    /// witness quorum, and catches the verified copy up (all or nothing). Returns the
    /// entries applied. Also compares the server's list of this user's devices with the
    /// copy. A failed check is an alarm and an error; the copy held stays.
    pub async fn refresh_directory(&mut self) -> Result<Vec<DirectoryEntry>, Error> {
        let _held = self.lock.hold()?;
        self.directory_checked = Some(Instant::now());
        let config = match self.pinned_directory()? {
            Some(config) => config,
            None => {
                tracing::info!("pinning the key directory's configuration on first use");
                self.pin_directory().await?;
                self.pinned_directory()?.expect("pinned just now")
            }
        };
        let offered = self.offered_directory().await?;
        if offered != config {
            // Judged by the pinned one all the same: the refresh goes on.
            self.directory_problem(Problem::Config(
                "the server now offers another directory configuration (log key, witnesses or quorum) than the one this device pinned; it is refused".into(),
            ))?;
        }
        // Before the checkpoint: a device the server approved before this point is in it.
        let devices: DeviceList = self
            .request(Method::GET, "/v1/devices", None::<&()>)
            .await?;
        let note: DirectoryCheckpoint = self
            .request(Method::GET, "/v1/directory/checkpoint", None::<&()>)
            .await?;
        let checkpoint = match verify_checkpoint(&config, &note.note) {
            Ok(checkpoint) => checkpoint,
            Err(problem) => return Err(self.directory_problem(problem)?),
        };
        let mut mirror = self.directory()?;
        let leaves = self.fetch_leaves(mirror.size(), checkpoint.size).await?;
        // Without witnesses the server serves each checkpoint as it appends: a device it
        // listed before this checkpoint and that is not in it was never approved.
        let lag_free = config.quorum == 0;
        // The reset wait pinned at enrollment: a shorter reset breaks the rules here.
        mirror.state.min_reset_wait_secs = pinned_reset_wait(&config);
        self.apply_directory(mirror, &leaves, &checkpoint, &devices.devices, lag_free)
    }

    /// Refreshes until the verified copy covers the entry the server appended at `index`
    /// (with witnesses, for up to [`PUBLISH_WAIT`]: their cosigning lags the appends);
    /// returns the entries applied meanwhile.
    pub(crate) async fn refresh_past(&mut self, index: u64) -> Result<Vec<DirectoryEntry>, Error> {
        let mut applied = self.refresh_directory().await?;
        let witnessed = self.pinned_directory()?.is_some_and(|c| c.quorum > 0);
        let deadline = Instant::now() + PUBLISH_WAIT;
        while witnessed && self.directory()?.size() <= index && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            applied.extend(self.refresh_directory().await?);
        }
        Ok(applied)
    }

    /// The entries from `from` up to `to`, in pages. Signed requests not through
    /// [`Client::request`]: a revoked device reads them too, to judge its revocation.
    async fn fetch_leaves(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, Error> {
        let mut leaves = Vec::new();
        let mut next = from;
        while next < to {
            let wanted = (to - next).min(ENTRIES_PAGE);
            let path = format!("/v1/directory/entries?start={next}&limit={wanted}");
            let page: DirectoryEntries = self
                .api
                .call(Method::GET, &path, None::<&()>, Some(&self.signer()), None)
                .await?;
            if page.start != next || page.entries.is_empty() {
                return Err(Error::Directory(format!(
                    "the server did not hand out the directory's entries from {next} (its checkpoint has {to})"
                )));
            }
            for leaf in page.entries.into_iter().take(wanted as usize) {
                leaves.push(leaf.into_inner());
                next += 1;
            }
        }
        Ok(leaves)
    }

    /// After the server refused this device as revoked: whether a verified copy of the
    /// directory, caught up to the newest checkpoint, says so (this device revoked, or its
    /// user's identity reset), or the device was never in it (pending, no identity key). The copy held is not replaced: the device is wiped, or it
    /// goes on as before. A failed check is an alarm, as in a refresh.
    pub(crate) async fn revoked_in_directory(&self) -> Result<bool, Error> {
        let config = self
            .pinned_directory()?
            .ok_or_else(|| Error::Directory("this device never pinned the key directory".into()))?;
        let note: DirectoryCheckpoint = self
            .api
            .call(
                Method::GET,
                "/v1/directory/checkpoint",
                None::<&()>,
                Some(&self.signer()),
                None,
            )
            .await?;
        let checkpoint = match verify_checkpoint(&config, &note.note) {
            Ok(checkpoint) => checkpoint,
            Err(problem) => return Err(self.record_problem(problem)?.0),
        };
        let held = self.directory()?;
        let mut mirror = held.clone();
        mirror.state.min_reset_wait_secs = pinned_reset_wait(&config);
        let leaves = self.fetch_leaves(mirror.size(), checkpoint.size).await?;
        if let Err(e) = mirror.extend(&leaves, &checkpoint) {
            return Err(self.record_problem(extend_problem(e)?)?.0);
        }
        let own = mirror.state.user(&self.user);
        let listed = own.and_then(|u| u.devices.get(&self.device_id));
        if listed.is_none() && self.identity_key()?.is_none() {
            // Never approved (pending): the directory cannot speak for it, and it holds
            // nothing a wipe could take from its user.
            return Ok(true);
        }
        let generation = held.state.user(&self.user).map_or(0, |u| u.generation);
        Ok(own.is_some_and(|u| u.generation > generation)
            || listed.is_some_and(|d| d.status == vellum_directory::DeviceStatus::Revoked))
    }

    /// The local half of a refresh: extends `mirror` by `leaves` to `checkpoint` (whose
    /// signatures were checked) and stores it with what it implies, in one transaction.
    pub(crate) fn apply_directory(
        &mut self,
        mut mirror: Mirror,
        leaves: &[Vec<u8>],
        checkpoint: &Checkpoint,
        devices: &[DeviceInfo],
        lag_free: bool,
    ) -> Result<Vec<DirectoryEntry>, Error> {
        let first = mirror.size() == 0;
        let own_identity = |m: &Mirror| m.state.user(&self.user).and_then(|u| u.identity);
        let had = own_identity(&mirror);
        let applied = match mirror.extend(leaves, checkpoint) {
            Ok(applied) => applied,
            Err(e) => {
                let problem = extend_problem(e)?;
                return Err(self.directory_problem(problem)?);
            }
        };
        let mut watch: DirectoryWatch = self.profile_json(DIRECTORY_WATCH)?;
        watch.short_of_quorum = None;
        let mut shown = Vec::new();
        self.store.begin()?;
        let saved = (|| {
            self.store
                .profile_set(DIRECTORY_MIRROR, &to_json(&mirror))?;
            shown.extend(self.take_in_identities(&mirror)?);
            if !first {
                shown.extend(self.revocations_in_chats(&applied)?);
            }
            // The first copy replays the whole history: it is no news.
            let mut notices = match first {
                true => Vec::new(),
                false => self.own_notices(&applied),
            };
            notices.extend(self.ghost_notices(&mirror, devices, &mut watch, lag_free));
            shown.extend(self.add_notices(notices)?);
            self.store.profile_set(DIRECTORY_WATCH, &to_json(&watch))
        })();
        self.finish_tx(saved)?;
        self.directory_shown.extend(shown);
        self.rosters_to_check |= !applied.is_empty();
        if let Some(why) = self.identity_mismatch(&mirror, had)? {
            // The copy is right (it is verified); what it says is the alarm.
            self.directory_problem(Problem::Identity(why))?;
        }
        Ok(applied)
    }

    /// On a device holding its user's identity key: the verified copy holding another
    /// identity for the user, or none any more (`had` it before), while it does not say this
    /// device was revoked, means the server put in an identity of its own choosing.
    fn identity_mismatch(
        &self,
        mirror: &Mirror,
        had: Option<Key32>,
    ) -> Result<Option<String>, Error> {
        let Some(identity) = self.identity_key()? else {
            return Ok(None);
        };
        let Some(own) = mirror.state.user(&self.user) else {
            return Ok(None);
        };
        let revoked = own
            .devices
            .get(&self.device_id)
            .is_some_and(|d| d.status == vellum_directory::DeviceStatus::Revoked);
        if revoked {
            return Ok(None);
        }
        Ok(match own.identity {
            Some(key) if key != identity.public() => Some(format!(
                "the key directory holds another identity for {} than the one this device holds",
                self.user
            )),
            None if had == Some(identity.public()) => Some(format!(
                "the key directory no longer holds the identity this device holds for {}",
                self.user
            )),
            _ => None,
        })
    }

    /// Keeps a failed check (see the module's doc), announces it in every chat when it is
    /// new, and returns the error to report.
    pub(crate) fn directory_problem(&mut self, problem: Problem) -> Result<Error, Error> {
        let (error, shown) = self.record_problem(problem)?;
        self.directory_shown.extend(shown);
        Ok(error)
    }

    /// [`Client::directory_problem`] without `&mut self`: the events are kept in the chats'
    /// histories (the next sync shows them) and returned.
    pub(crate) fn record_problem(
        &self,
        problem: Problem,
    ) -> Result<(Error, Vec<MessageRow>), Error> {
        let why = problem.why().to_owned();
        tracing::error!(%why, "{DIRECTORY_ALARM}");
        let mut watch: DirectoryWatch = self.profile_json(DIRECTORY_WATCH)?;
        let new = match &problem {
            // A witness may be late: until a refresh succeeds, announced once.
            Problem::Quorum(_) => watch.short_of_quorum.replace(why.clone()).is_none(),
            _ => watch
                .alarms
                .insert(problem.kind().to_owned(), why.clone())
                .is_none(),
        };
        let text = format!(
            "{DIRECTORY_ALARM}: {why}. This device keeps its last verified copy of the directory"
        );
        let mut shown = Vec::new();
        self.store.begin()?;
        let saved = (|| {
            if new {
                for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
                    shown.push(self.typed_event_row(
                        &chat.group_id,
                        None,
                        "",
                        ChatEvent::DirectoryAlarm { text: text.clone() },
                    )?);
                }
            }
            self.store.profile_set(DIRECTORY_WATCH, &to_json(&watch))
        })();
        self.finish_tx(saved)?;
        Ok((Error::Directory(why), shown))
    }

    /// What is wrong with the server's key directory as this device saw it: each is also an
    /// event in every chat. Also, while the copy shows a pending reset of this device's
    /// user's identity, that reset (it must not pass unseen). Reads only the profile.
    pub fn directory_alarms(&self) -> Result<Vec<String>, Error> {
        let watch: DirectoryWatch = self.profile_json(DIRECTORY_WATCH)?;
        let mut alarms: Vec<String> = watch
            .alarms
            .values()
            .chain(watch.short_of_quorum.iter())
            .map(|why| format!("{DIRECTORY_ALARM}: {why}"))
            .collect();
        if let Some(reset) = self
            .directory()?
            .state
            .user(&self.user)
            .and_then(|u| u.pending_reset.as_ref())
        {
            alarms.push(format!(
                "the administrator asked to reset {}'s identity; it takes effect at {} unless a device of yours vetoes it: `vellum devices veto-reset`",
                self.user,
                rfc3339_secs(reset.effective_at)
            ));
        }
        Ok(alarms)
    }

    /// The verified copy as of the last refresh (empty before the first).
    pub fn directory(&self) -> Result<Mirror, Error> {
        self.profile_json(DIRECTORY_MIRROR)
    }

    /// Whether a sync should refresh the directory: the server's is larger than the copy,
    /// or this process has not refreshed it lately.
    pub(crate) fn directory_due(&self, server_size: u64) -> Result<bool, Error> {
        if self
            .directory_checked
            .is_none_or(|t| t.elapsed() >= DIRECTORY_REFRESH)
        {
            return Ok(true);
        }
        Ok(server_size > self.directory()?.size())
    }

    /// The events and notices refreshes produced since the last call.
    pub(crate) fn take_directory_shown(&mut self) -> Vec<MessageRow> {
        std::mem::take(&mut self.directory_shown)
    }

    // ---- Other users' identities ----

    pub fn known_identities(&self) -> Result<BTreeMap<String, KnownIdentity>, Error> {
        self.profile_json(KNOWN_IDENTITIES)
    }

    /// Takes in every other user's identity from a new copy: first sight is trusted; a reset
    /// since is an event in every chat shared with the user and wants a confirmation.
    fn take_in_identities(&self, mirror: &Mirror) -> Result<Vec<MessageRow>, Error> {
        let mut known = self.known_identities()?;
        let mut shown = Vec::new();
        for (user, state) in &mirror.state.users {
            if *user == self.user || user.is_empty() {
                continue;
            }
            let identity = state.identity.map(hex::encode).unwrap_or_default();
            match known.get_mut(user) {
                None => {
                    known.insert(
                        user.clone(),
                        KnownIdentity {
                            identity,
                            confirmed: false,
                            generation: state.generation,
                            reset_seen: false,
                        },
                    );
                }
                Some(k) if state.generation > k.generation => {
                    *k = KnownIdentity {
                        identity,
                        confirmed: false,
                        generation: state.generation,
                        reset_seen: true,
                    };
                    for chat in self.chats_with(user)? {
                        let event = ChatEvent::IdentityReset { user: user.clone() };
                        shown.push(self.typed_event_row(&chat, None, "", event)?);
                    }
                }
                // A first identity (of a user listed at upgrade) or the one after a reset.
                Some(k) if k.identity != identity => k.identity = identity,
                Some(_) => {}
            }
        }
        self.store.profile_set(KNOWN_IDENTITIES, &to_json(&known))?;
        Ok(shown)
    }

    /// "bob's device … was revoked" in every chat of this device that holds it: the chats
    /// learn it now, before the next commit removes it.
    fn revocations_in_chats(&self, applied: &[DirectoryEntry]) -> Result<Vec<MessageRow>, Error> {
        let mut shown = Vec::new();
        for entry in applied.iter().filter(|e| e.user != self.user) {
            let (Change::RevokedByUser { device_id, .. } | Change::RevokedByAdmin { device_id }) =
                &entry.change
            else {
                continue;
            };
            for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
                let group = self.load_group(&chat.group_id)?;
                if roster(&group, &self.identity)?
                    .iter()
                    .any(|(_, c)| c.user == entry.user && c.device_id == *device_id)
                {
                    let event = ChatEvent::DeviceRevoked {
                        user: entry.user.clone(),
                        device_id: device_id.clone(),
                    };
                    shown.push(self.typed_event_row(&chat.group_id, None, "", event)?);
                }
            }
        }
        Ok(shown)
    }

    /// The chats this device is in where `user` has a device.
    fn chats_with(&self, user: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
            let group = self.load_group(&chat.group_id)?;
            if roster(&group, &self.identity)?
                .iter()
                .any(|(_, c)| c.user == user)
            {
                out.push(chat.group_id);
            }
        }
        Ok(out)
    }

    /// Refuses users whose identity was reset since this device last confirmed it.
    pub(crate) fn check_identities(&self, users: &[String]) -> Result<(), Error> {
        let known = self.known_identities()?;
        for user in users {
            if known.get(user).is_some_and(|k| k.reset_seen) {
                return Err(Error::Invalid(format!(
                    "{user}'s identity was reset by the administrator: compare safety numbers with `vellum safety {user}`, then run `vellum safety {user} --confirm` before adding them"
                )));
            }
        }
        Ok(())
    }

    /// The safety number of this device's user and `user` (for oneself, one's own digits),
    /// from the verified copy.
    pub fn safety(&self, user: &str) -> Result<SafetyNumber, Error> {
        let mirror = self.directory()?;
        let identity_of = |u: &str| mirror.state.user(u).and_then(|s| s.identity);
        let mine = identity_of(&self.user).ok_or_else(|| {
            Error::Invalid(
                "your account has no identity key in the key directory yet: there is no safety number"
                    .into(),
            )
        })?;
        if user == self.user {
            return Ok(SafetyNumber {
                user: user.to_owned(),
                identity_key: hex::encode(mine),
                number: user_digits(user, &mine),
                confirmed: true,
                reset_seen: false,
            });
        }
        let theirs = identity_of(user).ok_or_else(|| {
            Error::Invalid(format!(
                "{user} has no identity key in the key directory (no such user, or their identity was reset and no device of theirs has started a new one yet)"
            ))
        })?;
        let identity_key = hex::encode(theirs);
        let known = self.known_identities()?.remove(user);
        Ok(SafetyNumber {
            user: user.to_owned(),
            number: safety_number((&self.user, &mine), (user, &theirs)),
            confirmed: known
                .as_ref()
                .is_some_and(|k| k.confirmed && k.identity == identity_key),
            reset_seen: known.is_some_and(|k| k.reset_seen),
            identity_key,
        })
    }

    /// Records that this device's user compared `user`'s safety number: their current
    /// identity is confirmed, and they can be added to chats again after a reset.
    pub fn confirm_identity(&mut self, user: &str) -> Result<SafetyNumber, Error> {
        let _held = self.lock.hold()?;
        if user == self.user {
            return Err(Error::Invalid(
                "your own identity needs no confirmation".into(),
            ));
        }
        let number = self.safety(user)?;
        let generation = self
            .directory()?
            .state
            .user(user)
            .map_or(0, |s| s.generation);
        let mut known = self.known_identities()?;
        known.insert(
            user.to_owned(),
            KnownIdentity {
                identity: number.identity_key.clone(),
                confirmed: true,
                generation,
                reset_seen: false,
            },
        );
        self.store.profile_set(KNOWN_IDENTITIES, &to_json(&known))?;
        Ok(SafetyNumber {
            confirmed: true,
            reset_seen: false,
            ..number
        })
    }

    // ---- This device's own account ----

    /// The notices of directory entries about this device's user.
    fn own_notices(&self, applied: &[DirectoryEntry]) -> Vec<String> {
        let mut out = Vec::new();
        for entry in applied.iter().filter(|e| e.user == self.user) {
            out.push(match &entry.change {
                Change::Identity { device, .. } if device.device_id == self.device_id => {
                    continue
                }
                Change::Identity { device, .. } => format!(
                    "device {} started a new identity key for your account",
                    device.device_id
                ),
                Change::Approved {
                    device, by_device, ..
                } => format!(
                    "device {} was approved by your device {by_device}",
                    device.device_id
                ),
                Change::RevokedByUser {
                    device_id,
                    by_device,
                    ..
                } => format!("your device {device_id} was revoked by your device {by_device}"),
                Change::RevokedByAdmin { device_id } => {
                    format!("your device {device_id} was revoked by the administrator")
                }
                Change::ResetRequested { effective_at, .. } => format!(
                    "the administrator asked to reset your identity; it takes effect at {} unless a device of yours vetoes it (`vellum devices veto-reset`)",
                    rfc3339_secs(*effective_at)
                ),
                Change::ResetVetoed { by_device, .. } => {
                    format!("the reset of your identity was vetoed by your device {by_device}")
                }
                Change::Reset { .. } => "your identity was reset".into(),
                Change::Legacy { .. } | Change::UpgradeDone => continue,
            });
        }
        out
    }

    /// A device the server lists for this user (neither pending nor revoked) that the
    /// directory does not vouch for was put there without the user: reported once each,
    /// at once when the checkpoint cannot lag (`lag_free`), else once the directory grew
    /// past the checkpoint it was first seen at and still does not vouch for it.
    fn ghost_notices(
        &self,
        mirror: &Mirror,
        devices: &[DeviceInfo],
        watch: &mut DirectoryWatch,
        lag_free: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut suspects = BTreeMap::new();
        for d in devices {
            let listed = matches!(
                d.state,
                vellum_wire::DeviceState::Approved | vellum_wire::DeviceState::Legacy
            );
            if !listed
                || d.user != self.user
                || d.device_id == self.device_id
                || watch.ghosts.contains(&d.device_id)
                || mirror
                    .state
                    .vouch(&self.user, &d.device_id, &d.signature_key)
                    .is_vouched()
            {
                continue;
            }
            let first_seen = watch
                .suspects
                .get(&d.device_id)
                .copied()
                .unwrap_or(mirror.size());
            if !lag_free && first_seen >= mirror.size() {
                suspects.insert(d.device_id.clone(), first_seen);
                continue;
            }
            tracing::error!(device = %d.device_id, "the server lists a device of this user that the key directory does not vouch for");
            watch.ghosts.push(d.device_id.clone());
            out.push(format!(
                "a device you did not approve was added to your account: {}",
                d.device_id
            ));
        }
        watch.suspects = suspects;
        out
    }

    /// Keeps `texts` as account notices; returns them as rows to show.
    fn add_notices(&self, texts: Vec<String>) -> Result<Vec<MessageRow>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut kept: Vec<AccountNotice> = self.profile_json(ACCOUNT_NOTICES)?;
        let now = now_millis();
        let new: Vec<AccountNotice> = texts
            .into_iter()
            .map(|text| AccountNotice {
                id: random_id(),
                at: now,
                text,
            })
            .collect();
        kept.extend(new.iter().cloned());
        let excess = kept.len().saturating_sub(NOTICES_KEPT);
        kept.drain(..excess);
        self.store.profile_set(ACCOUNT_NOTICES, &to_json(&kept))?;
        Ok(new.into_iter().map(notice_row).collect())
    }

    /// The account notices kept, oldest first, as event rows with an empty chat id.
    pub fn account_notices(&self) -> Result<Vec<MessageRow>, Error> {
        let kept: Vec<AccountNotice> = self.profile_json(ACCOUNT_NOTICES)?;
        Ok(kept.into_iter().map(notice_row).collect())
    }

    // ---- Rosters ----

    /// The devices of `group` the directory copy does not vouch for, with why. The archiver
    /// is not in the directory: the custodians' binding vouches for it (`trust.rs`).
    pub(crate) fn unvouched_members(
        &self,
        group: &Group,
        mirror: &Mirror,
    ) -> Result<Vec<(String, String, Vouch)>, Error> {
        Ok(roster(group, &self.identity)?
            .into_iter()
            .filter(|(_, c)| c.user != RECORDS_USER)
            .filter_map(|(_, c)| {
                let vouch = mirror.state.vouch(&c.user, &c.device_id, &c.signature_key);
                (!vouch.is_vouched()).then_some((c.user, c.device_id, vouch))
            })
            .collect())
    }

    fn unvouched_in(&self, group_id: &str) -> Result<Vec<(String, String, Vouch)>, Error> {
        let mirror = self.directory()?;
        if !mirror.state.upgrade_done {
            // No copy yet: nothing is vouched for, nothing can be judged.
            return Err(Error::Directory(
                "this device holds no verified copy of the key directory yet: sync when the server is reachable".into(),
            ));
        }
        self.unvouched_members(&self.load_group(group_id)?, &mirror)
    }

    /// Commits, in one commit, the removal of every device of the chat that the directory
    /// does not vouch for, judged against a fresh copy. Until that is done nothing may be
    /// sent in the chat: the error says why.
    pub(crate) async fn remove_unvouched(&mut self, group_id: &str) -> Result<(), Error> {
        if self.sink.is_some() || self.enforcing {
            return Ok(());
        }
        let found = match self.unvouched_in(group_id) {
            Err(Error::Directory(_)) => {
                self.refresh_directory().await?;
                self.unvouched_in(group_id)?
            }
            other => other?,
        };
        if found.is_empty() {
            return Ok(());
        }
        // The copy may lag (a device approved moments ago): judge against a fresh one. If
        // the server cannot give one, the copy held decides.
        if let Err(e) = self.refresh_directory().await {
            tracing::warn!(error = %e, "judging the chat's devices against the directory copy held");
        }
        let found = self.unvouched_in(group_id)?;
        if let Some((_, _, vouch)) = found.iter().find(|(_, d, _)| *d == self.device_id) {
            return Err(Error::Directory(format!(
                "the key directory does not vouch for this device ({}): it sends nothing",
                vouch.reason()
            )));
        }
        if found.is_empty() {
            return Ok(());
        }
        let described: Vec<String> = found
            .iter()
            .map(|(user, device, vouch)| {
                format!(
                    "{user}'s device {} ({})",
                    crate::events::short_device(device),
                    vouch.reason()
                )
            })
            .collect();
        tracing::info!(chat = group_id, devices = ?described, "removing devices the key directory does not vouch for");
        let targets: Vec<String> = found.into_iter().map(|(_, d, _)| d).collect();
        let identity = self.identity.clone();
        // No message goes out (and no other removal starts) from the syncs inside.
        let flushing = std::mem::replace(&mut self.flushing, true);
        self.enforcing = true;
        let removed = self
            .commit_with_rebase(group_id, true, move |group| {
                let members = roster(group, &identity)?;
                let mut builder = group.commit_builder();
                let mut any = false;
                for (index, cert) in members {
                    if targets.contains(&cert.device_id) {
                        builder = builder.remove_member(index)?;
                        any = true;
                    }
                }
                Ok(if any { Some(builder.build()?) } else { None })
            })
            .await;
        self.enforcing = false;
        self.flushing = flushing;
        removed.map_err(|e| match e {
            Error::Network(_) => e,
            e => Error::Directory(format!(
                "{} must leave this chat before anything is sent there, and its removal could not be committed: {e}",
                described.join(", ")
            )),
        })
    }

    /// After a sync: removes the devices the directory does not vouch for from every chat.
    /// A chat where that fails refuses sends until it succeeds; the sync goes on.
    pub(crate) async fn remove_unvouched_everywhere(&mut self) -> Result<(), Error> {
        if self.sink.is_some() || self.enforcing || !self.rosters_to_check {
            return Ok(());
        }
        let mirror = self.directory()?;
        if !mirror.state.upgrade_done {
            return Ok(());
        }
        self.rosters_to_check = false;
        for chat in self.store.chats()?.into_iter().filter(|c| !c.removed) {
            let group = self.load_group(&chat.group_id)?;
            if self
                .unvouched_members(&group, &mirror)?
                .iter()
                .all(|(_, d, _)| *d == self.device_id)
            {
                continue;
            }
            match Box::pin(self.remove_unvouched(&chat.group_id)).await {
                Ok(()) | Err(Error::RemovedFromChat) => {}
                Err(e) => {
                    // Tried again at the next sync; sends there are refused meanwhile.
                    self.rosters_to_check = true;
                    tracing::warn!(chat = %chat.group_id, error = %e, "could not remove the devices the key directory does not vouch for")
                }
            }
        }
        Ok(())
    }

    /// While processing a commit: why it removed each device the directory copy does not
    /// vouch for (revoked, unknown, another key). Every member gives the same reason, from
    /// its own copy: in the device's `DeviceRemoved` event, or, when the user's last device
    /// went, in an `UnvouchedDeviceRemoved` beside `MemberRemoved`.
    pub(crate) fn explain_removals(
        &self,
        before: &[(u32, DeviceCertificate)],
        after: &[(u32, DeviceCertificate)],
        events: &mut Vec<ChatEvent>,
    ) -> Result<(), Error> {
        let removed: Vec<&DeviceCertificate> = before
            .iter()
            .map(|(_, c)| c)
            .filter(|c| {
                c.user != RECORDS_USER && !after.iter().any(|(_, a)| a.device_id == c.device_id)
            })
            .collect();
        if removed.is_empty() {
            return Ok(());
        }
        let mirror = self.directory()?;
        if !mirror.state.upgrade_done {
            return Ok(());
        }
        // A removal commit always yields a removal event naming its committer.
        let by = events
            .iter()
            .find_map(|e| match e {
                ChatEvent::MemberRemoved { by, .. } | ChatEvent::DeviceRemoved { by, .. } => {
                    Some(by.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| "someone".into());
        for c in removed {
            let vouch = mirror.state.vouch(&c.user, &c.device_id, &c.signature_key);
            if vouch.is_vouched() {
                continue;
            }
            let explained = events.iter_mut().find_map(|e| match e {
                ChatEvent::DeviceRemoved {
                    device_id, reason, ..
                } if *device_id == c.device_id => Some(reason),
                _ => None,
            });
            match explained {
                Some(reason) => *reason = Some(vouch.reason().to_owned()),
                None => events.push(ChatEvent::UnvouchedDeviceRemoved {
                    by: by.clone(),
                    user: c.user.clone(),
                    device_id: c.device_id.clone(),
                    reason: vouch.reason().to_owned(),
                }),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

fn notice_row(notice: AccountNotice) -> MessageRow {
    MessageRow {
        group_id: String::new(),
        id: notice.id,
        kind: MessageKind::Event,
        sender_user: String::new(),
        sender_device: String::new(),
        sent_at: notice.at,
        received_at: notice.at,
        seq: None,
        event: Some(ChatEvent::Notice {
            text: notice.text.clone(),
        }),
        extra: Default::default(),
        text: notice.text,
        expires_at: None,
        burn_secs: None,
        read_at: Some(notice.at),
        burn_at: None,
        archived_leaf: None,
        salt: None,
    }
}
