//! The key directory's server side (issue 9): the log of who holds which identity key and
//! which devices each identity approved, signed as C2SP checkpoints with `DATA/directory.key`
//! and cosigned by witnesses.
//!
//! The server keeps the replayed [`DirectoryState`] and the leaf hashes in memory. Every
//! append is checked by applying it to a copy of the state first (the same rules every device
//! replays), then the leaf, its change to the devices table and the checkpoint over the new
//! log are stored in one transaction, and only then does memory move on. Appends are
//! serialised by one lock; the rules' signature checks, the copy and the signing run on the
//! blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Notify, OwnedMutexGuard};
use vellum_directory::{Change, DeviceRef, DirectoryState, MAX_ENTRY_BYTES};
use vellum_http::{codes, ApiError};
use vellum_store::{DeviceChange, Job, NewDirectoryEntry, Store};
use vellum_tlog::{Checkpoint, Hash, NoteSigner, NoteVerifier, RootBuilder};
use vellum_wire::{DirectoryConfig, RECORDS_USER};
use vellum_witness::WitnessTarget;

/// Why the directory cannot be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the key directory cannot be replayed: {0}")]
    Replay(vellum_directory::Error),
    #[error("the key directory's storage: {0}")]
    Store(#[from] vellum_store::Error),
    #[error("the key directory's checkpoint: {0}")]
    Checkpoint(String),
    #[error("the key directory's configuration: {0}")]
    Config(String),
}

/// One change to append: the entry's user, what it changes, and its effect on the devices.
#[derive(Debug, Clone)]
pub struct Append {
    pub user: String,
    pub change: Change,
    pub devices: Option<DeviceChange>,
}

/// The checkpoint devices are served: the newest one that carries the witness quorum (with
/// no witnesses, the newest one).
#[derive(Debug, Clone)]
struct Published {
    size: u64,
    note: Arc<str>,
}

/// What the append lock guards.
struct Log {
    state: DirectoryState,
    hashes: Vec<Hash>,
    builder: RootBuilder,
    /// The newest checkpoint's note, with the cosignatures it has so far.
    note: String,
}

pub struct Directory {
    signer: Arc<NoteSigner>,
    config: DirectoryConfig,
    witnesses: Vec<WitnessTarget>,
    log: Arc<tokio::sync::Mutex<Log>>,
    published: RwLock<Published>,
    /// The size each witness last cosigned (0: not known yet).
    cosigned: Mutex<Vec<u64>>,
    /// The checkpoint size last reported as below the quorum (reported once per size).
    below_quorum: AtomicU64,
    /// Signalled at each new checkpoint, for the witnesses' task.
    pub(crate) new_checkpoint: Notify,
    /// The log's size after each change this node made to it (an append, a cosignature):
    /// other nodes of the deployment are told to look again.
    pub(crate) changed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How often an append is prepared again after losing the race to another node's.
const APPEND_ATTEMPTS: u32 = 16;

fn refused(e: vellum_directory::Error) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        codes::DIRECTORY_REFUSED,
        e.to_string(),
    )
}

fn sign(signer: &NoteSigner, size: u64, root: Hash) -> Result<String, vellum_tlog::Error> {
    signer.sign(
        &Checkpoint {
            origin: signer.name().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
        .to_text(),
    )
}

/// The entries, the state after them and the signed checkpoint, before anything is stored.
struct Prepared {
    state: DirectoryState,
    builder: RootBuilder,
    hashes: Vec<Hash>,
    entries: Vec<NewDirectoryEntry>,
    note: String,
}

/// Applies `appends` to a copy of `log`'s state, as entries timed `now`, and signs the
/// checkpoint over the log they make. Nothing in `log` changes.
fn prepare(
    log: &Log,
    signer: &NoteSigner,
    now: i64,
    appends: Vec<Append>,
) -> Result<Prepared, ApiError> {
    let mut state = log.state.clone();
    let mut builder = log.builder.clone();
    let mut hashes = Vec::with_capacity(appends.len());
    let mut entries = Vec::with_capacity(appends.len());
    for append in appends {
        let index = state.size;
        let body = state
            .next_entry(&append.user, now, append.change)
            .to_bytes();
        if body.len() > MAX_ENTRY_BYTES {
            return Err(ApiError::bad_request(format!(
                "a directory entry is at most {MAX_ENTRY_BYTES} bytes"
            )));
        }
        state.apply(&body).map_err(refused)?;
        let hash = vellum_tlog::leaf_hash(&body);
        builder.push(hash);
        hashes.push(hash);
        entries.push(NewDirectoryEntry {
            index,
            user: append.user,
            body,
            change: append.devices,
        });
    }
    let note = sign(signer, builder.size(), builder.root()).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a directory checkpoint");
        ApiError::internal()
    })?;
    Ok(Prepared {
        state,
        builder,
        hashes,
        entries,
        note,
    })
}

