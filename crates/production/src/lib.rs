//! A production: what a records office hands a requester or a court for one FOIA case or
//! lawsuit. No I/O beyond writing the production's own directory; the archiver gathers the
//! input (records, proofs, treatments) and calls [`produce`].
//!
//! (Contract: the types are fixed; the production work fills in the formats.)

use std::path::Path;

use serde::{Deserialize, Serialize};
use vellum_record::api::foia::Exemption;
use vellum_record::Record;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formats {
    pub rsmf: bool,
    pub pdf: bool,
    pub csv: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Self {
            rsmf: true,
            pdf: true,
            csv: true,
        }
    }
}

/// Everything a production is made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductionInput {
    pub case_id: String,
    pub requester: String,
    pub description: String,
    /// Unix ms when it was produced.
    pub produced_at: i64,
    /// IANA time zone for the dates people read (the office's).
    pub time_zone: String,
    pub bates_prefix: String,
    /// The first Bates number (usually 1).
    pub bates_start: u64,
    pub formats: Formats,
    /// The archive's log origin and verifier key (C2SP note key), so the manifest names what
    /// to check the checkpoint with.
    pub origin: String,
    pub verifier_key: String,
    /// The cosigned checkpoint note every inclusion proof is against.
    pub checkpoint: String,
    pub checkpoint_size: u64,
    /// In the order they are produced (chat, then log order).
    pub items: Vec<ProducedItem>,
}

/// One record of the review set that was marked responsive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProducedItem {
    pub leaf: u64,
    /// The leaf's public encoding (what the leaf hash is computed over), base64: with it a
    /// court recomputes the leaf hash and reads the content commitments it holds.
    pub leaf_data: String,
    /// RFC 6962 inclusion proof of `leaf` in the checkpoint's tree, hex hashes.
    pub inclusion_proof: Vec<String>,
    pub record: Record,
    pub treatment: Treatment,
}

/// What review decided for a responsive record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "treatment", rename_all = "snake_case")]
pub enum Treatment {
    /// Produced, with these parts withheld.
    Release {
        text: Vec<TextRedaction>,
        fields: Vec<FieldRedaction>,
    },
    /// Withheld in full under `exemption` (listed in the withholding log only).
    Withhold { exemption: Exemption },
}

/// A span of a record's text, in Unicode scalar values, `start..end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextRedaction {
    pub start: usize,
    pub end: usize,
    pub exemption: Exemption,
}

/// A piece of metadata withheld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRedaction {
    pub field: RedactableField,
    pub exemption: Exemption,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", content = "user", rename_all = "snake_case")]
pub enum RedactableField {
    /// The sender's name (user and device).
    Sender,
    /// A participant's name wherever it appears in this record (sender, recipients,
    /// mentions).
    Participant(String),
    ChatTitle,
    AttachmentName,
}

/// Progress, for a bar or a console display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// What was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductionSummary {
    /// File names inside the production directory.
    pub files: Vec<String>,
    pub records_produced: u64,
    pub records_withheld: u64,
    /// First and last Bates numbers, formatted.
    pub bates_first: Option<String>,
    pub bates_last: Option<String>,
}

/// Writes the production into `out` (created if missing; must be empty).
pub fn produce(
    input: &ProductionInput,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<ProductionSummary, Error> {
    let _ = (input, out, progress);
    Err(Error::Invalid("productions are not built yet".into()))
}
