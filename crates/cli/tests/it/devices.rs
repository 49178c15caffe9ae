//! Issue 9 over the CLI: a later device waits for approval by one of its user's devices
//! (three script steps through the server), revocation with remote wipe, identity resets and
//! their veto, and the administrator's device commands.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Enrolls a device with `code`; returns it, its id (the last stdout line) and stdout.
fn enroll(
    server: &Server,
    root: &Path,
    dir: &str,
    user: &str,
    code: &str,
) -> (Device, String, String) {
    let home = root.join(dir);
    let out = run_ok(vellum().arg("--home").arg(&home).args([
        "enroll",
        "--server",
        &server.url,
        "--user",
        user,
        "--code",
        code,
    ]));
    let id = last_line(&out);
    (Device { home }, id, String::from_utf8(out.stdout).unwrap())
}

fn admin(server: &Server) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["admin", "--server", &server.url, "--token-file"])
        .arg(server.token_file());
    cmd
}

/// This device's own entry of `devices --json`.
fn own(device: &Device) -> Value {
    device
        .json(&["devices", "--json"])
        .into_iter()
        .find(|d| d["this_device"] == true)
        .expect("the device lists itself")
}

fn state_of(device: &Device, id: &str) -> String {
    device
        .json(&["devices", "--json"])
        .into_iter()
        .find(|d| d["device_id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The three steps, as a script runs them.
fn approve(old: &Device, new: &Device, id: &str) -> String {
    old.ok(&["devices", "approve", id]);
    let code = own(new)["code"]
        .as_str()
        .expect("step 2 shows a code")
        .to_owned();
    let out = old.ok(&["devices", "approve", id, "--code", &code]);
    String::from_utf8(out.stdout).unwrap()
}

/// A second device of `user`, approved by `old`, with its id.
fn second_device(
    server: &Server,
    root: &Path,
    old: &Device,
    user: &str,
    dir: &str,
) -> (Device, String) {
    let new = Device::approved(server, root, dir, user, old);
    let id = own(&new)["device_id"].as_str().unwrap().to_owned();
    (new, id)
}

#[test]
fn issue_9_device_approval_over_the_cli_in_three_script_steps() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let code = server.add_user("alice");
    let (alice, alice_id, out) = enroll(&server, root.path(), "alice", "alice", &code);
    assert!(
        !out.contains("pending"),
        "the first device is approved: {out}"
    );
    let me = own(&alice);
    assert_eq!(
        (me["device_id"].as_str(), me["state"].as_str()),
        (Some(alice_id.as_str()), Some("approved"))
    );
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    alice.ok(&["send", "ops", "before the new device"]);

    // Enrollment: pending, says how to approve; the id stays the last line.
    let code = server.add_device("alice");
    let (phone, phone_id, out) = enroll(&server, root.path(), "phone", "alice", &code);
    assert!(out.contains("pending approval"), "{out}");
    assert!(
        out.contains(&format!("vellum devices approve {phone_id}")),
        "{out}"
    );
    assert!(
        !phone_id.is_empty() && !phone_id.contains(' '),
        "the last line is the bare id: {out}"
    );
    let me = own(&phone);
    assert_eq!(me["state"], "pending");
    assert!(
        me["code"].is_null(),
        "no code before an approver answered: {me}"
    );
    assert_eq!(state_of(&alice, &phone_id), "pending");
    // A pending device receives nothing.
    assert!(phone.json(&["sync", "--json"]).is_empty());

    // Step 1; step 3 before step 2 is refused and changes nothing.
    let out = alice.ok(&["devices", "approve", &phone_id]);
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains("verification code") && said.contains("vellum devices"),
        "{said}"
    );
    let line = alice.fails(&["devices", "approve", &phone_id, "--code", "0000-0000-0000"]);
    assert!(
        line.contains("has not shown its verification code"),
        "{line}"
    );
    // Step 2: the code on the new device, in text and JSON alike.
    let text = String::from_utf8(phone.ok(&["devices"]).stdout).unwrap();
    let code = own(&phone)["code"].as_str().unwrap().to_owned();
    assert!(
        text.contains(&format!("verification code: {code}")),
        "{text}"
    );
    assert_eq!(code.len(), 14, "{code}");
    // Step 3 with a wrong code: nothing approved, the exchange starts over.
    let wrong = format!(
        "{}{}",
        if code.starts_with('9') { '1' } else { '9' },
        &code[1..]
    );
    let line = alice.fails(&["devices", "approve", &phone_id, "--code", &wrong]);
    assert!(
        line.contains(&format!("wrong code: nothing was approved; start again: run `vellum devices` on the new device (it commits to fresh keys), then `vellum devices approve {phone_id}`")),
        "{line}"
    );
    assert_eq!(state_of(&alice, &phone_id), "pending");
    assert!(own(&phone)["code"].is_null(), "the cancelled code is gone");
    assert!(phone.json(&["sync", "--json"]).is_empty());
    let line = alice.fails(&["devices", "approve", &phone_id, "--code", &code]);
    assert!(line.contains("approve"), "the old exchange is over: {line}");

    // The three steps again, the right code: approved, and added to alice's chat.
    let said = approve(&alice, &phone, &phone_id);
    assert!(
        said.contains(&format!(
            "approved device {phone_id}; added it to 1 chat(s)"
        )),
        "{said}"
    );
    assert_eq!(own(&phone)["state"], "approved");
    assert_eq!(state_of(&alice, &phone_id), "approved");
    phone.ok(&["sync"]);
    alice.ok(&["send", "ops", "after approval"]);
    bob.ok(&["sync"]);
    bob.ok(&["send", "ops", "hello phone"]);
    phone.ok(&["sync"]);
    let texts = phone.texts("ops");
    assert_eq!(
        texts,
        vec!["after approval", "hello phone"],
        "nothing from before"
    );
    let alice_devices = bob
        .json(&["chat", "members", "ops", "--json"])
        .iter()
        .filter(|m| m["user"] == "alice")
        .count();
    assert_eq!(alice_devices, 2);
    // The approved device holds the identity: it can approve the next one itself.
    let (_, third) = second_device(&server, root.path(), &phone, "alice", "tablet");
    assert_eq!(state_of(&alice, &third), "approved");
}

#[test]
fn issue_9_a_device_without_the_identity_cannot_approve_or_revoke() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let alice_id = own(&alice)["device_id"].as_str().unwrap().to_owned();
    let code = server.add_device("alice");
    let (phone, phone_id, _) = enroll(&server, root.path(), "phone", "alice", &code);
    for args in [
        vec!["devices", "approve", alice_id.as_str()],
        vec!["devices", "revoke", alice_id.as_str()],
        vec!["devices", "veto-reset"],
    ] {
        let line = phone.fails(&args);
        assert!(
            line.contains("does not hold alice's identity key"),
            "{line}"
        );
    }
    // Approving a device that has not committed (another user's, unknown here) fails cleanly.
    let line = alice.fails(&["devices", "approve", "no-such-device"]);
    assert!(line.starts_with("error: "), "{line}");
    let line = alice.fails(&["devices", "approve", &phone_id, "--code", "1234-5678-9012"]);
    assert!(
        line.contains(&format!("run `vellum devices approve {phone_id}` first")),
        "{line}"
    );
    assert_eq!(state_of(&alice, &phone_id), "pending");
}

