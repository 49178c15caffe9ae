//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::run;

use vellum_tlog::fuzz_bodies::{self, FUZZ_LOG_NAME, FUZZ_LOG_SEED};
use vellum_tlog::{NoteSigner, NoteVerifier};

#[test]
fn signed_note() {
    let verifier = NoteSigner::new(FUZZ_LOG_NAME, &FUZZ_LOG_SEED)
        .unwrap()
        .verifier();
    run("signed_note", fuzz_bodies::signed_note, |d| {
        let text = std::str::from_utf8(d).unwrap_or_default();
        NoteVerifier::parse(text).is_ok()
            || NoteVerifier::open(text, std::slice::from_ref(&verifier)).is_ok()
    });
}
