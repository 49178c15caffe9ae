//! Issue 11: legal holds with a reason and an author, checked against the org's users and
//! the archive's chats; retention schedules edited from the CLI; the audit trail.

use serde_json::Value;

use crate::harness::*;
use crate::records::{records_org, wait_for_records, wait_until};

fn json(out: std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn issue_11_holds_name_real_people_and_chats_and_say_why_and_who() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "gate-ops", "--with", "bob"]);
    alice.ok(&["send", "gate-ops", "the north gate opens at six"]);
    wait_for_records(&archiver, 3);

    // Unknown people and chats are refused by name; nothing is placed.
    let line = run_fails(&mut archiver.records(&[
        "hold",
        "create",
        "typo",
        "--custodian",
        "alcie",
        "--reason",
        "r",
    ]));
    assert!(line.contains("alcie"), "{line}");
    let line = run_fails(&mut archiver.records(&[
        "hold",
        "create",
        "typo",
        "--chat",
        "no-such-chat",
        "--reason",
        "r",
    ]));
    assert!(line.contains("no-such-chat"), "{line}");
    let line = run_fails(&mut archiver.records(&[
        "hold",
        "create",
        "typo",
        "--from",
        "last tuesday",
        "--reason",
        "r",
    ]));
    assert!(line.contains("invalid date"), "{line}");
    let holds = run_ok(&mut archiver.records(&["hold", "list", "--json"]));
    assert_eq!(String::from_utf8_lossy(&holds.stdout).trim(), "[]");

    // Several custodians, a chat by title, a plain date and an offset time.
    let created = json(run_ok(&mut archiver.records(&[
        "hold",
        "create",
        "crew-v-dhs",
        "--reason",
        "CREW v. DHS, 26-cv-1234",
        "--custodian",
        "alice",
        "--custodian",
        "bob",
        "--chat",
        "gate-ops",
        "--from",
        "2020-01-01",
        "--to",
        "2099-12-31T23:59:59-05:00",
        "--json",
    ])));
    assert_eq!(created["custodians"], serde_json::json!(["alice", "bob"]));
    // Held by id, whatever the chat is called later.
    let chat_id = alice.json(&["chat", "list", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["chats"], serde_json::json!([chat_id]));
    assert_eq!(created["reason"], "CREW v. DHS, 26-cv-1234");
    assert_eq!(created["author"], "officer");
    assert!(created["placed_at"].as_i64().unwrap() > 0);
    assert!(created.get("records").is_none(), "sealed: not counted");

    // No reason: placed, with a warning.
    let out = run_ok(&mut archiver.records(&["hold", "create", "bare", "--custodian", "bob"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no reason"),
        "{out:?}"
    );

    // Unsealed, each hold says how many records it keeps.
    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let holds: Vec<Value> = serde_json::from_value(json(run_ok(
        &mut archiver.records(&["hold", "list", "--json"]),
    )))
    .unwrap();
    let crew = holds.iter().find(|h| h["name"] == "crew-v-dhs").unwrap();
    assert!(crew["records"].as_u64().unwrap() >= 2, "{crew}");
    let text = run_ok(&mut archiver.records(&["hold", "list"]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("placed by officer"), "{text}");
    assert!(text.contains("CREW v. DHS"), "{text}");

    // Released: the trail keeps who placed and who lifted it, and why.
    run_ok(&mut archiver.records(&["hold", "release", "bare"]));
    let audit: Vec<Value> =
        serde_json::from_value(json(run_ok(&mut archiver.records(&["audit", "--json"])))).unwrap();
    let hold = audit
        .iter()
        .find(|e| e["kind"] == "hold" && e["detail"].as_str().unwrap().contains("crew-v-dhs"))
        .unwrap();
    assert!(
        hold["detail"]
            .as_str()
            .unwrap()
            .contains("officer placed hold \"crew-v-dhs\": CREW v. DHS"),
        "{hold}"
    );
    assert!(audit.iter().any(|e| e["kind"] == "release"
        && e["detail"]
            .as_str()
            .unwrap()
            .contains("officer released hold \"bare\"")));
    assert!(audit.iter().any(|e| e["action"] == "unseal"));
    // Newest first.
    let times: Vec<i64> = audit.iter().map(|e| e["time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let future: Vec<Value> = serde_json::from_value(json(run_ok(&mut archiver.records(&[
        "audit",
        "--from",
        "2099-01-01",
        "--json",
    ]))))
    .unwrap();
    assert!(future.is_empty(), "{future:?}");
    // Reading the trail is itself on it.
    let again: Vec<Value> =
        serde_json::from_value(json(run_ok(&mut archiver.records(&["audit", "--json"])))).unwrap();
    assert_eq!(again[0]["action"], "audit", "{:?}", again[0]);
}

