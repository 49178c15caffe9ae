use std::io::BufReader;
use std::time::Duration;

use crate::harness::*;

#[test]
fn issue_2_group_chat_end_to_end_over_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");

    let out = alice.ok(&["chat", "create", "field-ops", "--with", "bob,carol"]);
    let chat = last_line(&out);
    assert_eq!(
        chat.len(),
        64,
        "the chat id alone on the last line: {chat:?}"
    );

    alice.ok(&["send", "field-ops", "hello from alice"]);
    let got = bob.json(&["sync", "--json"]);
    // The new chat's notice (issue 10: a new chat shows in sync), then the message.
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["kind"], "event", "{got:?}");
    let m = &got[1];
    assert_eq!(m["text"], "hello from alice");
    assert_eq!(m["sender"], "alice");
    assert_eq!(m["chat"], chat.as_str());
    assert_eq!(m["chat_title"], "field-ops");
    assert!(m["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        m["sent_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "{m}"
    );
    // A second sync shows nothing new: exactly once.
    assert!(bob.json(&["sync", "--json"]).is_empty());

    bob.ok(&["send", &chat, "bob here"]);
    // VELLUM_HOME stands in for --home.
    run_ok(vellum().env("VELLUM_HOME", &carol.home).args(["sync"]));
    carol.ok(&["send", "field-ops", "carol here"]);
    alice.ok(&["sync"]);
    bob.ok(&["sync"]);
    for device in [&alice, &bob, &carol] {
        assert_eq!(
            device.texts("field-ops"),
            vec!["hello from alice", "bob here", "carol here"]
        );
        assert_eq!(device.members("field-ops"), vec!["alice", "bob", "carol"]);
    }
    let chats = alice.json(&["chat", "list", "--json"]);
    assert_eq!(chats.len(), 1);
    assert_eq!(
        (chats[0]["id"].as_str(), chats[0]["title"].as_str()),
        (Some(chat.as_str()), Some("field-ops"))
    );

    // Remove carol: she sees her removal, and nothing sent after it.
    alice.ok(&["chat", "remove", "field-ops", "carol"]);
    alice.ok(&["send", "field-ops", "after carol left"]);
    bob.ok(&["sync"]);
    // Her last sync of the chat shows her removal (issue 9), and nothing after it.
    let removal = carol.json(&["sync", "--json"]);
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert_eq!(removal[0]["text"], "carol was removed by alice");
    assert_eq!(bob.texts("field-ops").last().unwrap(), "after carol left");
    assert!(!carol
        .texts("field-ops")
        .contains(&"after carol left".to_string()));
    assert_eq!(alice.members("field-ops"), vec!["alice", "bob"]);
    assert_eq!(bob.members("field-ops"), vec!["alice", "bob"]);
    let line = carol.fails(&["send", "field-ops", "let me back in"]);
    assert!(line.contains("no longer a member"), "{line}");

    // Add carol back later: she joins the new epoch and reads only what follows.
    alice.ok(&["chat", "add", "field-ops", "carol"]);
    alice.ok(&["send", "field-ops", "welcome back"]);
    carol.ok(&["sync"]);
    let texts = carol.texts("field-ops");
    assert_eq!(texts.last().unwrap(), "welcome back");
    assert!(!texts.contains(&"after carol left".to_string()));
}

#[test]
fn issue_2_bad_input_gets_one_clear_error_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let code = server.add_user("alice");
    let alice = Device::enroll(&server, root.path(), "alice", "alice", &code);

    // The same code again, for a new profile: refused.
    let line = run_fails(vellum().arg("--home").arg(root.path().join("again")).args([
        "enroll",
        "--server",
        &server.url,
        "--user",
        "alice",
        "--code",
        &code,
    ]));
    assert!(line.contains("enrollment code"), "{line}");
    // Re-enrolling an enrolled profile is refused locally.
    let line = alice.fails(&[
        "enroll",
        "--server",
        &server.url,
        "--user",
        "alice",
        "--code",
        "whatever",
    ]);
    assert!(line.contains("already"), "{line}");
    // A chat with an unknown user is not created.
    let line = alice.fails(&["chat", "create", "nope", "--with", "nobody"]);
    assert!(line.contains("nobody"), "{line}");
    assert!(alice
        .json(&["chat", "list", "--json"])
        .iter()
        .all(|c| c["title"] != "nope"));
    // Unknown chats, empty text, missing profile, bad URL, bad token.
    let line = alice.fails(&["send", "no-such-chat", "hi"]);
    assert!(line.contains("no chat matches"), "{line}");
    alice.ok(&["chat", "create", "solo"]);
    let line = alice.fails(&["send", "solo", ""]);
    assert!(line.contains("empty"), "{line}");
    let line = alice.fails(&["history", "no-such-chat"]);
    assert!(line.contains("no chat matches"), "{line}");
    // Without --home or VELLUM_HOME: the default profile directory, named in the error.
    let line = run_fails(
        vellum()
            .env("XDG_DATA_HOME", root.path().join("no-profile-here"))
            .args(["sync"]),
    );
    assert!(line.contains("no-profile-here/vellum"), "{line}");
    let line = run_fails(
        vellum()
            .arg("--home")
            .arg(root.path().join("empty"))
            .args(["sync"]),
    );
    assert!(line.contains("enroll"), "{line}");
    let line = run_fails(vellum().arg("--home").arg(root.path().join("x")).args([
        "enroll",
        "--server",
        "ftp://host",
        "--user",
        "a",
        "--code",
        "b",
    ]));
    assert!(line.contains("http"), "{line}");
    let bad_token = root.path().join("bad-token");
    std::fs::write(&bad_token, "not-the-token").unwrap();
    let line = run_fails(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(&bad_token)
            .args(["user", "add", "mallory"]),
    );
    assert!(line.contains("admin token"), "{line}");
    let line = run_fails(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args(["user", "add", "Bad Name"]),
    );
    assert!(line.contains("user names"), "{line}");
    // A second chat with a title one already has is refused (issue 10), whatever the case.
    let first = last_line(&alice.ok(&["chat", "create", "twin"]));
    let line = alice.fails(&["chat", "create", "TWIN"]);
    assert!(line.contains("already have a chat titled"), "{line}");
    alice.ok(&["send", "Twin", "hi"]);
    alice.ok(&["send", &first, "hi"]);
}

