//! Issue 10, rich messages: replies, edits, reactions, mentions, unread counts, search, and
//! their records in the archive.

use serde_json::Value;

use crate::harness::*;
use crate::records::{records_org, wait_for_records, wait_until};

fn sent_id(out: &std::process::Output) -> String {
    last_line(out)
        .strip_prefix("sent ")
        .expect("`send` prints `sent ID`")
        .to_owned()
}

fn by_id<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
}

fn unread(device: &Device, title: &str) -> u64 {
    device
        .json(&["chat", "list", "--json"])
        .iter()
        .find(|c| c["title"] == title)
        .and_then(|c| c["unread"].as_u64())
        .expect("chat list --json has `unread`")
}

#[test]
fn issue_10_replies_edits_reactions_and_mentions_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    let first = sent_id(&alice.ok(&["send", "ops", "the figures for Q3 are in"]));
    bob.ok(&["sync"]);
    assert_eq!(unread(&bob, "ops"), 1);

    // A reply with a mention: alice sees both, and what it quotes.
    let reply = sent_id(&bob.ok(&[
        "send",
        "ops",
        "@alice which figures? cc @mallory",
        "--reply-to",
        &first,
    ]));
    let synced = alice.json(&["sync", "--json"]);
    let m = by_id(&synced, &reply);
    assert_eq!(m["kind"], "text");
    assert_eq!(m["reply_to"], first.as_str());
    assert_eq!(m["mentions"], serde_json::json!(["alice"]), "members only");
    assert_eq!(m["reactions"], serde_json::json!([]));
    let err = bob.fails(&["send", "ops", "to nothing", "--reply-to", "no-such-id"]);
    assert!(err.contains("no message no-such-id"), "{err}");

    // An edit: sync streams it as its own object; the message holds the newest text.
    alice.ok(&["edit", "ops", &first, "the figures for Q4 are in"]);
    let synced = bob.json(&["sync", "--json"]);
    let edits: Vec<&Value> = synced.iter().filter(|m| m["kind"] == "edit").collect();
    assert_eq!(edits.len(), 1, "{synced:?}");
    assert_eq!(edits[0]["target"], first.as_str());
    assert_eq!(edits[0]["text"], "the figures for Q4 are in");
    assert_eq!(edits[0]["sender"], "alice");
    let err = bob.fails(&["edit", "ops", &first, "forged"]);
    assert!(err.contains("only edit your own"), "{err}");
    // `-` reads the new text from standard input, bounded.
    let edit_from_stdin = |input: Vec<u8>| {
        use std::io::Write;
        let mut child = alice
            .cmd()
            .args(["edit", "ops", &first, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        child.wait_with_output().unwrap()
    };
    let too_long = edit_from_stdin(vec![b'x'; 16 * 1024 + 1]);
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("16384"));
    assert!(edit_from_stdin(b"the figures for Q4 are in\n".to_vec())
        .status
        .success());

    // Reactions: one per member per emoji; withdrawn with --remove.
    bob.ok(&["react", "ops", &first, "👍"]);
    bob.ok(&["react", "ops", &first, "👍"]);
    bob.ok(&["react", "ops", &first, "🎉"]);
    let synced = alice.json(&["sync", "--json"]);
    let reactions: Vec<&Value> = synced.iter().filter(|m| m["kind"] == "reaction").collect();
    assert_eq!(
        reactions.len(),
        2,
        "the repeated 👍 is not sent: {synced:?}"
    );
    assert_eq!(reactions[0]["target"], first.as_str());
    assert_eq!(reactions[0]["emoji"], "👍");
    assert!(
        alice.json(&["sync", "--json"]).is_empty(),
        "each shown once"
    );
    let err = bob.fails(&["react", "ops", &first, "two words"]);
    assert!(err.contains("one emoji"), "{err}");

    // History folds them into their message, and keeps no row of its own for them.
    let history = alice.json(&["history", "ops", "--json"]);
    assert!(history
        .iter()
        .all(|m| m["kind"] == "text" || m["kind"] == "event"));
    let m = by_id(&history, &first);
    assert_eq!(m["text"], "the figures for Q4 are in");
    assert!(m["edited_at"].as_str().is_some(), "{m}");
    assert_eq!(
        m["reactions"],
        serde_json::json!([
            {"emoji": "👍", "count": 1, "users": ["bob"]},
            {"emoji": "🎉", "count": 1, "users": ["bob"]},
        ])
    );
    bob.ok(&["react", "ops", &first, "🎉", "--remove"]);
    alice.ok(&["sync"]);
    let history = alice.json(&["history", "ops", "--json"]);
    assert_eq!(
        by_id(&history, &first)["reactions"],
        serde_json::json!([{"emoji": "👍", "count": 1, "users": ["bob"]}])
    );
    // The sender's other views agree: bob's copy was edited too.
    let bobs = bob.json(&["history", "ops", "--json"]);
    assert_eq!(by_id(&bobs, &first)["text"], "the figures for Q4 are in");

    // Text output quotes the parent; once it is deleted, says so.
    let shown = String::from_utf8(bob.ok(&["history", "ops"]).stdout).unwrap();
    assert!(
        shown.contains("↪ reply to <alice> the figures for Q4 are in"),
        "{shown}"
    );
    assert!(shown.contains("reactions: 👍 1 (bob)"), "{shown}");
    assert!(shown.contains("  - mentions @alice\n"), "{shown}");
    alice.ok(&["delete", "ops", &first]);
    bob.ok(&["sync"]);
    let shown = String::from_utf8(bob.ok(&["history", "ops"]).stdout).unwrap();
    assert!(
        shown.contains("↪ reply to (message no longer available)"),
        "{shown}"
    );
    // An edit or a reaction of a deleted message changes nothing, anywhere.
    let err = alice.fails(&["edit", "ops", &first, "too late"]);
    assert!(err.contains("no message"), "{err}");
}

