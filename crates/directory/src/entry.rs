//! One directory entry: what changed for one user, chained to that user's previous entry.
//!
//! A leaf of the directory log is the exact JSON text of a [`DirectoryEntry`] (the server
//! stores and serves those bytes; nobody re-encodes them), so no canonical form is needed.
//! What a user's identity key signs is a separate, fixed text statement ([`Statement`]).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use vellum_mls::DeviceKey;
use zeroize::Zeroizing;

use crate::Error;

/// The entry format this code writes and reads.
pub const ENTRY_VERSION: u32 = 1;
/// Entries larger than this are refused before parsing.
pub const MAX_ENTRY_BYTES: usize = 4096;

/// A 32-byte key or hash, as lowercase hex in JSON.
pub type Key32 = [u8; 32];

pub(crate) mod hex32 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes of hex"))
    }
}

pub(crate) mod hex32_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::hex32::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::hex32")] [u8; 32]);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

mod hex64 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(D::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::custom("expected 64 bytes of hex"))
    }
}

/// A 64-byte Ed25519 signature, hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sig(#[serde(with = "hex64")] pub [u8; 64]);

impl std::fmt::Debug for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sig({}…)", hex::encode(&self.0[..4]))
    }
}

/// A device as the directory names it: its id and its Ed25519 signature key (the key of its
/// MLS leaf and of its requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRef {
    pub device_id: String,
    #[serde(with = "hex32")]
    pub signature_key: Key32,
}

/// What one entry changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    /// Starts a user's identity (first device, or the first after a reset) with its device.
    /// Signed by the new identity key itself.
    Identity {
        #[serde(with = "hex32")]
        identity_key: Key32,
        device: DeviceRef,
        signature: Sig,
        /// The same statement signed by `device`'s own key: the device consents.
        device_signature: Sig,
    },
    /// A device that existed before the directory: "approved at upgrade". Valid only in the
    /// listing that opens the log, before [`Change::UpgradeDone`].
    Legacy { device: DeviceRef },
    /// Closes the upgrade listing; the first entry of a new deployment's log. Its `user` is "".
    UpgradeDone,
    /// A device approved by an approved device of the same user (after comparing codes).
    Approved {
        device: DeviceRef,
        by_device: String,
        signature: Sig,
        /// The same statement signed by `by_device`'s own key, so the identity key alone (a
        /// revoked device kept it) approves nothing.
        device_signature: Sig,
    },
    /// The user revoked one of their devices.
    RevokedByUser {
        device_id: String,
        by_device: String,
        signature: Sig,
        device_signature: Sig,
    },
    /// An administrator revoked a device.
    RevokedByAdmin { device_id: String },
    /// An administrator asked to reset the user's identity; it takes effect at
    /// `effective_at` (Unix seconds) unless a device of the user vetoes it.
    ResetRequested {
        request_id: String,
        effective_at: i64,
    },
    /// A device of the user stopped a reset.
    ResetVetoed {
        request_id: String,
        by_device: String,
        signature: Sig,
        device_signature: Sig,
    },
    /// The reset took effect: the identity and every device of the user are gone.
    Reset { request_id: String },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Identity { .. } => "identity",
            Change::Legacy { .. } => "legacy",
            Change::UpgradeDone => "upgrade_done",
            Change::Approved { .. } => "approved",
            Change::RevokedByUser { .. } => "revoked_by_user",
            Change::RevokedByAdmin { .. } => "revoked_by_admin",
            Change::ResetRequested { .. } => "reset_requested",
            Change::ResetVetoed { .. } => "reset_vetoed",
            Change::Reset { .. } => "reset",
        }
    }
}

/// One leaf of the directory log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    pub version: u32,
    pub user: String,
    /// 0 for the user's first entry, then one more each time.
    pub user_seq: u64,
    /// The leaf hash of the user's previous entry (none for the first).
    #[serde(with = "hex32_opt")]
    pub prev: Option<Key32>,
    /// The server's clock when it appended the entry, Unix seconds.
    pub time: i64,
    pub change: Change,
}

impl DirectoryEntry {
    /// The leaf bytes: this entry's JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries serialize")
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(Error::Malformed(format!(
                "entry of {} bytes (at most {MAX_ENTRY_BYTES})",
                bytes.len()
            )));
        }
        let entry: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("undecodable entry: {e}")))?;
        if entry.version != ENTRY_VERSION {
            return Err(Error::UnsupportedVersion(entry.version));
        }
        Ok(entry)
    }
}

/// What a user's identity key signs: `vellum-directory-v1\n` and one line of space-separated
/// fields. User names and device ids hold no spaces (the server refuses them), so the line
/// is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement<'a> {
    Identity {
        user: &'a str,
        identity_key: &'a Key32,
        device: &'a DeviceRef,
    },
    Approve {
        user: &'a str,
        identity_key: &'a Key32,
        device: &'a DeviceRef,
        by_device: &'a str,
    },
    Revoke {
        user: &'a str,
        identity_key: &'a Key32,
        device_id: &'a str,
        by_device: &'a str,
    },
    Veto {
        user: &'a str,
        identity_key: &'a Key32,
        request_id: &'a str,
        by_device: &'a str,
    },
}

