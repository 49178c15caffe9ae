//! The PostgreSQL backend of [`vellum_store::Store`] (issue 13, first step): the same
//! semantics as `SqliteStore`, method by method, checked by the same conformance suite.
//!
//! Writes run in transactions that first lock the single `server_instance` row, so they are
//! serialised as SQLite's single writer serialises them (several nodes sharing one database
//! included); reads run on any pooled connection. Application messages appended at once
//! share a transaction ([`AppendBatcher`]). Request nonces are shared by every node in
//! unlogged tables; single-writer jobs hold a session advisory lock. Schemas change only through the numbered
//! SQL files in `migrations/`, applied in order in one transaction and recorded in
//! `vellum_schema_history`; a database at a newer version than this binary knows is refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sha2::{Digest, Sha256};
use tokio::task::AbortHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use vellum_store::backend::*;
use vellum_store::*;
use vellum_wire::{
    log_hash_next, log_hash_start, DeviceState, EntryKind, HoldAction, OrgPolicy,
    MAX_CLOCK_SKEW_SECS,
};

pub use tokio_postgres;

mod deployment;
mod tls;

/// The numbered migrations, oldest first: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/V1__initial.sql")),
    (
        2,
        "request_nonces",
        include_str!("../migrations/V2__request_nonces.sql"),
    ),
    (3, "org_key", include_str!("../migrations/V3__org_key.sql")),
    (
        4,
        "group_state_version",
        include_str!("../migrations/V4__group_state_version.sql"),
    ),
];

/// Most application messages one log transaction takes. Each takes a savepoint, and so a
/// subtransaction id; past 64 in one transaction, PostgreSQL's per-backend cache of them
/// overflows and every other session's visibility checks get slower while it runs.
const APPEND_BATCH: usize = 64;

/// One `remember_nonce` call in this many also drops the nonces the window has passed:
/// the table stays about the window's size, and no call pays for more than a few
/// hundred calls' rows.
const NONCE_SWEEP_EVERY: u64 = 256;

/// The database's clock in Unix seconds, as an SQL expression: the one clock every node
/// sharing the nonce window agrees on.
const DATABASE_NOW: &str = "CAST(FLOOR(EXTRACT(EPOCH FROM now())) AS BIGINT)";

/// Connections in the pool.
const POOL_SIZE: usize = 8;

type Param<'a> = &'a (dyn ToSql + Sync);

/// The PostgreSQL backend. Request nonces are shared by every node, in unlogged tables.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// For the connections job leases hold outside the pool.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// `remember_nonce` calls so far, to sweep every [`NONCE_SWEEP_EVERY`]th.
    nonce_calls: AtomicU64,
    /// Group commit of `append_message`.
    appends: AppendBatcher,
    instance_id: String,
}

/// What a PostgreSQL advisory lock of this crate guards. Its keys are the two-`int4` form
/// (namespace, lock), a key space apart from the migration lock's single `bigint`; the
/// namespace is the schema's, so deployments in different schemas of one database (and
/// tests run in parallel) do not exclude each other.
#[derive(Clone, Copy)]
enum AdvisoryLock {
    /// Held by a job's lease, for the lease's whole session.
    Job(Job),
    /// Held by one `purge_expired` transaction.
    PurgeMessages,
    /// Held by one `purge_blobs` transaction.
    PurgeBlobs,
}

impl AdvisoryLock {
    fn key(self) -> i32 {
        match self {
            AdvisoryLock::Job(Job::Purge) => 1,
            AdvisoryLock::Job(Job::DirectoryWitness) => 2,
            AdvisoryLock::PurgeMessages => 101,
            AdvisoryLock::PurgeBlobs => 102,
        }
    }
}

/// The namespace key of this schema's advisory locks, as an SQL expression. (NULL once the
/// schema is dropped under a running node: the lock queries then answer "not granted".)
const LOCK_NAMESPACE: &str = "hashtext('vellum/' || current_schema())";

/// How often a lease's connection proves it is alive, and how long an answer may take: a
/// session the network lost silently (no close ever arrives) is given up within about
/// twice this, rather than trusted while another node may be taking the lock over.
const LEASE_HEARTBEAT: Duration = Duration::from_secs(5);

/// A job's lease: a session-level advisory lock held by a connection of its own, outside
/// the pool. Dropping it closes the connection, which ends the session and so the lock.
struct PgJobLease {
    _client: Arc<tokio_postgres::Client>,
    connection: tokio::task::JoinHandle<()>,
}

impl JobLease for PgJobLease {
    fn is_held(&self) -> bool {
        // The connection task ends when the session does (terminated, the server
        // restarted, the heartbeat unanswered): the lock went with it.
        !self.connection.is_finished()
    }
}

/// Pings the lease's session every [`LEASE_HEARTBEAT`] while the lease exists (it holds
/// the only strong reference to the client); one unanswered ping ends the connection.
async fn lease_heartbeat(client: Weak<tokio_postgres::Client>, connection: AbortHandle) {
    loop {
        tokio::time::sleep(LEASE_HEARTBEAT).await;
        let Some(client) = client.upgrade() else {
            return;
        };
        let ping = tokio::time::timeout(LEASE_HEARTBEAT, client.simple_query("SELECT 1")).await;
        if !matches!(ping, Ok(Ok(_))) {
            connection.abort();
            return;
        }
    }
}

fn pg(e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::DISK_FULL) {
        return Error::DiskFull;
    }
    // A request's text with a NUL in it (a group id, say): a client's mistake or probe,
    // not a storage failure.
    if e.code() == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) {
        return Error::InvalidText("text with a NUL character is not a valid name or id".into());
    }
    Error::Backend(e.to_string())
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

// Statements are prepared once per pooled connection (deadpool's statement cache; every
// query text here is fixed), so a query is one round trip instead of parse, then execute.

async fn opt(tx: &Transaction<'_>, sql: &str, p: &[Param<'_>]) -> Result<Option<Row>> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.query_opt(&statement, p)
        .await
        .map_err(|e| statement_failed(tx, sql, e))
}

async fn one(tx: &Transaction<'_>, sql: &str, p: &[Param<'_>]) -> Result<Row> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.query_one(&statement, p)
        .await
        .map_err(|e| statement_failed(tx, sql, e))
}

async fn all(tx: &Transaction<'_>, sql: &str, p: &[Param<'_>]) -> Result<Vec<Row>> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.query(&statement, p)
        .await
        .map_err(|e| statement_failed(tx, sql, e))
}

async fn exec(tx: &Transaction<'_>, sql: &str, p: &[Param<'_>]) -> Result<u64> {
    let statement = tx.prepare_cached(sql).await.map_err(pg)?;
    tx.execute(&statement, p)
        .await
        .map_err(|e| statement_failed(tx, sql, e))
}

/// A prepared statement PostgreSQL refuses to run as prepared ("cached plan must not change
/// result type": a newer node's migration changed a table under it) is forgotten, so the
/// request fails once and the next one prepares it afresh.
fn statement_failed(tx: &Transaction<'_>, sql: &str, e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
        tx.statement_cache.remove(sql, &[]);
    }
    pg(e)
}

/// True for a log entry the org's archiver (a member then) has not acknowledged yet.
const ARCHIVER_PENDING: &str = "EXISTS (
    SELECT 1 FROM memberships m JOIN devices d USING (device_id)
    WHERE m.group_id = group_log.group_id AND d.user = 'records' AND d.revoked_at IS NULL
      AND (m.removed_seq IS NULL OR group_log.seq <= m.removed_seq)
      AND m.acked_seq < group_log.seq AND m.joined_seq < group_log.seq)";

async fn records_config_in(tx: &Transaction<'_>) -> Result<Option<RecordsConfig>> {
    let row = opt(
        tx,
        &format!("SELECT records_public, {LIVE_ARCHIVER}, binding_serial, binding FROM records_config WHERE id = 1"),
        &[],
    )
    .await?;
    Ok(row.map(|r| {
        let serial: Option<i64> = r.get(2);
        let binding: Option<String> = r.get(3);
        RecordsConfig {
            records_public: r.get(0),
            archiver_device: r.get(1),
            binding: serial.zip(binding).map(|(s, b)| (s as u64, b)),
        }
    }))
}

const CHECKPOINT_COLUMNS: &str =
    "size, note, previous_size, proof, received_at, renewed_at, witnessed_at";

fn read_checkpoint(r: &Row) -> StoredCheckpoint {
    let proof: String = r.get(3);
    StoredCheckpoint {
        size: r.get::<_, i64>(0) as u64,
        note: r.get(1),
        previous_size: r.get::<_, i64>(2) as u64,
        proof: proof
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        received_at: r.get(4),
        renewed_at: r.get(5),
        witnessed_at: r.get(6),
    }
}

async fn head_checkpoint(tx: &Transaction<'_>) -> Result<Option<StoredCheckpoint>> {
    Ok(opt(
        tx,
        &format!("SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints ORDER BY size DESC LIMIT 1"),
        &[],
    )
    .await?
    .as_ref()
    .map(read_checkpoint))
}

async fn blob_in(tx: &Transaction<'_>, blob_id: &str) -> Result<Option<BlobInfo>> {
    let row = opt(
        tx,
        "SELECT group_id, uploader_device, uploader_user, size, chunk_size, chunks, finished,
                record, expires_at, archived, deleted,
                (SELECT COUNT(*) FROM blob_chunks WHERE blob_chunks.blob_id = blobs.blob_id)
         FROM blobs WHERE blob_id = $1",
        &[&blob_id],
    )
    .await?;
    Ok(row.map(|r| BlobInfo {
        blob_id: blob_id.to_owned(),
        group_id: r.get(0),
        uploader_device: r.get(1),
        uploader_user: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        chunk_size: r.get::<_, i64>(4) as u32,
        chunks: r.get::<_, i64>(5) as u64,
        finished: r.get::<_, i64>(6) != 0,
        record: r.get::<_, i64>(7) != 0,
        expires_at: r.get(8),
        archived: r.get::<_, i64>(9) != 0,
        deleted: r.get::<_, i64>(10) != 0,
        present: r.get::<_, i64>(11) as u64,
    }))
}

