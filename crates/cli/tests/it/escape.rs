//! Issue 8, "no chat escapes": transitory chats convert once the org requires records, and
//! a legal hold on a person suspends the disappearing timers of that person's transitory
//! chats.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::harness::*;
use crate::records::{records_org, wait_for_records, wait_until};

const CONVERTED: &str = "This chat is now kept as a record by the organisation";
const NOT_ARCHIVED: &str = "messages from before the conversion were not archived";
const HELD: &str = "Disappearing timers are suspended by a legal hold";
const RELEASED: &str = "The legal hold was released";

fn admin(server: &Server, args: &[&str]) -> std::process::Output {
    run_ok(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args(args),
    )
}

fn admin_status(server: &Server) -> serde_json::Value {
    serde_json::from_slice(&admin(server, &["status", "--json"]).stdout).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Issue 8: after `policy set --default-class record --allow-transitory false`, a
/// transitory chat created before kept taking messages the archive never saw, and `admin
/// status` did not mention it. Now `admin status` lists it, a member's send converts it
/// (the archiver joins), every member sees the conversion before they send, and what is
/// said from then on is archived.
#[test]
fn issue8_a_transitory_chat_converts_once_the_org_requires_records() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    let old = last_line(&alice.ok(&[
        "chat",
        "create",
        "old",
        "--with",
        "bob",
        "--class",
        "transitory",
    ]));
    let quiet = last_line(&alice.ok(&[
        "chat",
        "create",
        "quiet",
        "--with",
        "bob",
        "--class",
        "transitory",
    ]));
    let before = marker("before");
    alice.ok(&["send", "old", &before]);
    bob.ok(&["sync"]);
    assert!(admin_status(&server)["noncompliant_chats"]
        .as_array()
        .unwrap()
        .is_empty());

    admin(
        &server,
        &[
            "policy",
            "set",
            "--default-class",
            "record",
            "--allow-transitory",
            "false",
        ],
    );
    let status = admin_status(&server);
    assert_eq!(status["noncompliant_chat_count"], 2, "{status}");
    let mut listed: Vec<&str> = status["noncompliant_chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    listed.sort();
    let mut want = vec![old.as_str(), quiet.as_str()];
    want.sort();
    assert_eq!(listed, want);
    let shown = String::from_utf8(admin(&server, &["status"]).stdout).unwrap();
    assert!(
        shown.contains(&format!("  {old}")) && shown.contains("not compliant"),
        "{shown}"
    );

    // bob's send is refused by the server, and his device converts the chat, then sends.
    let after = marker("after");
    bob.ok(&["send", "old", &after]);
    let chats = bob.json(&["chat", "list", "--json"]);
    let old_chat = chats.iter().find(|c| c["title"] == "old").unwrap();
    assert_eq!(old_chat["class"], "record");
    assert!(bob.members("old").contains(&"records".to_string()));
    // alice sees the conversion (and its note) before anything she sends, then sends.
    alice.ok(&["sync"]);
    let history = alice.json(&["history", "old", "--json"]);
    let position = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        history
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{history:?}"))
    };
    let event = position(&|m| {
        m["kind"] == "event"
            && m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(CONVERTED) && t.contains(NOT_ARCHIVED))
    });
    let bobs = position(&|m| m["text"] == after.as_str());
    assert!(event < bobs, "the conversion comes first: {history:?}");
    assert!(bob
        .events("old")
        .iter()
        .any(|e| e.starts_with(CONVERTED) && e.contains("converted by bob")));
    let alices = marker("alice-after");
    alice.ok(&["send", "old", &alices]);

    // A commit converts too: changing timers in the other chat makes it a record chat first.
    alice.ok(&["chat", "set", "quiet", "--expire", "1h"]);
    let events = alice.events("quiet");
    assert!(
        events.iter().any(|e| e.starts_with(CONVERTED)),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e == "alice set messages to disappear after 1 hour"));
    let status = admin_status(&server);
    assert_eq!(status["noncompliant_chat_count"], 0, "{status}");

    // The archive holds what was said after the conversion, and nothing from before.
    // (per chat: joining, the title; "old": two messages)
    wait_for_records(&archiver, 6);
    for share in ["share-1", "share-2"] {
        run_ok(
            vellum()
                .args(["records", "--archiver", &archiver.url, "--token-file"])
                .arg(archiver.data.join("records-token"))
                .args(["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let search = |what: &str| -> Vec<serde_json::Value> {
        let out = run_ok(
            vellum()
                .args(["records", "--archiver", &archiver.url, "--token-file"])
                .arg(archiver.data.join("records-token"))
                .args(["search", what, "--json"]),
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    assert_eq!(search(&after)[0]["sender"], "bob");
    assert_eq!(search(&alices)[0]["sender"], "alice");
    assert!(
        search(&before).is_empty(),
        "said before the conversion: never archived"
    );
}

/// Issue 8: a legal hold on a person suspends the disappearing timers of that person's
/// transitory chats on every member's device (and the server), shows it to the members,
/// and the timers run again once the hold is released.
#[test]
fn issue8_a_hold_on_a_person_suspends_timers_in_their_transitory_chats() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    let archiver = records_org(&server, root.path());
    for (title, with) in [("banter", "bob"), ("aside", "carol")] {
        alice.ok(&[
            "chat",
            "create",
            title,
            "--with",
            with,
            "--class",
            "transitory",
            "--expire",
            "2s",
        ]);
    }
    let records = |args: &[&str]| {
        run_ok(
            vellum()
                .args(["records", "--archiver", &archiver.url, "--token-file"])
                .arg(archiver.data.join("records-token"))
                .args(args),
        )
    };
    records(&["hold", "create", "case-17", "--custodian", "bob"]);
    // The archiver tells the server; members' devices learn it at their next sync.
    wait_until("bob's device to show the hold", || {
        bob.ok(&["sync"]);
        bob.events("banter").iter().any(|e| e.starts_with(HELD))
    });
    alice.ok(&["sync"]);
    assert!(alice.events("banter").iter().any(|e| e.starts_with(HELD)));
    assert!(
        !alice.events("aside").iter().any(|e| e.starts_with(HELD)),
        "carol is not under hold"
    );
    let listed = alice.json(&["chat", "list", "--json"]);
    let held = |title: &str| listed.iter().find(|c| c["title"] == title).unwrap()["held"].clone();
    assert_eq!((held("banter"), held("aside")), (true.into(), false.into()));

    alice.ok(&["send", "banter", "kept by the hold"]);
    alice.ok(&["send", "aside", "not kept"]);
    // A chat the held person joins in the same sync as its first message (review finding:
    // the hold was applied before that sync's joins, so this message expired on bob's device).
    alice.ok(&[
        "chat",
        "create",
        "fresh",
        "--with",
        "bob",
        "--class",
        "transitory",
        "--expire",
        "2s",
    ]);
    alice.ok(&["send", "fresh", "kept for bob"]);
    bob.ok(&["sync"]);
    carol.ok(&["sync"]);
    let expires_at = bob
        .json(&["history", "banter", "--json"])
        .iter()
        .find(|m| m["text"] == "kept by the hold")
        .and_then(|m| m["expires_at"].as_str().map(str::to_owned))
        .expect("an expiry time");
    let expires_at = humantime::parse_rfc3339(&expires_at).unwrap();
    let due = expires_at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    wait_until("the message's expiry to pass", || now_ms() > due + 200);
    for device in [&alice, &bob, &carol] {
        device.ok(&["shred"]);
        device.ok(&["sync"]);
    }
    assert_eq!(bob.texts("banter"), vec!["kept by the hold"]);
    assert_eq!(bob.texts("fresh"), vec!["kept for bob"]);
    assert_eq!(alice.texts("banter"), vec!["kept by the hold"]);
    assert!(
        carol.texts("aside").is_empty(),
        "timers run where nobody is held"
    );
    assert!(alice.texts("aside").is_empty());

    records(&["hold", "release", "case-17"]);
    wait_until("bob's device to see the release and shred", || {
        bob.ok(&["sync"]);
        bob.events("banter").iter().any(|e| e.starts_with(RELEASED))
            && bob.texts("banter").is_empty()
    });
    alice.ok(&["sync"]);
    assert!(alice.texts("banter").is_empty(), "the timers ran again");
}
