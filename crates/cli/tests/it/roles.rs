//! Issue 10: chat names, roles, renames and leaving.

use crate::harness::*;

#[test]
fn issue_10_chat_names_resolve_by_prefix_and_any_case_and_list_candidates() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");

    let ops = last_line(&alice.ok(&["chat", "create", "Field Ops", "--with", "bob"]));
    // Any case, and a unique id prefix of at least four digits.
    alice.ok(&["send", "field ops", "by title"]);
    alice.ok(&["send", &ops[..6], "by prefix"]);
    assert_eq!(alice.texts("FIELD OPS"), vec!["by title", "by prefix"]);
    let line = alice.fails(&["send", &ops[..3], "too short"]);
    assert!(line.contains("no chat matches"), "{line}");
    // An unknown name suggests the close title.
    let line = alice.fails(&["history", "feild ops"]);
    assert!(line.contains("did you mean \"Field Ops\""), "{line}");
    // A duplicate title is refused in the creator's own list.
    let line = alice.fails(&["chat", "create", "field OPS"]);
    assert!(line.contains("already have a chat titled"), "{line}");

    // Carol's chat of that title (her list has none) reaches alice: her list holds two, the
    // exact case still names hers, and another case lists both candidates with their ids.
    let carol = Device::new_user(&server, root.path(), "carol");
    let carols = last_line(&carol.ok(&["chat", "create", "field ops", "--with", "alice"]));
    alice.ok(&["sync"]);
    assert_eq!(alice.texts("Field Ops"), vec!["by title", "by prefix"]);
    let line = alice.fails(&["history", "FIELD OPS"]);
    assert!(line.contains("matches 2 chats"), "{line}");
    assert!(line.contains(&format!("{ops} \"Field Ops\"")), "{line}");
    assert!(line.contains(&format!("{carols} \"field ops\"")), "{line}");

    // `chat add` of a member commits nothing and says so.
    let before = alice.events("Field Ops").len();
    let out = alice.ok(&["chat", "add", "Field Ops", "bob"]);
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("bob is already a member"), "{said}");
    assert!(!said.contains("added"), "{said}");
    alice.ok(&["sync"]);
    assert_eq!(
        alice.events("Field Ops").len(),
        before,
        "no commit, no event"
    );
}

#[test]
fn issue_10_admins_manage_the_chat_and_members_cannot() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let _carol = Device::new_user(&server, root.path(), "carol");
    let _dave = Device::new_user(&server, root.path(), "dave");

    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    bob.ok(&["sync"]);
    // The creator is the admin, and members show it.
    let members = bob.json(&["chat", "members", "ops", "--json"]);
    let role = |user: &str| {
        members
            .iter()
            .find(|m| m["user"] == user)
            .map(|m| m["role"].clone())
            .unwrap()
    };
    assert_eq!(role("alice"), "admin");
    assert!(role("bob").is_null());

    // A member may not add, remove, change timers, rename or name admins: refused locally,
    // nothing committed.
    for args in [
        &["chat", "add", "ops", "carol"][..],
        &["chat", "remove", "ops", "alice"],
        &["chat", "set", "ops", "--expire", "1d"],
        &["chat", "rename", "ops", "mine"],
        &["chat", "admins", "ops", "add", "bob"],
    ] {
        let line = bob.fails(args);
        assert!(
            line.contains("only the chat's admins (alice)"),
            "{args:?}: {line}"
        );
    }
    assert_eq!(bob.members("ops"), vec!["alice", "bob"]);

    // The admin renames: every member sees the new title as a typed event.
    alice.ok(&["chat", "rename", "ops", "Field Ops"]);
    let shown = bob.json(&["sync", "--json"]);
    assert!(
        shown.iter().any(|m| m["event"]["type"] == "title_changed"
            && m["event"]["title"] == "Field Ops"
            && m["event"]["by"] == "alice"),
        "{shown:?}"
    );
    bob.ok(&["send", "field ops", "renamed"]);

    // The admin names bob an admin: now bob manages.
    alice.ok(&["chat", "admins", "field ops", "add", "bob"]);
    let shown = bob.json(&["sync", "--json"]);
    assert!(
        shown
            .iter()
            .any(|m| m["event"]["type"] == "admin_added" && m["event"]["user"] == "bob"),
        "{shown:?}"
    );
    bob.ok(&["chat", "add", "field ops", "carol"]);
    alice.ok(&["chat", "admins", "field ops", "remove", "bob"]);
    let line = bob.fails(&["chat", "add", "field ops", "dave"]);
    assert!(line.contains("only the chat's admins"), "{line}");
    // The last admin stays.
    let line = alice.fails(&["chat", "admins", "field ops", "remove", "alice"]);
    assert!(line.contains("at least one admin"), "{line}");
    // Read receipts are a setting of admins.
    alice.ok(&["chat", "set", "field ops", "--read-receipts", "off"]);
    let shown = bob.json(&["sync", "--json"]);
    assert!(
        shown
            .iter()
            .any(|m| m["event"]["type"] == "settings_changed"
                && m["event"]["read_receipts"] == false),
        "{shown:?}"
    );
    let line = bob.fails(&["chat", "set", "field ops", "--read-receipts", "on"]);
    assert!(line.contains("only the chat's admins"), "{line}");
}

