//! Archives in the two-file layout, written before records carried their keys in their
//! entries (`tests/fixtures/two-files`: keys in keys.bin, two fsyncs per record). Today's
//! code reads them as they are and never rewrites them: their records keep their keys.bin
//! slots, and new records go into log.bin with their keys, one fsync each.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{copy_dir, flip_every_byte, log_entries};
use vellum_archive::{verify, Archive, Error};
use vellum_records::{seal, RecordsPublic, RecordsSecret, SealedRecord, UnsealProgress, Unsealer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/two-files")
}

/// A copy of the fixture's archive, for a test to change.
fn archive_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("archive"), dir.path());
    dir
}

fn signer() -> vellum_tlog::NoteSigner {
    vellum_tlog::NoteSigner::new("records.test/vellum", &[7; 32]).unwrap()
}

fn public() -> RecordsPublic {
    RecordsPublic::parse(&fs::read_to_string(fixture().join("records.pub")).unwrap()).unwrap()
}

fn secret() -> RecordsSecret {
    let mut unsealer = Unsealer::new(public());
    unsealer
        .add(&fs::read_to_string(fixture().join("share-1")).unwrap())
        .unwrap();
    match unsealer
        .add(&fs::read_to_string(fixture().join("share-2")).unwrap())
        .unwrap()
    {
        UnsealProgress::Unsealed(secret) => secret,
        UnsealProgress::NeedMore { .. } => unreachable!("two of three"),
    }
}

fn sealed(reference: &str) -> SealedRecord {
    seal(
        &public().key_bytes().unwrap(),
        reference.as_bytes(),
        format!("MARKER-{reference}").as_bytes(),
    )
    .unwrap()
}

fn plaintext(archive: &Archive, index: u64, reference: &str) -> Vec<u8> {
    let record = archive.record(index).unwrap().expect("not disposed");
    vellum_records::open(&secret(), reference.as_bytes(), &record)
        .unwrap()
        .to_vec()
}

/// The archive files (relative paths) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["", "checkpoints"] {
        for entry in fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file()
                && fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found
}

fn bytes(dir: &Path, file: &str) -> Vec<u8> {
    fs::read(dir.join(file)).unwrap()
}

#[test]
fn issue8_a_two_file_archive_opens_as_it_is_and_takes_records_with_one_fsync_each() {
    let dir = archive_copy();
    let (keys, log) = (bytes(dir.path(), "keys.bin"), bytes(dir.path(), "log.bin"));
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (
            report.leaves,
            report.records,
            report.disposed,
            report.checkpoints
        ),
        (8, 5, 1, 2)
    );
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(bytes(dir.path(), "keys.bin"), keys, "open rewrites nothing");
    assert_eq!(bytes(dir.path(), "log.bin"), log);
    assert_eq!(plaintext(&archive, 1, "chat/1"), b"MARKER-record-1");
    assert_eq!(plaintext(&archive, 5, "chat/9"), b"MARKER-record-9");
    assert!(archive.record(0).unwrap().is_none(), "disposed before");
    assert!(
        !archive
            .append_record("chat/2", 9, &sealed("chat/2"), None)
            .unwrap()
            .new,
        "an old record re-delivered is not appended again"
    );

    // A new record: one fsync, its key in its own entry, keys.bin untouched.
    let faults = archive.faults();
    let record = sealed("chat/20");
    let syncs = faults.syncs();
    let appended = archive.append_record("chat/20", 20, &record, None).unwrap();
    assert_eq!((appended.index, appended.new), (8, true));
    assert_eq!(faults.syncs() - syncs, 1);
    assert_eq!(bytes(dir.path(), "keys.bin"), keys);
    assert_eq!(files_holding(dir.path(), &record.sealed_key), ["log.bin"]);
    let entries = log_entries(&bytes(dir.path(), "log.bin"));
    assert_eq!(entries[8][0] >> 7, 1, "the new entry carries its key");
    assert!(entries[..8].iter().all(|e| e[0] >> 7 == 0));
    assert_eq!(plaintext(&archive, 8, "chat/20"), b"MARKER-chat/20");
    archive.checkpoint().unwrap();
    drop(archive);

    let archive = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(plaintext(&archive, 1, "chat/1"), b"MARKER-record-1");
    assert_eq!(plaintext(&archive, 8, "chat/20"), b"MARKER-chat/20");
    assert_eq!(
        archive.records().collect::<Vec<_>>(),
        [
            (0, true),
            (1, false),
            (2, false),
            (3, false),
            (5, false),
            (8, false)
        ]
    );
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.records, report.attested), (6, 9));
}

