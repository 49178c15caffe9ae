//! `vellum archiver`: the org's records member of every record chat. It receives each event
//! as any member does (MLS), seals it to the records public key at once, appends it to the
//! tamper-evident archive, and only then acknowledges it to the delivery server. It serves
//! the records office's API on loopback; reading needs the key that only k custodians can
//! reassemble, and it lives in memory only while unsealed.

mod actor;
mod api;
mod binding;
pub mod console;
pub mod foia;
pub mod office;
pub mod production;
mod publish;
mod retention;
pub mod search;
pub mod settings;
mod sink;
pub mod tls;
mod witnesses;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vellum_archive::Archive;
use vellum_client::Client;
use vellum_records::RecordsPublic;
use vellum_tlog::NoteSigner;

pub use actor::{ArchiveHandle, Vault};
pub use api::app;
pub use sink::OwedReceipts;
pub use tls::TlsFiles;
/// The record format the archive holds.
pub use vellum_record as record;
pub use witnesses::WitnessTarget;

/// The records API's request and response types, for its clients (defined in
/// `vellum-record`, with the record itself).
pub mod api_types {
    pub use crate::retention::Schedules;
    pub use vellum_record::api::search::{ContextRecord, SearchHit, SearchRequest, SearchResults};
    pub use vellum_record::api::{
        AssignSchedule, AuditEntry, ChatClasses, DefineSchedule, Disposal, Hold, HoldRequest,
        IndexProgress, Status,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Client(#[from] vellum_client::Error),
    #[error(transparent)]
    Archive(#[from] vellum_archive::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the archive's task has stopped")]
    Stopped,
    #[error("witness: {0}")]
    Witness(String),
    #[error("{0}")]
    Publish(String),
}

pub struct ArchiverConfig {
    pub server: String,
    pub data: PathBuf,
    /// `records.pub` from `records init`.
    pub records_key: PathBuf,
    /// The log's origin, needed only to upgrade an archive whose `records.pub` is version 1
    /// (from before bindings); otherwise it must be `records.pub`'s.
    pub origin: Option<String>,
    /// The archiver's enrollment code; needed on first start only.
    pub code: Option<String>,
    pub listen: SocketAddr,
    /// Seal again after this long without records-office activity.
    pub idle_seal: Duration,
    /// How often new leaves are covered by a signed checkpoint (and receipts can go out).
    pub checkpoint_interval: Duration,
    /// Witnesses each new checkpoint is submitted to; their cosignatures are stored with it.
    pub witnesses: Vec<WitnessTarget>,
    /// How many of them must cosign a checkpoint; fewer is logged as a warning.
    pub witness_quorum: usize,
    /// Serve the records API and the console over TLS; required beyond loopback.
    pub tls: Option<TlsFiles>,
}

/// The default of `checkpoint_interval`.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What the records API and the ingest loop share: the handle to the archive's actor (which
/// owns the archive, the records key and the pending receipts) and what never changes.
pub struct ArchiverState {
    pub vault: ArchiveHandle,
    /// `DATA/office.json`.
    pub settings: settings::OfficeSettings,
    /// The records console's own state (TLS or not, failed sign-ins).
    pub console: console::ConsoleState,
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

/// Reads a secret file, or creates it (0600) with `make()`, atomically: a crash or a full
/// disk never leaves an empty or partial secret behind.
fn secret_file(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, Error> {
    if let Ok(existing) = fs::read(path) {
        return Ok(existing);
    }
    let contents = make();
    vellum_archive::write_atomic(path, &contents, 0o600)?;
    Ok(contents)
}

/// The `records.pub` the archiver works with: `DATA/records.pub` once the custodians upgraded
/// the given version 1 file (the same key), else the given file.
fn records_public(config: &ArchiverConfig) -> Result<RecordsPublic, Error> {
    let read = |path: &Path| {
        let text = fs::read_to_string(path)
            .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
        RecordsPublic::parse(&text).map_err(|e| Error::Setup(format!("{}: {e}", path.display())))
    };
    let given = read(&config.records_key)?;
    let upgraded_path = config.data.join("records.pub");
    if !upgraded_path.exists() || upgraded_path == config.records_key {
        return Ok(given);
    }
    let upgraded = read(&upgraded_path)?;
    if !upgraded.same_key(&given) || (given.version == 2 && upgraded != given) {
        return Err(Error::Setup(format!(
            "{} is not the records.pub of {}: another records key",
            upgraded_path.display(),
            config.records_key.display()
        )));
    }
    Ok(upgraded)
}

/// The log's origin: `records.pub`'s (version 2), or `--origin` for the upgrade of a
/// version 1 archive.
fn origin(config: &ArchiverConfig, public: &RecordsPublic) -> Result<String, Error> {
    match (&public.origin, &config.origin) {
        (Some(origin), Some(given)) if origin != given => Err(Error::Setup(format!(
            "--origin {given} is not records.pub's origin {origin}"
        ))),
        (Some(origin), _) => Ok(origin.clone()),
        (None, Some(given)) => {
            vellum_record::check_origin(given).map_err(Error::Setup)?;
            Ok(given.clone())
        }
        (None, None) => Err(Error::Setup(
            "records.pub is version 1 (from before Vellum 0.2): start the archiver once with --origin NAME, the log's stable name (for example records.agency.example/vellum); the next unseal by the custodians binds the archive to it".into(),
        )),
    }
}

/// Opens the archive under `signer`. It continues under a new key (recorded, for the
/// custodians to bind) only where that is expected: a new origin (the upgrade of an archive
/// from before bindings), or a restored archive whose log key stayed on its old host.
fn open_archive(
    dir: &Path,
    signer: NoteSigner,
    new_log_key: bool,
) -> Result<vellum_archive::Archive, Error> {
    let existing = fs::read_to_string(dir.join("log.vkey")).ok();
    let moved = existing.as_deref().is_some_and(|k| {
        let name = k.split('+').next().unwrap_or_default();
        name != signer.name() || new_log_key
    });
    if !moved {
        return Ok(Archive::open(dir, signer)?);
    }
    let (mut archive, made) = Archive::open_continuing(dir, signer)?;
    if let Some(previous) = made {
        // The transition is itself a leaf: the new key's first checkpoint covers it.
        let detail = format!(
            "the log continues under {} after {} leaves of {}",
            archive.verifier_key(),
            previous.size,
            previous.log_key
        );
        archive.append(vellum_archive::Leaf::Access {
            time: api::now_ms(),
            action: "log key transition".into(),
            detail,
        })?;
        tracing::warn!(
            from = %previous.log_key,
            to = %archive.verifier_key(),
            "the log continues under a new key: k custodians must unseal to bind it"
        );
    }
    Ok(archive)
}

/// The binding the delivery server holds, if it verifies against `public`.
fn binding_on_server(
    policy: &vellum_wire::OrgPolicy,
    public: &RecordsPublic,
) -> Option<(vellum_record::SignedBinding, vellum_record::ArchiverBinding)> {
    let signed = vellum_record::SignedBinding::parse(policy.records_binding.as_deref()?).ok()?;
    match signed.verify(public) {
        Ok(statement) => Some((signed, statement)),
        Err(e) => {
            tracing::error!(error = %e, "the server's binding is not signed by this records.pub's custodians; ignored");
            None
        }
    }
}

/// Takes `DATA/lock` for as long as the process runs: two archivers appending to one log
/// would fork it (each signing checkpoints over leaves the other never saw).
fn lock_data(data: &Path) -> Result<fs::File, Error> {
    let path = data.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Setup(format!(
            "another archiver is running on {}: one archiver per data directory",
            data.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::Setup(format!("{}: {e}", path.display()))),
    }
}

/// Opens (on first start: enrolls) the archiver in `config.data`.
pub async fn prepare(config: &ArchiverConfig) -> Result<(Client, Arc<ArchiverState>), Error> {
    fs::create_dir_all(&config.data)?;
    let data_lock = lock_data(&config.data)?;
    vellum_archive::remove_temporaries(&config.data)?;
    let public = records_public(config)?;
    let origin = origin(config, &public)?;
    let home = config.data.join("device");
    let mut client = if home.join("vellum.db").exists() {
        Client::open(&home)?
    } else {
        let code = config.code.as_deref().ok_or_else(|| {
            Error::Setup("first start: give the archiver's enrollment code (--code)".into())
        })?;
        Client::enroll(&home, &config.server, vellum_wire::RECORDS_USER, code).await?
    };
    // Generated here and never leaving this host. A restored archive without it continues
    // under a new one, which the custodians bind at the next unseal.
    let key_path = config.data.join("log.key");
    let new_log_key = !key_path.exists();
    let seed = secret_file(&key_path, || random_hex(32).into_bytes())?;
    let seed: [u8; 32] = hex::decode(String::from_utf8_lossy(&seed).trim())
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::Setup("log.key is corrupt".into()))?;
    let signer = NoteSigner::new(&origin, &seed).map_err(|e| Error::Setup(e.to_string()))?;
    let token = secret_file(&config.data.join("records-token"), || {
        format!("{}\n", random_hex(32)).into_bytes()
    })?;
    let token_hash: [u8; 32] =
        Sha256::digest(String::from_utf8_lossy(&token).trim().as_bytes()).into();
    let archive = open_archive(&config.data.join("archive"), signer, new_log_key)?;
    let schedules =
        retention::Schedules::load(&config.data.join("schedules.json")).map_err(Error::Setup)?;
    let owed = sink::OwedReceipts::load(&config.data.join("owed-receipts.jsonl"))?;
    let policy = client.org_policy().await?;
    let mut vault =
        Vault::sealed(archive, public.clone(), owed).map_err(|e| Error::Setup(e.to_string()))?;
    use base64::Engine;
    vault.binder = Some(binding::Binder {
        device_id: client.device_id().to_owned(),
        identity: base64::engine::general_purpose::STANDARD.encode(client.signature_key()),
        origin,
        witnesses: config
            .witnesses
            .iter()
            .map(|w| w.verifier.verifier_key())
            .collect(),
        witness_quorum: config.witness_quorum as u32,
        public_path: config.data.join("records.pub"),
        on_server: binding_on_server(&policy, &public),
        pending: None,
        retry_at: Instant::now(),
    });
    binding::pending_at_start(&mut vault);
    vault.schedules = schedules;
    vault.schedules_path = Some(config.data.join("schedules.json"));
    vault.data_lock = Some(data_lock);
    foia::jobs::remove_stale_staging(&std::env::temp_dir());
    vault.office = office::Office::open(&config.data.join("office.db"))
        .map_err(|e| Error::Setup(e.to_string()))?;
    vault
        .office
        .ensure_first_officer(&token_hash, api::now_ms())
        .map_err(|e| Error::Setup(e.to_string()))?;
    let settings =
        settings::OfficeSettings::load(&config.data.join("office.json")).map_err(Error::Setup)?;
    vault.search.time_zone = settings.tz().map_err(Error::Setup)?;
    let vault = ArchiveHandle::spawn(vault)?;
    let state = Arc::new(ArchiverState {
        vault: vault.clone(),
        settings,
        console: console::ConsoleState::new(config.tls.is_some()),
    });
    client.set_sink(Box::new(sink::ArchiveSink::new(vault)));
    Ok((client, state))
}

/// Hands a binding the server lacks to it; on failure, retried after a while.
async fn upload_binding(client: &Client, state: &ArchiverState) -> Result<(), Error> {
    let due = state
        .vault
        .call(|v| {
            let binder = v.binder.as_mut()?;
            let pending = binder.pending.clone()?;
            (binder.retry_at <= Instant::now()).then_some(pending)
        })
        .await?;
    let Some(pending) = due else { return Ok(()) };
    let result: Result<(), vellum_client::Error> = client
        .request(
            vellum_client::Method::PUT,
            "/v1/records/binding",
            Some(&pending.request),
        )
        .await;
    let serial = pending.statement.serial;
    // The server holding an equal or newer serial means another archiver was bound since:
    // retrying would change nothing.
    let superseded = matches!(&result, Err(vellum_client::Error::Api { status: 409, .. }));
    let stored = result.is_ok();
    state
        .vault
        .call(move |v| {
            let Some(binder) = v.binder.as_mut() else {
                return;
            };
            if stored {
                binder.on_server = Some((pending.signed, pending.statement));
                binder.pending = None;
            } else if superseded {
                binder.pending = None;
            } else {
                binder.retry_at = Instant::now() + binding::UPLOAD_RETRY;
            }
        })
        .await?;
    match result {
        Ok(()) => {
            tracing::info!(serial, "the binding is on the delivery server");
            Ok(())
        }
        Err(e @ vellum_client::Error::Api { status: 409, .. }) => {
            tracing::error!(serial, error = %e, "the server holds a newer binding: this archiver is not the bound one");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the archiver until the process is stopped. The first line on standard output names
/// the address the records API listens on (tests start it on port 0 and read it).
pub async fn run(config: ArchiverConfig) -> Result<(), Error> {
    let data = config.data.clone();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (addr, ingest) = start(config).await?;
    println!("vellum archiver listening on {scheme}://{addr}");
    println!("records console: {scheme}://{addr}/console/");
    println!(
        "records officer credential: {}",
        data.join("records-token").display()
    );
    ingest.await
}

/// Opens the archiver, binds the records API and starts serving it; returns the bound
/// address and the ingest loop, which the caller runs (it ends only on a fatal error).
pub async fn start(
    config: ArchiverConfig,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<(), Error>> + Send,
    ),
    Error,
> {
    tls::check_listen(config.listen, config.tls.as_ref())?;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let (mut client, state) = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(housekeeping(
        state.clone(),
        config.idle_seal,
        config.checkpoint_interval,
    ));
    if !config.witnesses.is_empty() {
        tokio::spawn(witnesses::follow(
            state.clone(),
            config.witnesses.clone(),
            config.witness_quorum,
            config.checkpoint_interval,
        ));
    }
    // Before the API answers: a hold placed at once is checked against the org's users.
    if let Err(e) = refresh_known(&mut client, &state).await {
        tracing::warn!(error = %e, "cannot read the directory or chat list yet");
    }
    let api_state = state.clone();
    tokio::spawn(async move {
        let app = app(api_state);
        match tls {
            Some(tls) => tls::serve(listener, tls, app).await,
            None => {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "records API stopped");
                }
            }
        }
    });
    Ok((addr, async move { ingest(&mut client, &state).await }))
}

/// How often the archiver asks the server for new events.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between retries while paused on a failed archive write.
const MAX_PAUSE_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the server: each sync archives through the sink; the senders get their receipts
/// once a checkpoint covers their messages.
async fn ingest(client: &mut Client, state: &Arc<ArchiverState>) -> Result<(), Error> {
    let mut backoff = POLL;
    let mut publisher = publish::Publisher::default();
    let mut known_at: Option<Instant> = None;
    loop {
        match client.sync().await {
            Ok(_) => {
                backoff = POLL;
                // Every event was archived and stored: whatever paused ingest has cleared.
                if state.vault.call(|v| v.paused.take()).await?.is_some() {
                    tracing::info!("archiver resumed");
                }
            }
            Err(vellum_client::Error::Network(e)) => {
                tracing::warn!(error = %e, "cannot reach the server; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            // An archive write failed (a full disk): nothing was acknowledged, the server
            // keeps the events, and the next sync retries them until the write succeeds.
            // The device's own store may be on the same full disk: that pauses too.
            Err(e) => match state
                .vault
                .call(move |v| {
                    if let vellum_client::Error::Store(why) | vellum_client::Error::Io(why) = &e {
                        v.paused.get_or_insert_with(|| {
                            format!("cannot write the archiver's device store: {why}")
                        });
                    }
                    v.paused.clone().ok_or(e)
                })
                .await?
            {
                Ok(reason) => {
                    tracing::warn!(reason, "archiver paused; retrying");
                    backoff = (backoff * 2).min(MAX_PAUSE_BACKOFF);
                }
                Err(e) => return Err(e.into()),
            },
        }
        if let Err(e) = upload_binding(client, state).await {
            tracing::warn!(error = %e, "the binding is not on the delivery server yet; retrying");
        }
        if let Err(e) = publisher.step(client, state).await {
            tracing::warn!(error = %e, "checkpoint or receipts not delivered yet; retrying");
        }
        if known_at.is_none_or(|t| t.elapsed() >= KNOWN_REFRESH) {
            match refresh_known(client, state).await {
                Ok(()) => known_at = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "cannot read the directory or chat list"),
            }
        }
        if let Err(e) = publish_held_users(client, state).await {
            tracing::warn!(error = %e, "the server has not heard of the latest holds yet; retrying");
        }
        tokio::time::sleep(backoff).await;
    }
}

/// How often the users and chats a hold may name, and the transitory chats, are re-read.
const KNOWN_REFRESH: Duration = Duration::from_secs(3);

/// Gives the actor the org's users (the verified key directory) and the record chats this
/// archiver is in, against which holds are checked.
async fn refresh_known(client: &mut Client, state: &ArchiverState) -> Result<(), Error> {
    // With a record sink, sync leaves the key directory alone: read it here.
    client.refresh_directory().await?;
    // Only shown to the records office: a failure here must not stop holds being checked.
    let transitory: Option<vellum_wire::TransitoryChats> = client
        .request(
            vellum_client::Method::GET,
            "/v1/records/transitory-chats",
            None::<&()>,
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "cannot list the transitory chats"))
        .ok();
    let users: std::collections::BTreeSet<String> = client
        .directory()?
        .state
        .users
        .into_keys()
        .filter(|u| u != vellum_wire::RECORDS_USER)
        .collect();
    // Chats the archiver left still have records: they stay known.
    let chats: Vec<(String, Option<String>)> = client
        .chats()?
        .into_iter()
        .map(|c| (c.group_id, c.title))
        .collect();
    state
        .vault
        .call(move |v| {
            v.org_users = users;
            if let Some(transitory) = transitory {
                v.transitory = Some((api::now_ms(), transitory));
            }
            for (id, title) in chats {
                v.note_chat(&id, title.as_deref());
            }
        })
        .await
}

/// Tells the delivery server who is under a legal hold, once at start and whenever a hold
/// is placed or released, so that the members of those people's transitory chats stop (or
/// resume) expiring messages there.
async fn publish_held_users(client: &Client, state: &ArchiverState) -> Result<(), Error> {
    let due = state
        .vault
        .call(|v| {
            if v.holds_published == Some(v.holds_version) {
                return Ok(None);
            }
            retention::active_holds(&v.archive)
                .map(|holds| Some((v.holds_version, retention::held_users(&holds))))
        })
        .await??;
    let Some((version, users)) = due else {
        return Ok(());
    };
    let _: () = client
        .request(
            vellum_client::Method::PUT,
            "/v1/records/held-users",
            Some(&vellum_wire::HeldUsers { users }),
        )
        .await?;
    // A hold placed meanwhile moved the version on: it goes out at the next turn.
    state
        .vault
        .call(move |v| v.holds_published = Some(version))
        .await
}

/// Checkpoints new leaves; a failure pauses the archiver until a later checkpoint succeeds.
/// Signs a checkpoint of what is archived and returns the latest note; on failure, why
/// (also kept for `records status` until a checkpoint succeeds). Every path to a checkpoint
/// goes through here, so owed receipts are always durable before it.
fn checkpoint(v: &mut Vault) -> Result<String, String> {
    // The receipts a checkpoint makes deliverable are durable first.
    if let Err(e) = v.pending_receipts.sync() {
        tracing::error!(error = %e, "cannot write the owed receipts");
        let why = format!("cannot write the owed receipts: {e}");
        v.checkpoint_failure = Some(why.clone());
        return Err(why);
    }
    match v.archive.checkpoint() {
        Ok(note) => {
            if v.checkpoint_failure.take().is_some() {
                tracing::info!("checkpoints resumed");
            }
            Ok(note)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write a checkpoint");
            let why = sink::pause_reason(&e);
            v.checkpoint_failure = Some(why.clone());
            Err(why)
        }
    }
}

/// Checkpoints new leaves every `interval`; seals after `idle_seal` without activity
/// (checked at least every second, however long the checkpoint interval).
async fn housekeeping(state: Arc<ArchiverState>, idle_seal: Duration, interval: Duration) {
    let mut tick = tokio::time::interval(interval.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_checkpoint: Option<Instant> = None;
    loop {
        tick.tick().await;
        let due = last_checkpoint.is_none_or(|t| t.elapsed() >= interval);
        if due {
            last_checkpoint = Some(Instant::now());
        }
        let done = state
            .vault
            .call(move |v| {
                if due {
                    // A failure is logged and shown by `records status`; the next tick retries.
                    let _ = checkpoint(v);
                }
                if v.last_activity.elapsed() > idle_seal && v.secret.take().is_some() {
                    v.productions.clear();
                    api::log_access(v, "seal", "idle timeout");
                }
            })
            .await;
        if done.is_err() {
            return; // the actor stopped: the process is going down
        }
    }
}
