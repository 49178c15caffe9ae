#![no_main]
//! The server parses MLS bytes from any enrolled device (body: vellum_mls::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_mls::fuzz_bodies::mls_message(data));
