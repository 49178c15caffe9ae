//! Issue 8: receipts that bind content. A message's exported proof verifies against
//! `records.pub` alone, and every way of tampering with it is refused, naming what is wrong.

use serde_json::json;
use vellum_record::content::Content;
use vellum_record::{
    verify_receipt, ArchiverBinding, ReceiptError, ReceiptProof, RecordsPublic, SignedBinding,
    TrustError, RECEIPT_PROOF_VERSION,
};
use vellum_records::{generate, UnsealProgress, Unsealer};
use vellum_tlog::cosignature::CosignatureSigner;
use vellum_tlog::{inclusion_proof, leaf_hash, root, Checkpoint, NoteSigner};
use vellum_wire::Receipt;

const ORIGIN: &str = "records.test/vellum";
const CHAT: &str = "8f14e45fceea167a5a36dedd4bea2543";

/// A records key, and the binding its custodians signed for a log with one witness.
fn bound(witness: &CosignatureSigner, quorum: u32) -> (RecordsPublic, SignedBinding) {
    let generated = generate(3, 2, ORIGIN).unwrap();
    let mut unsealer = Unsealer::new(generated.public.clone());
    unsealer.add(&generated.shares[0]).unwrap();
    let UnsealProgress::Unsealed(secret) = unsealer.add(&generated.shares[2]).unwrap() else {
        panic!("two shares unseal")
    };
    let statement = ArchiverBinding {
        version: vellum_record::BINDING_VERSION,
        serial: 1,
        origin: ORIGIN.into(),
        archiver_device: "dev-records-1".into(),
        archiver_identity: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
        log_key: log().verifier_key(),
        witnesses: vec![witness.verifier_key()],
        witness_quorum: quorum,
        issued_at: 1_764_000_000_000,
        previous: None,
    };
    (generated.public, secret.sign_binding(&statement))
}

fn log() -> NoteSigner {
    NoteSigner::new(ORIGIN, &[5; 32]).unwrap()
}

fn content(seq: u64, text: &str) -> Content {
    Content {
        kind: "message".into(),
        chat_id: CHAT.into(),
        message_id: Some(format!("m{seq}")),
        sender_user: "alice".into(),
        sender_device: "dev-alice-1".into(),
        sent_at: 1_764_000_000_000 + seq as i64,
        text: Some(text.into()),
    }
}

fn salt(seq: u64) -> [u8; 32] {
    [seq as u8; 32]
}

/// The record leaf of message `seq`, as the archiver writes it.
fn leaf(seq: u64, text: &str) -> Vec<u8> {
    json!({
        "kind": "record",
        "time": 1_764_000_000_250i64,
        "reference": format!("{CHAT}/{seq}/{}", "0a".repeat(32)),
        "key_hash": "ab".repeat(32),
        "body": "c2VhbGVk",
        "commitments": content(seq, text).commit(&salt(seq)),
    })
    .to_string()
    .into_bytes()
}

/// A log of an access leaf and messages 1 and 2; the signed checkpoint of all three,
/// cosigned by `witness`; a receipt for each message.
fn receipts(witness: &CosignatureSigner, signer: &NoteSigner) -> (Receipt, Receipt) {
    let leaves = [
        br#"{"kind":"access","time":1,"action":"unseal","detail":"x"}"#.to_vec(),
        leaf(1, "the figures for Q3 are in"),
        leaf(2, "and they are good"),
    ];
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        size: 3,
        root: root(&hashes),
        extensions: vec![],
    };
    let note = signer.sign(&checkpoint.to_text()).unwrap() + &witness.sign(&checkpoint, 7).unwrap();
    let receipt = |seq: u64| Receipt {
        chat_id: CHAT.into(),
        seq,
        message_id: Some(format!("m{seq}")),
        leaf_index: seq,
        leaf: leaves[seq as usize].clone().into(),
        proof: inclusion_proof(&hashes, seq, 3)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint: note.clone(),
    };
    (receipt(1), receipt(2))
}

