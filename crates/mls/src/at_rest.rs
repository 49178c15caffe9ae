//! At-rest encryption of one message under its own random key, so that destroying the key
//! destroys the message wherever a copy of its ciphertext may linger (crypto-shredding).
//! AEAD is the ciphersuite's own (AES-128-GCM for 0x0001), through mls-rs's provider.

use mls_rs::{CipherSuiteProvider, CryptoProvider};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use zeroize::Zeroizing;

use crate::{Error, CIPHER_SUITE};

fn provider() -> impl CipherSuiteProvider {
    RustCryptoProvider::default()
        .cipher_suite_provider(CIPHER_SUITE)
        .expect("the RustCrypto provider supports suite 0x0001")
}

/// A fresh random key for one message.
pub fn new_message_key() -> Zeroizing<Vec<u8>> {
    let p = provider();
    Zeroizing::new(
        p.random_bytes_vec(p.aead_key_size())
            .expect("operating system RNG"),
    )
}

/// `nonce || ciphertext`, bound to `aad` (the message's identity, so blobs cannot be swapped).
pub fn seal(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let p = provider();
    let nonce = p
        .random_bytes_vec(p.aead_nonce_size())
        .map_err(|_| Error::Rejected("at-rest encryption failed".into()))?;
    let ciphertext = p
        .aead_seal(key, plaintext, Some(aad), &nonce)
        .map_err(|_| Error::Rejected("at-rest encryption failed".into()))?;
    Ok([nonce, ciphertext].concat())
}

pub fn open(key: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let p = provider();
    let n = p.aead_nonce_size();
    if sealed.len() < n {
        return Err(Error::Malformed("sealed message is too short".into()));
    }
    let (nonce, ciphertext) = sealed.split_at(n);
    p.aead_open(key, ciphertext, Some(aad), nonce)
        .map_err(|_| Error::Rejected("sealed message does not open under this key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_identity() {
        let key = new_message_key();
        let sealed = seal(&key, b"chat/m1", b"secret text").unwrap();
        assert_eq!(
            open(&key, b"chat/m1", &sealed).unwrap().as_slice(),
            b"secret text"
        );
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert!(open(&new_message_key(), b"chat/m1", &sealed).is_err());
        assert!(open(&key, b"chat/m2", &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open(&key, b"chat/m1", &flipped).is_err());
        assert!(open(&key, b"chat/m1", &sealed[..4]).is_err());
    }
}
