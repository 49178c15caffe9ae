//! A production: what a records office hands a requester or a court for one FOIA case or
//! lawsuit. No I/O beyond writing the production's own directory; the archiver gathers the
//! input (records, proofs, treatments) and calls [`produce`].
//!
//! Every format is made from one view of each record with review's redactions applied
//! (`view.rs`): withheld text is never handed to a writer, so it cannot reach a file. The
//! manifest proves what was produced unredacted: for each record its leaf, its inclusion
//! proof against a cosigned checkpoint, and the openings of the leaf's content commitments
//! for exactly the fields produced as sealed; [`verify_production`] checks all of it offline.

mod manifest;
mod pdf;
mod rsmf;
mod tables;
mod verify;
mod view;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vellum_record::api::foia::Exemption;
use vellum_record::Record;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the production does not verify: {0}")]
    Unverified(String),
}

pub use manifest::{Manifest, ManifestFile, ManifestRecord, MANIFEST_VERSION};
pub use rsmf::read_manifest as read_rsmf_manifest;
pub use verify::{verify_production, Trust, Verified};

/// Which formats of the records to write. Every production also has `withholding_log.csv`
/// and `manifest.json`, whatever is chosen here: what was withheld, and the proof of what
/// was produced, go with the records in any format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formats {
    /// `<case>.rsmf`.
    pub rsmf: bool,
    /// One PDF transcript per chat, Bates-numbered.
    pub pdf: bool,
    /// `loadfile.csv`.
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
    /// The custodians' signed binding of the log (JSON of `vellum_record::SignedBinding`),
    /// so that the checkpoint can be checked against `records.pub` alone; `None` for a log
    /// not bound yet (then only its verifier key vouches for it).
    #[serde(default)]
    pub binding: Option<String>,
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
    prepare_dir(out)?;
    let (views, withheld) = view::views(input)?;
    // Each released record is written once per format, then every record proved.
    let steps = [input.formats.rsmf, input.formats.pdf, input.formats.csv]
        .iter()
        .filter(|f| **f)
        .count() as u64;
    let total = views.len() as u64 * steps + input.items.len() as u64;
    let mut done = 0u64;
    let mut tick = |n: u64| {
        done += n;
        progress(Progress { done, total });
    };
    let mut files = Vec::new();
    let zone = jiff::tz::TimeZone::get(&input.time_zone)
        .map_err(|e| Error::Invalid(format!("time zone {:?}: {e}", input.time_zone)))?;
    let mut bates = pdf::Bates::default();
    if input.formats.pdf {
        let written = pdf::write(input, &views, &zone, out, &mut tick)?;
        files.extend(written.files);
        bates = written.bates;
    }
    if input.formats.rsmf {
        files.push(rsmf::write(input, &views, &zone, out, &mut tick)?);
    }
    if input.formats.csv {
        files.push(tables::write_loadfile(
            input, &views, &bates, &zone, out, &mut tick,
        )?);
    }
    files.push(tables::write_withholding_log(
        input, &views, &withheld, &zone, out,
    )?);
    let produced = views.len() as u64;
    let withheld_whole = input.items.len() as u64 - produced;
    manifest::write(input, &views, &bates, &files, out, &mut tick)?;
    files.push(manifest::FILE.to_owned());
    Ok(ProductionSummary {
        files,
        records_produced: produced,
        records_withheld: withheld_whole,
        bates_first: bates.first().map(|n| bates_number(input, n)),
        bates_last: bates.last().map(|n| bates_number(input, n)),
    })
}

/// A Bates number: the prefix (joined with `-` when it ends in a letter or digit) and a
/// six-digit counter.
pub fn bates_number(input: &ProductionInput, n: u64) -> String {
    let prefix = &input.bates_prefix;
    let sep = if prefix.chars().last().is_some_and(char::is_alphanumeric) {
        "-"
    } else {
        ""
    };
    format!("{prefix}{sep}{n:06}")
}

fn prepare_dir(out: &Path) -> Result<(), Error> {
    let io = |e| Error::Io(out.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(io)?;
    if std::fs::read_dir(out).map_err(io)?.next().is_some() {
        return Err(Error::Invalid(format!(
            "{} is not empty: a production is written into a new directory",
            out.display()
        )));
    }
    Ok(())
}

/// Writes `name` inside the production directory.
pub(crate) fn write_file(out: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let path: PathBuf = out.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::Io(path.display().to_string(), e))
}

/// A safe file-name stem from a case id or chat id.
pub(crate) fn file_stem(s: &str) -> String {
    let stem: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if stem.is_empty() {
        "production".into()
    } else {
        stem
    }
}

/// Unix ms in the office's time zone.
pub(crate) fn local(ms: i64, zone: &jiff::tz::TimeZone) -> jiff::ZonedDateTime {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(zone.clone())
}

/// RFC 3339 with the office's offset.
pub(crate) fn rfc3339(ms: i64, zone: &jiff::tz::TimeZone) -> String {
    local(ms, zone).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// For people: `2026-11-03 09:14:05 EST`.
pub(crate) fn readable(ms: i64, zone: &jiff::tz::TimeZone) -> String {
    local(ms, zone).strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}
