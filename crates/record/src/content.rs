//! Content commitments: a record leaf commits to its record's fields one by one, so that a
//! production can prove some fields and withhold the others, as SD-JWT disclosures do.
//!
//! A record's 32-byte salt `s` (random: the sender's, carried in its message payload, or the
//! archiver's for events without one) gives each field a salt of its own,
//! `HMAC-SHA256(key = s, message = field name)`, and the field's commitment is
//! `SHA-256(field salt || value)`: the value's UTF-8 bytes, an integer in decimal. A
//! disclosure is a field's name, salt and value: it opens that one commitment and reveals
//! nothing of `s` or of any other field. A field without a value (a title has no message id)
//! has no commitment, so no value can ever be proven for it.

use std::collections::BTreeMap;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ReceiptError;

pub const SALT_LEN: usize = 32;

/// The fields a leaf commits to, in the order they are shown.
pub const FIELDS: [&str; 7] = [
    "kind",
    "chat_id",
    "message_id",
    "sender_user",
    "sender_device",
    "sent_at",
    "text",
];

/// A leaf's commitments: field name to hex SHA-256.
pub type Commitments = BTreeMap<String, String>;

/// What a record leaf commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The record kind (`message`, `title`...).
    pub kind: String,
    pub chat_id: String,
    pub message_id: Option<String>,
    pub sender_user: String,
    pub sender_device: String,
    /// The sender's clock, Unix ms.
    pub sent_at: i64,
    pub text: Option<String>,
}

impl Content {
    /// The fields that have a value, in [`FIELDS`] order.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("kind", self.kind.clone()),
            ("chat_id", self.chat_id.clone()),
        ];
        out.extend(self.message_id.clone().map(|m| ("message_id", m)));
        out.push(("sender_user", self.sender_user.clone()));
        out.push(("sender_device", self.sender_device.clone()));
        out.push(("sent_at", self.sent_at.to_string()));
        out.extend(self.text.clone().map(|t| ("text", t)));
        out
    }

    pub fn commit(&self, salt: &[u8; SALT_LEN]) -> Commitments {
        self.values()
            .into_iter()
            .map(|(field, value)| {
                let c = commitment(&field_salt(salt, field), &value);
                (field.to_owned(), hex::encode(c))
            })
            .collect()
    }

    /// Every field's disclosure (a production withholds some by leaving them out).
    pub fn disclose(&self, salt: &[u8; SALT_LEN]) -> Vec<Disclosure> {
        self.values()
            .into_iter()
            .map(|(field, value)| Disclosure {
                field: field.to_owned(),
                salt: hex::encode(field_salt(salt, field)),
                value,
            })
            .collect()
    }
}

/// `HMAC-SHA256(salt, field)`.
pub fn field_salt(salt: &[u8; SALT_LEN], field: &str) -> [u8; 32] {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(field.as_bytes());
    mac.finalize().into_bytes().into()
}

/// `SHA-256(field salt || value)`.
pub fn commitment(field_salt: &[u8; 32], value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(field_salt);
    h.update(value.as_bytes());
    h.finalize().into()
}

/// A record salt from its hex form; `None` unless exactly 32 bytes.
pub fn parse_salt(hex_salt: &str) -> Option<[u8; SALT_LEN]> {
    hex::decode(hex_salt).ok()?.try_into().ok()
}

/// One field opened: its name, its own salt (hex) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclosure {
    pub field: String,
    pub salt: String,
    pub value: String,
}

impl Disclosure {
    /// Whether this disclosure opens its field's commitment in `commitments`.
    pub fn check(&self, commitments: &Commitments) -> Result<(), ReceiptError> {
        let committed = commitments.get(&self.field).ok_or_else(|| {
            ReceiptError::Content(format!("the leaf commits to no {}", self.field))
        })?;
        let salt: [u8; 32] = hex::decode(&self.salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                ReceiptError::Malformed(format!(
                    "the salt of {} is not 32 bytes of hex",
                    self.field
                ))
            })?;
        if hex::encode(commitment(&salt, &self.value)) != *committed {
            return Err(ReceiptError::Content(format!(
                "the leaf does not commit to this {}: the value or its salt was altered",
                self.field
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Content {
        Content {
            kind: "message".into(),
            chat_id: "c".into(),
            message_id: Some("m1".into()),
            sender_user: "alice".into(),
            sender_device: "d1".into(),
            sent_at: 1_764_000_000_000,
            text: Some("hello".into()),
        }
    }

    #[test]
    fn disclosures_open_their_commitments_and_nothing_else() {
        let salt = [7; 32];
        let commitments = content().commit(&salt);
        assert_eq!(commitments.len(), 7);
        let disclosures = content().disclose(&salt);
        for d in &disclosures {
            d.check(&commitments).unwrap();
        }
        // Another value, another field's salt, another record's salt: each refused.
        let mut altered = disclosures[6].clone();
        altered.value = "hellO".into();
        assert!(matches!(
            altered.check(&commitments),
            Err(ReceiptError::Content(_))
        ));
        let mut swapped = disclosures[6].clone();
        swapped.salt = disclosures[5].salt.clone();
        assert!(swapped.check(&commitments).is_err());
        let other = content().disclose(&[8; 32]);
        assert!(other[6].check(&commitments).is_err());
        let mut junk = disclosures[0].clone();
        junk.salt = "zz".into();
        assert!(matches!(
            junk.check(&commitments),
            Err(ReceiptError::Malformed(_))
        ));
        // A field without a value has no commitment: nothing can be proven for it.
        let title = Content {
            message_id: None,
            ..content()
        };
        assert!(!title.commit(&salt).contains_key("message_id"));
        let forged = Disclosure {
            field: "message_id".into(),
            salt: hex::encode(field_salt(&salt, "message_id")),
            value: "m1".into(),
        };
        assert!(forged.check(&title.commit(&salt)).is_err());
    }
}
