#![no_main]
//! The client decodes whatever the server sends (body: vellum_wire::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_wire::fuzz_bodies::sync_response(data));
