//! Known answers for `records.pub` and its shares: the file's exact encoding, the share
//! commitments and the key, as an independent implementation reads them
//! (`tests/vectors/make.py` writes `expected.json`).

use std::path::Path;

use base64::Engine;
use vellum_records::{RecordsPublic, UnsealProgress, Unsealer};

fn read(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(name),
    )
    .unwrap()
}

#[test]
fn records_pub_reads_and_writes_exactly_as_the_vector_says() {
    let expected: serde_json::Value = serde_json::from_str(&read("expected.json")).unwrap();
    let text = read("records.pub");
    let public = RecordsPublic::parse(&text).unwrap();
    assert_eq!(
        public.to_json(),
        text,
        "records.pub is written byte for byte as before"
    );
    assert_eq!(
        hex::encode(public.key_bytes().unwrap()),
        expected["public_key_hex"].as_str().unwrap()
    );
    assert_eq!(
        public.threshold as u64,
        expected["threshold"].as_u64().unwrap()
    );
    assert_eq!(
        public.custodians as u64,
        expected["custodians"].as_u64().unwrap()
    );
    assert_eq!(
        public.share_hashes[0],
        expected["share_1_sha256"].as_str().unwrap()
    );
    assert_eq!(
        public.share_hashes[1],
        expected["share_2_sha256"].as_str().unwrap()
    );

    // The shares reassemble the key the file names: a record sealed to it opens.
    let mut unsealer = Unsealer::new(public.clone());
    assert!(matches!(
        unsealer.add(&read("share-1")).unwrap(),
        UnsealProgress::NeedMore { have: 1, need: 2 }
    ));
    let UnsealProgress::Unsealed(secret) = unsealer.add(&read("share-2")).unwrap() else {
        panic!("two of three shares unseal");
    };
    let sealed = vellum_records::seal(&public.key_bytes().unwrap(), b"ref", b"kept").unwrap();
    assert_eq!(
        &vellum_records::open(&secret, b"ref", &sealed).unwrap()[..],
        b"kept"
    );
}

/// The records.pub written by the released 0.1.0 (`tests/fixtures/v0.1.0`) still reads and
/// re-encodes to the same bytes.
#[test]
fn the_released_records_pub_still_reads() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0/records.pub");
    let text = std::fs::read_to_string(path).unwrap();
    let public = RecordsPublic::parse(&text).unwrap();
    assert_eq!(public.to_json(), text);
    assert_eq!(public.key_bytes().unwrap().len(), 32);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(public.key_bytes().unwrap()),
        public.public_key
    );
}
