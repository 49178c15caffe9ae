//! Retention schedules, legal holds and disposition.
//!
//! `DATA/schedules.json` names schedules (a duration, or `null` for permanent) and assigns
//! them per chat (id or title) and per user (a user's role); everything else takes the
//! default. Holds are leaves of the log (`hold` / `release`), so their whole history is
//! public to auditors; a record under any active hold is never disposed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vellum_archive::{Archive, Leaf};
use vellum_record::api::Hold;
use vellum_record::Record;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedules {
    /// Name → retention (30d, 7w; `null`: permanent).
    pub schedules: BTreeMap<String, Option<String>>,
    pub default_schedule: String,
    /// User (role) → schedule.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Chat id or title → schedule; wins over the user's.
    #[serde(default)]
    pub chats: BTreeMap<String, String>,
}

impl Default for Schedules {
    fn default() -> Self {
        let schedules = [
            ("capstone", None),
            ("default", Some("2555d")),
            ("transitory", Some("180d")),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_owned(), d.map(str::to_owned)))
        .collect();
        Self {
            schedules,
            default_schedule: "default".into(),
            users: BTreeMap::new(),
            chats: BTreeMap::new(),
        }
    }
}

impl Schedules {
    /// Reads `path`, writing the defaults there first if it does not exist.
    pub fn load(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            let defaults = Self::default();
            let text = serde_json::to_string_pretty(&defaults).expect("schedules serialise");
            vellum_archive::write_atomic(path, (text + "\n").as_bytes(), 0o644)
                .map_err(|e| e.to_string())?;
            return Ok(defaults);
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let schedules: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        schedules
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(schedules)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, retention) in &self.schedules {
            if let Some(r) = retention {
                vellum_wire::timer::parse_duration(r)
                    .map_err(|e| format!("schedule {name}: {e}"))?;
            }
        }
        for name in [&self.default_schedule]
            .into_iter()
            .chain(self.users.values())
            .chain(self.chats.values())
        {
            if !self.schedules.contains_key(name) {
                return Err(format!("no schedule named {name:?}"));
            }
        }
        Ok(())
    }

    /// The schedule a record falls under, and its retention in ms (`None`: permanent).
    pub fn for_event(&self, e: &Record) -> (String, Option<i64>) {
        // The chat id first: a title is whatever a member last set.
        let name = self
            .chats
            .get(&e.chat_id)
            .or_else(|| e.chat_title.as_ref().and_then(|t| self.chats.get(t)))
            .or_else(|| self.users.get(&e.sender_user))
            .unwrap_or(&self.default_schedule)
            .clone();
        let retention = self
            .schedules
            .get(&name)
            .cloned()
            .flatten()
            .and_then(|r| vellum_wire::timer::parse_duration(&r).ok())
            .map(|secs| secs as i64 * 1000);
        (name, retention)
    }
}

/// When a record's retention starts counting: the latest of the sender's clock, the
/// server's receipt and the archive's ingest (`archived_at`), so that no clock, the
/// sender's least of all, can shorten how long it is kept.
pub fn retention_start(e: &Record, archived_at: i64) -> i64 {
    e.sent_at.max(e.received_at).max(archived_at)
}

/// The users that holds in force name as their custodian, sorted, once each: the delivery
/// server suspends the timers of (or converts) their transitory chats.
pub fn held_users(holds: &[Hold]) -> Vec<String> {
    let users: std::collections::BTreeSet<String> =
        holds.iter().filter_map(|h| h.custodian.clone()).collect();
    users.into_iter().collect()
}

