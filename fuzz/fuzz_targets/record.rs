#![no_main]
//! Archived records, as unsealed (body: vellum_record::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_record::fuzz_bodies::record(data));