async fn drop_blob(tx: &Transaction<'_>, blob_id: &str) -> Result<()> {
    exec(
        tx,
        "DELETE FROM blob_chunks WHERE blob_id = $1",
        &[&blob_id],
    )
    .await?;
    exec(tx, "DELETE FROM blobs WHERE blob_id = $1", &[&blob_id]).await?;
    Ok(())
}

async fn live_code_user(tx: &Transaction<'_>, code_hash: &[u8; 32], now: i64) -> Result<String> {
    opt(
        tx,
        "SELECT \"user\" FROM enrollment_codes WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2",
        &[&&code_hash[..], &now],
    )
    .await?
    .map(|r| r.get(0))
    .ok_or(Error::InvalidCode)
}

/// The compare-and-set of a state write: `StaleState` when another write came between
/// (the caller's transaction holds the instance lock, so none can come after).
async fn check_state_version(
    tx: &Transaction<'_>,
    group_id: &str,
    epoch: u64,
    expected: u64,
) -> Result<()> {
    let version: i64 = opt(
        tx,
        "SELECT state_version FROM groups WHERE group_id = $1",
        &[&group_id],
    )
    .await?
    .ok_or_else(|| Error::NotFound(format!("group {group_id}")))?
    .get(0);
    if version as u64 != expected {
        return Err(Error::StaleState { epoch });
    }
    Ok(())
}

/// The group's epoch, last seq and log hash.
async fn current_epoch(tx: &Transaction<'_>, group_id: &str) -> Result<(u64, u64, [u8; 32])> {
    let r = opt(
        tx,
        "SELECT epoch, last_seq, log_hash FROM groups WHERE group_id = $1",
        &[&group_id],
    )
    .await?
    .ok_or_else(|| Error::NotFound(format!("group {group_id}")))?;
    Ok((
        r.get::<_, i64>(0) as u64,
        r.get::<_, i64>(1) as u64,
        hash_from(r.get(2))?,
    ))
}

async fn is_current_member(tx: &Transaction<'_>, group_id: &str, device_id: &str) -> Result<bool> {
    Ok(opt(
        tx,
        "SELECT 1 FROM memberships WHERE group_id = $1 AND device_id = $2 AND removed_seq IS NULL",
        &[&group_id, &device_id],
    )
    .await?
    .is_some())
}

const DEVICE_RECORD: &str = "device_id, \"user\", signature_key,
    CASE WHEN revoked_at IS NOT NULL THEN 'revoked' ELSE state END, enrolled_at, last_seen";

fn read_device_record(r: &Row) -> DeviceRecord {
    let state: String = r.get(3);
    DeviceRecord {
        device: Device {
            device_id: r.get(0),
            user: r.get(1),
            signature_key: r.get(2),
        },
        state: match state.as_str() {
            "approved" => DeviceState::Approved,
            "pending" => DeviceState::Pending,
            "legacy" => DeviceState::Legacy,
            _ => DeviceState::Revoked,
        },
        enrolled_at: r.get(4),
        last_seen: r.get(5),
    }
}

fn read_device(r: &Row) -> Device {
    Device {
        device_id: r.get(0),
        user: r.get(1),
        signature_key: r.get(2),
    }
}

async fn revoke_in(tx: &Transaction<'_>, device_id: &str, at: i64) -> Result<bool> {
    let known = exec(
        tx,
        "UPDATE devices SET state = 'revoked', revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1",
        &[&device_id, &at],
    )
    .await?;
    exec(
        tx,
        "DELETE FROM key_packages WHERE device_id = $1",
        &[&device_id],
    )
    .await?;
    exec(
        tx,
        "DELETE FROM approvals WHERE device_id = $1",
        &[&device_id],
    )
    .await?;
    Ok(known == 1)
}

async fn device_change_in(tx: &Transaction<'_>, change: &DeviceChange, now: i64) -> Result<()> {
    match change {
        DeviceChange::Approve {
            device_id,
            sealed_identity,
        } => {
            if let Some(sealed) = sealed_identity {
                let sealed_now = exec(
                    tx,
                    "UPDATE approvals SET sealed_identity = $2, updated_at = $3
                     WHERE device_id = $1 AND offer IS NOT NULL AND sealed_identity IS NULL",
                    &[device_id, sealed, &now],
                )
                .await?;
                if sealed_now != 1 {
                    return Err(Error::Refused(format!(
                        "device {device_id} has not revealed its offer, or was approved already"
                    )));
                }
            }
            let approved = exec(
                tx,
                "UPDATE devices SET state = 'approved' WHERE device_id = $1 AND revoked_at IS NULL",
                &[device_id],
            )
            .await?;
            if approved != 1 {
                return Err(Error::NotFound(format!("device {device_id}")));
            }
        }
        DeviceChange::Revoke { device_id } => {
            if !revoke_in(tx, device_id, now).await? {
                return Err(Error::NotFound(format!("device {device_id}")));
            }
        }
        DeviceChange::RevokeUser { user } => {
            let devices: Vec<String> = all(
                tx,
                "SELECT device_id FROM devices WHERE \"user\" = $1 ORDER BY device_id",
                &[user],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for device_id in devices {
                revoke_in(tx, &device_id, now).await?;
            }
        }
    }
    Ok(())
}

async fn approval_in(tx: &Transaction<'_>, device_id: &str) -> Result<Option<Approval>> {
    Ok(opt(
        tx,
        "SELECT device_id, commitment, hello, offer, sealed_identity, updated_at FROM approvals WHERE device_id = $1",
        &[&device_id],
    )
    .await?
    .map(|r| Approval {
        device_id: r.get(0),
        commitment: r.get(1),
        hello: r.get(2),
        offer: r.get(3),
        sealed_identity: r.get(4),
        updated_at: r.get(5),
    }))
}

/// Applies the migrations this binary has and the database lacks, in one transaction;
/// refuses a database at a newer version.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(pg)?;
    // Two nodes starting at once migrate one after the other. Every start after the first
    // finds the history table: PostgreSQL's notice saying so would only be noise in the
    // node's log (LOCAL: the setting ends with this transaction).
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         SELECT pg_advisory_xact_lock(7665010013);
         CREATE TABLE IF NOT EXISTS vellum_schema_history (
             version BIGINT PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )
    .await
    .map_err(pg)?;
    let found: Option<i64> = tx
        .query_one("SELECT MAX(version) FROM vellum_schema_history", &[])
        .await
        .map_err(pg)?
        .get(0);
    let found = found.unwrap_or(0);
    let supported = PgStore::schema_version();
    if found > supported {
        return Err(SchemaError::TooNew { found, supported }.into());
    }
    for (version, name, sql) in MIGRATIONS {
        if *version <= found {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| SchemaError::Migration(format!("V{version}__{name}: {e}")))?;
        tx.execute(
            "INSERT INTO vellum_schema_history (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), applies the
    /// migrations it lacks and refuses one at a newer schema version.
    pub async fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("the database URL is not valid ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")))?;
        Self::connect_config(config).await
    }

    /// As [`PgStore::connect`], with a parsed configuration (a `search_path` in its
    /// options selects the schema).
    pub async fn connect_config(mut config: tokio_postgres::Config) -> Result<Self> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = tls::connector(config.get_ssl_mode())?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| Error::Backend(format!("PostgreSQL connection pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| pool_error(&config, e))?;
        migrate(&mut client).await?;
        let instance_id: String = client
            .query_one("SELECT instance_id FROM server_instance WHERE id = 1", &[])
            .await
            .map_err(pg)?
            .get(0);
        drop(client);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                tls,
                nonce_calls: AtomicU64::new(0),
                appends: AppendBatcher::new(APPEND_BATCH),
                instance_id,
            }),
        })
    }

    /// A plain client of the database at `url` on the store's TLS terms, for tools that
    /// prepare a database (the demo makes and drops a schema of its own with it).
    pub async fn admin_client(url: &str) -> Result<tokio_postgres::Client> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("the database URL is not valid ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")))?;
        let tls = tls::connector(config.get_ssl_mode())?;
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| connect_error(&config, &e))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A schema of its own in the database at `url`, named `{prefix}_<random>`, for tools
    /// that start nodes on a database that may already hold a deployment (the demo, the
    /// load benchmarks). [`ScratchSchema::url`] points nodes at it.
    pub async fn scratch_schema(url: &str, prefix: &str) -> Result<ScratchSchema> {
        let admin = Self::admin_client(url).await?;
        let mut raw = [0u8; 6];
        getrandom::fill(&mut raw).map_err(|e| Error::Backend(format!("no randomness: {e}")))?;
        let name = format!(
            "{prefix}_{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(pg)?;
        let joiner = if url.contains('?') { '&' } else { '?' };
        Ok(ScratchSchema {
            url: format!("{url}{joiner}options=-c%20search_path%3D{name}"),
            admin,
            name,
        })
    }

    /// Transactions (each one commit) that appended application messages since the store
    /// was opened, by this node.
    pub fn log_commits(&self) -> u64 {
        self.inner.appends.commits()
    }

    /// The schema version of this binary's newest migration.
    pub fn schema_version() -> i64 {
        MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&self.inner.config, e))
    }
}