/// The holds in force: every `hold` leaf not followed by a `release` of its name. Any leaf
/// that cannot be read is an error: a hold must never be missed.
pub fn active_holds(archive: &Archive) -> Result<Vec<Hold>, vellum_archive::Error> {
    let mut holds: BTreeMap<String, Hold> = BTreeMap::new();
    for index in 0..archive.size() {
        match archive.leaf(index)? {
            Leaf::Hold {
                name,
                custodian,
                chat,
                from,
                to,
                ..
            } => {
                holds.insert(
                    name.clone(),
                    Hold {
                        name,
                        custodian,
                        chat,
                        from,
                        to,
                    },
                );
            }
            Leaf::Release { name, .. } => {
                holds.remove(&name);
            }
            _ => {}
        }
    }
    Ok(holds.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_record::{Member, RecordKind};

    fn event(
        chat_id: &str,
        title: Option<&str>,
        sender: &str,
        sent_at: i64,
        received_at: i64,
    ) -> Record {
        Record {
            version: vellum_record::FORMAT_VERSION,
            chat_id: chat_id.into(),
            chat_title: title.map(Into::into),
            seq: 1,
            kind: RecordKind::Message,
            message_id: None,
            sender_user: sender.into(),
            sender_device: "d".into(),
            recipients: vec![Member {
                user: "bob".into(),
                device_id: "b1".into(),
            }],
            sent_at,
            received_at,
            text: None,
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: None,
            reply_to: None,
            mentions: Vec::new(),
            target: None,
            remove: false,
        }
    }

    #[test]
    fn defaults_are_written_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedules.json");
        let defaults = Schedules::load(&path).unwrap();
        assert_eq!(defaults.schedules["capstone"], None);
        assert_eq!(
            Schedules::load(&path).unwrap().default_schedule,
            "default",
            "written once, read back"
        );
        for bad in [
            "not json",
            r#"{"schedules":{"a":"10x"},"default_schedule":"a"}"#,
            r#"{"schedules":{"a":"1d"},"default_schedule":"b"}"#,
            r#"{"schedules":{"a":"1d"},"default_schedule":"a","users":{"alice":"nope"}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(Schedules::load(&path).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_id_wins_then_title_then_user_then_default() {
        let mut s = Schedules::default();
        s.chats.insert("id-1".into(), "capstone".into());
        s.chats.insert("ops".into(), "transitory".into());
        s.users.insert("alice".into(), "capstone".into());
        assert_eq!(
            s.for_event(&event("id-1", Some("ops"), "carol", 0, 0)),
            ("capstone".into(), None)
        );
        assert_eq!(
            s.for_event(&event("id-2", Some("ops"), "alice", 0, 0)).0,
            "transitory"
        );
        assert_eq!(
            s.for_event(&event("id-2", None, "alice", 0, 0)).0,
            "capstone"
        );
        assert_eq!(
            s.for_event(&event("id-2", None, "carol", 0, 0)),
            ("default".into(), Some(2555 * 86_400_000))
        );
    }

    #[test]
    fn issue8_retention_counts_from_the_latest_clock() {
        // A sender who backdates, or an archiver that took a message in late, never
        // shortens how long it is kept.
        assert_eq!(retention_start(&event("c", None, "a", 10, 20), 30), 30);
        assert_eq!(retention_start(&event("c", None, "a", 10, 40), 30), 40);
        assert_eq!(retention_start(&event("c", None, "a", 50, 40), 30), 50);
    }

    #[test]
    fn issue8_held_users_are_the_custodians_of_holds_in_force() {
        let hold = |name: &str, custodian: Option<&str>| Hold {
            name: name.into(),
            custodian: custodian.map(Into::into),
            chat: None,
            from: None,
            to: None,
        };
        assert_eq!(
            held_users(&[
                hold("a", Some("bob")),
                hold("b", None),
                hold("c", Some("alice")),
                hold("d", Some("bob")),
            ]),
            vec!["alice".to_string(), "bob".to_string()]
        );
        assert!(held_users(&[hold("chat-only", None)]).is_empty());
    }

    #[test]
    fn holds_match_custodian_chat_and_either_clock() {
        let hold = Hold {
            name: "h".into(),
            custodian: Some("bob".into()),
            chat: Some("ops".into()),
            from: Some(100),
            to: Some(200),
        };
        assert!(
            hold.covers(&event("id", Some("ops"), "alice", 150, 150), 150),
            "bob is a recipient"
        );
        assert!(
            hold.covers(&event("id", Some("ops"), "alice", 0, 150), 150),
            "a sender's false clock does not escape"
        );
        assert!(!hold.covers(&event("id", Some("ops"), "alice", 0, 300), 300));
        assert!(!hold.covers(&event("id", Some("other"), "alice", 150, 150), 150));
        let mut nobody = event("id", Some("ops"), "alice", 150, 150);
        nobody.recipients.clear();
        assert!(
            !hold.covers(&nobody, 150),
            "not the custodian's communication"
        );
    }
}
