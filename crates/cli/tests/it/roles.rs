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
