//! TLS to PostgreSQL (rustls with ring), by the URL's `sslmode`:
//!
//! - `disable`: plain TCP.
//! - `prefer` (the default): TLS if the server offers it, plain TCP if it does not. The
//!   certificate is not checked, as libpq's `prefer` does not check it: this keeps out
//!   eavesdroppers, not an active man in the middle, and works with the self-signed
//!   certificate a packaged PostgreSQL starts with.
//! - `require`: TLS or no connection, and the certificate must chain to a root of the
//!   system's trust store for the URL's host name (libpq's `verify-full`): an org's own CA
//!   is trusted by adding it there. tokio-postgres refuses `sslrootcert` and the
//!   `verify-*` modes in a URL, so there is no per-URL root.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use vellum_store::{Error, Result};

/// The TLS connector for connections made in `mode`.
pub(crate) fn connector(mode: SslMode) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Backend(format!("TLS for PostgreSQL: {e}")))?;
    let config = if mode == SslMode::Require {
        let mut roots = RootCertStore::empty();
        // Unreadable entries are skipped; with no root at all, every certificate is
        // refused as from an unknown issuer, which names the cause.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptionOnly(provider)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer`'s verifier: any certificate, but the handshake's signatures are checked, so
/// the session is keyed with whoever holds the certificate's key.
#[derive(Debug)]
struct EncryptionOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
