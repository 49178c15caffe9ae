//! The device side: an mls-rs client configured with the org identity provider, the
//! RustCrypto provider and the caller's storage.

use mls_rs::client_builder::{
    BaseConfig, WithCryptoProvider, WithGroupStateStorage, WithIdentityProvider, WithKeyPackageRepo,
};
use mls_rs::extension::recommended::LastResortKeyPackageExt;
use mls_rs::group::Group;
use mls_rs::{Client, ExtensionList, GroupStateStorage, KeyPackageStorage, MlsMessage};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use crate::{DeviceCertificate, DeviceKey, Error, OrgIdentityProvider, CIPHER_SUITE};

/// The mls-rs configuration of every Vellum device, generic over where state is kept.
pub type DeviceMlsConfig<G, K> = WithIdentityProvider<
    OrgIdentityProvider,
    WithCryptoProvider<
        RustCryptoProvider,
        WithGroupStateStorage<G, WithKeyPackageRepo<K, BaseConfig>>,
    >,
>;

pub type DeviceClient<G, K> = Client<DeviceMlsConfig<G, K>>;

/// A device that keeps its MLS state in memory: for tests and for measuring raw mls-rs
/// beside Vellum (benchmarks), never for a device a user holds.
pub type InMemoryDevice = DeviceClient<
    mls_rs::storage_provider::in_memory::InMemoryGroupStateStorage,
    mls_rs::storage_provider::in_memory::InMemoryKeyPackageStorage,
>;

/// A fresh device of `org`, certified as `user`'s device `device_id`, with its state in
/// memory.
pub fn in_memory_device(org: &crate::OrgSigner, user: &str, device_id: &str) -> InMemoryDevice {
    let key = DeviceKey::generate();
    let certificate = org.issue(user, device_id, &key.public_key());
    device_client(
        &certificate,
        &key,
        OrgIdentityProvider::new(org.public_key()),
        Default::default(),
        Default::default(),
    )
}

/// Builds a device's MLS client. Commits go out as PublicMessage and carry the ratchet tree
/// in Welcome (mls-rs defaults), so the server can follow the handshake and joiners need
/// nothing out of band.
pub fn device_client<G, K>(
    certificate: &DeviceCertificate,
    key: &DeviceKey,
    identity: OrgIdentityProvider,
    groups: G,
    key_packages: K,
) -> DeviceClient<G, K>
where
    G: GroupStateStorage + Clone,
    K: KeyPackageStorage + Clone,
{
    Client::builder()
        .key_package_repo(key_packages)
        .group_state_storage(groups)
        .crypto_provider(RustCryptoProvider::default())
        .identity_provider(identity)
        .extension_type(crate::CHAT_POLICY_EXTENSION)
        .extension_type(crate::RECORD_CHAT_EXTENSION)
        .extension_type(crate::CHAT_SETTINGS_EXTENSION)
        .signing_identity(
            certificate.signing_identity(),
            key.mls_secret(),
            CIPHER_SUITE,
        )
        .build()
}

/// Key package extensions marking a last-resort key package (reusable when others run out).
pub fn last_resort_extensions() -> ExtensionList {
    let mut list = ExtensionList::new();
    list.set_from(LastResortKeyPackageExt)
        .expect("last resort extension encodes");
    list
}

/// The verified certificates of a group's members, in leaf order.
pub fn roster<C: mls_rs::client_builder::MlsConfig>(
    group: &Group<C>,
    identity: &OrgIdentityProvider,
) -> Result<Vec<(u32, DeviceCertificate)>, Error> {
    group
        .roster()
        .members_iter()
        .map(|m| Ok((m.index, identity.certificate(&m.signing_identity)?)))
        .collect()
}

/// A key package received from the server, checked to be a key package at all.
pub fn key_package_message(bytes: &[u8]) -> Result<MlsMessage, Error> {
    let message = crate::parse_message(bytes)?;
    if message.as_key_package().is_none() {
        return Err(Error::UnexpectedMessage("a key package"));
    }
    Ok(message)
}
