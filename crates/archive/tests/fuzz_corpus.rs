//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::run;

use vellum_archive::{fuzz_bodies, Leaf};

#[test]
fn archive_leaf() {
    run("archive_leaf", fuzz_bodies::archive_leaf, |d| {
        Leaf::from_bytes(d).is_ok()
    });
}

#[test]
fn archive_log() {
    run("archive_log", fuzz_bodies::archive_log, |d| {
        // A whole log: entries back to back to the end, each with its right hash and a leaf
        // (after the 64-byte key a record's entry carries, said by its length's top bit).
        let mut rest = d;
        while rest.len() >= 36 {
            let word = u32::from_be_bytes(rest[..4].try_into().unwrap());
            let header = if word >> 31 == 1 { 100 } else { 36 };
            let len = (word & 0x7fff_ffff) as usize;
            let Some(bytes) = rest.get(header..header + len) else {
                return false;
            };
            if vellum_tlog::leaf_hash(bytes)[..] != rest[4..36] || Leaf::from_bytes(bytes).is_err()
            {
                return false;
            }
            rest = &rest[header + len..];
        }
        rest.is_empty()
    });
}
