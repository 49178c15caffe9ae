use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use vellum_wire::EntryKind;

use crate::*;

/// The embedded SQLite backend: one connection, WAL, `synchronous=FULL` so that an
/// acknowledged write survives a crash, `secure_delete` so purged ciphertext is overwritten.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name),
    signature_key BLOB NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices(user);
CREATE TABLE IF NOT EXISTS nonces (
    device_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE TABLE IF NOT EXISTS key_packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL REFERENCES devices(device_id),
    data BLOB NOT NULL,
    last_resort INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS key_packages_by_device ON key_packages(device_id, last_resort);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    state BLOB NOT NULL,
    expire_secs INTEGER,
    burn_secs INTEGER,
    last_seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_log (
    group_id TEXT NOT NULL REFERENCES groups(group_id),
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    client_msg_id TEXT,
    payload BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER,
    -- deleted for everyone, kept only until the archiver has it
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, sender_device, client_msg_id)
);
CREATE TABLE IF NOT EXISTS memberships (
    group_id TEXT NOT NULL REFERENCES groups(group_id),
    device_id TEXT NOT NULL,
    joined_seq INTEGER NOT NULL,
    removed_seq INTEGER,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_device ON memberships(device_id);
CREATE TABLE IF NOT EXISTS welcome_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS welcome_queue_by_device ON welcome_queue(device_id, id);
CREATE INDEX IF NOT EXISTS group_log_expiry ON group_log(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS group_log_received ON group_log(received_at);
CREATE TABLE IF NOT EXISTS org_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    max_expire_secs INTEGER,
    max_burn_secs INTEGER,
    allow_no_expiry INTEGER NOT NULL,
    default_record INTEGER NOT NULL DEFAULT 0,
    allow_transitory INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS records_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    records_public TEXT NOT NULL,
    log_key TEXT
);
CREATE TABLE IF NOT EXISTS receipt_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    receipt TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipt_queue_by_device ON receipt_queue(device_id, id);
"#;

/// True for a log entry the org's archiver (a member then) has not acknowledged yet.
const ARCHIVER_PENDING: &str = "EXISTS (
    SELECT 1 FROM memberships m JOIN devices d USING (device_id)
    WHERE m.group_id = group_log.group_id AND d.user = 'records'
      AND (m.removed_seq IS NULL OR group_log.seq <= m.removed_seq)
      AND m.acked_seq < group_log.seq AND m.joined_seq < group_log.seq)";

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v as u64)
}

fn backend(e: rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return Error::DiskFull;
    }
    Error::Backend(e.to_string())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

