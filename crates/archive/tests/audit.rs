//! Issue 8: the auditor's check trusts only the log keys the custodians bound to the records
//! key, never the key an archive carries. A re-keyed copy, deleted checkpoints, a rollback,
//! a forged binding and a missing witness quorum are each caught; a log that moved to a new
//! key (and origin) verifies across the transition.

use std::fs;
use std::path::Path;

use vellum_archive::{audit, verify, Archive, Leaf, Verdict};
use vellum_records::{
    generate, ArchiverBinding, Generated, PreviousLog, RecordsSecret, UnsealProgress, Unsealer,
    BINDING_VERSION,
};
use vellum_tlog::cosignature::CosignatureSigner;
use vellum_tlog::{Checkpoint, NoteSigner};

const ORIGIN: &str = "records.agency.example/vellum";

fn unsealed(g: &Generated) -> RecordsSecret {
    let mut u = Unsealer::new(g.public.clone());
    u.add(&g.shares[0]).unwrap();
    match u.add(&g.shares[1]).unwrap() {
        UnsealProgress::Unsealed(s) => s,
        UnsealProgress::NeedMore { .. } => unreachable!(),
    }
}

fn grow(archive: &mut Archive, n: i64) {
    for i in 0..n {
        archive
            .append(Leaf::Access {
                time: i,
                action: "search".into(),
                detail: format!("query {i}"),
            })
            .unwrap();
    }
}

fn statement(serial: u64, log_key: &str, witnesses: Vec<String>, quorum: u32) -> ArchiverBinding {
    ArchiverBinding {
        version: BINDING_VERSION,
        serial,
        origin: ORIGIN.into(),
        archiver_device: "archiver-device".into(),
        archiver_identity: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        log_key: log_key.into(),
        witnesses,
        witness_quorum: quorum,
        issued_at: 1,
        previous: None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A bound archive of 5 leaves with two checkpoints; returns the records key, the first
/// checkpoint and the archive (still open).
fn bound_archive(dir: &Path) -> (Generated, String, Archive) {
    let g = generate(3, 2, ORIGIN).unwrap();
    let secret = unsealed(&g);
    let signer = NoteSigner::new(ORIGIN, &[7; 32]).unwrap();
    let mut archive = Archive::open(dir, signer).unwrap();
    let binding = secret.sign_binding(&statement(1, &archive.verifier_key(), vec![], 0));
    archive.save_binding(1, &binding).unwrap();
    grow(&mut archive, 3);
    let first = archive.checkpoint().unwrap();
    grow(&mut archive, 2);
    archive.checkpoint().unwrap();
    (g, first, archive)
}

#[test]
fn issue8_an_intact_bound_archive_verifies_against_records_pub_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (g, first, _archive) = bound_archive(dir.path());
    let found = audit(dir.path(), &g.public, &[first], &[]);
    assert_eq!(
        found.verdict(),
        Verdict::Intact,
        "{:?}",
        found.report.problems
    );
    assert_eq!((found.report.leaves, found.report.attested), (5, 5));
    assert_eq!(found.bindings.len(), 1);
    // log.vkey plays no part: replacing it changes nothing for the auditor.
    fs::write(dir.path().join("log.vkey"), "junk\n").unwrap();
    assert_eq!(
        audit(dir.path(), &g.public, &[], &[]).verdict(),
        Verdict::Intact
    );
}

#[test]
fn issue8_a_rekeyed_copy_fails_though_it_verifies_against_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (g, _, archive) = bound_archive(dir.path());
    // The forger rebuilds the log with one leaf altered and signs it with a fresh key,
    // keeping the custodians' binding (it cannot make another).
    let forged = tempfile::tempdir().unwrap();
    let mut copy =
        Archive::open(forged.path(), NoteSigner::new(ORIGIN, &[66; 32]).unwrap()).unwrap();
    for i in 0..archive.size() {
        let mut leaf = archive.leaf(i).unwrap();
        if let Leaf::Access { detail, .. } = &mut leaf {
            if i == 1 {
                *detail = "nothing to see".into();
            }
        }
        copy.append(leaf).unwrap();
    }
    copy.checkpoint().unwrap();
    copy_dir(
        &dir.path().join("bindings"),
        &forged.path().join("bindings"),
    );
    drop(copy);
    assert!(
        verify(forged.path(), None).ok(),
        "against the key it carries, the copy reads intact"
    );
    let found = audit(forged.path(), &g.public, &[], &[]);
    assert_eq!(found.verdict(), Verdict::Failed);
    assert!(
        found
            .report
            .problems
            .iter()
            .any(|p| p.starts_with("checkpoints/")),
        "{:?}",
        found.report.problems
    );
}