fn proof(binding: &SignedBinding, receipt: &Receipt) -> ReceiptProof {
    ReceiptProof {
        version: RECEIPT_PROOF_VERSION,
        binding: binding.clone(),
        receipt: receipt.clone(),
        disclosures: content(1, "the figures for Q3 are in").disclose(&salt(1)),
    }
}

#[test]
fn issue8_a_receipt_proof_verifies_with_records_pub_alone_and_every_tamper_is_refused() {
    let witness = CosignatureSigner::new("witness.test", &[6; 32]).unwrap();
    let (public, binding) = bound(&witness, 1);
    let (first, second) = receipts(&witness, &log());
    let good = proof(&binding, &first);
    // It travels as a file: the JSON round trip is exact.
    assert_eq!(ReceiptProof::parse(&good.to_json()).unwrap(), good);
    let proven = good.verify(&public).unwrap();
    assert_eq!(proven.checkpoint.cosigners, vec!["witness.test".to_owned()]);
    assert_eq!(proven.checkpoint.checkpoint.size, 3);
    assert!(proven.withheld.is_empty());
    let fields: Vec<(&str, &str)> = proven
        .fields
        .iter()
        .map(|(f, v)| (f.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("kind", "message"),
            ("chat_id", CHAT),
            ("message_id", "m1"),
            ("sender_user", "alice"),
            ("sender_device", "dev-alice-1"),
            ("sent_at", "1764000000001"),
            ("text", "the figures for Q3 are in"),
        ]
    );

    // A redacted production: the text withheld, everything else still proven.
    let mut redacted = good.clone();
    redacted.disclosures.retain(|d| d.field != "text");
    let proven = redacted.verify(&public).unwrap();
    assert_eq!(proven.withheld, vec!["text".to_owned()]);

    let refused = |p: &ReceiptProof| p.verify(&public).unwrap_err();

    // Altered text.
    let mut altered = good.clone();
    altered.disclosures[6].value = "the figures for Q4 are in".into();
    let e = refused(&altered);
    assert!(
        matches!(e, ReceiptError::Content(_)) && e.to_string().contains("text"),
        "{e}"
    );

    // Another message id, in the disclosures or in the receipt.
    let mut other_id = good.clone();
    other_id.disclosures[2].value = "m2".into();
    assert!(refused(&other_id).to_string().contains("message_id"));
    let mut other_id = good.clone();
    other_id.receipt.message_id = Some("m2".into());
    let e = refused(&other_id);
    assert!(e.to_string().contains("another message_id"), "{e}");

    // The proof of another leaf: message 2's leaf and proof under message 1's receipt.
    let mut other_leaf = good.clone();
    other_leaf.receipt.leaf = second.leaf.clone();
    assert!(matches!(refused(&other_leaf), ReceiptError::Inclusion(_)));
    let mut other_leaf = good.clone();
    other_leaf.receipt = Receipt {
        seq: 1,
        message_id: Some("m1".into()),
        ..second.clone()
    };
    let e = refused(&other_leaf);
    assert!(matches!(e, ReceiptError::Leaf(_)), "{e}");

    // A checkpoint signed by another key (same origin), even cosigned by the witness.
    let impostor = NoteSigner::new(ORIGIN, &[9; 32]).unwrap();
    let (forged, _) = receipts(&witness, &impostor);
    let e = refused(&proof(&binding, &forged));
    assert!(matches!(e, ReceiptError::Checkpoint(_)), "{e}");

    // A binding from another records key's custodians.
    let (_, foreign) = bound(&witness, 1);
    let e = refused(&proof(&foreign, &first));
    assert!(
        matches!(e, ReceiptError::Trust(TrustError::BadSignature)),
        "{e}"
    );

    // The witness's cosignature stripped, or from a witness the binding does not name.
    let mut bare = good.clone();
    let signed = log().sign(
        &Checkpoint::parse(&checkpoint_text(&first))
            .unwrap()
            .to_text(),
    );
    bare.receipt.checkpoint = signed.unwrap();
    let e = refused(&bare);
    assert!(
        matches!(
            e,
            ReceiptError::Unwitnessed {
                have: 0,
                need: 1,
                ..
            }
        ),
        "{e}"
    );
    let stranger = CosignatureSigner::new("witness.test", &[8; 32]).unwrap();
    let (strange, _) = receipts(&stranger, &log());
    assert!(matches!(
        refused(&proof(&binding, &strange)),
        ReceiptError::Unwitnessed { .. }
    ));

    // Junk: not JSON, another version, an unknown or repeated field.
    assert!(ReceiptProof::parse("{").is_err());
    let mut newer = good.clone();
    newer.version = 2;
    assert!(ReceiptProof::parse(&newer.to_json()).is_err());
    let mut unknown = good.clone();
    unknown.disclosures[0].field = "colour".into();
    assert!(matches!(refused(&unknown), ReceiptError::Malformed(_)));
    let mut twice = good.clone();
    twice.disclosures.push(twice.disclosures[6].clone());
    assert!(refused(&twice).to_string().contains("twice"));
}

