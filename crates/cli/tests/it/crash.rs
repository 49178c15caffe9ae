use std::collections::HashMap;

use crate::harness::*;

/// Messages flow while the server is SIGKILLed and restarted: every send the server
/// acknowledged reaches every member exactly once; nothing acknowledged is lost.
#[test]
fn issue_2_sigkill_loses_no_acknowledged_message_and_duplicates_none() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "durable", "--with", "bob"]);
    bob.ok(&["sync"]);

    let mut acknowledged = Vec::new();
    for i in 0..24 {
        if i == 8 || i == 16 {
            server.kill();
            // While the server is down, a send fails cleanly: not acknowledged.
            let text = format!("while down {i}");
            let out = output(alice.cmd().args(["send", "durable", &text]));
            assert!(
                !out.status.success(),
                "a send cannot be acknowledged by a dead server"
            );
            server.restart();
        }
        if i % 5 == 0 {
            bob.ok(&["sync"]); // bob reads part of the way, acking as he goes
        }
        let text = format!("message {i}");
        alice.ok(&["send", "durable", &text]);
        acknowledged.push(text);
    }
    server.restart();
    bob.ok(&["sync"]);

    let texts = bob.texts("durable");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &texts {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    for text in &acknowledged {
        assert_eq!(
            counts.get(text.as_str()),
            Some(&1),
            "{text:?} must be shown exactly once; bob has {texts:?}"
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "no message twice: {texts:?}"
    );
    // The sender's own view agrees.
    let mine = alice.texts("durable");
    for text in &acknowledged {
        assert_eq!(mine.iter().filter(|t| *t == text).count(), 1);
    }
}

/// A send whose acknowledgement never arrived (the connection or the process died) stays in
/// the sender's history without a seq; the next sync sends it again under the same message
/// id, so the server stores it once whether or not the first attempt got through.
#[test]
fn issue_2_unconfirmed_sends_are_retried_and_stored_once() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "retry", "--with", "bob"]);
    bob.ok(&["sync"]);

    // The server stored this one, but pretend its acknowledgement was lost.
    alice.ok(&["send", "retry", "stored, ack lost"]);
    let db = rusqlite::Connection::open(alice.home.join("vellum.db")).unwrap();
    db.execute("UPDATE messages SET seq = NULL WHERE kind = 'text'", [])
        .unwrap();
    // And this one never reached the server at all.
    let history = alice.json(&["history", "retry", "--json"]);
    let chat = history[0]["chat"].as_str().unwrap().to_owned();
    let device = history.iter().find(|m| m["kind"] == "text").unwrap()["sender_device"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(db);
    let store = vellum_client::LocalStore::open(&alice.home).unwrap();
    store
        .add_message(&vellum_client::MessageRow {
            group_id: chat.clone(),
            id: "never-sent".into(),
            kind: vellum_client::MessageKind::Text,
            sender_user: "alice".into(),
            sender_device: device,
            sent_at: 1,
            received_at: 1,
            seq: None,
            text: "never reached the server".into(),
            expires_at: None,
            burn_secs: None,
            read_at: Some(1),
            burn_at: None,
            archived_leaf: None,
            salt: None,
            event: None,
            extra: Default::default(),
        })
        .unwrap();
    drop(store);

    alice.ok(&["sync"]);
    alice.ok(&["sync"]);
    bob.ok(&["sync"]);
    let texts = bob.texts("retry");
    assert_eq!(
        texts.iter().filter(|t| *t == "stored, ack lost").count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        texts
            .iter()
            .filter(|t| *t == "never reached the server")
            .count(),
        1,
        "{texts:?}"
    );
    let mine = alice.json(&["history", "retry", "--json"]);
    assert!(
        mine.iter()
            .filter(|m| m["kind"] == "text")
            .all(|m| m["seq"].is_u64()),
        "{mine:?}"
    );
}