#[test]
fn issue8_deleted_checkpoints_leave_an_unattested_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (g, _, archive) = bound_archive(dir.path());
    drop(archive);
    for entry in fs::read_dir(dir.path().join("checkpoints")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let found = audit(dir.path(), &g.public, &[], &[]);
    assert!(
        found.report.problems.is_empty(),
        "{:?}",
        found.report.problems
    );
    assert_eq!(found.verdict(), Verdict::Unattested);
    assert_eq!(found.report.unattested, 5);
}

#[test]
fn issue8_a_rollback_to_a_shorter_prefix_fails_against_a_kept_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (g, _, mut archive) = bound_archive(dir.path());
    let earlier = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), earlier.path());
    grow(&mut archive, 4);
    let kept = archive.checkpoint().unwrap();
    // The rolled-back copy is consistent with itself, and with the earlier checkpoints.
    let alone = audit(earlier.path(), &g.public, &[], &[]);
    assert_eq!(alone.verdict(), Verdict::Intact);
    let found = audit(earlier.path(), &g.public, std::slice::from_ref(&kept), &[]);
    assert_eq!(found.verdict(), Verdict::Failed);
    assert!(
        found
            .report
            .problems
            .iter()
            .any(|p| p.starts_with("kept checkpoint 1") && p.contains("truncated")),
        "{:?}",
        found.report.problems
    );
    assert_eq!(
        audit(dir.path(), &g.public, &[kept], &[]).verdict(),
        Verdict::Intact
    );
}

#[test]
fn issue8_a_binding_not_signed_by_these_custodians_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (g, _, archive) = bound_archive(dir.path());
    let other = generate(3, 2, ORIGIN).unwrap();
    // The other records key's custodians bound this log: not this records.pub's.
    let found = audit(dir.path(), &other.public, &[], &[]);
    assert_eq!(found.verdict(), Verdict::Failed);
    assert!(found.bindings.is_empty());
    // An impostor's binding beside the real one: reported, and its key trusted for nothing.
    let impostor = unsealed(&other).sign_binding(&statement(
        2,
        &NoteSigner::new(ORIGIN, &[66; 32]).unwrap().verifier_key(),
        vec![],
        0,
    ));
    archive.save_binding(2, &impostor).unwrap();
    let found = audit(dir.path(), &g.public, &[], &[]);
    assert_eq!(found.verdict(), Verdict::Failed);
    assert!(
        found
            .report
            .problems
            .iter()
            .any(|p| p.starts_with("bindings/00000000000000000002.json")),
        "{:?}",
        found.report.problems
    );
    assert_eq!(found.log_keys.len(), 1);
}

#[test]
fn issue8_the_bound_witness_quorum_is_required_of_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(3, 2, ORIGIN).unwrap();
    let secret = unsealed(&g);
    let inspector = CosignatureSigner::new("inspector.example/w", &[1; 32]).unwrap();
    let liaison = CosignatureSigner::new("liaison.example/w", &[2; 32]).unwrap();
    let mut archive =
        Archive::open(dir.path(), NoteSigner::new(ORIGIN, &[7; 32]).unwrap()).unwrap();
    let witnesses = vec![inspector.verifier_key(), liaison.verifier_key()];
    let binding = secret.sign_binding(&statement(1, &archive.verifier_key(), witnesses, 1));
    archive.save_binding(1, &binding).unwrap();
    grow(&mut archive, 2);
    let note = archive.checkpoint().unwrap();
    let found = audit(dir.path(), &g.public, &[], &[]);
    assert_eq!(found.verdict(), Verdict::Unwitnessed);
    assert!(
        found.unwitnessed[0].contains("0 of the 1"),
        "{:?}",
        found.unwitnessed
    );
    let text = &note[..note.rfind("\n\n").unwrap() + 1];
    let lines = inspector
        .sign(&Checkpoint::parse(text).unwrap(), 1_700_000_000)
        .unwrap();
    archive
        .add_cosignature(2, &lines, &inspector.verifier())
        .unwrap();
    let found = audit(dir.path(), &g.public, &[], &[]);
    assert_eq!(found.verdict(), Verdict::Intact, "{:?}", found.unwitnessed);
    assert_eq!(found.cosigned_by, vec!["inspector.example/w".to_owned()]);
    // The auditor may require a witness of its own choosing beyond the quorum.
    let found = audit(dir.path(), &g.public, &[], &[liaison.verifier()]);
    assert_eq!(found.verdict(), Verdict::Unwitnessed);
    assert!(found.unwitnessed[0].contains("liaison.example/w"));
}

