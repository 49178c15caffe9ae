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
    /// The search index, held in memory while unsealed only: how far it has caught up on
    /// the records archived before the unseal. Absent while sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexProgress>,
}

/// Records in the search index, of those it will hold once caught up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IndexProgress {
    pub indexed: u64,
    pub total: u64,
}

/// `POST /v1/unseal`: one custodian's share file.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnsealRequest {
    pub share: String,
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

/// A legal hold: every record matching all of its criteria is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    pub name: String,
    pub custodian: Option<String>,
    pub chat: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
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
        self.custodian
            .as_deref()
            .is_none_or(|u| e.sender_user == u || e.recipients.iter().any(|r| r.user == u))
            && self
                .chat
                .as_deref()
                .is_none_or(|c| c == e.chat_id || e.chat_title.as_deref() == Some(c))
            && [e.sent_at, e.received_at, archived_at]
                .into_iter()
                .any(in_range)
    }
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

    #[test]
    fn issue8_a_hold_matches_any_of_the_three_clocks() {
        let hold = Hold {
            name: "h".into(),
            custodian: Some("bob".into()),
            chat: None,
            from: Some(100),
            to: Some(200),
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
