//! Runs a fuzz target's body over its committed seed corpus as an ordinary test, so the
//! targets cannot rot without a nightly toolchain. Each crate's `tests/fuzz_corpus.rs`
//! includes this file (`#[path]`), so there is one copy of it.

/// Every seed of `fuzz/corpus/<target>`: (file name, bytes). Seeds named `junk-*` are
/// inputs the decoder must refuse; every other seed is a valid sample it must accept.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
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
pub fn run(target: &str, body: fn(&[u8]), accepts: impl Fn(&[u8]) -> bool) {
    for (name, data) in corpus(target) {
        body(&data);
        assert_eq!(
            accepts(&data),
            !name.starts_with("junk-"),
            "{target}/{name}"
        );
    }
}
