use serde::{Deserialize, Serialize};

/// Largest message text a client will send or accept.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
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
    },
    /// Delete for everyone: the sender withdraws its own message `id`.
    Delete { id: String },
    /// Sent by whoever creates a chat or adds members, so that newcomers learn its title.
    ChatInfo { title: String },
    /// A kind this version cannot interpret: `raw` is the payload's exact JSON text.
    #[serde(skip)]
    Unknown { kind: String, raw: String },
}

/// The kinds this version interprets; any other kind decodes as `Unknown`.
const KNOWN_KINDS: [&str; 3] = ["text", "delete", "chat_info"];

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
        match &payload {
            AppPayload::Text { text, .. } if text.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(text.len()))
            }
            AppPayload::ChatInfo { title } if title.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(title.len()))
            }
            AppPayload::Text {
                salt: Some(salt), ..
            } if salt.len() != 64
                || !salt
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Err(PayloadError::BadSalt)
            }
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
                    None => Ok(payload),
                }
            }
            _ => Ok(payload),
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
        let newer = br#"{"kind":"reaction","to":"m1","emoji":"+1","n":[1,2.5,null]}"#;
        let decoded = AppPayload::decode(newer).unwrap();
        assert_eq!(
            decoded,
            AppPayload::Unknown {
                kind: "reaction".into(),
                raw: String::from_utf8(newer.to_vec()).unwrap(),
            }
        );
        assert_eq!(decoded.encode(), newer, "re-encoded byte for byte");
        assert_eq!(decoded.kind(), "reaction");
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
            br#"{"kind":"reaction""#,
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
}
