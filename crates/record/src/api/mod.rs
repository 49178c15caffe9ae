//! The records API's request and response types (the archiver serves them on loopback; the
//! `vellum records` commands and the demo call them).

use serde::{Deserialize, Serialize};

use crate::Record;

pub mod foia;
pub mod office;
pub mod search;

/// `GET /v1/status` (also the answer to unseal and seal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    pub sealed: bool,
    pub shares_received: usize,
    pub shares_needed: usize,
    pub log_size: u64,
    pub records: u64,
    pub checkpoint_size: Option<u64>,
    /// Why the archiver is not archiving ("paused: the archive's disk is full: PATH"); absent
    /// while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// The serial of the custodians' newest binding of this archiver (its device, identity,
    /// log key, origin and witnesses) to the records key; absent until k custodians first
    /// unseal it. Record chats cannot be created before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_serial: Option<u64>,
    /// Whether the delivery server holds that binding (devices learn it from there).
    #[serde(default)]
    pub binding_on_server: bool,
}

/// `POST /v1/unseal`: one custodian's share file.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnsealRequest {
    pub share: String,
}

/// `GET /v1/search` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)] // a misspelt filter must not silently match everything
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
    pub chat: Option<String>,
    pub participant: Option<String>,
    /// Unix ms, inclusive, of the delivery server's receipt time: the sender's clock is the
    /// sender's to set, so it never decides whether a search finds a record.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl SearchQuery {
    pub fn matches(&self, e: &Record) -> bool {
        let text_hit = self.q.is_empty()
            || e.text
                .as_deref()
                .is_some_and(|t| t.to_lowercase().contains(&self.q.to_lowercase()));
        let chat_hit = self
            .chat
            .as_deref()
            .is_none_or(|c| c == e.chat_id || e.chat_title.as_deref() == Some(c));
        let who_hit = self
            .participant
            .as_deref()
            .is_none_or(|u| e.sender_user == u || e.recipients.iter().any(|r| r.user == u));
        let when = e.received_at;
        text_hit
            && chat_hit
            && who_hit
            && self.from.is_none_or(|f| when >= f)
            && self.to.is_none_or(|t| when <= t)
    }
}

/// One search result: the record and its leaf.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hit {
    pub leaf: u64,
    /// The record (see the record format).
    #[schema(value_type = Object)]
    pub event: Record,
}

/// `POST /v1/dispose`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DisposeRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// A record past its retention period: disposed, or kept by a hold.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Disposal {
    pub leaf: u64,
    pub chat_id: String,
    pub chat_title: Option<String>,
    pub schedule: String,
    pub held_by: Option<String>,
    pub disposed: bool,
}

/// A legal hold in force: every record matching all of its criteria is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    pub name: String,
    /// The people whose records are held (their e-discovery custodians): a record any of
    /// them sent or received. Empty: everyone's.
    #[serde(default)]
    pub custodians: Vec<String>,
    /// The chats held (id or title): a record of any of them. Empty: every chat.
    #[serde(default)]
    pub chats: Vec<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Why (the matter, the request); absent on holds placed before it was asked.
    #[serde(default)]
    pub reason: Option<String>,
    /// The account that placed it.
    #[serde(default)]
    pub author: Option<String>,
    /// When it was placed, Unix ms.
    #[serde(default)]
    pub placed_at: Option<i64>,
    /// How many records it keeps; known only while the archive is unsealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

impl Hold {
    /// Whether the hold keeps record `e`, which the archive took in at `archived_at` (its
    /// leaf's time, Unix ms).
    pub fn covers(&self, e: &Record, archived_at: i64) -> bool {
        // Any clock in range puts a record under the hold: the sender's (the sender's to
        // set), the server's receipt and the archive's ingest; a hold errs on the side of
        // keeping.
        let in_range =
            |when: i64| self.from.is_none_or(|f| when >= f) && self.to.is_none_or(|t| when <= t);
        (self.custodians.is_empty()
            || self
                .custodians
                .iter()
                .any(|u| e.sender_user == *u || e.recipients.iter().any(|r| r.user == *u)))
            && (self.chats.is_empty()
                || self
                    .chats
                    .iter()
                    .any(|c| *c == e.chat_id || e.chat_title.as_deref() == Some(c.as_str())))
            && [e.sent_at, e.received_at, archived_at]
                .into_iter()
                .any(in_range)
    }
}

