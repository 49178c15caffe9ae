//! Issue 12 (review): what `vellum_app::start` does before it serves — the profile made
//! owner-only, staged uploads of an earlier run removed, an address of its own in
//! 127.0.0.0/8 — and that this user's browser gets through the owner check.

use std::os::unix::fs::PermissionsExt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vellum_app::{start, AppConfig};

#[tokio::test]
async fn issue_12_start_tightens_the_home_sweeps_uploads_and_serves_this_user() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("profile");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let leftover = home.join("app-uploads").join("c".repeat(32));
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("draft.txt"), b"staged by an earlier run").unwrap();

    let running = start(&AppConfig {
        home: home.clone(),
        listen: None,
        open: false,
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o700,
        "an existing home is tightened"
    );
    assert!(
        !leftover.exists(),
        "staged uploads of an earlier run go at start"
    );

    let authority = running
        .url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let address: std::net::SocketAddr = authority.parse().unwrap();
    assert!(address.ip().is_loopback(), "{address}");
    if cfg!(target_os = "linux") {
        assert_ne!(
            address.ip(),
            std::net::Ipv4Addr::LOCALHOST,
            "an address of its own, not 127.0.0.1"
        );
    }
    // This user's connection passes the owner check and opens the window.
    let path = running
        .url
        .trim_start_matches(&format!("http://{authority}"));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.contains("HttpOnly"), "{answer}");
    running.stop();
}

/// A listen address off loopback is refused before anything is created.
#[tokio::test]
async fn issue_12_an_explicit_listen_is_honoured_and_must_be_loopback() {
    let root = tempfile::tempdir().unwrap();
    let refused = start(&AppConfig {
        home: root.path().join("p"),
        listen: Some("0.0.0.0:0".parse().unwrap()),
        open: false,
    })
    .await;
    assert!(refused.is_err());
    let running = start(&AppConfig {
        home: root.path().join("p"),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        open: false,
    })
    .await
    .unwrap();
    assert!(
        running.url.starts_with("http://127.0.0.1:"),
        "{}",
        running.url
    );
    running.stop();
}
