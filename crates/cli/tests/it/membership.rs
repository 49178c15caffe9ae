//! Issue 9, "membership is visible": every device added or removed is an event in `sync`,
//! `watch` and `history`, typed in `--json`, and `chat members --devices` lists each device.

use std::io::BufReader;
use std::time::Duration;

use serde_json::{json, Value};
use vellum_client::{ChatEvent, Client};

use crate::harness::*;

/// The typed events of JSON lines, in order.
fn typed(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|m| m["kind"] == "event")
        .map(|m| m["event"].clone())
        .collect()
}

/// The membership events (not notices, not timers) of a chat's history.
fn membership(device: &Device, chat: &str) -> Vec<Value> {
    typed(&device.json(&["history", chat, "--json"]))
        .into_iter()
        .filter(|e| {
            ["member_", "device_"]
                .iter()
                .any(|p| e["type"].as_str().unwrap().starts_with(p))
        })
        .collect()
}

fn device_id(device: &Device) -> String {
    Client::open(&device.home).unwrap().device_id().to_owned()
}

#[test]
fn issue_9_membership_events_are_shown() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    let dave = Device::new_user(&server, root.path(), "dave");

    alice.ok(&["chat", "create", "team", "--with", "bob,dave"]);
    // Joining by Welcome is no list of everyone already there: one notice of the chat's
    // class says bob is in a new chat (issue 10: a new chat shows in sync).
    let joined = typed(&bob.json(&["sync", "--json"]));
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0]["type"], "notice", "{joined:?}");
    dave.ok(&["sync"]);
    let mut watching = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut watched = BufReader::new(watching.stdout.take().unwrap());

    // Alice adds carol: bob's sync shows it, typed, and so does his text history.
    alice.ok(&["chat", "add", "team", "carol"]);
    let added = json!({"type": "member_added", "by": "alice", "user": "carol"});
    let line = wait_for_line(
        &mut watched,
        |l| l.contains("member_added"),
        Duration::from_secs(30),
    )
    .expect("watch shows the addition");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["event"], added, "{line}");
    watching.kill().unwrap();
    watching.wait().unwrap();
    let synced = bob.json(&["sync", "--json"]);
    assert!(
        synced.is_empty(),
        "watch processed it already, exactly once: {synced:?}"
    );
    let line = bob
        .json(&["history", "team", "--json"])
        .into_iter()
        .find(|m| m["event"] == added)
        .expect("in bob's history");
    assert_eq!(
        (&line["kind"], &line["text"], &line["sender"]),
        (
            &json!("event"),
            &json!("alice added carol"),
            &json!("alice")
        )
    );
    assert!(line["seq"].is_u64() && line["id"].is_string() && line["chat"].is_string());
    let text = String::from_utf8(bob.ok(&["history", "team"]).stdout).unwrap();
    assert!(text.contains("] team * alice added carol\n"), "{text}");

    // Alice removes dave: the members see it, and so does dave, in his last sync of the chat.
    alice.ok(&["chat", "remove", "team", "dave"]);
    let removed = json!({"type": "member_removed", "by": "alice", "user": "dave"});
    assert_eq!(typed(&bob.json(&["sync", "--json"])), vec![removed.clone()]);
    let daves = typed(&dave.json(&["sync", "--json"]));
    assert_eq!(daves, vec![added.clone(), removed.clone()]);
    assert_eq!(
        dave.events("team").last().unwrap(),
        "dave was removed by alice"
    );

    // Bob enrolls a second device; his first approves it and adds it to his chats (issue 9):
    // a device of a member, not a new member.
    let bob2 = Device::approved(&server, root.path(), "bob2", "bob", &bob);
    let bob2_id = device_id(&bob2);
    let device_added =
        json!({"type": "device_added", "by": "bob", "user": "bob", "device_id": bob2_id});
    // The library hands the typed event to its caller as well.
    let runtime = runtime();
    let rows = runtime.block_on(async {
        let mut client = Client::open(&alice.home).unwrap();
        client.sync().await.unwrap()
    });
    let events: Vec<&ChatEvent> = rows.iter().filter_map(|r| r.event.as_ref()).collect();
    // Alice's own changes, applied by the `chat create`, `chat add` and `chat remove`
    // commands, are shown by her next sync (issue 10: every event once, whichever command
    // processed it; each command used to mark the earlier ones shown unprinted), then bob's
    // new device.
    let added_by_alice = |user: &str| ChatEvent::MemberAdded {
        by: "alice".into(),
        user: user.into(),
    };
    let (bob_added, dave_added, carol_added) = (
        added_by_alice("bob"),
        added_by_alice("dave"),
        added_by_alice("carol"),
    );
    assert_eq!(
        events,
        vec![
            &bob_added,
            &dave_added,
            &carol_added,
            &ChatEvent::MemberRemoved {
                by: "alice".into(),
                user: "dave".into(),
            },
            &ChatEvent::DeviceAdded {
                by: "bob".into(),
                user: "bob".into(),
                device_id: bob2_id.clone(),
            }
        ]
    );
    assert_eq!(membership(&bob, "team").last(), Some(&device_added));

    // The committer's own history has each change once, from the chat's first commit on.
    assert_eq!(
        membership(&alice, "team"),
        vec![
            json!({"type": "member_added", "by": "alice", "user": "bob"}),
            json!({"type": "member_added", "by": "alice", "user": "dave"}),
            added.clone(),
            removed.clone(),
            device_added.clone(),
        ]
    );
    carol.ok(&["sync"]);
    assert_eq!(
        membership(&carol, "team"),
        vec![removed, device_added],
        "carol joined after her own addition"
    );

    // Every device, with its state and fingerprint.
    let devices = carol.json(&["chat", "members", "team", "--devices", "--json"]);
    let mut listed: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d["user"].as_str().unwrap().to_owned(),
                d["device"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = [
        ("alice", &alice),
        ("bob", &bob),
        ("bob", &bob2),
        ("carol", &carol),
    ]
    .iter()
    .map(|(user, d)| (user.to_string(), device_id(d)))
    .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let alice_key = Client::open(&alice.home).unwrap().signature_key();
    let alices = devices.iter().find(|d| d["user"] == "alice").unwrap();
    assert_eq!(
        alices["fingerprint"],
        vellum_client::device_fingerprint(&alice_key)
    );
    for d in &devices {
        assert_eq!(d["state"], "approved", "{d}");
        let fingerprint = d["fingerprint"].as_str().unwrap();
        let groups: Vec<&str> = fingerprint.split(' ').collect();
        assert!(
            groups.len() == 8
                && groups
                    .iter()
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit())),
            "{fingerprint}"
        );
    }
    let text =
        String::from_utf8(carol.ok(&["chat", "members", "team", "--devices"]).stdout).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("alice  ")
            && l.contains("  approved  ")
            && l.contains(alices["fingerprint"].as_str().unwrap())
            // The creator is the chat's admin (issue 10).
            && l.ends_with("(admin)")),
        "{text}"
    );
}
