use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use blahaj::{Share, Sharks};
use sha2::{Digest, Sha256};
use vellum_mls::mls_rs::crypto::{HpkePublicKey, HpkeSecretKey};
use vellum_mls::mls_rs::{CipherSuiteProvider, CryptoProvider};
use vellum_record::{ArchiverBinding, RecordsPublic, SignedBinding, RECORDS_PUBLIC_VERSION};
use zeroize::Zeroizing;

use crate::Error;

const SHARE_HEADER: &str = "vellum-records-share-v1";

pub(crate) fn provider() -> impl CipherSuiteProvider {
    vellum_mls::mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
        .cipher_suite_provider(vellum_mls::CIPHER_SUITE)
        .expect("suite 0x0001 is supported")
}

fn derive(seed: &[u8]) -> (HpkeSecretKey, HpkePublicKey) {
    provider()
        .kem_derive(seed)
        .expect("X25519 key derivation from 32 bytes")
}

/// The binding key: HKDF-SHA256 of the records seed, kept apart from the HPKE key by its
/// salt and label, so knowing one key says nothing of the other.
fn derive_binding(seed: &[u8]) -> ed25519_dalek::SigningKey {
    let provider = provider();
    let prk = provider
        .kdf_extract(b"vellum-records-binding", seed)
        .expect("HKDF-SHA256 extract");
    let okm = Zeroizing::new(
        provider
            .kdf_expand(&prk, b"ed25519 signing key v1", 32)
            .expect("HKDF-SHA256 expand to 32 bytes"),
    );
    let bytes: [u8; 32] = okm.as_slice().try_into().expect("32 bytes");
    ed25519_dalek::SigningKey::from_bytes(&bytes)
}

fn binding_public(seed: &[u8]) -> String {
    STANDARD.encode(derive_binding(seed).verifying_key().as_bytes())
}

/// The output of `records init`: the public file and one share file per custodian.
pub struct Generated {
    pub public: RecordsPublic,
    /// Share file contents, index 1..=n.
    pub shares: Vec<Zeroizing<String>>,
}

/// Generates the records key, with the log's `origin`, and splits its seed
/// `threshold`-of-`custodians`.
pub fn generate(custodians: u8, threshold: u8, origin: &str) -> Result<Generated, Error> {
    vellum_record::check_origin(origin).map_err(Error::InvalidSplit)?;
    if threshold < 2 {
        return Err(Error::InvalidSplit(
            "the threshold must be at least 2: no one custodian may unseal alone".into(),
        ));
    }
    if custodians < threshold {
        return Err(Error::InvalidSplit(format!(
            "{custodians} custodians cannot meet a threshold of {threshold}"
        )));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).expect("operating system RNG");
    let (_, public_key) = derive(seed.as_ref());
    let mut shares = Vec::new();
    let mut share_hashes = Vec::new();
    for share in Sharks(threshold)
        .dealer(seed.as_ref())
        .take(custodians as usize)
    {
        let bytes = Zeroizing::new(Vec::from(&share));
        share_hashes.push(hex::encode(Sha256::digest(&bytes[..])));
        shares.push(Zeroizing::new(format!(
            "{SHARE_HEADER}\n{threshold}\n{}\n",
            STANDARD.encode(&bytes[..])
        )));
    }
    Ok(Generated {
        public: RecordsPublic {
            version: RECORDS_PUBLIC_VERSION,
            public_key: STANDARD.encode(public_key.as_ref()),
            threshold,
            custodians,
            share_hashes,
            origin: Some(origin.to_owned()),
            binding_key: Some(binding_public(seed.as_ref())),
        },
        shares,
    })
}

/// The unsealed records key and binding key. Live only in memory.
pub struct RecordsSecret {
    pub(crate) secret: HpkeSecretKey,
    pub(crate) public: HpkePublicKey,
    /// Boxed: a signing key is large beside the rest of an unseal's progress.
    binding: Box<ed25519_dalek::SigningKey>,
    /// The reassembled seed, for keys derived from it ([`RecordsSecret::derive_key`]).
    seed: Zeroizing<Vec<u8>>,
}