impl Directory {
    /// Opens the directory kept in `store`: replays every entry (an entry that breaks a rule
    /// stops the start, naming its index) and checks the stored checkpoint against the log.
    /// An empty log gets the upgrade listing first: a `legacy` entry for each device that
    /// existed before the directory (every user but `records`, oldest first) and
    /// `upgrade_done`, in one transaction; a new deployment's log is `upgrade_done` alone.
    pub async fn open(
        store: &Arc<dyn Store>,
        signer: NoteSigner,
        witnesses: Vec<WitnessTarget>,
        quorum: Option<usize>,
        min_reset_wait_secs: u64,
        now: i64,
    ) -> Result<Self, DirectoryError> {
        let quorum = quorum.unwrap_or(witnesses.len());
        if quorum > witnesses.len() || (quorum == 0 && !witnesses.is_empty()) {
            return Err(DirectoryError::Config(format!(
                "a witness quorum of {quorum} with {} witnesses",
                witnesses.len()
            )));
        }
        let config = DirectoryConfig {
            origin: signer.name().to_owned(),
            log_key: signer.verifier_key(),
            witnesses: witnesses
                .iter()
                .map(|w| w.verifier.verifier_key())
                .collect(),
            quorum,
            min_reset_wait_secs,
        };
        let signer = Arc::new(signer);
        let mut log = Log {
            state: DirectoryState::default(),
            hashes: Vec::new(),
            builder: RootBuilder::new(),
            note: String::new(),
        };
        loop {
            catch_up(&mut log, store).await?;
            if log.state.size > 0 {
                break;
            }
            let listing = upgrade_listing(store).await?;
            // The listing ends with `upgrade_done`; anything before it is an existing device.
            let log_had_devices = listing.len() > 1;
            let prepared = prepare(&log, &signer, now, listing).map_err(|e| {
                DirectoryError::Checkpoint(format!("the upgrade listing: {}", e.message))
            })?;
            match store
                .append_directory_entries(prepared.entries, prepared.note, now)
                .await
            {
                Ok(()) if log_had_devices => {
                    tracing::info!("key directory: listed the devices existing at the upgrade")
                }
                Ok(()) => tracing::info!("key directory: started"),
                // Another node listed them first: read its listing.
                Err(vellum_store::Error::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Entries from before the floor was raised stay valid; new ones must keep it.
        log.state.min_reset_wait_secs = i64::try_from(min_reset_wait_secs).unwrap_or(i64::MAX);
        log.note = match store.directory_checkpoint().await? {
            Some(note) => check_stored(&signer, &log, note)?,
            None => sign(&signer, log.builder.size(), log.builder.root())
                .map_err(|e| DirectoryError::Checkpoint(e.to_string()))?,
        };
        let published = Published {
            size: log.state.size,
            note: log.note.as_str().into(),
        };
        Ok(Self {
            signer,
            cosigned: Mutex::new(vec![0; witnesses.len()]),
            below_quorum: AtomicU64::new(u64::MAX),
            config,
            witnesses,
            log: Arc::new(tokio::sync::Mutex::new(log)),
            published: RwLock::new(published),
            new_checkpoint: Notify::new(),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    pub fn witnesses(&self) -> &[WitnessTarget] {
        &self.witnesses
    }

    /// The size of the checkpoint devices are served.
    pub fn size(&self) -> u64 {
        self.published_now().size
    }

    /// The checkpoint devices are served: the newest carrying the witness quorum.
    pub fn checkpoint(&self) -> (u64, Arc<str>) {
        let published = self.published_now();
        (published.size, published.note)
    }

    fn published_now(&self) -> Published {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many of the configured witnesses cosigned `note`.
    fn cosigners(&self, note: &str) -> usize {
        self.witnesses
            .iter()
            .filter(|w| w.verifier.verify(note).is_ok())
            .count()
    }

    /// Serves `log`'s newest checkpoint if it carries the witness quorum.
    fn publish(&self, log: &Log) {
        if self.cosigners(&log.note) >= self.config.quorum {
            *self.published.write().unwrap_or_else(|p| p.into_inner()) = Published {
                size: log.state.size,
                note: log.note.as_str().into(),
            };
        }
    }

    /// Reads the current state (under the append lock, so never half an append).
    pub async fn read<R>(&self, f: impl FnOnce(&DirectoryState) -> R) -> R {
        f(&self.log.lock().await.state)
    }

    /// Runs `f` under the append lock: for a change to the store that must not interleave
    /// with an append (revoking a device the directory does not list yet).
    pub async fn exclusive<R, F>(&self, f: impl FnOnce(&DirectoryState) -> F) -> R
    where
        F: std::future::Future<Output = R>,
    {
        let log = self.log.lock().await;
        f(&log.state).await
    }

    /// Appends what `build` asks for, given the current state (it may refuse, or ask for
    /// nothing): checked against the directory's rules on a copy, then stored with the
    /// devices' changes and the new checkpoint in one transaction. Returns the indexes
    /// appended, `None` if nothing was asked for. A rule broken is 422 `directory_refused`,
    /// and nothing changes.
    pub async fn append(
        &self,
        store: &Arc<dyn Store>,
        now: i64,
        build: impl Fn(&DirectoryState) -> Result<Vec<Append>, ApiError>,
    ) -> Result<Option<std::ops::Range<u64>>, ApiError> {
        let mut log = self.log.clone().lock_owned().await;
        // Another try only after another node appended (the store's index check): each
        // conflict means another append succeeded, so under a burst of enrollments through
        // several nodes every one gets through within a few catch-ups.
        for attempt in 1..=APPEND_ATTEMPTS {
            let appends = build(&log.state)?;
            if appends.is_empty() {
                return Ok(None);
            }
            let first = log.state.size;
            let signer = self.signer.clone();
            let (returned, prepared) = tokio::task::spawn_blocking(move || {
                let prepared = prepare(&log, &signer, now, appends);
                (log, prepared)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "a directory append panicked");
                ApiError::internal()
            })?;
            log = returned;
            let mut prepared = prepared?;
            let entries = std::mem::take(&mut prepared.entries);
            match store
                .append_directory_entries(entries, prepared.note.clone(), now)
                .await
            {
                Ok(()) => {
                    self.commit(&mut log, prepared);
                    return Ok(Some(first..log.state.size));
                }
                Err(vellum_store::Error::Conflict(_)) if attempt < APPEND_ATTEMPTS => {
                    catch_up(&mut log, store).await.map_err(|e| {
                        tracing::error!(error = %e, "cannot catch up with the key directory");
                        ApiError::internal()
                    })?;
                }
                Err(vellum_store::Error::Conflict(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            codes::CONFLICT,
            "the key directory moved on meanwhile; try again",
        ))
    }

    fn commit(&self, log: &mut OwnedMutexGuard<Log>, prepared: Prepared) {
        log.state = prepared.state;
        log.builder = prepared.builder;
        log.hashes.extend(prepared.hashes);
        log.note = prepared.note;
        self.publish(log);
        self.new_checkpoint.notify_one();
        self.changed.send_replace(log.state.size);
    }

    /// Catches up with what other nodes of the deployment appended (and cosigned) since
    /// this node last looked: the entries, then the stored checkpoint if it covers exactly
    /// the log read (a later one is taken at the next look).
    pub async fn refresh(&self, store: &Arc<dyn Store>) -> Result<(), DirectoryError> {
        let mut log = self.log.lock().await;
        catch_up(&mut log, store).await?;
        let Some(note) = store.directory_checkpoint().await? else {
            return Ok(());
        };
        if note != log.note {
            match check_stored(&self.signer, &log, note) {
                Ok(note) => {
                    log.note = note;
                    self.publish(&log);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the key directory moved on while read; looking again later")
                }
            }
        }
        Ok(())
    }

    /// Catches up first if another node appended since this one last looked (issue 13: a
    /// NATS hint or the next poll may not have come yet), so nothing served from memory is
    /// older than the store. Costs one indexed lookup of a single entry when current.
    pub async fn catch_up_with(&self, store: &Arc<dyn Store>) -> Result<(), DirectoryError> {
        let size = self.log.lock().await.state.size;
        if store.directory_entries(size, 1).await?.is_empty() {
            return Ok(());
        }
        self.refresh(store).await
    }

    /// One round of witnessing: the newest checkpoint goes to each witness that has not
    /// cosigned it; verified cosignatures are added to it (and stored). Returns how many
    /// witnesses cosigned it.
    pub async fn cosign(&self, store: &Arc<dyn Store>, http: &reqwest::Client) -> usize {
        let (size, note, hashes) = {
            let log = self.log.lock().await;
            let missing = self.cosigners(&log.note) < self.witnesses.len();
            // The leaf hashes only when a proof may be needed.
            let hashes = missing.then(|| Arc::new(log.hashes.clone()));
            (log.state.size, log.note.clone(), hashes.unwrap_or_default())
        };
        let mut cosigners = 0;
        for (i, target) in self.witnesses.iter().enumerate() {
            if target.verifier.verify(&note).is_ok() {
                cosigners += 1;
                continue;
            }
            let cosigned = self.cosigned.lock().unwrap_or_else(|p| p.into_inner())[i];
            let proof = |old: u64| {
                let hashes = hashes.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        vellum_tlog::consistency_proof(&hashes, old, size)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
                }
            };
            let lines =
                match vellum_witness::cosign(http, target, cosigned, size, &note, proof).await {
                    Ok(lines) => lines,
                    Err(e) => {
                        let error = match e {
                            vellum_witness::CosignError::Proof(e) => e,
                            vellum_witness::CosignError::Witness(e) => e.to_string(),
                        };
                        tracing::warn!(
                            witness = target.verifier.name(),
                            size,
                            %error,
                            "no cosignature of the key directory's checkpoint; retrying later"
                        );
                        continue;
                    }
                };
            // The witness holds this size now, whatever becomes of its lines.
            self.cosigned.lock().unwrap_or_else(|p| p.into_inner())[i] = size;
            match self.add_cosignature(store, size, &lines, target).await {
                Ok(true) => cosigners += 1,
                Ok(false) => tracing::debug!(
                    size,
                    "the key directory grew while a witness cosigned; the next round submits the newer checkpoint"
                ),
                Err(e) => tracing::warn!(
                    witness = target.verifier.name(),
                    size,
                    error = %e,
                    "a witness's cosignature of the key directory was not kept"
                ),
            }
        }
        let reported = self.below_quorum.swap(size, Ordering::Relaxed);
        if cosigners < self.config.quorum && reported != size {
            tracing::warn!(
                size,
                cosigners,
                quorum = self.config.quorum,
                "the key directory's checkpoint is below the witness quorum: devices are served the last one that had it"
            );
        }
        cosigners
    }

    /// Adds a witness's cosignature lines to the newest checkpoint if it is still of `size`
    /// (false: a newer one is witnessed in the next round).
    async fn add_cosignature(
        &self,
        store: &Arc<dyn Store>,
        size: u64,
        lines: &str,
        target: &WitnessTarget,
    ) -> Result<bool, String> {
        let mut log = self.log.lock().await;
        if log.state.size != size {
            return Ok(false);
        }
        if lines.is_empty() || !lines.ends_with('\n') || lines.contains("\n\n") {
            return Err("malformed cosignature lines".into());
        }
        let split = log
            .note
            .rfind("\n\n")
            .ok_or("the checkpoint has no signatures")?;
        // At most one line per witness: an older one of this witness is replaced.
        let mut updated = log.note[..split + 2].to_owned();
        for line in log.note[split + 2..].lines() {
            let own = vellum_tlog::cosignature::CosignatureLine::parse(line).is_ok_and(|l| {
                l.name == target.verifier.name() && l.key_id == target.verifier.key_id()
            });
            if !own {
                updated.push_str(line);
                updated.push('\n');
            }
        }
        updated.push_str(lines);
        target
            .verifier
            .verify(&updated)
            .map_err(|e| e.to_string())?;
        NoteVerifier::open(&updated, &[self.signer.verifier()]).map_err(|e| e.to_string())?;
        let stored = store
            .set_directory_checkpoint(log.note.clone(), updated.clone())
            .await
            .map_err(|e| e.to_string())?;
        if !stored {
            // Another node appended meanwhile: its checkpoint stays, and the next round
            // submits the newer one.
            return Ok(false);
        }
        log.note = updated;
        self.publish(&log);
        self.changed.send_replace(log.state.size);
        Ok(true)
    }
}

/// Applies to `log` the entries the store holds beyond it.
async fn catch_up(log: &mut Log, store: &Arc<dyn Store>) -> Result<(), DirectoryError> {
    const PAGE: u64 = 1000;
    loop {
        let leaves = store.directory_entries(log.state.size, PAGE).await?;
        for leaf in &leaves {
            log.state.apply(leaf).map_err(DirectoryError::Replay)?;
            let hash = vellum_tlog::leaf_hash(leaf);
            log.builder.push(hash);
            log.hashes.push(hash);
        }
        if (leaves.len() as u64) < PAGE {
            return Ok(());
        }
    }
}

/// The entries that open a directory: the devices existing at the upgrade, then its end.
async fn upgrade_listing(store: &Arc<dyn Store>) -> Result<Vec<Append>, DirectoryError> {
    let mut listing = Vec::new();
    for record in store.legacy_devices().await? {
        let device = record.device;
        debug_assert_ne!(device.user, RECORDS_USER);
        let signature_key = device.signature_key.as_slice().try_into().map_err(|_| {
            DirectoryError::Checkpoint(format!(
                "device {} has a signature key of {} bytes, not an Ed25519 key",
                device.device_id,
                device.signature_key.len()
            ))
        })?;
        listing.push(Append {
            user: device.user,
            change: Change::Legacy {
                device: DeviceRef {
                    device_id: device.device_id,
                    signature_key,
                },
            },
            devices: None,
        });
    }
    listing.push(Append {
        user: String::new(),
        change: Change::UpgradeDone,
        devices: None,
    });
    Ok(listing)
}

/// The stored checkpoint must be ours (this key, this origin) and cover exactly the log.
fn check_stored(signer: &NoteSigner, log: &Log, note: String) -> Result<String, DirectoryError> {
    let bad = |why: String| DirectoryError::Checkpoint(why);
    let text = NoteVerifier::open(&note, &[signer.verifier()]).map_err(|e| {
        bad(format!(
            "it is not signed by DATA/directory.key as {} ({e}): the directory key or its \
             origin changed, and every device pinned them; restore directory.key (and the \
             --directory-origin) from a backup",
            signer.name()
        ))
    })?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| bad(e.to_string()))?;
    if checkpoint.size != log.state.size || checkpoint.root != log.builder.root() {
        return Err(bad(format!(
            "it is of {} entries, the log of {} (or their roots differ): the database is \
             damaged; restore it from a backup",
            checkpoint.size, log.state.size
        )));
    }
    Ok(note)
}

/// Applies the administrators' resets whose waiting period is over and that no device of
/// the user vetoed: each appends `reset` and revokes every device of its user. Returns how
/// many took effect. Runs with the purge, on the injected clock.
pub async fn apply_due_resets(state: &crate::AppState) -> Result<usize, ApiError> {
    let directory = state.directory().await?;
    let now = state.now_secs();
    let appended = directory
        .append(&state.store, now, |current| {
            Ok(current
                .users
                .iter()
                .filter_map(|(user, u)| {
                    let pending = u.pending_reset.as_ref()?;
                    (pending.effective_at <= now).then(|| Append {
                        user: user.clone(),
                        change: Change::Reset {
                            request_id: pending.request_id.clone(),
                        },
                        devices: Some(DeviceChange::RevokeUser { user: user.clone() }),
                    })
                })
                .collect())
        })
        .await?;
    Ok(appended.map_or(0, |range| range.count()))
}

/// Submits each new checkpoint to the witnesses (and any not cosigned yet every `retry`),
/// in a task of its own: appends never wait on a witness. On a shared database only the
/// node holding the [`Job::DirectoryWitness`] lease submits; the others wait for it.
pub(crate) async fn witness_loop(
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    retry: std::time::Duration,
) {
    if directory.witnesses().is_empty() {
        return;
    }
    let http = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the witnesses' HTTP client");
            return;
        }
    };
    let mut lease = None;
    loop {
        if crate::jobs::hold(&store, Job::DirectoryWitness, &mut lease).await {
            // Appended through another node meanwhile: submit the newest checkpoint.
            if let Err(e) = directory.refresh(&store).await {
                tracing::warn!(error = %e, "cannot catch up with the key directory");
            }
            directory.cosign(&store, &http).await;
        }
        tokio::select! {
            _ = directory.new_checkpoint.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}
