#![no_main]
//! The log.bin entry parser (body: vellum_archive::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_archive::fuzz_bodies::archive_log(data));