/// The shared window of remembered nonces (the `request_nonce_window` row).
struct NonceWindowRow {
    forgotten_before: i64,
    started_at: i64,
}

impl NonceWindowRow {
    /// Why a request signed at `timestamp` is refused whatever its nonce, if it is.
    fn refusal(&self, timestamp: i64) -> Option<NonceCheck> {
        if timestamp < self.started_at {
            Some(NonceCheck::BeforeStart {
                started_at: self.started_at,
            })
        } else if timestamp < self.forgotten_before {
            Some(NonceCheck::Expired)
        } else {
            None
        }
    }
}

/// Reads the window; if its row is missing, the unlogged tables were emptied (crash
/// recovery, a promoted standby) and every nonce remembered before now is lost: the row is
/// written again, remembering from the next second on (another node may be accepting
/// requests in this one).
async fn nonce_window(c: &deadpool_postgres::Object, forget_before: i64) -> Result<NonceWindowRow> {
    let read = c
        .prepare_cached(
            "SELECT forgotten_before, started_at FROM request_nonce_window WHERE id = 1",
        )
        .await
        .map_err(pg)?;
    let row = match c.query_opt(&read, &[]).await.map_err(pg)? {
        Some(row) => row,
        None => {
            // The database's clock, as the sweep's: not the node's, which may run ahead.
            c.execute(
                &format!(
                    "INSERT INTO request_nonce_window (id, forgotten_before, started_at)
                     VALUES (1, LEAST($1, {DATABASE_NOW} - $2), {DATABASE_NOW} + 1)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[&forget_before, &MAX_CLOCK_SKEW_SECS],
            )
            .await
            .map_err(pg)?;
            // Another node may have written it first: its row is the one.
            c.query_one(&read, &[]).await.map_err(pg)?
        }
    };
    Ok(NonceWindowRow {
        forgotten_before: row.get(0),
        started_at: row.get(1),
    })
}

/// host:port/dbname of a configuration, without its user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// "cannot connect to the PostgreSQL database host:port/db: why", in one line: why is
/// PostgreSQL's own reason (`database "x" does not exist`) or the network's (`connection
/// refused`), never the layers it passed through, nor the user or password.
fn connect_error(config: &tokio_postgres::Config, e: &tokio_postgres::Error) -> Error {
    let refused = std::error::Error::source(e)
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    let why = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None if refused => "connection refused".into(),
        // What failed, then why, in one line ("error performing TLS handshake: server does
        // not support TLS").
        None => {
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(reason) = cause {
                why = format!("{why}: {reason}");
                cause = reason.source();
            }
            why
        }
    };
    Error::Backend(format!(
        "cannot connect to the PostgreSQL database {}: {why}",
        describe(config)
    ))
}

/// As [`connect_error`], for a connection the pool could not give.
fn pool_error(config: &tokio_postgres::Config, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => connect_error(config, &e),
        other => Error::Backend(format!(
            "cannot connect to the PostgreSQL database {}: {other}",
            describe(config)
        )),
    }
}

/// Starts a write transaction: locks the instance row, so writers are serialised as with
/// SQLite's single writer.
async fn write_tx(c: &mut deadpool_postgres::Object) -> Result<Transaction<'_>> {
    let tx = c.transaction().await.map_err(pg)?;
    lock_writers(&tx).await?;
    Ok(tx)
}

async fn lock_writers(tx: &Transaction<'_>) -> Result<()> {
    exec(
        tx,
        "SELECT 1 FROM server_instance WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await?;
    Ok(())
}

/// As [`write_tx`], for work that several nodes may start at once and one suffices for
/// (purges): `None` while another transaction holds `lock`, instead of waiting for it and
/// then redoing what it just did.
async fn exclusive_write_tx(
    c: &mut deadpool_postgres::Object,
    lock: AdvisoryLock,
) -> Result<Option<Transaction<'_>>> {
    let tx = c.transaction().await.map_err(pg)?;
    let granted: bool = one(
        &tx,
        &format!("SELECT COALESCE(pg_try_advisory_xact_lock({LOCK_NAMESPACE}, $1), false)"),
        &[&lock.key()],
    )
    .await?
    .get(0);
    if !granted {
        tx.rollback().await.map_err(pg)?;
        return Ok(None);
    }
    lock_writers(&tx).await?;
    Ok(Some(tx))
}

/// Starts a read-only transaction over one snapshot.
async fn read_tx(c: &mut deadpool_postgres::Object) -> Result<Transaction<'_>> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)
}

async fn done(tx: Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(pg)
}

/// The statements of [`append_message_in`], prepared once per pooled connection: the hot
/// path does not pay a round trip to parse each.
struct AppendStatements {
    group: Statement,
    earlier: Statement,
    member: Statement,
    insert: Statement,
    advance: Statement,
}

impl AppendStatements {
    async fn prepare(c: &deadpool_postgres::Object) -> Result<Self> {
        let prepare = |sql| async move { c.prepare_cached(sql).await.map_err(pg) };
        Ok(Self {
            group: prepare("SELECT epoch, last_seq, log_hash FROM groups WHERE group_id = $1").await?,
            earlier: prepare("SELECT seq, epoch FROM group_log WHERE group_id = $1 AND sender_device = $2 AND client_msg_id = $3").await?,
            member: prepare("SELECT 1 FROM memberships WHERE group_id = $1 AND device_id = $2 AND removed_seq IS NULL").await?,
            insert: prepare("INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, client_msg_id, payload, received_at, expires_at, log_hash) VALUES ($1, $2, $3, 'application', $4, $5, $6, $7, $8, $9)").await?,
            advance: prepare("UPDATE groups SET last_seq = $2, log_hash = $3 WHERE group_id = $1").await?,
        })
    }
}

/// One application message, inside the batch's transaction (see [`AppendLog`]).
async fn append_message_in(
    tx: &Transaction<'_>,
    sql: &AppendStatements,
    m: &MessageAppend,
) -> Result<Appended> {
    let group = tx
        .query_opt(&sql.group, &[&m.group_id])
        .await
        .map_err(pg)?
        .ok_or_else(|| Error::NotFound(format!("group {}", m.group_id)))?;
    let (epoch, last_seq) = (group.get::<_, i64>(0) as u64, group.get::<_, i64>(1) as u64);
    let prev_hash = hash_from(group.get(2))?;
    let earlier = tx
        .query_opt(
            &sql.earlier,
            &[&m.group_id, &m.sender_device, &m.client_msg_id],
        )
        .await
        .map_err(pg)?;
    if let Some(r) = earlier {
        return Ok(Appended {
            seq: r.get::<_, i64>(0) as u64,
            epoch: r.get::<_, i64>(1) as u64,
            duplicate: true,
        });
    }
    let member = tx
        .query_opt(&sql.member, &[&m.group_id, &m.sender_device])
        .await
        .map_err(pg)?;
    if member.is_none() {
        return Err(Error::NotMember);
    }
    if m.epoch != epoch {
        return Err(Error::StaleEpoch { current: epoch });
    }
    let seq = last_seq + 1;
    let hash = log_hash_next(
        &prev_hash,
        seq,
        epoch,
        EntryKind::Application,
        &m.sender_device,
        &m.payload,
    );
    tx.execute(
        &sql.insert,
        &[
            &m.group_id,
            &(seq as i64),
            &(epoch as i64),
            &m.sender_device,
            &m.client_msg_id,
            &m.payload,
            &m.received_at,
            &m.expires_at,
            &&hash[..],
        ],
    )
    .await
    .map_err(pg)?;
    tx.execute(&sql.advance, &[&m.group_id, &(seq as i64), &&hash[..]])
        .await
        .map_err(pg)?;
    Ok(Appended {
        seq,
        epoch,
        duplicate: false,
    })
}

#[async_trait]
impl AppendLog for PgStore {
    async fn append_batch(&self, batch: Vec<MessageAppend>) -> Result<Vec<Result<Appended>>> {
        let mut c = self.client().await?;
        let statements = AppendStatements::prepare(&c).await?;
        let mut tx = write_tx(&mut c).await?;
        let mut results = Vec::with_capacity(batch.len());
        for m in &batch {
            let savepoint = tx.transaction().await.map_err(pg)?;
            match append_message_in(&savepoint, &statements, m).await {
                Ok(appended) => {
                    savepoint.commit().await.map_err(pg)?;
                    results.push(Ok(appended));
                }
                Err(refused) => {
                    // Rolled back to before this message; if even that fails (the
                    // connection is gone), the batch fails with the cause.
                    if savepoint.rollback().await.is_err() {
                        return Err(refused);
                    }
                    results.push(Err(refused));
                }
            }
        }
        done(tx).await?;
        Ok(results)
    }
}

