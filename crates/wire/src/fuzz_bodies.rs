//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's decoders. An
//! ordinary test runs each over the committed seed corpus (`fuzz/corpus/<target>`), so the
//! targets build and hold without a nightly toolchain. None may panic on any input.

use crate::AppPayload;

/// `app_payload`: what a member decrypts is attacker-chosen. Decoding never panics, and what
/// decodes re-encodes to something that decodes to the same value.
pub fn app_payload(data: &[u8]) {
    if let Ok(payload) = AppPayload::decode(data) {
        let again = AppPayload::decode(&payload.encode()).expect("an encoded payload decodes");
        assert_eq!(again, payload);
    }
}

/// `sync_response`: the client decodes whatever the server sends.
pub fn sync_response(data: &[u8]) {
    let _ = serde_json::from_slice::<crate::SyncResponse>(data);
    let _ = serde_json::from_slice::<crate::EnrollResponse>(data);
    let _ = serde_json::from_slice::<crate::ClaimedKeyPackages>(data);
}
