//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's decoders. An
//! ordinary test runs each over the committed seed corpus (`fuzz/corpus/<target>`), so the
//! targets build and hold without a nightly toolchain. None may panic on any input.

use mls_rs::{Extension, ExtensionList};
use mls_rs_codec::MlsDecode;

use crate::{
    ChatPolicy, DeviceCertificate, GroupTracker, OrgIdentityProvider, OrgSigner, RecordChat,
    CHAT_POLICY_EXTENSION, RECORD_CHAT_EXTENSION,
};

/// The org whose certificates the targets accept (a fixed, fuzz-only seed).
pub const FUZZ_ORG_SEED: [u8; 32] = [7; 32];

/// `device_certificate`: the org certificate decoder accepts only what the org signed, and
/// what it accepts is exactly the canonical encoding of the certificate it returns.
pub fn device_certificate(data: &[u8]) {
    let org = OrgSigner::from_seed(&FUZZ_ORG_SEED).expect("32-byte seed");
    if let Ok(cert) = DeviceCertificate::verify(data, &org.public_key()) {
        assert_eq!(
            cert.to_bytes(),
            data,
            "accepted a non-canonical certificate"
        );
    }
    let other = OrgSigner::from_seed(&[8; 32]).expect("32-byte seed");
    if DeviceCertificate::verify(data, &other.public_key()).is_ok() {
        // Only possible if the input is signed by that org: never both.
        assert!(DeviceCertificate::verify(data, &org.public_key()).is_err());
    }
}

/// `mls_message`: the server parses MLS bytes from any enrolled device and observes
/// GroupInfos.
pub fn mls_message(data: &[u8]) {
    if let Ok(message) = crate::parse_message(data) {
        let _ = message.epoch();
        let _ = message.group_id();
    }
    let org = OrgSigner::from_seed(&FUZZ_ORG_SEED).expect("32-byte seed");
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let _ = tracker.observe(data, "device");
    let _ = tracker.key_package_owner(data);
    let _ = tracker.load(data);
}

/// `group_context_extensions`: the server and every member read the chat policy (0xF0A1)
/// and the record-chat extension (0xF0A2) from a GroupContext a member wrote. `data` is
/// tried as the data of each extension and as a whole encoded extension list; what decodes
/// re-encodes to the same value.
pub fn group_context_extensions(data: &[u8]) {
    let mut lists = Vec::new();
    for ext in [CHAT_POLICY_EXTENSION, RECORD_CHAT_EXTENSION] {
        let mut list = ExtensionList::new();
        list.set(Extension::new(ext, data.to_vec()));
        lists.push(list);
    }
    let mut reader = data;
    if let Ok(list) = ExtensionList::mls_decode(&mut reader) {
        lists.push(list);
    }
    for list in lists {
        if let Ok(policy) = ChatPolicy::from_extensions(&list) {
            let again = ChatPolicy::from_extensions(&policy.to_extensions(ExtensionList::new()));
            assert_eq!(again.ok(), Some(policy));
        }
        if let Ok(Some(archiver)) = RecordChat::archiver(&list) {
            let list = RecordChat::new(&archiver).add_to(ExtensionList::new());
            assert_eq!(RecordChat::archiver(&list).ok(), Some(Some(archiver)));
        }
    }
}
