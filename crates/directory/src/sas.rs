//! Device approval by a short authentication string (SAS), after a hash commitment.
//!
//! The exchange runs through the server, which may change anything in transit:
//! 1. the new device commits to its offer (its id, keys and a fresh nonce) by hash;
//! 2. an approved device of the same user answers with its hello (its id, keys, the user's
//!    identity key and a fresh nonce of its own);
//! 3. only then does the new device reveal its offer, and both compute the code from
//!    everything exchanged.
//!
//! The new device's values are fixed before the approver's nonce is known, and the
//! approver's nonce before the new device reveals anything, so whoever sits in the middle
//! cannot choose keys to make the two codes agree: a substitution matches with probability
//! 10^-12. The approver types the code the new device shows; on a match it signs the device
//! into the directory and seals the identity key to the new device's HPKE key, bound to the
//! whole exchange.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vellum_mls::mls_rs::crypto::{HpkeCiphertext, HpkePublicKey, HpkeSecretKey};
use vellum_mls::mls_rs::{CipherSuiteProvider, CryptoProvider};
use zeroize::Zeroizing;

use crate::entry::{hex32, DeviceRef, Key32};
use crate::{Error, IdentityKey};

const COMMIT_LABEL: &[u8] = b"vellum-device-approval-commit-v1\n";
const CODE_LABEL: &[u8] = b"vellum-device-approval-code-v1\n";
const TRANSCRIPT_LABEL: &[u8] = b"vellum-device-approval-transcript-v1\n";
const HPKE_INFO: &[u8] = b"vellum-identity-transfer-v1";
/// X25519 encapsulation (32) + AES-128-GCM of a 32-byte seed (32 + 16).
pub const SEALED_IDENTITY_LEN: usize = 80;

fn provider() -> impl CipherSuiteProvider {
    vellum_mls::mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
        .cipher_suite_provider(vellum_mls::CIPHER_SUITE)
        .expect("suite 0x0001 is supported")
}

fn random32() -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    getrandom::fill(out.as_mut_slice()).expect("operating system RNG");
    out
}

/// What the new device reveals in step 3 (and commits to in step 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOffer {
    pub device: DeviceRef,
    /// The X25519 key the identity key is sealed to.
    #[serde(with = "hex32")]
    pub hpke_key: Key32,
    #[serde(with = "hex32")]
    pub nonce: Key32,
}

/// The approving device's answer in step 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverHello {
    pub device: DeviceRef,
    #[serde(with = "hex32")]
    pub identity_key: Key32,
    #[serde(with = "hex32")]
    pub nonce: Key32,
}

/// The new device's secrets for one exchange, kept in its profile until it ends.
#[derive(Clone, Serialize, Deserialize)]
pub struct OfferSecret {
    pub offer: DeviceOffer,
    #[serde(with = "hex32")]
    hpke_seed: Key32,
}

impl std::fmt::Debug for OfferSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferSecret")
            .field("offer", &self.offer)
            .finish_non_exhaustive()
    }
}

impl Drop for OfferSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.hpke_seed);
    }
}

impl OfferSecret {
    /// A fresh offer for `device`: a new nonce and a new HPKE key.
    pub fn new(device: DeviceRef) -> Self {
        let hpke_seed = *random32();
        let (_, public) = provider()
            .kem_derive(&hpke_seed)
            .expect("X25519 key derivation from 32 bytes");
        let hpke_key: Key32 = public
            .as_ref()
            .try_into()
            .expect("an X25519 public key is 32 bytes");
        Self {
            offer: DeviceOffer {
                device,
                hpke_key,
                nonce: *random32(),
            },
            hpke_seed,
        }
    }

    /// Step 1's commitment.
    pub fn commitment(&self, user: &str) -> Key32 {
        commitment(user, &self.offer)
    }

    /// Opens the identity key sealed to this offer by the approver whose `hello` the code
    /// was computed over; the key must be the one the hello named.
    pub fn open_identity(
        &self,
        user: &str,
        hello: &ApproverHello,
        sealed: &[u8],
    ) -> Result<IdentityKey, Error> {
        if sealed.len() != SEALED_IDENTITY_LEN {
            return Err(Error::Approval(
                "the sealed identity has the wrong length".into(),
            ));
        }
        let (secret, public) = provider()
            .kem_derive(&self.hpke_seed)
            .expect("X25519 key derivation from 32 bytes");
        let (secret, public): (HpkeSecretKey, HpkePublicKey) = (secret, public);
        let (kem_output, ciphertext) = sealed.split_at(32);
        let seed = provider()
            .hpke_open(
                &HpkeCiphertext {
                    kem_output: kem_output.to_vec(),
                    ciphertext: ciphertext.to_vec(),
                },
                &secret,
                &public,
                HPKE_INFO,
                Some(&transcript_hash(user, &self.offer, hello)),
            )
            .map_err(|_| {
                Error::Approval("the identity key does not open for this device".into())
            })?;
        let seed = Zeroizing::new(seed);
        let identity = IdentityKey::from_seed(&seed)?;
        if identity.public() != hello.identity_key {
            return Err(Error::Approval(
                "the sealed identity is not the one the verification code covered".into(),
            ));
        }
        Ok(identity)
    }
}

