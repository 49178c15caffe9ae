use serde::{Deserialize, Serialize};

/// Largest message text a client will send or accept.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// What travels *inside* an MLS application message: only members ever see it.
/// Chat titles travel here too, so the server never learns them.
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
    },
    /// Delete for everyone: the sender withdraws its own message `id`.
    Delete { id: String },
    /// Sent by whoever creates a chat or adds members, so that newcomers learn its title.
    ChatInfo { title: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("message payload is not valid: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message text is {0} bytes; the limit is {MAX_TEXT_BYTES}")]
    TooLong(usize),
    #[error("a message timer of {0} seconds is beyond the 10-year maximum")]
    TimerTooLong(u64),
}

impl AppPayload {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("payload serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let payload: Self = serde_json::from_slice(bytes)?;
        match &payload {
            AppPayload::Text { text, .. } if text.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(text.len()))
            }
            AppPayload::ChatInfo { title } if title.len() > MAX_TEXT_BYTES => {
                Err(PayloadError::TooLong(title.len()))
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
        };
        // A payload from an older sender, without timers, still decodes.
        let old = br#"{"kind":"text","id":"m0","text":"hi","sent_at":1}"#;
        assert!(matches!(
            AppPayload::decode(old),
            Ok(AppPayload::Text {
                expire_secs: None,
                ..
            })
        ));
        assert_eq!(AppPayload::decode(&p.encode()).unwrap(), p);
        assert!(AppPayload::decode(b"\xff\x00").is_err());
        assert!(AppPayload::decode(br#"{"kind":"nope"}"#).is_err());
        let long = AppPayload::Text {
            id: "m".into(),
            text: "x".repeat(MAX_TEXT_BYTES + 1),
            sent_at: 0,
            expire_secs: None,
            burn_secs: None,
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