#[test]
fn issue_10_unread_counts_and_search() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    alice.ok(&["chat", "create", "quiet", "--with", "bob"]);
    alice.ok(&["send", "ops", "Crossing at 0600, North gate."]);
    alice.ok(&["send", "ops", "Bring the permits"]);
    alice.ok(&["send", "quiet", "the north gate is closed on Sundays"]);
    alice.ok(&["send", "quiet", "and on holidays"]);
    bob.ok(&["sync"]);
    assert_eq!((unread(&bob, "ops"), unread(&bob, "quiet")), (2, 2));
    assert_eq!(unread(&alice, "ops"), 0, "what one wrote is read");

    // Every word, in any case, in any chat or in one.
    // (`json` flattens the one array the command prints.)
    let hits = bob.json(&["search", "GATE", "north", "--json"]);
    assert_eq!(hits.len(), 2, "{hits:?}");
    let found = bob.json(&["search", "gate", "--chat", "quiet", "--json"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["chat_title"], "quiet");
    let none = bob.ok(&["search", "gate", "tuesday", "--json"]);
    assert_eq!(String::from_utf8(none.stdout).unwrap().trim(), "[]");
    // What a search displays is read: its burn-on-read timer starts like anywhere else.
    assert_eq!((unread(&bob, "ops"), unread(&bob, "quiet")), (1, 1));
    bob.ok(&["history", "ops"]);
    assert_eq!(unread(&bob, "ops"), 0);
}

/// The archive keeps every version of an edited message and every reaction, as records of
/// their own kinds; a reply's record names its parent and mentions.
#[test]
fn issue_10_the_archive_keeps_every_version_and_every_reaction() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let archiver = records_org(&server, root.path());
    alice.ok(&["chat", "create", "kept", "--with", "bob"]);
    bob.ok(&["sync"]);
    wait_for_records(&archiver, 2); // joined, title
    let first = sent_id(&alice.ok(&["send", "kept", "version one"]));
    alice.ok(&["edit", "kept", &first, "version two"]);
    alice.ok(&["edit", "kept", &first, "version three"]);
    bob.ok(&["sync"]);
    bob.ok(&["send", "kept", "@alice agreed", "--reply-to", &first]);
    bob.ok(&["react", "kept", &first, "👍"]);
    // bob displays the chat: his read marker goes out, and is no record.
    bob.ok(&["history", "kept"]);
    assert_eq!(read_sent(&bob).len(), 1);
    wait_for_records(&archiver, 7);
    // Once the archiver consumed everything, the marker included, the count is still 7.
    wait_until("no archiver backlog", || {
        let out = run_ok(
            vellum()
                .args(["admin", "--server", &server.url, "--token-file"])
                .arg(server.token_file())
                .args(["status", "--json"]),
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["archiver_backlog"] == 0
    });
    let hits = archiver.unsealed_records(root.path(), &["share-1", "share-2"], "kept");
    use vellum_archiver::record::RecordKind;
    let of = |kind: RecordKind| -> Vec<&vellum_archiver::record::Record> {
        hits.iter()
            .map(|h| &h.record)
            .filter(|e| e.kind == kind)
            .collect()
    };
    let versions: Vec<Option<&str>> = of(RecordKind::Message)
        .iter()
        .filter(|e| e.message_id.as_deref() == Some(first.as_str()))
        .chain(of(RecordKind::Edit).iter())
        .map(|e| e.text.as_deref())
        .collect();
    assert_eq!(
        versions,
        vec![
            Some("version one"),
            Some("version two"),
            Some("version three")
        ]
    );
    assert!(of(RecordKind::Edit)
        .iter()
        .all(|e| e.target.as_deref() == Some(first.as_str()) && e.salt.is_some()));
    let reply: Vec<_> = of(RecordKind::Message)
        .into_iter()
        .filter(|e| e.sender_user == "bob")
        .collect();
    assert_eq!(reply[0].reply_to.as_deref(), Some(first.as_str()));
    assert_eq!(reply[0].mentions, vec!["alice".to_string()]);
    let reactions = of(RecordKind::Reaction);
    assert_eq!(reactions.len(), 1, "{hits:?}");
    assert_eq!(
        (reactions[0].text.as_deref(), reactions[0].target.as_deref()),
        (Some("👍"), Some(first.as_str()))
    );
    assert_eq!(
        reactions[0].version,
        vellum_archiver::record::FORMAT_VERSION
    );
    assert!(
        hits.iter()
            .all(|h| !matches!(h.record.kind, RecordKind::Unknown { .. })),
        "every kind is known, and a read marker is not archived: {hits:?}"
    );
    // The chat's records by its title include those from before it had one (issue 11):
    // its membership and title records, besides what was said.
    let said = hits
        .iter()
        .filter(|h| !matches!(h.record.kind, RecordKind::Membership | RecordKind::Title))
        .count();
    assert_eq!(said, 5, "two messages, two edits, one reaction: {hits:?}");
}

