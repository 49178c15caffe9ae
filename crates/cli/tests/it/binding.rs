//! Issue 8: one archiver, bound by the custodians. The server refuses a second device of the
//! archiver, a user named `records`, and record chats before the binding; devices accept
//! only the archiver the custodians bound, even from a compromised server (one that holds
//! its org key and writes its own database), and say so loudly.

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
    ClaimKeyPackages, ClaimedKeyPackages, CreateGroup, GroupCreated, PostCommit,
    PostDirectoryChange, B64,
};

use crate::harness::*;
use crate::records::{bind, copy_archive, records_org, verify_cmd, wait_until, Archiver};

fn admin(server: &Server, args: &[&str]) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["admin", "--server", &server.url, "--token-file"])
        .arg(server.token_file())
        .args(args);
    cmd
}

fn admin_status(server: &Server) -> serde_json::Value {
    let out = run_ok(&mut admin(server, &["status", "--json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a compromised delivery server can do: mint credentials with its org key and write
/// its own database (between runs: the server is stopped for each change).
struct Compromised {
    org: OrgSigner,
    db: PathBuf,
}

type RawClient = DeviceClient<InMemoryGroupStateStorage, InMemoryKeyPackageStorage>;

/// A device made by the compromised server: registered in its database, never enrolled.
struct Raw {
    id: String,
    key: DeviceKey,
    mls: RawClient,
}

impl Compromised {
    fn of(server: &Server) -> Self {
        let seed = fs::read(server.data.join("org.key")).unwrap();
        Self {
            org: OrgSigner::from_seed(&seed).unwrap(),
            db: server.data.join("server.db"),
        }
    }

    /// Changes the database with the server stopped, then restarts it.
    fn edit(&self, server: &mut Server, sql: &str, args: impl rusqlite::Params) {
        server.kill();
        let db = rusqlite::Connection::open(&self.db).unwrap();
        db.execute(sql, args).unwrap();
        drop(db);
        server.restart();
    }

    fn device(&self, server: &mut Server, user: &str, id: &str) -> Raw {
        let key = DeviceKey::generate();
        let cert = self.org.issue(user, id, &key.public_key());
        let identity = OrgIdentityProvider::new(self.org.public_key());
        let mls = device_client(
            &cert,
            &key,
            identity,
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        );
        server.kill();
        let db = rusqlite::Connection::open(&self.db).unwrap();
        db.execute(
            "INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, 0)",
            [user],
        )
        .unwrap();
        db.execute(
            "INSERT INTO devices (device_id, user, signature_key, enrolled_at) VALUES (?1, ?2, ?3, 0)",
            params![id, user, key.public_key().to_vec()],
        )
        .unwrap();
        drop(db);
        server.restart();
        Raw {
            id: id.into(),
            key,
            mls,
        }
    }
}

impl Raw {
    fn key_package(&self) -> MlsMessage {
        self.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, vellum_client::Error> {
        let signer = Signer {
            device_id: &self.id,
            key: &self.key,
        };
        Api::new(&server.url)?
            .call(method, path, Some(body), Some(&signer), None)
            .await
    }
}

fn commit_request(out: &vellum_mls::mls_rs::group::CommitOutput) -> PostCommit {
    PostCommit {
        commit: out.commit_message.to_bytes().unwrap().into(),
        welcome: out
            .welcome_messages
            .first()
            .map(|w| B64::from(w.to_bytes().unwrap())),
    }
}

#[test]
fn issue8_a_second_archiver_device_is_refused_by_the_server_and_by_clients() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let _archiver = records_org(&server, root.path());
    let archiver_id = admin_status(&server)["archiver_device"]
        .as_str()
        .unwrap()
        .to_owned();

    // The honest server: the name is reserved and the archiver has one device.
    let line = run_fails(&mut admin(&server, &["user", "add", "records"]));
    assert!(line.contains("reserved"), "{line}");
    let line = run_fails(&mut admin(&server, &["device", "add", "records"]));
    assert!(line.contains("replace-archiver"), "{line}");

    // A compromised server makes a device of `records` the custodians never bound, and a
    // member of its own, mallory, with a record chat that alice joins (with the archiver).
    let evil = Compromised::of(&server);
    let rogue = evil.device(&mut server, "records", "rogue-device");
    let mallory = evil.device(&mut server, "mallory", "mallory-device");
    let rt = runtime();
    let (mut group, commits) = rt.block_on(async {
        // A new user may start an identity of their own (issue 9): mallory is a member the
        // key directory vouches for, as any user the server makes can be.
        let identity = vellum_directory::IdentityKey::generate();
        let device = vellum_directory::DeviceRef {
            device_id: mallory.id.clone(),
            signature_key: mallory.key.public_key(),
        };
        let change = PostDirectoryChange {
            change: serde_json::to_value(identity.identity_change("mallory", device, &mallory.key))
                .unwrap(),
        };
        let _: vellum_wire::DirectoryAppended = mallory
            .call(&server, Method::POST, "/v1/directory/changes", &change)
            .await
            .unwrap();
        let claimed: ClaimedKeyPackages = mallory
            .call(
                &server,
                Method::POST,
                "/v1/key-packages/claim",
                &ClaimKeyPackages {
                    users: vec!["alice".into()],
                    devices: vec![archiver_id.clone()],
                },
            )
            .await
            .unwrap();
        let mut group = mallory
            .mls
            .create_group(
                vellum_mls::RecordChat::new(&archiver_id).add_to(ExtensionList::new()),
                Default::default(),
                None,
            )
            .unwrap();
        let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
        let created: GroupCreated = mallory
            .call(
                &server,
                Method::POST,
                "/v1/groups",
                &CreateGroup {
                    group_info: info.into(),
                },
            )
            .await
            .unwrap();
        let mut builder = group.commit_builder();
        for kp in &claimed.key_packages {
            builder = builder
                .add_member(vellum_mls::key_package_message(&kp.key_package).unwrap())
                .unwrap();
        }
        let out = builder.build().unwrap();
        let commits = format!("/v1/groups/{}/commits", created.group_id);
        let _: vellum_wire::Accepted = mallory
            .call(&server, Method::POST, &commits, &commit_request(&out))
            .await
            .unwrap();
        group.apply_pending_commit().unwrap();
        (group, commits)
    });
    alice.ok(&["sync"]);
    let chats = alice.json(&["chat", "list", "--json"]);
    assert_eq!(chats.len(), 1, "alice joined mallory's chat: {chats:?}");
    let chat = chats[0]["id"].as_str().unwrap().to_owned();
    let members = alice.json(&["chat", "members", &chat, "--json"]);
    let archive = members.iter().find(|m| m["user"] == "records").unwrap();
    assert_eq!(archive["device"], archiver_id.as_str());
    assert_eq!(
        archive["role"],
        "records archive (sealed, 2 of 3 custodians)"
    );

    // 1. The server hands out the rogue's key package as the archiver's: alice refuses it,
    // and no chat is left behind.
    let rogue_kp = rogue.key_package().to_bytes().unwrap();
    evil.edit(
        &mut server,
        "INSERT INTO key_packages (id, device_id, data, last_resort) VALUES (0, ?1, ?2, 0)",
        params![archiver_id, rogue_kp],
    );
    let line = alice.fails(&["chat", "create", "claimed", "--with", "bob"]);
    assert!(
        line.contains("rogue-device") && line.contains("records"),
        "{line}"
    );
    assert_eq!(alice.json(&["chat", "list", "--json"]).len(), 1);
    evil.edit(&mut server, "DELETE FROM key_packages WHERE id = 0", []);

    // 2. The server makes the rogue its archiver, and mallory adds it to the record chat:
    // alice refuses the commit and says so in the chat.
    evil.edit(
        &mut server,
        "UPDATE records_config SET archiver_device = ?1",
        ["rogue-device"],
    );
    rt.block_on(async {
        let out = group
            .commit_builder()
            .add_member(rogue.key_package())
            .unwrap()
            .build()
            .unwrap();
        let _: vellum_wire::Accepted = mallory
            .call(&server, Method::POST, &commits, &commit_request(&out))
            .await
            .expect("the compromised server takes it");
    });
    let printed = String::from_utf8(alice.ok(&["sync"]).stdout).unwrap();
    let warnings: Vec<String> = alice
        .events(&chat)
        .into_iter()
        .filter(|e| e.starts_with("WARNING") && e.contains("rogue-device"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", alice.events(&chat));
    assert!(
        warnings[0].contains("not the archiver the custodians bound"),
        "{warnings:?}"
    );
    assert!(printed.contains("rogue-device"), "sync shows it: {printed}");
    let members = alice.members(&chat);
    assert_eq!(members, vec!["alice", "mallory", "records"]);
    assert!(!alice
        .json(&["chat", "members", &chat, "--json"])
        .iter()
        .any(|m| m["device"] == "rogue-device"));
}

#[test]
fn issue8_forged_bindings_and_a_changed_records_pub_are_refused_loudly() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let _archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    let events = alice.events("kept");
    assert!(
        events.iter().all(|e| !e.starts_with("WARNING")),
        "{events:?}"
    );
    let evil = Compromised::of(&server);

    // A binding signed by another records key's custodians (an impostor's records init).
    let other = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let mut unsealer = vellum_records::Unsealer::new(other.public.clone());
    unsealer.add(&other.shares[0]).unwrap();
    let vellum_records::UnsealProgress::Unsealed(impostor) =
        unsealer.add(&other.shares[1]).unwrap()
    else {
        panic!("unsealed")
    };
    let server_binding: String = {
        let db = rusqlite::Connection::open(server.data.join("server.db")).unwrap();
        db.query_row("SELECT binding FROM records_config", [], |r| r.get(0))
            .unwrap()
    };
    let mut statement = vellum_records::SignedBinding::parse(&server_binding)
        .unwrap()
        .stored_statement()
        .unwrap();
    statement.serial = 7;
    statement.archiver_device = "impostor-device".into();
    let forged = impostor.sign_binding(&statement).to_json();
    evil.edit(
        &mut server,
        "UPDATE records_config SET binding = ?1, binding_serial = 7",
        [&forged],
    );
    alice.ok(&["sync"]);
    let warned = |needle: &str| {
        alice
            .events("kept")
            .iter()
            .filter(|e| e.starts_with("WARNING") && e.contains(needle))
            .count()
    };
    assert_eq!(warned("did not sign"), 1, "{:?}", alice.events("kept"));
    alice.ok(&["sync"]);
    assert_eq!(warned("did not sign"), 1, "said once, not at every sync");
    // alice still accepts only the archiver the real custodians bound.
    let members = alice.json(&["chat", "members", "kept", "--json"]);
    assert!(members
        .iter()
        .any(|m| m["role"] == "records archive (sealed, 2 of 3 custodians)"));

    // records.pub replaced by another key: refused, loudly; the pinned one stays.
    evil.edit(
        &mut server,
        "UPDATE records_config SET records_public = ?1",
        [other.public.to_json()],
    );
    alice.ok(&["sync"]);
    assert_eq!(
        warned("another records.pub"),
        1,
        "{:?}",
        alice.events("kept")
    );
    let members = alice.json(&["chat", "members", "kept", "--json"]);
    assert!(members
        .iter()
        .any(|m| m["role"] == "records archive (sealed, 2 of 3 custodians)"));
    // A device that never saw the real one cannot tell: it pins at first sight, and then
    // trusts no binding that the pinned key's custodians did not sign.
    let carol = Device::new_user(&server, root.path(), "carol");
    let out = output(carol.cmd().args([
        "chat", "create", "x", "--with", "alice", "--class", "record",
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not signed by the custodians")
            && stderr.contains("error: the custodians have not bound"),
        "{stderr}"
    );
}

#[test]
fn issue8_a_user_named_records_from_before_records_init_never_becomes_the_archiver() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let _alice = Device::new_user(&server, root.path(), "alice");
    // An older version let the admin create an ordinary user named records, with a code.
    let evil = Compromised::of(&server);
    evil.edit(
        &mut server,
        "INSERT INTO users (name, created_at) VALUES ('records', 0)",
        [],
    );
    let hash: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(b"0123456789abcdef0123456789abcdef").into()
    };
    evil.edit(
        &mut server,
        "INSERT INTO enrollment_codes (code_hash, user, expires_at) VALUES (?1, 'records', 99999999999)",
        [hash.to_vec()],
    );
    let line = run_fails(vellum().arg("--home").arg(root.path().join("imp")).args([
        "enroll",
        "--server",
        &server.url,
        "--user",
        "records",
        "--code",
        "0123456789abcdef0123456789abcdef",
    ]));
    assert!(line.contains("reserved"), "{line}");
    let line = run_fails(
        admin(
            &server,
            &[
                "records",
                "init",
                "--custodians",
                "3",
                "--threshold",
                "2",
                "--out",
            ],
        )
        .arg(root.path().join("keys")),
    );
    assert!(line.contains("did not create"), "{line}");
    let status = admin_status(&server);
    assert_eq!(
        (&status["records_configured"], &status["archiver_device"]),
        (&serde_json::Value::Bool(false), &serde_json::Value::Null)
    );
}

#[test]
fn issue8_a_record_chat_waits_for_the_custodians_binding() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let out = run_ok(
        admin(
            &server,
            &[
                "records",
                "init",
                "--custodians",
                "3",
                "--threshold",
                "2",
                "--origin",
                "records.agency.example/vellum",
                "--out",
            ],
        )
        .arg(root.path().join("keys")),
    );
    let code = last_line(&out);
    let archiver = Archiver::start(
        &server,
        root.path(),
        &root.path().join("keys/records.pub"),
        &code,
    );
    // Enrolled, sealed, not bound: the step is named by the device and by admin status.
    wait_until("the archiver enrolled", || {
        admin_status(&server)["archiver_device"].is_string()
    });
    let line = alice.fails(&[
        "chat", "create", "early", "--with", "bob", "--class", "record",
    ]);
    assert!(
        line.contains("2 custodians must each run `vellum records") && line.contains("unseal"),
        "{line}"
    );
    let status = admin_status(&server);
    assert!(
        status["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("unseal")),
        "{status}"
    );
    let shown = String::from_utf8(run_ok(&mut admin(&server, &["status"])).stdout).unwrap();
    assert!(shown.contains("(not bound)"), "{shown}");
    let shown = String::from_utf8(run_ok(&mut archiver.records(&["status"])).stdout).unwrap();
    assert!(shown.contains("not bound yet"), "{shown}");
    assert!(alice.json(&["chat", "list", "--json"]).is_empty());

    // One share binds nothing; the second does, and sealing at once keeps the binding.
    bind(&archiver, root.path(), &["share-3", "share-2"]);
    let shown = String::from_utf8(run_ok(&mut archiver.records(&["status"])).stdout).unwrap();
    assert!(shown.contains("binding 1"), "{shown}");
    assert_eq!(admin_status(&server)["archiver_binding_serial"], 1);
    alice.ok(&[
        "chat", "create", "kept", "--with", "bob", "--class", "record",
    ]);
    assert!(alice
        .events("kept")
        .contains(&"Messages in this chat are kept as records by the organisation".to_string()));
    let shown = String::from_utf8(alice.ok(&["chat", "members", "kept"]).stdout).unwrap();
    assert!(
        shown.contains("(records archive (sealed, 2 of 3 custodians))"),
        "{shown}"
    );
    // Issue 9: per device, the bound archiver is the records archive, everyone else a member.
    let devices = alice.json(&["chat", "members", "kept", "--devices", "--json"]);
    let states: Vec<(&str, &str)> = devices
        .iter()
        .map(|d| (d["user"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert!(
        states.contains(&("records", "records archive"))
            && states.contains(&("alice", "approved"))
            && states.contains(&("bob", "approved")),
        "{devices:?}"
    );
    // The binding is kept with the archive, beside records.pub's custodians' key.
    assert!(archiver
        .data
        .join("archive/bindings/00000000000000000001.json")
        .exists());
    // `chat add … records` is no way around it either.
    let line = alice.fails(&["chat", "add", "kept", "records"]);
    assert!(line.contains("not a member to add"), "{line}");
}

/// `archive verify` of a copy at `copy` against the org's records.pub, with more arguments.
fn verify_copy(root: &Path, copy: &Path, more: &[&str]) -> std::process::Output {
    output(
        vellum()
            .args(["archive", "verify", "--data"])
            .arg(copy)
            .arg("--records-key")
            .arg(root.join("keys/records.pub"))
            .args(more),
    )
}

#[test]
fn issue8_archive_verify_trusts_only_the_bound_log_key() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "audited", "--with", "bob"]);
    alice.ok(&["send", "audited", "first"]);
    crate::records::wait_for_records(&archiver, 3);
    archiver.wait_for_checkpoint();
    // The key an archive carries proves nothing: without records.pub, no verdict.
    let line = run_fails(
        vellum()
            .args(["archive", "verify", "--data"])
            .arg(&archiver.data),
    );
    assert!(line.contains("--records-key"), "{line}");
    let earlier = root.path().join("earlier");
    copy_archive(&archiver.data, &earlier);
    let kept = root.path().join("kept-checkpoint");
    let out = run_ok(
        vellum()
            .args(["archive", "checkpoint", "--data"])
            .arg(&archiver.data),
    );
    fs::write(&kept, &out.stdout).unwrap();
    alice.ok(&["send", "audited", "second"]);
    crate::records::wait_for_records(&archiver, 4);
    archiver.wait_for_checkpoint();
    let latest = root.path().join("latest-checkpoint");
    let out = run_ok(
        vellum()
            .args(["archive", "checkpoint", "--data"])
            .arg(&archiver.data),
    );
    fs::write(&latest, &out.stdout).unwrap();

    let out = run_ok(verify_cmd(&archiver, root.path()).args([
        "--checkpoint",
        kept.to_str().unwrap(),
        "--json",
    ]));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["verdict"], "intact");
    assert_eq!(verdict["bindings"], serde_json::json!([1]));
    assert_eq!(
        verdict["origin"],
        format!("{}/vellum-records", server.listen)
    );

    // Rolled back to the earlier copy (a consistent shorter prefix): intact on its own,
    // caught by the checkpoint kept since.
    let out = verify_copy(root.path(), &earlier, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify_copy(
        root.path(),
        &earlier,
        &["--checkpoint", latest.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept checkpoint 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Every checkpoint deleted: unattested, a failure.
    let stripped = root.path().join("stripped");
    copy_archive(&archiver.data, &stripped);
    fs::remove_dir_all(stripped.join("archive/checkpoints")).unwrap();
    fs::create_dir_all(stripped.join("archive/checkpoints")).unwrap();
    let out = verify_copy(root.path(), &stripped, &["--json"]);
    assert!(!out.status.success());
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&verdict["verdict"], &verdict["ok"]),
        (&serde_json::json!("unattested"), &serde_json::json!(false))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unattested"));

    // Re-keyed: a leaf altered, the log rebuilt and signed with a fresh key (log.vkey and
    // every checkpoint replaced). Against its own key it reads intact; against records.pub
    // it fails.
    let forged = root.path().join("forged");
    {
        // The forger reads the log (opening a scratch copy under its own key) and writes it
        // again, every leaf but one as it was, under a fresh key of the same origin.
        let scratch = root.path().join("scratch");
        copy_archive(&earlier, &scratch);
        let origin = format!("{}/vellum-records", server.listen);
        let fresh = || vellum_tlog::NoteSigner::new(&origin, &[66; 32]).unwrap();
        let (original, _) =
            vellum_archive::Archive::open_continuing(&scratch.join("archive"), fresh()).unwrap();
        let mut copy = vellum_archive::Archive::open(&forged.join("archive"), fresh()).unwrap();
        let mut altered = false;
        for i in 0..original.size() {
            match original.leaf(i).unwrap() {
                vellum_archive::Leaf::Record {
                    reference, time, ..
                } => {
                    let sealed = original.record(i).unwrap().unwrap();
                    copy.append_record(&reference, time, &sealed, None).unwrap();
                }
                vellum_archive::Leaf::Access { time, action, .. } if !altered => {
                    altered = true;
                    copy.append(vellum_archive::Leaf::Access {
                        time,
                        action,
                        detail: "nothing happened here".into(),
                    })
                    .unwrap();
                }
                leaf => {
                    copy.append(leaf).unwrap();
                }
            }
        }
        assert!(altered);
        copy.checkpoint().unwrap();
        let bindings = forged.join("archive/bindings");
        fs::create_dir_all(&bindings).unwrap();
        for entry in fs::read_dir(earlier.join("archive/bindings")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), bindings.join(entry.file_name())).unwrap();
        }
    }
    assert!(vellum_archive::verify(&forged.join("archive"), None).ok());
    let out = verify_copy(root.path(), &forged, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PROBLEM: checkpoints/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn issue8_replacing_a_dead_archiver_takes_the_custodians_and_shows_in_every_record_chat() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let mut old = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    bob.ok(&["sync"]);
    let old_id = admin_status(&server)["archiver_device"]
        .as_str()
        .unwrap()
        .to_owned();
    old.kill(); // its host died

    let out = run_ok(&mut admin(&server, &["records", "replace-archiver"]));
    let code = last_line(&out);
    assert_eq!(
        admin_status(&server)["archiver_device"],
        serde_json::Value::Null
    );
    // A new host, a new archive: its identity and log key are made there.
    let new = Archiver::start_at(
        &server,
        &root.path().join("archiver-2"),
        &root.path().join("keys/records.pub"),
        &code,
        &[],
    );
    let new_id = admin_status(&server)["archiver_device"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, old_id);
    // The old device is gone for good: it can no longer sign in, and is told why.
    let line = run_fails(
        vellum()
            .arg("--home")
            .arg(old.data.join("device"))
            .args(["sync"]),
    );
    assert!(line.contains("device_revoked"), "{line}");
    // Until k custodians unseal the new archiver, no new record chat.
    let line = alice.fails(&["chat", "create", "later", "--with", "bob"]);
    assert!(
        line.contains("replaced") && line.contains("unseal"),
        "{line}"
    );
    // Nor a message in an existing record chat: the old archiver hears nothing more, and the
    // new one is not in the chat yet, so it would escape the archive (issue 8 review).
    let line = alice.fails(&["send", "kept", "between the two archivers"]);
    assert!(
        line.contains("archiver_replaced") || line.contains("archiver was replaced"),
        "{line}"
    );

    bind(&new, root.path(), &["share-1", "share-3"]);
    assert_eq!(admin_status(&server)["archiver_binding_serial"], 2);
    // Every member sees the replacement in every record chat.
    for device in [&alice, &bob] {
        device.ok(&["sync"]);
        let events = device.events("kept");
        let replaced: Vec<&String> = events
            .iter()
            .filter(|e| e.starts_with("The records archiver was replaced"))
            .collect();
        assert_eq!(replaced.len(), 1, "{events:?}");
        assert!(
            replaced[0].contains(&new_id) && replaced[0].contains(&old_id),
            "{replaced:?}"
        );
        assert!(replaced[0].contains("2 of 3 custodians"), "{replaced:?}");
    }
    alice.ok(&["chat", "create", "later", "--with", "bob"]);
    let members = alice.json(&["chat", "members", "later", "--json"]);
    let archive = members.iter().find(|m| m["user"] == "records").unwrap();
    assert_eq!(archive["device"], new_id.as_str());
    assert_eq!(
        archive["role"],
        "records archive (sealed, 2 of 3 custodians)"
    );
    // The old archiver, still named by the chat from before, is no longer the bound one.
    let members = alice.json(&["chat", "members", "kept", "--json"]);
    let stale = members.iter().find(|m| m["user"] == "records").unwrap();
    assert_eq!(stale["device"], old_id.as_str());
    assert_eq!(
        stale["role"],
        "NOT the archiver the records custodians bound"
    );
    // The next to speak there switches the chat to the bound archiver first (one commit),
    // so what is said from then on is archived again.
    let before = new.status()["records"].as_u64().unwrap();
    alice.ok(&["send", "kept", "after the replacement"]);
    for device in [&alice, &bob] {
        device.ok(&["sync"]);
        let members = device.json(&["chat", "members", "kept", "--json"]);
        let archives: Vec<_> = members.iter().filter(|m| m["user"] == "records").collect();
        assert_eq!(archives.len(), 1, "{members:?}");
        assert_eq!(archives[0]["device"], new_id.as_str());
        assert_eq!(
            archives[0]["role"],
            "records archive (sealed, 2 of 3 custodians)"
        );
        assert!(device
            .events("kept")
            .iter()
            .all(|e| !e.starts_with("WARNING")));
    }
    assert_eq!(bob.texts("kept"), vec!["after the replacement".to_string()]);
    // It joined (with the roster) and archived the message.
    crate::records::wait_for_records(&new, before + 2);
    // Its log is a new chain on the delivery server: receipts resume, and no device takes
    // the new log key's checkpoints for a fork of the old one (review finding).
    crate::records::wait_until("alice's receipt from the new archiver", || {
        alice.ok(&["sync"]);
        alice
            .json(&["history", "kept", "--json"])
            .iter()
            .any(|m| m["text"] == "after the replacement" && m["archived"] == true)
    });
    for device in [&alice, &bob] {
        device.ok(&["status"]);
        assert!(
            device.events("kept").iter().all(|e| !e.contains("forked")),
            "{:?}",
            device.events("kept")
        );
    }
}

/// The archive of a 0.1.0 archiver (tests/fixtures/v0.1.0: records.pub version 1, origin
/// `vellum.records/<id>`, its log key left out) upgraded in place: the first unseal makes
/// records.pub version 2 and binds the log's new key and origin with the transition from
/// the old one, and `archive verify` checks the whole history across it.
#[test]
fn issue8_an_archive_from_0_1_0_migrates_and_verifies_across_the_transition() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0");
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    // The fixture keeps no custodian shares (see its README): the org's version 1
    // records.pub here is of a key whose shares the test holds. The archive's log,
    // checkpoints, old origin and old key are the fixture's, byte for byte.
    let keys = root.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let generated = vellum_records::generate(3, 2, "unused.example/x").unwrap();
    let v1 = vellum_records::RecordsPublic {
        version: 1,
        origin: None,
        binding_key: None,
        ..generated.public.clone()
    };
    fs::write(keys.join("records.pub"), v1.to_json()).unwrap();
    for (i, share) in generated.shares.iter().enumerate() {
        fs::write(keys.join(format!("share-{}", i + 1)), share.as_bytes()).unwrap();
    }
    let token = fs::read_to_string(server.token_file()).unwrap();
    let code: vellum_wire::EnrollmentCode = runtime()
        .block_on(Api::new(&server.url).unwrap().call(
            Method::POST,
            "/v1/admin/records",
            Some(&vellum_wire::RecordsInit {
                records_public: v1.to_json(),
            }),
            None,
            Some(token.trim()),
        ))
        .unwrap();
    alice.ok(&["sync"]); // pins version 1
    let data = root.path().join("archiver");
    copy_archive(&fixture.join("archiver"), &data);
    fs::copy(
        fixture.join("archiver/schedules.json"),
        data.join("schedules.json"),
    )
    .unwrap();
    let old_vkey = fs::read_to_string(data.join("archive/log.vkey")).unwrap();
    assert!(old_vkey.starts_with("vellum.records/bdbf2885+"));

    // Version 1 needs the new origin, once; nothing is enrolled without it.
    let line = run_fails(
        vellum()
            .args(["archiver", "--server", &server.url, "--data"])
            .arg(&data)
            .arg("--records-key")
            .arg(keys.join("records.pub"))
            .args(["--listen", "127.0.0.1:0", "--code", &code.code]),
    );
    assert!(line.contains("--origin"), "{line}");
    let origin = "records.agency.example/vellum";
    let archiver = Archiver::start_at(
        &server,
        &data,
        &keys.join("records.pub"),
        &code.code,
        &["--origin", origin],
    );
    let transitions: Vec<vellum_records::PreviousLog> =
        serde_json::from_slice(&fs::read(data.join("archive/transitions.json")).unwrap()).unwrap();
    assert_eq!(transitions.len(), 1);
    assert_eq!(
        (transitions[0].origin.as_str(), transitions[0].size),
        ("vellum.records/bdbf2885", 4)
    );
    assert_eq!(transitions[0].log_key, old_vkey.trim_end());
    let line = alice.fails(&[
        "chat", "create", "early", "--with", "bob", "--class", "record",
    ]);
    assert!(line.contains("unseal"), "{line}");

    // The first unseal: records.pub version 2 next to the data, the binding with the
    // transition, both on the server; devices take the upgrade of the key they pinned.
    bind(&archiver, root.path(), &["share-2", "share-3"]);
    let v2 = vellum_records::RecordsPublic::parse(
        &fs::read_to_string(data.join("records.pub")).unwrap(),
    )
    .unwrap();
    assert_eq!((v2.version, v2.origin.as_deref()), (2, Some(origin)));
    assert!(v2.same_key(&v1));
    assert_eq!(v2.binding_key, generated.public.binding_key);
    alice.ok(&[
        "chat", "create", "kept", "--with", "bob", "--class", "record",
    ]);
    assert!(
        alice
            .events("kept")
            .iter()
            .all(|e| !e.starts_with("WARNING")),
        "{:?}",
        alice.events("kept")
    );
    crate::records::wait_for_records(&archiver, 2);
    archiver.wait_for_checkpoint();
    let checkpoint = run_ok(
        vellum()
            .args(["archive", "checkpoint", "--data"])
            .arg(&data),
    );
    assert!(String::from_utf8_lossy(&checkpoint.stdout).starts_with(&format!("{origin}\n")));

    // The auditor checks the whole history, the fixture's checkpoints included.
    let verify = |records_pub: &Path| {
        output(
            vellum()
                .args(["archive", "verify", "--data"])
                .arg(&data)
                .arg("--records-key")
                .arg(records_pub)
                .arg("--json"),
        )
    };
    let out = verify(&data.join("records.pub"));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{verdict}");
    assert_eq!(verdict["verdict"], "intact");
    let keys_bound = verdict["log_keys"].as_array().unwrap();
    assert!(
        keys_bound
            .iter()
            .any(|k| k["key"] == old_vkey.trim_end() && k["up_to"] == 4),
        "{verdict}"
    );
    assert!(verdict["checkpoints"].as_u64().unwrap() >= 3, "{verdict}");
    // The version 1 file binds no log key: it cannot vouch for anything.
    let out = verify(&keys.join("records.pub"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));
}
