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
