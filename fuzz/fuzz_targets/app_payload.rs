#![no_main]
//! What a member decrypts is attacker-chosen (body: vellum_wire::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_wire::fuzz_bodies::app_payload(data));
