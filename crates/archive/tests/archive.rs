//! The archive directory: durability, disposition, and detection of every kind of tampering.

use std::fs;
use std::path::Path;

mod support;

use support::{copy_dir, flip_every_byte, log_entries};
use vellum_archive::{verify, Archive, Leaf};
use vellum_records::{generate, seal, RecordsSecret, UnsealProgress, Unsealer};
use vellum_tlog::{
    leaf_hash, verify_consistency, verify_inclusion, Checkpoint, NoteSigner, NoteVerifier,
};

fn signer() -> NoteSigner {
    NoteSigner::new("records.test/vellum", &[7; 32]).unwrap()
}

fn unsealed(g: &vellum_records::Generated) -> RecordsSecret {
    let mut u = Unsealer::new(g.public.clone());
    u.add(&g.shares[0]).unwrap();
    match u.add(&g.shares[1]).unwrap() {
        UnsealProgress::Unsealed(s) => s,
        UnsealProgress::NeedMore { .. } => unreachable!(),
    }
}

/// An archive with records, a hold, a disposition and two checkpoints.
fn populated(dir: &Path, g: &vellum_records::Generated) -> String {
    let public = g.public.key_bytes().unwrap();
    let mut archive = Archive::open(dir, signer()).unwrap();
    for i in 0..4 {
        let reference = format!("chat/{i}");
        let record = seal(
            &public,
            reference.as_bytes(),
            format!("MARKER-record-{i}").as_bytes(),
        )
        .unwrap();
        archive.append_record(&reference, i, &record, None).unwrap();
    }
    let first = archive.checkpoint().unwrap();
    archive
        .append(Leaf::Hold {
            time: 5,
            name: "foia-12".into(),
            custodian: Some("alice".into()),
            chat: None,
            from: None,
            to: None,
            custodians: Vec::new(),
            chats: Vec::new(),
            reason: None,
            author: None,
        })
        .unwrap();
    let record = seal(&public, b"chat/9", b"MARKER-record-9").unwrap();
    archive.append_record("chat/9", 6, &record, None).unwrap();
    archive.dispose(0, "transitory", 7).unwrap();
    archive
        .append(Leaf::Access {
            time: 8,
            action: "search".into(),
            detail: "query".into(),
        })
        .unwrap();
    archive.checkpoint().unwrap();
    first
}

