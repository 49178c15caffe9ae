//! Records sealed by every released version must open and decode for as long as they are
//! retained. The files under `tests/golden` are never regenerated (see its README.md).

use std::path::{Path, PathBuf};

use vellum_record::{Record, RecordKind, FORMAT_VERSION};

fn golden(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dir)
}

const KINDS: [(&str, RecordKind); 5] = [
    ("membership", RecordKind::Membership),
    ("title", RecordKind::Title),
    ("message", RecordKind::Message),
    ("delete", RecordKind::Delete),
    ("timers", RecordKind::Timers),
];

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn records_sealed_by_0_1_0_decode_with_typed_kinds() {
    for (name, kind) in KINDS {
        let record = Record::decode(&read(&golden("v0").join(format!("{name}.json")))).unwrap();
        assert_eq!(record.version, 0, "{name}");
        assert_eq!(record.kind, kind, "{name}");
        assert_eq!(record.chat_id, "8f14e45fceea167a5a36dedd4bea2543");
    }
    let message = Record::decode(&read(&golden("v0").join("message.json"))).unwrap();
    assert_eq!(message.text.as_deref(), Some("the figures for Q3 are in"));
    assert_eq!(message.seq, 3);
    assert_eq!(
        message.message_id.as_deref(),
        Some("c4ca4238a0b923820dcc509a6f75849b")
    );
    assert_eq!(
        (message.sent_at, message.received_at),
        (1_764_000_000_000, 1_764_000_000_250)
    );
    assert_eq!(
        (message.expire_secs, message.burn_secs),
        (Some(86_400), Some(60))
    );
    assert_eq!(message.recipients.len(), 2);
    assert_eq!(message.recipients[0].user, "bob");
}

/// The archive holds the sealed bytes, not the JSON: the 0.1.0 ciphertexts open with the
/// records key reassembled from two shares, and their plaintext decodes.
#[test]
fn records_sealed_by_0_1_0_unseal_and_decode() {
    let dir = golden("v0");
    let public = std::fs::read_to_string(dir.join("records.pub")).unwrap();
    let mut unsealer =
        vellum_records::Unsealer::new(vellum_records::RecordsPublic::parse(&public).unwrap());
    let mut secret = None;
    for share in ["share-1", "share-2"] {
        let share = std::fs::read_to_string(dir.join(share)).unwrap();
        if let vellum_records::UnsealProgress::Unsealed(s) = unsealer.add(&share).unwrap() {
            secret = Some(s);
        }
    }
    let secret = secret.expect("two shares unseal");
    for (name, kind) in KINDS {
        let sealed: serde_json::Value =
            serde_json::from_slice(&read(&dir.join(format!("{name}.sealed.json")))).unwrap();
        let reference = sealed["reference"].as_str().unwrap();
        let record = vellum_records::SealedRecord {
            sealed_key: hex::decode(sealed["sealed_key"].as_str().unwrap()).unwrap(),
            body: hex::decode(sealed["body"].as_str().unwrap()).unwrap(),
        };
        let plain = vellum_records::open(&secret, reference.as_bytes(), &record).unwrap();
        assert_eq!(
            &plain[..],
            &read(&dir.join(format!("{name}.json")))[..],
            "{name}"
        );
        let decoded = Record::decode(&plain).unwrap();
        assert_eq!(decoded.kind, kind);
        assert_eq!(decoded.reference(), reference, "the reference is the AAD");
    }
}

/// The records of each version's known-answer vectors: each 0.1.0 record re-made in
/// `version`, and a record of a payload this version cannot interpret; version 2 adds the
/// entry's log hash and the content salt.
fn expected(version: u32) -> Vec<(String, Record)> {
    let mut expected = Vec::new();
    for (i, (name, _)) in KINDS.iter().enumerate() {
        let mut record = Record::decode(&read(&golden("v0").join(format!("{name}.json")))).unwrap();
        record.version = version;
        if version >= 2 {
            record.log_hash = Some(format!("{:02x}", i + 1).repeat(32));
            record.salt = Some(format!("{:02x}", 0xa0 + i).repeat(32));
        }
        expected.push((name.to_string(), record));
    }
    let mut unknown = expected[2].1.clone();
    unknown.seq = 6;
    unknown.kind = RecordKind::Unknown {
        kind: "reaction".into(),
        payload: r#"{"kind":"reaction","to":"c4ca4238a0b923820dcc509a6f75849b","emoji":"👍"}"#
            .into(),
    };
    unknown.message_id = None;
    unknown.text = None;
    expected.push(("unknown".into(), unknown));
    if version >= 3 {
        // Issue 10: a reply with a mention, every version of an edit, a reaction.
        let message = expected[2].1.clone();
        let reply = Record {
            seq: 7,
            message_id: Some("d3d9446802a44259755d38e6d163e820".into()),
            text: Some("@bob can you check them?".into()),
            reply_to: message.message_id.clone(),
            mentions: vec!["bob".into()],
            ..message.clone()
        };
        expected.push(("reply".into(), reply));
        let edit = Record {
            seq: 8,
            kind: RecordKind::Edit,
            message_id: Some("6512bd43d9caa6e02c990b0a82652dca".into()),
            text: Some("the figures for Q3 and Q4 are in".into()),
            target: message.message_id.clone(),
            ..message.clone()
        };
        expected.push(("edit".into(), edit));
        let reaction = Record {
            seq: 9,
            kind: RecordKind::Reaction,
            message_id: Some("c20ad4d76fe97759aa27a0c99bff6710".into()),
            sender_user: "bob".into(),
            sender_device: "dev-bob-1".into(),
            text: Some("👍".into()),
            target: message.message_id.clone(),
            salt: None,
            ..message.clone()
        };
        expected.push(("reaction".into(), reaction.clone()));
        let withdrawn = Record {
            seq: 10,
            message_id: Some("aab3238922bcc25a6f606eb525ffdc56".into()),
            remove: true,
            ..reaction
        };
        expected.push(("reaction-removed".into(), withdrawn));
    }
    expected
}

/// Known-answer vectors of every version since 1: encoding a record of that version must
/// give these exact bytes, and they must decode to the same record. `v2/` is the current
/// format (written once with `VELLUM_BLESS_RECORD_VECTORS=3`, never regenerated).
#[test]
fn every_format_matches_its_known_answer_vectors() {
    assert_eq!(FORMAT_VERSION, 3);
    for version in 1..=FORMAT_VERSION {
        let dir = golden(&format!("v{version}"));
        if std::env::var("VELLUM_BLESS_RECORD_VECTORS").ok() == Some(version.to_string()) {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, record) in &expected(version) {
                std::fs::write(dir.join(format!("{name}.json")), record.encode()).unwrap();
            }
        }
        for (name, record) in expected(version) {
            let bytes = read(&dir.join(format!("{name}.json")));
            assert_eq!(
                String::from_utf8_lossy(&record.encode()),
                String::from_utf8_lossy(&bytes),
                "v{version} {name}: the encoding changed; a new encoding needs a new FORMAT_VERSION"
            );
            assert_eq!(Record::decode(&bytes).unwrap(), record, "{name}");
        }
    }
    // Version 2 names the entry by its log hash too, and commits to its content.
    let message = &expected(2)[2].1;
    assert_eq!(
        message.reference(),
        format!("8f14e45fceea167a5a36dedd4bea2543/3/{}", "03".repeat(32))
    );
    let commitments = message.commitments().unwrap();
    assert_eq!(commitments.len(), 7, "{commitments:?}");
    assert_eq!(expected(1)[2].1.commitments(), None);
}
