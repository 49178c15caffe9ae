//! Issue 3: disappearing messages, delete for everyone, and proof that nothing remains.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dirs` that holds `needle`.
fn files_holding(dirs: &[&Path], needle: &str) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| files_under(d))
        .filter(|f| contains(&std::fs::read(f).unwrap_or_default(), needle.as_bytes()))
        .map(|f| f.display().to_string())
        .collect()
}

fn millis(rfc3339: &Value) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Waits for a moment on the wall clock (a timer's due time), not for an arbitrary delay.
fn wait_until(deadline: Instant) {
    if let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Polls `condition` until it holds or `within` has passed; true if it held.
fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tries every key left in the device's store on every sealed body left in it, as an
/// examiner holding the device (and the profile's keys) would. Returns what opened.
fn forensic_texts(db: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let keys: Vec<Vec<u8>> = conn
        .prepare("SELECT key FROM message_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let bodies: Vec<(String, String, Vec<u8>)> = conn
        .prepare("SELECT group_id, id, body FROM messages")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut opened = Vec::new();
    for (group_id, id, body) in &bodies {
        let aad = format!("vellum-message-v1/{group_id}/{id}");
        for key in &keys {
            if let Ok(text) = vellum_mls::at_rest::open(key, aad.as_bytes(), body) {
                opened.push(String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
    opened
}

#[test]
fn issue_3_seized_device_yields_nothing_once_messages_expire_or_burn() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let start = Instant::now();
    alice.ok(&["chat", "create", "ops", "--with", "bob", "--expire", "6s"]);
    let expiring = marker("expiring");
    let burning = marker("burning");
    let survivor = marker("survivor");
    alice.ok(&["send", "ops", &expiring]);
    alice.ok(&["send", "ops", &burning, "--burn-on-read", "1s"]);
    // Issue 10: every version of an edited message, and its reactions, go with it.
    let (original, edited) = (marker("original"), marker("edited"));
    let sent = last_line(&alice.ok(&["send", "ops", &original]));
    let edited_id = sent.trim_start_matches("sent ");
    alice.ok(&["edit", "ops", edited_id, &edited]);
    bob.ok(&["sync"]);
    bob.ok(&["react", "ops", edited_id, "🙂"]);
    alice.ok(&["sync"]);
    assert!(alice.texts("ops").contains(&edited));
    // Reading starts the burn timer on bob's device only.
    let read = bob.json(&["read", "ops", "--json"]);
    assert_eq!(read.len(), 3);
    let burnt = read.iter().find(|m| m["text"] == burning.as_str()).unwrap();
    assert!(millis(&burnt["burn_at"]) <= millis(&burnt["expires_at"]));

    // After the burn, before the expiry: only the burnt one is gone.
    assert!(eventually(Duration::from_secs(5), || !bob
        .texts("ops")
        .contains(&burning)));
    let texts = bob.texts("ops");
    assert!(
        texts.contains(&expiring) && !texts.contains(&burning),
        "{texts:?}"
    );

    // A chat whose messages never expire, so the scan below also proves it can see text.
    alice.ok(&["chat", "create", "keep", "--with", "bob"]);
    alice.ok(&["send", "keep", &survivor]);
    bob.ok(&["sync"]);

    wait_until(start + Duration::from_millis(6600));
    let shredded = bob.json(&["shred", "--json"]);
    assert!(
        shredded.iter().all(|s| s["reason"] == "expired"),
        "{shredded:?}"
    );
    alice.ok(&["shred"]);
    assert!(bob.texts("ops").is_empty());
    assert!(alice.texts("ops").is_empty());

    // The seized-device scan: every file the clients and the server wrote.
    let dirs = [
        alice.home.as_path(),
        bob.home.as_path(),
        server.data.as_path(),
        server.logs.as_path(),
    ];
    for m in [&expiring, &burning, &original, &edited] {
        assert_eq!(
            files_holding(&dirs, m),
            Vec::<String>::new(),
            "{m} survives on disk"
        );
    }
    // The examiner with the device's own keys opens only what has not expired.
    let opened = forensic_texts(&bob.home.join("vellum.db"));
    assert!(
        opened.contains(&survivor),
        "the examiner's method works: {opened:?}"
    );
    assert!(
        !opened
            .iter()
            .any(|t| [&expiring, &burning, &original, &edited].contains(&t)),
        "{opened:?}"
    );
    // Nor a reaction or an edit of them.
    let conn = rusqlite::Connection::open(bob.home.join("vellum.db")).unwrap();
    let about: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE target IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        about, 0,
        "reactions and edits are shredded with their message"
    );
    // No past-epoch MLS secrets are kept.
    let conn = rusqlite::Connection::open(bob.home.join("vellum.db")).unwrap();
    let epochs: i64 = conn
        .query_row("SELECT COUNT(*) FROM mls_epochs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(epochs, 0);
    // And the server dropped the ciphertext of both, though nobody asked it to (its purge
    // runs every 500 ms: on a loaded machine the next run may not have come yet).
    let server_db = rusqlite::Connection::open(server.data.join("server.db")).unwrap();
    let left = || -> i64 {
        server_db
            .query_row(
                "SELECT COUNT(*) FROM group_log WHERE kind = 'application' AND expires_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(5), || left() == 0),
        "expired ciphertext is purged from the server: {} left",
        left()
    );
}

#[test]
fn issue_3_timer_rules_bounds_defaults_and_overrides() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let admin = |args: &[&str]| {
        let mut cmd = vellum();
        cmd.args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args(["policy", "set"])
            .args(args);
        cmd
    };
    let line = run_fails(&mut admin(&["--allow-no-expiry", "maybe"]));
    assert!(line.contains("true or false"), "{line}");
    let line = run_fails(&mut admin(&["--max-expire", "1x"]));
    assert!(line.contains("invalid duration"), "{line}");
    run_fails(&mut admin(&[]));
    run_ok(&mut admin(&[
        "--max-expire",
        "1d",
        "--max-burn-on-read",
        "1h",
        "--allow-no-expiry",
        "false",
    ]));

    // Beyond the bounds: refused by the client with a clear line, and no chat exists.
    let line = alice.fails(&["chat", "create", "long", "--with", "bob", "--expire", "2d"]);
    assert!(
        line.contains("longer than this organisation allows"),
        "{line}"
    );
    let line = alice.fails(&["chat", "create", "burny", "--burn-on-read", "2h"]);
    assert!(line.contains("burn-on-read"), "{line}");
    assert!(alice.json(&["chat", "list", "--json"]).is_empty());

    // No timer given, but the org requires one: the org's maximum becomes the default.
    alice.ok(&["chat", "create", "team", "--with", "bob"]);
    assert_eq!(
        alice.events("team"),
        vec![
            "This chat is transitory: its messages are not kept as records",
            "alice set messages to disappear after 1 day",
            "alice added bob"
        ]
    );
    alice.ok(&["send", "team", "before the change"]);
    let line = alice.fails(&["chat", "set", "team", "--expire", "off"]);
    assert!(line.contains("requires an expiration timer"), "{line}");
    alice.ok(&["chat", "set", "team", "--expire", "12h"]);
    alice.ok(&["send", "team", "after the change"]);
    let line = alice.fails(&["send", "team", "too long", "--expire", "13h"]);
    assert!(line.contains("cannot be longer than the chat's"), "{line}");
    alice.ok(&["send", "team", "short", "--expire", "1h"]);

    bob.ok(&["sync"]);
    let events = bob.events("team");
    assert!(
        events.contains(&"alice set messages to disappear after 12 hours".to_string()),
        "{events:?}"
    );
    // Defaults apply to later messages only; overrides only shorten.
    let history = bob.json(&["history", "team", "--json"]);
    let life = |text: &str| {
        let m = history
            .iter()
            .find(|m| m["text"] == text)
            .unwrap_or_else(|| panic!("{text} missing"));
        (millis(&m["expires_at"]) - millis(&m["sent_at"])) / 1000
    };
    assert!(
        (86_390..=86_400).contains(&life("before the change")),
        "{}",
        life("before the change")
    );
    assert!((43_190..=43_200).contains(&life("after the change")));
    assert!((3_590..=3_600).contains(&life("short")));

    // Bad input changes nothing.
    for bad in ["10x", "-5s", "0s", "99999999999w", "1.5h", ""] {
        let line = alice.fails(&["chat", "set", "team", "--expire", bad]);
        assert!(line.contains("duration"), "{bad:?}: {line}");
        let line = alice.fails(&["send", "team", "nope", "--burn-on-read", bad]);
        assert!(line.contains("duration"), "{bad:?}: {line}");
    }
    assert_eq!(
        alice.texts("team"),
        vec!["before the change", "after the change", "short"]
    );
}

#[test]
fn issue_3_burn_on_read_is_per_device_and_sync_does_not_start_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let phone = Device::new_user(&server, root.path(), "bob");
    let laptop = Device::approved(&server, root.path(), "bob-laptop", "bob", &phone);
    alice.ok(&[
        "chat",
        "create",
        "pair",
        "--with",
        "bob",
        "--burn-on-read",
        "1s",
    ]);
    let secret = marker("burn");
    alice.ok(&["send", "pair", &secret]);
    let synced = phone.json(&["sync", "--json"]);
    assert!(
        synced[0]["burn_at"].is_null(),
        "sync shows it but does not start the burn"
    );
    laptop.ok(&["sync"]);
    let read = phone.json(&["read", "pair", "--json"]);
    assert_eq!(read.len(), 1);
    assert!(
        phone.json(&["read", "pair", "--json"]).is_empty(),
        "read shows only unread messages"
    );
    assert!(
        eventually(Duration::from_secs(5), || phone.texts("pair").is_empty()),
        "burnt on the phone"
    );
    // The laptop never displayed it: it is still there, and only now starts burning.
    let on_laptop = laptop.json(&["history", "pair", "--json"]);
    let m = on_laptop
        .iter()
        .find(|m| m["text"] == secret.as_str())
        .expect("still on the laptop");
    assert!(!m["burn_at"].is_null());
    assert!(eventually(Duration::from_secs(5), || laptop
        .texts("pair")
        .is_empty()));
    assert_eq!(
        files_holding(&[phone.home.as_path(), laptop.home.as_path()], &secret),
        Vec::<String>::new()
    );
}

#[test]
fn issue_3_expiry_is_enforced_offline_at_start_up_and_by_a_running_client() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&[
        "chat",
        "create",
        "brief",
        "--with",
        "bob,carol",
        "--expire",
        "2s",
    ]);
    bob.ok(&["sync"]);
    carol.ok(&["sync"]);

    // Bob's watch is running; carol's device is off.
    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    // No wait for the connection: the server wakes a new watcher at once, so it also
    // fetches what was sent before it connected.
    let mut reader = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let fleeting = marker("fleeting");
    let sent = Instant::now();
    alice.ok(&["send", "brief", &fleeting]);
    assert!(wait_for_line(
        &mut reader,
        |l| l.contains(&fleeting),
        Duration::from_secs(10)
    )
    .is_some());
    let on_disk_while_live = files_holding(&[bob.home.as_path()], &fleeting);
    assert!(
        on_disk_while_live.is_empty(),
        "sealed at rest even while live: {on_disk_while_live:?}"
    );
    // Within a second of its expiry the running client has shredded it, unprompted.
    wait_until(sent + Duration::from_millis(2000 + 1000));
    let conn = rusqlite::Connection::open_with_flags(
        bob.home.join("vellum.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE kind = 'text'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "the running client shredded the expired message");
    drop(conn);
    watcher.kill().unwrap();
    watcher.wait().unwrap();

    // Carol comes back after the expiry: nothing of it is shown, or stored.
    let new = carol.json(&["sync", "--json"]);
    assert!(
        new.iter().all(|m| m["text"] != fleeting.as_str()),
        "{new:?}"
    );
    assert!(carol.texts("brief").is_empty());
    assert_eq!(
        files_holding(&[carol.home.as_path(), server.data.as_path()], &fleeting),
        Vec::<String>::new()
    );

    // A message stored before the device went off is shredded when it starts again.
    let stale = marker("stale");
    alice.ok(&["send", "brief", &stale]);
    let synced = carol.json(&["sync", "--json"]);
    let stored = synced.iter().find(|m| m["text"] == stale.as_str()).unwrap();
    let due = Duration::from_millis(millis(&stored["expires_at"]) as u64 + 50);
    wait_until(Instant::now() + due.saturating_sub(std::time::UNIX_EPOCH.elapsed().unwrap()));
    assert!(
        carol.texts("brief").is_empty(),
        "shown nothing after start-up"
    );
    assert_eq!(
        files_holding(&[carol.home.as_path()], &stale),
        Vec::<String>::new()
    );
}

#[test]
fn issue_3_delete_for_everyone_is_for_the_sender_only() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&["chat", "create", "talk", "--with", "bob,carol"]);
    let regret = marker("regret");
    alice.ok(&["send", "talk", &regret]);
    bob.ok(&["send", "talk", "bob's own"]);
    bob.ok(&["sync"]);
    let history = bob.json(&["history", "talk", "--json"]);
    let id_of = |text: &str| {
        history.iter().find(|m| m["text"] == text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (alices, bobs) = (id_of(&regret), id_of("bob's own"));

    // Bob cannot delete alice's message, nor can alice delete bob's; nothing changes.
    let line = bob.fails(&["delete", "talk", &alices]);
    assert!(line.contains("only delete your own"), "{line}");
    let line = alice.fails(&["delete", "talk", &bobs]);
    assert!(line.contains("only delete your own"), "{line}");
    let line = alice.fails(&["delete", "talk", "no-such-id"]);
    assert!(line.contains("no message"), "{line}");
    assert!(bob.texts("talk").contains(&regret));

    alice.ok(&["delete", "talk", &alices]);
    bob.ok(&["sync"]);
    carol.ok(&["sync"]); // carol never fetched it: the server had already dropped it
    for device in [&alice, &bob, &carol] {
        assert!(!device.texts("talk").contains(&regret));
        assert_eq!(
            files_holding(&[device.home.as_path()], &regret),
            Vec::<String>::new()
        );
    }
    assert!(bob
        .events("talk")
        .contains(&"alice deleted a message".to_string()));
    assert_eq!(carol.texts("talk"), vec!["bob's own"]);
}
