//! The sans-I/O MLS layer (RFC 9420, via mls-rs): device identities certified by the org,
//! the credential check every member and the server run, the device-side client
//! configuration, and the server's public view of each group.
//!
//! This crate performs no network or file I/O; storage is injected through mls-rs's
//! `GroupStateStorage` and `KeyPackageStorage` traits.

pub mod at_rest;
mod device;
mod error;
pub mod fuzz_bodies;
mod identity;
mod policy;
mod roles;
mod tracker;

pub use device::{
    device_client, in_memory_device, key_package_message, last_resort_extensions, roster,
    DeviceClient, DeviceMlsConfig, InMemoryDevice,
};
pub use error::Error;
pub use identity::{
    verify_device_signature, DeviceCertificate, DeviceKey, OrgIdentityProvider, OrgSigner,
};
pub use policy::{
    ChatPolicy, ChatSettings, PolicyViolation, RecordChat, CHAT_POLICY_EXTENSION,
    CHAT_SETTINGS_EXTENSION, RECORD_CHAT_EXTENSION,
};
pub use roles::{authorize_commit, CommitChange, RemovedDevice};
pub use tracker::{CommitOutcome, GroupTracker, LeaveProposal, TrackedGroup};

pub use mls_rs;
pub use mls_rs_core;
pub use mls_rs_crypto_rustcrypto;

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (0x0001), the RFC 9420 mandatory suite.
pub const CIPHER_SUITE: mls_rs::CipherSuite = mls_rs::CipherSuite::CURVE25519_AES128;

/// Parses MLS bytes, turning any codec failure into [`Error::Malformed`].
pub fn parse_message(bytes: &[u8]) -> Result<mls_rs::MlsMessage, Error> {
    mls_rs::MlsMessage::from_bytes(bytes).map_err(|e| Error::Malformed(e.to_string()))
}

/// Lower-case hex of a group id: how groups are named in URLs and stores.
pub fn group_id_hex(group_id: &[u8]) -> String {
    hex::encode(group_id)
}
