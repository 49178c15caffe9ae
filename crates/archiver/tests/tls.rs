//! Issue 11, item 4: the records API and the console over TLS (rustls), with a self-signed
//! certificate the client is told to trust.

use std::sync::Arc;

use vellum_archive::Archive;
use vellum_archiver::console::ConsoleState;
use vellum_archiver::tls::{serve, server_config, TlsFiles};
use vellum_archiver::{app, ArchiveHandle, ArchiverState, OwedReceipts, Vault};
use vellum_tlog::NoteSigner;

const TOKEN: &str = "the first officer's records token";
const HOST: &str = "records.test";

#[tokio::test]
async fn issue_11_the_records_api_and_console_are_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, certified.cert.pem()).unwrap();
    std::fs::write(&files.key, certified.signing_key.serialize_pem()).unwrap();

    let signer = NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let archive = Archive::open(&dir.path().join("archive"), signer).unwrap();
    let public = vellum_records::generate(3, 2, "records.test/vellum")
        .unwrap()
        .public;
    let vault = Vault::sealed(archive, public, OwedReceipts::in_memory()).unwrap();
    vault
        .office
        .ensure_first_officer(&vellum_archiver::office::sha256(TOKEN), 1)
        .unwrap();
    let state = Arc::new(ArchiverState {
        vault: ArchiveHandle::spawn(vault).unwrap(),
        settings: Default::default(),
        console: ConsoleState::new(true),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, server_config(&files).unwrap(), app(state)));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let base = format!("https://{HOST}:{}", addr.port());
    let whoami = trusting
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let me: serde_json::Value = whoami.json().await.unwrap();
    assert_eq!(me["name"], "officer");
    assert_eq!(me["role"], "officer");
    let sign_in = trusting
        .get(format!("{base}/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 200);
    assert!(sign_in.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(
        sign_in.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    // A client that does not trust the certificate gets no answer, and neither does one
    // speaking plain HTTP to the TLS port.
    let untrusting = reqwest::Client::builder()
        .resolve(HOST, addr)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{base}/v1/whoami"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .is_err());
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/v1/whoami"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}
