#![no_main]
//! The org certificate decoder must reject anything it did not sign, without panicking.
use libfuzzer_sys::fuzz_target;
use vellum_mls::{DeviceCertificate, OrgSigner};

fuzz_target!(|data: &[u8]| {
    let org = OrgSigner::from_seed(&[7u8; 32]).unwrap();
    assert!(DeviceCertificate::verify(data, &org.public_key()).is_err());
});
