use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use vellum_wire::{log_hash_next, log_hash_start, DeviceState, EntryKind, HoldAction};

use crate::backend::*;
use crate::*;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Most application messages one log transaction takes.
const APPEND_BATCH: usize = 256;

/// Read-only connections beside the writer: reads (sync, device lookups, group reads,
/// counts) never queue behind a write's fsync, and keep working on a full disk.
const READERS: usize = 4;

/// The embedded SQLite backend. One writer connection (WAL, `synchronous=FULL` so that an
/// acknowledged write survives a crash, `secure_delete` so purged ciphertext is overwritten)
/// and a small pool of read-only connections. Every call runs on tokio's blocking pool.
/// Application messages appended at once share a transaction (see [`AppendBatcher`]).
/// Request nonces live in memory (see [`Store::remember_nonce`]).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// `None` for an in-memory database, which other connections cannot see: reads go to
    /// the writer.
    readers: Option<Readers>,
    nonces: Mutex<NonceWindow>,
    /// Group commit of `append_message`.
    appends: AppendBatcher,
    /// Unix second this store was opened: earlier request timestamps are refused.
    started_at: i64,
    instance_id: String,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    slots: tokio::sync::Semaphore,
}

/// True for a log entry the org's archiver (a member then) has not acknowledged yet.
const ARCHIVER_PENDING: &str = "EXISTS (
    SELECT 1 FROM memberships m JOIN devices d USING (device_id)
    WHERE m.group_id = group_log.group_id AND d.user = 'records' AND d.revoked_at IS NULL
      AND (m.removed_seq IS NULL OR group_log.seq <= m.removed_seq)
      AND m.acked_seq < group_log.seq AND m.joined_seq < group_log.seq)";

fn records_config_in(c: &Connection) -> Result<Option<RecordsConfig>> {
    c.query_row(
        &format!("SELECT records_public, {LIVE_ARCHIVER}, binding_serial, binding FROM records_config WHERE id = 1"),
        [],
        |r| {
            let serial: Option<i64> = r.get(2)?;
            let binding: Option<String> = r.get(3)?;
            Ok(RecordsConfig {
                records_public: r.get(0)?,
                archiver_device: r.get(1)?,
                binding: serial.zip(binding).map(|(s, b)| (s as u64, b)),
            })
        },
    )
    .optional()
    .map_err(backend)
}

const CHECKPOINT_COLUMNS: &str =
    "size, note, previous_size, proof, received_at, renewed_at, witnessed_at";

/// Reads a row of CHECKPOINT_COLUMNS.
fn read_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    let proof: String = r.get(3)?;
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0)? as u64,
        note: r.get(1)?,
        previous_size: r.get::<_, i64>(2)? as u64,
        proof: proof
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        received_at: r.get(4)?,
        renewed_at: r.get(5)?,
        witnessed_at: r.get(6)?,
    })
}

fn head_checkpoint(c: &Connection) -> Result<Option<StoredCheckpoint>> {
    c.query_row(
        &format!("SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints ORDER BY size DESC LIMIT 1"),
        [],
        read_checkpoint,
    )
    .optional()
    .map_err(backend)
}

fn backend(e: rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return Error::DiskFull;
    }
    Error::Backend(e.to_string())
}

/// A blob as stored, with how many of its chunks are present.
fn blob_in(c: &Connection, blob_id: &str) -> Result<Option<BlobInfo>> {
    c.query_row(
        "SELECT group_id, uploader_device, uploader_user, size, chunk_size, chunks, finished,
                record, expires_at, archived, deleted,
                (SELECT COUNT(*) FROM blob_chunks WHERE blob_chunks.blob_id = blobs.blob_id)
         FROM blobs WHERE blob_id = ?1",
        [blob_id],
        |r| {
            Ok(BlobInfo {
                blob_id: blob_id.to_owned(),
                group_id: r.get(0)?,
                uploader_device: r.get(1)?,
                uploader_user: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                chunk_size: r.get(4)?,
                chunks: r.get::<_, i64>(5)? as u64,
                finished: r.get(6)?,
                record: r.get(7)?,
                expires_at: r.get(8)?,
                archived: r.get(9)?,
                deleted: r.get(10)?,
                present: r.get::<_, i64>(11)? as u64,
            })
        },
    )
    .optional()
    .map_err(backend)
}

/// Removes a blob and its chunks (`secure_delete` overwrites their pages).
fn drop_blob(c: &Connection, blob_id: &str) -> Result<()> {
    c.execute("DELETE FROM blob_chunks WHERE blob_id = ?1", [blob_id])
        .map_err(backend)?;
    c.execute("DELETE FROM blobs WHERE blob_id = ?1", [blob_id])
        .map_err(backend)?;
    Ok(())
}