#[test]
fn records_survive_reopening_open_after_unseal_and_prove_inclusion() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(3, 2, "records.test/vellum").unwrap();
    let first = populated(dir.path(), &g);
    let report = verify(dir.path(), Some(&first));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (
            report.leaves,
            report.records,
            report.disposed,
            report.checkpoints
        ),
        (8, 5, 1, 3)
    );
    let bytes = fs::read(dir.path().join("log.bin")).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"MARKER"),
        "log.bin holds plaintext"
    );
    assert!(
        !dir.path().join("keys.bin").exists(),
        "a new archive keeps each record's key in the record's entry"
    );

    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(archive.size(), 8);
    let secret = unsealed(&g);
    let record = archive.record(1).unwrap().unwrap();
    assert_eq!(
        vellum_records::open(&secret, b"chat/1", &record)
            .unwrap()
            .as_slice(),
        b"MARKER-record-1"
    );
    assert!(
        archive.record(0).unwrap().is_none(),
        "disposed: its key is gone"
    );
    // A re-delivered event is archived once.
    let again = seal(&g.public.key_bytes().unwrap(), b"chat/1", b"dup").unwrap();
    assert_eq!(
        archive.append_record("chat/1", 9, &again, None).unwrap(),
        vellum_archive::Appended {
            index: 1,
            new: false
        }
    );
    assert_eq!(archive.size(), 8);

    // Inclusion of every leaf, and consistency of the two checkpoints, against signed roots.
    let note = archive.checkpoint().unwrap();
    let verifier = NoteVerifier::parse(
        fs::read_to_string(dir.path().join("log.vkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let cp = Checkpoint::parse(NoteVerifier::open(&note, std::slice::from_ref(&verifier)).unwrap())
        .unwrap();
    for index in 0..cp.size {
        let proof = archive.inclusion_proof(index, cp.size).unwrap();
        verify_inclusion(
            &archive.leaf_hash(index).unwrap(),
            index,
            cp.size,
            &proof,
            &cp.root,
        )
        .unwrap();
    }
    let old = Checkpoint::parse(NoteVerifier::open(&first, &[verifier]).unwrap()).unwrap();
    let proof = archive.consistency_proof(old.size, cp.size).unwrap();
    verify_consistency(old.size, cp.size, &old.root, &cp.root, &proof).unwrap();
    assert!(
        matches!(archive.leaf(5).unwrap(), Leaf::Record { time: 6, ref reference, .. } if reference == "chat/9")
    );
}

#[test]
fn flipping_any_byte_of_any_archive_file_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    populated(dir.path(), &g);
    let mut files = vec!["log.bin".to_string(), "log.vkey".to_string()];
    for entry in fs::read_dir(dir.path().join("checkpoints")).unwrap() {
        files.push(format!(
            "checkpoints/{}",
            entry.unwrap().file_name().to_string_lossy()
        ));
    }
    let flips = flip_every_byte(dir.path(), &files);
    assert!(flips > 1000, "checked {flips} flips");
}

#[test]
fn truncation_and_removed_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    populated(dir.path(), &g);
    let log = fs::read(dir.path().join("log.bin")).unwrap();

    // Truncated mid-entry, and at an entry boundary (the last leaf gone).
    for cut in [log.len() - 10, log.len() - 1] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        fs::write(copy.path().join("log.bin"), &log[..cut]).unwrap();
        let report = verify(copy.path(), None);
        assert!(
            report.problems.iter().any(|p| p.contains("truncated")),
            "{:?}",
            report.problems
        );
    }

    // A record removed cleanly: its entry, with its key, every stored hash consistent.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let mut entries = log_entries(&log);
    entries.remove(2);
    fs::write(copy.path().join("log.bin"), entries.concat()).unwrap();
    let report = verify(copy.path(), None);
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("leaf 3") || p.contains("removed")),
        "{:?}",
        report.problems
    );
    assert!(
        Archive::open(copy.path(), signer()).is_err(),
        "the archiver refuses to run on it"
    );

    // A leaf rewritten with its stored hash fixed up: the archiver refuses to open it, so it
    // never signs over the change.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let mut edited = Vec::new();
    for (i, entry) in log_entries(&log).into_iter().enumerate() {
        if i == 3 {
            let leaf = Leaf::Hold {
                time: 1,
                name: "forged".into(),
                custodian: None,
                chat: None,
                from: None,
                to: None,
                custodians: Vec::new(),
                chats: Vec::new(),
                reason: None,
                author: None,
            }
            .to_bytes();
            edited.extend_from_slice(&(leaf.len() as u32).to_be_bytes());
            edited.extend_from_slice(&leaf_hash(&leaf));
            edited.extend_from_slice(&leaf);
        } else {
            edited.extend_from_slice(&entry);
        }
    }
    fs::write(copy.path().join("log.bin"), edited).unwrap();
    assert!(matches!(
        Archive::open(copy.path(), signer()),
        Err(vellum_archive::Error::Damaged(_))
    ));
    assert!(!verify(copy.path(), None).ok());

    // Destroying a key without a disposition: record leaf 1's key, in its entry.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let first = log_entries(&log)[0].len();
    let mut zeroed = log.clone();
    zeroed[first + 36..first + 100].fill(0);
    fs::write(copy.path().join("log.bin"), zeroed).unwrap();
    let report = verify(copy.path(), None);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("record leaf 1") && p.contains("without a disposition")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_checkpoint_kept_by_an_auditor_stays_consistent_and_a_forged_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    let first = populated(dir.path(), &g);
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    for i in 0..3 {
        archive
            .append(Leaf::Access {
                time: 20 + i,
                action: "view".into(),
                detail: format!("{i}"),
            })
            .unwrap();
    }
    archive.checkpoint().unwrap();
    assert!(verify(dir.path(), Some(&first)).ok());

    let rogue = NoteSigner::new("records.test/vellum", &[8; 32]).unwrap();
    let forged = rogue
        .sign(
            &Checkpoint {
                origin: "records.test/vellum".into(),
                size: 2,
                root: leaf_hash(b"x"),
                extensions: vec![],
            }
            .to_text(),
        )
        .unwrap();
    let report = verify(dir.path(), Some(&forged));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.starts_with("the trusted checkpoint")),
        "{:?}",
        report.problems
    );

    // A checkpoint of a rewritten history, signed by the real key, is caught too.
    let rewritten = signer()
        .sign(
            &Checkpoint {
                origin: "records.test/vellum".into(),
                size: 4,
                root: leaf_hash(b"x"),
                extensions: vec![],
            }
            .to_text(),
        )
        .unwrap();
    let report = verify(dir.path(), Some(&rewritten));
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("no longer hash to its root")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_crash_mid_record_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(2, 2, "records.test/vellum").unwrap();
    populated(dir.path(), &g);
    let log_len = fs::metadata(dir.path().join("log.bin")).unwrap().len();
    // A record's entry cut short after its key: header, hash, key, a few bytes of leaf.
    let mut log = fs::read(dir.path().join("log.bin")).unwrap();
    log.extend_from_slice(&(0x8000_0000u32 | 300).to_be_bytes());
    log.extend_from_slice(&[5u8; 32 + 64 + 10]);
    fs::write(dir.path().join("log.bin"), &log).unwrap();

    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    assert_eq!(
        fs::metadata(dir.path().join("log.bin")).unwrap().len(),
        log_len
    );
    assert!(!dir.path().join("keys.bin").exists());
    let record = seal(
        &g.public.key_bytes().unwrap(),
        b"chat/10",
        b"after the crash",
    )
    .unwrap();
    assert!(
        archive
            .append_record("chat/10", 30, &record, None)
            .unwrap()
            .new
    );
    archive.checkpoint().unwrap();
    let report = verify(dir.path(), None);
    assert!(report.ok(), "{:?}", report.problems);
}
