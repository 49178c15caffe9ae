//! `vellum archiver`: the org's records member of every record chat. It receives each event
//! as any member does (MLS), seals it to the records public key at once, appends it to the
//! tamper-evident archive, and only then acknowledges it to the delivery server. It serves
//! the records office's API on loopback; reading needs the key that only k custodians can
//! reassemble, and it lives in memory only while unsealed.

mod api;
mod retention;
mod sink;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vellum_archive::Archive;
use vellum_client::Client;
use vellum_records::{RecordsPublic, RecordsSecret, Unsealer};
use vellum_tlog::NoteSigner;

pub use api::app;

/// The records API's request and response types, for its clients.
pub mod api_types {
    pub use crate::api::{Disposal, Hit, SearchQuery, Status};
    pub use crate::retention::{Hold, Schedules};
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
}

pub struct ArchiverConfig {
    pub server: String,
    pub data: PathBuf,
    /// `records.pub` from `records init`.
    pub records_key: PathBuf,
    /// The archiver's enrollment code; needed on first start only.
    pub code: Option<String>,
    pub listen: SocketAddr,
    /// Seal again after this long without records-office activity.
    pub idle_seal: Duration,
}

/// What the records API and the ingest loop share.
pub struct ArchiverState {
    pub archive: Mutex<Archive>,
    pub public: RecordsPublic,
    pub unsealer: Mutex<Unsealer>,
    pub secret: Mutex<Option<RecordsSecret>>,
    pub token_hash: [u8; 32],
    pub last_activity: Mutex<Instant>,
    pub schedules: retention::Schedules,
    /// Archived messages whose senders still await a receipt.
    pub pending_receipts: Mutex<Vec<sink::PendingReceipt>>,
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

/// Reads a secret file, or creates it (0600) with `make()`.
fn secret_file(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, Error> {
    if let Ok(existing) = fs::read(path) {
        return Ok(existing);
    }
    let contents = make();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&contents)?;
    file.sync_all()?;
    Ok(contents)
}

/// Opens (on first start: enrolls) the archiver in `config.data`.
pub async fn prepare(config: &ArchiverConfig) -> Result<(Client, Arc<ArchiverState>), Error> {
    fs::create_dir_all(&config.data)?;
    let public = fs::read_to_string(&config.records_key)
        .map_err(|e| Error::Setup(format!("{}: {e}", config.records_key.display())))?;
    let public = RecordsPublic::parse(&public).map_err(|e| Error::Setup(e.to_string()))?;
    let home = config.data.join("device");
    let mut client = if home.join("vellum.db").exists() {
        Client::open(&home)?
    } else {
        let code = config.code.as_deref().ok_or_else(|| {
            Error::Setup("first start: give the archiver's enrollment code (--code)".into())
        })?;
        Client::enroll(&home, &config.server, vellum_wire::RECORDS_USER, code).await?
    };
    let seed = secret_file(&config.data.join("log.key"), || random_hex(32).into_bytes())?;
    let seed: [u8; 32] = hex::decode(String::from_utf8_lossy(&seed).trim())
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::Setup("log.key is corrupt".into()))?;
    let key_id = hex::encode(&Sha256::digest(public.public_key.as_bytes())[..4]);
    let signer = NoteSigner::new(&format!("vellum.records/{key_id}"), &seed)
        .map_err(|e| Error::Setup(e.to_string()))?;
    let token = secret_file(&config.data.join("records-token"), || {
        format!("{}\n", random_hex(32)).into_bytes()
    })?;
    let token_hash: [u8; 32] =
        Sha256::digest(String::from_utf8_lossy(&token).trim().as_bytes()).into();
    let archive = Archive::open(&config.data.join("archive"), signer)?;
    let schedules =
        retention::Schedules::load(&config.data.join("schedules.json")).map_err(Error::Setup)?;
    let state = Arc::new(ArchiverState {
        archive: Mutex::new(archive),
        unsealer: Mutex::new(Unsealer::new(public.clone())),
        public,
        secret: Mutex::new(None),
        token_hash,
        last_activity: Mutex::new(Instant::now()),
        schedules,
        pending_receipts: Mutex::new(Vec::new()),
    });
    client.set_sink(Box::new(sink::ArchiveSink::new(state.clone())?));
    // Senders' devices check receipts against this key.
    let verifier_key = state
        .archive
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .verifier_key();
    let _: () = client
        .request(
            vellum_client::Method::PUT,
            "/v1/records/log-key",
            Some(&vellum_wire::LogKey { verifier_key }),
        )
        .await?;
    Ok((client, state))
}