#[test]
fn issue_2_every_device_of_a_user_is_a_member() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob_phone = Device::new_user(&server, root.path(), "bob");
    let bob_laptop = Device::approved(&server, root.path(), "bob-laptop", "bob", &bob_phone);

    alice.ok(&["chat", "create", "pair", "--with", "bob"]);
    alice.ok(&["send", "pair", "to both of bob's devices"]);
    bob_phone.ok(&["sync"]);
    bob_laptop.ok(&["sync"]);
    assert_eq!(bob_phone.texts("pair"), vec!["to both of bob's devices"]);
    assert_eq!(bob_laptop.texts("pair"), vec!["to both of bob's devices"]);
    assert_eq!(
        alice.json(&["chat", "members", "pair", "--json"]).len(),
        3,
        "three leaves: alice, bob x2"
    );

    // What one of bob's devices sends, the other sees.
    bob_laptop.ok(&["send", "pair", "from the laptop"]);
    bob_phone.ok(&["sync"]);
    alice.ok(&["sync"]);
    assert_eq!(bob_phone.texts("pair").last().unwrap(), "from the laptop");
    assert_eq!(alice.texts("pair").last().unwrap(), "from the laptop");
}

#[test]
fn issue_2_concurrent_commits_lose_the_race_and_rebase_by_themselves() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let users: Vec<Device> = ["dave", "erin", "frank", "grace"]
        .iter()
        .map(|u| Device::new_user(&server, root.path(), u))
        .collect();
    alice.ok(&["chat", "create", "race", "--with", "bob"]);
    // Both manage the chat (issue 10: members are added by admins).
    alice.ok(&["chat", "admins", "race", "add", "bob"]);
    bob.ok(&["sync"]);

    // Four membership changes at once from two members: every one lands, in some order.
    let mut children: Vec<_> = [
        ("alice", "dave"),
        ("bob", "erin"),
        ("alice", "frank"),
        ("bob", "grace"),
    ]
    .iter()
    .map(|(who, whom)| {
        let device = if *who == "alice" { &alice } else { &bob };
        device
            .cmd()
            .args(["chat", "add", "race", whom])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    })
    .collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let everyone = vec!["alice", "bob", "dave", "erin", "frank", "grace"];
    for device in [&alice, &bob].into_iter().chain(users.iter()) {
        device.ok(&["sync"]);
        assert_eq!(device.members("race"), everyone);
    }
    alice.ok(&["send", "race", "all here"]);
    for device in users.iter() {
        device.ok(&["sync"]);
        assert_eq!(device.texts("race"), vec!["all here"]);
    }
}

#[test]
fn issue_2_watch_streams_new_messages() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "live", "--with", "bob"]);
    bob.ok(&["sync"]);

    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut reader = BufReader::new(watcher.stdout.take().unwrap());
    // No wait for the connection: the server wakes a new watcher at once, so it also
    // fetches what was sent before it connected.
    alice.ok(&["send", "live", "first live message"]);
    let first = wait_for_line(
        &mut reader,
        |l| l.contains("first live message"),
        Duration::from_secs(20),
    );
    alice.ok(&["send", "live", "second live message"]);
    let second = wait_for_line(
        &mut reader,
        |l| l.contains("second live message"),
        Duration::from_secs(20),
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let first: serde_json::Value =
        serde_json::from_str(&first.expect("watch printed the first message")).unwrap();
    assert_eq!(first["sender"], "alice");
    assert!(second.is_some(), "watch printed the second message");
}

/// Regression (review of issue 2): a member that commits while others send must not skip the
/// messages the log holds before its commit.
#[test]
fn issue_2_committer_keeps_messages_sent_during_its_commits() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "busy", "--with", "bob"]);
    bob.ok(&["sync"]);
    // Bob sends as fast as the library allows, so that his messages land between alice's
    // catch-up and her commits.
    let bob_home = bob.home.clone();
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still_sending = sending.clone();
    let sender = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let mut bob = vellum_client::Client::open(&bob_home).unwrap();
            let mut sent = 0;
            while still_sending.load(std::sync::atomic::Ordering::Relaxed) || sent < 20 {
                match bob.send("busy", &format!("from bob {sent}")).await {
                    Ok(_) => sent += 1,
                    Err(vellum_client::Error::Invalid(_)) => {} // too busy: try again
                    Err(e) => panic!("{e}"),
                }
            }
            sent
        })
    });
    for i in 0..10 {
        let timer = if i % 2 == 0 { "1d" } else { "2d" };
        alice.ok(&["chat", "set", "busy", "--expire", timer]);
    }
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    alice.ok(&["sync"]);
    let texts = alice.texts("busy");
    for i in 0..sent {
        assert!(
            texts.contains(&format!("from bob {i}")),
            "alice lost bob's message {i} of {sent}"
        );
    }
}
