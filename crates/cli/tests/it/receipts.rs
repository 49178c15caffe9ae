//! Issue 8, behaviour 5: receipts that bind content. A sender exports one message's proof
//! (`vellum receipts CHAT MSG_ID`); a third party checks it with `records.pub` alone
//! (`vellum archive verify-receipt`), and every tampering is a clear error. A server restored
//! from a backup reuses log positions: the archive seals what it gets there, and the members
//! see the archive log go back.

use std::fs;
use std::path::Path;

use serde_json::Value;
use vellum_tlog::NoteSigner;

use crate::harness::*;
use crate::records::{bind, records_org, records_org_unbound, wait_for_records, wait_until};

/// The id `send` printed.
fn sent_id(out: &std::process::Output) -> String {
    last_line(out)
        .strip_prefix("sent ")
        .expect("send prints the id")
        .to_owned()
}

fn archived(device: &Device, chat: &str, id: &str) -> bool {
    device
        .json(&["history", chat, "--json"])
        .iter()
        .any(|m| m["id"] == id && m["archived"] == true)
}

fn verify(file: &Path, records_pub: &Path) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["archive", "verify-receipt"])
        .arg(file)
        .arg("--records-key")
        .arg(records_pub);
    cmd
}

/// A note with only the signature lines of `keep` (by name).
fn only_signatures_of(note: &str, keep: &str) -> String {
    let (text, signatures) = note.split_once("\n\n").unwrap();
    let kept: String = signatures
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(keep))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{text}\n\n{kept}")
}

