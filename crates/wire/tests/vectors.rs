//! Known-answer vectors for the request-signing bytes, written by an independent
//! implementation (`tests/vectors/make.py`). Changing these bytes breaks every deployed
//! device and server pair: it needs a new label (`vellum-request-v2`), never an edit here.

fn vectors() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/request_signing.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn request_signing_bytes_match_the_vectors() {
    let vectors = vectors();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let s = |k: &str| case[k].as_str().unwrap();
        let bytes = vellum_wire::request_signing_bytes(
            s("method"),
            s("path_and_query"),
            s("device_id"),
            case["timestamp"].as_i64().unwrap(),
            s("nonce"),
            &hex::decode(s("body_hex")).unwrap(),
        );
        assert_eq!(hex::encode(bytes), s("signing_bytes_hex"), "{case}");
    }
}
