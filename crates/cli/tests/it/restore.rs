use crate::harness::*;

/// Copies the server's database files (the main file and, after a SIGKILL, its WAL).
fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["server.db", "server.db-wal", "server.db-shm"] {
        let _ = std::fs::remove_file(to.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

/// A server restored from a backup reuses log positions its clients already passed: they
/// warn loudly in the chat and process the entries at those positions instead of skipping
/// them as already seen.
#[test]
fn issue_7_a_server_restored_from_a_backup_makes_clients_warn_and_skip_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "restored", "--with", "bob"]);
    alice.ok(&["send", "restored", "before the backup"]);
    bob.ok(&["sync"]);

    let backup = root.path().join("backup");
    server.kill();
    copy_db(&server.data, &backup);
    server.restart();
    alice.ok(&["send", "restored", "lost one"]);
    alice.ok(&["send", "restored", "lost two"]);
    bob.ok(&["sync"]);
    assert!(bob.texts("restored").contains(&"lost two".to_string()));
    assert!(bob
        .events("restored")
        .iter()
        .all(|e| !e.contains("history of this chat changed")));

    // Restored: the log ends before what bob has seen, and the next send reuses a position.
    server.kill();
    copy_db(&backup, &server.data);
    server.restart();
    alice.ok(&["send", "restored", "after the restore"]);
    let out = bob.ok(&["sync"]);
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("the server's history of this chat changed"),
        "sync says so: {printed}"
    );
    let warnings: Vec<String> = bob
        .events("restored")
        .into_iter()
        .filter(|e| e.contains("restored from a backup or forked; messages may be missing"))
        .collect();
    assert_eq!(warnings.len(), 1, "one loud warning: {warnings:?}");
    assert!(
        bob.texts("restored")
            .contains(&"after the restore".to_string()),
        "the entry at a reused position is shown, not skipped: {:?}",
        bob.texts("restored")
    );
    // issue 7: the sender notices too. The server gave "after the restore" the position
    // "lost one" had, so alice's two lost messages are unconfirmed, she is warned, and her
    // next sync sends them again: the server holds them at new positions, and bob, who had
    // them, still shows each once.
    assert!(
        alice
            .events("restored")
            .iter()
            .any(|e| e.contains("no longer holds 2 of your messages")),
        "{:?}",
        alice.events("restored")
    );
    alice.ok(&["sync"]);
    let history = alice.json(&["history", "restored", "--json"]);
    let seq_of = |text: &str| {
        history
            .iter()
            .find(|m| m["text"] == text)
            .and_then(|m| m["seq"].as_u64())
            .unwrap_or_else(|| panic!("{text} has no position: {history:?}"))
    };
    let after = seq_of("after the restore");
    assert!(seq_of("lost one") > after && seq_of("lost two") > seq_of("lost one"));
    bob.ok(&["sync"]);
    for text in ["lost one", "lost two"] {
        assert_eq!(
            bob.texts("restored").iter().filter(|t| *t == text).count(),
            1,
            "{text}"
        );
    }

    // Once warned, the server's history is the one checked against: no warning per sync.
    alice.ok(&["send", "restored", "and on"]);
    bob.ok(&["sync"]);
    assert!(bob.texts("restored").contains(&"and on".to_string()));
    assert_eq!(
        bob.events("restored")
            .iter()
            .filter(|e| e.contains("history of this chat changed"))
            .count(),
        1
    );
}
