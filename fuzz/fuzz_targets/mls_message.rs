#![no_main]
//! The server parses MLS bytes from any enrolled device and observes GroupInfos.
use libfuzzer_sys::fuzz_target;
use vellum_mls::{GroupTracker, OrgIdentityProvider, OrgSigner};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = vellum_mls::parse_message(data) {
        let _ = message.epoch();
        let _ = message.group_id();
    }
    let org = OrgSigner::from_seed(&[7u8; 32]).unwrap();
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let _ = tracker.observe(data, "device");
    let _ = tracker.key_package_owner(data);
    let _ = tracker.load(data);
});