const STATEMENT_LABEL: &str = "vellum-directory-v1\n";

impl Statement<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let line = match self {
            Statement::Identity {
                user,
                identity_key,
                device,
            } => format!(
                "identity {user} {} {} {}",
                hex::encode(identity_key),
                device.device_id,
                hex::encode(device.signature_key)
            ),
            Statement::Approve {
                user,
                identity_key,
                device,
                by_device,
            } => format!(
                "approve {user} {} {} {} {by_device}",
                hex::encode(identity_key),
                device.device_id,
                hex::encode(device.signature_key)
            ),
            Statement::Revoke {
                user,
                identity_key,
                device_id,
                by_device,
            } => format!(
                "revoke {user} {} {device_id} {by_device}",
                hex::encode(identity_key)
            ),
            Statement::Veto {
                user,
                identity_key,
                request_id,
                by_device,
            } => format!(
                "veto {user} {} {request_id} {by_device}",
                hex::encode(identity_key)
            ),
        };
        format!("{STATEMENT_LABEL}{line}\n").into_bytes()
    }

    fn identity_key(&self) -> &Key32 {
        match self {
            Statement::Identity { identity_key, .. }
            | Statement::Approve { identity_key, .. }
            | Statement::Revoke { identity_key, .. }
            | Statement::Veto { identity_key, .. } => identity_key,
        }
    }

    /// Checks `signature` by the identity key the statement names, and `device_signature` by
    /// the key of the device that made it (`device_key`).
    pub fn verify(
        &self,
        signature: &Sig,
        device_key: &Key32,
        device_signature: &Sig,
    ) -> Result<(), Error> {
        let bytes = self.to_bytes();
        let key = VerifyingKey::from_bytes(self.identity_key())
            .map_err(|_| Error::BadSignature("the identity key is not an Ed25519 key".into()))?;
        key.verify_strict(&bytes, &Signature::from_bytes(&signature.0))
            .map_err(|_| Error::BadSignature("not signed by the user's identity key".into()))?;
        let device = VerifyingKey::from_bytes(device_key)
            .map_err(|_| Error::BadSignature("the device key is not an Ed25519 key".into()))?;
        device
            .verify_strict(&bytes, &Signature::from_bytes(&device_signature.0))
            .map_err(|_| {
                Error::BadSignature("not signed by the device that made the change".into())
            })
    }
}

/// A user's identity key. Created on the user's first device, handed to each device the user
/// approves (sealed to it, see [`crate::sas`]), never to the server.
pub struct IdentityKey(SigningKey);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey({})", hex::encode(self.public()))
    }
}

impl IdentityKey {
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).expect("operating system RNG");
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn from_seed(seed: &[u8]) -> Result<Self, Error> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| Error::Malformed("an identity key seed is 32 bytes".into()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    pub fn public(&self) -> Key32 {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, statement: &Statement<'_>) -> Sig {
        Sig(self.0.sign(&statement.to_bytes()).to_bytes())
    }

    /// The change that starts this identity with `device`, whose key `device_key` is.
    pub fn identity_change(&self, user: &str, device: DeviceRef, device_key: &DeviceKey) -> Change {
        let identity_key = self.public();
        let statement = Statement::Identity {
            user,
            identity_key: &identity_key,
            device: &device,
        };
        let (signature, device_signature) = self.sign_both(&statement, device_key);
        Change::Identity {
            identity_key,
            device,
            signature,
            device_signature,
        }
    }

    /// `by_key` is the key of `by_device`, the approving device.
    pub fn approve_change(
        &self,
        user: &str,
        device: DeviceRef,
        by_device: &str,
        by_key: &DeviceKey,
    ) -> Change {
        let statement = Statement::Approve {
            user,
            identity_key: &self.public(),
            device: &device,
            by_device,
        };
        let (signature, device_signature) = self.sign_both(&statement, by_key);
        Change::Approved {
            device,
            by_device: by_device.to_owned(),
            signature,
            device_signature,
        }
    }

    pub fn revoke_change(
        &self,
        user: &str,
        device_id: &str,
        by_device: &str,
        by_key: &DeviceKey,
    ) -> Change {
        let statement = Statement::Revoke {
            user,
            identity_key: &self.public(),
            device_id,
            by_device,
        };
        let (signature, device_signature) = self.sign_both(&statement, by_key);
        Change::RevokedByUser {
            device_id: device_id.to_owned(),
            by_device: by_device.to_owned(),
            signature,
            device_signature,
        }
    }

    pub fn veto_change(
        &self,
        user: &str,
        request_id: &str,
        by_device: &str,
        by_key: &DeviceKey,
    ) -> Change {
        let statement = Statement::Veto {
            user,
            identity_key: &self.public(),
            request_id,
            by_device,
        };
        let (signature, device_signature) = self.sign_both(&statement, by_key);
        Change::ResetVetoed {
            request_id: request_id.to_owned(),
            by_device: by_device.to_owned(),
            signature,
            device_signature,
        }
    }

    fn sign_both(&self, statement: &Statement<'_>, device_key: &DeviceKey) -> (Sig, Sig) {
        (
            self.sign(statement),
            Sig(device_key.sign(&statement.to_bytes())),
        )
    }
}
