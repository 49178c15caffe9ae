//! Issue 9 from the command line: the server's key directory flags, and the administrator's
//! device list, revocation, identity reset and reset waiting period.

use serde_json::Value;

use crate::harness::*;

fn admin(server: &Server, args: &[&str]) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["admin", "--server", &server.url, "--token-file"])
        .arg(server.token_file())
        .args(args);
    cmd
}

fn devices(server: &Server, user: &str) -> Vec<Value> {
    let out = run_ok(&mut admin(server, &["device", "list", user, "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["devices"].as_array().unwrap().clone()
}

#[test]
fn issue_9_admin_lists_revokes_and_resets_devices_from_the_cli() {
    let root = tempfile::tempdir().unwrap();
    // A malformed witness stops the server before it starts.
    let line = run_fails(
        vellum()
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(root.path().join("never"))
            .args(["--directory-witness", "http://127.0.0.1:1"]),
    );
    assert!(line.contains("--directory-witness"), "{line}");
    assert!(!root.path().join("never").exists());

    let server = Server::start(root.path());
    // The log key a witness operator follows.
    let vkey = std::fs::read_to_string(server.data.join("directory.vkey")).unwrap();
    assert!(vkey.starts_with("vellum-directory/"), "{vkey}");
    let _alice = Device::new_user(&server, root.path(), "alice");
    let code = server.add_device("alice");
    let _laptop = Device::enroll(&server, root.path(), "alice-laptop", "alice", &code);
    let listed = devices(&server, "alice");
    let states: Vec<&str> = listed
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    let mut sorted = states.clone();
    sorted.sort();
    assert_eq!(sorted, ["approved", "pending"]);
    let laptop_id = listed.iter().find(|d| d["state"] == "pending").unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = run_ok(&mut admin(&server, &["device", "list", "alice"]));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&laptop_id) && text.contains("pending"),
        "{text}"
    );

    let out = run_ok(&mut admin(
        &server,
        &["device", "revoke", "alice", &laptop_id],
    ));
    assert!(last_line(&out).contains("revoked"));
    assert!(devices(&server, "alice")
        .iter()
        .any(|d| d["device_id"] == laptop_id.as_str() && d["state"] == "revoked"));
    let line = run_fails(&mut admin(&server, &["device", "revoke", "alice", "ghost"]));
    assert!(line.contains("ghost"), "{line}");
    let line = run_fails(&mut admin(&server, &["device", "list", "records"]));
    assert!(line.contains("records"), "{line}");

    let line = run_fails(&mut admin(&server, &["policy", "set", "--reset-wait", "0"]));
    assert!(line.contains("--reset-wait"), "{line}");
    let out = run_ok(&mut admin(
        &server,
        &["policy", "set", "--reset-wait", "1h"],
    ));
    assert!(last_line(&out).contains("identity resets wait 1 hour"));
    let out = run_ok(&mut admin(&server, &["user", "reset", "alice"]));
    assert!(last_line(&out).contains("unless one of their devices vetoes it"));
    let line = run_fails(&mut admin(&server, &["user", "reset", "alice"]));
    assert!(line.contains("pending already"), "{line}");
}
