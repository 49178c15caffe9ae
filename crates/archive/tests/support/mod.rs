//! What the archive's test binaries share: reading log.bin's entries and copying and
//! damaging archive directories.

use std::fs;
use std::path::Path;

use vellum_archive::verify;

/// The entries of log.bin: a record's carries its sealed key after the leaf hash (the top
/// bit of its length word says so), in archives begun before that it does not.
pub fn log_entries(log: &[u8]) -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let word = u32::from_be_bytes(log[at..at + 4].try_into().unwrap());
        let header = if word >> 31 == 1 { 100 } else { 36 };
        let len = (word & 0x7fff_ffff) as usize;
        entries.push(log[at..at + header + len].to_vec());
        at += header + len;
    }
    entries
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("checkpoints")).unwrap();
    for sub in ["", "checkpoints"] {
        for entry in fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// Flips each byte of each of `files` (paths in the archive `dir`) in a copy of the archive,
/// one at a time, and checks that `verify` notices every one. Returns how many it flipped.
pub fn flip_every_byte(dir: &Path, files: &[String]) -> usize {
    let mut flips = 0;
    for file in files {
        let original = fs::read(dir.join(file)).unwrap();
        for i in 0..original.len() {
            let copy = tempfile::tempdir().unwrap();
            copy_dir(dir, copy.path());
            let mut bytes = original.clone();
            bytes[i] ^= 0x01;
            fs::write(copy.path().join(file), &bytes).unwrap();
            let report = verify(copy.path(), None);
            assert!(!report.ok(), "flipping byte {i} of {file} went unnoticed");
            flips += 1;
        }
    }
    flips
}