/// A member who is no admin approves a second device: the approval adds it to every chat the
/// user is in (a member may add its own user's devices), and it reads what follows.
#[test]
fn issue_10_second_device_joins_existing_chats() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "one", "--with", "bob"]);
    alice.ok(&["chat", "create", "two", "--with", "bob"]);
    bob.ok(&["sync"]);

    let laptop = Device::approved(&server, root.path(), "bob-laptop", "bob", &bob);
    alice.ok(&["send", "one", "to the laptop too"]);
    alice.ok(&["send", "two", "here as well"]);
    laptop.ok(&["sync"]);
    assert_eq!(laptop.texts("one"), vec!["to the laptop too"]);
    assert_eq!(laptop.texts("two"), vec!["here as well"]);
    let devices = alice.json(&["chat", "members", "one", "--json"]);
    assert_eq!(
        devices.iter().filter(|m| m["user"] == "bob").count(),
        2,
        "{devices:?}"
    );
    // Alice sees bob's new device come, as bob's own doing.
    alice.ok(&["sync"]);
    assert!(
        alice
            .events("one")
            .iter()
            .any(|e| e.starts_with("bob added a device")),
        "{:?}",
        alice.events("one")
    );
}

/// A member (no admin) leaves: its proposal cuts it off at once, another member's device
/// commits it at its next sync, and everyone sees "carol left".
#[test]
fn issue_10_a_member_leaves_and_another_member_commits_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    let laptop = Device::approved(&server, root.path(), "carol-laptop", "carol", &carol);
    alice.ok(&["chat", "create", "ops", "--with", "bob,carol"]);
    bob.ok(&["sync"]);
    laptop.ok(&["sync"]);
    carol.ok(&["send", "ops", "bye all"]);

    let out = carol.ok(&["chat", "leave", "ops"]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("left the chat"));
    let line = carol.fails(&["send", "ops", "still here?"]);
    assert!(line.contains("no longer a member"), "{line}");
    assert!(carol.events("ops").contains(&"carol left".to_string()));
    let line = carol.fails(&["chat", "members", "ops"]);
    assert!(line.contains("no longer a member"), "{line}");

    // Bob's next sync commits her leaving, both her devices (bob is no admin).
    let shown = bob.json(&["sync", "--json"]);
    assert!(shown.iter().any(|m| m["text"] == "bye all"), "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|m| m["event"]["type"] == "member_left" && m["event"]["user"] == "carol"),
        "{shown:?}"
    );
    alice.ok(&["send", "ops", "after carol left"]);
    assert!(alice.events("ops").contains(&"carol left".to_string()));
    assert_eq!(alice.members("ops"), vec!["alice", "bob"]);
    assert_eq!(bob.members("ops"), vec!["alice", "bob"]);
    let devices = alice.json(&["chat", "members", "ops", "--json"]);
    assert_eq!(
        devices.len(),
        2,
        "both of carol's devices are out: {devices:?}"
    );
    alice.ok(&["send", "ops", "after the commit"]);
    carol.ok(&["sync"]);
    let texts = carol.texts("ops");
    assert!(!texts.iter().any(|t| t.starts_with("after")), "{texts:?}");
    // Leaving twice: refused, nothing sent.
    let line = carol.fails(&["chat", "leave", "ops"]);
    assert!(line.contains("no longer a member"), "{line}");
    // Her laptop left with her: it learns so from her proposals, and reads nothing after.
    laptop.ok(&["sync"]);
    assert!(laptop.events("ops").contains(&"carol left".to_string()));
    let line = laptop.fails(&["send", "ops", "from the laptop"]);
    assert!(line.contains("no longer a member"), "{line}");
    assert!(!laptop.texts("ops").iter().any(|t| t.starts_with("after")));
}

