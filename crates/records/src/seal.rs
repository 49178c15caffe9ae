use vellum_mls::mls_rs::crypto::{HpkeCiphertext, HpkePublicKey};
use vellum_mls::mls_rs::CipherSuiteProvider;
use zeroize::Zeroizing;

use crate::keys::{provider, RecordsSecret};
use crate::Error;

const HPKE_INFO: &[u8] = b"vellum-record-key-v1";
/// X25519 encapsulation (32) + AES-128-GCM of a 16-byte key (16 + 16).
pub const SEALED_KEY_LEN: usize = 64;

/// A record: its body under a content key of its own, and that key sealed to the records key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub sealed_key: Vec<u8>,
    pub body: Vec<u8>,
}

/// Seals `plaintext`, bound to `aad` (the record's identity), to the records public key.
pub fn seal(public_key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<SealedRecord, Error> {
    let content_key = vellum_mls::at_rest::new_message_key();
    let body = vellum_mls::at_rest::seal(&content_key, aad, plaintext)
        .map_err(|e| Error::Open(e.to_string()))?;
    let sealed = provider()
        .hpke_seal(
            &HpkePublicKey::from(public_key.to_vec()),
            HPKE_INFO,
            Some(aad),
            &content_key,
        )
        .map_err(|_| Error::Open("HPKE seal failed".into()))?;
    let sealed_key = [sealed.kem_output, sealed.ciphertext].concat();
    debug_assert_eq!(sealed_key.len(), SEALED_KEY_LEN);
    Ok(SealedRecord { sealed_key, body })
}

/// Opens a record with the unsealed records key.
pub fn open(
    secret: &RecordsSecret,
    aad: &[u8],
    record: &SealedRecord,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if record.sealed_key.len() != SEALED_KEY_LEN {
        return Err(Error::Open("sealed key has the wrong length".into()));
    }
    let (kem_output, ciphertext) = record.sealed_key.split_at(32);
    let hpke = HpkeCiphertext {
        kem_output: kem_output.to_vec(),
        ciphertext: ciphertext.to_vec(),
    };
    let content_key = provider()
        .hpke_open(&hpke, &secret.secret, &secret.public, HPKE_INFO, Some(aad))
        .map_err(|_| Error::Open("the content key does not open under this records key".into()))?;
    vellum_mls::at_rest::open(&content_key, aad, &record.body)
        .map_err(|e| Error::Open(e.to_string()))
}
