//! Issue 11: `vellum archive verify-production` checks a production offline against
//! records.pub alone, and names what fails.

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_production::{ProducedItem, ProductionInput, TextRedaction, Treatment};
use vellum_record::api::foia::Exemption;
use vellum_record::{ArchiverBinding, Record, RecordKind};

use crate::harness::{run_fails, run_ok, vellum};

const ORIGIN: &str = "records.test/vellum";

/// A production of two messages of a real archive, the second partly redacted, and the
/// records.pub whose custodians bound its log.
fn production(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let g = vellum_records::generate(3, 2, ORIGIN).unwrap();
    let signer = vellum_tlog::NoteSigner::new(ORIGIN, &[4; 32]).unwrap();
    let mut archive = vellum_archive::Archive::open(&dir.join("archive"), signer).unwrap();
    let mut records = Vec::new();
    for seq in 1..=2u64 {
        let record = Record {
            version: vellum_record::FORMAT_VERSION,
            chat_id: "chat".into(),
            chat_title: Some("Gate".into()),
            seq,
            kind: RecordKind::Message,
            message_id: Some(format!("m{seq}")),
            sender_user: "alice".into(),
            sender_device: "alice-1".into(),
            recipients: vec![],
            sent_at: 1_764_000_000_000,
            received_at: 1_764_000_000_000 + seq as i64,
            text: Some(format!("message {seq} names someone")),
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: Some(format!("{:064x}", seq + 7)),
            reply_to: None,
            mentions: vec![],
            target: None,
            remove: false,
        };
        let reference = record.reference();
        let sealed = vellum_records::seal(
            &g.public.key_bytes().unwrap(),
            reference.as_bytes(),
            &record.encode(),
        )
        .unwrap();
        let leaf = archive
            .append_record(
                &reference,
                record.received_at,
                &sealed,
                record.commitments(),
            )
            .unwrap()
            .index;
        records.push((leaf, record));
    }
    let note = archive.checkpoint().unwrap();
    let size = archive.size();
    let mut unsealer = vellum_records::Unsealer::new(g.public.clone());
    unsealer.add(&g.shares[0]).unwrap();
    let vellum_records::UnsealProgress::Unsealed(secret) = unsealer.add(&g.shares[2]).unwrap()
    else {
        panic!("two shares unseal")
    };
    let binding = secret.sign_binding(&ArchiverBinding {
        version: vellum_record::BINDING_VERSION,
        serial: 1,
        origin: ORIGIN.into(),
        archiver_device: "archiver".into(),
        archiver_identity: STANDARD.encode([1u8; 32]),
        log_key: archive.verifier_key(),
        witnesses: vec![],
        witness_quorum: 0,
        issued_at: 0,
        previous: None,
    });
    let items = records
        .into_iter()
        .map(|(leaf, record)| ProducedItem {
            leaf,
            leaf_data: STANDARD.encode(archive.leaf(leaf).unwrap().to_bytes()),
            inclusion_proof: archive
                .inclusion_proof(leaf, size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            treatment: Treatment::Release {
                text: if record.seq == 2 {
                    vec![TextRedaction {
                        start: 10,
                        end: 15,
                        exemption: Exemption::B6,
                    }]
                } else {
                    vec![]
                },
                fields: vec![],
            },
            record,
        })
        .collect();
    let input = ProductionInput {
        case_id: "FOIA-1".into(),
        requester: "CREW".into(),
        description: "gate".into(),
        produced_at: 1_764_100_000_000,
        time_zone: "UTC".into(),
        bates_prefix: "VELLUM".into(),
        bates_start: 1,
        formats: Default::default(),
        origin: ORIGIN.into(),
        verifier_key: archive.verifier_key(),
        checkpoint: note,
        checkpoint_size: size,
        binding: Some(binding.to_json()),
        items,
    };
    let out = dir.join("production");
    vellum_production::produce(&input, &out, &mut |_| {}).unwrap();
    let public = dir.join("records.pub");
    std::fs::write(&public, g.public.to_json()).unwrap();
    (out, public)
}

#[test]
fn issue_11_verify_production_checks_a_production_against_records_pub_and_names_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (out, public) = production(dir.path());
    let ok = run_ok(
        vellum()
            .args(["archive", "verify-production"])
            .arg(&out)
            .arg("--records-key")
            .arg(&public)
            .arg("--json"),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["records_released"], 2);
    // 7 fields of the first message, 6 of the second (its text is redacted).
    assert_eq!(verdict["openings"], 13);
    let human = run_ok(
        vellum()
            .args(["archive", "verify-production"])
            .arg(&out)
            .arg("--records-key")
            .arg(&public),
    );
    assert!(String::from_utf8_lossy(&human.stdout).contains("production FOIA-1 verified"));

    // An altered load file is named, and the command fails.
    let load = out.join("loadfile.csv");
    let text = std::fs::read_to_string(&load).unwrap();
    std::fs::write(&load, text.replace("alice", "mallory")).unwrap();
    let err = run_fails(
        vellum()
            .args(["archive", "verify-production"])
            .arg(&out)
            .arg("--records-key")
            .arg(&public),
    );
    // The file's hash, and each of alice's records whose opened sender the load file now
    // contradicts.
    assert!(err.contains("does not verify: 3 failure(s)"), "{err}");
    let named = vellum()
        .args(["archive", "verify-production"])
        .arg(&out)
        .arg("--records-key")
        .arg(&public)
        .arg("--json")
        .output()
        .unwrap();
    assert!(!named.status.success());
    let verdict: serde_json::Value = serde_json::from_slice(&named.stdout).unwrap();
    let failures: Vec<&str> = verdict["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(failures.len(), 3, "{verdict}");
    assert!(
        failures.iter().any(|f| f.starts_with("loadfile.csv:")),
        "{verdict}"
    );
    assert!(
        failures.iter().filter(|f| f.contains("mallory")).count() == 2,
        "{verdict}"
    );
    // The file restored, but another records.pub: the checkpoint is not vouched for.
    std::fs::write(&load, text).unwrap();
    let other = dir.path().join("other.pub");
    std::fs::write(
        &other,
        vellum_records::generate(3, 2, ORIGIN)
            .unwrap()
            .public
            .to_json(),
    )
    .unwrap();
    let err = run_fails(
        vellum()
            .args(["archive", "verify-production"])
            .arg(&out)
            .arg("--records-key")
            .arg(&other),
    );
    assert!(err.contains("does not verify"), "{err}");
}