#[test]
fn issue_9_revoking_a_device_removes_it_from_chats_and_wipes_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let (phone, phone_id) = second_device(&server, root.path(), &alice, "alice", "phone");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    let secret = marker("before-revocation");
    alice.ok(&["send", "ops", &secret]);
    phone.ok(&["sync"]);
    assert_eq!(phone.texts("ops"), vec![secret.clone()]);

    let out = alice.ok(&["devices", "revoke", &phone_id]);
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.contains(&format!(
            "revoked device {phone_id}; removed it from 1 chat(s)"
        )),
        "{said}"
    );
    assert_eq!(state_of(&alice, &phone_id), "revoked");
    bob.ok(&["sync"]);
    let alice_devices = bob
        .json(&["chat", "members", "ops", "--json"])
        .iter()
        .filter(|m| m["user"] == "alice")
        .count();
    assert_eq!(alice_devices, 1);

    // Remote wipe: the revoked device's next request wipes it, and it says so.
    let out = output(phone.cmd().args(["sync"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("this device was revoked: its profile has been wiped"),
        "{stderr}"
    );
    assert!(phone.home.is_dir(), "HOME itself stays");
    for file in files_under(&phone.home) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} still holds a message",
            file.display()
        );
    }
    assert!(!phone.home.join("vellum.db").exists());
    let line = phone.fails(&["devices"]);
    assert!(line.contains("enroll"), "{line}");

    // Revoking this device itself: published, then wiped at once.
    let (tablet, tablet_id) = second_device(&server, root.path(), &alice, "alice", "tablet");
    let out = tablet.ok(&["devices", "revoke", &tablet_id]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("its profile has been wiped"));
    assert!(!tablet.home.join("vellum.db").exists());
    assert_eq!(state_of(&alice, &tablet_id), "revoked");
}

