use serde::{Deserialize, Serialize};

use crate::content::{Commitments, Content};
use crate::Error;

/// The format version this build writes. Decoding accepts it and every earlier one.
/// Version 2 adds the entry's log hash (in the reference) and the content salt; version 3
/// (issue 10) the kinds `edit` and `reaction`, a message's `reply_to` and `mentions`, and the
/// `target` (and `remove`) of an edit or reaction.
pub const FORMAT_VERSION: u32 = 3;

/// A member device of a chat, from the verified MLS roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub device_id: String,
}

/// What happened in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A text message (`text`, `message_id`, timers).
    Message,
    /// Delete for everyone of the sender's message `message_id`.
    Delete,
    /// The chat's title was set to `text`.
    Title,
    /// Members joined or left (`text` says who).
    Membership,
    /// The chat's timers changed, or a member updated its keys.
    Timers,
    /// Version 3: the sender replaced the text of its message `target` with `text`
    /// (`message_id` is the edit's own id). Every version is kept, each in its own record.
    Edit,
    /// Version 3: a reaction `text` (one emoji) to message `target`, or with `remove` its
    /// withdrawal (`message_id` is the reaction's own id).
    Reaction,
    /// A payload this version cannot interpret (a newer client's kind: an edit, a reaction,
    /// an attachment...), sealed verbatim so that no record is lost. `kind` is the payload's
    /// own kind, `payload` its exact JSON text.
    Unknown { kind: String, payload: String },
    /// A file of the message `message_id` (issue 10), fetched, decrypted and checked
    /// against its sender's SHA-256 by the archiver, sealed whole.
    Attachment(Box<AttachedFile>),
}

/// The content of an [`RecordKind::Attachment`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedFile {
    /// The server's blob id: with the message's reference, what makes the record unique.
    pub blob: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    /// This part's bytes of the file, base64 (standard, padded): bytes from
    /// `part * ATTACHMENT_PART_BYTES`, at most that many. A file larger than one part is
    /// sealed as `parts` records, so that no leaf exceeds the archive's limit.
    pub content: String,
    /// Which part of the file this record holds, from 0.
    #[serde(default)]
    pub part: u32,
    /// How many parts the file was sealed in.
    #[serde(default = "one_part")]
    pub parts: u32,
}

fn one_part() -> u32 {
    1
}

/// The most bytes of a file one attachment record holds: base64 in the record, and the record
/// sealed, stays well under the archive's 1 MiB leaf limit.
pub const ATTACHMENT_PART_BYTES: usize = 384 * 1024;

impl RecordKind {
    pub fn as_str(&self) -> &str {
        match self {
            RecordKind::Message => "message",
            RecordKind::Delete => "delete",
            RecordKind::Title => "title",
            RecordKind::Membership => "membership",
            RecordKind::Timers => "timers",
            RecordKind::Edit => "edit",
            RecordKind::Reaction => "reaction",
            RecordKind::Unknown { .. } => "unknown",
            RecordKind::Attachment(_) => "attachment",
        }
    }
}

/// Shown (and searched) as its name; the record's encoding carries an unknown payload too.
impl Serialize for RecordKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One event of a chat as a member saw it: what the archiver keeps as a record
/// (36 CFR 1236.22: sender, recipients, times, chat identity and title).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Record {
    /// The format version it was sealed in (0: Vellum 0.1.0).
    pub version: u32,
    pub chat_id: String,
    pub chat_title: Option<String>,
    /// The event's position in the chat's log: with `chat_id`, what makes it unique.
    pub seq: u64,
    pub kind: RecordKind,
    pub message_id: Option<String>,
    pub sender_user: String,
    pub sender_device: String,
    /// Every other member device at that moment.
    pub recipients: Vec<Member>,
    /// Sender's clock and server receipt, Unix ms.
    pub sent_at: i64,
    pub received_at: i64,
    pub text: Option<String>,
    pub expire_secs: Option<u64>,
    pub burn_secs: Option<u64>,
    /// Version 2: the chat log's running hash after this entry, hex (none for the archiver's
    /// own join, or from servers older than 0.2).
    pub log_hash: Option<String>,
    /// Version 2: the salt of the leaf's content commitments (see [`crate::content`]), hex;
    /// kept inside the sealed record so that the archive can later prove any field.
    pub salt: Option<String>,
    /// Version 3: the message a message replies to.
    pub reply_to: Option<String>,
    /// Version 3: the users a message mentions.
    pub mentions: Vec<String>,
    /// Version 3: the message an edit or reaction is about.
    pub target: Option<String>,
    /// Version 3: the reaction is withdrawn.
    pub remove: bool,
}