/// Runs the archiver until the process is stopped.
pub async fn run(config: ArchiverConfig) -> Result<(), Error> {
    let (mut client, state) = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!(
        "vellum archiver listening on http://{}",
        listener.local_addr()?
    );
    println!(
        "records officer credential: {}",
        config.data.join("records-token").display()
    );
    tokio::spawn(housekeeping(state.clone(), config.idle_seal));
    let api_state = state.clone();
    tokio::spawn(async move {
        let app = app(api_state);
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "records API stopped");
        }
    });
    ingest(&mut client, &state).await
}

/// How often the archiver asks the server for new events.
const POLL: Duration = Duration::from_millis(250);

/// Follows the server: each sync archives through the sink; then the log is checkpointed
/// and the senders get their receipts.
async fn ingest(client: &mut Client, state: &Arc<ArchiverState>) -> Result<(), Error> {
    let mut backoff = POLL;
    loop {
        match client.sync().await {
            Ok(_) => backoff = POLL,
            Err(vellum_client::Error::Network(e)) => {
                tracing::warn!(error = %e, "cannot reach the server; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
        checkpoint(state);
        if let Err(e) = send_receipts(client, state).await {
            tracing::warn!(error = %e, "receipts not delivered yet; retrying");
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Receipts for every archived message covered by the latest checkpoint.
async fn send_receipts(client: &Client, state: &ArchiverState) -> Result<(), Error> {
    let (batch, sent) = {
        let pending = state
            .pending_receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return Ok(());
        }
        let archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
        let Some((size, note)) = archive.latest_checkpoint()? else {
            return Ok(());
        };
        let mut batch = vellum_wire::PostReceipts::default();
        let mut sent = Vec::new();
        for p in pending.iter().filter(|p| p.leaf < size).take(100) {
            let proof = archive.inclusion_proof(p.leaf, size)?;
            let receipt = vellum_wire::Receipt {
                chat_id: p.chat_id.clone(),
                seq: p.seq,
                message_id: p.message_id.clone(),
                leaf_index: p.leaf,
                leaf: archive.leaf(p.leaf)?.to_bytes().into(),
                proof: proof.iter().map(hex::encode).collect(),
                checkpoint: note.clone(),
            };
            batch.receipts.push(vellum_wire::ReceiptFor {
                device_id: p.sender_device.clone(),
                receipt: serde_json::to_string(&receipt).expect("receipts serialise"),
            });
            sent.push(p.leaf);
        }
        (batch, sent)
    };
    if batch.receipts.is_empty() {
        return Ok(());
    }
    let _: () = client
        .request(vellum_client::Method::POST, "/v1/receipts", Some(&batch))
        .await?;
    state
        .pending_receipts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|p| !sent.contains(&p.leaf));
    Ok(())
}

fn checkpoint(state: &ArchiverState) {
    let mut archive = state.archive.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = archive.checkpoint() {
        tracing::error!(error = %e, "cannot write a checkpoint");
    }
}

/// Checkpoints new leaves every second; seals after `idle_seal` without activity.
async fn housekeeping(state: Arc<ArchiverState>, idle_seal: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        checkpoint(&state);
        let idle = state
            .last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if idle > idle_seal {
            let mut secret = state.secret.lock().unwrap_or_else(|p| p.into_inner());
            if secret.take().is_some() {
                api::log_access(&state, "seal", "idle timeout");
            }
        }
    }
}
