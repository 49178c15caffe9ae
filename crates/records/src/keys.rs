use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD, Engine};
use blahaj::{Share, Sharks};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vellum_mls::mls_rs::crypto::{HpkePublicKey, HpkeSecretKey};
use vellum_mls::mls_rs::{CipherSuiteProvider, CryptoProvider};
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

/// `records.pub`: the public half, and a commitment to every share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsPublic {
    pub version: u32,
    /// HPKE public key (X25519), base64.
    pub public_key: String,
    pub threshold: u8,
    pub custodians: u8,
    /// SHA-256 of each share's bytes, hex, by share index (1-based).
    pub share_hashes: Vec<String>,
}

impl RecordsPublic {
    pub fn parse(json: &str) -> Result<Self, Error> {
        let public: Self =
            serde_json::from_str(json).map_err(|e| Error::MalformedPublic(e.to_string()))?;
        if public.version != 1
            || public.threshold < 2
            || public.threshold > public.custodians
            || public.share_hashes.len() != public.custodians as usize
        {
            return Err(Error::MalformedPublic(
                "inconsistent threshold, custodians or hashes".into(),
            ));
        }
        if public.key_bytes()?.len() != 32 {
            return Err(Error::MalformedPublic(
                "public_key must be a 32-byte X25519 key".into(),
            ));
        }
        Ok(public)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("records.pub serialises") + "\n"
    }

    pub fn key_bytes(&self) -> Result<Vec<u8>, Error> {
        STANDARD
            .decode(&self.public_key)
            .map_err(|_| Error::MalformedPublic("public_key is not base64".into()))
    }
}

/// The output of `records init`: the public file and one share file per custodian.
pub struct Generated {
    pub public: RecordsPublic,
    /// Share file contents, index 1..=n.
    pub shares: Vec<Zeroizing<String>>,
}

/// Generates the records key and splits its seed `threshold`-of-`custodians`.
pub fn generate(custodians: u8, threshold: u8) -> Result<Generated, Error> {
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
            version: 1,
            public_key: STANDARD.encode(public_key.as_ref()),
            threshold,
            custodians,
            share_hashes,
        },
        shares,
    })
}

/// The unsealed records key. Lives only in memory.
pub struct RecordsSecret {
    pub(crate) secret: HpkeSecretKey,
    pub(crate) public: HpkePublicKey,
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
        if public.as_ref() != self.public.key_bytes()?.as_slice() {
            return Err(Error::WrongKey);
        }
        self.shares.clear();
        Ok(UnsealProgress::Unsealed(RecordsSecret { secret, public }))
    }
}