/// The ack transaction: cursors move forward only, Welcomes and receipts leave their queues.
fn ack_in(
    c: &mut Connection,
    device_id: &str,
    welcome_ids: &[u64],
    cursors: &[(String, u64)],
    receipt_ids: &[u64],
) -> Result<()> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    for (group_id, seq) in cursors {
        let known: Option<i64> = tx
            .query_row(
                "SELECT g.last_seq FROM memberships m JOIN groups g USING (group_id) WHERE m.group_id = ?1 AND m.device_id = ?2",
                params![group_id, device_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let Some(last_seq) = known else {
            return Err(Error::NotMember);
        };
        if *seq as i64 > last_seq {
            return Err(Error::NotFound(format!("entry {seq} of group {group_id}")));
        }
        tx.execute(
            "UPDATE memberships SET acked_seq = MAX(acked_seq, ?3) WHERE group_id = ?1 AND device_id = ?2",
            params![group_id, device_id, *seq as i64],
        )
        .map_err(backend)?;
    }
    for id in welcome_ids {
        tx.execute(
            "DELETE FROM welcome_queue WHERE id = ?1 AND device_id = ?2",
            params![*id as i64, device_id],
        )
        .map_err(backend)?;
    }
    for id in receipt_ids {
        tx.execute(
            "DELETE FROM receipt_queue WHERE id = ?1 AND device_id = ?2",
            params![*id as i64, device_id],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// What the device has not acknowledged yet (see [`Store::pending`]), inside a read
/// transaction.
fn pending_in(tx: &Connection, device_id: &str, limit: usize) -> Result<Pending> {
    let mut pending = Pending::default();
    {
        let mut stmt = tx
            .prepare_cached("SELECT id, group_id, payload FROM welcome_queue WHERE device_id = ?1 ORDER BY id LIMIT ?2")
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![device_id, limit as i64 + 1], |r| {
                Ok(StoredWelcome {
                    id: r.get::<_, i64>(0)? as u64,
                    group_id: r.get(1)?,
                    payload: r.get(2)?,
                })
            })
            .map_err(backend)?;
        pending.welcomes = rows.collect::<rusqlite::Result<_>>().map_err(backend)?;
    }
    if pending.welcomes.len() > limit {
        pending.welcomes.truncate(limit);
        pending.more = true;
        return Ok(pending);
    }
    let mut budget = limit - pending.welcomes.len();
    let memberships: Vec<(String, i64, Option<i64>)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT group_id, MAX(joined_seq, acked_seq), removed_seq FROM memberships
                 WHERE device_id = ?1 AND (removed_seq IS NULL OR acked_seq < removed_seq)
                 ORDER BY group_id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([&device_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)?
    };
    // Messages deleted for everyone still reach the archiver, and only the archiver.
    let is_archiver = tx
        .query_row(
            "SELECT user FROM devices WHERE device_id = ?1",
            [&device_id],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(backend)?
        .is_some_and(|user| user == vellum_wire::RECORDS_USER);
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, epoch, kind, sender_device, received_at, payload, log_hash FROM group_log
             WHERE group_id = ?1 AND seq > ?2 AND seq <= ?3 AND (deleted = 0 OR ?5)
             ORDER BY seq LIMIT ?4",
        )
        .map_err(backend)?;
    let mut head = tx
        .prepare_cached("SELECT last_seq, log_hash FROM groups WHERE group_id = ?1")
        .map_err(backend)?;
    for (group_id, after, removed) in memberships {
        let upto = removed.unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![group_id, after, upto, budget as i64 + 1, is_archiver],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        r.get::<_, Option<Vec<u8>>>(6)?,
                    ))
                },
            )
            .map_err(backend)?;
        let mut entries = Vec::new();
        for row in rows {
            let (seq, epoch, kind, sender_device, received_at, payload, hash) =
                row.map_err(backend)?;
            entries.push(StoredEntry {
                seq,
                epoch,
                kind: kind_from(&kind)?,
                sender_device,
                received_at,
                payload,
                log_hash: hash_from(hash)?,
            });
        }
        if entries.len() > budget {
            entries.truncate(budget);
            pending.more = true;
        }
        budget -= entries.len();
        if !entries.is_empty() {
            let (seq, hash) = head
                .query_row([&group_id], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<Vec<u8>>>(1)?))
                })
                .map_err(backend)?;
            pending.heads.push((
                group_id.clone(),
                LogHead {
                    seq,
                    log_hash: hash_from(hash)?,
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

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(backend)?;
    Ok(conn)
}

/// Hashes the logs of groups from before log hashes (0.1.0), in seq order over the entries
/// still there: devices of that version kept no hashes, so there is nothing to contradict.
/// Key packages on file from before their hashes were kept (V3; SQLite has no SHA-256, so
/// the migration could not): hashed once, when the hash table is still empty, so a retried
/// or replayed upload of one of them is not filed a second time either.
fn hash_unhashed_key_packages(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(backend)?;
    let hashed: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM key_package_hashes)",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if hashed {
        return Ok(());
    }
    let packages: Vec<Vec<u8>> = tx
        .prepare("SELECT data FROM key_packages")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(backend)?;
    for data in packages {
        let hash: [u8; 32] = Sha256::digest(&data).into();
        tx.execute(
            "INSERT OR IGNORE INTO key_package_hashes (hash) VALUES (?1)",
            [&hash[..]],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

fn hash_unhashed_logs(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(backend)?;
    let groups: Vec<String> = tx
        .prepare("SELECT group_id FROM groups WHERE log_hash IS NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(backend)?;
    for group_id in groups {
        let mut hash = log_hash_start(&group_id);
        let entries: Vec<(i64, i64, String, String, Vec<u8>)> = tx
            .prepare("SELECT seq, epoch, kind, sender_device, payload FROM group_log WHERE group_id = ?1 ORDER BY seq")
            .and_then(|mut s| {
                s.query_map([&group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                    .collect()
            })
            .map_err(backend)?;
        for (seq, epoch, kind, sender, payload) in entries {
            hash = log_hash_next(
                &hash,
                seq as u64,
                epoch as u64,
                kind_from(&kind)?,
                &sender,
                &payload,
            );
            tx.execute(
                "UPDATE group_log SET log_hash = ?3 WHERE group_id = ?1 AND seq = ?2",
                params![group_id, seq, &hash[..]],
            )
            .map_err(backend)?;
        }
        tx.execute(
            "UPDATE groups SET log_hash = ?2 WHERE group_id = ?1",
            params![group_id, &hash[..]],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`: refuses a damaged file or one
    /// written by a newer version, and migrates an older one.
    pub fn open(path: &Path) -> Result<Self> {
        // Owner-only before SQLite touches it (its WAL and shared-memory files take the
        // database file's mode); an older file is tightened too. Contents are left as they are.
        let io = |e: std::io::Error| Error::Backend(format!("{}: {e}", path.display()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        schema::check_existing(path, &embedded::migrations::runner())?;
        let writer = Connection::open(path).map_err(backend)?;
        Self::init(writer, Some(path))
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?, None)
    }

    fn init(mut conn: Connection, path: Option<&Path>) -> Result<Self> {
        schema::quick_check(&conn)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;
             PRAGMA journal_size_limit = 1048576;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        schema::migrate(&mut conn, embedded::migrations::runner())?;
        hash_unhashed_logs(&mut conn)?;
        hash_unhashed_key_packages(&mut conn)?;
        let instance_id: String = conn
            .query_row(
                "SELECT instance_id FROM server_instance WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        let readers = match path {
            Some(path) => Some(Readers {
                path: path.to_owned(),
                idle: Mutex::new(
                    (0..READERS)
                        .map(|_| open_reader(path))
                        .collect::<Result<_>>()?,
                ),
                slots: tokio::sync::Semaphore::new(READERS),
            }),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                readers,
                nonces: Mutex::default(),
                appends: AppendBatcher::new(APPEND_BATCH),
                // A file may have had a predecessor process that accepted requests in this
                // very second before it died: only the next second on is surely unseen.
                // Nothing can replay into a fresh in-memory store.
                started_at: now_secs() + i64::from(path.is_some()),
                instance_id,
            }),
        })
    }

    /// Transactions (each one commit, one fsync) that appended application messages since
    /// the store was opened.
    pub fn log_commits(&self) -> u64 {
        self.inner.appends.commits()
    }

    /// The schema version of this binary's newest migration.
    pub fn schema_version() -> i64 {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| m.version() as i64)
            .max()
            .unwrap_or(0)
    }

    /// Runs blocking SQLite work on the writer connection, off the async executor.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| Error::Backend(format!("storage task failed: {e}")))?
    }

    /// Runs blocking read-only work on a reader connection, off the async executor.
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let Some(readers) = &self.inner.readers else {
            return self.run(work).await;
        };
        let _slot = readers
            .slots
            .acquire()
            .await
            .map_err(|e| Error::Backend(format!("reader pool closed: {e}")))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let readers = inner.readers.as_ref().expect("checked above");
            let idle = || readers.idle.lock().unwrap_or_else(|p| p.into_inner());
            // A reader lost to a panicking task is replaced.
            let popped = idle().pop();
            let mut conn = match popped {
                Some(conn) => conn,
                None => open_reader(&readers.path)?,
            };
            let result = work(&mut conn);
            idle().push(conn);
            result
        })
        .await
        .map_err(|e| Error::Backend(format!("storage task failed: {e}")))?
    }
}

fn live_code_user(conn: &Connection, code_hash: &[u8; 32], now: i64) -> Result<String> {
    conn.query_row(
        "SELECT user FROM enrollment_codes WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![&code_hash[..], now],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)?
    .ok_or(Error::InvalidCode)
}

/// The compare-and-set of a state write: `StaleState` when another write came between.
fn check_state_version(tx: &Connection, group_id: &str, epoch: u64, expected: u64) -> Result<()> {
    let version: i64 = tx
        .query_row(
            "SELECT state_version FROM groups WHERE group_id = ?1",
            [group_id],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if version as u64 != expected {
        return Err(Error::StaleState { epoch });
    }
    Ok(())
}

/// The group's epoch, last seq and log hash.
fn current_epoch(tx: &Connection, group_id: &str) -> Result<(u64, u64, [u8; 32])> {
    let (epoch, last_seq, hash) = tx
        .query_row(
            "SELECT epoch, last_seq, log_hash FROM groups WHERE group_id = ?1",
            [group_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| Error::NotFound(format!("group {group_id}")))?;
    Ok((epoch, last_seq, hash_from(hash)?))
}

fn is_current_member(conn: &Connection, group_id: &str, device_id: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM memberships WHERE group_id = ?1 AND device_id = ?2 AND removed_seq IS NULL",
        params![group_id, device_id],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(backend)
}

const DEVICE_RECORD: &str = "device_id, user, signature_key,
    CASE WHEN revoked_at IS NOT NULL THEN 'revoked' ELSE state END, enrolled_at, last_seen";

/// Reads a row of DEVICE_RECORD.
fn read_device_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let state: String = r.get(3)?;
    Ok(DeviceRecord {
        device: Device {
            device_id: r.get(0)?,
            user: r.get(1)?,
            signature_key: r.get(2)?,
        },
        state: match state.as_str() {
            "approved" => DeviceState::Approved,
            "pending" => DeviceState::Pending,
            "legacy" => DeviceState::Legacy,
            _ => DeviceState::Revoked,
        },
        enrolled_at: r.get(4)?,
        last_seen: r.get(5)?,
    })
}

/// Revokes a device (the first revocation's time is kept), drops its key packages and its
/// approval exchange; false if it was never enrolled.
fn revoke_in(tx: &Connection, device_id: &str, at: i64) -> Result<bool> {
    let known = tx
        .execute(
            "UPDATE devices SET state = 'revoked', revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
            params![device_id, at],
        )
        .map_err(backend)?;
    tx.execute("DELETE FROM key_packages WHERE device_id = ?1", [device_id])
        .map_err(backend)?;
    tx.execute("DELETE FROM approvals WHERE device_id = ?1", [device_id])
        .map_err(backend)?;
    Ok(known == 1)
}

/// Makes one entry's change to the devices, inside the append's transaction.
fn device_change_in(tx: &Connection, change: &DeviceChange, now: i64) -> Result<()> {
    match change {
        DeviceChange::Approve {
            device_id,
            sealed_identity,
        } => {
            if let Some(sealed) = sealed_identity {
                let sealed_now = tx
                    .execute(
                        "UPDATE approvals SET sealed_identity = ?2, updated_at = ?3
                         WHERE device_id = ?1 AND offer IS NOT NULL AND sealed_identity IS NULL",
                        params![device_id, sealed, now],
                    )
                    .map_err(backend)?;
                if sealed_now != 1 {
                    return Err(Error::Refused(format!(
                        "device {device_id} has not revealed its offer, or was approved already"
                    )));
                }
            }
            let approved = tx
                .execute(
                    "UPDATE devices SET state = 'approved' WHERE device_id = ?1 AND revoked_at IS NULL",
                    [device_id],
                )
                .map_err(backend)?;
            if approved != 1 {
                return Err(Error::NotFound(format!("device {device_id}")));
            }
        }
        DeviceChange::Revoke { device_id } => {
            if !revoke_in(tx, device_id, now)? {
                return Err(Error::NotFound(format!("device {device_id}")));
            }
        }
        DeviceChange::RevokeUser { user } => {
            let devices: Vec<String> = tx
                .prepare("SELECT device_id FROM devices WHERE user = ?1")
                .and_then(|mut s| s.query_map([user], |r| r.get(0))?.collect())
                .map_err(backend)?;
            for device_id in devices {
                revoke_in(tx, &device_id, now)?;
            }
        }
    }
    Ok(())
}

fn read_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        device_id: r.get(0)?,
        commitment: r.get(1)?,
        hello: r.get(2)?,
        offer: r.get(3)?,
        sealed_identity: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

fn approval_in(c: &Connection, device_id: &str) -> Result<Option<Approval>> {
    c.query_row(
        "SELECT device_id, commitment, hello, offer, sealed_identity, updated_at FROM approvals WHERE device_id = ?1",
        [device_id],
        read_approval,
    )
    .optional()
    .map_err(backend)
}

/// One application message, inside the batch's transaction (see [`AppendLog`]).
fn append_message_in(tx: &Connection, m: &MessageAppend) -> Result<Appended> {
    let (epoch, last_seq, prev_hash) = current_epoch(tx, &m.group_id)?;
    let earlier: Option<(i64, i64)> = tx
        .query_row(
            "SELECT seq, epoch FROM group_log WHERE group_id = ?1 AND sender_device = ?2 AND client_msg_id = ?3",
            params![m.group_id, m.sender_device, m.client_msg_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?;
    if let Some((seq, epoch)) = earlier {
        return Ok(Appended {
            seq: seq as u64,
            epoch: epoch as u64,
            duplicate: true,
        });
    }
    if !is_current_member(tx, &m.group_id, &m.sender_device)? {
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
        "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, client_msg_id, payload, received_at, expires_at, log_hash) VALUES (?1, ?2, ?3, 'application', ?4, ?5, ?6, ?7, ?8, ?9)",
        params![m.group_id, seq as i64, epoch as i64, m.sender_device, m.client_msg_id, m.payload, m.received_at, m.expires_at, &hash[..]],
    )
    .map_err(backend)?;
    tx.execute(
        "UPDATE groups SET last_seq = ?2, log_hash = ?3 WHERE group_id = ?1",
        params![m.group_id, seq as i64, &hash[..]],
    )
    .map_err(backend)?;
    Ok(Appended {
        seq,
        epoch,
        duplicate: false,
    })
}

#[async_trait]
impl AppendLog for SqliteStore {
    async fn append_batch(&self, batch: Vec<MessageAppend>) -> Result<Vec<Result<Appended>>> {
        self.run(move |c| {
            let mut tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut results = Vec::with_capacity(batch.len());
            for m in &batch {
                let savepoint = tx.savepoint().map_err(backend)?;
                match append_message_in(&savepoint, m) {
                    Ok(appended) => {
                        savepoint.commit().map_err(backend)?;
                        results.push(Ok(appended));
                    }
                    Err(refused) => {
                        // Rolled back to before this message. If even that fails (SQLite
                        // ended the transaction itself: a full disk), the batch fails with
                        // the cause.
                        if savepoint.finish().is_err() {
                            return Err(refused);
                        }
                        results.push(Err(refused));
                    }
                }
            }
            tx.commit().map_err(backend)?;
            Ok(results)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn try_job_lease(&self, _job: Job) -> Result<Option<Box<dyn JobLease>>> {
        // One process per data directory (`DATA/lock`): this one is the only node.
        Ok(Some(Box::new(crate::backend::SoleNode)))
    }

    async fn create_user(&self, name: &str, now: i64) -> Result<()> {
        let name = name.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO users (name, created_at) VALUES (?1, ?2)",
                params![name, now],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict(format!("user {name}"))
                } else {
                    backend(e)
                }
            })?;
            Ok(())
        })
        .await
    }

    async fn user_exists(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.read(move |c| {
            c.query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
                .map_err(backend)
        })
        .await
    }

    async fn add_enrollment_code(
        &self,
        user: &str,
        code_hash: [u8; 32],
        expires_at: i64,
    ) -> Result<()> {
        let user = user.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO enrollment_codes (code_hash, user, expires_at) VALUES (?1, ?2, ?3)",
                params![&code_hash[..], user, expires_at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn enrollment_code_user(&self, code_hash: [u8; 32], now: i64) -> Result<String> {
        self.read(move |c| live_code_user(c, &code_hash, now)).await
    }

    async fn enroll_device(
        &self,
        code_hash: [u8; 32],
        now: i64,
        device: Device,
        has_identity: bool,
    ) -> Result<DeviceState> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let user = live_code_user(&tx, &code_hash, now)?;
            if user != device.user {
                return Err(Error::InvalidCode);
            }
            let archiver = user == vellum_wire::RECORDS_USER;
            if archiver {
                // Only records init and replace-archiver issue codes for `records`, and only
                // while no archiver device is registered may one enroll.
                let current: Option<Option<String>> = tx
                    .query_row(
                        &format!("SELECT {LIVE_ARCHIVER} FROM records_config WHERE id = 1"),
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
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
            tx.execute(
                "UPDATE enrollment_codes SET used_at = ?2 WHERE code_hash = ?1",
                params![&code_hash[..], now],
            )
            .map_err(backend)?;
            // A user's first device starts its identity; any later one waits for approval
            // by one of its devices. The archiver is bound by the custodians instead.
            let state = if archiver {
                DeviceState::Approved
            } else {
                let others: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM devices WHERE user = ?1 AND revoked_at IS NULL AND state != 'revoked')",
                        [&device.user],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                if others || has_identity {
                    DeviceState::Pending
                } else {
                    DeviceState::Approved
                }
            };
            tx.execute(
                "INSERT INTO devices (device_id, user, signature_key, enrolled_at, state) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![device.device_id, device.user, device.signature_key, now, state_str(state)],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict("device or signature key".into())
                } else {
                    backend(e)
                }
            })?;
            if archiver {
                tx.execute(
                    "UPDATE records_config SET archiver_device = ?1 WHERE id = 1",
                    [&device.device_id],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(state)
        })
        .await
    }

    async fn device(&self, device_id: &str) -> Result<Option<Device>> {
        let device_id = device_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT device_id, user, signature_key FROM devices WHERE device_id = ?1 AND revoked_at IS NULL",
                [device_id],
                |r| {
                    Ok(Device {
                        device_id: r.get(0)?,
                        user: r.get(1)?,
                        signature_key: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn device_status(&self, device_id: &str) -> Result<Option<(Device, Option<i64>)>> {
        let device_id = device_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT device_id, user, signature_key, revoked_at FROM devices WHERE device_id = ?1",
                [device_id],
                |r| {
                    let device = Device {
                        device_id: r.get(0)?,
                        user: r.get(1)?,
                        signature_key: r.get(2)?,
                    };
                    Ok((device, r.get(3)?))
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn user_devices(&self, user: &str) -> Result<Vec<Device>> {
        let user = user.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare("SELECT device_id, user, signature_key FROM devices WHERE user = ?1 AND revoked_at IS NULL ORDER BY enrolled_at, device_id")
                .map_err(backend)?;
            let rows = stmt
                .query_map([user], |r| {
                    Ok(Device { device_id: r.get(0)?, user: r.get(1)?, signature_key: r.get(2)? })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn device_record(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let device_id = device_id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {DEVICE_RECORD} FROM devices WHERE device_id = ?1"),
                [device_id],
                read_device_record,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn revoke_device(&self, device_id: &str, at: i64) -> Result<()> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            if !revoke_in(&tx, &device_id, at)? {
                return Err(Error::NotFound(format!("device {device_id:?}")));
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn user_device_records(&self, user: &str) -> Result<Vec<DeviceRecord>> {
        let user = user.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {DEVICE_RECORD} FROM devices WHERE user = ?1 ORDER BY enrolled_at, device_id"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([user], read_device_record)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn legacy_devices(&self) -> Result<Vec<DeviceRecord>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {DEVICE_RECORD} FROM devices WHERE state = 'legacy' AND revoked_at IS NULL AND user != 'records' ORDER BY enrolled_at, device_id"
                ))
                .map_err(backend)?;
            let rows = stmt.query_map([], read_device_record).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn touch_device(&self, device_id: &str, now: i64) -> Result<()> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            // Not worth an fsync: the next durable commit carries it.
            c.pragma_update(None, "synchronous", "NORMAL")
                .map_err(backend)?;
            let updated = c
                .execute(
                    "UPDATE devices SET last_seen = ?2 WHERE device_id = ?1 AND (last_seen IS NULL OR last_seen <= ?2 - ?3)",
                    params![device_id, now, LAST_SEEN_PRECISION_SECS],
                )
                .map(|_| ())
                .map_err(backend);
            c.pragma_update(None, "synchronous", "FULL")
                .map_err(backend)?;
            updated
        })
        .await
    }

    async fn remember_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        timestamp: i64,
        forget_before: i64,
    ) -> Result<NonceCheck> {
        // In memory, no disk write: a restart forgets them, which is why timestamps from
        // before the start are refused. (One process per file, so nothing to share; nodes
        // sharing a PostgreSQL database share them there.)
        if timestamp < self.inner.started_at {
            return Ok(NonceCheck::BeforeStart {
                started_at: self.inner.started_at,
            });
        }
        if timestamp < forget_before {
            return Ok(NonceCheck::Expired);
        }
        let mut window = self.inner.nonces.lock().unwrap_or_else(|p| p.into_inner());
        Ok(window.remember(device_id, nonce, timestamp, forget_before))
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
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            // A key package already seen (a retried or replayed upload) is not filed again.
            let first_time = |kp: &[u8]| {
                let hash: [u8; 32] = Sha256::digest(kp).into();
                tx.execute(
                    "INSERT OR IGNORE INTO key_package_hashes (hash) VALUES (?1)",
                    [&hash[..]],
                )
                .map(|inserted| inserted == 1)
                .map_err(backend)
            };
            for kp in single_use {
                if !first_time(&kp)? {
                    continue;
                }
                tx.execute(
                    "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?1, ?2, 0)",
                    params![device_id, kp],
                )
                .map_err(backend)?;
            }
            if let Some(kp) = last_resort {
                if first_time(&kp)? {
                    tx.execute(
                        "DELETE FROM key_packages WHERE device_id = ?1 AND last_resort = 1",
                        [&device_id],
                    )
                    .map_err(backend)?;
                    tx.execute(
                        "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?1, ?2, 1)",
                        params![device_id, kp],
                    )
                    .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn key_package_count(&self, device_id: &str) -> Result<(u64, bool)> {
        let device_id = device_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT COALESCE(SUM(last_resort = 0), 0), COALESCE(MAX(last_resort), 0) FROM key_packages WHERE device_id = ?1",
                [device_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? == 1)),
            )
            .map_err(backend)
        })
        .await
    }

    async fn claim_key_package(&self, device_id: &str) -> Result<Option<Vec<u8>>> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let row: Option<(i64, Vec<u8>, bool)> = tx
                .query_row(
                    "SELECT id, data, last_resort FROM key_packages WHERE device_id = ?1 ORDER BY last_resort, id LIMIT 1",
                    [&device_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? == 1)),
                )
                .optional()
                .map_err(backend)?;
            let Some((id, data, last_resort)) = row else { return Ok(None) };
            if !last_resort {
                tx.execute("DELETE FROM key_packages WHERE id = ?1", [id]).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(data))
        })
        .await
    }

    async fn create_group(&self, group: NewGroup) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute(
                "INSERT INTO groups (group_id, epoch, state, last_seq, created_at, expire_secs, burn_secs, log_hash, record) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8)",
                params![
                    group.group_id,
                    group.epoch as i64,
                    group.state,
                    group.created_at,
                    opt_i64(group.timers.expire_secs),
                    opt_i64(group.timers.burn_secs),
                    &log_hash_start(&group.group_id)[..],
                    group.record as i64
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict(format!("group {}", group.group_id))
                } else {
                    backend(e)
                }
            })?;
            tx.execute(
                "INSERT INTO memberships (group_id, device_id, joined_seq, acked_seq) VALUES (?1, ?2, 0, 0)",
                params![group.group_id, group.creator_device],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn group(&self, group_id: &str) -> Result<Option<GroupState>> {
        let group_id = group_id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT group_id, epoch, state, expire_secs, burn_secs, COALESCE(record, 0), {}, state_version
                     FROM groups WHERE group_id = ?1",
                    held_chat("groups.group_id")
                ),
                [group_id],
                |r| {
                    Ok(GroupState {
                        group_id: r.get(0)?,
                        epoch: r.get::<_, i64>(1)? as u64,
                        state: r.get(2)?,
                        timers: ChatTimers {
                            expire_secs: opt_u64(r.get(3)?),
                            burn_secs: opt_u64(r.get(4)?),
                        },
                        record: r.get::<_, i64>(5)? == 1,
                        held: r.get(6)?,
                        state_version: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn unclassified_groups(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT group_id, state FROM groups WHERE record IS NULL ORDER BY group_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }

    async fn set_group_class(&self, group_id: &str, record: bool) -> Result<()> {
        let group_id = group_id.to_owned();
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE groups SET record = ?2 WHERE group_id = ?1",
                    params![group_id, record as i64],
                )
                .map_err(backend)?;
            if changed == 0 {
                return Err(Error::NotFound(format!("group {group_id}")));
            }
            Ok(())
        })
        .await
    }

    async fn transitory_chats(&self, limit: usize) -> Result<(u64, Vec<String>)> {
        self.read(move |c| {
            let live = "record = 0 AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.group_id = groups.group_id AND m.removed_seq IS NULL)";
            let count: i64 = c
                .query_row(&format!("SELECT COUNT(*) FROM groups WHERE {live}"), [], |r| r.get(0))
                .map_err(backend)?;
            let mut stmt = c
                .prepare(&format!("SELECT group_id FROM groups WHERE {live} ORDER BY created_at, group_id LIMIT ?1"))
                .map_err(backend)?;
            let ids = stmt
                .query_map([limit as i64], |r| r.get(0))
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            Ok((count as u64, ids))
        })
        .await
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        let group_id = group_id.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare("SELECT device_id FROM memberships WHERE group_id = ?1 AND removed_seq IS NULL ORDER BY device_id")
                .map_err(backend)?;
            let rows = stmt.query_map([group_id], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(backend)
        })
        .await
    }

    async fn group_cursors(&self, group_id: &str) -> Result<Vec<vellum_wire::DeviceCursor>> {
        let group_id = group_id.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT d.user, m.device_id, m.acked_seq FROM memberships m
                     JOIN devices d USING (device_id)
                     WHERE m.group_id = ?1 AND m.removed_seq IS NULL ORDER BY m.device_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([group_id], |r| {
                    Ok(vellum_wire::DeviceCursor {
                        user: r.get(0)?,
                        device_id: r.get(1)?,
                        acked_seq: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn is_member(&self, group_id: &str, device_id: &str) -> Result<bool> {
        let (group_id, device_id) = (group_id.to_owned(), device_id.to_owned());
        self.read(move |c| is_current_member(c, &group_id, &device_id))
            .await
    }

    async fn append_commit(&self, commit: CommitAppend) -> Result<Appended> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let (epoch, last_seq, prev_hash) = current_epoch(&tx, &commit.group_id)?;
            if epoch != commit.expected_epoch {
                return Err(Error::StaleEpoch { current: epoch });
            }
            if !is_current_member(&tx, &commit.group_id, &commit.sender_device)? {
                return Err(Error::NotMember);
            }
            check_state_version(&tx, &commit.group_id, epoch, commit.expected_state_version)?;
            let seq = last_seq + 1;
            let hash = log_hash_next(&prev_hash, seq, epoch, EntryKind::Commit, &commit.sender_device, &commit.payload);
            tx.execute(
                "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, payload, received_at, log_hash) VALUES (?1, ?2, ?3, 'commit', ?4, ?5, ?6, ?7)",
                params![commit.group_id, seq as i64, commit.expected_epoch as i64, commit.sender_device, commit.payload, commit.received_at, &hash[..]],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE groups SET epoch = ?2, state = ?3, last_seq = ?4, expire_secs = ?5, burn_secs = ?6, log_hash = ?7, record = ?8, state_version = state_version + 1 WHERE group_id = ?1",
                params![
                    commit.group_id,
                    commit.new_epoch as i64,
                    commit.state,
                    seq as i64,
                    opt_i64(commit.timers.expire_secs),
                    opt_i64(commit.timers.burn_secs),
                    &hash[..],
                    commit.record as i64
                ],
            )
            .map_err(backend)?;
            for device in &commit.removed {
                tx.execute(
                    // A device that left was cut off at its proposal: it stays cut off there.
                    "UPDATE memberships SET removed_seq = ?3 WHERE group_id = ?1 AND device_id = ?2 AND removed_seq IS NULL",
                    params![commit.group_id, device, seq as i64],
                )
                .map_err(backend)?;
            }
            for device in &commit.added {
                // A joiner starts after the commit that added it: the Welcome carries that state.
                tx.execute(
                    "INSERT INTO memberships (group_id, device_id, joined_seq, acked_seq) VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT (group_id, device_id) DO UPDATE SET joined_seq = ?3, acked_seq = ?3, removed_seq = NULL",
                    params![commit.group_id, device, seq as i64],
                )
                .map_err(backend)?;
                if let Some(welcome) = &commit.welcome {
                    tx.execute(
                        "INSERT INTO welcome_queue (device_id, group_id, payload) VALUES (?1, ?2, ?3)",
                        params![device, commit.group_id, welcome],
                    )
                    .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(Appended { seq, epoch: commit.new_epoch, duplicate: false })
        })
        .await
    }

    async fn append_proposals(&self, p: ProposalAppend) -> Result<Appended> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let (epoch, mut seq, mut hash) = current_epoch(&tx, &p.group_id)?;
            if epoch != p.epoch {
                return Err(Error::StaleEpoch { current: epoch });
            }
            if !is_current_member(&tx, &p.group_id, &p.sender_device)? {
                return Err(Error::NotMember);
            }
            check_state_version(&tx, &p.group_id, epoch, p.expected_state_version)?;
            for payload in &p.payloads {
                seq += 1;
                hash = log_hash_next(&hash, seq, epoch, EntryKind::Proposal, &p.sender_device, payload);
                tx.execute(
                    "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, payload, received_at, log_hash) VALUES (?1, ?2, ?3, 'proposal', ?4, ?5, ?6, ?7)",
                    params![p.group_id, seq as i64, epoch as i64, p.sender_device, payload, p.received_at, &hash[..]],
                )
                .map_err(backend)?;
            }
            tx.execute(
                "UPDATE groups SET state = ?2, last_seq = ?3, log_hash = ?4, state_version = state_version + 1 WHERE group_id = ?1",
                params![p.group_id, p.state, seq as i64, &hash[..]],
            )
            .map_err(backend)?;
            for device in &p.leaving {
                tx.execute(
                    "UPDATE memberships SET removed_seq = ?3 WHERE group_id = ?1 AND device_id = ?2 AND removed_seq IS NULL",
                    params![p.group_id, device, seq as i64],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Appended { seq, epoch, duplicate: false })
        })
        .await
    }

    async fn find_commit(
        &self,
        group_id: &str,
        epoch: u64,
        sender_device: &str,
        payload: &[u8],
    ) -> Result<Option<u64>> {
        let (group_id, sender_device, payload) = (
            group_id.to_owned(),
            sender_device.to_owned(),
            payload.to_vec(),
        );
        self.read(move |c| {
            c.query_row(
                "SELECT seq FROM group_log WHERE group_id = ?1 AND kind = 'commit' AND epoch = ?2 AND sender_device = ?3 AND payload = ?4",
                params![group_id, epoch as i64, sender_device, payload],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|seq| seq.map(|s| s as u64))
            .map_err(backend)
        })
        .await
    }

    async fn append_message(&self, m: MessageAppend) -> Result<Appended> {
        self.inner.appends.append(self, m).await
    }

    async fn sync_view(&self, device_id: &str, limit: usize) -> Result<SyncView> {
        let device_id = device_id.to_owned();
        self.read(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let pending = pending_in(&tx, &device_id, limit)?;
            let receipts = {
                let mut stmt = tx
                    .prepare_cached("SELECT id, receipt FROM receipt_queue WHERE device_id = ?1 ORDER BY id LIMIT ?2")
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![device_id, limit as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<_>>().map_err(backend)?
            };
            let held_chats = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT mine.group_id FROM memberships mine
                         WHERE mine.device_id = ?1 AND mine.removed_seq IS NULL AND {}
                         ORDER BY mine.group_id",
                        held_chat("mine.group_id")
                    ))
                    .map_err(backend)?;
                let rows = stmt.query_map([&device_id], |r| r.get(0)).map_err(backend)?;
                rows.collect::<rusqlite::Result<_>>().map_err(backend)?
            };
            Ok(SyncView { pending, receipts, held_chats })
        })
        .await
    }

    async fn ack(
        &self,
        device_id: &str,
        welcome_ids: &[u64],
        cursors: &[(String, u64)],
        receipt_ids: &[u64],
    ) -> Result<()> {
        let device_id = device_id.to_owned();
        let welcome_ids = welcome_ids.to_vec();
        let cursors = cursors.to_vec();
        let receipt_ids = receipt_ids.to_vec();
        self.run(move |c| {
            // A cursor-only ack need not wait for an fsync: SIGKILL loses nothing in WAL mode
            // (the frames are in the OS), and the next `synchronous=FULL` commit makes it
            // durable with everything before it. At worst an OS crash redelivers entries the
            // device already processed, which it skips by seq. Welcome and receipt deletions
            // stay FULL.
            let relaxed = welcome_ids.is_empty() && receipt_ids.is_empty();
            if relaxed {
                c.pragma_update(None, "synchronous", "NORMAL")
                    .map_err(backend)?;
            }
            let acked = ack_in(c, &device_id, &welcome_ids, &cursors, &receipt_ids);
            if relaxed {
                c.pragma_update(None, "synchronous", "FULL")
                    .map_err(backend)?;
            }
            acked
        })
        .await
    }

    async fn org_policy(&self) -> Result<OrgPolicy> {
        self.read(|c| {
            let mut policy = c
                .query_row(
                    "SELECT max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory, hold_converts, receipt_alarm_secs, reset_wait_secs, allow_read_receipts, max_file_bytes, user_quota_bytes, files_in_transitory, files_in_record FROM org_policy WHERE id = 1",
                    [],
                    |r| {
                        Ok(OrgPolicy {
                            max_expire_secs: opt_u64(r.get(0)?),
                            max_burn_secs: opt_u64(r.get(1)?),
                            allow_no_expiry: r.get::<_, i64>(2)? == 1,
                            default_record: r.get::<_, i64>(3)? == 1,
                            allow_transitory: r.get::<_, i64>(4)? == 1,
                            archiver_device: None,
                            records_public: None,
                            records_binding: None,
                            on_hold: if r.get::<_, i64>(5)? == 1 {
                                HoldAction::Convert
                            } else {
                                HoldAction::SuspendTimers
                            },
                            receipt_alarm_secs: opt_u64(r.get(6)?)
                                .unwrap_or(vellum_wire::DEFAULT_RECEIPT_ALARM_SECS),
                            reset_wait_secs: opt_u64(r.get(7)?)
                                .unwrap_or(vellum_wire::DEFAULT_RESET_WAIT_SECS),
                            allow_read_receipts: r.get::<_, Option<i64>>(8)? != Some(0),
                            max_file_bytes: opt_u64(r.get(9)?)
                                .unwrap_or(vellum_wire::DEFAULT_MAX_FILE_BYTES),
                            user_quota_bytes: opt_u64(r.get(10)?)
                                .unwrap_or(vellum_wire::DEFAULT_USER_QUOTA_BYTES),
                            files_in_transitory: r.get::<_, Option<i64>>(11)? != Some(0),
                            files_in_record: r.get::<_, Option<i64>>(12)? != Some(0),
                        })
                    },
                )
                .optional()
                .map_err(backend)?
                .unwrap_or_default();
            if let Some(config) = records_config_in(c)? {
                policy.archiver_device = config.archiver_device;
                policy.records_public = Some(config.records_public);
                policy.records_binding = config.binding.map(|(_, b)| b);
            }
            Ok(policy)
        })
        .await
    }

    async fn set_org_policy(&self, policy: OrgPolicy) -> Result<()> {
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO org_policy (id, max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory, hold_converts, receipt_alarm_secs, reset_wait_secs, allow_read_receipts, max_file_bytes, user_quota_bytes, files_in_transitory, files_in_record) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    opt_i64(policy.max_expire_secs),
                    opt_i64(policy.max_burn_secs),
                    policy.allow_no_expiry as i64,
                    policy.default_record as i64,
                    policy.allow_transitory as i64,
                    (policy.on_hold == HoldAction::Convert) as i64,
                    policy.receipt_alarm_secs as i64,
                    policy.reset_wait_secs as i64,
                    policy.allow_read_receipts as i64,
                    policy.max_file_bytes as i64,
                    policy.user_quota_bytes as i64,
                    policy.files_in_transitory as i64,
                    policy.files_in_record as i64
                ],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn records_public(&self) -> Result<Option<String>> {
        self.read(|c| {
            c.query_row(
                "SELECT records_public FROM records_config WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn records_config(&self) -> Result<Option<RecordsConfig>> {
        self.read(|c| records_config_in(c)).await
    }

    async fn init_records(
        &self,
        records_public: &str,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        let records_public = records_public.to_owned();
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if records_config_in(&tx)?.is_some() {
                return Err(Error::Refused("records are already initialised".into()));
            }
            let user_exists = tx
                .query_row("SELECT 1 FROM users WHERE name = ?1", [vellum_wire::RECORDS_USER], |_| Ok(()))
                .optional()
                .map_err(backend)?
                .is_some();
            if user_exists {
                return Err(Error::Refused(
                    "a user named records exists that records init did not create; it can never become the archiver, and the name is needed for it".into(),
                ));
            }
            tx.execute(
                "INSERT INTO users (name, created_at) VALUES (?1, ?2)",
                params![vellum_wire::RECORDS_USER, now],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO enrollment_codes (code_hash, user, expires_at) VALUES (?1, ?2, ?3)",
                params![&code_hash[..], vellum_wire::RECORDS_USER, expires_at],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO records_config (id, records_public) VALUES (1, ?1)",
                [records_public],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn replace_archiver(
        &self,
        code_hash: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<Option<String>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(config) = records_config_in(&tx)? else {
                return Err(Error::NotFound(
                    "records configuration (run records init)".into(),
                ));
            };
            if let Some(old) = &config.archiver_device {
                revoke_in(&tx, old, now)?;
            }
            // Codes issued earlier for the archiver must not enroll a second one later.
            tx.execute(
                "UPDATE enrollment_codes SET used_at = ?2 WHERE user = ?1 AND used_at IS NULL",
                params![vellum_wire::RECORDS_USER, now],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE records_config SET archiver_device = NULL WHERE id = 1",
                [],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO enrollment_codes (code_hash, user, expires_at) VALUES (?1, ?2, ?3)",
                params![&code_hash[..], vellum_wire::RECORDS_USER, expires_at],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(config.archiver_device)
        })
        .await
    }

    async fn set_records_binding(&self, new: NewBinding) -> Result<()> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(config) = records_config_in(&tx)? else {
                return Err(Error::NotFound("records configuration (run records init)".into()));
            };
            if config.records_public != new.expected_public {
                return Err(Error::Refused("records.pub changed while the binding was checked; send it again".into()));
            }
            match &config.binding {
                Some((serial, stored)) if *serial == new.serial && *stored == new.binding => {
                    return Ok(()); // sent again (a retry): nothing changes
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
            tx.execute(
                "UPDATE records_config SET binding = ?1, binding_serial = ?2, archiver_device = ?3,
                 records_public = COALESCE(?4, records_public) WHERE id = 1",
                params![new.binding, new.serial as i64, new.archiver_device, new.new_public],
            )
            .map_err(backend)?;
            if new.new_log {
                tx.execute("DELETE FROM records_checkpoints", [])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn set_held_users(&self, users: Vec<String>) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute("DELETE FROM held_users", []).map_err(backend)?;
            for user in users {
                tx.execute(
                    "INSERT OR IGNORE INTO held_users (user) VALUES (?1)",
                    [user],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn held_users(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT user FROM held_users ORDER BY user")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }

    async fn records_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints WHERE size >= ?1 ORDER BY size LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![from.min(i64::MAX as u64) as i64, limit as i64],
                    read_checkpoint,
                )
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }

    async fn records_checkpoint_head(&self) -> Result<Option<StoredCheckpoint>> {
        self.read(|c| head_checkpoint(c)).await
    }

    async fn records_checkpoint_witnessed(&self) -> Result<Option<StoredCheckpoint>> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM records_checkpoints
                     WHERE witnessed_at IS NOT NULL ORDER BY size DESC LIMIT 1"
                ),
                [],
                read_checkpoint,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn append_records_checkpoint(&self, checkpoint: StoredCheckpoint) -> Result<()> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let head = head_checkpoint(&tx)?.map(|h| h.size);
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
            tx.execute(
                "INSERT INTO records_checkpoints (size, note, previous_size, proof, received_at, renewed_at, witnessed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    checkpoint.size as i64,
                    checkpoint.note,
                    checkpoint.previous_size as i64,
                    checkpoint.proof.join(","),
                    checkpoint.received_at,
                    checkpoint.renewed_at,
                    checkpoint.witnessed_at
                ],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn renew_records_checkpoint(
        &self,
        size: u64,
        note: Option<String>,
        witnessed: bool,
        now: i64,
    ) -> Result<()> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            if head_checkpoint(&tx)?.map(|h| h.size) != Some(size) {
                return Err(Error::Conflict(format!(
                    "the checkpoint chain (not at {size})"
                )));
            }
            tx.execute(
                "UPDATE records_checkpoints SET renewed_at = ?2, note = COALESCE(?3, note),
                 witnessed_at = CASE WHEN ?4 THEN COALESCE(witnessed_at, ?2) ELSE witnessed_at END
                 WHERE size = ?1",
                params![size as i64, now, note, witnessed],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn mark_receipted(&self, entries: Vec<(String, u64)>, now: i64) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (group_id, seq) in entries {
                tx.execute(
                    "UPDATE group_log SET receipted_at = ?3
                     WHERE group_id = ?1 AND seq = ?2 AND receipted_at IS NULL",
                    params![group_id, seq as i64, now],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn unreceipted(&self, received_before: i64) -> Result<(u64, Option<i64>)> {
        self.read(move |c| {
            c.query_row(
                "SELECT COUNT(*), MIN(l.received_at) FROM group_log l
                 WHERE l.kind = 'application' AND l.receipted_at IS NULL AND l.received_at < ?1
                   AND EXISTS (SELECT 1 FROM memberships m JOIN devices d USING (device_id)
                       WHERE m.group_id = l.group_id AND d.user = ?2
                         AND m.joined_seq < l.seq
                         AND (m.removed_seq IS NULL OR l.seq <= m.removed_seq))",
                params![received_before, vellum_wire::RECORDS_USER],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(backend)
        })
        .await
    }

    async fn queue_receipts(&self, receipts: Vec<(String, String)>) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (device, receipt) in receipts {
                tx.execute(
                    "INSERT INTO receipt_queue (device_id, receipt) VALUES (?1, ?2)",
                    params![device, receipt],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn archiver_backlog(&self) -> Result<(u64, Option<i64>)> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*), MIN(l.received_at) FROM group_log l
                 JOIN memberships m ON m.group_id = l.group_id
                 JOIN devices d ON d.device_id = m.device_id
                 WHERE d.user = ?1 AND d.revoked_at IS NULL AND m.removed_seq IS NULL
                   AND l.seq > m.acked_seq AND l.seq > m.joined_seq",
                [vellum_wire::RECORDS_USER],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(backend)
        })
        .await
    }

    async fn purge_expired(&self, now: i64, received_before: i64) -> Result<u64> {
        self.run(move |c| {
            let purged = c
                .execute(
                    &format!(
                        "DELETE FROM group_log WHERE kind = 'application'
                         AND ((expires_at IS NOT NULL AND expires_at <= ?1 AND NOT {held})
                              OR received_at < ?2 OR deleted = 1)
                         AND NOT {ARCHIVER_PENDING}",
                        held = held_chat("group_log.group_id")
                    ),
                    params![now, received_before],
                )
                .map_err(backend)?;
            if purged > 0 {
                // secure_delete zeroed the pages in the database; empty the WAL of their old images too.
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(backend)?;
            }
            Ok(purged as u64)
        })
        .await
    }

    async fn delete_message(&self, group_id: &str, seq: u64, requester_device: &str) -> Result<()> {
        let (group_id, requester_device) = (group_id.to_owned(), requester_device.to_owned());
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let owner: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT l.kind, d.user, r.user FROM group_log l
                     JOIN devices d ON d.device_id = l.sender_device
                     JOIN devices r ON r.device_id = ?3
                     WHERE l.group_id = ?1 AND l.seq = ?2",
                    params![group_id, seq as i64, requester_device],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
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
            // A record the archiver has not received yet is hidden from everyone else now and
            // purged once the archiver acknowledges it.
            tx.execute(
                &format!(
                    "UPDATE group_log SET deleted = 1 WHERE group_id = ?1 AND seq = ?2 AND {ARCHIVER_PENDING}"
                ),
                params![group_id, seq as i64],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM group_log WHERE group_id = ?1 AND seq = ?2 AND deleted = 0",
                params![group_id, seq as i64],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            // Its ciphertext may still sit in the WAL's older page images.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(backend)
        })
        .await
    }

    async fn append_directory_entries(
        &self,
        entries: Vec<NewDirectoryEntry>,
        checkpoint: String,
        now: i64,
    ) -> Result<()> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let size: i64 = tx
                .query_row("SELECT COUNT(*) FROM directory_entries", [], |r| r.get(0))
                .map_err(backend)?;
            for (offset, entry) in entries.iter().enumerate() {
                if entry.index != (size as u64) + offset as u64 {
                    return Err(Error::Conflict(format!("directory entry {}", entry.index)));
                }
                tx.execute(
                    "INSERT INTO directory_entries (idx, user, body) VALUES (?1, ?2, ?3)",
                    params![entry.index as i64, entry.user, entry.body],
                )
                .map_err(backend)?;
                if let Some(change) = &entry.change {
                    device_change_in(&tx, change, now)?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO directory_checkpoint (id, note) VALUES (1, ?1)",
                [&checkpoint],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn directory_entries(&self, start: u64, limit: u64) -> Result<Vec<Vec<u8>>> {
        let (start, limit) = (
            start.min(i64::MAX as u64) as i64,
            limit.min(i64::MAX as u64) as i64,
        );
        self.read(move |c| {
            let mut stmt = c
                .prepare("SELECT body FROM directory_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![start, limit], |r| r.get(0))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn directory_checkpoint(&self) -> Result<Option<String>> {
        self.read(|c| {
            c.query_row(
                "SELECT note FROM directory_checkpoint WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn set_directory_checkpoint(&self, previous: String, note: String) -> Result<bool> {
        self.run(move |c| {
            c.execute(
                "UPDATE directory_checkpoint SET note = ?2 WHERE id = 1 AND note = ?1",
                [previous, note],
            )
            .map(|changed| changed == 1)
            .map_err(backend)
        })
        .await
    }

    async fn approval(&self, device_id: &str) -> Result<Option<Approval>> {
        let device_id = device_id.to_owned();
        self.read(move |c| approval_in(c, &device_id)).await
    }

    async fn set_approval_commitment(
        &self,
        device_id: &str,
        commitment: &str,
        now: i64,
    ) -> Result<()> {
        let (device_id, commitment) = (device_id.to_owned(), commitment.to_owned());
        self.run(move |c| {
            c.execute(
                "INSERT INTO approvals (device_id, commitment, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device_id) DO UPDATE SET commitment = excluded.commitment,
                     hello = NULL, offer = NULL, sealed_identity = NULL,
                     updated_at = excluded.updated_at",
                params![device_id, commitment, now],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn set_approval_hello(&self, device_id: &str, hello: &str, now: i64) -> Result<()> {
        let (device_id, hello) = (device_id.to_owned(), hello.to_owned());
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE approvals SET hello = ?2, updated_at = ?3 WHERE device_id = ?1
                     AND commitment IS NOT NULL AND offer IS NULL AND sealed_identity IS NULL",
                    params![device_id, hello, now],
                )
                .map_err(backend)?;
            match changed {
                1 => Ok(()),
                _ => Err(Error::Refused(match approval_in(c, &device_id)? {
                    Some(a) if a.commitment.is_some() => {
                        "the new device revealed its offer already: cancel and start again".into()
                    }
                    _ => "the new device has not committed to its offer yet".into(),
                })),
            }
        })
        .await
    }

    async fn set_approval_offer(&self, device_id: &str, offer: &str, now: i64) -> Result<()> {
        let (device_id, offer) = (device_id.to_owned(), offer.to_owned());
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE approvals SET offer = ?2, updated_at = ?3 WHERE device_id = ?1
                     AND hello IS NOT NULL AND offer IS NULL",
                    params![device_id, offer, now],
                )
                .map_err(backend)?;
            match changed {
                1 => Ok(()),
                _ => Err(Error::Refused(match approval_in(c, &device_id)? {
                    Some(a) if a.offer.is_some() => "the offer was revealed already".into(),
                    _ => "no approving device has answered yet".into(),
                })),
            }
        })
        .await
    }

    async fn delete_approval(&self, device_id: &str, keep_sealed: bool) -> Result<()> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let condition = if keep_sealed {
                " AND sealed_identity IS NULL"
            } else {
                ""
            };
            let deleted = c
                .execute(
                    &format!("DELETE FROM approvals WHERE device_id = ?1{condition}"),
                    [&device_id],
                )
                .map_err(backend)?;
            if deleted == 0 && approval_in(c, &device_id)?.is_some() {
                return Err(Error::Refused(
                    "the device was approved already: its exchange is over".into(),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn create_blob(&self, blob: NewBlob) -> Result<()> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let user: String = tx
                .query_row(
                    "SELECT user FROM devices WHERE device_id = ?1",
                    [&blob.uploader_device],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| Error::NotFound(format!("device {}", blob.uploader_device)))?;
            let used: i64 = tx
                .query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE uploader_user = ?1",
                    [&user],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            let used = used.max(0) as u64;
            if used.saturating_add(blob.size) > blob.user_quota {
                return Err(Error::QuotaExceeded {
                    used,
                    size: blob.size,
                    quota: blob.user_quota,
                });
            }
            let chunks = NewBlob::chunk_count(blob.size, blob.chunk_size);
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO blobs (blob_id, group_id, uploader_device, uploader_user,
                        size, chunk_size, chunks, record, expires_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        blob.blob_id,
                        blob.group_id,
                        blob.uploader_device,
                        user,
                        blob.size as i64,
                        blob.chunk_size,
                        chunks as i64,
                        blob.record,
                        blob.expires_at,
                        blob.created_at
                    ],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(Error::Conflict(format!("blob {}", blob.blob_id)));
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<BlobInfo>> {
        let blob_id = blob_id.to_owned();
        self.read(move |c| blob_in(c, &blob_id)).await
    }

    async fn put_blob_chunks(&self, blob_id: &str, first: u64, chunks: Vec<Vec<u8>>) -> Result<()> {
        let blob_id = blob_id.to_owned();
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let blob = blob_in(&tx, &blob_id)?
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
            {
                let mut insert = tx
                    .prepare("INSERT INTO blob_chunks (blob_id, idx, data) VALUES (?1, ?2, ?3)")
                    .map_err(backend)?;
                for (i, data) in chunks.iter().enumerate() {
                    insert
                        .execute(params![blob_id, (first + i as u64) as i64, data])
                        .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn finish_blob(&self, blob_id: &str) -> Result<()> {
        let blob_id = blob_id.to_owned();
        self.run(move |c| {
            let blob =
                blob_in(c, &blob_id)?.ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
            if blob.present < blob.chunks {
                return Err(Error::Refused(format!(
                    "blob {blob_id} has {} of its {} chunks",
                    blob.present, blob.chunks
                )));
            }
            c.execute(
                "UPDATE blobs SET finished = 1 WHERE blob_id = ?1",
                [&blob_id],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn blob_chunk(&self, blob_id: &str, index: u64) -> Result<Option<Vec<u8>>> {
        let blob_id = blob_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT data FROM blob_chunks WHERE blob_id = ?1 AND idx = ?2",
                params![blob_id, index as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn delete_blob(&self, blob_id: &str, requester_device: &str) -> Result<()> {
        let (blob_id, requester) = (blob_id.to_owned(), requester_device.to_owned());
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let blob = blob_in(&tx, &blob_id)?
                .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
            let user: Option<String> = tx
                .query_row(
                    "SELECT user FROM devices WHERE device_id = ?1",
                    [&requester],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if user.as_deref() != Some(blob.uploader_user.as_str()) {
                return Err(Error::Forbidden(
                    "only the uploader can delete a file for everyone".into(),
                ));
            }
            if blob.record && blob.finished && !blob.archived {
                tx.execute(
                    "UPDATE blobs SET deleted = 1 WHERE blob_id = ?1",
                    [&blob_id],
                )
                .map_err(backend)?;
                return tx.commit().map_err(backend);
            }
            drop_blob(&tx, &blob_id)?;
            tx.commit().map_err(backend)?;
            // Its chunks may still sit in the WAL's older page images.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(backend)
        })
        .await
    }

    async fn mark_blob_archived(&self, blob_id: &str) -> Result<()> {
        let blob_id = blob_id.to_owned();
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let blob = blob_in(&tx, &blob_id)?
                .ok_or_else(|| Error::NotFound(format!("blob {blob_id}")))?;
            if !blob.finished {
                return Err(Error::Refused(format!("blob {blob_id} is not complete")));
            }
            tx.execute(
                "UPDATE blobs SET archived = 1 WHERE blob_id = ?1",
                [&blob_id],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn purge_blobs(&self, now: i64, created_before: i64) -> Result<u64> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let doomed: Vec<String> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT blob_id FROM blobs
                         WHERE ((expires_at IS NOT NULL AND expires_at <= ?1 AND NOT {held})
                                OR deleted = 1
                                OR (finished = 0 AND created_at < ?2))
                           AND NOT (record = 1 AND finished = 1 AND archived = 0)",
                        held = held_chat("blobs.group_id")
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![now, created_before], |r| r.get(0))
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<_>>().map_err(backend)?
            };
            for blob_id in &doomed {
                drop_blob(&tx, blob_id)?;
            }
            tx.commit().map_err(backend)?;
            if !doomed.is_empty() {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(backend)?;
            }
            Ok(doomed.len() as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_outside_the_window_are_forgotten_a_bucket_at_a_time() {
        use NonceCheck::*;
        let mut window = NonceWindow::default();
        for t in 1_000..1_100 {
            assert_eq!(window.remember("d", "n", t, 900), Fresh);
        }
        assert_eq!(window.len(), 100);
        assert_eq!(
            window.remember("d", "n", 1_050, 900),
            Replayed,
            "still remembered"
        );
        // The window moves past the first half: those buckets go, whole.
        assert_eq!(window.remember("d", "n", 1_200, 1_050), Fresh);
        assert_eq!(window.len(), 51);
        assert_eq!(window.buckets.keys().next(), Some(&105));
        // issue 7: a request that read the clock before the window moved (a slow body) is
        // refused, not taken as fresh because its bucket is gone.
        assert_eq!(window.remember("d", "n", 1_010, 900), Expired);
    }

    /// Reads run on their own connections: a write stuck behind a lock (here another
    /// process's transaction) holds the writer, and reads still answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_queue_behind_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.db");
        let store = SqliteStore::open(&path).unwrap();
        store.create_user("alice", 0).await.unwrap();
        let blocker = Connection::open(&path).unwrap();
        blocker
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO users VALUES ('x', 0);")
            .unwrap();
        let writing = tokio::spawn({
            let store = store.clone();
            async move { store.create_user("bob", 0).await }
        });
        // Wait until the write holds the writer connection.
        while store.inner.writer.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        assert!(store.user_exists("alice").await.unwrap());
        assert!(
            !store.user_exists("bob").await.unwrap(),
            "not committed yet"
        );
        assert!(!writing.is_finished());
        blocker.execute_batch("COMMIT").unwrap();
        writing.await.unwrap().unwrap();
        assert!(store.user_exists("bob").await.unwrap());
        assert!(store.user_exists("x").await.unwrap());
    }

    /// Issue 13: appends made at once share commits. Here the first caller's batch is
    /// itself alone, and everything queued while it commits goes in the next.
    #[tokio::test]
    async fn issue_13_a_burst_of_appends_shares_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("server.db")).unwrap();
        crate::conformance::issue_13_concurrent_appends_commit_together_gapless_and_chained(&store)
            .await;
        let commits = store.log_commits();
        assert!(commits < 8, "64 appends took {commits} commits");
    }
}