impl RecordsSecret {
    /// A 32-byte key for `label`'s purpose (e.g. sealing FOIA case files at rest), derived
    /// from the records seed by HKDF-SHA256 with a salt of its own: it exists only while
    /// the archive is unsealed, and says nothing of the records key or of another label's.
    pub fn derive_key(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let provider = provider();
        let prk = provider
            .kdf_extract(b"vellum-records-derived-key", &self.seed)
            .expect("HKDF-SHA256 extract");
        let okm = Zeroizing::new(
            provider
                .kdf_expand(&prk, label.as_bytes(), 32)
                .expect("HKDF-SHA256 expand to 32 bytes"),
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&okm);
        key
    }

    /// Signs `statement` with the binding key: the custodians' act, possible only while
    /// their shares are assembled.
    pub fn sign_binding(&self, statement: &ArchiverBinding) -> SignedBinding {
        use ed25519_dalek::Signer;
        let statement = statement.to_statement();
        let signature = self.binding.sign(&SignedBinding::signed_bytes(&statement));
        SignedBinding {
            statement,
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    /// `records.pub` version 2 for a version 1 file of this same key: the same key and
    /// shares, with `origin` and the binding key, which only the assembled seed yields.
    pub fn upgrade_public(&self, v1: &RecordsPublic, origin: &str) -> Result<RecordsPublic, Error> {
        vellum_record::check_origin(origin).map_err(Error::MalformedPublic)?;
        Ok(RecordsPublic {
            version: RECORDS_PUBLIC_VERSION,
            origin: Some(origin.to_owned()),
            binding_key: Some(STANDARD.encode(self.binding.verifying_key().as_bytes())),
            ..v1.clone()
        })
    }
}

pub enum UnsealProgress {
    NeedMore { have: usize, need: usize },
    Unsealed(RecordsSecret),
}

/// Collects shares as custodians arrive.
pub struct Unsealer {
    public: RecordsPublic,
    shares: BTreeMap<u8, Share>,
}

impl Unsealer {
    pub fn new(public: RecordsPublic) -> Self {
        Self {
            public,
            shares: BTreeMap::new(),
        }
    }

    pub fn have(&self) -> usize {
        self.shares.len()
    }

    pub fn need(&self) -> usize {
        self.public.threshold as usize
    }

    /// Adds one share file; a malformed, corrupted, foreign or repeated share changes nothing.
    pub fn add(&mut self, share_file: &str) -> Result<UnsealProgress, Error> {
        let mut lines = share_file.lines();
        if lines.next() != Some(SHARE_HEADER) {
            return Err(Error::MalformedShare("missing header".into()));
        }
        let threshold: u8 = lines
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::MalformedShare("missing threshold".into()))?;
        let bytes = Zeroizing::new(
            lines
                .next()
                .and_then(|b| STANDARD.decode(b).ok())
                .ok_or_else(|| Error::MalformedShare("share is not base64".into()))?,
        );
        if lines.next().is_some() || bytes.len() != 33 {
            return Err(Error::MalformedShare("unexpected length".into()));
        }
        let index = bytes[0];
        let hash = hex::encode(Sha256::digest(&bytes[..]));
        let committed =
            index as usize >= 1 && self.public.share_hashes.get(index as usize - 1) == Some(&hash);
        if !committed || threshold != self.public.threshold {
            return Err(Error::CorruptedShare(index));
        }
        if self.shares.contains_key(&index) {
            return Err(Error::DuplicateShare(index));
        }
        let share =
            Share::try_from(&bytes[..]).map_err(|e| Error::MalformedShare(e.to_string()))?;
        self.shares.insert(index, share);
        if self.shares.len() < self.need() {
            return Ok(UnsealProgress::NeedMore {
                have: self.shares.len(),
                need: self.need(),
            });
        }
        let seed = Zeroizing::new(
            Sharks(self.public.threshold)
                .recover(self.shares.values())
                .map_err(|_| Error::WrongKey)?,
        );
        let (secret, public) = derive(&seed);
        let key = self
            .public
            .key_bytes()
            .map_err(|e| Error::MalformedPublic(e.to_string()))?;
        let binding = derive_binding(&seed);
        let binding_matches = self.public.binding_key.as_ref().is_none_or(|committed| {
            *committed == STANDARD.encode(binding.verifying_key().as_bytes())
        });
        if public.as_ref() != key.as_slice() || !binding_matches {
            return Err(Error::WrongKey);
        }
        self.shares.clear();
        Ok(UnsealProgress::Unsealed(RecordsSecret {
            secret,
            public,
            binding: Box::new(binding),
            seed: Zeroizing::new(seed.to_vec()),
        }))
    }
}
