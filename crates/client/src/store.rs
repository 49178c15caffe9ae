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

use crate::{ChatEvent, Error};

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
}

pub(crate) fn db(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

/// A chat as this device knows it.
#[derive(Debug, Clone)]
pub struct ChatRow {
    pub group_id: String,
    pub title: Option<String>,
    pub last_seq: u64,
    pub removed: bool,
    /// A legal hold covers a member: nothing in the chat expires or burns meanwhile.
    pub held: bool,
}

/// Where this device last saw a chat's log on the server: a seq, the running log hash after
/// it, and the id of the server database that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    pub seq: u64,
    pub log_hash: [u8; 32],
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Something a member wrote.
    Text,
    /// Something that happened: a membership change, a timer change, a deletion.
    Event,
    /// Issue 10: a member's reaction to a message (its `event` says which and to what).
    /// Folded into its message by `history`; shown on its own by `sync` and `watch`.
    Reaction,
    /// Issue 10: the sender edited a message (its `event` says which; the message itself
    /// holds the newest text). Shown on its own by `sync` and `watch`.
    Edit,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Event => "event",
            MessageKind::Reaction => "reaction",
            MessageKind::Edit => "edit",
        }
    }
}

/// One message of the local, decrypted history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub group_id: String,
    pub id: String,
    pub kind: MessageKind,
    pub sender_user: String,
    pub sender_device: String,
    pub sent_at: i64,
    pub received_at: i64,
    pub seq: Option<u64>,
    pub text: String,
    /// Unix ms when it is shredded on every device, whether read or not.
    pub expires_at: Option<i64>,
    /// Burn-on-read timer: counted on each device from when it is first displayed there.
    pub burn_secs: Option<u64>,
    pub read_at: Option<i64>,
    /// Unix ms when it is shredded on this device: first display plus the burn timer, never
    /// later than `expires_at`.
    pub burn_at: Option<i64>,
    /// The archive leaf holding this message, once a verified receipt said so.
    pub archived_leaf: Option<u64>,
    /// The salt of the archive's commitments to this message's content (a text message's
    /// payload carries it since 0.3).
    pub salt: Option<[u8; 32]>,
    /// What an event row means (its `text` is this event's sentence); `None` for text.
    pub event: Option<ChatEvent>,
    /// A text message's reply, mentions, files and edit time (issue 10).
    pub extra: MessageExtra,
}

/// What a text message carries beyond its text (issue 10). Stored sealed with the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageExtra {
    /// The id of the message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// User names the message mentions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// End-to-end encrypted files (their keys included: this is the device's own copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<vellum_wire::AttachmentRef>,
    /// When its sender last edited it (the sender's clock, Unix ms); `text` is the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
}

impl MessageExtra {
    pub fn is_empty(&self) -> bool {
        self == &MessageExtra::default()
    }
}

/// A verified archive receipt of one of this device's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    pub group_id: String,
    pub message_id: String,
    pub leaf_index: u64,
    /// `vellum_wire::Receipt` JSON, as verified.
    pub receipt: String,
    /// The `SignedBinding` JSON it verified under.
    pub binding: String,
    pub received_at: i64,
}

/// Where a page of a chat's history starts (see [`LocalStore::history_page`]). Written for
/// a window as an opaque string: `seq.sent_at.rowid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    seq: i64,
    sent_at: i64,
    rowid: i64,
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.seq, self.sent_at, self.rowid)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Invalid("not a history cursor".into());
        let mut parts = s.split('.').map(|p| p.parse::<i64>().map_err(|_| bad()));
        let cursor = HistoryCursor {
            seq: parts.next().ok_or_else(bad)??,
            sent_at: parts.next().ok_or_else(bad)??,
            rowid: parts.next().ok_or_else(bad)??,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(cursor)
    }
}

/// What the shredder removed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shredded {
    pub group_id: String,
    pub id: String,
    pub reason: ShredReason,
    /// When it was due (Unix ms), to measure the shredder's lag.
    pub due_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShredReason {
    Expired,
    Burned,
    Deleted,
}

impl ShredReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShredReason::Expired => "expired",
            ShredReason::Burned => "burned",
            ShredReason::Deleted => "deleted",
        }
    }
}

/// SQL true for a message of a chat no legal hold keeps.
const NOT_HELD: &str = "group_id NOT IN (SELECT group_id FROM chats WHERE held = 1)";

fn aad(group_id: &str, id: &str) -> Vec<u8> {
    format!("vellum-message-v1/{group_id}/{id}").into_bytes()
}

fn salt_aad(group_id: &str, id: &str) -> Vec<u8> {
    format!("vellum-message-salt-v1/{group_id}/{id}").into_bytes()
}

fn event_aad(group_id: &str, id: &str) -> Vec<u8> {
    format!("vellum-message-event-v1/{group_id}/{id}").into_bytes()
}

fn extra_aad(group_id: &str, id: &str) -> Vec<u8> {
    format!("vellum-message-extra-v1/{group_id}/{id}").into_bytes()
}

/// A message's extra, sealed under its key; `None` when there is nothing to keep.
fn seal_extra(
    key: &[u8],
    group_id: &str,
    id: &str,
    extra: &MessageExtra,
) -> Result<Option<Vec<u8>>, Error> {
    if extra.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_vec(extra).map_err(|e| Error::Store(e.to_string()))?;
    vellum_mls::at_rest::seal(key, &extra_aad(group_id, id), &json)
        .map(Some)
        .map_err(|e| Error::Store(e.to_string()))
}

const MESSAGE_COLUMNS: &str = "m.group_id, m.id, m.kind, m.sender_user, m.sender_device, m.sent_at, m.received_at, m.seq, m.body, m.expires_at, m.burn_secs, m.read_at, m.burn_at, k.key, m.archived_leaf, m.salt, m.event_json, m.extra_json";

/// The rows about one target (its reactions and edits), by the target's index, named: the
/// planner would otherwise walk the whole chat in `messages_page` order to spare itself a
/// sort of a few rows — 2 ms a message in a 10,000-message chat (issue 12).
const ABOUT_FROM: &str =
    "INDEXED BY messages_by_target LEFT JOIN message_keys k USING (group_id, id)
     WHERE m.group_id = ?1 AND m.target = ?2
     ORDER BY COALESCE(m.seq, 9223372036854775807), m.rowid";

