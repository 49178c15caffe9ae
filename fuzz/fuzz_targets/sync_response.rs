#![no_main]
//! The client decodes whatever the server sends.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<vellum_wire::SyncResponse>(data);
    let _ = serde_json::from_slice::<vellum_wire::EnrollResponse>(data);
    let _ = serde_json::from_slice::<vellum_wire::ClaimedKeyPackages>(data);
});
