#![no_main]
//! Leaves of log.bin (body: vellum_archive::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_archive::fuzz_bodies::archive_leaf(data));
