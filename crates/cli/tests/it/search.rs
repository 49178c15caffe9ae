//! Issue 11: the records search — a full-text index in memory while unsealed, filters for
//! "all messages between alice and bob mentioning gate in November", and no searched word
//! on disk.

use std::fs;

use serde_json::Value;

use crate::harness::*;
use crate::records::{records_org, wait_until, Archiver};

/// A word of letters and digits only (one term of the index) that appears nowhere by chance.
fn word(tag: &str) -> String {
    marker(tag).replace('-', "")
}

/// `records search … --json`: the hits.
fn search(archiver: &Archiver, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run_ok(&mut archiver.records(&all));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn texts(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Yesterday and tomorrow as plain dates: today in any office time zone lies between.
fn around_today() -> (String, String) {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    (
        today.yesterday().unwrap().to_string(),
        today.tomorrow().unwrap().to_string(),
    )
}

/// Every file under `dir` that holds `word` as it was written, in lower or in upper case.
fn files_holding(dir: &std::path::Path, word: &str) -> Vec<String> {
    let forms = [word.to_owned(), word.to_lowercase(), word.to_uppercase()];
    files_under(dir)
        .into_iter()
        .filter(|file| {
            let bytes = fs::read(file).unwrap_or_default();
            forms
                .iter()
                .any(|f| bytes.windows(f.len()).any(|w| w == f.as_bytes()))
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn issue_11_between_alice_and_bob_mentioning_gate_with_filters_context_and_no_word_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let carol = Device::new_user(&server, root.path(), "carol");
    let archiver = records_org(&server, root.path());
    let secret = word("Gatesecret");

    alice.ok(&["chat", "create", "gatehouse", "--with", "bob"]);
    alice.ok(&["chat", "create", "garden", "--with", "carol"]);
    bob.ok(&["sync"]);
    carol.ok(&["sync"]);
    alice.ok(&[
        "send",
        "gatehouse",
        &format!("meet at the north gate {secret}"),
    ]);
    bob.ok(&["sync"]);
    bob.ok(&["send", "gatehouse", &format!("which gate? {secret}")]);
    alice.ok(&["sync"]);
    alice.ok(&["send", "gatehouse", "lunch first"]);
    carol.ok(&["send", "garden", &format!("the Gate is locked {secret}")]);

    // Sealed: no index, so nothing to answer with; a malformed request is still named.
    assert!(run_fails(&mut archiver.records(&["search", "gate"])).contains("sealed"));
    let line = run_fails(&mut archiver.records(&["search", "gate", "--from", "last week"]));
    assert!(line.contains("RFC 3339"), "{line}");
    assert!(archiver.status().get("index").is_none());

    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    wait_until("the four messages archived and indexed", || {
        search(&archiver, &[&secret]).len() == 3 && search(&archiver, &["lunch"]).len() == 1
    });
    let (yesterday, tomorrow) = around_today();
    // "All messages between alice and bob mentioning gate" this month-ish: carol's (garden,
    // without bob) is not between them.
    let between = search(
        &archiver,
        &[
            "gate",
            "--participant",
            "alice",
            "--participant",
            "bob",
            "--from",
            &yesterday,
            "--to",
            &tomorrow,
            "--context",
            "1",
        ],
    );
    assert_eq!(
        texts(&between),
        vec![
            format!("meet at the north gate {secret}"),
            format!("which gate? {secret}")
        ]
    );
    assert!(between.iter().all(|h| h["chat_title"] == "gatehouse"));
    // The conversation around bob's reply: alice before it, alice's "lunch first" after.
    let around: Vec<String> = texts(between[1]["context"].as_array().unwrap());
    assert_eq!(
        around,
        vec![
            format!("meet at the north gate {secret}"),
            "lunch first".into()
        ]
    );
    // Case-insensitive; a phrase keeps its order; a prefix; the boolean operators.
    assert_eq!(search(&archiver, &[&secret.to_uppercase()]).len(), 3);
    assert_eq!(search(&archiver, &["\"north gate\""]).len(), 1);
    assert!(search(&archiver, &["\"gate north\""]).is_empty());
    assert_eq!(search(&archiver, &["gat*", "--kind", "message"]).len(), 3);
    assert_eq!(
        texts(&search(&archiver, &["gate -north NOT locked"])),
        vec![format!("which gate? {secret}")]
    );
    assert_eq!(search(&archiver, &["lunch OR locked"]).len(), 2);
    assert_eq!(search(&archiver, &["gate", "--chat", "garden"]).len(), 1);
    assert_eq!(
        search(
            &archiver,
            &["gate", "--chat", "garden", "--chat", "gatehouse"]
        )
        .len(),
        3
    );
    // An RFC 3339 bound with an offset, and a range with nothing in it.
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let offset = hour_ago
        .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(-5)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    assert!(offset.ends_with("-05:00"), "{offset}");
    assert_eq!(search(&archiver, &["gate", "--from", &offset]).len(), 3);
    assert!(search(
        &archiver,
        &["gate", "--from", "2020-11-01", "--to", "2020-11-30"]
    )
    .is_empty());

    // "alice,bob" is both of them, as `foia add` reads it (never one user nobody is).
    assert_eq!(
        search(&archiver, &["gate", "--participant", "alice,bob"]),
        search(
            &archiver,
            &["gate", "--participant", "alice", "--participant", "bob"]
        )
    );
    // Refused, never silently empty: a user or chat the archive has never seen, a range
    // that ends before it begins, a malformed query or date.
    for (args, says) in [
        (vec!["gate", "--participant", "alice,mallory"], "mallory"),
        (vec!["gate", "--participant", "mallory"], "mallory"),
        (vec!["gate", "--chat", "nowhere"], "nowhere"),
        (
            vec!["gate", "--from", &tomorrow, "--to", &yesterday],
            "ends before it begins",
        ),
        (vec!["gate", "--from", "2026-13-01"], "RFC 3339"),
        (vec!["\"north gate"], "malformed query"),
        (vec!["gate", "--kind", "email"], "email"),
    ] {
        let mut all = vec!["search"];
        all.extend_from_slice(&args);
        let line = run_fails(&mut archiver.records(&all));
        assert!(line.contains(says), "{args:?}: {line}");
    }

    // People's reading: each hit with its time, chat, sender and text; context indented.
    let out = run_ok(&mut archiver.records(&["search", "which", "--context", "1"]));
    let shown = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("    [") && lines[0].contains("north gate"),
        "{shown}"
    );
    assert!(
        lines[1].starts_with('[') && lines[1].contains("gatehouse <bob> which gate?"),
        "{shown}"
    );
    assert!(
        lines[2].starts_with("    [") && lines[2].contains("lunch first"),
        "{shown}"
    );
    assert_eq!(lines[3], "1 match(es)", "{shown}");

    // The index is caught up, and each record archived from now on is in it at once.
    let status = archiver.status();
    assert_eq!(
        status["index"]["indexed"], status["index"]["total"],
        "{status}"
    );
    assert!(status["index"]["total"].as_u64().unwrap() >= 4, "{status}");
    let later = word("Later");
    bob.ok(&["send", "gatehouse", &format!("gate again {later}")]);
    // Indexed as it is archived: the backlog of the unseal is long done.
    wait_until("the new message found", || {
        search(&archiver, &[&later]).len() == 1
    });

    // While unsealed, searched and indexed: no file of the archiver holds the words.
    for w in [&secret, &later] {
        let leaked = files_holding(&archiver.data, w);
        assert!(leaked.is_empty(), "{w} rests on disk in {leaked:?}");
    }
    run_ok(&mut archiver.records(&["seal"]));
    assert!(archiver.status().get("index").is_none());
    assert!(run_fails(&mut archiver.records(&["search", &secret])).contains("sealed"));
    for w in [&secret, &later] {
        let leaked = files_holding(&archiver.data, w);
        assert!(leaked.is_empty(), "{w} rests on disk in {leaked:?}");
    }
}
