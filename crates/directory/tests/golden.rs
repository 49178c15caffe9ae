//! The directory's wire format, pinned: an entry written by this version must read the same
//! forever (devices replay every entry ever appended), and its leaf hash must not move.
//! When the golden entry was made, both its signatures were verified over the statement text
//! (`vellum-directory-v1\nidentity alice <identity> <device id> <device key>\n`) with Python's
//! `cryptography`, and the identity key checked as the Ed25519 key of the seed 0x01 × 32.

use vellum_directory::{DeviceRef, DirectoryState, IdentityKey, Statement};
use vellum_mls::DeviceKey;

const ENTRY: &str = include_str!("golden/identity-entry-v1.json");
const LEAF_HASH: &str = include_str!("golden/identity-entry-v1.leaf-hash");

fn golden_entry() -> Vec<u8> {
    let identity = IdentityKey::from_seed(&[1; 32]).unwrap();
    let key = DeviceKey::from_seed(&[2; 32]).unwrap();
    let device = DeviceRef {
        device_id: "0123456789abcdef0123456789abcdef".into(),
        signature_key: key.public_key(),
    };
    let mut state = DirectoryState::default();
    state
        .apply(
            &state
                .next_entry("", 1_700_000_000, vellum_directory::Change::UpgradeDone)
                .to_bytes(),
        )
        .unwrap();
    state
        .next_entry(
            "alice",
            1_700_000_001,
            identity.identity_change("alice", device, &key),
        )
        .to_bytes()
}

#[test]
fn an_identity_entry_is_byte_for_byte_the_golden_one() {
    let bytes = golden_entry();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), ENTRY.trim_end());
    assert_eq!(
        hex::encode(vellum_tlog::leaf_hash(&bytes)),
        LEAF_HASH.trim_end()
    );
}

#[test]
fn the_golden_entry_keeps_the_rules() {
    let mut state = DirectoryState::default();
    let done = state
        .next_entry("", 1_700_000_000, vellum_directory::Change::UpgradeDone)
        .to_bytes();
    state.apply(&done).unwrap();
    let entry = state.apply(ENTRY.trim_end().as_bytes()).unwrap();
    assert_eq!(entry.user, "alice");
    // What the identity key signed, as text.
    let identity = IdentityKey::from_seed(&[1; 32]).unwrap();
    let key = DeviceKey::from_seed(&[2; 32]).unwrap();
    let statement = Statement::Identity {
        user: "alice",
        identity_key: &identity.public(),
        device: &DeviceRef {
            device_id: "0123456789abcdef0123456789abcdef".into(),
            signature_key: key.public_key(),
        },
    };
    let text = String::from_utf8(statement.to_bytes()).unwrap();
    assert!(text.starts_with("vellum-directory-v1\nidentity alice "));
    assert!(
        text.contains(" 0123456789abcdef0123456789abcdef "),
        "{text}"
    );
}
