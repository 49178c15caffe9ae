//! Issue 9: the server cannot add a silent reader. Devices add, keep and trust only the
//! devices the key directory vouches for (approved by the user's identity key), check the
//! directory against cosigned checkpoints, and say so when something is wrong: a device
//! planted in the server's database or slipped into a claim answer reads nothing, a revoked
//! device leaves every chat before anything more is said there, and a reset identity is
//! shown and confirmed before the user is added again.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::params;
use vellum_client::{Api, Method, Signer};
use vellum_mls::mls_rs::storage_provider::in_memory::{
    InMemoryGroupStateStorage, InMemoryKeyPackageStorage,
};
use vellum_mls::mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{device_client, DeviceClient, DeviceKey, OrgIdentityProvider, OrgSigner};
use vellum_wire::{
    ClaimedKeyPackage, ClaimedKeyPackages, OrgPolicy, OrgPolicyUpdate, ResetScheduled,
    SyncResponse, UploadKeyPackages,
};

use crate::harness::*;
use crate::records::wait_until;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

type RawClient = DeviceClient<InMemoryGroupStateStorage, InMemoryKeyPackageStorage>;

/// A device made with the org key by a compromised server, never enrolled or approved.
struct Ghost {
    id: String,
    key: DeviceKey,
    mls: RawClient,
}

impl Ghost {
    fn new(server: &Server, user: &str, id: &str) -> Self {
        let org = OrgSigner::from_seed(&fs::read(server.data.join("org.key")).unwrap()).unwrap();
        let key = DeviceKey::generate();
        let cert = org.issue(user, id, &key.public_key());
        let mls = device_client(
            &cert,
            &key,
            OrgIdentityProvider::new(org.public_key()),
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        );
        Self {
            id: id.into(),
            key,
            mls,
        }
    }

    fn key_package(&self) -> MlsMessage {
        self.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    }