fn kind_from(s: &str) -> Result<EntryKind> {
    match s {
        "commit" => Ok(EntryKind::Commit),
        "application" => Ok(EntryKind::Application),
        other => Err(Error::Backend(format!("unknown log entry kind {other:?}"))),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;
             PRAGMA journal_size_limit = 1048576;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs blocking SQLite work off the async executor.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
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

fn current_epoch(tx: &Connection, group_id: &str) -> Result<(u64, u64)> {
    tx.query_row(
        "SELECT epoch, last_seq FROM groups WHERE group_id = ?1",
        [group_id],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .optional()
    .map_err(backend)?
    .ok_or_else(|| Error::NotFound(format!("group {group_id}")))
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

#[async_trait]
impl Store for SqliteStore {
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
        self.run(move |c| {
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
        self.run(move |c| live_code_user(c, &code_hash, now)).await
    }

    async fn enroll_device(&self, code_hash: [u8; 32], now: i64, device: Device) -> Result<()> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let user = live_code_user(&tx, &code_hash, now)?;
            if user != device.user {
                return Err(Error::InvalidCode);
            }
            tx.execute(
                "UPDATE enrollment_codes SET used_at = ?2 WHERE code_hash = ?1",
                params![&code_hash[..], now],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO devices (device_id, user, signature_key, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
                params![device.device_id, device.user, device.signature_key, now],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::Conflict("device or signature key".into())
                } else {
                    backend(e)
                }
            })?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn device(&self, device_id: &str) -> Result<Option<Device>> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT device_id, user, signature_key FROM devices WHERE device_id = ?1",
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

    async fn user_devices(&self, user: &str) -> Result<Vec<Device>> {
        let user = user.to_owned();
        self.run(move |c| {
            let mut stmt = c
                .prepare("SELECT device_id, user, signature_key FROM devices WHERE user = ?1 ORDER BY enrolled_at, device_id")
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

    async fn remember_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        now: i64,
        forget_before: i64,
    ) -> Result<bool> {
        let (device_id, nonce) = (device_id.to_owned(), nonce.to_owned());
        self.run(move |c| {
            c.execute("DELETE FROM nonces WHERE seen_at < ?1", [forget_before])
                .map_err(backend)?;
            let inserted = c
                .execute(
                    "INSERT OR IGNORE INTO nonces (device_id, nonce, seen_at) VALUES (?1, ?2, ?3)",
                    params![device_id, nonce, now],
                )
                .map_err(backend)?;
            Ok(inserted == 1)
        })
        .await
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
            for kp in single_use {
                tx.execute(
                    "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?1, ?2, 0)",
                    params![device_id, kp],
                )
                .map_err(backend)?;
            }
            if let Some(kp) = last_resort {
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
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn key_package_count(&self, device_id: &str) -> Result<(u64, bool)> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
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
                "INSERT INTO groups (group_id, epoch, state, last_seq, created_at, expire_secs, burn_secs) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                params![
                    group.group_id,
                    group.epoch as i64,
                    group.state,
                    group.created_at,
                    opt_i64(group.timers.expire_secs),
                    opt_i64(group.timers.burn_secs)
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
        self.run(move |c| {
            c.query_row(
                "SELECT group_id, epoch, state, expire_secs, burn_secs FROM groups WHERE group_id = ?1",
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
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        let group_id = group_id.to_owned();
        self.run(move |c| {
            let mut stmt = c
                .prepare("SELECT device_id FROM memberships WHERE group_id = ?1 AND removed_seq IS NULL ORDER BY device_id")
                .map_err(backend)?;
            let rows = stmt.query_map([group_id], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(backend)
        })
        .await
    }

    async fn is_member(&self, group_id: &str, device_id: &str) -> Result<bool> {
        let (group_id, device_id) = (group_id.to_owned(), device_id.to_owned());
        self.run(move |c| is_current_member(c, &group_id, &device_id))
            .await
    }

    async fn append_commit(&self, commit: CommitAppend) -> Result<Appended> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let (epoch, last_seq) = current_epoch(&tx, &commit.group_id)?;
            if epoch != commit.expected_epoch {
                return Err(Error::StaleEpoch { current: epoch });
            }
            if !is_current_member(&tx, &commit.group_id, &commit.sender_device)? {
                return Err(Error::NotMember);
            }
            let seq = last_seq + 1;
            tx.execute(
                "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, payload, received_at) VALUES (?1, ?2, ?3, 'commit', ?4, ?5, ?6)",
                params![commit.group_id, seq as i64, commit.expected_epoch as i64, commit.sender_device, commit.payload, commit.received_at],
            )
            .map_err(backend)?;
            tx.execute(
                "UPDATE groups SET epoch = ?2, state = ?3, last_seq = ?4, expire_secs = ?5, burn_secs = ?6 WHERE group_id = ?1",
                params![
                    commit.group_id,
                    commit.new_epoch as i64,
                    commit.state,
                    seq as i64,
                    opt_i64(commit.timers.expire_secs),
                    opt_i64(commit.timers.burn_secs)
                ],
            )
            .map_err(backend)?;
            for device in &commit.removed {
                tx.execute(
                    "UPDATE memberships SET removed_seq = ?3 WHERE group_id = ?1 AND device_id = ?2",
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
        self.run(move |c| {
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
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let (epoch, last_seq) = current_epoch(&tx, &m.group_id)?;
            let earlier: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT seq, epoch FROM group_log WHERE group_id = ?1 AND sender_device = ?2 AND client_msg_id = ?3",
                    params![m.group_id, m.sender_device, m.client_msg_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            if let Some((seq, epoch)) = earlier {
                return Ok(Appended { seq: seq as u64, epoch: epoch as u64, duplicate: true });
            }
            if !is_current_member(&tx, &m.group_id, &m.sender_device)? {
                return Err(Error::NotMember);
            }
            if m.epoch != epoch {
                return Err(Error::StaleEpoch { current: epoch });
            }
            let seq = last_seq + 1;
            tx.execute(
                "INSERT INTO group_log (group_id, seq, epoch, kind, sender_device, client_msg_id, payload, received_at, expires_at) VALUES (?1, ?2, ?3, 'application', ?4, ?5, ?6, ?7, ?8)",
                params![m.group_id, seq as i64, epoch as i64, m.sender_device, m.client_msg_id, m.payload, m.received_at, m.expires_at],
            )
            .map_err(backend)?;
            tx.execute("UPDATE groups SET last_seq = ?2 WHERE group_id = ?1", params![m.group_id, seq as i64])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Appended { seq, epoch, duplicate: false })
        })
        .await
    }

    async fn pending(&self, device_id: &str, limit: usize) -> Result<Pending> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let mut pending = Pending::default();
            {
                let mut stmt = tx
                    .prepare("SELECT id, group_id, payload FROM welcome_queue WHERE device_id = ?1 ORDER BY id LIMIT ?2")
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![device_id, limit as i64 + 1], |r| {
                        Ok(StoredWelcome { id: r.get::<_, i64>(0)? as u64, group_id: r.get(1)?, payload: r.get(2)? })
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
                    .prepare(
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
                .query_row("SELECT user FROM devices WHERE device_id = ?1", [&device_id], |r| r.get::<_, String>(0))
                .optional()
                .map_err(backend)?
                .is_some_and(|user| user == vellum_wire::RECORDS_USER);
            let mut stmt = tx
                .prepare(
                    "SELECT seq, epoch, kind, sender_device, received_at, payload FROM group_log
                     WHERE group_id = ?1 AND seq > ?2 AND seq <= ?3 AND (deleted = 0 OR ?5)
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(backend)?;
            for (group_id, after, removed) in memberships {
                let upto = removed.unwrap_or(i64::MAX);
                let rows = stmt
                    .query_map(params![group_id, after, upto, budget as i64 + 1, is_archiver], |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u64,
                            r.get::<_, i64>(1)? as u64,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Vec<u8>>(5)?,
                        ))
                    })
                    .map_err(backend)?;
                let mut entries = Vec::new();
                for row in rows {
                    let (seq, epoch, kind, sender_device, received_at, payload) = row.map_err(backend)?;
                    entries.push(StoredEntry { seq, epoch, kind: kind_from(&kind)?, sender_device, received_at, payload });
                }
                if entries.len() > budget {
                    entries.truncate(budget);
                    pending.more = true;
                }
                budget -= entries.len();
                if !entries.is_empty() {
                    pending.groups.push((group_id, entries));
                }
                if pending.more || budget == 0 {
                    pending.more = true;
                    break;
                }
            }
            Ok(pending)
        })
        .await
    }

    async fn ack(
        &self,
        device_id: &str,
        welcome_ids: &[u64],
        cursors: &[(String, u64)],
    ) -> Result<()> {
        let device_id = device_id.to_owned();
        let welcome_ids = welcome_ids.to_vec();
        let cursors = cursors.to_vec();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            for (group_id, seq) in &cursors {
                let known: Option<i64> = tx
                    .query_row(
                        "SELECT g.last_seq FROM memberships m JOIN groups g USING (group_id) WHERE m.group_id = ?1 AND m.device_id = ?2",
                        params![group_id, device_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(last_seq) = known else { return Err(Error::NotMember) };
                if *seq as i64 > last_seq {
                    return Err(Error::NotFound(format!("entry {seq} of group {group_id}")));
                }
                tx.execute(
                    "UPDATE memberships SET acked_seq = MAX(acked_seq, ?3) WHERE group_id = ?1 AND device_id = ?2",
                    params![group_id, device_id, *seq as i64],
                )
                .map_err(backend)?;
            }
            for id in &welcome_ids {
                tx.execute("DELETE FROM welcome_queue WHERE id = ?1 AND device_id = ?2", params![*id as i64, device_id])
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn org_policy(&self) -> Result<OrgPolicy> {
        self.run(|c| {
            let mut policy = c
                .query_row(
                    "SELECT max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory FROM org_policy WHERE id = 1",
                    [],
                    |r| {
                        Ok(OrgPolicy {
                            max_expire_secs: opt_u64(r.get(0)?),
                            max_burn_secs: opt_u64(r.get(1)?),
                            allow_no_expiry: r.get::<_, i64>(2)? == 1,
                            default_record: r.get::<_, i64>(3)? == 1,
                            allow_transitory: r.get::<_, i64>(4)? == 1,
                            archiver_device: None,
                            records_log_key: None,
                        })
                    },
                )
                .optional()
                .map_err(backend)?
                .unwrap_or_default();
            policy.records_log_key = c
                .query_row("SELECT log_key FROM records_config WHERE id = 1", [], |r| r.get(0))
                .optional()
                .map_err(backend)?
                .flatten();
            policy.archiver_device = c
                .query_row(
                    "SELECT device_id FROM devices WHERE user = ?1 ORDER BY enrolled_at, device_id LIMIT 1",
                    [vellum_wire::RECORDS_USER],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            Ok(policy)
        })
        .await
    }

    async fn set_org_policy(&self, policy: OrgPolicy) -> Result<()> {
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO org_policy (id, max_expire_secs, max_burn_secs, allow_no_expiry, default_record, allow_transitory) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![
                    opt_i64(policy.max_expire_secs),
                    opt_i64(policy.max_burn_secs),
                    policy.allow_no_expiry as i64,
                    policy.default_record as i64,
                    policy.allow_transitory as i64
                ],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn records_public(&self) -> Result<Option<String>> {
        self.run(|c| {
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

    async fn set_records_public(&self, records_public: &str) -> Result<()> {
        let records_public = records_public.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO records_config (id, records_public) VALUES (1, ?1)",
                [records_public],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    async fn set_records_log_key(&self, verifier_key: &str) -> Result<()> {
        let key = verifier_key.to_owned();
        self.run(move |c| {
            let changed = c
                .execute("UPDATE records_config SET log_key = ?1 WHERE id = 1", [key])
                .map_err(backend)?;
            if changed == 0 {
                return Err(Error::NotFound("records configuration".into()));
            }
            Ok(())
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

    async fn pending_receipts(&self, device_id: &str, limit: usize) -> Result<Vec<(u64, String)>> {
        let device_id = device_id.to_owned();
        self.run(move |c| {
            let mut stmt = c
                .prepare("SELECT id, receipt FROM receipt_queue WHERE device_id = ?1 ORDER BY id LIMIT ?2")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![device_id, limit as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
        .await
    }

    async fn ack_receipts(&self, device_id: &str, ids: &[u64]) -> Result<()> {
        let (device_id, ids) = (device_id.to_owned(), ids.to_vec());
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for id in ids {
                tx.execute(
                    "DELETE FROM receipt_queue WHERE id = ?1 AND device_id = ?2",
                    params![id as i64, device_id],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn archiver_backlog(&self) -> Result<(u64, Option<i64>)> {
        self.run(|c| {
            c.query_row(
                "SELECT COUNT(*), MIN(l.received_at) FROM group_log l
                 JOIN memberships m ON m.group_id = l.group_id
                 JOIN devices d ON d.device_id = m.device_id
                 WHERE d.user = ?1 AND m.removed_seq IS NULL
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
                         AND ((expires_at IS NOT NULL AND expires_at <= ?1) OR received_at < ?2 OR deleted = 1)
                         AND NOT {ARCHIVER_PENDING}"
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
}
