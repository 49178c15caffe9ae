use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The server's database (with -wal and -shm) and its logs at debug level hold none of the
/// plaintexts or the chat title; the clients that are members do.
#[test]
fn issue_2_server_files_and_logs_hold_no_plaintext() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let title = marker("title");
    alice.ok(&["chat", "create", &title, "--with", "bob"]);
    let markers: Vec<String> = (0..5).map(|i| marker(&format!("text{i}"))).collect();
    for m in &markers {
        alice.ok(&["send", &title, m]);
    }
    bob.ok(&["sync"]);
    bob.ok(&["send", &title, "reply"]);
    assert_eq!(bob.texts(&title)[..5], markers[..]);

    let mut scanned = 0;
    let mut files = files_under(&server.data);
    files.extend(files_under(&server.logs));
    assert!(
        files.iter().any(|f| f.ends_with("server.db-wal")),
        "the WAL is scanned too: {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        scanned += bytes.len();
        for m in markers.iter().chain([&title]) {
            assert!(
                !contains(&bytes, m.as_bytes()),
                "{m} found in {}",
                file.display()
            );
        }
    }
    assert!(
        scanned > 10_000,
        "the scan read the real files ({scanned} bytes)"
    );
    let logs: usize = files_under(&server.logs)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() as usize)
        .sum();
    assert!(
        logs > 0,
        "the server logged at debug level while the test ran"
    );
}

#[test]
fn issue_2_secret_files_are_owner_only_and_listener_is_loopback() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    for secret in [
        server.data.join("admin-token"),
        server.data.join("org.key"),
        server.data.join("server.db"),
        server.data.join("server.db-wal"),
        alice.home.join("vellum.db"),
    ] {
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", secret.display());
    }
    for dir in [&server.data, &alice.home] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
    }
    let help = String::from_utf8(run_ok(vellum().args(["server", "--help"])).stdout).unwrap();
    assert!(
        help.contains("127.0.0.1:7480"),
        "the default listener is loopback: {help}"
    );
}
