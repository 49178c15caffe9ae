use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of the log. Records carry only ciphertext; the other kinds are the public
/// trail of what was done to the archive and when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Leaf {
    /// A sealed record. `reference` identifies its source (chat, log position and log hash)
    /// so that a re-delivered event is archived once; `key_hash` commits to its sealed
    /// content key; `commitments` (since 0.3) to each field of its content, by name, as hex
    /// `SHA-256(field salt || value)` (`vellum_record::content`; the salt is sealed in the
    /// body), so a receipt or a redacted production can prove fields one by one.
    Record {
        time: i64,
        reference: String,
        key_hash: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commitments: Option<BTreeMap<String, String>>,
    },
    /// A legal hold. Before issue 11 a hold named at most one `custodian` and one `chat`;
    /// since, `custodians` and `chats` list them (the single fields stay `None`), with the
    /// hold's `reason` and the account that placed it (`author`).
    Hold {
        time: i64,
        name: String,
        custodian: Option<String>,
        chat: Option<String>,
        from: Option<i64>,
        to: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        custodians: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        chats: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
    },
    /// A hold lifted (`author`, since issue 11, the account that lifted it).
    Release {
        time: i64,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
    },
    /// The content key of record leaf `record` was destroyed at the end of `schedule`.
    Disposition {
        time: i64,
        record: u64,
        schedule: String,
    },
    /// Unseal, seal, search, view, export: who looked, and at what.
    Access {
        time: i64,
        action: String,
        detail: String,
    },
}

impl Leaf {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("leaves serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}