    /// Registers it in the server's database as an approved device of `user`, as a
    /// compromised operator can (the server is stopped meanwhile).
    fn plant(&self, server: &mut Server, user: &str) {
        server.kill();
        let db = rusqlite::Connection::open(server.data.join("server.db")).unwrap();
        db.execute(
            "INSERT INTO devices (device_id, user, signature_key, enrolled_at, state) VALUES (?1, ?2, ?3, 0, 'approved')",
            params![self.id, user, self.key.public_key().to_vec()],
        )
        .unwrap();
        drop(db);
        server.restart();
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, vellum_client::Error> {
        let signer = Signer {
            device_id: &self.id,
            key: &self.key,
        };
        Api::new(&server.url)?
            .call(method, path, body, Some(&signer), None)
            .await
    }
}

fn admin_api(server: &Server) -> (Api, String) {
    let token = fs::read_to_string(server.token_file()).unwrap();
    (Api::new(&server.url).unwrap(), token.trim().to_owned())
}

fn device_id(device: &Device) -> String {
    device.json(&["status", "--json"])[0]["device"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn short(device_id: &str) -> String {
    match device_id.char_indices().nth(8) {
        Some((end, _)) => format!("{}…", &device_id[..end]),
        None => device_id.to_owned(),
    }
}

#[test]
fn issue_9_a_device_planted_in_the_servers_database_is_not_added_and_reads_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["sync"]);
    bob.ok(&["sync"]);

    // The operator plants a device of bob's with the org key, approved in its own database,
    // with key packages on offer.
    let ghost = Ghost::new(&server, "bob", "ghost-device");
    ghost.plant(&mut server, "bob");
    let rt = runtime();
    rt.block_on(async {
        let upload = UploadKeyPackages {
            key_packages: vec![ghost.key_package().to_bytes().unwrap().into()],
            last_resort: None,
        };
        let _: () = ghost
            .call(&server, Method::POST, "/v1/key-packages", Some(&upload))
            .await
            .expect("the compromised server takes the ghost's key packages");
    });

    // Bob's device sees a device on his account that no device of his approved.
    let shown = bob.json(&["sync", "--json"]);
    assert!(
        shown.iter().any(|m| m["chat"] == ""
            && m["text"] == "a device you did not approve was added to your account: ghost-device"),
        "{shown:?}"
    );

    // Alice does not add it: the chat is not made, nothing is committed.
    let line = alice.fails(&["chat", "create", "with-bob", "--with", "bob"]);
    assert!(
        line.contains("bob's device ghost-device") && line.contains("not in the key directory"),
        "{line}"
    );
    assert!(alice.json(&["chat", "list", "--json"]).is_empty());
    assert!(bob.json(&["chat", "list", "--json"]).is_empty());
    // The ghost was handed nothing to decrypt.
    let pending: SyncResponse = rt.block_on(async {
        ghost
            .call(&server, Method::GET, "/v1/sync", None::<&()>)
            .await
            .unwrap()
    });
    assert!(pending.welcomes.is_empty() && pending.groups.is_empty());
}

/// A proxy in front of the server that appends `extra` to every claim answer.
async fn tampering_proxy(upstream: String, extra: ClaimedKeyPackage) -> String {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::response::Response;

    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (http, upstream, extra) = (http.clone(), upstream.clone(), extra.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forwarded = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forwarded = forwarded.header(name, value);
                }
            }
            let answer = forwarded.body(body.to_vec()).send().await.unwrap();
            let status = answer.status();
            let headers = answer.headers().clone();
            let mut bytes = answer.bytes().await.unwrap().to_vec();
            if parts.uri.path() == "/v1/key-packages/claim" && status.is_success() {
                let mut claimed: ClaimedKeyPackages = serde_json::from_slice(&bytes).unwrap();
                claimed.key_packages.push(extra);
                bytes = serde_json::to_vec(&claimed).unwrap();
            }
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            response.body(Body::from(bytes)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[test]
fn issue_9_a_key_package_slipped_into_a_claim_answer_is_refused_and_nothing_committed() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let bob = Device::new_user(&server, root.path(), "bob");
    bob.ok(&["sync"]);
    // A key package of a device of bob's, certified by the org key, that bob never
    // approved, appended by a machine between alice and the server.
    let ghost = Ghost::new(&server, "bob", "slipped-device");
    let extra = ClaimedKeyPackage {
        user: "bob".into(),
        device_id: ghost.id.clone(),
        key_package: ghost.key_package().to_bytes().unwrap().into(),
    };
    let rt = runtime();
    let proxy = rt.block_on(tampering_proxy(server.url.clone(), extra));
    let code = server.add_user("alice");
    let home = root.path().join("alice");
    run_ok(vellum().arg("--home").arg(&home).args([
        "enroll", "--server", &proxy, "--user", "alice", "--code", &code,
    ]));
    let alice = Device { home };
    alice.ok(&["sync"]);

    let line = alice.fails(&["chat", "create", "slipped", "--with", "bob"]);
    assert!(
        line.contains("bob's device slipped-device")
            && line.contains("not in the key directory")
            && line.contains("nothing was committed"),
        "{line}"
    );
    assert!(alice.json(&["chat", "list", "--json"]).is_empty());
    bob.ok(&["sync"]);
    assert!(bob.json(&["chat", "list", "--json"]).is_empty());
}

#[test]
fn issue_9_a_revoked_device_leaves_every_chat_before_anything_more_is_said_there() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&["chat", "create", "team", "--with", "bob,carol"]);
    alice.ok(&["send", "team", "before"]);
    bob.ok(&["sync"]);
    carol.ok(&["sync"]);
    let bob_device = device_id(&bob);

    let (admin, token) = admin_api(&server);
    let path = format!("/v1/admin/users/bob/devices/{bob_device}/revoke");
    runtime().block_on(async {
        let _: () = admin
            .call(Method::POST, &path, None::<&()>, None, Some(&token))
            .await
            .unwrap();
    });

    // Alice's next send removes bob's device first, in one commit, and says why.
    let secret = marker("after-revocation");
    alice.ok(&["send", "team", &secret]);
    let why = format!("alice removed bob's device {}: revoked", short(&bob_device));
    assert!(
        alice.events("team").contains(&why),
        "{:?}",
        alice.events("team")
    );
    assert_eq!(alice.members("team"), vec!["alice", "carol"]);
    // Carol tells why from her own copy of the directory, and reads on.
    carol.ok(&["sync"]);
    assert!(
        carol.events("team").contains(&why),
        "{:?}",
        carol.events("team")
    );
    assert_eq!(
        carol.texts("team"),
        vec!["before".to_owned(), secret.clone()]
    );
    assert_eq!(carol.members("team"), vec!["alice", "carol"]);
    // Bob's device holds nothing said after its revocation.
    for file in files_under(&bob.home) {
        let bytes = fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "{}",
            file.display()
        );
    }
}

