//! The org is the MLS authentication service: it certifies each device's signature key.
//!
//! A device credential is an MLS BasicCredential whose identifier is a [`DeviceCertificate`]
//! (TLS presentation encoding), signed by the org's Ed25519 key. Every client pins the org
//! key at enrollment and checks every member's certificate; the server checks them too.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use mls_rs::identity::{basic::BasicCredential, CredentialType, SigningIdentity};
use mls_rs::time::MlsTime;
use mls_rs::{ExtensionList, IdentityProvider};
use mls_rs_codec::{MlsDecode, MlsEncode, MlsSize};
use mls_rs_core::identity::MemberValidationContext;

use crate::Error;

const CERT_LABEL: &[u8] = b"vellum-device-certificate-v1";

#[derive(Debug, Clone, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
struct CertificateBody {
    user: Vec<u8>,
    device_id: Vec<u8>,
    signature_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, MlsSize, MlsEncode, MlsDecode)]
struct EncodedCertificate {
    body: CertificateBody,
    org_signature: Vec<u8>,
}

/// An org-signed statement: `signature_key` belongs to device `device_id` of `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub user: String,
    pub device_id: String,
    pub signature_key: Vec<u8>,
    org_signature: Vec<u8>,
}

fn signed_bytes(body: &CertificateBody) -> Vec<u8> {
    let mut out = CERT_LABEL.to_vec();
    out.extend(body.mls_encode_to_vec().expect("certificate body encodes"));
    out
}

impl DeviceCertificate {
    pub fn to_bytes(&self) -> Vec<u8> {
        EncodedCertificate {
            body: self.body(),
            org_signature: self.org_signature.clone(),
        }
        .mls_encode_to_vec()
        .expect("certificate encodes")
    }

    /// Decodes and verifies against the pinned org key. Never returns an unverified certificate.
    pub fn verify(bytes: &[u8], org_key: &VerifyingKey) -> Result<Self, Error> {
        let mut reader = bytes;
        let encoded = EncodedCertificate::mls_decode(&mut reader)
            .map_err(|e| Error::Credential(format!("undecodable certificate: {e}")))?;
        if !reader.is_empty() {
            return Err(Error::Credential("trailing bytes after certificate".into()));
        }
        let signature = Signature::from_slice(&encoded.org_signature)
            .map_err(|_| Error::Credential("malformed org signature".into()))?;
        org_key
            .verify(&signed_bytes(&encoded.body), &signature)
            .map_err(|_| Error::Credential("certificate is not signed by this org".into()))?;
        let text = |b: Vec<u8>| {
            String::from_utf8(b).map_err(|_| Error::Credential("non-UTF-8 name".into()))
        };
        Ok(Self {
            user: text(encoded.body.user)?,
            device_id: text(encoded.body.device_id)?,
            signature_key: encoded.body.signature_key,
            org_signature: encoded.org_signature,
        })
    }

    /// The MLS identity for this device's leaf.
    pub fn signing_identity(&self) -> SigningIdentity {
        SigningIdentity::new(
            BasicCredential::new(self.to_bytes()).into_credential(),
            self.signature_key.clone().into(),
        )
    }

    /// Verifies a leaf's credential and that it certifies the leaf's own signature key.
    pub fn from_signing_identity(
        identity: &SigningIdentity,
        org_key: &VerifyingKey,
    ) -> Result<Self, Error> {
        let basic = identity
            .credential
            .as_basic()
            .ok_or_else(|| Error::Credential("not a basic credential".into()))?;
        let cert = Self::verify(&basic.identifier, org_key)?;
        if cert.signature_key.as_slice() != identity.signature_key.as_bytes() {
            return Err(Error::Credential(
                "certificate is for a different signature key".into(),
            ));
        }
        Ok(cert)
    }

    fn body(&self) -> CertificateBody {
        CertificateBody {
            user: self.user.as_bytes().to_vec(),
            device_id: self.device_id.as_bytes().to_vec(),
            signature_key: self.signature_key.clone(),
        }
    }
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("operating system RNG");
    seed
}

/// The org's certificate-signing key. Lives only on the delivery server.
pub struct OrgSigner(SigningKey);

impl OrgSigner {
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&random_seed()))
    }

    pub fn from_seed(seed: &[u8]) -> Result<Self, Error> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| Error::Credential("org key must be 32 bytes".into()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn issue(&self, user: &str, device_id: &str, signature_key: &[u8]) -> DeviceCertificate {
        let body = CertificateBody {
            user: user.as_bytes().to_vec(),
            device_id: device_id.as_bytes().to_vec(),
            signature_key: signature_key.to_vec(),
        };
        let org_signature = self.0.sign(&signed_bytes(&body)).to_bytes().to_vec();
        DeviceCertificate {
            user: user.into(),
            device_id: device_id.into(),
            signature_key: signature_key.to_vec(),
            org_signature,
        }
    }
}