/// The checkpoint text (without signatures) of a receipt's note.
fn checkpoint_text(r: &Receipt) -> String {
    r.checkpoint.split("\n\n").next().unwrap().to_owned() + "\n"
}

#[test]
fn issue8_a_device_checks_what_the_leaf_commits_to() {
    let witness = CosignatureSigner::new("witness.test", &[6; 32]).unwrap();
    let (public, binding) = bound(&witness, 1);
    let statement = binding.verify(&public).unwrap();
    let (first, _) = receipts(&witness, &log());
    let verified = verify_receipt(&serde_json::to_string(&first).unwrap(), &statement).unwrap();
    let sent = content(1, "the figures for Q3 are in");
    assert_eq!(verified.commitments, Some(sent.commit(&salt(1))));
    // What another text (or salt) commits to is not in the leaf.
    assert_ne!(
        verified.commitments,
        Some(content(1, "the figures for Q4 are in").commit(&salt(1)))
    );
    // With a quorum of 1 a checkpoint needs a cosignature; with 0 it does not.
    let mut bare = first.clone();
    bare.checkpoint = log()
        .sign(
            &Checkpoint::parse(&checkpoint_text(&first))
                .unwrap()
                .to_text(),
        )
        .unwrap();
    let e = verify_receipt(&serde_json::to_string(&bare).unwrap(), &statement).unwrap_err();
    assert!(matches!(e, ReceiptError::Unwitnessed { .. }), "{e}");
    let mut unwitnessed = statement.clone();
    unwitnessed.witness_quorum = 0;
    verify_receipt(&serde_json::to_string(&bare).unwrap(), &unwitnessed).unwrap();
}

#[test]
fn issue8_clients_trust_only_the_archiver_and_log_the_custodians_bound() {
    let witness = CosignatureSigner::new("witness.test", &[6; 32]).unwrap();
    let (public, binding) = bound(&witness, 1);
    let policy = vellum_wire::OrgPolicy {
        archiver_device: Some("dev-records-1".into()),
        records_public: Some(public.to_json()),
        records_binding: Some(binding.to_json()),
        ..Default::default()
    };
    let trusted = vellum_record::bound_log(&policy).unwrap();
    assert_eq!(trusted.log_key, log().verifier_key());
    for (policy, why) in [
        (
            vellum_wire::OrgPolicy {
                records_binding: None,
                ..policy.clone()
            },
            "have not bound an archiver",
        ),
        (
            vellum_wire::OrgPolicy {
                records_public: None,
                ..policy.clone()
            },
            "not configured",
        ),
        (
            vellum_wire::OrgPolicy {
                archiver_device: Some("dev-impostor".into()),
                ..policy.clone()
            },
            "names dev-impostor",
        ),
        (
            vellum_wire::OrgPolicy {
                records_binding: Some(bound(&witness, 1).1.to_json()),
                ..policy.clone()
            },
            "not signed by this records.pub",
        ),
    ] {
        let e = vellum_record::bound_log(&policy).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}