#[test]
fn issue_9_an_identity_reset_is_vetoed_by_a_surviving_device_and_fails_status_until() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let out = run_ok(admin(&server).args(["user", "reset", "alice"]));
    let said = last_line(&out);
    assert!(
        said.starts_with("alice's identity will be reset ")
            && said.contains("(in 3 days)")
            && said.ends_with(" unless a device of alice vetoes it"),
        "{said}"
    );
    let text = String::from_utf8(alice.ok(&["devices"]).stdout).unwrap();
    assert!(text.contains("vellum devices veto-reset"), "{text}");
    // While it is pending, `status` and `sync` fail, saying how to veto it.
    for command in ["status", "sync"] {
        let out = output(alice.cmd().args([command]));
        assert!(!out.status.success(), "{command}");
        let said = String::from_utf8(out.stderr).unwrap() + &String::from_utf8(out.stdout).unwrap();
        assert!(said.contains("`vellum devices veto-reset`"), "{said}");
    }
    let out = alice.ok(&["devices", "veto-reset"]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("vetoed the reset of alice's identity"));
    let line = alice.fails(&["devices", "veto-reset"]);
    assert!(
        line.contains("no reset of alice's identity is pending"),
        "{line}"
    );
    assert_eq!(own(&alice)["state"], "approved");
    alice.ok(&["status"]);
}

