//! Known-answer vectors for the device certificate and the device's request signature,
//! written by an independent implementation (`tests/vectors/make.py`, Python `cryptography`).

use vellum_mls::{DeviceCertificate, DeviceKey, OrgSigner};

fn read(path: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bytes(v: &serde_json::Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap()).unwrap()
}

#[test]
fn device_certificates_encode_and_verify_as_the_vector_says() {
    let v = read("tests/vectors/device_certificate.json");
    let org = OrgSigner::from_seed(&bytes(&v, "org_seed_hex")).unwrap();
    assert_eq!(
        org.public_key().to_bytes().to_vec(),
        bytes(&v, "org_public_key_hex")
    );
    let expected = bytes(&v, "certificate_hex");
    let cert = org.issue(
        v["user"].as_str().unwrap(),
        v["device_id"].as_str().unwrap(),
        &bytes(&v, "signature_key_hex"),
    );
    assert_eq!(hex::encode(cert.to_bytes()), hex::encode(&expected));
    let verified = DeviceCertificate::verify(&expected, &org.public_key()).unwrap();
    assert_eq!(verified, cert);
    assert_eq!(verified.user, "alice");
    assert_eq!(verified.device_id, "dev-alice-1");
    // Any other org's key refuses it.
    let other = OrgSigner::from_seed(&[1; 32]).unwrap();
    assert!(DeviceCertificate::verify(&expected, &other.public_key()).is_err());
}

#[test]
fn request_signatures_match_the_vectors() {
    let v = read("../wire/tests/vectors/request_signing.json");
    let key = DeviceKey::from_seed(&bytes(&v, "device_seed_hex")).unwrap();
    assert_eq!(
        key.public_key().to_vec(),
        bytes(&v, "device_public_key_hex")
    );
    for case in v["cases"].as_array().unwrap() {
        let signed = bytes(case, "signing_bytes_hex");
        let signature = bytes(case, "signature_hex");
        assert_eq!(hex::encode(key.sign(&signed)), hex::encode(&signature));
        assert!(vellum_mls::verify_device_signature(
            &key.public_key(),
            &signed,
            &signature
        ));
    }
}