/// Disposition destroys the key where it is: in keys.bin for an old record, in the record's
/// entry for a new one. Afterwards no file of the archive holds it.
#[test]
fn issue8_disposition_overwrites_the_key_on_disk_in_either_layout() {
    let dir = archive_copy();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    let old = archive.record(1).unwrap().unwrap().sealed_key;
    let new = sealed("chat/21");
    let index = archive
        .append_record("chat/21", 21, &new, None)
        .unwrap()
        .index;
    for (leaf, key, file) in [(1, old, "keys.bin"), (index, new.sealed_key, "log.bin")] {
        assert_eq!(files_holding(dir.path(), &key), [file]);
        let syncs = archive.faults().syncs();
        archive.dispose(leaf, "transitory", 30).unwrap();
        assert_eq!(
            archive.faults().syncs() - syncs,
            2,
            "the leaf, then the wipe"
        );
        assert!(
            files_holding(dir.path(), &key).is_empty(),
            "leaf {leaf}: its key is overwritten in {file}"
        );
        assert!(archive.record(leaf).unwrap().is_none());
    }
    archive.checkpoint().unwrap();
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.disposed, 3);
}

/// What the two-fsync writer's crash could leave (a key slot whose leaf never made it, and
/// half an entry) is trimmed at open; a failed append afterwards leaves both files as they
/// were and its retry appends once.
#[test]
fn issue8_the_earlier_writers_crash_is_recovered_and_a_failed_append_changes_nothing() {
    let dir = archive_copy();
    let (keys, log) = (bytes(dir.path(), "keys.bin"), bytes(dir.path(), "log.bin"));
    let mut orphan = keys.clone();
    orphan.extend_from_slice(&8u64.to_be_bytes());
    orphan.extend_from_slice(&[5u8; 64]);
    fs::write(dir.path().join("keys.bin"), orphan).unwrap();
    let mut torn = log.clone();
    torn.extend_from_slice(&[0, 0, 0, 50, 1, 2, 3]);
    fs::write(dir.path().join("log.bin"), torn).unwrap();

    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(bytes(dir.path(), "keys.bin"), keys);
    assert_eq!(bytes(dir.path(), "log.bin"), log);
    archive.faults().fail_next(1);
    let e = archive
        .append_record("chat/22", 22, &sealed("chat/22"), None)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{e}"
    );
    assert_eq!(bytes(dir.path(), "keys.bin"), keys);
    assert_eq!(bytes(dir.path(), "log.bin"), log);
    let appended = archive
        .append_record("chat/22", 22, &sealed("chat/22"), None)
        .unwrap();
    assert_eq!((appended.index, appended.new), (8, true));
    archive.checkpoint().unwrap();
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, 6);
}

#[test]
fn issue8_flipping_any_byte_of_a_two_file_archive_with_new_records_is_caught() {
    let dir = archive_copy();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    for i in 0..2 {
        let reference = format!("chat/3{i}");
        archive
            .append_record(&reference, 31, &sealed(&reference), None)
            .unwrap();
    }
    archive.dispose(9, "transitory", 32).unwrap();
    archive.checkpoint().unwrap();
    let mut files: Vec<String> = ["log.bin", "keys.bin", "log.vkey"].map(String::from).into();
    for entry in fs::read_dir(dir.path().join("checkpoints")).unwrap() {
        files.push(format!(
            "checkpoints/{}",
            entry.unwrap().file_name().to_string_lossy()
        ));
    }
    assert!(flip_every_byte(dir.path(), &files) > 2000);
}

#[test]
fn issue8_a_two_file_archive_without_its_keys_is_damaged() {
    let dir = archive_copy();
    fs::remove_file(dir.path().join("keys.bin")).unwrap();
    let report = verify(dir.path(), None);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("keys.bin") && p.contains("5 records")),
        "{:?}",
        report.problems
    );
    assert!(matches!(
        Archive::open(dir.path(), signer()),
        Err(Error::Damaged(_))
    ));
    assert!(!dir.path().join("keys.bin").exists(), "nothing created");
}

/// The archive that 0.1.0 wrote (tests/fixtures/v0.1.0; its log key is not kept) still
/// verifies with today's reader.
#[test]
fn issue8_the_0_1_0_archive_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0/archiver/archive"),
        dir.path(),
    );
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert!(report.records > 0 && report.attested > 0);
}
