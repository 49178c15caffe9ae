//! Issue 4: the archiver, sealed records, unsealing by custodians, and offline verification.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) struct Archiver {
    pub(crate) url: String,
    pub(crate) data: PathBuf,
    /// More arguments for each start (e.g. witnesses).
    pub(crate) extra_args: Vec<String>,
    child: Option<Child>,
    records_pub: PathBuf,
    server_url: String,
}

impl Archiver {
    pub(crate) fn start(server: &Server, root: &Path, records_pub: &Path, code: &str) -> Self {
        Self::start_at(server, &root.join("archiver"), records_pub, code, &[])
    }

    /// An archiver with its data in `data`, started with `extra_args` (every start).
    pub(crate) fn start_at(
        server: &Server,
        data: &Path,
        records_pub: &Path,
        code: &str,
        extra_args: &[&str],
    ) -> Self {
        let mut archiver = Self {
            url: String::new(),
            data: data.to_owned(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
            records_pub: records_pub.to_owned(),
            server_url: server.url.clone(),
        };
        archiver.spawn(Some(code));
        archiver
    }

    /// Starts the archiver on a free port and reads which from its first line of output.
    pub(crate) fn spawn(&mut self, code: Option<&str>) {
        let mut cmd = vellum();
        cmd.args(["archiver", "--server", &self.server_url, "--data"])
            .arg(&self.data)
            .arg("--records-key")
            .arg(&self.records_pub)
            .args(["--listen", "127.0.0.1:0"])
            // Checkpoints (and so receipts and audits) follow quickly: tests wait on them.
            .args(["--checkpoint-interval", "100ms"])
            .args(&self.extra_args);
        if let Some(code) = code {
            cmd.args(["--code", code]);
        }
        let mut child = spawn_piped(&mut cmd);
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (first, lines) = std::sync::mpsc::channel();
        // Keeps reading, so that the archiver's later output never meets a closed pipe.
        std::thread::spawn(move || {
            let mut first = Some(first);
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if let Some(first) = first.take() {
                    let _ = first.send(line);
                }
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("archiver did not start");
        let addr = line
            .strip_prefix("vellum archiver listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        assert!(
            !addr.ends_with(":0"),
            "the archiver names the port it bound: {line}"
        );
        self.url = addr.to_owned();
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let out = run_ok(&mut self.records(&["status", "--json"]));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits until a signed checkpoint covers every leaf logged so far.
    pub(crate) fn wait_for_checkpoint(&self) {
        let size = self.status()["log_size"].as_u64().unwrap();
        wait_until("a checkpoint over the whole log", || {
            self.status()["checkpoint_size"]
                .as_u64()
                .is_some_and(|c| c >= size)
        });
    }

    /// The running archiver's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the archiver runs").id()
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub(crate) fn records(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = vellum();
        cmd.args(["records", "--archiver", &self.url, "--token-file"])
            .arg(self.data.join("records-token"))
            .args(args);
        cmd
    }

    /// Unseals with custodians' shares from `root/keys` and returns the chat's records, typed,
    /// from the records API (what `records search --json` prints, before it is flattened).
    pub(crate) fn unsealed_records(
        &self,
        root: &Path,
        shares: &[&str],
        chat: &str,
    ) -> Vec<vellum_archiver::api_types::SearchHit> {
        for share in shares {
            run_ok(
                self.records(&["unseal", "--share"])
                    .arg(root.join("keys").join(share)),
            );
        }
        let token = std::fs::read_to_string(self.data.join("records-token")).unwrap();
        let request = vellum_archiver::api_types::SearchRequest {
            chats: vec![chat.to_owned()],
            limit: Some(10_000),
            ..Default::default()
        };
        runtime().block_on(async {
            vellum_client::Api::new(&self.url)
                .unwrap()
                .call::<vellum_archiver::api_types::SearchResults>(
                    vellum_client::Method::POST,
                    "/v1/search",
                    Some(&request),
                    None,
                    Some(token.trim()),
                )
                .await
                .unwrap()
                .hits
        })
    }

    pub(crate) fn search(&self, query: &str) -> Vec<serde_json::Value> {
        let out = run_ok(&mut self.records(&["search", query, "--json"]));
        // A list: one JSON array (issue 10).
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The org with records configured: shares in `root/keys`, the archiver running and bound
/// by two custodians (who unseal once, then seal it again).
pub(crate) fn records_org(server: &Server, root: &Path) -> Archiver {
    let archiver = records_org_unbound(server, root);
    bind(&archiver, root, &["share-1", "share-2"]);
    archiver
}

/// The org with records configured and the archiver running, not yet bound.
pub(crate) fn records_org_unbound(server: &Server, root: &Path) -> Archiver {
    let out = run_ok(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args([
                "records",
                "init",
                "--custodians",
                "3",
                "--threshold",
                "2",
                "--out",
            ])
            .arg(root.join("keys")),
    );
    let code = last_line(&out);
    let archiver = Archiver::start(server, root, &root.join("keys/records.pub"), &code);
    run_ok(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args(["policy", "set", "--default-class", "record"]),
    );
    archiver
}

/// The custodians' first unseal binds the archiver; they seal it again once the delivery
/// server holds the binding (record chats can be created from then on).
pub(crate) fn bind(archiver: &Archiver, root: &Path, shares: &[&str]) {
    for share in shares {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.join("keys").join(share)),
        );
    }
    wait_until("the binding on the delivery server", || {
        archiver.status()["binding_on_server"] == true
    });
    run_ok(&mut archiver.records(&["seal"]));
}

/// `archive verify` of the archiver's directory against the custodians' records.pub.
pub(crate) fn verify_cmd(archiver: &Archiver, root: &Path) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["archive", "verify", "--data"])
        .arg(&archiver.data)
        .arg("--records-key")
        .arg(root.join("keys/records.pub"));
    cmd
}

/// Copies the archive of the archiver in `data` (what an auditor receives) to `to/archive`.
pub(crate) fn copy_archive(data: &Path, to: &Path) {
    for file in files_under(&data.join("archive")) {
        let target = to.join(file.strip_prefix(data).unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&file, target).unwrap();
    }
}

/// Polls `done` until it holds; fails the test after 20 seconds.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn wait_for_records(archiver: &Archiver, at_least: u64) {
    wait_until(&format!("{at_least} records"), || {
        archiver.status()["records"].as_u64().unwrap() >= at_least
    });
}

#[test]
fn issue_4_record_chats_are_archived_sealed_and_readable_only_after_k_shares() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    // Before records are configured, every chat is transitory.
    alice.ok(&["chat", "create", "early", "--with", "bob"]);
    let line = alice.fails(&["chat", "create", "nope", "--class", "record"]);
    assert!(line.contains("records are not configured"), "{line}");

