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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
                parse_keep(r).map_err(|e| format!("schedule {name}: {e}"))?;
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
            .and_then(|r| parse_keep(&r).ok());
        (name, retention)
    }

    /// Defines (or redefines) schedule `name`: keep records `keep` (`7y`, `180d`, `26w`), or
    /// `permanent` (transfer to the National Archives, never disposed here).
    pub fn define(&mut self, name: &str, keep: &str) -> Result<(), String> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err("a schedule name is 1 to 64 characters, without control characters".into());
        }
        let keep = keep.trim();
        let retention = if keep == "permanent" {
            None
        } else {
            parse_keep(keep)?;
            Some(keep.to_owned())
        };
        self.schedules.insert(name.to_owned(), retention);
        Ok(())
    }

    /// Puts chat (id or title) or user `subject` under schedule `name`.
    pub fn assign(&mut self, subject: Subject, name: &str) -> Result<(), String> {
        if !self.schedules.contains_key(name) {
            return Err(format!(
                "no schedule named {name:?} (define it first: schedule define {name} --keep 7y)"
            ));
        }
        match subject {
            Subject::Chat(chat) => self.chats.insert(chat, name.to_owned()),
            Subject::User(user) => self.users.insert(user, name.to_owned()),
        };
        Ok(())
    }

    /// Writes the schedules to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).expect("schedules serialise");
        vellum_archive::write_atomic(path, (text + "\n").as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What a schedule is assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Chat(String),
    User(String),
}

/// A retention period in ms: `N` and one unit of `d`, `w` or `y` (365 days), or the shorter
/// units of timers (`s`, `m`, `h`) for tests and transitory material.
pub fn parse_keep(text: &str) -> Result<i64, String> {
    let bad =
        || format!("invalid retention {text:?}: a number and a unit (180d, 26w, 7y), or permanent");
    if let Some(years) = text.strip_suffix('y') {
        if years.is_empty() || years.len() > 4 || !years.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let years: i64 = years.parse().map_err(|_| bad())?;
        if years == 0 {
            return Err(bad());
        }
        return Ok(years * 365 * 86_400_000);
    }
    let days = text
        .strip_suffix('d')
        .filter(|d| !d.is_empty() && d.len() <= 6 && d.bytes().all(|b| b.is_ascii_digit()));
    if let Some(days) = days {
        let days: i64 = days.parse().map_err(|_| bad())?;
        if days == 0 {
            return Err(bad());
        }
        return Ok(days * 86_400_000);
    }
    vellum_wire::timer::parse_duration(text)
        .map(|secs| secs as i64 * 1000)
        .map_err(|_| bad())
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
    let users: std::collections::BTreeSet<String> = holds
        .iter()
        .flat_map(|h| h.custodians.iter().cloned())
        .collect();
    users.into_iter().collect()
}

/// The holds in force: every `hold` leaf not followed by a `release` of its name. Any leaf
/// that cannot be read is an error: a hold must never be missed.
pub fn active_holds(archive: &Archive) -> Result<Vec<Hold>, vellum_archive::Error> {
    let mut holds: BTreeMap<String, Hold> = BTreeMap::new();
    for index in 0..archive.size() {
        match archive.leaf(index)? {
            Leaf::Hold {
                time,
                name,
                custodian,
                chat,
                from,
                to,
                custodians,
                chats,
                reason,
                author,
            } => {
                // A hold from before issue 11 named at most one of each.
                let custodians = custodian.into_iter().chain(custodians).collect();
                let chats = chat.into_iter().chain(chats).collect();
                holds.insert(
                    name.clone(),
                    Hold {
                        name,
                        custodians,
                        chats,
                        from,
                        to,
                        reason,
                        author,
                        placed_at: Some(time),
                        records: None,
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
    fn issue_11_schedules_are_defined_assigned_and_checked() {
        assert_eq!(parse_keep("7y").unwrap(), 7 * 365 * 86_400_000);
        assert_eq!(parse_keep("2555d").unwrap(), 2555 * 86_400_000);
        assert_eq!(parse_keep("26w").unwrap(), 26 * 7 * 86_400_000);
        assert_eq!(parse_keep("90s").unwrap(), 90_000);
        for bad in [
            "",
            "y",
            "0y",
            "-1d",
            "7 y",
            "7years",
            "1.5y",
            "permanent",
            "99999y",
        ] {
            assert!(parse_keep(bad).is_err(), "{bad}");
        }
        let mut s = Schedules::default();
        s.define("litigation", "permanent").unwrap();
        s.define("short", "30d").unwrap();
        assert!(s.define("bad", "forever").is_err());
        assert!(s.define("", "1d").is_err());
        s.assign(Subject::Chat("ops".into()), "short").unwrap();
        s.assign(Subject::User("alice".into()), "litigation")
            .unwrap();
        assert!(s.assign(Subject::User("bob".into()), "nope").is_err());
        s.validate().unwrap();
        let e = event("id", Some("ops"), "alice", 1, 1);
        assert_eq!(s.for_event(&e), ("short".into(), Some(30 * 86_400_000)));
        let elsewhere = event("id", Some("other"), "alice", 1, 1);
        assert_eq!(s.for_event(&elsewhere), ("litigation".into(), None));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedules.json");
        s.save(&path).unwrap();
        assert_eq!(Schedules::load(&path).unwrap(), s);
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
            custodians: custodian.into_iter().map(Into::into).collect(),
            chats: Vec::new(),
            from: None,
            to: None,
            reason: None,
            author: None,
            placed_at: None,
            records: None,
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
            custodians: vec!["bob".into()],
            chats: vec!["ops".into()],
            from: Some(100),
            to: Some(200),
            reason: None,
            author: None,
            placed_at: None,
            records: None,
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
