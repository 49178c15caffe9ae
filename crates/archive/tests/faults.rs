//! Faults: a full disk mid-append, mid-checkpoint or at open, and a crash at every byte of
//! an append. The archive always reopens, holds each record once, and verifies.

use std::fs;
use std::path::Path;

use vellum_archive::{verify, Archive, Error, Leaf};
use vellum_records::{generate, seal, SealedRecord};

fn signer() -> vellum_tlog::NoteSigner {
    vellum_tlog::NoteSigner::new("records.test/vellum", &[7; 32]).unwrap()
}

fn record(g: &vellum_records::Generated, reference: &str) -> SealedRecord {
    seal(
        &g.public.key_bytes().unwrap(),
        reference.as_bytes(),
        reference.as_bytes(),
    )
    .unwrap()
}

fn lengths(dir: &Path) -> (u64, u64) {
    let len = |f: &str| fs::metadata(dir.join(f)).unwrap().len();
    (len("log.bin"), len("keys.bin"))
}

fn is_disk_full(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull)
}

#[test]
fn a_failed_append_rolls_back_and_its_retry_appends_once() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    archive
        .append_record("chat/0", 0, &record(&g, "chat/0"), None)
        .unwrap();
    let faults = archive.faults();
    let before = lengths(dir.path());
    // Failing mid key slot (skip 0), and mid leaf after the key slot was written (skip 1).
    for skip in [0, 1] {
        faults.fail_after(skip, 1);
        let e = archive
            .append_record("chat/1", 1, &record(&g, "chat/1"), None)
            .unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        assert_eq!(
            lengths(dir.path()),
            before,
            "both files cut back (skip {skip})"
        );
        assert_eq!(archive.size(), 1);
    }
    let e = archive
        .append(Leaf::Access {
            time: 2,
            action: "a".into(),
            detail: "b".into(),
        })
        .err();
    assert!(e.is_none(), "the fault was used up: {e:?}");
    faults.fail_next(1);
    assert!(archive
        .append(Leaf::Access {
            time: 2,
            action: "c".into(),
            detail: "d".into(),
        })
        .is_err());
    // The disk has room again: the retry appends the record once.
    let appended = archive
        .append_record("chat/1", 1, &record(&g, "chat/1"), None)
        .unwrap();
    assert_eq!((appended.index, appended.new), (2, true));
    assert!(
        !archive
            .append_record("chat/1", 1, &record(&g, "chat/1"), None)
            .unwrap()
            .new
    );
    archive.checkpoint().unwrap();
    drop(archive);
    let reopened = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(reopened.size(), 3);
    assert_eq!(reopened.records().count(), 2);
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn a_failed_checkpoint_leaves_no_file_and_leftovers_are_cleaned_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    archive
        .append_record("chat/0", 0, &record(&g, "chat/0"), None)
        .unwrap();
    archive.faults().fail_next(1);
    assert!(is_disk_full(&archive.checkpoint().unwrap_err()));
    let cps = dir.path().join("checkpoints");
    assert_eq!(
        fs::read_dir(&cps).unwrap().count(),
        0,
        "no empty checkpoint"
    );
    archive.checkpoint().unwrap();
    drop(archive);

    // What an interrupted write (this one's or the earlier writer's) can leave: a
    // temporary file and an empty checkpoint. Open removes both and the archive verifies.
    fs::write(cps.join(format!(".{:020}.tmp", 2)), b"half a no").unwrap();
    fs::write(cps.join(format!("{:020}", 2)), b"").unwrap();
    fs::write(dir.path().join(".log.vkey.tmp"), b"").unwrap();
    assert!(
        !verify(dir.path(), None).ok(),
        "an empty checkpoint is a problem"
    );
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    let names: Vec<String> = fs::read_dir(&cps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{:020}", 1)]);
    assert!(!dir.path().join(".log.vkey.tmp").exists());
    archive
        .append_record("chat/1", 1, &record(&g, "chat/1"), None)
        .unwrap();
    archive.checkpoint().unwrap();
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.records, report.attested), (2, 2));
}

#[test]
fn a_crash_at_any_byte_of_an_append_reopens_with_the_record_or_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    archive
        .append_record("chat/0", 0, &record(&g, "chat/0"), None)
        .unwrap();
    archive.checkpoint().unwrap();
    let (log0, keys0) = lengths(dir.path());
    archive
        .append_record("chat/1", 1, &record(&g, "chat/1"), None)
        .unwrap();
    drop(archive);
    let log = fs::read(dir.path().join("log.bin")).unwrap();
    let keys = fs::read(dir.path().join("keys.bin")).unwrap();
    // The key slot is written (and synced) before the leaf: every state a crash can leave
    // is a prefix of the slot with no leaf, or the whole slot and a prefix of the leaf.
    let mut states = Vec::new();
    for k in keys0..=keys.len() as u64 {
        states.push((log0, k));
    }
    for l in log0..=log.len() as u64 {
        states.push((l, keys.len() as u64));
    }
    for (l, k) in states {
        let copy = tempfile::tempdir().unwrap();
        fs::create_dir_all(copy.path().join("checkpoints")).unwrap();
        for f in ["log.vkey", &format!("checkpoints/{:020}", 1)] {
            fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        fs::write(copy.path().join("log.bin"), &log[..l as usize]).unwrap();
        fs::write(copy.path().join("keys.bin"), &keys[..k as usize]).unwrap();
        let mut archive = Archive::open(copy.path(), signer())
            .unwrap_or_else(|e| panic!("log {l} keys {k}: {e}"));
        let whole = l == log.len() as u64;
        assert_eq!(
            archive.size(),
            if whole { 2 } else { 1 },
            "log {l} keys {k}"
        );
        // Whatever survived, the sender's retry lands once and the archive verifies.
        let again = archive
            .append_record("chat/1", 1, &record(&g, "chat/1"), None)
            .unwrap();
        assert_eq!((again.index, again.new), (1, !whole));
        archive.checkpoint().unwrap();
        let report = verify(copy.path(), None);
        assert!(report.ok(), "log {l} keys {k}: {:?}", report.problems);
        assert_eq!(report.records, 2);
    }
}

/// A disposition whose key wipe hit a full disk: the record's leaf says disposed, and the
/// next try wipes the key (it is refused as already disposed, but no key lingers).
#[test]
fn a_key_wipe_that_failed_is_finished_by_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(3, 2, "records.test/vellum").unwrap();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    let index = archive
        .append_record("chat/1", 1, &record(&g, "chat/1"), None)
        .unwrap()
        .index;
    // The first slot's sealed key: keys.bin bytes 8..72 (after the slot's leaf index).
    let key_bytes = || fs::read(dir.path().join("keys.bin")).unwrap()[8..72].to_vec();
    assert!(key_bytes().iter().any(|b| *b != 0));
    // The disposition leaf is written; the wipe of the key after it fails.
    archive.faults().fail_after(1, 1);
    let err = archive.dispose(index, "transitory", 2).unwrap_err();
    assert!(is_disk_full(&err), "{err}");
    assert!(
        key_bytes().iter().any(|b| *b != 0),
        "the key is still there"
    );
    let again = archive.dispose(index, "transitory", 3).unwrap_err();
    assert!(matches!(again, Error::Invalid(_)), "{again}");
    assert!(key_bytes().iter().all(|b| *b == 0), "wiped by the retry");
    assert!(verify(dir.path(), None).ok());
}
