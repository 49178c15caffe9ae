#![no_main]
//! The org certificate decoder accepts only what the org signed (body: vellum_mls::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_mls::fuzz_bodies::device_certificate(data));
