#![no_main]
//! Share files and records.pub (body: vellum_records::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_records::fuzz_bodies::records_share(data));
