//! The custodians' binding of an archiver (issue 8): records.pub version 2 and the signed
//! statement, against known answers from an independent implementation
//! (`tests/vectors/make.py`, Python's `cryptography`), and every way a binding must fail.

use std::path::Path;

use vellum_record::TrustError;
use vellum_records::{
    generate, ArchiverBinding, RecordsPublic, RecordsSecret, SignedBinding, UnsealProgress,
    Unsealer,
};

fn read(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(name),
    )
    .unwrap()
}

fn unseal(public: &RecordsPublic, shares: &[&str]) -> Result<RecordsSecret, vellum_records::Error> {
    let mut unsealer = Unsealer::new(public.clone());
    for share in shares {
        if let UnsealProgress::Unsealed(secret) = unsealer.add(share)? {
            return Ok(secret);
        }
    }
    panic!("not enough shares")
}

fn vector_secret() -> (RecordsPublic, RecordsSecret) {
    let v1 = RecordsPublic::parse(&read("records.pub")).unwrap();
    let secret = unseal(&v1, &[&read("share-1"), &read("share-2")]).unwrap();
    (v1, secret)
}

#[test]
fn issue8_records_pub_v2_and_binding_match_the_independent_vectors() {
    let (v1, secret) = vector_secret();
    let v2 = secret
        .upgrade_public(&v1, "records.agency.example/vellum")
        .unwrap();
    assert_eq!(
        v2.to_json(),
        read("records-v2.pub"),
        "records.pub v2, byte for byte"
    );
    assert!(v2.same_key(&v1));
    let expected = SignedBinding::parse(&read("binding.json")).unwrap();
    let statement = expected.verify(&v2).unwrap();
    let signed = secret.sign_binding(&statement);
    assert_eq!(
        signed, expected,
        "statement text and signature, byte for byte"
    );
    assert_eq!(statement.serial, 2);
    assert_eq!(statement.previous.as_ref().unwrap().size, 42);
    assert_eq!(
        statement.log_verifier().name(),
        "records.agency.example/vellum"
    );
    assert_eq!(statement.witness_verifiers().len(), 1);
    // A version 2 file of this key unseals with the same shares, and only with them.
    unseal(&v2, &[&read("share-2"), &read("share-1")]).unwrap();
}

fn vector_binding() -> (RecordsPublic, SignedBinding, ArchiverBinding) {
    let v2 = RecordsPublic::parse(&read("records-v2.pub")).unwrap();
    let signed = SignedBinding::parse(&read("binding.json")).unwrap();
    let statement = signed.verify(&v2).unwrap();
    (v2, signed, statement)
}

#[test]
fn issue8_a_binding_not_signed_by_the_custodians_is_refused() {
    let (v2, signed, statement) = vector_binding();
    // Another records key's custodians (an impostor's own records init).
    let other = generate(3, 2, "records.agency.example/vellum").unwrap();
    let shares: Vec<&str> = other.shares.iter().map(|s| s.as_str()).collect();
    let impostor = unseal(&other.public, &shares[..2]).unwrap();
    let forged = impostor.sign_binding(&statement);
    assert_eq!(forged.verify(&v2), Err(TrustError::BadSignature));
    assert!(forged.verify(&other.public).is_ok());
    // Any change to the signed text.
    let mut altered = signed.clone();
    altered.statement = altered.statement.replace("dev-records-1", "dev-records-2");
    assert_eq!(altered.verify(&v2), Err(TrustError::BadSignature));
    let mut garbled = signed.clone();
    garbled.signature = "not base64!".into();
    assert_eq!(garbled.verify(&v2), Err(TrustError::BadSignature));
    // records.pub version 1 binds nothing.
    let v1 = RecordsPublic::parse(&read("records.pub")).unwrap();
    assert_eq!(signed.verify(&v1), Err(TrustError::Unbindable));
}

#[test]
fn issue8_a_signed_statement_that_contradicts_records_pub_is_refused() {
    let (v2, _, statement) = vector_binding();
    let (_, secret) = vector_secret();
    let refused = |change: &dyn Fn(&mut ArchiverBinding)| {
        let mut s = statement.clone();
        change(&mut s);
        match secret.sign_binding(&s).verify(&v2) {
            Err(TrustError::MalformedBinding(m)) => m,
            other => panic!("accepted or wrong error: {other:?}"),
        }
    };
    assert!(refused(&|s| s.origin = "elsewhere.example/log".into()).contains("origin"));
    assert!(refused(&|s| s.version = 2).contains("version"));
    assert!(refused(&|s| s.serial = 0).contains("serial"));
    assert!(refused(&|s| s.witness_quorum = 2).contains("quorum"));
    assert!(refused(&|s| s.archiver_identity = "AAAA".into()).contains("archiver_identity"));
    assert!(refused(&|s| s.archiver_device.clear()).contains("archiver_device"));
    let foreign_log = statement.previous.clone().unwrap().log_key;
    assert!(refused(&|s| s.log_key = foreign_log.clone()).contains("log key"));
    assert!(refused(&|s| s.witnesses.push(s.witnesses[0].clone())).contains("twice"));
    assert!(refused(&|s| s.witnesses.push(s.log_key.clone())).contains("witness"));
    let mut unknown_field = serde_json::to_value(&statement).unwrap();
    unknown_field["extra"] = serde_json::json!(1);
    let text = unknown_field.to_string();
    let statement_only = SignedBinding {
        signature: secret.sign_binding(&statement).signature,
        statement: text,
    };
    assert!(statement_only.verify(&v2).is_err());
}

#[test]
fn issue8_records_pub_versions_are_parsed_strictly() {
    let v2 = RecordsPublic::parse(&read("records-v2.pub")).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&v2).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        f(&mut j);
        RecordsPublic::parse(&j.to_string())
    };
    assert!(
        with(&|j| j["version"] = 1.into()).is_err(),
        "v1 with v2 fields"
    );
    assert!(with(&|j| {
        j.as_object_mut().unwrap().remove("origin");
    })
    .is_err());
    assert!(with(&|j| j["origin"] = "has space".into()).is_err());
    assert!(with(&|j| j["origin"] = "".into()).is_err());
    assert!(with(&|j| j["binding_key"] = "AAAA".into()).is_err());
    assert!(with(&|j| j["unknown"] = 1.into()).is_err());
    let too_new = with(&|j| j["version"] = 3.into()).unwrap_err().to_string();
    assert!(too_new.contains("newer"), "{too_new}");
    json["origin"] = "records.agency.example/other".into();
    assert!(RecordsPublic::parse(&json.to_string()).is_ok());
    assert!(generate(3, 2, "bad origin").is_err());
    assert_eq!(generate(3, 2, "a.example/log").unwrap().public.version, 2);
}

#[test]
fn issue8_shares_of_a_v2_file_with_a_replaced_binding_key_do_not_unseal() {
    let g = generate(3, 2, "records.test/vellum").unwrap();
    let mut tampered = g.public.clone();
    let other = generate(3, 2, "records.test/vellum").unwrap().public;
    tampered.binding_key = other.binding_key;
    let tampered = RecordsPublic::parse(&tampered.to_json()).unwrap();
    let shares: Vec<&str> = g.shares.iter().map(|s| s.as_str()).collect();
    assert!(matches!(
        unseal(&tampered, &shares[..2]),
        Err(vellum_records::Error::WrongKey)
    ));
    let secret = unseal(&g.public, &shares[1..]).unwrap();
    let upgraded = secret
        .upgrade_public(&g.public, "records.test/vellum")
        .unwrap();
    assert_eq!(
        upgraded, g.public,
        "the binding key is the seed's, whoever derives it"
    );
}