/// Reads a row of MESSAGE_COLUMNS and opens its body; `None` if its key is gone.
fn read_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<MessageRow>> {
    let group_id: String = r.get(0)?;
    let id: String = r.get(1)?;
    let body: Vec<u8> = r.get(8)?;
    let Some(key) = r
        .get::<_, Option<Vec<u8>>>(13)?
        .map(zeroize::Zeroizing::new)
    else {
        return Ok(None);
    };
    let Ok(text) = vellum_mls::at_rest::open(&key, &aad(&group_id, &id), &body) else {
        return Ok(None);
    };
    let salt = r
        .get::<_, Option<Vec<u8>>>(15)?
        .and_then(|sealed| vellum_mls::at_rest::open(&key, &salt_aad(&group_id, &id), &sealed).ok())
        .and_then(|salt| <[u8; 32]>::try_from(&salt[..]).ok());
    let kind = match r.get::<_, String>(2)?.as_str() {
        "event" => MessageKind::Event,
        "reaction" => MessageKind::Reaction,
        "edit" => MessageKind::Edit,
        _ => MessageKind::Text,
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    // An event from before typed events (V6), or of a type a newer version wrote, is a notice
    // of its sentence.
    let typed = r
        .get::<_, Option<Vec<u8>>>(16)?
        .and_then(|sealed| {
            vellum_mls::at_rest::open(&key, &event_aad(&group_id, &id), &sealed).ok()
        })
        .and_then(|json| serde_json::from_slice::<ChatEvent>(&json).ok());
    let event = match kind {
        MessageKind::Text => None,
        MessageKind::Event => {
            Some(typed.unwrap_or_else(|| ChatEvent::Notice { text: text.clone() }))
        }
        // Without its typed event a reaction or edit means nothing: not shown.
        MessageKind::Reaction | MessageKind::Edit => match typed {
            Some(event) if event.target().is_some() => Some(event),
            _ => return Ok(None),
        },
    };
    let extra = r
        .get::<_, Option<Vec<u8>>>(17)?
        .and_then(|sealed| {
            vellum_mls::at_rest::open(&key, &extra_aad(&group_id, &id), &sealed).ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default();
    Ok(Some(MessageRow {
        group_id,
        id,
        kind,
        sender_user: r.get(3)?,
        sender_device: r.get(4)?,
        sent_at: r.get(5)?,
        received_at: r.get(6)?,
        seq: r.get::<_, Option<i64>>(7)?.map(|s| s as u64),
        text,
        expires_at: r.get(9)?,
        burn_secs: r.get::<_, Option<i64>>(10)?.map(|s| s as u64),
        read_at: r.get(11)?,
        burn_at: r.get(12)?,
        archived_leaf: r.get::<_, Option<i64>>(14)?.map(|l| l as u64),
        salt,
        event,
        extra,
    }))
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
        let schema =
            |e: vellum_store::SchemaError| Error::Store(format!("{}: {e}", path.display()));
        vellum_store::schema::check_existing(&path, &embedded::migrations::runner())
            .map_err(schema)?;
        let mut conn = Connection::open(&path).map_err(db)?;
        vellum_store::schema::quick_check(&conn).map_err(schema)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;
             PRAGMA journal_size_limit = 0;
             PRAGMA temp_store = MEMORY;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(db)?;
        vellum_store::schema::migrate(&mut conn, embedded::migrations::runner()).map_err(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
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

    pub fn profile_delete(&self, key: &str) -> Result<(), Error> {
        self.lock()
            .execute("DELETE FROM profile WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(db)
    }

    /// The delivery server's nodes, in the order this device tries them.
    pub fn servers(&self) -> Result<Vec<String>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT url FROM servers ORDER BY position")
            .map_err(db)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// Replaces the list of nodes (inside the caller's transaction, or as one of its own).
    pub fn set_servers(&self, servers: &[String]) -> Result<(), Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        sp.execute("DELETE FROM servers", []).map_err(db)?;
        for (position, url) in servers.iter().enumerate() {
            sp.execute(
                "INSERT INTO servers (position, url) VALUES (?1, ?2)",
                params![position as i64, url],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)
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

    /// Deletes a chat's MLS state (every epoch's secrets): after leaving, nothing of the
    /// group's keys stays on the device. `group_id` is hex.
    pub fn forget_group_state(&self, group_id: &str) -> Result<(), Error> {
        let raw = hex::decode(group_id).map_err(|_| Error::Store("bad group id".into()))?;
        let conn = self.lock();
        conn.execute("DELETE FROM mls_epochs WHERE group_id = ?1", [&raw])
            .and_then(|_| conn.execute("DELETE FROM mls_groups WHERE group_id = ?1", [&raw]))
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

    pub fn set_held(&self, group_id: &str, held: bool) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET held = ?2 WHERE group_id = ?1",
                params![group_id, held],
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

    /// Moves the chat's cursor back to `seq`: after the server went back in time, the
    /// entries it now has at positions this device passed are processed, not skipped.
    pub fn rewind_last_seq(&self, group_id: &str, seq: u64) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET last_seq = MIN(last_seq, ?2) WHERE group_id = ?1",
                params![group_id, seq as i64],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// The last log position of the chat whose running hash this device holds.
    pub fn log_position(&self, group_id: &str) -> Result<Option<LogPosition>, Error> {
        let row: Option<(i64, Vec<u8>, Option<String>)> = self
            .lock()
            .query_row(
                "SELECT log_seq, log_hash, log_instance FROM chats
                 WHERE group_id = ?1 AND log_seq IS NOT NULL AND log_hash IS NOT NULL",
                [group_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        Ok(row.and_then(|(seq, hash, instance_id)| {
            Some(LogPosition {
                seq: seq as u64,
                log_hash: hash.try_into().ok()?,
                instance_id,
            })
        }))
    }

    /// Records (or, with `None`, forgets) the chat's last hashed log position.
    pub fn set_log_position(
        &self,
        group_id: &str,
        position: Option<&LogPosition>,
    ) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE chats SET log_seq = ?2, log_hash = ?3, log_instance = ?4 WHERE group_id = ?1",
                params![
                    group_id,
                    position.map(|p| p.seq as i64),
                    position.map(|p| p.log_hash.to_vec()),
                    position.and_then(|p| p.instance_id.clone())
                ],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn chats(&self) -> Result<Vec<ChatRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT group_id, title, last_seq, removed, held FROM chats ORDER BY joined_at, group_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ChatRow {
                    group_id: r.get(0)?,
                    title: r.get(1)?,
                    last_seq: r.get::<_, i64>(2)? as u64,
                    removed: r.get::<_, i64>(3)? == 1,
                    held: r.get::<_, i64>(4)? == 1,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    pub fn chat(&self, group_id: &str) -> Result<Option<ChatRow>, Error> {
        Ok(self.chats()?.into_iter().find(|c| c.group_id == group_id))
    }

    /// Inserts a message once, sealed under a fresh key of its own; a second insert of the
    /// same id is ignored (exactly-once).
    pub fn add_message(&self, m: &MessageRow) -> Result<bool, Error> {
        let key = vellum_mls::at_rest::new_message_key();
        let body = vellum_mls::at_rest::seal(&key, &aad(&m.group_id, &m.id), m.text.as_bytes())
            .map_err(|e| Error::Store(e.to_string()))?;
        let salt = m
            .salt
            .map(|salt| vellum_mls::at_rest::seal(&key, &salt_aad(&m.group_id, &m.id), &salt))
            .transpose()
            .map_err(|e| Error::Store(e.to_string()))?;
        let event = m
            .event
            .as_ref()
            .map(|event| {
                let json = serde_json::to_vec(event).map_err(|e| Error::Store(e.to_string()))?;
                vellum_mls::at_rest::seal(&key, &event_aad(&m.group_id, &m.id), &json)
                    .map_err(|e| Error::Store(e.to_string()))
            })
            .transpose()?;
        let extra = seal_extra(&key, &m.group_id, &m.id, &m.extra)?;
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        let inserted = sp
            .execute(
                // Events and received messages wait to be shown by sync or watch; this
                // device's own sends (no log position yet) are not news to it, nor is the
                // state a chat was created or joined in (position 0: class, timers).
                "INSERT OR IGNORE INTO messages (group_id, id, kind, sender_user, sender_device, sent_at, received_at, seq, body, expires_at, burn_secs, read_at, burn_at, salt, event_json, extra_json, target, shown)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                         CASE WHEN ?8 = 0 THEN 1 WHEN ?3 = 'event' OR ?8 IS NOT NULL THEN 0 ELSE 1 END)",
                params![
                    m.group_id,
                    m.id,
                    m.kind.as_str(),
                    m.sender_user,
                    m.sender_device,
                    m.sent_at,
                    m.received_at,
                    m.seq.map(|s| s as i64),
                    body,
                    m.expires_at,
                    m.burn_secs.map(|s| s as i64),
                    m.read_at,
                    m.burn_at,
                    salt,
                    event,
                    extra,
                    m.event.as_ref().and_then(ChatEvent::target)
                ],
            )
            .map_err(db)?
            == 1;
        if inserted {
            sp.execute(
                "INSERT OR REPLACE INTO message_keys (group_id, id, key) VALUES (?1, ?2, ?3)",
                params![m.group_id, m.id, key.as_slice()],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)?;
        Ok(inserted)
    }

    /// Records the position the server gave a message this device sent. Not worth an
    /// fsync of its own (issue 13: a send's one durable commit is its ratchet step, history
    /// row and outbox entry): the next durable commit carries it, a process crash loses
    /// nothing in WAL mode, and if an OS crash does, the message is sent again under its id
    /// and the server answers with the same position.
    pub fn set_message_seq(&self, group_id: &str, id: &str, seq: u64) -> Result<(), Error> {
        let conn = self.lock();
        // Inside a caller's transaction its commit decides.
        let lazy = conn.is_autocommit();
        if lazy {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db)?;
        }
        let updated = conn
            .execute(
                "UPDATE messages SET seq = ?3 WHERE group_id = ?1 AND id = ?2",
                params![group_id, id, seq as i64],
            )
            .map(|_| ())
            .map_err(db);
        if lazy {
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(db)?;
        }
        updated
    }

    /// Ids of `device`'s text messages the server accepted at `seq` (or, with `and_later`,
    /// at `seq` or after), but `except`.
    pub fn own_messages_at(
        &self,
        group_id: &str,
        device: &str,
        seq: u64,
        and_later: bool,
        except: &str,
    ) -> Result<Vec<String>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id FROM messages WHERE group_id = ?1 AND id != ?3 AND kind = 'text'
                 AND sender_device = ?4 AND (seq = ?2 OR (?5 AND seq > ?2)) ORDER BY seq",
            )
            .map_err(db)?;
        let ids = stmt
            .query_map(
                params![group_id, seq as i64, except, device, and_later],
                |r| r.get(0),
            )
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        Ok(ids)
    }

    /// Marks a sent message as not accepted by the server, so it is sent again.
    pub fn unconfirm(&self, group_id: &str, id: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE messages SET seq = NULL WHERE group_id = ?1 AND id = ?2",
                params![group_id, id],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn message(&self, group_id: &str, id: &str) -> Result<Option<MessageRow>, Error> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN message_keys k USING (group_id, id) WHERE m.group_id = ?1 AND m.id = ?2"),
                params![group_id, id],
                read_message,
            )
            .optional()
            .map_err(db)?;
        Ok(row.flatten())
    }

    /// The chat's history, oldest first, as far as it is not shredded: its messages and
    /// events (reactions and edits are folded into their messages, see [`Self::about`]).
    pub fn history(&self, group_id: &str) -> Result<Vec<MessageRow>, Error> {
        self.query_messages("m.group_id = ?1 AND m.kind IN ('text', 'event')", group_id)
    }

    /// Up to `limit` messages and events of the chat just before `before` (from the newest
    /// when `None`), oldest first, in [`Self::history`]'s order; and the cursor of the page
    /// before this one, `None` when nothing older is left. Paged in SQL: a page of a long
    /// chat reads and opens only its own rows (issue 12).
    pub fn history_page(
        &self,
        group_id: &str,
        before: Option<&HistoryCursor>,
        limit: usize,
    ) -> Result<(Vec<MessageRow>, Option<HistoryCursor>), Error> {
        let limit = limit.max(1);
        let conn = self.lock();
        // Row values compare lexicographically, the index's order (rowid breaks ties).
        // Two statements, so that a later page starts at its cursor in the index instead of
        // walking down from the newest row.
        let after = match before {
            Some(_) => {
                "AND (COALESCE(m.seq, 9223372036854775807), m.sent_at, m.rowid) < (?2, ?3, ?4)"
            }
            None => "AND ?2 IS NULL AND ?3 IS NULL AND ?4 IS NULL",
        };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS}, COALESCE(m.seq, 9223372036854775807), m.rowid
                 FROM messages m LEFT JOIN message_keys k USING (group_id, id)
                 WHERE m.group_id = ?1 AND m.kind IN ('text', 'event') {after}
                 ORDER BY COALESCE(m.seq, 9223372036854775807) DESC, m.sent_at DESC, m.rowid DESC
                 LIMIT ?5"
            ))
            .map_err(db)?;
        let rows = stmt
            .query_map(
                params![
                    group_id,
                    before.map(|c| c.seq),
                    before.map(|c| c.sent_at),
                    before.map(|c| c.rowid),
                    (limit + 1) as i64
                ],
                |r| {
                    let cursor = HistoryCursor {
                        seq: r.get(18)?,
                        sent_at: r.get(5)?,
                        rowid: r.get(19)?,
                    };
                    Ok((read_message(r)?, cursor))
                },
            )
            .map_err(db)?;
        let mut raw = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)?;
        // One row more than asked says whether anything older is left; the cursor is the
        // oldest row of this page, whether or not its key is still here.
        let more = raw.len() > limit;
        raw.truncate(limit);
        let cursor = more.then(|| raw.last().map(|(_, c)| c.clone())).flatten();
        let mut page: Vec<MessageRow> = raw.into_iter().filter_map(|(m, _)| m).collect();
        page.reverse();
        Ok((page, cursor))
    }

    /// The chat's newest message or event, if any (the chat list's last line).
    pub fn last_message(&self, group_id: &str) -> Result<Option<MessageRow>, Error> {
        let mut before = None;
        // A row whose key is gone (shredded meanwhile) is skipped, a few at a time.
        loop {
            let (mut page, older) = self.history_page(group_id, before.as_ref(), 4)?;
            if let Some(m) = page.pop() {
                return Ok(Some(m));
            }
            match older {
                Some(c) => before = Some(c),
                None => return Ok(None),
            }
        }
    }

    /// The reaction and edit rows about message `target`, in log order. A window asks
    /// this for every message of a page: see [`ABOUT_FROM`].
    pub fn about(&self, group_id: &str, target: &str) -> Result<Vec<MessageRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m {ABOUT_FROM}"
            ))
            .map_err(db)?;
        let rows = stmt
            .query_map(params![group_id, target], read_message)
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(m) = row.map_err(db)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Replaces a text message's text with its newest version and records when it was
    /// edited, re-sealed under the message's own key. False if the message is not here.
    pub fn edit_message(
        &self,
        group_id: &str,
        id: &str,
        text: &str,
        edited_at: i64,
    ) -> Result<bool, Error> {
        let Some(message) = self.message(group_id, id)? else {
            return Ok(false);
        };
        let conn = self.lock();
        let key: Option<Vec<u8>> = conn
            .query_row(
                "SELECT key FROM message_keys WHERE group_id = ?1 AND id = ?2",
                params![group_id, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        let Some(key) = key.map(zeroize::Zeroizing::new) else {
            return Ok(false);
        };
        let body = vellum_mls::at_rest::seal(&key, &aad(group_id, id), text.as_bytes())
            .map_err(|e| Error::Store(e.to_string()))?;
        let extra = MessageExtra {
            edited_at: Some(edited_at),
            ..message.extra
        };
        let extra = seal_extra(&key, group_id, id, &extra)?;
        conn.execute(
            "UPDATE messages SET body = ?3, extra_json = ?4 WHERE group_id = ?1 AND id = ?2",
            params![group_id, id, body, extra],
        )
        .map_err(db)?;
        Ok(true)
    }

    /// Unread text messages per chat (those not displayed on this device yet). What `user`
    /// wrote (from this device or another of theirs) is never unread to them (issue 12).
    pub fn unread_counts(
        &self,
        user: &str,
    ) -> Result<std::collections::HashMap<String, u64>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT m.group_id, COUNT(*) FROM messages m JOIN message_keys k USING (group_id, id)
                 WHERE m.kind = 'text' AND m.read_at IS NULL AND m.sender_user != ?1
                 GROUP BY m.group_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([user], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// This device's text messages the server has not acknowledged (a send cut off by a lost
    /// connection or a crash), oldest first.
    pub fn unconfirmed(&self, device_id: &str) -> Result<Vec<MessageRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN message_keys k USING (group_id, id)
                 WHERE m.kind = 'text' AND m.seq IS NULL AND m.sender_device = ?1 ORDER BY m.sent_at, m.rowid"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([device_id], read_message).map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(m) = row.map_err(db)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Events and received messages no sync or watch has shown yet, in the order they were
    /// stored.
    pub fn unshown(&self) -> Result<Vec<MessageRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN message_keys k USING (group_id, id)
                 WHERE m.shown = 0 ORDER BY m.rowid"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([], read_message).map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(m) = row.map_err(db)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Leaves a row for the next sync or watch to show, though its log position (0: the
    /// state a chat was joined in) would not: a chat this device was added to (issue 10).
    pub fn mark_unshown(&self, group_id: &str, id: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE messages SET shown = 0 WHERE group_id = ?1 AND id = ?2",
                params![group_id, id],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// Marks rows as shown by sync or watch.
    pub fn mark_shown(&self, rows: &[MessageRow]) -> Result<(), Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        for m in rows {
            sp.execute(
                "UPDATE messages SET shown = 1 WHERE group_id = ?1 AND id = ?2 AND shown = 0",
                params![m.group_id, m.id],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)
    }

    /// Text messages of the chat not displayed on this device yet.
    pub fn unread(&self, group_id: &str) -> Result<Vec<MessageRow>, Error> {
        self.query_messages(
            "m.group_id = ?1 AND m.kind = 'text' AND m.read_at IS NULL",
            group_id,
        )
    }

    fn query_messages(&self, condition: &str, group_id: &str) -> Result<Vec<MessageRow>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN message_keys k USING (group_id, id)
                 WHERE {condition} ORDER BY COALESCE(m.seq, 9223372036854775807), m.sent_at, m.rowid"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([group_id], read_message).map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(m) = row.map_err(db)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Marks the chat's unread text messages displayed at `now`, starting their burn timers.
    pub fn mark_read(&self, group_id: &str, now: i64) -> Result<(), Error> {
        self.lock()
            .execute(
                "UPDATE messages SET read_at = ?2,
                     burn_at = CASE WHEN burn_secs IS NULL THEN NULL
                                    ELSE MIN(?2 + burn_secs * 1000, COALESCE(expires_at, 9223372036854775807)) END
                 WHERE group_id = ?1 AND kind = 'text' AND read_at IS NULL",
                params![group_id, now],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// Marks some text messages displayed at `now` (a search showed them), starting their
    /// burn timers as [`Self::mark_read`] does.
    pub fn mark_read_ids(&self, group_id: &str, ids: &[String], now: i64) -> Result<(), Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        for id in ids {
            sp.execute(
                "UPDATE messages SET read_at = ?3,
                     burn_at = CASE WHEN burn_secs IS NULL THEN NULL
                                    ELSE MIN(?3 + burn_secs * 1000, COALESCE(expires_at, 9223372036854775807)) END
                 WHERE group_id = ?1 AND id = ?2 AND kind = 'text' AND read_at IS NULL",
                params![group_id, id, now],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)
    }

    /// Raises what `user` has read up to in the chat (a marker never goes back).
    pub fn note_read_marker(&self, group_id: &str, user: &str, seq: u64) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT INTO read_markers (group_id, user, seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_id, user) DO UPDATE SET seq = MAX(seq, ?3)",
                params![group_id, user, seq as i64],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// The read marker this device last sent in the chat: (seq, when).
    pub fn read_sent(&self, group_id: &str) -> Result<Option<(u64, i64)>, Error> {
        self.lock()
            .query_row(
                "SELECT seq, sent_at FROM read_sent WHERE group_id = ?1",
                [group_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()
            .map_err(db)
    }

    pub fn set_read_sent(&self, group_id: &str, seq: u64, at: i64) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO read_sent (group_id, seq, sent_at) VALUES (?1, ?2, ?3)",
                params![group_id, seq as i64, at],
            )
            .map(|_| ())
            .map_err(db)
    }

    /// Replaces the chat's delivery state with the server's cursors.
    pub fn set_delivery(
        &self,
        group_id: &str,
        cursors: &[vellum_wire::DeviceCursor],
    ) -> Result<(), Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        sp.execute("DELETE FROM delivery WHERE group_id = ?1", [group_id])
            .map_err(db)?;
        for c in cursors {
            sp.execute(
                "INSERT OR REPLACE INTO delivery (group_id, user, device_id, acked_seq) VALUES (?1, ?2, ?3, ?4)",
                params![group_id, c.user, c.device_id, c.acked_seq as i64],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)
    }

    /// How many users other than `sender` (and the archive) have message `seq` on a device,
    /// and how many said they read it: (delivered, read).
    pub fn receipt_counts(
        &self,
        group_id: &str,
        seq: u64,
        sender: &str,
    ) -> Result<(u64, u64), Error> {
        let conn = self.lock();
        let count = |sql: &str| -> Result<u64, Error> {
            conn.query_row(
                sql,
                params![group_id, seq as i64, sender, vellum_wire::RECORDS_USER],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db)
        };
        let delivered = count(
            "SELECT COUNT(DISTINCT user) FROM delivery
             WHERE group_id = ?1 AND acked_seq >= ?2 AND user != ?3 AND user != ?4",
        )?;
        let read = count(
            "SELECT COUNT(*) FROM read_markers
             WHERE group_id = ?1 AND seq >= ?2 AND user != ?3 AND user != ?4",
        )?;
        Ok((delivered, read))
    }

    /// The newest `limit` text messages `user` sent in the chat that the server accepted:
    /// (id, seq), newest first. What a window watches for receipts.
    pub fn own_sent(
        &self,
        group_id: &str,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, seq FROM messages WHERE group_id = ?1 AND kind = 'text'
                 AND sender_user = ?2 AND seq IS NOT NULL ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![group_id, user, limit as i64], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// The newest position of a text message from another user that this device displayed.
    pub fn displayed_up_to(&self, group_id: &str, user: &str) -> Result<Option<u64>, Error> {
        self.lock()
            .query_row(
                "SELECT MAX(seq) FROM messages WHERE group_id = ?1 AND kind = 'text'
                 AND read_at IS NOT NULL AND sender_user != ?2",
                params![group_id, user],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|s| s.map(|s| s as u64))
            .map_err(db)
    }

    /// Remembers that `sender_user` deleted message `id` before it arrived here.
    pub fn add_tombstone(&self, group_id: &str, id: &str, sender_user: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO tombstones (group_id, id, sender_user) VALUES (?1, ?2, ?3)",
                params![group_id, id, sender_user],
            )
            .map(|_| ())
            .map_err(db)
    }

    pub fn is_tombstoned(
        &self,
        group_id: &str,
        id: &str,
        sender_user: &str,
    ) -> Result<bool, Error> {
        self.lock()
            .query_row(
                "SELECT 1 FROM tombstones WHERE group_id = ?1 AND id = ?2 AND sender_user = ?3",
                params![group_id, id, sender_user],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db)
    }

    /// Keeps a verified receipt of message `r.message_id` and marks the message archived at
    /// its leaf, in one savepoint; false if the message is not here (any more).
    pub fn add_receipt(&self, r: &StoredReceipt) -> Result<bool, Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        let marked = sp
            .execute(
                "UPDATE messages SET archived_leaf = ?3 WHERE group_id = ?1 AND id = ?2 AND kind = 'text'",
                params![r.group_id, r.message_id, r.leaf_index as i64],
            )
            .map_err(db)?
            == 1;
        if marked {
            sp.execute(
                "INSERT OR REPLACE INTO receipts (group_id, id, leaf_index, receipt, binding, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    r.group_id,
                    r.message_id,
                    r.leaf_index as i64,
                    r.receipt,
                    r.binding,
                    r.received_at
                ],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)?;
        Ok(marked)
    }

    /// The chat's kept receipts, in log order (or the one of message `id`).
    pub fn receipts(&self, group_id: &str, id: Option<&str>) -> Result<Vec<StoredReceipt>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT r.group_id, r.id, r.leaf_index, r.receipt, r.binding, r.received_at
                 FROM receipts r JOIN messages m USING (group_id, id)
                 WHERE r.group_id = ?1 AND (?2 IS NULL OR r.id = ?2) ORDER BY m.seq, r.leaf_index",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![group_id, id], |r| {
                Ok(StoredReceipt {
                    group_id: r.get(0)?,
                    message_id: r.get(1)?,
                    leaf_index: r.get::<_, i64>(2)? as u64,
                    receipt: r.get(3)?,
                    binding: r.get(4)?,
                    received_at: r.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// This device's text messages the server accepted before `sent_before` whose receipt
    /// has not come: (chat, count, oldest sent_at), per chat.
    pub fn awaiting_receipts(
        &self,
        device_id: &str,
        sent_before: i64,
    ) -> Result<Vec<(String, u64, i64)>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT group_id, COUNT(*), MIN(sent_at) FROM messages
                 WHERE kind = 'text' AND sender_device = ?1 AND seq IS NOT NULL
                   AND archived_leaf IS NULL AND sent_at < ?2
                 GROUP BY group_id ORDER BY group_id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![device_id, sent_before], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)
    }

    /// The next time the shredder has work, if any.
    pub fn next_due(&self) -> Result<Option<i64>, Error> {
        self.lock()
            .query_row(
                &format!(
                    "SELECT MIN(t) FROM (SELECT MIN(expires_at) AS t FROM messages WHERE {NOT_HELD}
                          UNION ALL SELECT MIN(burn_at) FROM messages WHERE {NOT_HELD})"
                ),
                [],
                |r| r.get(0),
            )
            .map_err(db)
    }

    /// Shreds every message whose expiration or burn time has come, but in chats a legal
    /// hold keeps (they are shredded once it is released).
    pub fn shred_due(&self, now: i64) -> Result<Vec<Shredded>, Error> {
        let due: Vec<Shredded> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT group_id, id, expires_at, burn_at FROM messages
                     WHERE (expires_at <= ?1 OR burn_at <= ?1) AND {NOT_HELD}"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map([now], |r| {
                    let expires_at: Option<i64> = r.get(2)?;
                    let burn_at: Option<i64> = r.get(3)?;
                    let expired = expires_at.filter(|t| *t <= now);
                    let burned = burn_at.filter(|t| *t <= now);
                    let (reason, due_at) = match (expired, burned) {
                        (Some(e), Some(b)) if b < e => (ShredReason::Burned, b),
                        (Some(e), _) => (ShredReason::Expired, e),
                        (None, Some(b)) => (ShredReason::Burned, b),
                        (None, None) => (ShredReason::Expired, now),
                    };
                    Ok(Shredded {
                        group_id: r.get(0)?,
                        id: r.get(1)?,
                        reason,
                        due_at,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        if !due.is_empty() {
            self.shred_rows(&due)?;
        }
        Ok(due)
    }

    /// Shreds rows that are not due (a reaction replaced by the same member's newer one).
    pub fn shred_ids(&self, group_id: &str, ids: &[String]) -> Result<(), Error> {
        let rows: Vec<Shredded> = ids
            .iter()
            .map(|id| Shredded {
                group_id: group_id.to_owned(),
                id: id.clone(),
                reason: ShredReason::Deleted,
                due_at: 0,
            })
            .collect();
        self.shred_rows(&rows)
    }

    /// Shreds one message now (delete for everyone). False if it was not here.
    pub fn shred(&self, group_id: &str, id: &str) -> Result<bool, Error> {
        let exists = self
            .lock()
            .query_row(
                "SELECT 1 FROM messages WHERE group_id = ?1 AND id = ?2",
                params![group_id, id],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some();
        if exists {
            self.shred_rows(&[Shredded {
                group_id: group_id.into(),
                id: id.into(),
                reason: ShredReason::Deleted,
                due_at: 0,
            }])?;
        }
        Ok(exists)
    }

    /// Destroys keys first, then rows; secure_delete zeroes their pages, and the WAL, which
    /// may hold older page images, is checkpointed and truncated to nothing.
    fn shred_rows(&self, rows: &[Shredded]) -> Result<(), Error> {
        let mut conn = self.lock();
        let sp = conn.savepoint().map_err(db)?;
        for r in rows {
            sp.execute(
                "DELETE FROM message_keys WHERE group_id = ?1 AND id = ?2",
                params![r.group_id, r.id],
            )
            .map_err(db)?;
            // A receipt's leaf commits to the text: it goes with the message.
            sp.execute(
                "DELETE FROM receipts WHERE group_id = ?1 AND id = ?2",
                params![r.group_id, r.id],
            )
            .map_err(db)?;
            sp.execute(
                "DELETE FROM messages WHERE group_id = ?1 AND id = ?2",
                params![r.group_id, r.id],
            )
            .map_err(db)?;
            // Its reactions and edits go with it (issue 10).
            sp.execute(
                "DELETE FROM message_keys WHERE group_id = ?1 AND id IN
                     (SELECT id FROM messages WHERE group_id = ?1 AND target = ?2)",
                params![r.group_id, r.id],
            )
            .map_err(db)?;
            sp.execute(
                "DELETE FROM messages WHERE group_id = ?1 AND target = ?2",
                params![r.group_id, r.id],
            )
            .map_err(db)?;
        }
        sp.commit().map_err(db)?;
        if conn.is_autocommit() {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(db)?;
        }
        drop(conn);
        // Files `download` saved for these messages go with them (issue 10).
        self.sweep_downloads()
    }

    /// Checkpoints and truncates the WAL: after a transaction that shredded, call this once
    /// it has committed.
    pub fn truncate_wal(&self) -> Result<(), Error> {
        self.lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db)
    }

    /// Remote wipe: every message through the shredder (keys first), then every other row
    /// (MLS secrets, key packages, the device and identity keys), zeroed by secure_delete,
    /// and the WAL emptied. The caller deletes the files afterwards; this makes sure that
    /// what the files held is gone even where a deleted file's blocks linger.
    pub fn wipe(&self) -> Result<(), Error> {
        // A transaction a failed operation left open would keep the WAL: its work is moot.
        if !self.lock().is_autocommit() {
            self.rollback();
        }
        let all: Vec<Shredded> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare("SELECT group_id, id FROM messages")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Shredded {
                        group_id: r.get(0)?,
                        id: r.get(1)?,
                        reason: ShredReason::Deleted,
                        due_at: 0,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        self.shred_rows(&all)?;
        let mut conn = self.lock();
        // Rows of every table, in any order: references no longer matter.
        conn.execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(db)?;
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .map_err(db)?
            .query_map([], |r| r.get(0))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        let tx = conn.transaction().map_err(db)?;
        for table in &tables {
            tx.execute(
                &format!("DELETE FROM \"{}\"", table.replace('"', "\"\"")),
                [],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db)
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

    fn text_row(group_id: &str, id: &str, seq: Option<u64>, sent_at: i64) -> MessageRow {
        MessageRow {
            group_id: group_id.into(),
            id: id.into(),
            kind: MessageKind::Text,
            sender_user: "alice".into(),
            sender_device: "d".into(),
            sent_at,
            received_at: sent_at,
            seq,
            text: format!("text of {id}"),
            expires_at: None,
            burn_secs: None,
            read_at: None,
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: None,
            extra: MessageExtra::default(),
        }
    }

    /// Issue 12: a message the user wrote (on this device or another of theirs) is never
    /// unread to them; others' messages are until displayed.
    #[test]
    fn issue_12_own_messages_never_count_as_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        store.add_message(&text_row("g", "a1", Some(1), 1)).unwrap();
        let from_bob = MessageRow {
            sender_user: "bob".into(),
            ..text_row("g", "b1", Some(2), 2)
        };
        store.add_message(&from_bob).unwrap();
        assert_eq!(store.unread_counts("alice").unwrap()["g"], 1);
        assert_eq!(store.unread_counts("bob").unwrap()["g"], 1);
        store.mark_read_ids("g", &["b1".into()], 3).unwrap();
        assert_eq!(store.unread_counts("alice").unwrap().get("g"), None);
    }

    /// Issue 12: the window pages a long chat in SQL, in `history`'s order, and the pages
    /// put together are the whole history once.
    #[test]
    fn issue_12_history_pages_cover_the_history_in_order_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", Some("t"), 0).unwrap();
        store.add_chat("other", Some("o"), 0).unwrap();
        for i in 0..25u64 {
            store
                .add_message(&text_row("g", &format!("m{i:02}"), Some(i + 1), i as i64))
                .unwrap();
            store
                .add_message(&text_row("other", &format!("o{i}"), Some(i + 1), 0))
                .unwrap();
        }
        // Not accepted by the server yet: sorts last, as in `history`.
        store
            .add_message(&text_row("g", "pending", None, 1))
            .unwrap();
        let whole: Vec<String> = store
            .history("g")
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(whole.len(), 26);
        assert_eq!(whole.last().map(String::as_str), Some("pending"));

        let mut pages = Vec::new();
        let mut before: Option<HistoryCursor> = None;
        loop {
            let (page, older) = store.history_page("g", before.as_ref(), 10).unwrap();
            assert!(page.len() <= 10);
            pages.push(page.into_iter().map(|m| m.id).collect::<Vec<_>>());
            match older {
                // The cursor survives its trip through the page as a string.
                Some(c) => before = Some(c.to_string().parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(pages.len(), 3);
        let joined: Vec<String> = pages.into_iter().rev().flatten().collect();
        assert_eq!(joined, whole);
        assert_eq!(
            store.last_message("g").unwrap().map(|m| m.id).as_deref(),
            Some("pending")
        );
        assert!(store.last_message("none").unwrap().is_none());
        assert!("1.2".parse::<HistoryCursor>().is_err());
        assert!("1.2.x".parse::<HistoryCursor>().is_err());
    }

    /// Issue 12: a page of a 10,000-message chat is read without reading the chat.
    #[test]
    fn issue_12_a_page_of_ten_thousand_messages_uses_the_page_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", Some("t"), 0).unwrap();
        store.begin().unwrap();
        for i in 0..10_000u64 {
            store
                .add_message(&text_row("g", &format!("m{i}"), Some(i + 1), i as i64))
                .unwrap();
        }
        store.commit().unwrap();
        let (page, older) = store.history_page("g", None, 50).unwrap();
        let (second, _) = store.history_page("g", older.as_ref(), 50).unwrap();
        assert_eq!(page.last().map(|m| m.id.as_str()), Some("m9999"));
        assert_eq!(second.last().map(|m| m.id.as_str()), Some("m9949"));
        let plan: Vec<String> = {
            let conn = store.lock();
            let mut stmt = conn
                .prepare(
                    "EXPLAIN QUERY PLAN SELECT m.id FROM messages m WHERE m.group_id = 'g' AND m.kind IN ('text', 'event')
                     AND (COALESCE(m.seq, 9223372036854775807), m.sent_at, m.rowid) < (50, 0, 0)
                     ORDER BY COALESCE(m.seq, 9223372036854775807) DESC, m.sent_at DESC, m.rowid DESC LIMIT 51",
                )
                .unwrap();
            stmt.query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(plan.iter().any(|p| p.contains("messages_page")), "{plan:?}");
        // A message's reactions are found by their target, not by walking the chat (a page
        // of 50 asks 50 times).
        assert!(store.about("g", "m5").unwrap().is_empty());
        let about: Vec<String> = {
            let conn = store.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT m.id FROM messages m {ABOUT_FROM}"
                ))
                .unwrap();
            stmt.query_map(params!["g", "m5"], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(
            about.iter().any(|p| p.contains("messages_by_target")),
            "{about:?}"
        );
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
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
            kind: MessageKind::Text,
            sender_user: "alice".into(),
            sender_device: "d".into(),
            sent_at: 1,
            received_at: 2,
            seq: Some(3),
            text: "hi".into(),
            expires_at: None,
            burn_secs: None,
            read_at: None,
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: None,
            extra: MessageExtra::default(),
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

#[cfg(test)]
mod shredding {
    use super::*;

    fn message(
        id: &str,
        text: &str,
        expires_at: Option<i64>,
        burn_secs: Option<u64>,
    ) -> MessageRow {
        MessageRow {
            group_id: "g".into(),
            id: id.into(),
            kind: MessageKind::Text,
            sender_user: "alice".into(),
            sender_device: "d".into(),
            sent_at: 0,
            received_at: 0,
            seq: None,
            text: text.into(),
            expires_at,
            burn_secs,
            read_at: None,
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: None,
            extra: MessageExtra::default(),
        }
    }

    fn file_contains(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        })
    }

    #[test]
    fn text_is_sealed_at_rest_and_shredding_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        store
            .add_message(&message("m1", "MARKER-sealed-at-rest", Some(1_000), None))
            .unwrap();
        store
            .add_message(&message("m2", "MARKER-still-alive", Some(9_000), None))
            .unwrap();
        assert!(
            !file_contains(dir.path(), b"MARKER-sealed-at-rest"),
            "no plaintext in any file"
        );
        assert_eq!(store.history("g").unwrap().len(), 2);

        assert!(store.shred_due(999).unwrap().is_empty());
        let shredded = store.shred_due(1_000).unwrap();
        assert_eq!(shredded.len(), 1);
        assert_eq!(
            (
                shredded[0].id.as_str(),
                shredded[0].reason,
                shredded[0].due_at
            ),
            ("m1", ShredReason::Expired, 1_000)
        );
        let left: Vec<String> = store
            .history("g")
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(left, vec!["MARKER-still-alive"]);
        let keys: i64 = store
            .lock()
            .query_row("SELECT COUNT(*) FROM message_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 1, "the shredded message's key is gone");
        assert_eq!(
            std::fs::metadata(dir.path().join("vellum.db-wal"))
                .unwrap()
                .len(),
            0,
            "the WAL was truncated"
        );
    }

    #[test]
    fn issue_9_typed_events_are_sealed_at_rest_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        let added = ChatEvent::MemberAdded {
            by: "alice".into(),
            user: "MARKER-carol".into(),
        };
        let typed = MessageRow {
            kind: MessageKind::Event,
            event: Some(added.clone()),
            ..message("e1", &added.text(), None, None)
        };
        store.add_message(&typed).unwrap();
        // A row without its typed event (as written before V6) reads as a notice.
        let untyped = MessageRow {
            kind: MessageKind::Event,
            ..message(
                "e2",
                "alice set messages to disappear after 1 day",
                Some(1_000),
                None,
            )
        };
        store.add_message(&untyped).unwrap();
        assert!(
            !file_contains(dir.path(), b"MARKER-carol"),
            "neither the sentence nor the typed event is plaintext in any file"
        );
        let history = store.history("g").unwrap();
        assert_eq!(history[0], typed);
        assert_eq!(
            history[1].event,
            Some(ChatEvent::Notice {
                text: "alice set messages to disappear after 1 day".into()
            })
        );
        // Event rows expire as they did before (their own `expires_at`), typed or not.
        assert_eq!(store.shred_due(1_000).unwrap().len(), 1);
        assert_eq!(store.history("g").unwrap(), vec![typed]);
    }

    #[test]
    fn issue_10_message_extras_are_sealed_at_rest_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        let extra = MessageExtra {
            reply_to: Some("parent".into()),
            mentions: vec!["MARKER-mentioned".into()],
            attachments: vec![vellum_wire::AttachmentRef {
                blob: "b1".into(),
                name: "MARKER-file-name.pdf".into(),
                size: 3,
                sha256: "00".repeat(32),
                mime: "application/pdf".into(),
                key: "a2V5".into(),
                nonce: "bm9uY2U=".into(),
                chunk_size: 65536,
            }],
            edited_at: Some(7),
        };
        let rich = MessageRow {
            extra: extra.clone(),
            ..message("m1", "with extras", Some(1_000), None)
        };
        store.add_message(&rich).unwrap();
        store
            .add_message(&message("m2", "plain", None, None))
            .unwrap();
        for marker in [&b"MARKER-mentioned"[..], b"MARKER-file-name"] {
            assert!(
                !file_contains(dir.path(), marker),
                "the extra is not plaintext in any file"
            );
        }
        let history = store.history("g").unwrap();
        assert_eq!(history[0].extra, extra);
        assert!(history[1].extra.is_empty());
        let stored: Option<Vec<u8>> = store
            .lock()
            .query_row("SELECT extra_json FROM messages WHERE id = 'm2'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            stored, None,
            "nothing is stored for a message without extras"
        );
        // Shredded with its message.
        store.shred_due(1_000).unwrap();
        let left: i64 = store
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE extra_json IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn burn_starts_on_first_display_and_never_outlives_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        store
            .add_message(&message("short", "a", Some(100_000), Some(10)))
            .unwrap();
        store
            .add_message(&message("capped", "b", Some(5_000), Some(60)))
            .unwrap();
        store
            .add_message(&message("no-burn", "c", None, None))
            .unwrap();
        assert_eq!(store.next_due().unwrap(), Some(5_000));
        assert_eq!(store.unread("g").unwrap().len(), 3);
        store.mark_read("g", 1_000).unwrap();
        assert!(store.unread("g").unwrap().is_empty());
        let by_id = |id: &str| store.message("g", id).unwrap().unwrap();
        assert_eq!(by_id("short").burn_at, Some(11_000));
        assert_eq!(
            by_id("capped").burn_at,
            Some(5_000),
            "burn never extends past expiry"
        );
        assert_eq!(by_id("no-burn").burn_at, None);
        // A second display does not restart the timer.
        store.mark_read("g", 4_000).unwrap();
        assert_eq!(by_id("short").burn_at, Some(11_000));
        let burned = store.shred_due(11_000).unwrap();
        let reasons: Vec<(String, ShredReason)> =
            burned.into_iter().map(|s| (s.id, s.reason)).collect();
        assert!(reasons.contains(&("short".into(), ShredReason::Burned)));
        assert!(reasons.contains(&("capped".into(), ShredReason::Expired)));
        assert_eq!(store.history("g").unwrap().len(), 1);
    }

    #[test]
    fn issue8_a_held_chat_keeps_its_messages_until_the_hold_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        store.add_chat("other", None, 0).unwrap();
        store
            .add_message(&message("expiring", "a", Some(5_000), Some(1)))
            .unwrap();
        store
            .add_message(&MessageRow {
                group_id: "other".into(),
                ..message("elsewhere", "b", Some(1_000), None)
            })
            .unwrap();
        store.mark_read("g", 0).unwrap();
        store.set_held("g", true).unwrap();
        assert!(store.chat("g").unwrap().unwrap().held);
        assert!(!store.chat("other").unwrap().unwrap().held);
        let shredded = store.shred_due(50_000).unwrap();
        assert_eq!(
            shredded.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec!["elsewhere"],
            "neither expiry nor burn touches the held chat"
        );
        assert_eq!(store.next_due().unwrap(), None, "nothing is due while held");
        assert_eq!(store.history("g").unwrap().len(), 1);
        store.set_held("g", false).unwrap();
        assert_eq!(store.next_due().unwrap(), Some(1_000));
        let shredded = store.shred_due(50_000).unwrap();
        assert_eq!(
            (shredded[0].id.as_str(), shredded[0].reason),
            ("expiring", ShredReason::Burned),
            "released: the timers run again"
        );
        assert!(store.history("g").unwrap().is_empty());
    }

    #[test]
    fn tombstones_are_per_chat_message_and_sender() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_tombstone("g", "m1", "alice").unwrap();
        assert!(store.is_tombstoned("g", "m1", "alice").unwrap());
        assert!(
            !store.is_tombstoned("g", "m1", "bob").unwrap(),
            "only the sender's delete counts"
        );
        assert!(!store.is_tombstoned("h", "m1", "alice").unwrap());
        assert!(!store.is_tombstoned("g", "m2", "alice").unwrap());
    }

    #[test]
    fn a_message_whose_key_is_gone_cannot_be_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.add_chat("g", None, 0).unwrap();
        store
            .add_message(&message("m", "MARKER-keyless", None, None))
            .unwrap();
        store
            .lock()
            .execute("DELETE FROM message_keys", [])
            .unwrap();
        assert!(
            store.history("g").unwrap().is_empty(),
            "without its key the body is noise"
        );
        assert!(store.shred("g", "m").unwrap());
        assert!(!store.shred("g", "m").unwrap());
    }
}
