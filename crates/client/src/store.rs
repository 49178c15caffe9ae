//! The device's local SQLite store: profile, chats, decrypted history, and MLS state
//! (mls-rs storage traits implemented on the same connection, so that processing a message
//! and recording its result commit in one transaction).

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use vellum_mls::mls_rs::mls_rs_codec::{MlsDecode, MlsEncode};
use vellum_mls::mls_rs::{self, GroupStateStorage, KeyPackageStorage};
use vellum_mls::mls_rs_core::group::{EpochRecord, GroupState};
use vellum_mls::mls_rs_core::key_package::KeyPackageData;

use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS profile (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mls_groups (group_id BLOB PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mls_epochs (
    group_id BLOB NOT NULL, epoch_id INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch_id)
);
CREATE TABLE IF NOT EXISTS mls_key_packages (id BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chats (
    group_id TEXT PRIMARY KEY,
    title TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    joined_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    group_id TEXT NOT NULL REFERENCES chats(group_id),
    id TEXT NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    seq INTEGER,
    text TEXT NOT NULL,
    PRIMARY KEY (group_id, id)
);
CREATE INDEX IF NOT EXISTS messages_in_order ON messages(group_id, sent_at, seq);
"#;

#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

/// A chat as this device knows it.
#[derive(Debug, Clone)]
pub struct ChatRow {
    pub group_id: String,
    pub title: Option<String>,
    pub last_seq: u64,
    pub removed: bool,
}

/// One message of the local, decrypted history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub group_id: String,
    pub id: String,
    pub sender_user: String,
    pub sender_device: String,
    pub sent_at: i64,
    pub received_at: i64,
    pub seq: Option<u64>,
    pub text: String,
}

impl LocalStore {
    /// Opens `home/vellum.db`, creating the home directory (0700) and file (0600).
    pub fn open(home: &Path) -> Result<Self, Error> {
        fs::create_dir_all(home).map_err(|e| Error::Io(format!("{}: {e}", home.display())))?;
        fs::set_permissions(home, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Io(format!("{}: {e}", home.display())))?;
        let path = home.join("vellum.db");
        // Create the file with owner-only permissions before SQLite touches it.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(&path).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;
             PRAGMA journal_size_limit = 0;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a transaction spanning several calls (MLS state writes included). The device
    /// is single-threaded over its store, so nothing else runs on the connection meanwhile.
    pub fn begin(&self) -> Result<(), Error> {
        self.lock().execute_batch("BEGIN IMMEDIATE").map_err(db)
    }

    pub fn commit(&self) -> Result<(), Error> {
        self.lock().execute_batch("COMMIT").map_err(db)
    }

    pub fn rollback(&self) {
        let _ = self.lock().execute_batch("ROLLBACK");
    }

    pub fn profile_get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.lock()
            .query_row("SELECT value FROM profile WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)
    }

    pub fn profile_set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO profile (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn add_chat(&self, group_id: &str, title: Option<&str>, now: i64) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT INTO chats (group_id, title, joined_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id) DO UPDATE SET removed = 0, title = COALESCE(?2, title)",
                params![group_id, title, now],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn set_title(&self, group_id: &str, title: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET title = ?2 WHERE group_id = ?1",
                params![group_id, title],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn set_removed(&self, group_id: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET removed = 1 WHERE group_id = ?1",
                [group_id],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn set_last_seq(&self, group_id: &str, seq: u64) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET last_seq = MAX(last_seq, ?2) WHERE group_id = ?1",
                params![group_id, seq as i64],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn chats(&self) -> Result<Vec<ChatRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT group_id, title, last_seq, removed FROM chats ORDER BY joined_at, group_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChatRow {
                    group_id: r.get(0)?,
                    title: r.get(1)?,
                    last_seq: r.get::<_, i64>(2)? as u64,
                    removed: r.get::<_, i64>(3)? == 1,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    pub fn chat(&self, group_id: &str) -> Result<Option<ChatRow>, Error> {
        Ok(self.chats()?.into_iter().find(|c| c.group_id == group_id))
    }

    /// Inserts a message once; a second insert of the same id is ignored (exactly-once).
    pub fn add_message(&self, m: &MessageRow) -> Result<bool, Error> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO messages (group_id, id, sender_user, sender_device, sent_at, received_at, seq, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![m.group_id, m.id, m.sender_user, m.sender_device, m.sent_at, m.received_at, m.seq.map(|s| s as i64), m.text],
            )
            .map(|n| n == 1)
            .map_err(db)
    }

    pub fn set_message_seq(&self, group_id: &str, id: &str, seq: u64) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE messages SET seq = ?3 WHERE group_id = ?1 AND id = ?2",
                params![group_id, id, seq as i64],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn delete_message(&self, group_id: &str, id: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "DELETE FROM messages WHERE group_id = ?1 AND id = ?2",
                params![group_id, id],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn history(&self, group_id: &str) -> Result<Vec<MessageRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT group_id, id, sender_user, sender_device, sent_at, received_at, seq, text FROM messages
                 WHERE group_id = ?1 ORDER BY COALESCE(seq, 9223372036854775807), sent_at, id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([group_id], |r| {
                Ok(MessageRow {
                    group_id: r.get(0)?,
                    id: r.get(1)?,
                    sender_user: r.get(2)?,
                    sender_device: r.get(3)?,
                    sent_at: r.get(4)?,
                    received_at: r.get(5)?,
                    seq: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
                    text: r.get(7)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// mls-rs's group state storage on this database.
    pub fn mls_groups(&self) -> MlsGroupStorage {
        MlsGroupStorage(self.clone())
    }

    pub fn mls_key_packages(&self) -> MlsKeyPackageStorage {
        MlsKeyPackageStorage(self.clone())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("local MLS storage: {0}")]
pub struct StorageError(String);

impl mls_rs::error::IntoAnyError for StorageError {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(self.into())
    }
}

fn se(e: impl std::fmt::Display) -> StorageError {
    StorageError(e.to_string())
}

#[derive(Clone)]
pub struct MlsGroupStorage(LocalStore);

impl GroupStateStorage for MlsGroupStorage {
    type Error = StorageError;

    fn state(&self, group_id: &[u8]) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Self::Error> {
        self.0
            .lock()
            .query_row(
                "SELECT state FROM mls_groups WHERE group_id = ?1",
                [group_id],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map(|s| s.map(zeroize::Zeroizing::new))
            .map_err(se)
    }

    fn epoch(
        &self,
        group_id: &[u8],
        epoch_id: u64,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, Self::Error> {
        self.0
            .lock()
            .query_row(
                "SELECT data FROM mls_epochs WHERE group_id = ?1 AND epoch_id = ?2",
                params![group_id, epoch_id as i64],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map(|s| s.map(zeroize::Zeroizing::new))
            .map_err(se)
    }

    fn write(
        &mut self,
        state: GroupState,
        inserts: Vec<EpochRecord>,
        updates: Vec<EpochRecord>,
    ) -> Result<(), Self::Error> {
        let mut conn = self.0.lock();
        // A savepoint nests inside an open transaction and is one when there is none.
        let sp = conn.savepoint().map_err(se)?;
        sp.execute(
            "INSERT OR REPLACE INTO mls_groups (group_id, state) VALUES (?1, ?2)",
            params![state.id, state.data.as_slice()],
        )
        .map_err(se)?;
        for record in inserts.iter().chain(updates.iter()) {
            sp.execute(
                "INSERT OR REPLACE INTO mls_epochs (group_id, epoch_id, data) VALUES (?1, ?2, ?3)",
                params![state.id, record.id as i64, record.data.as_slice()],
            )
            .map_err(se)?;
        }
        sp.commit().map_err(se)
    }

    fn max_epoch_id(&self, group_id: &[u8]) -> Result<Option<u64>, Self::Error> {
        self.0
            .lock()
            .query_row(
                "SELECT MAX(epoch_id) FROM mls_epochs WHERE group_id = ?1",
                [group_id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|m| m.map(|v| v as u64))
            .map_err(se)
    }
}

#[derive(Clone)]
pub struct MlsKeyPackageStorage(LocalStore);

impl KeyPackageStorage for MlsKeyPackageStorage {
    type Error = StorageError;

    fn delete(&mut self, id: &[u8]) -> Result<(), Self::Error> {
        self.0
            .lock()
            .execute("DELETE FROM mls_key_packages WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(se)
    }

    fn insert(&mut self, id: Vec<u8>, pkg: KeyPackageData) -> Result<(), Self::Error> {
        let data = pkg.mls_encode_to_vec().map_err(se)?;
        self.0
            .lock()
            .execute(
                "INSERT OR REPLACE INTO mls_key_packages (id, data) VALUES (?1, ?2)",
                params![id, data],
            )
            .map(|_| ())
            .map_err(se)
    }

    fn get(&self, id: &[u8]) -> Result<Option<KeyPackageData>, Self::Error> {
        let data: Option<Vec<u8>> = self
            .0
            .lock()
            .query_row(
                "SELECT data FROM mls_key_packages WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(se)?;
        data.map(|d| KeyPackageData::mls_decode(&mut d.as_slice()).map_err(se))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_mls::mls_rs::crypto::HpkeSecretKey;

    fn state(id: &[u8], data: &[u8]) -> GroupState {
        GroupState {
            id: id.to_vec(),
            data: zeroize::Zeroizing::new(data.to_vec()),
        }
    }

    #[test]
    fn group_state_round_trips_and_rolls_back_with_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut groups = store.mls_groups();
        groups
            .write(
                state(b"g", b"epoch-1"),
                vec![EpochRecord::new(1, b"e1".to_vec().into())],
                vec![],
            )
            .unwrap();
        assert_eq!(groups.state(b"g").unwrap().unwrap().as_slice(), b"epoch-1");
        assert_eq!(groups.epoch(b"g", 1).unwrap().unwrap().as_slice(), b"e1");
        assert_eq!(groups.max_epoch_id(b"g").unwrap(), Some(1));
        assert_eq!(groups.state(b"other").unwrap(), None);

        // A write inside a transaction that is rolled back leaves the old state: processing
        // a message and recording it are all-or-nothing.
        store.begin().unwrap();
        groups
            .write(state(b"g", b"epoch-2"), vec![], vec![])
            .unwrap();
        store.add_chat("g", Some("t"), 0).unwrap();
        store.rollback();
        assert_eq!(groups.state(b"g").unwrap().unwrap().as_slice(), b"epoch-1");
        assert!(store.chats().unwrap().is_empty());

        // And a committed one sticks, across reopening the file.
        store.begin().unwrap();
        groups
            .write(state(b"g", b"epoch-2"), vec![], vec![])
            .unwrap();
        store.commit().unwrap();
        drop((groups, store));
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened
                .mls_groups()
                .state(b"g")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"epoch-2"
        );
    }

    #[test]
    fn key_package_secrets_round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut kps = store.mls_key_packages();
        let data = KeyPackageData::new(
            b"kp".to_vec(),
            HpkeSecretKey::from(b"init".to_vec()),
            HpkeSecretKey::from(b"leaf".to_vec()),
            42,
        );
        kps.insert(b"id".to_vec(), data.clone()).unwrap();
        assert!(kps.get(b"id").unwrap() == Some(data));
        kps.delete(b"id").unwrap();
        assert!(kps.get(b"id").unwrap().is_none());
    }

    #[test]
    fn messages_are_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        let m = MessageRow {
            group_id: "g".into(),
            id: "m1".into(),
            sender_user: "alice".into(),
            sender_device: "d".into(),
            sent_at: 1,
            received_at: 2,
            seq: Some(3),
            text: "hi".into(),
        };
        assert!(store.add_message(&m).unwrap());
        assert!(
            !store.add_message(&m).unwrap(),
            "the same message id is never stored twice"
        );
        assert_eq!(store.history("g").unwrap(), vec![m]);
        store.set_last_seq("g", 5).unwrap();
        store.set_last_seq("g", 4).unwrap();
        assert_eq!(
            store.chat("g").unwrap().unwrap().last_seq,
            5,
            "the cursor never moves back"
        );
    }
}
