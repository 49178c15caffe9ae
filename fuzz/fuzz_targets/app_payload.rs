#![no_main]
//! What a member decrypts is attacker-chosen: decoding must never panic, and what decodes
//! must re-encode to something that decodes to the same value.
use libfuzzer_sys::fuzz_target;
use vellum_wire::AppPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = AppPayload::decode(data) {
        assert_eq!(AppPayload::decode(&payload.encode()).unwrap(), payload);
    }
});
