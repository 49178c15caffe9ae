#![no_main]
//! Custodians hand in share files; a bad one must be refused without a panic.
use libfuzzer_sys::fuzz_target;
use vellum_records::{generate, RecordsPublic, Unsealer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = RecordsPublic::parse(text);
    let public = generate(3, 2).unwrap().public;
    let mut unsealer = Unsealer::new(public);
    assert!(unsealer.add(text).is_err(), "a share from nowhere was accepted");
});
