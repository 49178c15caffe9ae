use serde::{Deserialize, Serialize};

/// Largest message text a client will send or accept.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest reaction: one emoji, possibly a sequence of code points joined by ZWJ.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most different reactions one member keeps on one message.
pub const MAX_REACTIONS_PER_MEMBER: usize = 8;
/// Most users one message may mention.
pub const MAX_MENTIONS: usize = 64;
/// Most files one message may carry.
pub const MAX_ATTACHMENTS: usize = 16;
/// Longest file name or MIME type carried in an [`AttachmentRef`].
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Largest payload of an unknown kind kept verbatim. Newer kinds may carry more than text
/// (an attachment's key and digest), but a member's payload is bounded all the same.
pub const MAX_UNKNOWN_BYTES: usize = 64 * 1024;

/// What travels *inside* an MLS application message: only members ever see it.
/// Chat titles travel here too, so the server never learns them.
///
/// Forward-compatible: a JSON object with a `kind` this version does not know (a newer
/// client's edit, reaction, attachment...) decodes as [`AppPayload::Unknown`], so that it can
/// be shown as such and archived verbatim instead of being dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppPayload {
    Text {
        id: String,
        text: String,
        /// Sender's clock, Unix milliseconds.
        sent_at: i64,
        /// Expiration timer of this message, seconds from sending (never longer than the chat's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expire_secs: Option<u64>,
        /// Burn-on-read timer, seconds from when a device first displays it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burn_secs: Option<u64>,
        /// Since 0.3: 32 random bytes, hex, salting the archive's commitments to this
        /// message's fields (`vellum_record::content`), so the sender can prove what it
        /// sent. Older senders' payloads have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        salt: Option<String>,
        /// Since 0.5 (issue 10): the id of the message this one replies to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        /// Since 0.5: user names this message mentions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
        /// Since 0.5: end-to-end encrypted files; their bytes are in the server's blob store,
        /// their keys only here. `text` may then be empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentRef>,
    },
    /// Since 0.5: the sender replaces the text of its own message `target`. Expires and
    /// burns with its target (the target's timers apply); `id` is this edit's own id.
    Edit {
        id: String,
        target: String,
        text: String,
        sent_at: i64,
        /// Salts the archive's commitments to this version, as for `Text`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        salt: Option<String>,
    },
    /// Since 0.5: a reaction to message `target` (or, with `remove`, its withdrawal). A
    /// member has at most one reaction per emoji per message.
    Reaction {
        id: String,
        target: String,
        emoji: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
        sent_at: i64,
    },
    /// Since 0.5: a read receipt: the sending device has displayed everything in the chat up
    /// to and including server position `seq`. Batched (one marker covers all before it),
    /// sent only where the chat's settings and the org's policy allow read receipts, never
    /// archived as a record.
    ReadUpTo { seq: u64, sent_at: i64 },
    /// Delete for everyone: the sender withdraws its own message `id`.
    Delete { id: String },
    /// Sent by whoever creates a chat or adds members, so that newcomers learn its title.
    ChatInfo { title: String },
    /// A kind this version cannot interpret: `raw` is the payload's exact JSON text.
    #[serde(skip)]
    Unknown { kind: String, raw: String },
}

/// One end-to-end encrypted file of a message (issue 10). The file is encrypted with `key`
/// (fresh per file) in chunks of `chunk_size` plaintext bytes, each chunk sealed with
/// AES-256-GCM under the STREAM construction (`aead::stream`, big-endian 32-bit counter and
/// last-chunk flag), and stored as blob `blob` on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The server's blob id.
    pub blob: String,
    /// File name as the sender had it (no directory part).
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
    pub mime: String,
    /// The file's AES-256 key, base64 (standard, padded).
    pub key: String,
    /// The STREAM nonce prefix (7 bytes), base64.
    pub nonce: String,
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
}

/// The kinds this version interprets; any other kind decodes as `Unknown`.
const KNOWN_KINDS: [&str; 6] = [
    "text",
    "delete",
    "chat_info",
    "edit",
    "reaction",
    "read_up_to",
];

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("message payload is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message payload is not a JSON object with a string `kind`")]
    NoKind,
    #[error("message text is {0} bytes; the limit is {MAX_TEXT_BYTES}")]
    TooLong(usize),
    #[error("a message timer of {0} seconds is beyond the 10-year maximum")]
    TimerTooLong(u64),
    #[error("a message salt must be 32 bytes of lowercase hex")]
    BadSalt,
    #[error("message payload: {0}")]
    Invalid(&'static str),
}