#[test]
fn issue8_a_log_that_moved_to_a_new_key_verifies_across_the_transition() {
    let dir = tempfile::tempdir().unwrap();
    let old = NoteSigner::new("vellum.records/0123abcd", &[3; 32]).unwrap();
    let mut archive = Archive::open(dir.path(), old).unwrap();
    grow(&mut archive, 4);
    archive.checkpoint().unwrap();
    drop(archive);

    // The same seed under the new origin is another key: the transition is recorded.
    let new = NoteSigner::new(ORIGIN, &[3; 32]).unwrap();
    let (mut archive, made) = Archive::open_continuing(dir.path(), new).unwrap();
    let made = made.expect("a transition");
    assert_eq!(
        (made.origin.as_str(), made.size),
        ("vellum.records/0123abcd", 4)
    );
    assert_eq!(archive.transitions().unwrap(), vec![made.clone()]);
    grow(&mut archive, 2);
    archive.checkpoint().unwrap();
    assert!(verify(dir.path(), None).ok(), "the archiver's own check");
    drop(archive);
    let (archive, again) =
        Archive::open_continuing(dir.path(), NoteSigner::new(ORIGIN, &[3; 32]).unwrap()).unwrap();
    assert!(again.is_none(), "reopening makes no second transition");

    let g = generate(3, 2, ORIGIN).unwrap();
    let mut bound = statement(1, &archive.verifier_key(), vec![], 0);
    bound.previous = Some(PreviousLog { ..made.clone() });
    archive
        .save_binding(1, &unsealed(&g).sign_binding(&bound))
        .unwrap();
    let found = audit(dir.path(), &g.public, &[], &[]);
    assert_eq!(
        found.verdict(),
        Verdict::Intact,
        "{:?}",
        found.report.problems
    );
    assert_eq!((found.report.checkpoints, found.report.attested), (2, 6));

    // A checkpoint of the old key beyond the size the custodians bound it to: refused.
    let forged = NoteSigner::new("vellum.records/0123abcd", &[3; 32])
        .unwrap()
        .sign(
            &Checkpoint {
                origin: "vellum.records/0123abcd".into(),
                size: 6,
                root: vellum_tlog::leaf_hash(b"x"),
                extensions: vec![],
            }
            .to_text(),
        )
        .unwrap();
    let found = audit(dir.path(), &g.public, &[forged], &[]);
    assert_eq!(found.verdict(), Verdict::Failed);
    assert!(
        found
            .report
            .problems
            .iter()
            .any(|p| p.contains("left at size 4")),
        "{:?}",
        found.report.problems
    );
    // Without the transition in the binding, the old checkpoints count for nothing.
    let g2 = generate(3, 2, ORIGIN).unwrap();
    let unlinked = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), unlinked.path());
    fs::remove_dir_all(unlinked.path().join("bindings")).unwrap();
    let no_previous = statement(1, &archive.verifier_key(), vec![], 0);
    fs::create_dir_all(unlinked.path().join("bindings")).unwrap();
    fs::write(
        unlinked.path().join("bindings/00000000000000000001.json"),
        unsealed(&g2).sign_binding(&no_previous).to_json(),
    )
    .unwrap();
    assert_eq!(
        audit(unlinked.path(), &g2.public, &[], &[]).verdict(),
        Verdict::Failed
    );
}