/// The encoding. Version 0 (0.1.0) had no `version`, `payload_kind` or `payload`, and wrote
/// every optional field as `null`; all of them default here.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default)]
    version: u32,
    chat_id: String,
    #[serde(default)]
    chat_title: Option<String>,
    seq: u64,
    kind: String,
    /// For `unknown`: the payload's own kind and its exact JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    /// For `attachment`: the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<AttachedFile>,
    #[serde(default)]
    message_id: Option<String>,
    sender_user: String,
    sender_device: String,
    #[serde(default)]
    recipients: Vec<Member>,
    sent_at: i64,
    received_at: i64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    expire_secs: Option<u64>,
    #[serde(default)]
    burn_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mentions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    remove: bool,
}

impl TryFrom<Wire> for Record {
    type Error = Error;

    fn try_from(w: Wire) -> Result<Self, Error> {
        if w.version > FORMAT_VERSION {
            return Err(Error::TooNew { found: w.version });
        }
        let kind = match (w.kind.as_str(), w.payload_kind, w.payload) {
            ("attachment", None, None) => match w.attachment {
                Some(file) => RecordKind::Attachment(Box::new(file)),
                None => {
                    return Err(Error::Invalid(
                        "an attachment record without its file".into(),
                    ))
                }
            },
            _ if w.attachment.is_some() => {
                return Err(Error::Invalid(format!(
                    "a {} record carries a file",
                    w.kind
                )))
            }
            ("message", None, None) => RecordKind::Message,
            ("delete", None, None) => RecordKind::Delete,
            ("title", None, None) => RecordKind::Title,
            ("membership", None, None) => RecordKind::Membership,
            ("timers", None, None) => RecordKind::Timers,
            // Kinds of version 3: a record claiming an older version cannot hold them.
            ("edit", None, None) if w.version >= 3 => RecordKind::Edit,
            ("reaction", None, None) if w.version >= 3 => RecordKind::Reaction,
            ("unknown", Some(kind), Some(payload)) => RecordKind::Unknown { kind, payload },
            (kind, _, _) => {
                return Err(Error::Invalid(format!(
                    "record kind {kind:?} with these fields is not one this format defines"
                )))
            }
        };
        if matches!(kind, RecordKind::Edit | RecordKind::Reaction) != w.target.is_some() {
            return Err(Error::Invalid(
                "an edit or a reaction names its target, and only they do".into(),
            ));
        }
        Ok(Record {
            version: w.version,
            chat_id: w.chat_id,
            chat_title: w.chat_title,
            seq: w.seq,
            kind,
            message_id: w.message_id,
            sender_user: w.sender_user,
            sender_device: w.sender_device,
            recipients: w.recipients,
            sent_at: w.sent_at,
            received_at: w.received_at,
            text: w.text,
            expire_secs: w.expire_secs,
            burn_secs: w.burn_secs,
            log_hash: w.log_hash,
            salt: w.salt,
            reply_to: w.reply_to,
            mentions: w.mentions,
            target: w.target,
            remove: w.remove,
        })
    }
}

impl From<Record> for Wire {
    fn from(r: Record) -> Self {
        let (kind, payload_kind, payload, attachment) = match r.kind {
            RecordKind::Unknown { kind, payload } => {
                ("unknown".to_owned(), Some(kind), Some(payload), None)
            }
            RecordKind::Attachment(file) => ("attachment".to_owned(), None, None, Some(*file)),
            known => (known.as_str().to_owned(), None, None, None),
        };
        Wire {
            version: r.version,
            chat_id: r.chat_id,
            chat_title: r.chat_title,
            seq: r.seq,
            kind,
            payload_kind,
            payload,
            attachment,
            message_id: r.message_id,
            sender_user: r.sender_user,
            sender_device: r.sender_device,
            recipients: r.recipients,
            sent_at: r.sent_at,
            received_at: r.received_at,
            text: r.text,
            expire_secs: r.expire_secs,
            burn_secs: r.burn_secs,
            log_hash: r.log_hash,
            salt: r.salt,
            reply_to: r.reply_to,
            mentions: r.mentions,
            target: r.target,
            remove: r.remove,
        }
    }
}

impl Record {
    /// The record's plaintext as sealed. It keeps the version it was made with: a record
    /// decoded from an older version re-encodes in that version's meaning.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }

    /// Decodes any version up to [`FORMAT_VERSION`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        Record::try_from(wire)
    }

    /// The record's leaf reference (see [`crate::reference`]); a message's file is
    /// `…/file/{blob}` after its message's (`…/file/{blob}/{part}` for a file in parts).
    pub fn reference(&self) -> String {
        let message = crate::reference(&self.chat_id, self.seq, self.log_hash.as_deref());
        match &self.kind {
            RecordKind::Attachment(file) if file.parts > 1 => {
                format!("{message}/file/{}/{}", file.blob, file.part)
            }
            RecordKind::Attachment(file) => format!("{message}/file/{}", file.blob),
            _ => message,
        }
    }

    /// What its leaf commits to.
    pub fn content(&self) -> Content {
        Content {
            kind: self.kind.as_str().to_owned(),
            chat_id: self.chat_id.clone(),
            message_id: self.message_id.clone(),
            sender_user: self.sender_user.clone(),
            sender_device: self.sender_device.clone(),
            sent_at: self.sent_at,
            text: self.text.clone(),
        }
    }

    /// Its leaf's content commitments, if it has a salt.
    pub fn commitments(&self) -> Option<Commitments> {
        let salt = crate::content::parse_salt(self.salt.as_deref()?)?;
        Some(self.content().commit(&salt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_payload_survives_encoding_byte_for_byte() {
        let payload = r#"{"kind":"reaction","to":"m1","emoji":"\u2603","extra":[1,2]}"#;
        let record = Record {
            version: FORMAT_VERSION,
            chat_id: "c".into(),
            chat_title: None,
            seq: 9,
            kind: RecordKind::Unknown {
                kind: "reaction".into(),
                payload: payload.into(),
            },
            message_id: None,
            sender_user: "alice".into(),
            sender_device: "d1".into(),
            recipients: vec![],
            sent_at: 1,
            received_at: 2,
            text: None,
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: None,
            reply_to: None,
            mentions: vec![],
            target: None,
            remove: false,
        };
        let decoded = Record::decode(&record.encode()).unwrap();
        assert_eq!(decoded, record);
        assert!(matches!(&decoded.kind, RecordKind::Unknown { payload: p, .. } if p == payload));
    }

    #[test]
    fn issue_10_an_attachment_record_keeps_its_file() {
        let file = AttachedFile {
            blob: "b1".into(),
            name: "r.pdf".into(),
            mime: "application/pdf".into(),
            size: 3,
            sha256: "ab".into(),
            content: "AQID".into(),
            part: 0,
            parts: 1,
        };
        let record = Record {
            version: FORMAT_VERSION,
            chat_id: "c".into(),
            chat_title: None,
            seq: 9,
            kind: RecordKind::Attachment(Box::new(file)),
            message_id: Some("m1".into()),
            sender_user: "alice".into(),
            sender_device: "d1".into(),
            recipients: vec![],
            sent_at: 1,
            received_at: 2,
            text: None,
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: None,
            reply_to: None,
            mentions: vec![],
            target: None,
            remove: false,
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert_eq!(record.reference(), "c/9/file/b1");
        // A file in parts: each part its own leaf.
        let mut second = record.clone();
        if let RecordKind::Attachment(file) = &mut second.kind {
            file.part = 1;
            file.parts = 3;
        }
        assert_eq!(Record::decode(&second.encode()).unwrap(), second);
        assert_eq!(second.reference(), "c/9/file/b1/1");
        let base = r#""chat_id":"c","seq":1,"sender_user":"a","sender_device":"d","sent_at":0,"received_at":0"#;
        for bad in [
            format!(r#"{{"version":2,"kind":"attachment",{base}}}"#),
            format!(
                r#"{{"version":2,"kind":"message","attachment":{{"blob":"b","name":"n","mime":"m","size":0,"sha256":"","content":""}},{base}}}"#
            ),
        ] {
            assert!(Record::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn newer_versions_and_inconsistent_kinds_are_refused_clearly() {
        let base = r#""chat_id":"c","seq":1,"sender_user":"a","sender_device":"d","sent_at":0,"received_at":0"#;
        let newer = format!(r#"{{"version":4,"kind":"message",{base}}}"#);
        let err = Record::decode(newer.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::TooNew { found: 4 }), "{err}");
        for bad in [
            format!(r#"{{"version":1,"kind":"unknown",{base}}}"#),
            format!(r#"{{"version":1,"kind":"message","payload":"{{}}",{base}}}"#),
            format!(r#"{{"version":1,"kind":"reaction",{base}}}"#),
            // Issue 10: version 3 kinds only from version 3, and only with their target.
            format!(r#"{{"version":2,"kind":"edit","target":"m",{base}}}"#),
            format!(r#"{{"version":3,"kind":"reaction",{base}}}"#),
            format!(r#"{{"version":3,"kind":"message","target":"m",{base}}}"#),
            r#"{"kind":"message"}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(Record::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
