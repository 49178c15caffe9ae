#![no_main]
//! `add-checkpoint` bodies, cosignature lines and witness keys (body: vellum_witness::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_witness::fuzz_bodies::witness_request(data));