fn receipts(device: &Device, chat: &str, id: &str) -> (u64, u64) {
    let history = device.json(&["history", chat, "--json"]);
    let r = &by_id(&history, id)["receipts"];
    (
        r["delivered"].as_u64().unwrap(),
        r["read"].as_u64().unwrap(),
    )
}

fn read_sent(device: &Device) -> Vec<(String, i64, i64)> {
    let conn = rusqlite::Connection::open(device.home.join("vellum.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT group_id, seq, sent_at FROM read_sent")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Delivery counts come from the server's cursors; read counts from batched `read_up_to`
/// markers, one per chat per display, never repeated, and none where the org forbids them.
#[test]
fn issue_10_read_receipts_are_batched_markers_and_delivery_comes_from_cursors() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&["chat", "create", "ops", "--with", "bob,carol"]);
    let first = sent_id(&alice.ok(&["send", "ops", "one"]));
    let second = sent_id(&alice.ok(&["send", "ops", "two"]));
    assert_eq!(receipts(&alice, "ops", &second), (0, 0));
    bob.ok(&["sync"]);
    assert_eq!(
        receipts(&alice, "ops", &second),
        (1, 0),
        "bob's device has it"
    );
    assert!(
        read_sent(&bob).is_empty(),
        "sync displays nothing: no marker"
    );

    // bob displays the chat: one marker covers both messages.
    bob.ok(&["history", "ops"]);
    let sent = read_sent(&bob);
    assert_eq!(sent.len(), 1, "{sent:?}");
    alice.ok(&["sync"]);
    assert_eq!(receipts(&alice, "ops", &first), (1, 1));
    assert_eq!(receipts(&alice, "ops", &second), (1, 1));
    // Displaying again sends nothing new: the position is not past the last marker.
    bob.ok(&["history", "ops"]);
    assert_eq!(read_sent(&bob), sent);

    // carol's device gets them; then the org forbids read receipts: she sends none.
    carol.ok(&["sync"]);
    assert_eq!(receipts(&alice, "ops", &second), (2, 1));
    run_ok(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args(["policy", "set", "--read-receipts", "false"]),
    );
    carol.ok(&["history", "ops"]);
    assert!(read_sent(&carol).is_empty());
    alice.ok(&["sync"]);
    assert_eq!(receipts(&alice, "ops", &second), (2, 1));
}

/// What a modified client could send is judged by each receiver: an edit of someone else's
/// message, a reaction to a message that is not there, a read marker past the log.
#[test]
fn issue_10_receivers_drop_forged_edits_and_reactions() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    let first = sent_id(&alice.ok(&["send", "ops", "the original"]));
    bob.ok(&["sync"]);
    let runtime = runtime();
    runtime.block_on(async {
        let mut client = vellum_client::Client::open(&bob.home).unwrap();
        for payload in [
            vellum_wire::AppPayload::Edit {
                id: "forged-edit".into(),
                target: first.clone(),
                text: "FORGED by bob".into(),
                sent_at: 1,
                salt: None,
            },
            vellum_wire::AppPayload::Reaction {
                id: "stray-reaction".into(),
                target: "no-such-message".into(),
                emoji: "👎".into(),
                remove: false,
                sent_at: 1,
            },
            vellum_wire::AppPayload::ReadUpTo {
                seq: 1_000_000,
                sent_at: 1,
            },
        ] {
            client.send_raw("ops", payload).await.unwrap();
        }
    });
    let synced: Vec<Value> = alice
        .json(&["sync", "--json"])
        .into_iter()
        .filter(|m| m["kind"] != "event")
        .collect();
    assert!(synced.is_empty(), "nothing of it is shown: {synced:?}");
    let history = alice.json(&["history", "ops", "--json"]);
    let m = by_id(&history, &first);
    assert_eq!(m["text"], "the original");
    assert_eq!(m["edited_at"], Value::Null);
    assert_eq!(m["reactions"], serde_json::json!([]));
    // bob's marker counts as read up to the entry that carried it, never further.
    let conn = rusqlite::Connection::open(alice.home.join("vellum.db")).unwrap();
    let (marker, max_seq): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT seq FROM read_markers WHERE user = 'bob'), (SELECT last_seq FROM chats)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        marker <= max_seq && marker < 1_000_000,
        "{marker} {max_seq}"
    );
}