#[test]
fn issue_9_an_unvetoed_reset_revokes_every_device_after_the_wait() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let out = run_ok(admin(&server).args(["policy", "set", "--reset-wait", "1s"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identity resets wait 1 second"),
        "{:?}",
        last_line(&out)
    );
    run_ok(admin(&server).args(["user", "reset", "alice"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = String::from_utf8(
            run_ok(admin(&server).args(["device", "list", "alice", "--json"])).stdout,
        )
        .unwrap();
        let devices: Vec<Value> = serde_json::from_str(&listed).unwrap();
        if devices.iter().all(|d| d["state"] == "revoked") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reset never took effect: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = output(alice.cmd().args(["sync"]));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("its profile has been wiped"));
    // A new device after the reset starts the new identity.
    let code = server.add_device("alice");
    let (fresh, _, out) = enroll(&server, root.path(), "fresh", "alice", &code);
    assert!(!out.contains("pending"), "{out}");
    assert_eq!(own(&fresh)["state"], "approved");
}

#[test]
fn issue_9_admin_lists_and_revokes_a_users_devices() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let alice_id = own(&alice)["device_id"].as_str().unwrap().to_owned();
    let code = server.add_device("alice");
    let (phone, phone_id, _) = enroll(&server, root.path(), "phone", "alice", &code);

    let listed = String::from_utf8(
        run_ok(admin(&server).args(["device", "list", "alice", "--json"])).stdout,
    )
    .unwrap();
    // A list prints one array (issue 10).
    let devices: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let state = |id: &str| {
        devices
            .iter()
            .find(|d| d["device_id"] == id)
            .map(|d| d["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(devices.len(), 2, "{listed}");
    assert_eq!(state(&alice_id).as_deref(), Some("approved"));
    assert_eq!(state(&phone_id).as_deref(), Some("pending"));
    let text =
        String::from_utf8(run_ok(admin(&server).args(["device", "list", "alice"])).stdout).unwrap();
    assert!(
        text.contains(&format!("{phone_id}  pending  enrolled ")),
        "{text}"
    );

    run_ok(admin(&server).args(["device", "revoke", "alice", &phone_id]));
    assert_eq!(state_of(&alice, &phone_id), "revoked");
    let out = output(phone.cmd().args(["devices"]));
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("this device was revoked: its profile has been wiped"));
    assert!(!phone.home.join("vellum.db").exists());

    // Bad input: one clear error, nothing changed.
    let line = run_fails(admin(&server).args(["device", "revoke", "alice", "no-such-device"]));
    assert!(line.starts_with("error: "), "{line}");
    let line = run_fails(admin(&server).args(["device", "list", "nobody"]));
    assert!(line.starts_with("error: "), "{line}");
    let line = run_fails(admin(&server).args(["policy", "set", "--reset-wait", "0"]));
    assert!(
        line.contains("--reset-wait must be at least 1 second"),
        "{line}"
    );
    let out = run_ok(admin(&server).args(["policy", "set", "--reset-wait", "72h"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identity resets wait 3 days"),
        "{:?}",
        last_line(&out)
    );
    assert_eq!(own(&alice)["state"], "approved");
}

/// A deployment from before the key directory (tests/fixtures/v0.1.0: alice's and bob's
/// devices, given a fresh org key file since the fixture keeps none): each user's earliest
/// device makes the identity at its first `devices` and is approved from then on.
#[test]
fn issue_9_at_upgrade_the_earliest_device_makes_its_users_identity() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("expected.json")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture.join("server/server.db"), data.join("server.db")).unwrap();
    std::fs::write(data.join("org.key"), [7u8; 32]).unwrap();
    // 0.1.0 kept the admin token itself; the server takes its hash from it once.
    std::fs::write(data.join("admin-token"), "fixture-admin-token\n").unwrap();
    let server = Server::start(root.path());
    for user in ["alice", "bob"] {
        let home = root.path().join(user);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::copy(fixture.join(user).join("vellum.db"), home.join("vellum.db")).unwrap();
        rusqlite::Connection::open(home.join("vellum.db"))
            .unwrap()
            .execute(
                "UPDATE profile SET value = ?1 WHERE key = 'server'",
                [server.url.as_bytes()],
            )
            .unwrap();
        let device = Device { home };
        let id = expected["devices"][user].as_str().unwrap();
        let listed = String::from_utf8(
            run_ok(admin(&server).args(["device", "list", user, "--json"])).stdout,
        )
        .unwrap();
        assert!(listed.contains("\"legacy\""), "listed at upgrade: {listed}");
        let me = own(&device);
        assert_eq!(
            (me["device_id"].as_str(), me["state"].as_str()),
            (Some(id), Some("approved")),
            "{me}"
        );
        assert!(me["warning"].is_null(), "{me}");
        assert_eq!(state_of(&device, id), "approved", "and stays so");
    }
}

#[test]
fn issue_9_an_approving_device_that_has_not_synced_still_adds_the_new_one_to_its_chats() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    // Bob is invited, but his device has not looked since.
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    let laptop = Device::approved(&server, root.path(), "laptop", "bob", &bob);
    alice.ok(&["send", "ops", "for both of bob's devices"]);
    laptop.ok(&["sync"]);
    assert!(
        laptop
            .texts("ops")
            .contains(&"for both of bob's devices".to_owned()),
        "{:?}",
        laptop.texts("ops")
    );
}