/// SHA-256 over the label, the user and the whole offer.
pub fn commitment(user: &str, offer: &DeviceOffer) -> Key32 {
    let mut h = Sha256::new();
    h.update(COMMIT_LABEL);
    h.update(field(user.as_bytes()));
    h.update(offer_bytes(offer));
    h.finalize().into()
}

/// Length-prefixed, so no two field lists encode alike.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn offer_bytes(offer: &DeviceOffer) -> Vec<u8> {
    [
        field(offer.device.device_id.as_bytes()),
        field(&offer.device.signature_key),
        field(&offer.hpke_key),
        field(&offer.nonce),
    ]
    .concat()
}

fn hello_bytes(hello: &ApproverHello) -> Vec<u8> {
    [
        field(hello.device.device_id.as_bytes()),
        field(&hello.device.signature_key),
        field(&hello.identity_key),
        field(&hello.nonce),
    ]
    .concat()
}

fn exchange_hash(label: &[u8], user: &str, offer: &DeviceOffer, hello: &ApproverHello) -> Key32 {
    let mut h = Sha256::new();
    h.update(label);
    h.update(field(user.as_bytes()));
    h.update(commitment(user, offer));
    h.update(offer_bytes(offer));
    h.update(hello_bytes(hello));
    h.finalize().into()
}

fn transcript_hash(user: &str, offer: &DeviceOffer, hello: &ApproverHello) -> Key32 {
    exchange_hash(TRANSCRIPT_LABEL, user, offer, hello)
}

/// The 12-digit code both devices show, as `1234-5678-9012`.
pub fn verification_code(user: &str, offer: &DeviceOffer, hello: &ApproverHello) -> String {
    let hash = exchange_hash(CODE_LABEL, user, offer, hello);
    let number = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    let digits = format!("{number:012}");
    format!("{}-{}-{}", &digits[..4], &digits[4..8], &digits[8..])
}

/// Whether a typed code is `expected`; spaces and dashes are ignored.
pub fn code_matches(typed: &str, expected: &str) -> bool {
    let digits = |s: &str| -> String { s.chars().filter(|c| !matches!(c, ' ' | '-')).collect() };
    let (typed, expected) = (digits(typed), digits(expected));
    // Not secret (the approver computed it), so a plain comparison is fine.
    !typed.is_empty() && typed == expected
}

/// The approver's secrets for one exchange: its nonce, kept until step 3.
#[derive(Clone, Serialize, Deserialize)]
pub struct HelloSecret {
    pub hello: ApproverHello,
}

impl std::fmt::Debug for HelloSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloSecret")
            .field("device", &self.hello.device.device_id)
            .finish_non_exhaustive()
    }
}

impl HelloSecret {
    pub fn new(device: DeviceRef, identity_key: Key32) -> Self {
        Self {
            hello: ApproverHello {
                device,
                identity_key,
                nonce: *random32(),
            },
        }
    }

    /// Step 3 on the approver: checks the revealed offer against the commitment it answered,
    /// then the typed code. On success returns the sealed identity key for the new device.
    pub fn complete(
        &self,
        user: &str,
        committed: &Key32,
        offer: &DeviceOffer,
        typed_code: &str,
        identity: &IdentityKey,
    ) -> Result<Vec<u8>, Error> {
        if &commitment(user, offer) != committed {
            return Err(Error::Approval(
                "the new device revealed something other than what it committed to: someone \
                 between the devices changed it"
                    .into(),
            ));
        }
        if identity.public() != self.hello.identity_key {
            return Err(Error::Approval(
                "this is not the identity the exchange began with".into(),
            ));
        }
        let expected = verification_code(user, offer, &self.hello);
        if !code_matches(typed_code, &expected) {
            return Err(Error::WrongCode);
        }
        let seed = identity.seed();
        let sealed = provider()
            .hpke_seal(
                &HpkePublicKey::from(offer.hpke_key.to_vec()),
                HPKE_INFO,
                Some(&transcript_hash(user, offer, &self.hello)),
                seed.as_slice(),
            )
            .map_err(|_| Error::Approval("sealing the identity key failed".into()))?;
        let sealed = [sealed.kem_output, sealed.ciphertext].concat();
        debug_assert_eq!(sealed.len(), SEALED_IDENTITY_LEN);
        Ok(sealed)
    }
}
