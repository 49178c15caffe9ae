#![no_main]
//! The archiver and auditors decode leaves from log.bin.
use libfuzzer_sys::fuzz_target;
use vellum_archive::Leaf;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaf) = Leaf::from_bytes(data) {
        assert_eq!(Leaf::from_bytes(&leaf.to_bytes()).unwrap(), leaf);
    }
});
