//! The archived record: what the archiver seals for every event of a record chat, the
//! records API's request and response types, and the leaf reference a receipt names.
//!
//! Records must open for as long as they are retained (years), so the format is versioned
//! and decoding accepts every shape ever sealed: version 0 is the 0.1.0 `ChatEvent` (no
//! version field, `kind` a string); version 1 adds the version and a typed kind, including
//! [`RecordKind::Unknown`] for a payload this version cannot interpret, kept verbatim;
//! version 2 adds the entry's log hash and the salt of the leaf's content commitments;
//! version 3 adds edits and reactions (naming their `target`) and a message's reply and
//! mentions.

pub mod api;
pub mod content;
mod receipt;
mod record;
mod reference;
mod trust;

pub use receipt::{
    check_checkpoint, cosigners, verify_receipt, BoundCheckpoint, ProvenReceipt, ReceiptError,
    ReceiptProof, VerifiedReceipt, RECEIPT_PROOF_VERSION,
};
pub use record::{AttachedFile, Member, Record, RecordKind, ATTACHMENT_PART_BYTES, FORMAT_VERSION};
pub use reference::{parse_reference, reference};
pub use trust::{
    bound_log, check_origin, unbound_archiver, ArchiverBinding, PreviousLog, RecordsPublic,
    SignedBinding, TrustError, BINDING_CONTEXT, BINDING_VERSION, RECORDS_PUBLIC_VERSION,
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

    /// Verifying any receipt (against any log key on the first line), or any exported
    /// proof, never panics.
    pub fn receipt(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let (key, receipt) = text.split_once('\n').unwrap_or(("", &text));
        if let Some(binding) = binding_of(key) {
            let _ = crate::verify_receipt(receipt, &binding);
        }
        if let (Ok(proof), Ok(public)) = (
            crate::ReceiptProof::parse(&text),
            crate::RecordsPublic::parse(FUZZ_RECORDS_PUB),
        ) {
            let _ = proof.verify(&public);
        }
    }

    /// A binding of the log with verifier key `log_key`, without witnesses; `None` if it is
    /// not a note verifier key.
    pub fn binding_of(log_key: &str) -> Option<crate::ArchiverBinding> {
        let origin = vellum_tlog::NoteVerifier::parse(log_key)
            .ok()?
            .name()
            .to_owned();
        Some(crate::ArchiverBinding {
            version: crate::BINDING_VERSION,
            serial: 1,
            origin,
            archiver_device: "fuzz".into(),
            archiver_identity: String::new(),
            log_key: log_key.to_owned(),
            witnesses: vec![],
            witness_quorum: 0,
            issued_at: 0,
            previous: None,
        })
    }

    /// A valid records.pub (version 2) the receipt fuzz body checks proofs against.
    const FUZZ_RECORDS_PUB: &str = r#"{"version":2,"public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","threshold":2,"custodians":2,"share_hashes":["00","00"],"origin":"fuzz.example/log","binding_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="}"#;
}
