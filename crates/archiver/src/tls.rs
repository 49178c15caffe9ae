//! TLS for the records API and the console (rustls): keyholders and analysts connect from
//! their own machines, so anything beyond loopback is served over TLS only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::Error;

/// A TLS handshake that takes longer is dropped (a client that never finishes one holds
/// nothing for long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers that take longer to arrive are answered with a close.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// `--tls-cert` and `--tls-key`: PEM files, the certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Refuses to serve the records API without TLS anywhere but on loopback.
pub fn check_listen(listen: SocketAddr, tls: Option<&TlsFiles>) -> Result<(), Error> {
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(Error::Setup(format!(
            "refusing to serve the records API and console on {listen} without TLS: give --tls-cert and --tls-key, or listen on loopback (127.0.0.1) for development"
        )));
    }
    Ok(())
}

/// The rustls configuration of `files` (HTTP/2 and HTTP/1.1 by ALPN).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| pem_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(Error::Setup(format!(
            "{}: no certificate in it",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setup(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Setup(format!(
                "{} and {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> Error {
    // The error names the file and what is wrong with it, never the key's bytes.
    Error::Setup(format!("{}: not a usable PEM file ({e})", path.display()))
}

/// Serves `app` over TLS on `listener` until the process ends; each connection's handshake
/// and requests run in a task of their own.
pub async fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app))
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_11_no_tls_is_refused_beyond_loopback() {
        let files = TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        for loopback in ["127.0.0.1:7481", "[::1]:7481"] {
            assert!(check_listen(loopback.parse().unwrap(), None).is_ok());
        }
        for open in ["0.0.0.0:7481", "192.0.2.7:443", "[::]:7481"] {
            let refused = check_listen(open.parse().unwrap(), None).unwrap_err();
            assert!(refused.to_string().contains("without TLS"), "{refused}");
            assert!(check_listen(open.parse().unwrap(), Some(&files)).is_ok());
        }
    }

    #[test]
    fn issue_11_unusable_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        };
        let e = server_config(&files).unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");
    }
}
