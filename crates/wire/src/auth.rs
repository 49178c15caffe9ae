use sha2::{Digest, Sha256};

/// How far a request's timestamp may be from the server's clock. Nonces are remembered for
/// at least this long, so a captured request cannot be replayed inside or outside the window.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Header names of a device-signed request. No secret ever travels in a URL.
pub struct AuthHeaders;

impl AuthHeaders {
    pub const DEVICE: &'static str = "x-vellum-device";
    pub const TIMESTAMP: &'static str = "x-vellum-timestamp";
    pub const NONCE: &'static str = "x-vellum-nonce";
    pub const SIGNATURE: &'static str = "x-vellum-signature";
    /// On a `timestamp_before_server_start` refusal: the Unix second the server started.
    pub const SERVER_START: &'static str = "x-vellum-server-start";
}

/// The exact bytes a device signs (Ed25519, its MLS signature key) to authenticate a request.
///
/// The label keeps these signatures apart from MLS's own, which all begin with the
/// length-prefixed "MLS 1.0 " label (RFC 9420 §5.1.2), so neither can be replayed as the other.
pub fn request_signing_bytes(
    method: &str,
    path_and_query: &str,
    device_id: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "vellum-request-v1\n{method}\n{path_and_query}\n{device_id}\n{timestamp}\n{nonce}\n{body_hash}"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_signed_bytes() {
        let base = request_signing_bytes("POST", "/v1/ack", "d1", 10, "n1", b"{}");
        for other in [
            request_signing_bytes("GET", "/v1/ack", "d1", 10, "n1", b"{}"),
            request_signing_bytes("POST", "/v1/sync", "d1", 10, "n1", b"{}"),
            request_signing_bytes("POST", "/v1/ack", "d2", 10, "n1", b"{}"),
            request_signing_bytes("POST", "/v1/ack", "d1", 11, "n1", b"{}"),
            request_signing_bytes("POST", "/v1/ack", "d1", 10, "n2", b"{}"),
            request_signing_bytes("POST", "/v1/ack", "d1", 10, "n1", b"{ }"),
        ] {
            assert_ne!(base, other);
        }
    }
}
