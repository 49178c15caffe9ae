//! Known-answer vectors for log.bin entries, written by an independent implementation
//! (`tests/vectors/make.py`): `[u32 BE length][SHA-256(0x00 || leaf)][leaf JSON]`, and a
//! record's, which carries its sealed key: `[u32 BE 0x80000000 | length][SHA-256(0x00 ||
//! leaf)][64-byte sealed key][leaf JSON]`.

use vellum_archive::{encode_entry, encode_record_entry, Leaf};

#[test]
fn log_entries_match_the_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/log_entries.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        5,
        "access, record, hold, disposition, record with commitments"
    );
    for e in entries {
        let json = e["leaf_json"].as_str().unwrap();
        let leaf = Leaf::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(leaf.to_bytes()).unwrap(),
            json,
            "leaf encoding"
        );
        assert_eq!(
            hex::encode(vellum_tlog::leaf_hash(json.as_bytes())),
            e["leaf_hash_hex"].as_str().unwrap()
        );
        let entry = encode_entry(&leaf).unwrap();
        assert_eq!(hex::encode(&entry), e["entry_hex"].as_str().unwrap());
    }
}

#[test]
fn issue8_record_entries_with_their_key_match_the_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/log_entries.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = v["record_entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    for e in entries {
        let json = e["leaf_json"].as_str().unwrap();
        let leaf = Leaf::from_bytes(json.as_bytes()).unwrap();
        let key = hex::decode(e["sealed_key_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(vellum_tlog::leaf_hash(json.as_bytes())),
            e["leaf_hash_hex"].as_str().unwrap()
        );
        let entry = encode_record_entry(&leaf, &key).unwrap();
        assert_eq!(hex::encode(&entry), e["entry_hex"].as_str().unwrap());
        // Only a record carries a key, and only a whole one.
        assert!(encode_record_entry(&leaf, &key[..63]).is_err());
        let access = Leaf::Access {
            time: 1,
            action: "a".into(),
            detail: "b".into(),
        };
        assert!(encode_record_entry(&access, &key).is_err());
    }
}

/// The record leaf with content commitments: the Python vector's commitments and field
/// salts are what `vellum_record::content` computes for the same record (the golden
/// version 2 message), and its leaf is what the archive writes for it.
#[test]
fn content_commitments_match_the_vectors() {
    use vellum_record::content::{parse_salt, Disclosure};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/log_entries.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../record/tests/golden/v2/message.json"
    );
    let record = vellum_record::Record::decode(&std::fs::read(golden).unwrap()).unwrap();
    assert_eq!(record.salt.as_deref(), v["record_salt_hex"].as_str());
    let salt = parse_salt(record.salt.as_deref().unwrap()).unwrap();
    let disclosures: Vec<Disclosure> = serde_json::from_value(v["disclosures"].clone()).unwrap();
    assert_eq!(record.content().disclose(&salt), disclosures);
    let leaf = Leaf::from_bytes(v["entries"][4]["leaf_json"].as_str().unwrap().as_bytes()).unwrap();
    let Leaf::Record {
        reference,
        commitments: Some(commitments),
        ..
    } = leaf
    else {
        panic!("the fifth vector is a record leaf with commitments")
    };
    assert_eq!(reference, record.reference());
    assert_eq!(Some(commitments.clone()), record.commitments());
    for d in &disclosures {
        d.check(&commitments).unwrap();
    }
}
