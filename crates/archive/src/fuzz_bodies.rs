//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's parsers. An
//! ordinary test runs each over the committed seed corpus (`fuzz/corpus/<target>`), so the
//! targets build and hold without a nightly toolchain. None may panic on any input.

use crate::files::{encode, parse_log, Tail};
use crate::Leaf;

/// `archive_leaf`: the archiver and auditors decode leaves from log.bin.
pub fn archive_leaf(data: &[u8]) {
    if let Ok(leaf) = Leaf::from_bytes(data) {
        assert_eq!(Leaf::from_bytes(&leaf.to_bytes()).unwrap(), leaf);
    }
}

/// `archive_log`: opening an archive (and `archive verify`) splits log.bin into entries.
/// The split accounts for every byte: whole entries back to back from offset 0, then a
/// clean end, a cut-short entry or a damaged length; an entry whose leaf decodes, with its
/// stored hash right, re-encodes to exactly its bytes (with its key, if it carries one).
pub fn archive_log(data: &[u8]) {
    let (entries, tail) = parse_log(data);
    let mut at = 0u64;
    for entry in &entries {
        assert_eq!(entry.offset, at, "entries are back to back");
        at += entry.len();
        if let Ok(leaf) = Leaf::from_bytes(&entry.bytes) {
            let canonical = leaf.to_bytes() == entry.bytes;
            let hash_right = vellum_tlog::leaf_hash(&entry.bytes) == entry.stored_hash;
            if canonical && hash_right {
                let start = entry.offset as usize;
                let encoded = encode(&leaf, entry.key.as_deref()).expect("a parsed leaf fits");
                assert_eq!(&data[start..start + encoded.len()], &encoded[..]);
            }
        }
    }
    match tail {
        Tail::Clean => assert_eq!(at, data.len() as u64),
        Tail::Incomplete(offset) | Tail::Invalid(offset) => {
            assert_eq!(offset, at);
            assert!(offset < data.len() as u64);
        }
    }
}