    let admin_status = || {
        let out = run_ok(
            vellum()
                .args(["admin", "--server", &server.url, "--token-file"])
                .arg(server.token_file())
                .args(["status", "--json"]),
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = admin_status();
    assert_eq!(before["records_configured"], false);
    assert!(before["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not configured"));
    let archiver = records_org(&server, root.path());
    assert!(admin_status()["warnings"].as_array().unwrap().is_empty());
    for secret in [
        archiver.data.join("records-token"),
        archiver.data.join("log.key"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            secret.display()
        );
    }
    for share in 1..=3 {
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(root.path().join(format!("keys/share-{share}")))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode, 0o600);
    }
    alice.ok(&["chat", "create", "ops", "--with", "bob", "--expire", "2s"]);
    let chats = alice.json(&["chat", "list", "--json"]);
    let class_of =
        |title: &str| chats.iter().find(|c| c["title"] == title).unwrap()["class"].clone();
    assert_eq!(
        (class_of("early"), class_of("ops")),
        ("transitory".into(), "record".into())
    );
    assert!(alice
        .events("ops")
        .contains(&"Messages in this chat are kept as records by the organisation".to_string()));
    let marker_a = marker("record-a");
    let marker_b = marker("record-b");
    alice.ok(&["send", "ops", &marker_a]);
    bob.ok(&["sync"]);
    bob.ok(&["send", "ops", &marker_b]);
    assert!(bob
        .events("ops")
        .contains(&"Messages in this chat are kept as records by the organisation".to_string()));
    // the archiver joining (with the roster), the title, two messages
    wait_for_records(&archiver, 4);
    // Issue 10: bob's read marker (sent after `history`) is consumed without a record.
    wait_until("no archiver backlog", || {
        admin_status()["archiver_backlog"] == 0
    });

    // The senders get receipts: leaf, inclusion proof and signed checkpoint, verified.
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    alice.ok(&["send", "kept", "receipt for alice"]);
    bob.ok(&["sync"]);
    bob.ok(&["send", "kept", "receipt for bob"]);
    let archived = |device: &Device, text: &str| {
        device
            .json(&["history", "kept", "--json"])
            .iter()
            .any(|m| m["text"] == text && m["archived"] == true)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        alice.ok(&["sync"]);
        bob.ok(&["sync"]);
        if archived(&alice, "receipt for alice") && archived(&bob, "receipt for bob") {
            break;
        }
        assert!(Instant::now() < deadline, "no verified receipt arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !archived(&bob, "receipt for alice"),
        "a receipt goes to the sender only"
    );

    // The records API answers only the records officer.
    let wrong = root.path().join("wrong-token");
    fs::write(&wrong, "not-the-token\n").unwrap();
    let line = run_fails(
        vellum()
            .args(["records", "--archiver", &archiver.url, "--token-file"])
            .arg(&wrong)
            .args(["status"]),
    );
    assert!(line.contains("invalid or disabled API token"), "{line}");
    let line = run_fails(&mut archiver.records(&[
        "hold",
        "create",
        "backwards",
        "--from",
        "2026-02-01T00:00:00Z",
        "--to",
        "2026-01-01T00:00:00Z",
    ]));
    assert!(line.contains("ends before it begins"), "{line}");
    let line = run_fails(&mut archiver.records(&["search", "x", "--from", "yesterday"]));
    assert!(line.contains("RFC 3339"), "{line}");

    // Sealed: search refuses; one share is not enough; a corrupted share is named.
    let line = run_fails(&mut archiver.records(&["search", &marker_a]));
    assert!(line.contains("sealed"), "{line}");
    run_ok(
        archiver
            .records(&["unseal", "--share"])
            .arg(root.path().join("keys/share-1")),
    );
    let corrupted = root.path().join("corrupted");
    let mut share = fs::read_to_string(root.path().join("keys/share-2"))
        .unwrap()
        .into_bytes();
    let at = share.len() - 6;
    share[at] = if share[at] == b'A' { b'B' } else { b'A' };
    fs::write(&corrupted, share).unwrap();
    let line = run_fails(archiver.records(&["unseal", "--share"]).arg(&corrupted));
    assert!(
        line.contains("corrupted") || line.contains("share"),
        "{line}"
    );
    assert!(run_fails(&mut archiver.records(&["search", &marker_a])).contains("sealed"));
    run_ok(
        archiver
            .records(&["unseal", "--share"])
            .arg(root.path().join("keys/share-3")),
    );

    // Unsealed: the records carry sender, recipients, times and chat identity.
    let hits = archiver.search(&marker_a);
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(
        (hit["sender"].as_str(), hit["chat_title"].as_str()),
        (Some("alice"), Some("ops"))
    );
    let recipients: Vec<&str> = hit["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert!(
        recipients.contains(&"bob") && recipients.contains(&"records"),
        "{recipients:?}"
    );
    assert_eq!(archiver.search(&marker_b)[0]["sender"], "bob");

    // The messages expired on every device, but the records remain.
    wait_until("the messages to expire on the devices", || {
        alice.texts("ops").is_empty() && bob.texts("ops").is_empty()
    });
    assert_eq!(archiver.search(&marker_a).len(), 1);
    run_ok(&mut archiver.records(&["seal"]));
    assert!(run_fails(&mut archiver.records(&["search", &marker_a])).contains("sealed"));

    // No plaintext in any file of the archive or the server.
    for dir in [&archiver.data, &server.data] {
        for file in files_under(dir) {
            let bytes = fs::read(&file).unwrap();
            for m in [&marker_a, &marker_b] {
                assert!(
                    !bytes.windows(m.len()).any(|w| w == m.as_bytes()),
                    "{m} in {}",
                    file.display()
                );
            }
        }
    }

    // The auditor's offline check passes, and catches a flipped byte, naming the leaf.
    run_ok(&mut archiver.records(&["status"]));
    archiver.wait_for_checkpoint(); // covering the accesses too
    let out = run_ok(&mut verify_cmd(&archiver, root.path()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("archive intact"));
    let checkpoint = run_ok(
        vellum()
            .args(["archive", "checkpoint", "--data"])
            .arg(&archiver.data),
    );
    // The origin records init chose: the server's host, then /vellum-records.
    let origin = format!("{}/vellum-records", server.listen);
    assert!(String::from_utf8_lossy(&checkpoint.stdout).starts_with(&format!("{origin}\n")));
    let copy = root.path().join("audit-copy");
    copy_archive(&archiver.data, &copy);
    let log = copy.join("archive/log.bin");
    let mut bytes = fs::read(&log).unwrap();
    bytes[60] ^= 0x20;
    fs::write(&log, bytes).unwrap();
    let out = output(
        vellum()
            .args(["archive", "verify", "--data"])
            .arg(&copy)
            .arg("--records-key")
            .arg(root.path().join("keys/records.pub")),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("leaf 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn issue_4_an_archiver_outage_costs_no_record_and_duplicates_none() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let mut archiver = records_org(&server, root.path());
    alice.ok(&[
        "chat", "create", "outage", "--with", "bob", "--expire", "1s",
    ]);
    bob.ok(&["sync"]);
    wait_for_records(&archiver, 2); // joined, title

    archiver.kill(); // SIGKILL
    for i in 0..5 {
        if i == 3 {
            server.restart(); // SIGKILL the delivery server too, mid-way
        }
        alice.ok(&["send", "outage", &format!("while the archiver is down {i}")]);
    }
    // Past their expiry: gone from devices (bob's shredder removes them, or they arrive
    // expired), kept by the server for the archiver.
    wait_until("the messages to expire on bob's device", || {
        bob.ok(&["sync"]);
        bob.texts("outage").is_empty()
    });
    archiver.spawn(None);
    wait_for_records(&archiver, 7);
    archiver.kill();
    archiver.spawn(None);
    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let hits = archiver.search("while the archiver is down");
    let mut texts: Vec<String> = hits
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    let want: Vec<String> = (0..5)
        .map(|i| format!("while the archiver is down {i}"))
        .collect();
    assert_eq!(texts, want, "every message archived exactly once");
}

#[test]
fn issue_4_a_held_record_survives_disposition_and_every_step_is_logged() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let mut archiver = records_org(&server, root.path());
    // A one-second schedule for the chat "brief"; the archiver reads schedules at start.
    let schedules = r#"{"schedules":{"short":"1s","default":"2555d"},"default_schedule":"default","users":{},"chats":{"brief":"short"}}"#;
    fs::write(archiver.data.join("schedules.json"), schedules).unwrap();
    archiver.kill();
    archiver.spawn(None);

    alice.ok(&["chat", "create", "brief", "--with", "bob"]);
    alice.ok(&["send", "brief", "to be disposed"]);
    wait_for_records(&archiver, 3);
    // The hold starts strictly after the first message's clocks (millisecond resolution).
    let archived_by = std::time::SystemTime::now();
    while std::time::SystemTime::now() <= archived_by + Duration::from_millis(2) {
        std::thread::yield_now();
    }
    let hold_from = rfc3339_now();
    bob.ok(&["sync"]);
    bob.ok(&["send", "brief", "kept by hold"]);
    wait_for_records(&archiver, 4);
    let created = run_ok(&mut archiver.records(&[
        "hold",
        "create",
        "litigation",
        "--chat",
        "brief",
        "--from",
        &hold_from,
        "--json",
    ]));
    // Issue 10: --json on every command.
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["name"], "litigation", "{created}");
    let holds = run_ok(&mut archiver.records(&["hold", "list", "--json"]));
    let holds: Vec<serde_json::Value> = serde_json::from_slice(&holds.stdout).unwrap();
    assert_eq!(holds.len(), 1, "{holds:?}");
    let line = run_fails(&mut archiver.records(&["hold", "create", "litigation"]));
    assert!(line.contains("already in force"), "{line}");
    let line = run_fails(&mut archiver.records(&["hold", "release", "no-such-hold"]));
    assert!(line.contains("no hold"), "{line}");
    let line = run_fails(&mut archiver.records(&["dispose"]));
    assert!(line.contains("unseal"), "{line}");

    for share in ["share-1", "share-3"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let dispose = |dry: bool| -> Vec<serde_json::Value> {
        let mut args = vec!["dispose", "--json"];
        if dry {
            args.push("--dry-run");
        }
        let out = run_ok(&mut archiver.records(&args));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    // Once the one-second schedule has run out for all four records:
    wait_until("the schedule to run out", || dispose(true).len() >= 4);
    let dry = dispose(true);
    assert_eq!(dry.len(), 4, "join, title, two messages: {dry:?}");
    assert!(dry.iter().all(|d| d["disposed"] == false));
    assert_eq!(
        dry.iter().filter(|d| d["held_by"] == "litigation").count(),
        1
    );
    assert_eq!(
        archiver.search("to be disposed").len(),
        1,
        "a dry run changes nothing"
    );

    let done = dispose(false);
    assert_eq!(done.iter().filter(|d| d["disposed"] == true).count(), 3);
    assert!(
        archiver.search("to be disposed").is_empty(),
        "its key is shredded"
    );
    assert_eq!(
        archiver.search("kept by hold").len(),
        1,
        "the held record survives"
    );

    let released = run_ok(&mut archiver.records(&["hold", "release", "litigation", "--json"]));
    let released: serde_json::Value = serde_json::from_slice(&released.stdout).unwrap();
    assert_eq!(released["released"], "litigation");
    let holds = run_ok(&mut archiver.records(&["hold", "list", "--json"]));
    assert_eq!(String::from_utf8_lossy(&holds.stdout).trim(), "[]");
    let after = dispose(false);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["disposed"], true);
    assert!(archiver.search("kept by hold").is_empty());

    // The log still holds every record leaf, plus the holds, dispositions and accesses.
    archiver.wait_for_checkpoint();
    let out = run_ok(&mut verify_cmd(&archiver, root.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 disposed"), "{text}");
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Issue 7: a newer client's payload kind costs no record. Members running this version
/// show one placeholder event (sender, time); the archiver seals the payload verbatim.
#[test]
fn issue_7_an_unknown_payload_kind_is_shown_as_a_placeholder_and_archived_verbatim() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "future", "--with", "bob"]);
    bob.ok(&["sync"]);
    wait_for_records(&archiver, 2); // joined, title

    // What a later version might send: a poll, with fields this one has never seen.
    let raw = r#"{"kind":"poll","to":"m-1","emoji":"\u2705","nested":{"a":[1,2.5,null]}}"#;
    let runtime = runtime();
    let payload = vellum_wire::AppPayload::decode(raw.as_bytes()).unwrap();
    let seq = runtime.block_on(async {
        let mut client = vellum_client::Client::open(&alice.home).unwrap();
        client.send_unknown_kind("future", payload).await.unwrap()
    });

    // bob sees it once, as a placeholder naming the sender, when syncing and in history.
    let synced = bob.json(&["sync", "--json"]);
    let placeholder = format!("alice sent {}", vellum_client::CANNOT_DISPLAY);
    let shown: Vec<_> = synced.iter().filter(|m| m["text"] == placeholder).collect();
    assert_eq!(shown.len(), 1, "{synced:?}");
    assert_eq!(shown[0]["sender"], "alice");
    assert_eq!(shown[0]["seq"], seq);
    assert!(shown[0]["sent_at"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        bob.events("future")
            .iter()
            .filter(|e| **e == placeholder)
            .count(),
        1
    );
    bob.ok(&["sync"]);
    assert_eq!(
        bob.events("future")
            .iter()
            .filter(|e| **e == placeholder)
            .count(),
        1,
        "shown once, not again on the next sync"
    );

    // The archive holds it sealed; unsealed, it is the payload byte for byte.
    wait_for_records(&archiver, 3);
    let hits = archiver.unsealed_records(root.path(), &["share-1", "share-2"], "future");
    let unknown: Vec<_> = hits
        .iter()
        .filter(|h| {
            matches!(
                h.record.kind,
                vellum_archiver::record::RecordKind::Unknown { .. }
            )
        })
        .collect();
    assert_eq!(unknown.len(), 1, "{hits:?}");
    let record = &unknown[0].record;
    assert_eq!(
        record.kind,
        vellum_archiver::record::RecordKind::Unknown {
            kind: "poll".into(),
            payload: raw.into()
        }
    );
    assert_eq!((record.sender_user.as_str(), record.seq), ("alice", seq));
    assert!(record.recipients.iter().any(|r| r.user == "bob"));
    assert_eq!(record.version, vellum_archiver::record::FORMAT_VERSION);
    // And the CLI lists it by kind.
    let listed = run_ok(&mut archiver.records(&["search", "", "--chat", "future", "--json"]));
    assert!(String::from_utf8_lossy(&listed.stdout).contains(r#""kind":"unknown""#));
}

/// A small tmpfs mounted on `dir` for one test (CI runs as root); unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let out = output(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }

    /// Fills the disk with `filler` until a write fails for lack of space.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn issue_8_a_full_disk_pauses_the_archiver_and_it_resumes_without_loss() {
    let root = tempfile::tempdir().unwrap();
    // The archive alone on the small disk: the archiver's device store stays writable.
    let disk = SmallDisk::mount(&root.path().join("archiver/archive"), "4m");
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let mut archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    alice.ok(&["send", "ops", "before the disk filled"]);
    // The archiver joining (with the roster), the title, one message.
    wait_for_records(&archiver, 3);
    let before = archiver.status()["records"].as_u64().unwrap();

    let filler = disk.fill();
    // Sent until one needs more room than the last partly used pages hold.
    let mut sent = 0;
    let reason = loop {
        sent += 1;
        assert!(sent <= 20, "the archiver never noticed the full disk");
        alice.ok(&["send", "ops", &format!("while full {sent}")]);
        let mut paused = None;
        wait_until("the message archived or the archiver paused", || {
            let status = archiver.status();
            paused = status["paused"].as_str().map(str::to_owned);
            paused.is_some() || status["records"].as_u64().unwrap() == before + sent
        });
        if let Some(reason) = paused {
            break reason;
        }
    };
    // A record's key or leaf, or a checkpoint: whichever write found the disk full first.
    assert!(
        reason.starts_with("paused: the archive's disk is full: ")
            && reason.contains("/archiver/archive/"),
        "{reason}"
    );
    let shown = run_ok(&mut archiver.records(&["status"]));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&reason));
    assert!(
        archiver
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the archiver keeps running"
    );

    // Room again: the retries archive every message once, and the pause clears.
    fs::remove_file(filler).unwrap();
    wait_until("the archiver resumed with every message", || {
        let status = archiver.status();
        status["paused"].is_null() && status["records"].as_u64().unwrap() == before + sent
    });
    archiver.wait_for_checkpoint();
    let out = run_ok(&mut verify_cmd(&archiver, root.path()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("archive intact"));
    archiver.kill();
}