/// `watch` streams edits and reactions as their own objects, and what it displays sends a
/// read receipt.
#[test]
fn issue_10_watch_streams_edits_and_reactions_and_sends_read_receipts() {
    use std::io::BufReader;
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    bob.ok(&["sync"]);
    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut lines = BufReader::new(watcher.stdout.take().unwrap());
    let first = sent_id(&alice.ok(&["send", "ops", "watch this"]));
    let shown = wait_for_line(&mut lines, |l| l.contains(&first), Duration::from_secs(20));
    assert!(shown.is_some(), "watch shows the message");
    crate::records::wait_until("bob's read marker", || !read_sent(&bob).is_empty());
    alice.ok(&["edit", "ops", &first, "watch this, edited"]);
    let edit = wait_for_line(
        &mut lines,
        |l| l.contains(r#""kind":"edit""#),
        Duration::from_secs(20),
    )
    .expect("watch streams the edit");
    let edit: Value = serde_json::from_str(&edit).unwrap();
    assert_eq!(
        (edit["target"].as_str(), edit["text"].as_str()),
        (Some(first.as_str()), Some("watch this, edited"))
    );
    alice.ok(&["react", "ops", &first, "✅"]);
    let reaction = wait_for_line(
        &mut lines,
        |l| l.contains(r#""kind":"reaction""#),
        Duration::from_secs(20),
    )
    .expect("watch streams the reaction");
    let reaction: Value = serde_json::from_str(&reaction).unwrap();
    assert_eq!(reaction["emoji"], "✅");
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    alice.ok(&["sync"]);
    assert_eq!(receipts(&alice, "ops", &first), (1, 1));
}

/// Issue 10 review: sync showed a withdrawn reaction before the reaction, every edit with the
/// newest text, "disappear after 1 day" for burn-on-read turned off, and `react` accepted any
/// word as a reaction.
#[test]
fn issue_10_review_sync_keeps_log_order_and_says_what_each_event_did() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&[
        "chat",
        "create",
        "ops",
        "--with",
        "bob",
        "--expire",
        "1d",
        "--burn-on-read",
        "1h",
    ]);
    bob.ok(&["sync"]);
    let first = last_line(&alice.ok(&["send", "ops", "order test"]));
    let first = first.trim_start_matches("sent ").to_owned();
    alice.ok(&["react", "ops", &first, "👍"]);
    alice.ok(&["react", "ops", &first, "👍", "--remove"]);
    alice.ok(&["edit", "ops", &first, "second version"]);
    alice.ok(&["edit", "ops", &first, "third version"]);
    alice.ok(&["send", "ops", "after"]);
    alice.ok(&["chat", "set", "ops", "--burn-on-read", "off"]);
    let refused = alice.fails(&["react", "ops", &first, "notanemoji"]);
    assert!(refused.contains("exactly one emoji"), "{refused}");

    let shown = bob.json(&["sync", "--json"]);
    let seqs: Vec<u64> = shown.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "log order: {shown:?}");
    let reactions: Vec<bool> = shown
        .iter()
        .filter(|m| m["kind"] == "reaction")
        .map(|m| m["remove"].as_bool().unwrap())
        .collect();
    assert_eq!(reactions, [false, true], "{shown:?}");
    let edits: Vec<&Value> = shown.iter().filter(|m| m["kind"] == "edit").collect();
    assert_eq!(edits.len(), 2, "{shown:?}");
    assert_eq!(edits[0]["superseded"], true, "{:?}", edits[0]);
    assert!(
        edits[0]["text"].is_null(),
        "an earlier edit carries no newer text"
    );
    assert_eq!(edits[1]["text"], "third version");
    let timers = shown
        .iter()
        .find(|m| m["event"]["type"] == "timers_changed")
        .expect("the timer change is shown");
    assert_eq!(
        timers["text"],
        "alice set burn-on-read off (messages still disappear after 1 day)"
    );
}
