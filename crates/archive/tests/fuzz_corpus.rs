//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

/// Every seed of `fuzz/corpus/<target>`: (file name, bytes). Seeds named `junk-*` are
/// inputs the decoder must refuse; every other seed is a valid sample it must accept.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    let junk = seeds.iter().filter(|(n, _)| n.starts_with("junk-")).count();
    assert!(
        junk > 0 && junk < seeds.len(),
        "{target}: the corpus needs valid samples and junk"
    );
    seeds
}

/// Runs the fuzz body over every seed, and checks that `accepts` takes exactly the valid ones.
fn run(target: &str, body: fn(&[u8]), accepts: impl Fn(&[u8]) -> bool) {
    for (name, data) in corpus(target) {
        body(&data);
        assert_eq!(
            accepts(&data),
            !name.starts_with("junk-"),
            "{target}/{name}"
        );
    }
}

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
        // A whole log: entries back to back to the end, each with its right hash and a leaf.
        let mut rest = d;
        while rest.len() >= 36 {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let Some(bytes) = rest.get(36..36 + len) else {
                return false;
            };
            if vellum_tlog::leaf_hash(bytes)[..] != rest[4..36] || Leaf::from_bytes(bytes).is_err()
            {
                return false;
            }
            rest = &rest[36 + len..];
        }
        rest.is_empty()
    });
}