/// In a record chat the archiver commits a member's leaving too: here before the only other
/// member syncs again.
#[test]
fn issue_10_in_a_record_chat_the_archiver_commits_a_leave() {
    use crate::records::{records_org, wait_for_records};
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    bob.ok(&["sync"]);
    wait_for_records(&archiver, 2); // joined, title
                                    // A role change is a record too.
    alice.ok(&["chat", "admins", "kept", "add", "bob"]);
    wait_for_records(&archiver, 3);
    let before = archiver.status()["records"].as_u64().unwrap();

    bob.ok(&["chat", "leave", "kept"]);
    // The archiver's commit of the leave is archived as a membership record.
    wait_for_records(&archiver, before + 1);
    alice.ok(&["sync"]);
    assert!(alice.events("kept").contains(&"bob left".to_string()));
    let members = alice.members("kept");
    assert_eq!(members, vec!["alice", "records"], "{members:?}");
    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let hits = archiver.search("made bob an admin");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(
        hits[0].to_string().contains("alice made bob an admin"),
        "{:?}",
        hits[0]
    );
}

/// Issue 10 review: a removed admin kept the role and had it back, unannounced, when re-added;
/// a chat whose only admin left could never be managed again.
#[test]
fn issue_10_review_removal_ends_the_admin_role_and_a_chat_without_admins_is_managed_by_all() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&["chat", "create", "adm", "--with", "bob,carol"]);
    alice.ok(&["chat", "admins", "adm", "add", "carol"]);
    alice.ok(&["chat", "remove", "adm", "carol"]);
    alice.ok(&["chat", "add", "adm", "carol"]);
    carol.ok(&["sync"]);
    let refused = carol.fails(&["chat", "rename", "adm", "carol-owned"]);
    assert!(
        refused.contains("only the chat's admins (alice)"),
        "{refused}"
    );

    // Removing oneself without another device is no way to leave; the devices list names
    // the admin like the members list does.
    let refused = bob.fails(&["chat", "remove", "adm", "bob"]);
    assert!(refused.contains("vellum chat leave"), "{refused}");
    let devices = bob.json(&["chat", "members", "adm", "--devices", "--json"]);
    let role = |user: &str| {
        devices
            .iter()
            .find(|d| d["user"] == user)
            .map(|d| d["role"].clone())
    };
    assert_eq!(
        role("alice"),
        Some(serde_json::json!("admin")),
        "{devices:?}"
    );
    assert_eq!(role("carol"), Some(serde_json::Value::Null), "{devices:?}");

    // The only admin leaves: every member may manage the chat from then on.
    alice.ok(&["chat", "leave", "adm"]);
    bob.ok(&["sync"]);
    assert!(!bob.members("adm").contains(&"alice".to_owned()));
    // She gave the role up in a commit everyone sees, before her leave.
    let events = bob.events("adm");
    assert!(
        events
            .iter()
            .any(|e| e == "alice set every member to manage the chat"),
        "{events:?}"
    );
    bob.ok(&["chat", "rename", "adm", "still managed"]);
    carol.ok(&["sync"]);
    let chats = carol.json(&["chat", "list", "--json"]);
    assert!(
        chats.iter().any(|c| c["title"] == "still managed"),
        "{chats:?}"
    );
}