impl AppPayload {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AppPayload::Unknown { raw, .. } => raw.as_bytes().to_vec(),
            known => serde_json::to_vec(known).expect("payload serialises"),
        }
    }

    /// The payload's `kind` as it travels.
    pub fn kind(&self) -> &str {
        match self {
            AppPayload::Text { .. } => "text",
            AppPayload::Delete { .. } => "delete",
            AppPayload::ChatInfo { .. } => "chat_info",
            AppPayload::Edit { .. } => "edit",
            AppPayload::Reaction { .. } => "reaction",
            AppPayload::ReadUpTo { .. } => "read_up_to",
            AppPayload::Unknown { kind, .. } => kind,
        }
    }

    /// Decodes a payload. A known kind must be well formed; an unknown kind needs only to be
    /// a JSON object with a string `kind`, and keeps its bytes verbatim.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or(PayloadError::NoKind)?;
        if !KNOWN_KINDS.contains(&kind) {
            if bytes.len() > MAX_UNKNOWN_BYTES {
                return Err(PayloadError::TooLong(bytes.len()));
            }
            return Ok(AppPayload::Unknown {
                kind: kind.to_owned(),
                // Valid JSON is valid UTF-8.
                raw: String::from_utf8_lossy(bytes).into_owned(),
            });
        }
        let payload: Self = serde_json::from_value(value)?;
        payload.check_bounds()?;
        Ok(payload)
    }

    /// The limits a member's client would never exceed; anything beyond is refused before it
    /// is stored.
    fn check_bounds(&self) -> Result<(), PayloadError> {
        let payload = self;
        match payload {
            AppPayload::Text {
                mentions,
                attachments,
                ..
            } => {
                if mentions.len() > MAX_MENTIONS || mentions.iter().any(|m| m.len() > 64) {
                    return Err(PayloadError::Invalid("too many or too long mentions"));
                }
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(PayloadError::Invalid("too many attachments"));
                }
                for a in attachments {
                    a.check()?;
                }
            }
            AppPayload::Edit { text, salt, .. } => {
                if text.len() > MAX_TEXT_BYTES {
                    return Err(PayloadError::TooLong(text.len()));
                }
                if salt.as_deref().is_some_and(|s| !is_salt(s)) {
                    return Err(PayloadError::BadSalt);
                }
            }
            AppPayload::Reaction { emoji, .. }
                if emoji.len() > MAX_EMOJI_BYTES || !is_one_emoji(emoji) =>
            {
                return Err(PayloadError::Invalid("a reaction is exactly one emoji"));
            }
            _ => {}
        }
        match payload {
            AppPayload::Text { text, .. } if text.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(text.len()))
            }
            AppPayload::ChatInfo { title } if title.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(title.len()))
            }
            AppPayload::Text {
                salt: Some(salt), ..
            } if !is_salt(salt) => Err(PayloadError::BadSalt),
            AppPayload::Text {
                expire_secs,
                burn_secs,
                ..
            } => {
                match [*expire_secs, *burn_secs]
                    .into_iter()
                    .flatten()
                    .find(|s| *s > crate::timer::MAX_TIMER_SECS)
                {
                    Some(secs) => Err(PayloadError::TimerTooLong(secs)),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// Whether `text` is exactly one emoji: one pictographic base (or a keycap, or a flag's pair
/// of regional indicators), with only the joiners, variation selectors, skin tones and tags
/// that build a single emoji. Letters, digits alone, spaces and controls are refused, so a
/// reaction cannot carry words.
pub fn is_one_emoji(text: &str) -> bool {
    let keycap = text.contains('\u{20E3}');
    let (mut bases, mut regional, mut after_joiner) = (0, 0, false);
    for c in text.chars() {
        let joined = after_joiner;
        after_joiner = false;
        match c as u32 {
            0x200D => after_joiner = true,
            // Variation selectors, the keycap, skin tones, tag characters: modifiers only.
            0xFE0E | 0xFE0F | 0x20E3 | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F => {}
            0x1F1E6..=0x1F1FF => {
                regional += 1;
                if regional % 2 == 1 && !joined {
                    bases += 1;
                }
            }
            cp if is_emoji_base(cp) || (keycap && matches!(c, '0'..='9' | '#' | '*')) => {
                if !joined {
                    bases += 1;
                }
            }
            _ => return false,
        }
    }
    bases == 1 && !after_joiner
}

fn is_emoji_base(cp: u32) -> bool {
    matches!(cp,
        0xA9 | 0xAE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x21AA | 0x231A..=0x23FF
        | 0x24C2 | 0x25AA..=0x25FE | 0x2600..=0x27BF | 0x2934 | 0x2935 | 0x2B05..=0x2B55
        | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x1F000..=0x1FAFF)
}

fn is_salt(salt: &str) -> bool {
    salt.len() == 64
        && salt
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl AttachmentRef {
    fn check(&self) -> Result<(), PayloadError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let ok = !self.blob.is_empty()
            && self.blob.len() <= 64
            && !self.name.is_empty()
            && self.name.len() <= MAX_FILE_NAME_BYTES
            && self.mime.len() <= MAX_FILE_NAME_BYTES
            && self.chunk_size > 0
            && self.chunk_size <= 4 * 1024 * 1024
            && self.sha256.len() == 64
            && self.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            && b64.decode(&self.key).is_ok_and(|k| k.len() == 32)
            && b64.decode(&self.nonce).is_ok_and(|n| n.len() == 7);
        if ok {
            Ok(())
        } else {
            Err(PayloadError::Invalid("malformed attachment reference"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes_and_rejects_junk() {
        let p = AppPayload::Text {
            id: "m1".into(),
            text: "hi".into(),
            sent_at: 5,
            expire_secs: Some(60),
            burn_secs: None,
            salt: Some("ab".repeat(32)),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        // A payload from an older sender, without timers, still decodes.
        let old = br#"{"kind":"text","id":"m0","text":"hi","sent_at":1}"#;
        assert!(matches!(
            AppPayload::decode(old),
            Ok(AppPayload::Text {
                expire_secs: None,
                salt: None,
                ..
            })
        ));
        assert_eq!(AppPayload::decode(&p.encode()).unwrap(), p);
        assert!(AppPayload::decode(b"\xff\x00").is_err());
        // A newer client's kind is kept verbatim, not refused.
        let newer = br#"{"kind":"poll","to":"m1","options":["+1"],"n":[1,2.5,null]}"#;
        let decoded = AppPayload::decode(newer).unwrap();
        assert_eq!(
            decoded,
            AppPayload::Unknown {
                kind: "poll".into(),
                raw: String::from_utf8(newer.to_vec()).unwrap(),
            }
        );
        assert_eq!(decoded.encode(), newer, "re-encoded byte for byte");
        assert_eq!(decoded.kind(), "poll");
        // Not an object, no kind, a kind that is not a string, or a known kind that is
        // malformed: still errors.
        for junk in [
            &br#"[1,2]"#[..],
            br#""text""#,
            br#"{"id":"m1"}"#,
            br#"{"kind":7}"#,
            br#"{"kind":"text","id":"m1"}"#,
            br#"{"kind":"delete"}"#,
            br#"{"kind":"text","id":"m","text":"x","sent_at":0,"salt":"abc"}"#,
            br#"{"kind":"text","id":"m","text":"x","sent_at":0,"salt":7}"#,
            br#"{"kind":"poll""#,
        ] {
            assert!(
                AppPayload::decode(junk).is_err(),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        let huge = format!(
            r#"{{"kind":"attachment","x":"{}"}}"#,
            "a".repeat(MAX_UNKNOWN_BYTES)
        );
        assert!(matches!(
            AppPayload::decode(huge.as_bytes()),
            Err(PayloadError::TooLong(_))
        ));
        let long = AppPayload::Text {
            id: "m".into(),
            text: "x".repeat(MAX_TEXT_BYTES + 1),
            sent_at: 0,
            expire_secs: None,
            burn_secs: None,
            salt: None,
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        assert!(matches!(
            AppPayload::decode(&long.encode()),
            Err(PayloadError::TooLong(_))
        ));
        // Timers a member's client could never set are refused, not stored (they would
        // overflow every later computation of when to shred).
        let huge = format!(
            r#"{{"kind":"text","id":"m","text":"x","sent_at":0,"burn_secs":{}}}"#,
            u64::MAX
        );
        assert!(matches!(
            AppPayload::decode(huge.as_bytes()),
            Err(PayloadError::TimerTooLong(_))
        ));
    }

    /// Golden payloads of the issue-10 kinds, byte for byte as they travel: a newer client
    /// must keep sending exactly this, and this version must keep reading it.
    #[test]
    fn issue_10_kinds_have_stable_encodings() {
        let golden: [(&str, AppPayload); 4] = [
            (
                r#"{"kind":"text","id":"m2","text":"see @bob","sent_at":7,"reply_to":"m1","mentions":["bob"],"attachments":[{"blob":"b1","name":"a.txt","size":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","mime":"text/plain","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","nonce":"AAAAAAAAAA==","chunk_size":65536}]}"#,
                AppPayload::Text {
                    id: "m2".into(),
                    text: "see @bob".into(),
                    sent_at: 7,
                    expire_secs: None,
                    burn_secs: None,
                    salt: None,
                    reply_to: Some("m1".into()),
                    mentions: vec!["bob".into()],
                    attachments: vec![AttachmentRef {
                        blob: "b1".into(),
                        name: "a.txt".into(),
                        size: 3,
                        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                            .into(),
                        mime: "text/plain".into(),
                        key: "A".repeat(43) + "=",
                        nonce: "AAAAAAAAAA==".into(),
                        chunk_size: 65536,
                    }],
                },
            ),
            (
                r#"{"kind":"edit","id":"e1","target":"m1","text":"fixed","sent_at":9}"#,
                AppPayload::Edit {
                    id: "e1".into(),
                    target: "m1".into(),
                    text: "fixed".into(),
                    sent_at: 9,
                    salt: None,
                },
            ),
            (
                r#"{"kind":"reaction","id":"r1","target":"m1","emoji":"👍","sent_at":9}"#,
                AppPayload::Reaction {
                    id: "r1".into(),
                    target: "m1".into(),
                    emoji: "👍".into(),
                    remove: false,
                    sent_at: 9,
                },
            ),
            (
                r#"{"kind":"read_up_to","seq":42,"sent_at":9}"#,
                AppPayload::ReadUpTo {
                    seq: 42,
                    sent_at: 9,
                },
            ),
        ];
        for (json, payload) in golden {
            assert_eq!(String::from_utf8(payload.encode()).unwrap(), json);
            assert_eq!(AppPayload::decode(json.as_bytes()).unwrap(), payload);
        }
        // Issue 10 review: exactly one emoji, however it is built.
        for one in [
            "👍",
            "👍🏽",
            "❤️",
            "👩‍💻",
            "👨‍👩‍👧",
            "🇫🇷",
            "1️⃣",
            "#️⃣",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert!(is_one_emoji(one), "{one}");
        }
        for not_one in [
            "",
            "x",
            "+1",
            "1",
            "👍👍",
            "🇫🇷🇩🇪",
            "👍\u{200D}",
            "a👍",
            "\u{FE0F}",
            "👍 ",
        ] {
            assert!(!is_one_emoji(not_one), "{not_one:?}");
        }
        let removal =
            r#"{"kind":"reaction","id":"r2","target":"m1","emoji":"👎","remove":true,"sent_at":1}"#
                .as_bytes();
        assert!(matches!(
            AppPayload::decode(removal).unwrap(),
            AppPayload::Reaction { remove: true, .. }
        ));
        for junk in [
            &br#"{"kind":"reaction","id":"r","target":"m","emoji":"","sent_at":1}"#[..],
            br#"{"kind":"reaction","id":"r","target":"m","emoji":"a b","sent_at":1}"#,
            br#"{"kind":"reaction","id":"r","target":"m","emoji":"notanemoji","sent_at":1}"#,
            "{\"kind\":\"reaction\",\"id\":\"r\",\"target\":\"m\",\"emoji\":\"👍👍\",\"sent_at\":1}".as_bytes(),
            "{\"kind\":\"reaction\",\"id\":\"r\",\"target\":\"m\",\"emoji\":\"1\",\"sent_at\":1}".as_bytes(),
            "{\"kind\":\"reaction\",\"id\":\"r\",\"target\":\"m\",\"emoji\":\"\u{202e}👍\",\"sent_at\":1}".as_bytes(),
            br#"{"kind":"reaction","id":"r","target":"m","emoji":"\u001b[2J","sent_at":1}"#,
            br#"{"kind":"edit","id":"e","target":"m","text":"x","sent_at":1,"salt":"zz"}"#,
            br#"{"kind":"read_up_to","seq":-1,"sent_at":1}"#,
            br#"{"kind":"text","id":"m","text":"","sent_at":0,"attachments":[{"blob":"b","name":"a","size":1,"sha256":"00","mime":"","key":"","nonce":"","chunk_size":1}]}"#,
        ] {
            assert!(
                AppPayload::decode(junk).is_err(),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        let long_edit = format!(
            r#"{{"kind":"edit","id":"e","target":"m","text":"{}","sent_at":1}}"#,
            "x".repeat(MAX_TEXT_BYTES + 1)
        );
        assert!(matches!(
            AppPayload::decode(long_edit.as_bytes()),
            Err(PayloadError::TooLong(_))
        ));
    }
}