/// `POST /v1/holds`: place a hold. Dates are RFC 3339 with any offset or plain dates in the
/// office's time zone (`from` a day's first instant, `to` its last).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub name: String,
    #[serde(default)]
    pub custodians: Vec<String>,
    #[serde(default)]
    pub chats: Vec<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/schedules`: define or redefine a retention schedule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineSchedule {
    pub name: String,
    /// `7y`, `180d`, `26w`, or `permanent`.
    pub keep: String,
}

/// `POST /v1/schedules/assign`: put a chat (id or title) or a user under a schedule; exactly
/// one of `chat` and `user`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSchedule {
    #[serde(default)]
    pub chat: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub schedule: String,
}

/// `GET /v1/chats`: which chats the archive holds and which it does not.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatClasses {
    /// Record chats the archiver is or was in: archived in full.
    pub record: Vec<RecordChat>,
    /// Transitory chats: not archived; the delivery server's metadata only (members and
    /// timers, no title). Absent until the archiver has asked the server.
    pub transitory: Option<vellum_wire::TransitoryChats>,
    /// When the server was last asked (Unix ms).
    pub transitory_as_of: Option<i64>,
}

/// A record chat by id, with its title as the archive last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordChat {
    pub id: String,
    pub title: Option<String>,
}

/// `GET /v1/audit` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// From this date (the office's day) or RFC 3339 time.
    pub from: Option<String>,
    /// At most this many entries, newest first (default 1,000, at most 10,000).
    pub limit: Option<u32>,
}

/// One entry of the audit trail: a leaf of the log that is not a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub leaf: u64,
    /// Unix ms.
    pub time: i64,
    /// `access`, `hold`, `release` or `disposition`.
    pub kind: String,
    /// For an access: what was done (`search`, `unseal`, `account`…).
    pub action: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, RecordKind, FORMAT_VERSION};

    fn message(sent_at: i64, received_at: i64) -> Record {
        Record {
            version: FORMAT_VERSION,
            chat_id: "c".into(),
            chat_title: Some("ops".into()),
            seq: 3,
            kind: RecordKind::Message,
            message_id: Some("m".into()),
            sender_user: "alice".into(),
            sender_device: "a1".into(),
            recipients: vec![Member {
                user: "bob".into(),
                device_id: "b1".into(),
            }],
            sent_at,
            received_at,
            text: Some("the gate code".into()),
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

    /// Issue 8: search filtered on the earlier of the sender's clock and the server's
    /// receipt, so a sender who backdated a message hid it from `--from` searches.
    #[test]
    fn issue8_backdated_sender_is_still_found_by_a_from_search() {
        let day = 86_400_000;
        let received = 100 * day;
        let backdated = message(received - 30 * day, received);
        let since_yesterday = SearchQuery {
            q: "gate".into(),
            from: Some(received - day),
            ..SearchQuery::default()
        };
        assert!(since_yesterday.matches(&backdated));
        // And a sender's clock set ahead does not put it into a later window either.
        let future = message(received + 30 * day, received);
        let next_week = SearchQuery {
            from: Some(received + 7 * day),
            ..SearchQuery::default()
        };
        assert!(!next_week.matches(&future));
        let until_yesterday = SearchQuery {
            to: Some(received - day),
            ..SearchQuery::default()
        };
        assert!(!until_yesterday.matches(&backdated));
    }

    #[test]
    fn issue8_a_hold_matches_any_of_the_three_clocks() {
        let hold = Hold {
            name: "h".into(),
            custodians: vec!["carol".into(), "bob".into()],
            chats: Vec::new(),
            from: Some(100),
            to: Some(200),
            reason: None,
            author: None,
            placed_at: None,
            records: None,
        };
        assert!(hold.covers(&message(150, 900), 900), "the sender's clock");
        assert!(hold.covers(&message(0, 150), 900), "the server's receipt");
        assert!(
            hold.covers(&message(0, 50), 150),
            "the archive's ingest (an archiver catching up on a backlog)"
        );
        assert!(!hold.covers(&message(0, 50), 300), "none in range");
    }
}
