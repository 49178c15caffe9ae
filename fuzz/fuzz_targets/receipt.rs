#![no_main]
//! Archive receipts, as a sender's device verifies them (body: vellum_record::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_record::fuzz_bodies::receipt(data));
