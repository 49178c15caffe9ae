//! The archived record: what the archiver seals for every event of a record chat, the
//! records API's request and response types, and the leaf reference a receipt names.
//!
//! Records must open for as long as they are retained (years), so the format is versioned
//! and decoding accepts every shape ever sealed: version 0 is the 0.1.0 `ChatEvent` (no
//! version field, `kind` a string); version 1 adds the version and a typed kind, including
//! [`RecordKind::Unknown`] for a payload this version cannot interpret, kept verbatim.

pub mod api;
mod receipt;
mod record;
mod reference;
mod trust;

pub use receipt::verify_receipt;
pub use record::{Member, Record, RecordKind, FORMAT_VERSION};
pub use reference::{parse_reference, reference};
pub use trust::{
    check_origin, unbound_archiver, ArchiverBinding, PreviousLog, RecordsPublic, SignedBinding,
    TrustError, BINDING_CONTEXT, BINDING_VERSION, RECORDS_PUBLIC_VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the record is not valid JSON of any known shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("record format version {found} is newer than this build reads (up to {FORMAT_VERSION}); upgrade Vellum")]
    TooNew { found: u32 },
    #[error("the record is invalid: {0}")]
    Invalid(String),
}

/// Bodies of the fuzz targets (`fuzz/fuzz_targets`), also run over the committed seed corpus
/// by ordinary tests, so that they build and hold without a nightly toolchain.
pub mod fuzz_bodies {
    /// Decoding any bytes as a record never panics; what decodes re-encodes and decodes to
    /// the same record.
    pub fn record(data: &[u8]) {
        if let Ok(r) = crate::Record::decode(data) {
            let again = crate::Record::decode(&r.encode()).expect("an encoded record decodes");
            assert_eq!(again, r);
        }
    }

    /// Verifying any receipt (against any key text) never panics.
    pub fn receipt(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let (key, receipt) = text.split_once('\n').unwrap_or(("", &text));
        let _ = crate::verify_receipt(receipt, Some(key));
        let _ = crate::verify_receipt(&text, None);
    }
}