fn reset_identity(server: &Server, user: &str) -> ResetScheduled {
    let (admin, token) = admin_api(server);
    runtime().block_on(async {
        let update = OrgPolicyUpdate {
            reset_wait_secs: Some(1),
            ..Default::default()
        };
        let _: OrgPolicy = admin
            .call(
                Method::PUT,
                "/v1/admin/policy",
                Some(&update),
                None,
                Some(&token),
            )
            .await
            .unwrap();
        admin
            .call(
                Method::POST,
                &format!("/v1/admin/users/{user}/reset"),
                None::<&()>,
                None,
                Some(&token),
            )
            .await
            .unwrap()
    })
}

fn safety(device: &Device, user: &str) -> serde_json::Value {
    device.json(&["safety", user, "--json"]).remove(0)
}

#[test]
fn issue_9_a_reset_identity_is_shown_and_added_again_only_once_confirmed() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "pair", "--with", "bob"]);
    alice.ok(&["send", "pair", "before the reset"]);
    bob.ok(&["sync"]);
    let before = safety(&alice, "bob");
    assert_eq!(before["reset_seen"], false);
    assert_eq!(
        before["safety_number"],
        safety(&bob, "alice")["safety_number"],
        "both sides see the same number"
    );
    let printed = String::from_utf8(alice.ok(&["safety", "bob"]).stdout).unwrap();
    assert!(printed.contains("not confirmed"), "{printed}");

    reset_identity(&server, "bob");
    let shown = "bob's identity was reset by the administrator".to_owned();
    wait_until("alice sees bob's reset", || {
        alice.ok(&["sync"]);
        alice.events("pair").contains(&shown)
    });
    // Bob's old device is revoked by the reset: it leaves the chat.
    alice.ok(&["sync"]);
    assert_eq!(alice.members("pair"), vec!["alice"]);

    // "bob" enrolls again: a new identity, a new number, and alice adds him only after
    // comparing it.
    let code = server.add_device("bob");
    let bob2 = Device::enroll(&server, root.path(), "bob2", "bob", &code);
    bob2.ok(&["sync"]);
    alice.ok(&["sync"]);
    let line = alice.fails(&["chat", "add", "pair", "bob"]);
    assert!(
        line.contains("`vellum safety bob`") && line.contains("`vellum safety bob --confirm`"),
        "{line}"
    );
    let line = alice.fails(&["chat", "create", "again", "--with", "bob"]);
    assert!(line.contains("reset"), "{line}");
    let after = safety(&alice, "bob");
    assert_eq!(after["reset_seen"], true);
    assert_eq!(after["confirmed"], false);
    assert_ne!(after["safety_number"], before["safety_number"]);
    assert_eq!(
        after["safety_number"],
        safety(&bob2, "alice")["safety_number"]
    );
    let printed = String::from_utf8(alice.ok(&["safety", "bob", "--confirm"]).stdout).unwrap();
    assert!(printed.contains("confirmed"), "{printed}");
    assert_eq!(safety(&alice, "bob")["confirmed"], true);
    alice.ok(&["chat", "add", "pair", "bob"]);
    alice.ok(&["send", "pair", "after the reset"]);
    bob2.ok(&["sync"]);
    assert_eq!(bob2.texts("pair"), vec!["after the reset".to_owned()]);
}