/// What the device has not acknowledged yet (see [`Store::pending`]), inside a read
/// transaction.
async fn pending_in(tx: &Transaction<'_>, device_id: &str, limit: usize) -> Result<Pending> {
    let welcomes = all(
        tx,
        "SELECT id, group_id, payload FROM welcome_queue WHERE device_id = $1 ORDER BY id LIMIT $2",
        &[&device_id, &(limit as i64 + 1)],
    )
    .await?
    .iter()
    .map(|r| StoredWelcome {
        id: r.get::<_, i64>(0) as u64,
        group_id: r.get(1),
        payload: r.get(2),
    })
    .collect();
    let mut pending = Pending {
        welcomes,
        ..Pending::default()
    };
    if pending.welcomes.len() > limit {
        pending.welcomes.truncate(limit);
        pending.more = true;
        return Ok(pending);
    }
    let mut budget = limit - pending.welcomes.len();
    let memberships: Vec<(String, i64, Option<i64>)> = all(
        tx,
        "SELECT group_id, GREATEST(joined_seq, acked_seq), removed_seq FROM memberships
         WHERE device_id = $1 AND (removed_seq IS NULL OR acked_seq < removed_seq)
         ORDER BY group_id",
        &[&device_id],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let is_archiver = opt(
        tx,
        "SELECT \"user\" FROM devices WHERE device_id = $1",
        &[&device_id],
    )
    .await?
    .is_some_and(|r| r.get::<_, String>(0) == vellum_wire::RECORDS_USER);
    for (group_id, after, removed) in memberships {
        let upto = removed.unwrap_or(i64::MAX);
        let rows = all(
            tx,
            "SELECT seq, epoch, kind, sender_device, received_at, payload, log_hash FROM group_log
             WHERE group_id = $1 AND seq > $2 AND seq <= $3 AND (deleted = 0 OR $5::BOOLEAN)
             ORDER BY seq LIMIT $4",
            &[&group_id, &after, &upto, &(budget as i64 + 1), &is_archiver],
        )
        .await?;
        let mut entries = Vec::new();
        for r in rows {
            let kind: String = r.get(2);
            entries.push(StoredEntry {
                seq: r.get::<_, i64>(0) as u64,
                epoch: r.get::<_, i64>(1) as u64,
                kind: kind_from(&kind)?,
                sender_device: r.get(3),
                received_at: r.get(4),
                payload: r.get(5),
                log_hash: hash_from(r.get(6))?,
            });
        }
        if entries.len() > budget {
            entries.truncate(budget);
            pending.more = true;
        }
        budget -= entries.len();
        if !entries.is_empty() {
            let h = one(
                tx,
                "SELECT last_seq, log_hash FROM groups WHERE group_id = $1",
                &[&group_id],
            )
            .await?;
            pending.heads.push((
                group_id.clone(),
                LogHead {
                    seq: h.get::<_, i64>(0) as u64,
                    log_hash: hash_from(h.get(1))?,
                },
            ));
            pending.groups.push((group_id, entries));
        }
        if pending.more || budget == 0 {
            pending.more = true;
            break;
        }
    }
    Ok(pending)
}

/// A schema made by [`PgStore::scratch_schema`]; [`ScratchSchema::drop_all`] drops it
/// and everything in it.
pub struct ScratchSchema {
    /// The database URL with the schema as its search path.
    pub url: String,
    admin: tokio_postgres::Client,
    name: String,
}

impl ScratchSchema {
    pub async fn drop_all(self) -> Result<()> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .map_err(pg)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn try_job_lease(&self, job: Job) -> Result<Option<Box<dyn JobLease>>> {
        let (client, connection) = self
            .inner
            .config
            .connect(self.inner.tls.clone())
            .await
            .map_err(|e| connect_error(&self.inner.config, &e))?;
        let connection = tokio::spawn(async move {
            // Its end is what `is_held` watches; the error itself says nothing more.
            let _ = connection.await;
        });
        let granted: bool = client
            .query_one(
                &format!("SELECT COALESCE(pg_try_advisory_lock({LOCK_NAMESPACE}, $1), false)"),
                &[&AdvisoryLock::Job(job).key()],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !granted {
            // The connection closes as `client` is dropped.
            return Ok(None);
        }
        let client = Arc::new(client);
        tokio::spawn(lease_heartbeat(
            Arc::downgrade(&client),
            connection.abort_handle(),
        ));
        Ok(Some(Box::new(PgJobLease {
            _client: client,
            connection,
        })))
    }

    async fn create_user(&self, name: &str, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        tx.execute(
            "INSERT INTO users (name, created_at) VALUES ($1, $2)",
            &[&name, &now],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("user {name}"))
            } else {
                pg(e)
            }
        })?;
        done(tx).await
    }

    async fn user_exists(&self, name: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(&tx, "SELECT 1 FROM users WHERE name = $1", &[&name]).await?;
        done(tx).await?;
        Ok(r.is_some())
    }

    async fn add_enrollment_code(
        &self,
        user: &str,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        exec(
            &tx,
            "INSERT INTO enrollment_codes (code_hash, \"user\", expires_at) VALUES ($1, $2, $3)",
            &[&&code_hash[..], &user, &expires_at],
        )
        .await?;
        done(tx).await
    }

    async fn enrollment_code_user(&self, code_hash: [u8; 32], now: i64) -> Result<String> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let user = live_code_user(&tx, &code_hash, now).await?;
        done(tx).await?;
        Ok(user)
    }

    async fn enroll_device(
        &self,
        code_hash: [u8; 32],
        now: i64,
        device: Device,
        has_identity: bool,
    ) -> Result<DeviceState> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let user = live_code_user(&tx, &code_hash, now).await?;
        if user != device.user {
            return Err(Error::InvalidCode);
        }
        let archiver = user == vellum_wire::RECORDS_USER;
        if archiver {
            let current: Option<Option<String>> = opt(
                &tx,
                &format!("SELECT {LIVE_ARCHIVER} FROM records_config WHERE id = 1"),
                &[],
            )
            .await?
            .map(|r| r.get(0));
            match current {
                None => {
                    return Err(Error::Forbidden(
                        "the user name records is reserved for the org's archiver, which records init sets up".into(),
                    ))
                }
                Some(Some(_)) => {
                    return Err(Error::Refused(
                        "the org's archiver is enrolled already: a second device of it is never added (to replace it, run `admin records replace-archiver`)".into(),
                    ))
                }
                Some(None) => {}
            }
        }
        exec(
            &tx,
            "UPDATE enrollment_codes SET used_at = $2 WHERE code_hash = $1",
            &[&&code_hash[..], &now],
        )
        .await?;
        let state = if archiver {
            DeviceState::Approved
        } else {
            let others: bool = one(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM devices WHERE \"user\" = $1 AND revoked_at IS NULL AND state != 'revoked')",
                &[&device.user],
            )
            .await?
            .get(0);
            if others || has_identity {
                DeviceState::Pending
            } else {
                DeviceState::Approved
            }
        };
        tx.execute(
            "INSERT INTO devices (device_id, \"user\", signature_key, enrolled_at, state) VALUES ($1, $2, $3, $4, $5)",
            &[&device.device_id, &device.user, &device.signature_key, &now, &state_str(state)],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict("device or signature key".into())
            } else {
                pg(e)
            }
        })?;
        if archiver {
            exec(
                &tx,
                "UPDATE records_config SET archiver_device = $1 WHERE id = 1",
                &[&device.device_id],
            )
            .await?;
        }
        done(tx).await?;
        Ok(state)
    }

    async fn device(&self, device_id: &str) -> Result<Option<Device>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT device_id, \"user\", signature_key FROM devices WHERE device_id = $1 AND revoked_at IS NULL",
            &[&device_id],
        )
        .await?;
        done(tx).await?;
        Ok(r.as_ref().map(read_device))
    }

    async fn device_status(&self, device_id: &str) -> Result<Option<(Device, Option<i64>)>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT device_id, \"user\", signature_key, revoked_at FROM devices WHERE device_id = $1",
            &[&device_id],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| (read_device(&r), r.get(3))))
    }

    async fn user_devices(&self, user: &str) -> Result<Vec<Device>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT device_id, \"user\", signature_key FROM devices WHERE \"user\" = $1 AND revoked_at IS NULL ORDER BY enrolled_at, device_id",
            &[&user],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(read_device).collect())
    }

    async fn device_record(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            &format!("SELECT {DEVICE_RECORD} FROM devices WHERE device_id = $1"),
            &[&device_id],
        )
        .await?;
        done(tx).await?;
        Ok(r.as_ref().map(read_device_record))
    }

    async fn revoke_device(&self, device_id: &str, at: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        if !revoke_in(&tx, device_id, at).await? {
            return Err(Error::NotFound(format!("device {device_id:?}")));
        }
        done(tx).await
    }

    async fn user_device_records(&self, user: &str) -> Result<Vec<DeviceRecord>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            &format!("SELECT {DEVICE_RECORD} FROM devices WHERE \"user\" = $1 ORDER BY enrolled_at, device_id"),
            &[&user],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(read_device_record).collect())
    }

    async fn legacy_devices(&self) -> Result<Vec<DeviceRecord>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            &format!("SELECT {DEVICE_RECORD} FROM devices WHERE state = 'legacy' AND revoked_at IS NULL AND \"user\" != 'records' ORDER BY enrolled_at, device_id"),
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(read_device_record).collect())
    }

    async fn touch_device(&self, device_id: &str, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // Only a minute's precision: most syncs write nothing. Not worth a synchronous
        // commit. LOCAL: the setting ends with the transaction, even one cancelled midway,
        // so the pooled connection never carries it into another request's commit.
        exec(&tx, "SET LOCAL synchronous_commit = off", &[]).await?;
        exec(
            &tx,
            "UPDATE devices SET last_seen = $2 WHERE device_id = $1 AND (last_seen IS NULL OR last_seen <= $2::BIGINT - $3::BIGINT)",
            &[&device_id, &now, &LAST_SEEN_PRECISION_SECS],
        )
        .await?;
        done(tx).await
    }

    async fn remember_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        timestamp: i64,
        forget_before: i64,
    ) -> Result<NonceCheck> {
        let c = self.client().await?;
        if timestamp < forget_before {
            // Nothing to remember; the window says which refusal it is.
            let window = nonce_window(&c, forget_before).await?;
            return Ok(window.refusal(timestamp).unwrap_or(NonceCheck::Expired));
        }
        if self
            .inner
            .nonce_calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(NONCE_SWEEP_EVERY)
        {
            // The window moves and the rows it passed go in one statement, so whoever
            // finds a dropped row's key free (below) also sees the window that dropped it.
            // Never past the database's clock minus the window: every node refuses what
            // the shared window passed, so one node's clock running ahead would otherwise
            // lock out the clients of every other.
            let sweep = c
                .prepare_cached(&format!(
                    "WITH w AS (
                         UPDATE request_nonce_window
                         SET forgotten_before = GREATEST(forgotten_before, LEAST($1, {DATABASE_NOW} - $2))
                         WHERE id = 1 RETURNING forgotten_before)
                     DELETE FROM request_nonces WHERE signed_at < (SELECT forgotten_before FROM w)"
                ))
                .await
                .map_err(pg)?;
            c.execute(&sweep, &[&forget_before, &MAX_CLOCK_SKEW_SECS])
                .await
                .map_err(pg)?;
        }
        let insert = c
            .prepare_cached(
                "INSERT INTO request_nonces (key, signed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(pg)?;
        let key = nonce_key(device_id, nonce, timestamp);
        let inserted = c
            .execute(&insert, &[&&key[..], &timestamp])
            .await
            .map_err(pg)?;
        // Read after the insert, in a statement (and so a snapshot) of its own: if the key
        // was free because a sweep had just dropped it, the window the sweep moved is seen.
        let window = nonce_window(&c, forget_before).await?;
        Ok(match window.refusal(timestamp) {
            Some(refused) => refused,
            None if inserted == 1 => NonceCheck::Fresh,
            None => NonceCheck::Replayed,
        })
    }

    async fn instance_id(&self) -> Result<String> {
        Ok(self.inner.instance_id.clone())
    }

    async fn add_key_packages(
        &self,
        device_id: &str,
        single_use: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        async fn first_time(tx: &Transaction<'_>, kp: &[u8]) -> Result<bool> {
            let hash: [u8; 32] = Sha256::digest(kp).into();
            Ok(exec(
                tx,
                "INSERT INTO key_package_hashes (hash) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&&hash[..]],
            )
            .await?
                == 1)
        }
        for kp in single_use {
            if !first_time(&tx, &kp).await? {
                continue;
            }
            exec(
                &tx,
                "INSERT INTO key_packages (device_id, data, last_resort) VALUES ($1, $2, 0)",
                &[&device_id, &kp],
            )
            .await?;
        }
        if let Some(kp) = last_resort {
            if first_time(&tx, &kp).await? {
                exec(
                    &tx,
                    "DELETE FROM key_packages WHERE device_id = $1 AND last_resort = 1",
                    &[&device_id],
                )
                .await?;
                exec(
                    &tx,
                    "INSERT INTO key_packages (device_id, data, last_resort) VALUES ($1, $2, 1)",
                    &[&device_id, &kp],
                )
                .await?;
            }
        }
        done(tx).await
    }

    async fn key_package_count(&self, device_id: &str) -> Result<(u64, bool)> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = one(
            &tx,
            "SELECT COUNT(*) FILTER (WHERE last_resort = 0), COALESCE(MAX(last_resort), 0) FROM key_packages WHERE device_id = $1",
            &[&device_id],
        )
        .await?;
        done(tx).await?;
        Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) == 1))
    }

    async fn claim_key_package(&self, device_id: &str) -> Result<Option<Vec<u8>>> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let row = opt(
            &tx,
            "SELECT id, data, last_resort FROM key_packages WHERE device_id = $1 ORDER BY last_resort, id LIMIT 1",
            &[&device_id],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (id, data, last_resort): (i64, Vec<u8>, bool) =
            (row.get(0), row.get(1), row.get::<_, i64>(2) == 1);
        if !last_resort {
            exec(&tx, "DELETE FROM key_packages WHERE id = $1", &[&id]).await?;
        }
        done(tx).await?;
        Ok(Some(data))
    }

    async fn create_group(&self, group: NewGroup) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        tx.execute(
            "INSERT INTO groups (group_id, epoch, state, last_seq, created_at, expire_secs, burn_secs, log_hash, record) VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8)",
            &[
                &group.group_id,
                &(group.epoch as i64),
                &group.state,
                &group.created_at,
                &opt_i64(group.timers.expire_secs),
                &opt_i64(group.timers.burn_secs),
                &&log_hash_start(&group.group_id)[..],
                &(group.record as i64),
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("group {}", group.group_id))
            } else {
                pg(e)
            }
        })?;
        exec(
            &tx,
            "INSERT INTO memberships (group_id, device_id, joined_seq, acked_seq) VALUES ($1, $2, 0, 0)",
            &[&group.group_id, &group.creator_device],
        )
        .await?;
        done(tx).await
    }

    async fn group(&self, group_id: &str) -> Result<Option<GroupState>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            &format!(
                "SELECT group_id, epoch, state, expire_secs, burn_secs, COALESCE(record, 0), {}, state_version
                 FROM groups WHERE group_id = $1",
                held_chat("groups.group_id")
            ),
            &[&group_id],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| GroupState {
            group_id: r.get(0),
            epoch: r.get::<_, i64>(1) as u64,
            state: r.get(2),
            timers: ChatTimers {
                expire_secs: opt_u64(r.get(3)),
                burn_secs: opt_u64(r.get(4)),
            },
            record: r.get::<_, i64>(5) == 1,
            held: r.get(6),
            state_version: r.get::<_, i64>(7) as u64,
        }))
    }

    async fn unclassified_groups(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT group_id, state FROM groups WHERE record IS NULL ORDER BY group_id",
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn set_group_class(&self, group_id: &str, record: bool) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let changed = exec(
            &tx,
            "UPDATE groups SET record = $2 WHERE group_id = $1",
            &[&group_id, &(record as i64)],
        )
        .await?;
        if changed == 0 {
            return Err(Error::NotFound(format!("group {group_id}")));
        }
        done(tx).await
    }

    async fn transitory_chats(&self, limit: usize) -> Result<(u64, Vec<String>)> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let live = "record = 0 AND EXISTS (SELECT 1 FROM memberships m
                    WHERE m.group_id = groups.group_id AND m.removed_seq IS NULL)";
        let count: i64 = one(
            &tx,
            &format!("SELECT COUNT(*) FROM groups WHERE {live}"),
            &[],
        )
        .await?
        .get(0);
        let ids = all(
            &tx,
            &format!(
                "SELECT group_id FROM groups WHERE {live} ORDER BY created_at, group_id LIMIT $1"
            ),
            &[&(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        done(tx).await?;
        Ok((count as u64, ids))
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT device_id FROM memberships WHERE group_id = $1 AND removed_seq IS NULL ORDER BY device_id",
            &[&group_id],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn is_member(&self, group_id: &str, device_id: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let member = is_current_member(&tx, group_id, device_id).await?;
        done(tx).await?;
        Ok(member)
    }

    async fn group_cursors(&self, group_id: &str) -> Result<Vec<vellum_wire::DeviceCursor>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT d.user, m.device_id, m.acked_seq FROM memberships m
             JOIN devices d USING (device_id)
             WHERE m.group_id = $1 AND m.removed_seq IS NULL ORDER BY m.device_id",
            &[&group_id],
        )
        .await?;
        done(tx).await?;
        Ok(rows
            .iter()
            .map(|r| vellum_wire::DeviceCursor {
                user: r.get(0),
                device_id: r.get(1),
                acked_seq: r.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    async fn append_commit(&self, commit: CommitAppend) -> Result<Appended> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let (epoch, last_seq, prev_hash) = current_epoch(&tx, &commit.group_id).await?;
        if epoch != commit.expected_epoch {
            return Err(Error::StaleEpoch { current: epoch });
        }
        if !is_current_member(&tx, &commit.group_id, &commit.sender_device).await? {
            return Err(Error::NotMember);
        }
        check_state_version(&tx, &commit.group_id, epoch, commit.expected_state_version).await?;
        let seq = last_seq + 1;
        let hash = log_hash_next(
            &prev_hash,
            seq,
            epoch,
            EntryKind::Commit,
            &commit.sender_device,
            &commit.payload,
        );
        let seq_i = seq as i64;
        exec(
            &tx,
            "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, payload, received_at, log_hash) VALUES ($1, $2, $3, 'commit', $4, $5, $6, $7)",
            &[
                &commit.group_id,
                &seq_i,
                &(commit.expected_epoch as i64),
                &commit.sender_device,
                &commit.payload,
                &commit.received_at,
                &&hash[..],
            ],
        )
        .await?;
        exec(
            &tx,
            "UPDATE groups SET epoch = $2, state = $3, last_seq = $4, expire_secs = $5, burn_secs = $6, log_hash = $7, record = $8, state_version = state_version + 1 WHERE group_id = $1",
            &[
                &commit.group_id,
                &(commit.new_epoch as i64),
                &commit.state,
                &seq_i,
                &opt_i64(commit.timers.expire_secs),
                &opt_i64(commit.timers.burn_secs),
                &&hash[..],
                &(commit.record as i64),
            ],
        )
        .await?;
        for device in &commit.removed {
            exec(
                &tx,
                "UPDATE memberships SET removed_seq = $3 WHERE group_id = $1 AND device_id = $2 AND removed_seq IS NULL",
                &[&commit.group_id, device, &seq_i],
            )
            .await?;
        }
        for device in &commit.added {
            exec(
                &tx,
                "INSERT INTO memberships (group_id, device_id, joined_seq, acked_seq) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (group_id, device_id) DO UPDATE SET joined_seq = $3, acked_seq = $3, removed_seq = NULL",
                &[&commit.group_id, device, &seq_i],
            )
            .await?;
            if let Some(welcome) = &commit.welcome {
                exec(
                    &tx,
                    "INSERT INTO welcome_queue (device_id, group_id, payload) VALUES ($1, $2, $3)",
                    &[device, &commit.group_id, welcome],
                )
                .await?;
            }
        }
        done(tx).await?;
        Ok(Appended {
            seq,
            epoch: commit.new_epoch,
            duplicate: false,
        })
    }

    async fn find_commit(
        &self,
        group_id: &str,
        epoch: u64,
        sender_device: &str,
        payload: &[u8],
    ) -> Result<Option<u64>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT seq FROM group_log WHERE group_id = $1 AND kind = 'commit' AND epoch = $2 AND sender_device = $3 AND payload = $4",
            &[&group_id, &(epoch as i64), &sender_device, &payload],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn append_proposals(&self, p: ProposalAppend) -> Result<Appended> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let (epoch, mut seq, mut hash) = current_epoch(&tx, &p.group_id).await?;
        if epoch != p.epoch {
            return Err(Error::StaleEpoch { current: epoch });
        }
        if !is_current_member(&tx, &p.group_id, &p.sender_device).await? {
            return Err(Error::NotMember);
        }
        check_state_version(&tx, &p.group_id, epoch, p.expected_state_version).await?;
        for payload in &p.payloads {
            seq += 1;
            hash = log_hash_next(
                &hash,
                seq,
                epoch,
                EntryKind::Proposal,
                &p.sender_device,
                payload,
            );
            exec(
                &tx,
                "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, payload, received_at, log_hash) VALUES ($1, $2, $3, 'proposal', $4, $5, $6, $7)",
                &[
                    &p.group_id,
                    &(seq as i64),
                    &(epoch as i64),
                    &p.sender_device,
                    payload,
                    &p.received_at,
                    &&hash[..],
                ],
            )
            .await?;
        }
        exec(
            &tx,
            "UPDATE groups SET state = $2, last_seq = $3, log_hash = $4, state_version = state_version + 1 WHERE group_id = $1",
            &[&p.group_id, &p.state, &(seq as i64), &&hash[..]],
        )
        .await?;
        for device in &p.leaving {
            exec(
                &tx,
                "UPDATE memberships SET removed_seq = $3 WHERE group_id = $1 AND device_id = $2 AND removed_seq IS NULL",
                &[&p.group_id, device, &(seq as i64)],
            )
            .await?;
        }
        done(tx).await?;
        Ok(Appended {
            seq,
            epoch,
            duplicate: false,
        })
    }

    async fn append_message(&self, m: MessageAppend) -> Result<Appended> {
        self.inner.appends.append(self, m).await
    }

    async fn sync_view(&self, device_id: &str, limit: usize) -> Result<SyncView> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let pending = pending_in(&tx, device_id, limit).await?;
        let receipts = all(
            &tx,
            "SELECT id, receipt FROM receipt_queue WHERE device_id = $1 ORDER BY id LIMIT $2",
            &[&device_id, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect();
        let held_chats = all(
            &tx,
            &format!(
                "SELECT mine.group_id FROM memberships mine
                 WHERE mine.device_id = $1 AND mine.removed_seq IS NULL AND {}
                 ORDER BY mine.group_id",
                held_chat("mine.group_id")
            ),
            &[&device_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        done(tx).await?;
        Ok(SyncView {
            pending,
            receipts,
            held_chats,
        })
    }

    async fn ack(
        &self,
        device_id: &str,
        welcome_ids: &[u64],
        cursors: &[(String, u64)],
        receipt_ids: &[u64],
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        if welcome_ids.is_empty() && receipt_ids.is_empty() {
            // A cursor-only ack need not wait for its WAL flush: at worst a crash
            // redelivers entries the device skips by seq.
            exec(&tx, "SET LOCAL synchronous_commit = off", &[]).await?;
        }
        for (group_id, seq) in cursors {
            let known = opt(
                &tx,
                "SELECT g.last_seq FROM memberships m JOIN groups g USING (group_id) WHERE m.group_id = $1 AND m.device_id = $2",
                &[group_id, &device_id],
            )
            .await?;
            let Some(known) = known else {
                return Err(Error::NotMember);
            };
            let last_seq: i64 = known.get(0);
            if *seq as i64 > last_seq {
                return Err(Error::NotFound(format!("entry {seq} of group {group_id}")));
            }
            exec(
                &tx,
                "UPDATE memberships SET acked_seq = GREATEST(acked_seq, $3) WHERE group_id = $1 AND device_id = $2",
                &[group_id, &device_id, &(*seq as i64)],
            )
            .await?;
        }
        for id in welcome_ids {
            exec(
                &tx,
                "DELETE FROM welcome_queue WHERE id = $1 AND device_id = $2",
                &[&(*id as i64), &device_id],
            )
            .await?;
        }
        for id in receipt_ids {
            exec(
                &tx,
                "DELETE FROM receipt_queue WHERE id = $1 AND device_id = $2",
                &[&(*id as i64), &device_id],
            )
            .await?;
        }
        done(tx).await
    }

    async fn org_policy(&self) -> Result<OrgPolicy> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let mut policy = opt(
            &tx,
            "SELECT max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory, hold_converts, receipt_alarm_secs, reset_wait_secs, allow_read_receipts, max_file_bytes, user_quota_bytes, files_in_transitory, files_in_record FROM org_policy WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| OrgPolicy {
            max_expire_secs: opt_u64(r.get(0)),
            max_burn_secs: opt_u64(r.get(1)),
            allow_no_expiry: r.get::<_, i64>(2) == 1,
            default_record: r.get::<_, i64>(3) == 1,
            allow_transitory: r.get::<_, i64>(4) == 1,
            archiver_device: None,
            records_public: None,
            records_binding: None,
            on_hold: if r.get::<_, i64>(5) == 1 {
                HoldAction::Convert
            } else {
                HoldAction::SuspendTimers
            },
            receipt_alarm_secs: opt_u64(r.get(6))
                .unwrap_or(vellum_wire::DEFAULT_RECEIPT_ALARM_SECS),
            reset_wait_secs: opt_u64(r.get(7)).unwrap_or(vellum_wire::DEFAULT_RESET_WAIT_SECS),
            allow_read_receipts: r.get::<_, Option<i64>>(8) != Some(0),
            max_file_bytes: opt_u64(r.get(9)).unwrap_or(vellum_wire::DEFAULT_MAX_FILE_BYTES),
            user_quota_bytes: opt_u64(r.get(10))
                .unwrap_or(vellum_wire::DEFAULT_USER_QUOTA_BYTES),
            files_in_transitory: r.get::<_, Option<i64>>(11) != Some(0),
            files_in_record: r.get::<_, Option<i64>>(12) != Some(0),
        })
        .unwrap_or_default();
        if let Some(config) = records_config_in(&tx).await? {
            policy.archiver_device = config.archiver_device;
            policy.records_public = Some(config.records_public);
            policy.records_binding = config.binding.map(|(_, b)| b);
        }
        done(tx).await?;
        Ok(policy)
    }

    async fn set_org_policy(&self, policy: OrgPolicy) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        exec(
            &tx,
            "INSERT INTO org_policy (id, max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory, hold_converts, receipt_alarm_secs, reset_wait_secs, allow_read_receipts, max_file_bytes, user_quota_bytes, files_in_transitory, files_in_record) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET max_expire_secs = EXCLUDED.max_expire_secs, max_burn_secs = EXCLUDED.max_burn_secs,
                allow_no_expiry = EXCLUDED.allow_no_expiry, default_record = EXCLUDED.default_record,
                allow_transitory = EXCLUDED.allow_transitory, hold_converts = EXCLUDED.hold_converts,
                receipt_alarm_secs = EXCLUDED.receipt_alarm_secs, reset_wait_secs = EXCLUDED.reset_wait_secs,
                allow_read_receipts = EXCLUDED.allow_read_receipts, max_file_bytes = EXCLUDED.max_file_bytes,
                user_quota_bytes = EXCLUDED.user_quota_bytes, files_in_transitory = EXCLUDED.files_in_transitory,
                files_in_record = EXCLUDED.files_in_record",
            &[
                &opt_i64(policy.max_expire_secs),
                &opt_i64(policy.max_burn_secs),
                &(policy.allow_no_expiry as i64),
                &(policy.default_record as i64),
                &(policy.allow_transitory as i64),
                &((policy.on_hold == HoldAction::Convert) as i64),
                &(policy.receipt_alarm_secs as i64),
                &(policy.reset_wait_secs as i64),
                &(policy.allow_read_receipts as i64),
                &(policy.max_file_bytes as i64),
                &(policy.user_quota_bytes as i64),
                &(policy.files_in_transitory as i64),
                &(policy.files_in_record as i64),
            ],
        )
        .await?;
        done(tx).await
    }

    async fn records_public(&self) -> Result<Option<String>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT records_public FROM records_config WHERE id = 1",
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn set_held_users(&self, users: Vec<String>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        exec(&tx, "DELETE FROM held_users", &[]).await?;
        for user in users {
            exec(
                &tx,
                "INSERT INTO held_users (\"user\") VALUES ($1) ON CONFLICT DO NOTHING",
                &[&user],
            )
            .await?;
        }
        done(tx).await
    }

    async fn held_users(&self) -> Result<Vec<String>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT \"user\" FROM held_users ORDER BY \"user\"",
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn records_config(&self) -> Result<Option<RecordsConfig>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let config = records_config_in(&tx).await?;
        done(tx).await?;
        Ok(config)
    }

    async fn init_records(
        &self,
        records_public: &str,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        if records_config_in(&tx).await?.is_some() {
            return Err(Error::Refused("records are already initialised".into()));
        }
        let user_exists = opt(
            &tx,
            "SELECT 1 FROM users WHERE name = $1",
            &[&vellum_wire::RECORDS_USER],
        )
        .await?
        .is_some();
        if user_exists {
            return Err(Error::Refused(
                "a user named records exists that records init did not create; it can never become the archiver, and the name is needed for it".into(),
            ));
        }
        exec(
            &tx,
            "INSERT INTO users (name, created_at) VALUES ($1, $2)",
            &[&vellum_wire::RECORDS_USER, &now],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO enrollment_codes (code_hash, \"user\", expires_at) VALUES ($1, $2, $3)",
            &[&&code_hash[..], &vellum_wire::RECORDS_USER, &expires_at],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO records_config (id, records_public) VALUES (1, $1)",
            &[&records_public],
        )
        .await?;
        done(tx).await
    }

    async fn replace_archiver(
        &self,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<Option<String>> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let Some(config) = records_config_in(&tx).await? else {
            return Err(Error::NotFound(
                "records configuration (run records init)".into(),
            ));
        };
        if let Some(old) = &config.archiver_device {
            revoke_in(&tx, old, now).await?;
        }
        exec(
            &tx,
            "UPDATE enrollment_codes SET used_at = $2 WHERE \"user\" = $1 AND used_at IS NULL",
            &[&vellum_wire::RECORDS_USER, &now],
        )
        .await?;
        exec(
            &tx,
            "UPDATE records_config SET archiver_device = NULL WHERE id = 1",
            &[],
        )
        .await?;
        exec(
            &tx,
            "INSERT INTO enrollment_codes (code_hash, \"user\", expires_at) VALUES ($1, $2, $3)",
            &[&&code_hash[..], &vellum_wire::RECORDS_USER, &expires_at],
        )
        .await?;
        done(tx).await?;
        Ok(config.archiver_device)
    }

    async fn set_records_binding(&self, new: NewBinding) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let Some(config) = records_config_in(&tx).await? else {
            return Err(Error::NotFound(
                "records configuration (run records init)".into(),
            ));
        };
        if config.records_public != new.expected_public {
            return Err(Error::Refused(
                "records.pub changed while the binding was checked; send it again".into(),
            ));
        }
        match &config.binding {
            Some((serial, stored)) if *serial == new.serial && *stored == new.binding => {
                return Ok(());
            }
            Some((serial, _)) if *serial >= new.serial => {
                return Err(Error::Refused(format!(
                    "the binding on file has serial {serial}; a new one must have a higher serial than that"
                )))
            }
            _ => {}
        }
        match &config.archiver_device {
            Some(current) if *current != new.archiver_device => {
                return Err(Error::Forbidden(
                    "the binding names another device than the org's archiver".into(),
                ))
            }
            _ => {}
        }
        exec(
            &tx,
            "UPDATE records_config SET binding = $1, binding_serial = $2, archiver_device = $3,
             records_public = COALESCE($4, records_public) WHERE id = 1",
            &[
                &new.binding,
                &(new.serial as i64),
                &new.archiver_device,
                &new.new_public,
            ],
        )
        .await?;
        if new.new_log {
            exec(&tx, "DELETE FROM records_checkpoints", &[]).await?;
        }
        done(tx).await
    }

    async fn records_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints WHERE size >= $1 ORDER BY size LIMIT $2"),
            &[&(from.min(i64::MAX as u64) as i64), &(limit as i64)],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(read_checkpoint).collect())
    }

    async fn records_checkpoint_head(&self) -> Result<Option<StoredCheckpoint>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let head = head_checkpoint(&tx).await?;
        done(tx).await?;
        Ok(head)
    }

    async fn records_checkpoint_witnessed(&self) -> Result<Option<StoredCheckpoint>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints
                 WHERE witnessed_at IS NOT NULL ORDER BY size DESC LIMIT 1"
            ),
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(r.as_ref().map(read_checkpoint))
    }

    async fn append_records_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let head = head_checkpoint(&tx).await?.map(|h| h.size);
        let extends = match head {
            None => checkpoint.previous_size == 0,
            Some(h) => checkpoint.previous_size == h && checkpoint.size > h,
        };
        if !extends {
            return Err(Error::Conflict(format!(
                "the checkpoint chain (at {})",
                head.unwrap_or(0)
            )));
        }
        exec(
            &tx,
            "INSERT INTO records_checkpoints (size, note, previous_size, proof, received_at, renewed_at, witnessed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &(checkpoint.size as i64),
                &checkpoint.note,
                &(checkpoint.previous_size as i64),
                &checkpoint.proof.join(","),
                &checkpoint.received_at,
                &checkpoint.renewed_at,
                &checkpoint.witnessed_at,
            ],
        )
        .await?;
        done(tx).await
    }

    async fn renew_records_checkpoint(
        &self,
        size: u64,
        note: Option<String>,
        witnessed: bool,
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        if head_checkpoint(&tx).await?.map(|h| h.size) != Some(size) {
            return Err(Error::Conflict(format!(
                "the checkpoint chain (not at {size})"
            )));
        }
        exec(
            &tx,
            "UPDATE records_checkpoints SET renewed_at = $2, note = COALESCE($3, note),
             witnessed_at = CASE WHEN $4::BOOLEAN THEN COALESCE(witnessed_at, $2) ELSE witnessed_at END
             WHERE size = $1",
            &[&(size as i64), &now, &note, &witnessed],
        )
        .await?;
        done(tx).await
    }

    async fn mark_receipted(&self, entries: Vec<(String, u64)>, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        for (group_id, seq) in entries {
            exec(
                &tx,
                "UPDATE group_log SET receipted_at = $3
                 WHERE group_id = $1 AND seq = $2 AND receipted_at IS NULL",
                &[&group_id, &(seq as i64), &now],
            )
            .await?;
        }
        done(tx).await
    }

    async fn unreceipted(&self, received_before: i64) -> Result<(u64, Option<i64>)> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = one(
            &tx,
            "SELECT COUNT(*), MIN(l.received_at) FROM group_log l
             WHERE l.kind = 'application' AND l.receipted_at IS NULL AND l.received_at < $1
               AND EXISTS (SELECT 1 FROM memberships m JOIN devices d USING (device_id)
                   WHERE m.group_id = l.group_id AND d.user = $2
                     AND m.joined_seq < l.seq
                     AND (m.removed_seq IS NULL OR l.seq <= m.removed_seq))",
            &[&received_before, &vellum_wire::RECORDS_USER],
        )
        .await?;
        done(tx).await?;
        Ok((r.get::<_, i64>(0) as u64, r.get(1)))
    }

    async fn queue_receipts(&self, receipts: Vec<(String, String)>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        for (device, receipt) in receipts {
            exec(
                &tx,
                "INSERT INTO receipt_queue (device_id, receipt) VALUES ($1, $2)",
                &[&device, &receipt],
            )
            .await?;
        }
        done(tx).await
    }

    async fn archiver_backlog(&self) -> Result<(u64, Option<i64>)> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = one(
            &tx,
            "SELECT COUNT(*), MIN(l.received_at) FROM group_log l
             JOIN memberships m ON m.group_id = l.group_id
             JOIN devices d ON d.device_id = m.device_id
             WHERE d.user = $1 AND d.revoked_at IS NULL AND m.removed_seq IS NULL
               AND l.seq > m.acked_seq AND l.seq > m.joined_seq",
            &[&vellum_wire::RECORDS_USER],
        )
        .await?;
        done(tx).await?;
        Ok((r.get::<_, i64>(0) as u64, r.get(1)))
    }

    async fn purge_expired(&self, now: i64, received_before: i64) -> Result<u64> {
        let mut c = self.client().await?;
        let Some(tx) = exclusive_write_tx(&mut c, AdvisoryLock::PurgeMessages).await? else {
            // Another node is purging these very messages.
            return Ok(0);
        };
        let purged = exec(
            &tx,
            &format!(
                "DELETE FROM group_log WHERE kind = 'application'
                 AND ((expires_at IS NOT NULL AND expires_at <= $1 AND NOT {held})
                      OR received_at < $2 OR deleted = 1)
                 AND NOT {ARCHIVER_PENDING}",
                held = held_chat("group_log.group_id")
            ),
            &[&now, &received_before],
        )
        .await?;
        done(tx).await?;
        Ok(purged)
    }

    async fn delete_message(&self, group_id: &str, seq: u64, requester_device: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let seq_i = seq as i64;
        let owner: Option<(String, String, String)> = opt(
            &tx,
            "SELECT l.kind, d.user, r.user FROM group_log l
             JOIN devices d ON d.device_id = l.sender_device
             JOIN devices r ON r.device_id = $3
             WHERE l.group_id = $1 AND l.seq = $2",
            &[&group_id, &seq_i, &requester_device],
        )
        .await?
        .map(|r| (r.get(0), r.get(1), r.get(2)));
        match owner {
            None => {
                return Err(Error::NotFound(format!(
                    "message {seq} of group {group_id}"
                )))
            }
            Some((kind, _, _)) if kind != "application" => {
                return Err(Error::Forbidden(
                    "only messages can be deleted, not membership changes".into(),
                ))
            }
            Some((_, sender, requester)) if sender != requester => {
                return Err(Error::Forbidden(
                    "only the sender can delete a message for everyone".into(),
                ))
            }
            Some(_) => {}
        }
        exec(
            &tx,
            &format!(
                "UPDATE group_log SET deleted = 1 WHERE group_id = $1 AND seq = $2 AND {ARCHIVER_PENDING}"
            ),
            &[&group_id, &seq_i],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM group_log WHERE group_id = $1 AND seq = $2 AND deleted = 0",
            &[&group_id, &seq_i],
        )
        .await?;
        done(tx).await
    }

    async fn create_blob(&self, blob: NewBlob) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let user: String = opt(
            &tx,
            "SELECT \"user\" FROM devices WHERE device_id = $1",
            &[&blob.uploader_device],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| Error::NotFound(format!("device {}", blob.uploader_device)))?;
        let used: i64 = one(
            &tx,
            "SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs WHERE uploader_user = $1",
            &[&user],
        )
        .await?
        .get(0);
        let used = used.max(0) as u64;
        if used.saturating_add(blob.size) > blob.user_quota {
            return Err(Error::QuotaExceeded {
                used,
                size: blob.size,
                quota: blob.user_quota,
            });
        }
        let chunks = NewBlob::chunk_count(blob.size, blob.chunk_size);
        let inserted = exec(
            &tx,
            "INSERT INTO blobs (blob_id, group_id, uploader_device, uploader_user,
                size, chunk_size, chunks, record, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            &[
                &blob.blob_id,
                &blob.group_id,
                &blob.uploader_device,
                &user,
                &(blob.size as i64),
                &i64::from(blob.chunk_size),
                &(chunks as i64),
                &(blob.record as i64),
                &blob.expires_at,
                &blob.created_at,
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(Error::Conflict(format!("blob {}", blob.blob_id)));
        }
        done(tx).await
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<BlobInfo>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let blob = blob_in(&tx, blob_id).await?;
        done(tx).await?;
        Ok(blob)
    }

    async fn put_blob_chunks(&self, blob_id: &str, first: u64, chunks: Vec<Vec<u8>>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let blob = blob_in(&tx, blob_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
        if blob.finished {
            return Err(Error::Refused(format!("blob {blob_id} is complete")));
        }
        if first < blob.present {
            return Err(Error::Conflict(format!("chunk {first} of blob {blob_id}")));
        }
        if first != blob.present {
            return Err(Error::Refused(format!(
                "chunks are taken in order: blob {blob_id} expects chunk {} next",
                blob.present
            )));
        }
        if first + chunks.len() as u64 > blob.chunks {
            return Err(Error::Refused(format!(
                "blob {blob_id} has {} chunks",
                blob.chunks
            )));
        }
        for (i, data) in chunks.iter().enumerate() {
            exec(
                &tx,
                "INSERT INTO blob_chunks (blob_id, idx, data) VALUES ($1, $2, $3)",
                &[&blob_id, &((first + i as u64) as i64), data],
            )
            .await?;
        }
        done(tx).await
    }

    async fn finish_blob(&self, blob_id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let blob = blob_in(&tx, blob_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
        if blob.present < blob.chunks {
            return Err(Error::Refused(format!(
                "blob {blob_id} has {} of its {} chunks",
                blob.present, blob.chunks
            )));
        }
        exec(
            &tx,
            "UPDATE blobs SET finished = 1 WHERE blob_id = $1",
            &[&blob_id],
        )
        .await?;
        done(tx).await
    }

    async fn blob_chunk(&self, blob_id: &str, index: u64) -> Result<Option<Vec<u8>>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT data FROM blob_chunks WHERE blob_id = $1 AND idx = $2",
            &[&blob_id, &(index as i64)],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn delete_blob(&self, blob_id: &str, requester_device: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let blob = blob_in(&tx, blob_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
        let user: Option<String> = opt(
            &tx,
            "SELECT \"user\" FROM devices WHERE device_id = $1",
            &[&requester_device],
        )
        .await?
        .map(|r| r.get(0));
        if user.as_deref() != Some(blob.uploader_user.as_str()) {
            return Err(Error::Forbidden(
                "only the uploader can delete a file for everyone".into(),
            ));
        }
        if blob.record && blob.finished && !blob.archived {
            exec(
                &tx,
                "UPDATE blobs SET deleted = 1 WHERE blob_id = $1",
                &[&blob_id],
            )
            .await?;
            return done(tx).await;
        }
        drop_blob(&tx, blob_id).await?;
        done(tx).await
    }

    async fn mark_blob_archived(&self, blob_id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let blob = blob_in(&tx, blob_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
        if !blob.finished {
            return Err(Error::Refused(format!("blob {blob_id} is not complete")));
        }
        exec(
            &tx,
            "UPDATE blobs SET archived = 1 WHERE blob_id = $1",
            &[&blob_id],
        )
        .await?;
        done(tx).await
    }

    async fn purge_blobs(&self, now: i64, created_before: i64) -> Result<u64> {
        let mut c = self.client().await?;
        let Some(tx) = exclusive_write_tx(&mut c, AdvisoryLock::PurgeBlobs).await? else {
            // Another node is purging these very blobs.
            return Ok(0);
        };
        let doomed: Vec<String> = all(
            &tx,
            &format!(
                "SELECT blob_id FROM blobs
                 WHERE ((expires_at IS NOT NULL AND expires_at <= $1 AND NOT {held})
                        OR deleted = 1
                        OR (finished = 0 AND created_at < $2))
                   AND NOT (record = 1 AND finished = 1 AND archived = 0)",
                held = held_chat("blobs.group_id")
            ),
            &[&now, &created_before],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        for blob_id in &doomed {
            drop_blob(&tx, blob_id).await?;
        }
        done(tx).await?;
        Ok(doomed.len() as u64)
    }

    async fn append_directory_entries(
        &self,
        entries: Vec<NewDirectoryEntry>,
        checkpoint: String,
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let size: i64 = one(&tx, "SELECT COUNT(*) FROM directory_entries", &[])
            .await?
            .get(0);
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != (size as u64) + offset as u64 {
                return Err(Error::Conflict(format!("directory entry {}", entry.index)));
            }
            exec(
                &tx,
                "INSERT INTO directory_entries (idx, \"user\", body) VALUES ($1, $2, $3)",
                &[&(entry.index as i64), &entry.user, &entry.body],
            )
            .await?;
            if let Some(change) = &entry.change {
                device_change_in(&tx, change, now).await?;
            }
        }
        exec(
            &tx,
            "INSERT INTO directory_checkpoint (id, note) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note",
            &[&checkpoint],
        )
        .await?;
        done(tx).await
    }

    async fn directory_entries(&self, start: u64, limit: u64) -> Result<Vec<Vec<u8>>> {
        let (start, limit) = (
            start.min(i64::MAX as u64) as i64,
            limit.min(i64::MAX as u64) as i64,
        );
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let rows = all(
            &tx,
            "SELECT body FROM directory_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
            &[&start, &limit],
        )
        .await?;
        done(tx).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn directory_checkpoint(&self) -> Result<Option<String>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let r = opt(
            &tx,
            "SELECT note FROM directory_checkpoint WHERE id = 1",
            &[],
        )
        .await?;
        done(tx).await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn set_directory_checkpoint(&self, previous: String, note: String) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let changed = exec(
            &tx,
            "UPDATE directory_checkpoint SET note = $2 WHERE id = 1 AND note = $1",
            &[&previous, &note],
        )
        .await?;
        done(tx).await?;
        Ok(changed == 1)
    }

    async fn approval(&self, device_id: &str) -> Result<Option<Approval>> {
        let mut c = self.client().await?;
        let tx = read_tx(&mut c).await?;
        let a = approval_in(&tx, device_id).await?;
        done(tx).await?;
        Ok(a)
    }

    async fn set_approval_commitment(
        &self,
        device_id: &str,
        commitment: &str,
        now: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        exec(
            &tx,
            "INSERT INTO approvals (device_id, commitment, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO UPDATE SET commitment = EXCLUDED.commitment,
                 hello = NULL, offer = NULL, sealed_identity = NULL,
                 updated_at = EXCLUDED.updated_at",
            &[&device_id, &commitment, &now],
        )
        .await?;
        done(tx).await
    }

    async fn set_approval_hello(&self, device_id: &str, hello: &str, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let changed = exec(
            &tx,
            "UPDATE approvals SET hello = $2, updated_at = $3 WHERE device_id = $1
             AND commitment IS NOT NULL AND offer IS NULL AND sealed_identity IS NULL",
            &[&device_id, &hello, &now],
        )
        .await?;
        if changed == 1 {
            return done(tx).await;
        }
        Err(Error::Refused(match approval_in(&tx, device_id).await? {
            Some(a) if a.commitment.is_some() => {
                "the new device revealed its offer already: cancel and start again".into()
            }
            _ => "the new device has not committed to its offer yet".into(),
        }))
    }

    async fn set_approval_offer(&self, device_id: &str, offer: &str, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let changed = exec(
            &tx,
            "UPDATE approvals SET offer = $2, updated_at = $3 WHERE device_id = $1
             AND hello IS NOT NULL AND offer IS NULL",
            &[&device_id, &offer, &now],
        )
        .await?;
        if changed == 1 {
            return done(tx).await;
        }
        Err(Error::Refused(match approval_in(&tx, device_id).await? {
            Some(a) if a.offer.is_some() => "the offer was revealed already".into(),
            _ => "no approving device has answered yet".into(),
        }))
    }

    async fn delete_approval(&self, device_id: &str, keep_sealed: bool) -> Result<()> {
        let mut c = self.client().await?;
        let tx = write_tx(&mut c).await?;
        let condition = if keep_sealed {
            " AND sealed_identity IS NULL"
        } else {
            ""
        };
        let deleted = exec(
            &tx,
            &format!("DELETE FROM approvals WHERE device_id = $1{condition}"),
            &[&device_id],
        )
        .await?;
        if deleted == 0 && approval_in(&tx, device_id).await?.is_some() {
            return Err(Error::Refused(
                "the device was approved already: its exchange is over".into(),
            ));
        }
        done(tx).await
    }
}
