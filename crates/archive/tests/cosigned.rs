//! Checkpoints that carry witnesses' cosignature lines: the archive's own readers still
//! accept them, and `witnessed` checks the newest one against the witness keys.

use vellum_archive::{verify, witnessed, Archive, Leaf};
use vellum_tlog::cosignature::CosignatureSigner;
use vellum_tlog::{Checkpoint, NoteSigner};

fn signer() -> NoteSigner {
    NoteSigner::new("records.test/vellum", &[7; 32]).unwrap()
}

fn access(archive: &mut Archive, i: i64) {
    archive
        .append(Leaf::Access {
            time: i,
            action: "test".into(),
            detail: format!("{i}"),
        })
        .unwrap();
}

/// The witness's lines for `note` (the text before its signatures).
fn cosign(witness: &CosignatureSigner, note: &str) -> String {
    let text = &note[..note.rfind("\n\n").unwrap() + 1];
    witness
        .sign(&Checkpoint::parse(text).unwrap(), 1_700_000_000)
        .unwrap()
}

#[test]
fn a_cosigned_checkpoint_still_opens_and_verifies_and_names_a_missing_witness() {
    let dir = tempfile::tempdir().unwrap();
    let inspector = CosignatureSigner::new("inspector.example/w", &[1; 32]).unwrap();
    let liaison = CosignatureSigner::new("liaison.example/w", &[2; 32]).unwrap();
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    access(&mut archive, 1);
    let note = archive.checkpoint().unwrap();
    // Before any cosignature: the witness check names the witness.
    let missing = witnessed(dir.path(), &[inspector.verifier()]);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("inspector.example/w"), "{missing:?}");

    let lines = cosign(&inspector, &note);
    archive
        .add_cosignature(1, &lines, &inspector.verifier())
        .unwrap();
    let (_, stored) = archive.latest_checkpoint().unwrap().unwrap();
    assert_eq!(stored, format!("{note}{lines}"));
    // Another witness's lines cannot be stored as this one's.
    let forged = cosign(&liaison, &note);
    assert!(archive
        .add_cosignature(1, &forged, &inspector.verifier())
        .is_err());
    assert_eq!(archive.latest_checkpoint().unwrap().unwrap().1, stored);
    drop(archive);

    // The archive's own paths: offline verification and reopening (which verifies too).
    let report = verify(dir.path(), Some(&stored));
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.checkpoints, report.attested), (2, 1));
    let mut archive = Archive::open(dir.path(), signer()).unwrap();
    assert!(witnessed(dir.path(), &[inspector.verifier()]).is_empty());
    let missing = witnessed(dir.path(), &[inspector.verifier(), liaison.verifier()]);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].contains("liaison.example/w"), "{missing:?}");

    // A newer checkpoint is not yet cosigned: the check follows the newest.
    access(&mut archive, 2);
    archive.checkpoint().unwrap();
    assert_eq!(witnessed(dir.path(), &[inspector.verifier()]).len(), 1);
    assert!(verify(dir.path(), None).ok());
}