#[test]
fn issue_9_a_directory_alarm_makes_status_and_sync_fail() {
    // The server starts over with another directory key (as after losing DATA): every
    // device that pinned the old one refuses the new checkpoints, loudly, and keeps its copy.
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "pair", "--with", "bob"]);
    alice.ok(&["status"]);
    server.kill();
    fs::remove_file(server.data.join("directory.key")).unwrap();
    // The verifier key file is derived from it (written again if missing).
    let vkey: PathBuf = server.data.join("directory.vkey");
    if vkey.exists() {
        fs::remove_file(&vkey).unwrap();
    }
    drop_checkpoint(&server.data);
    server.restart();
    let out = output(alice.cmd().args(["status"]));
    // An alarm has its own exit code (issue 10: documented exit codes).
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(vellum_client::DIRECTORY_ALARM), "{stdout}");
    assert!(alice
        .events("pair")
        .iter()
        .any(|e| e.starts_with(vellum_client::DIRECTORY_ALARM)));
    // `sync` too: a script running it must not go on as if nothing happened.
    let out = output(alice.cmd().args(["sync"]));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(vellum_client::DIRECTORY_ALARM), "{stderr}");
}

/// Forgets the stored checkpoint (signed with the old key) so the server signs a new one.
fn drop_checkpoint(data: &Path) {
    let db = rusqlite::Connection::open(data.join("server.db")).unwrap();
    db.execute("DELETE FROM directory_checkpoint", []).unwrap();
}

// The administrator's side from the command line: the server's directory flags, the device
// list, revocation, identity reset and reset waiting period.

fn admin_cmd(server: &Server, args: &[&str]) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["admin", "--server", &server.url, "--token-file"])
        .arg(server.token_file())
        .args(args);
    cmd
}

fn admin_devices(server: &Server, user: &str) -> Vec<serde_json::Value> {
    let out = run_ok(&mut admin_cmd(server, &["device", "list", user, "--json"]));
    // A list prints one array (issue 10).
    serde_json::from_slice(&out.stdout).unwrap()
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
    let listed = admin_devices(&server, "alice");
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
    let text = run_ok(&mut admin_cmd(&server, &["device", "list", "alice"]));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&laptop_id) && text.contains("pending"),
        "{text}"
    );

    let out = run_ok(&mut admin_cmd(
        &server,
        &["device", "revoke", "alice", &laptop_id],
    ));
    assert!(last_line(&out).contains("revoked"));
    assert!(admin_devices(&server, "alice")
        .iter()
        .any(|d| d["device_id"] == laptop_id.as_str() && d["state"] == "revoked"));
    let line = run_fails(&mut admin_cmd(
        &server,
        &["device", "revoke", "alice", "ghost"],
    ));
    assert!(line.contains("ghost"), "{line}");
    let line = run_fails(&mut admin_cmd(&server, &["device", "list", "records"]));
    assert!(line.contains("records"), "{line}");

    let line = run_fails(&mut admin_cmd(
        &server,
        &["policy", "set", "--reset-wait", "0"],
    ));
    assert!(line.contains("--reset-wait"), "{line}");
    let out = run_ok(&mut admin_cmd(
        &server,
        &["policy", "set", "--reset-wait", "1h"],
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("identity resets wait 1 hour"));
    let out = run_ok(&mut admin_cmd(&server, &["user", "reset", "alice"]));
    assert!(last_line(&out).contains("unless a device of alice vetoes it"));
    let line = run_fails(&mut admin_cmd(&server, &["user", "reset", "alice"]));
    assert!(line.contains("pending already"), "{line}");
}