#[test]
fn issue_11_the_office_sees_which_chats_are_transitory_and_not_archived() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    alice.ok(&[
        "chat",
        "create",
        "lunch",
        "--with",
        "bob",
        "--class",
        "transitory",
        "--expire",
        "1h",
    ]);
    alice.ok(&["send", "lunch", "the transitory words"]);
    wait_until("the transitory chat listed", || {
        let classes = json(run_ok(&mut archiver.records(&["chats", "--json"])));
        classes["transitory"]["total"] == 1
    });
    let classes = json(run_ok(&mut archiver.records(&["chats", "--json"])));
    let chat = &classes["transitory"]["chats"][0];
    assert_eq!(
        chat["members"],
        serde_json::json!(["alice", "bob"]),
        "{classes}"
    );
    assert_eq!(chat["expire_secs"], 3600);
    assert!(
        classes["record"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["title"] == "kept"),
        "{classes}"
    );
    // Metadata only: no title, no text of the transitory chat.
    let text = classes.to_string();
    assert!(
        !text.contains("lunch") && !text.contains("transitory words"),
        "{text}"
    );
}

#[test]
fn issue_11_retention_schedules_are_edited_checked_and_kept() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    let mut archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "gate-ops", "--with", "bob"]);
    alice.ok(&["send", "gate-ops", "hello"]);
    wait_for_records(&archiver, 3);

    run_ok(&mut archiver.records(&["schedule", "define", "litigation", "--keep", "10y"]));
    run_ok(&mut archiver.records(&["schedule", "define", "nara", "--keep", "permanent"]));
    run_ok(&mut archiver.records(&["schedule", "set", "--chat", "gate-ops", "litigation"]));
    run_ok(&mut archiver.records(&["schedule", "set", "--user", "alice", "nara"]));
    for (args, expect) in [
        (
            vec!["schedule", "define", "forever", "--keep", "eternity"],
            "invalid retention",
        ),
        (
            vec!["schedule", "set", "--chat", "nowhere", "nara"],
            "nowhere",
        ),
        (
            vec!["schedule", "set", "--user", "mallory", "nara"],
            "mallory",
        ),
        (
            vec!["schedule", "set", "--user", "alice", "undefined"],
            "no schedule named",
        ),
    ] {
        let line = run_fails(&mut archiver.records(&args));
        assert!(line.contains(expect), "{args:?}: {line}");
    }
    let before = json(run_ok(
        &mut archiver.records(&["schedule", "list", "--json"]),
    ));
    assert_eq!(before["schedules"]["litigation"], "10y");
    assert_eq!(before["schedules"]["nara"], Value::Null);
    assert_eq!(before["chats"]["gate-ops"], "litigation");
    assert_eq!(before["users"]["alice"], "nara");
    assert!(
        before["schedules"].get("forever").is_none(),
        "a refused change changes nothing"
    );

    // Kept across a restart (schedules.json), and every change is on the audit trail.
    archiver.kill();
    archiver.spawn(None);
    let after = json(run_ok(
        &mut archiver.records(&["schedule", "list", "--json"]),
    ));
    assert_eq!(after, before);
    let audit: Vec<Value> =
        serde_json::from_value(json(run_ok(&mut archiver.records(&["audit", "--json"])))).unwrap();
    let changes = audit.iter().filter(|e| e["action"] == "schedule").count();
    assert_eq!(changes, 4, "{audit:?}");
}

#[test]
fn issue_11_a_second_archiver_on_the_same_data_directory_is_refused() {
    // The attack review started two archivers on one DATA by accident: both appended, and the
    // log forked (checkpoints over leaves the other never saw).
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let archiver = records_org(&server, root.path());
    let line = run_fails(
        vellum()
            .args(["archiver", "--server", &server.url, "--data"])
            .arg(&archiver.data)
            .arg("--records-key")
            .arg(root.path().join("keys/records.pub"))
            .args(["--listen", "127.0.0.1:0"]),
    );
    assert!(line.contains("another archiver is running"), "{line}");
    // The first one is unharmed.
    assert_eq!(archiver.status()["sealed"], true);
}
