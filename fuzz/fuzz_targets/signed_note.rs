#![no_main]
//! Checkpoints and notes from the archive (body: vellum_tlog::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_tlog::fuzz_bodies::signed_note(data));
