#![no_main]
//! Auditors and devices parse checkpoints from the archive: notes and checkpoint bodies.
use libfuzzer_sys::fuzz_target;
use vellum_tlog::{Checkpoint, NoteSigner, NoteVerifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = NoteVerifier::parse(text);
    let verifier = NoteSigner::new("fuzz.example/log", &[3; 32]).unwrap().verifier();
    if let Ok(body) = NoteVerifier::open(text, &[verifier]) {
        let _ = Checkpoint::parse(body);
    }
    let _ = Checkpoint::parse(text);
});
