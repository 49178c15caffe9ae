//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's parsers. An
//! ordinary test runs each over the committed seed corpus (`fuzz/corpus/<target>`), so the
//! targets build and hold without a nightly toolchain. None may panic on any input.

use crate::{Checkpoint, NoteSigner, NoteVerifier};

/// The log whose notes the target accepts (a fixed, fuzz-only key).
pub const FUZZ_LOG_NAME: &str = "fuzz.example/log";
pub const FUZZ_LOG_SEED: [u8; 32] = [3; 32];

/// `signed_note`: auditors and devices parse checkpoints from the archive: verifier keys,
/// notes and checkpoint bodies.
pub fn signed_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = NoteVerifier::parse(text);
    let verifier = NoteSigner::new(FUZZ_LOG_NAME, &FUZZ_LOG_SEED)
        .expect("fixed key")
        .verifier();
    if let Ok(body) = NoteVerifier::open(text, &[verifier]) {
        let _ = Checkpoint::parse(body);
    }
    let _ = Checkpoint::parse(text);
}
