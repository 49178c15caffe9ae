//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's parsers; an
//! ordinary test runs each over the committed seed corpus. None may panic on any input.

use std::collections::HashMap;

use vellum_tlog::cosignature::{CosignatureLine, CosignatureVerifier};
use vellum_tlog::fuzz_bodies::{FUZZ_LOG_NAME, FUZZ_LOG_SEED};
use vellum_tlog::{NoteSigner, NoteVerifier};

use crate::protocol::{self, AddCheckpoint, Refusal};

/// The logs the target's witness follows: the fuzz-only log key of vellum-tlog.
pub fn fuzz_logs() -> HashMap<String, Vec<NoteVerifier>> {
    let log = NoteSigner::new(FUZZ_LOG_NAME, &FUZZ_LOG_SEED).expect("fixed key");
    HashMap::from([(FUZZ_LOG_NAME.to_owned(), vec![log.verifier()])])
}

/// Parses and verifies an `add-checkpoint` body as the witness does (before its state).
pub fn check_request(data: &[u8]) -> Result<(), Refusal> {
    let request = AddCheckpoint::parse(data)?;
    let _ = request.to_body();
    let verified = protocol::verify(&request, &fuzz_logs())?;
    let _ = protocol::check_consistency(&request, &verified.checkpoint, None);
    let _ = protocol::check_consistency(&request, &verified.checkpoint, Some(&verified.checkpoint));
    Ok(())
}

/// `witness_request`: what strangers send a witness, and the witness key and cosignature
/// lines that logs and auditors parse.
pub fn witness_request(data: &[u8]) {
    let _ = check_request(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CosignatureLine::parse(text);
        if let Ok(verifier) = CosignatureVerifier::parse(text) {
            let _ = verifier.verify(text);
        }
    }
}