/// A device's Ed25519 key: its MLS signature key, also used (under a distinct label, see
/// `vellum_wire::request_signing_bytes`) to sign its requests to the server.
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&random_seed()))
    }

    pub fn from_seed(seed: &[u8]) -> Result<Self, Error> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| Error::Credential("device key must be 32 bytes".into()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The key as mls-rs's RustCrypto provider expects it (seed followed by public key).
    pub(crate) fn mls_secret(&self) -> mls_rs::crypto::SignatureSecretKey {
        self.0.to_keypair_bytes().to_vec().into()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// Verifies a device's request signature against its registered public key.
pub fn verify_device_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

/// mls-rs identity provider: a member is valid iff the pinned org certified its key.
#[derive(Clone, Debug)]
pub struct OrgIdentityProvider {
    org_key: VerifyingKey,
}

impl OrgIdentityProvider {
    pub fn new(org_key: VerifyingKey) -> Self {
        Self { org_key }
    }

    pub fn from_bytes(org_key: &[u8]) -> Result<Self, Error> {
        let key: [u8; 32] = org_key
            .try_into()
            .map_err(|_| Error::Credential("org key must be 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| Error::Credential("org key is not a valid Ed25519 point".into()))?;
        Ok(Self::new(key))
    }

    pub fn org_key(&self) -> &VerifyingKey {
        &self.org_key
    }

    pub fn certificate(&self, identity: &SigningIdentity) -> Result<DeviceCertificate, Error> {
        DeviceCertificate::from_signing_identity(identity, &self.org_key)
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct IdentityError(#[from] Error);

impl mls_rs::error::IntoAnyError for IdentityError {
    fn into_dyn_error(self) -> Result<Box<dyn std::error::Error + Send + Sync>, Self> {
        Ok(self.into())
    }
}

impl IdentityProvider for OrgIdentityProvider {
    type Error = IdentityError;

    fn validate_member(
        &self,
        signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _context: MemberValidationContext<'_>,
    ) -> Result<(), Self::Error> {
        self.certificate(signing_identity)?;
        Ok(())
    }

    fn validate_external_sender(
        &self,
        _signing_identity: &SigningIdentity,
        _timestamp: Option<MlsTime>,
        _extensions: Option<&ExtensionList>,
    ) -> Result<(), Self::Error> {
        Err(Error::Credential("external senders are not allowed".into()).into())
    }

    fn identity(
        &self,
        signing_identity: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<Vec<u8>, Self::Error> {
        Ok(self.certificate(signing_identity)?.device_id.into_bytes())
    }

    fn valid_successor(
        &self,
        predecessor: &SigningIdentity,
        successor: &SigningIdentity,
        _extensions: &ExtensionList,
    ) -> Result<bool, Self::Error> {
        Ok(self.certificate(predecessor)?.device_id == self.certificate(successor)?.device_id)
    }

    fn supported_types(&self) -> Vec<CredentialType> {
        vec![BasicCredential::credential_type()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_verifies_only_under_its_org_and_unaltered() {
        let org = OrgSigner::generate();
        let device = DeviceKey::generate();
        let cert = org.issue("alice", "d1", &device.public_key());
        let bytes = cert.to_bytes();
        assert_eq!(
            DeviceCertificate::verify(&bytes, &org.public_key()).unwrap(),
            cert
        );

        let other_org = OrgSigner::generate();
        assert!(DeviceCertificate::verify(&bytes, &other_org.public_key()).is_err());

        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert!(
                DeviceCertificate::verify(&flipped, &org.public_key()).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert!(DeviceCertificate::verify(&bytes[..bytes.len() - 1], &org.public_key()).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DeviceCertificate::verify(&longer, &org.public_key()).is_err());
    }

    #[test]
    fn credential_must_certify_the_leaf_key() {
        let org = OrgSigner::generate();
        let provider = OrgIdentityProvider::new(org.public_key());
        let device = DeviceKey::generate();
        let cert = org.issue("bob", "d2", &device.public_key());
        assert!(provider.certificate(&cert.signing_identity()).is_ok());

        let thief = DeviceKey::generate();
        let stolen = SigningIdentity::new(
            BasicCredential::new(cert.to_bytes()).into_credential(),
            thief.public_key().to_vec().into(),
        );
        assert!(provider.certificate(&stolen).is_err());
    }

    #[test]
    fn request_signatures_verify_strictly() {
        let key = DeviceKey::generate();
        let sig = key.sign(b"hello");
        assert!(verify_device_signature(&key.public_key(), b"hello", &sig));
        assert!(!verify_device_signature(&key.public_key(), b"hellO", &sig));
        assert!(!verify_device_signature(
            &key.public_key()[..31],
            b"hello",
            &sig
        ));
        assert!(!verify_device_signature(
            &key.public_key(),
            b"hello",
            &sig[..63]
        ));
    }
}