#[test]
fn issue8_a_receipt_proves_what_the_sender_sent_to_anyone_holding_records_pub() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    // The archiver's log key exists from its first start; a witness follows it; the
    // custodians' first unseal binds the archiver, its log key and that witness (quorum 1).
    let mut archiver = records_org_unbound(&server, root.path());
    let log_vkey = fs::read_to_string(archiver.data.join("archive/log.vkey")).unwrap();
    let log_vkey = log_vkey.trim_end().to_owned();
    let origin = log_vkey.split('+').next().unwrap().to_owned();
    archiver.kill();
    let wdata = root.path().join("witness");
    let witness = crate::witness::start(&wdata, &[&log_vkey]);
    let wkey = last_line(&run_ok(
        vellum().args(["witness", "key", "--data"]).arg(&wdata),
    ));
    let wname = wkey.split('+').next().unwrap().to_owned();
    archiver.extra_args = vec!["--witness".into(), format!("{}={wkey}", witness.url)];
    archiver.spawn(None);
    bind(&archiver, root.path(), &["share-1", "share-2"]);
    let records_pub = root.path().join("keys/records.pub");

    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    bob.ok(&["sync"]);
    let text = "the figures for Q3 are in";
    let id = sent_id(&alice.ok(&["send", "kept", text]));
    let other = sent_id(&alice.ok(&["send", "kept", "and Q4 looks better"]));
    wait_until("verified receipts for both messages", || {
        alice.ok(&["sync"]);
        archived(&alice, "kept", &id) && archived(&alice, "kept", &other)
    });

    // The sender's kept receipts, listed; one exported; checked with records.pub alone.
    let listed = alice.json(&["receipts", "kept", "--json"]);
    let ids: Vec<&str> = listed.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id.as_str(), other.as_str()]);
    assert!(listed[0]["leaf"].is_u64() && listed[0]["checkpoint_size"].is_u64());
    let out = alice.ok(&["receipts", "kept"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{id}  leaf ")));
    let export = |id: &str| {
        let out = alice.ok(&["receipts", "kept", id]);
        let path = root.path().join(format!("proof-{id}.json"));
        fs::write(&path, &out.stdout).unwrap();
        path
    };
    let proof_file = export(&id);
    let out = String::from_utf8(run_ok(&mut verify(&proof_file, &records_pub)).stdout).unwrap();
    for expected in [
        "receipt verified".to_owned(),
        format!("text: {text}"),
        format!("message_id: {id}"),
        "sender_user: alice".to_owned(),
        format!("witnesses: {wname} (quorum 1)"),
        origin.clone(),
    ] {
        assert!(out.contains(&expected), "{expected:?} in {out}");
    }
    let json: Value =
        serde_json::from_slice(&run_ok(verify(&proof_file, &records_pub).arg("--json")).stdout)
            .unwrap();
    assert_eq!(json["fields"]["text"], text);
    assert_eq!(json["cosigners"], serde_json::json!([wname]));
    assert_eq!(json["withheld"], serde_json::json!([]));

    // Every tampering is refused with one clear line and a non-zero exit.
    let proof: Value = serde_json::from_slice(&fs::read(&proof_file).unwrap()).unwrap();
    let other_proof: Value = serde_json::from_slice(&fs::read(export(&other)).unwrap()).unwrap();
    let text_at = proof["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .position(|d| d["field"] == "text")
        .unwrap();
    let note = proof["receipt"]["checkpoint"].as_str().unwrap().to_owned();
    let (checkpoint_text, _) = note.split_once("\n\n").unwrap();
    // Signed by another key of the same name, keeping the witness's line.
    let impostor = NoteSigner::new(&origin, &[9; 32]).unwrap();
    let witness_lines = only_signatures_of(&note, &wname);
    let resigned = impostor.sign(&format!("{checkpoint_text}\n")).unwrap()
        + witness_lines.split_once("\n\n").unwrap().1;
    let foreign_binding = {
        let generated = vellum_records::generate(3, 2, &origin).unwrap();
        let mut unsealer = vellum_records::Unsealer::new(generated.public);
        unsealer.add(&generated.shares[0]).unwrap();
        let vellum_records::UnsealProgress::Unsealed(secret) =
            unsealer.add(&generated.shares[1]).unwrap()
        else {
            panic!("two shares unseal")
        };
        let statement: vellum_records::ArchiverBinding =
            serde_json::from_str(proof["binding"]["statement"].as_str().unwrap()).unwrap();
        serde_json::to_value(secret.sign_binding(&statement)).unwrap()
    };
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "altered text",
            Box::new(move |p| {
                p["disclosures"][text_at]["value"] = "the figures for Q3 are out".into();
            }),
            "does not commit to this text",
        ),
        (
            "another message id",
            Box::new(|p| p["receipt"]["message_id"] = "c4ca4238a0b923820dcc509a6f75849b".into()),
            "another message_id",
        ),
        (
            "the proof of another leaf",
            {
                let leaf = other_proof["receipt"]["leaf"].clone();
                Box::new(move |p| p["receipt"]["leaf"] = leaf.clone())
            },
            "inclusion proof",
        ),
        (
            "a checkpoint signed by another key",
            Box::new(move |p| p["receipt"]["checkpoint"] = resigned.clone().into()),
            "not signed by the archiver's bound log key",
        ),
        (
            "a binding by another records key's custodians",
            Box::new(move |p| p["binding"] = foreign_binding.clone()),
            "not signed by this records.pub's custodians",
        ),
        (
            "the witness's cosignature removed",
            {
                let stripped = only_signatures_of(&note, &origin);
                Box::new(move |p| p["receipt"]["checkpoint"] = stripped.clone().into())
            },
            "0 of the 1 witness cosignatures",
        ),
    ];
    for (what, tamper, expected) in cases {
        let mut bad = proof.clone();
        tamper(&mut bad);
        let file = root.path().join("tampered.json");
        fs::write(&file, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
        let line = run_fails(&mut verify(&file, &records_pub));
        assert!(line.contains(expected), "{what}: {line}");
    }
    // Not a proof, or no records.pub: refused before anything is believed.
    let junk = root.path().join("junk.json");
    fs::write(&junk, "{\"version\":1}").unwrap();
    assert!(run_fails(&mut verify(&junk, &records_pub)).contains("malformed"));
    let line = run_fails(
        vellum()
            .args(["archive", "verify-receipt"])
            .arg(&proof_file),
    );
    assert!(line.contains("--records-key"), "{line}");

    // Only the sender holds a message's receipt; an unknown id is named.
    let line = bob.fails(&["receipts", "kept", &id]);
    assert!(line.contains("no archive receipt"), "{line}");
    let line = alice.fails(&["receipts", "kept", "not-an-id"]);
    assert!(line.contains("no archive receipt"), "{line}");
    // All is well: the status says so and exits 0.
    let status = String::from_utf8(alice.ok(&["status"]).stdout).unwrap();
    assert!(status.contains("1 of 1 witness cosignature"), "{status}");
    assert!(!status.contains("WARNING"), "{status}");
}

/// Copies the server's database files (the main file and, after a SIGKILL, its WAL).
fn copy_db(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for name in ["server.db", "server.db-wal", "server.db-shm"] {
        let _ = fs::remove_file(to.join(name));
        if from.join(name).exists() {
            fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

#[test]
fn issue8_after_a_server_restore_a_reused_position_is_sealed_and_members_see_the_log_go_back() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let mut archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    bob.ok(&["sync"]);
    let before = sent_id(&alice.ok(&["send", "kept", "before the backup"]));
    wait_until("the first receipt", || {
        alice.ok(&["sync"]);
        archived(&alice, "kept", &before)
    });

    let backup = root.path().join("backup");
    server.kill();
    copy_db(&server.data, &backup);
    server.restart();
    let lost = sent_id(&alice.ok(&["send", "kept", "lost in the restore"]));
    wait_until("the receipt of the message the restore loses", || {
        alice.ok(&["sync"]);
        archived(&alice, "kept", &lost)
    });
    // The checkpoint of that receipt was published before it: the next sync checks it.
    alice.ok(&["sync"]);
    let records_before = archiver.status()["records"].as_u64().unwrap();
    let position = |id: &str| {
        alice
            .json(&["history", "kept", "--json"])
            .iter()
            .find(|m| m["id"] == id)
            .and_then(|m| m["seq"].as_u64())
    };
    let reused = position(&lost).unwrap();

    // The server goes back to the backup: its chain of checkpoints ends before the one
    // alice checked last. She is told, loudly, in the chat and by `status`.
    archiver.kill();
    server.kill();
    copy_db(&backup, &server.data);
    server.restart();
    let out = alice.ok(&["sync"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("WARNING: Warning: the organisation's archive log forked or went back"),
        "{stderr}"
    );
    assert!(
        alice
            .events("kept")
            .iter()
            .any(|e| e.contains("archive log forked or went back")),
        "{:?}",
        alice.events("kept")
    );
    let line = alice.fails(&["status"]);
    assert!(line.contains("forked or went back"), "{line}");
    // An alarm has its own exit code (issue 10).
    assert_eq!(output(alice.cmd().args(["status"])).status.code(), Some(3));

    // A new message at the position the restore handed out again is sealed as a record of
    // its own (its log hash differs), beside the one that was there before.
    let after = sent_id(&alice.ok(&["send", "kept", "said at a reused position"]));
    archiver.spawn(None);
    wait_for_records(&archiver, records_before + 1);
    assert_eq!(
        position(&after),
        Some(reused),
        "the restored server reused the position"
    );
    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let search = || -> Vec<String> {
        let out = run_ok(&mut archiver.records(&["search", "", "--chat", "kept", "--json"]));
        serde_json::from_slice::<Vec<Value>>(&out.stdout)
            .unwrap()
            .into_iter()
            .filter_map(|hit| hit["text"].as_str().map(str::to_owned))
            .collect()
    };
    // (Without the log hash in its reference it would pass for the record already there,
    // and never be sealed.)
    wait_until("the record at the reused position", || {
        search().contains(&"said at a reused position".to_owned())
    });
    assert!(search().contains(&"lost in the restore".to_owned()));
}
