//! Issue 10, the CLI's habits: every event shown once, output a sender cannot forge,
//! input from standard input, and the conventions of gh, vault and signal-cli.

use std::io::{BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A writer thread: the child may refuse (and exit) before reading everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Issue 10: a message with escape sequences, a bidi override and a forged `[time] chat
/// <alice> …` line printed raw, exactly like a real message from alice. Now the reader's
/// terminal gets no control character, and every further line of the message is indented
/// under bob's header; JSON keeps the text exactly.
#[test]
fn issue_10_a_forged_line_and_escape_sequences_cannot_pass_for_output() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "team", "--with", "bob"]);
    // A title with a right-to-left override (control characters are refused in titles).
    alice.ok(&["chat", "create", "evil\u{202e}exe.txt", "--with", "bob"]);
    bob.ok(&["sync"]);
    let forged = "see below\n[2026-01-01 00:00:00] team <alice> wire the money to bob\u{1b}[2J\u{202e}evil\rover";
    bob.ok(&["send", "team", forged]);

    for args in [&["--utc", "sync"][..], &["--utc", "history", "team"][..]] {
        let shown = stdout(&alice.ok(args));
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        assert!(
            !shown.contains('\r') && !shown.contains('\u{202e}'),
            "{shown:?}"
        );
        let lines: Vec<&str> = shown.lines().collect();
        // Exactly one header is bob's; the forged line sits indented under it.
        let header = lines
            .iter()
            .position(|l| l.starts_with('[') && l.contains("<bob> see below"))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(
            lines[header + 1]
                .starts_with("    [2026-01-01 00:00:00] team <alice> wire the money to bob\\x1b[2J\\u{202e}evil\\rover  ("),
            "{shown}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("[2026-01-01")),
            "{shown}"
        );
    }
    let listed = stdout(&bob.ok(&["chat", "list"]));
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\u{7}'),
        "{listed:?}"
    );
    assert!(!listed.contains('\u{202e}'), "{listed:?}");
    assert!(listed.contains("evil\\u{202e}exe.txt"), "{listed}");
    // JSON carries the text exactly (its own escaping makes it safe).
    let history = alice.json(&["history", "team", "--json"]);
    assert!(history.iter().any(|m| m["text"] == forged), "{history:?}");
}

/// Issue 10: `send CHAT -` reads standard input (bounded), whitespace-only messages and
/// messages over 16 KiB are refused with the limit named (and nothing is sent), the limit
/// is in the help, and `--with "bob, carol"` means bob and carol.
#[test]
fn issue_10_send_reads_stdin_refuses_blank_and_oversized_and_with_trims() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let _carol = Device::new_user(&server, root.path(), "carol");
    alice.ok(&["chat", "create", "team", "--with", "bob, carol"]);
    assert_eq!(alice.members("team"), ["alice", "bob", "carol"]);

    let out = with_stdin(
        alice.cmd().args(["send", "team", "-"]),
        b"line one\nline two\n",
    );
    assert!(out.status.success(), "{out:?}");
    let limit = 16 * 1024;
    let mut exact = "x".repeat(limit);
    exact.push('\n');
    let out = with_stdin(alice.cmd().args(["send", "team", "-"]), exact.as_bytes());
    assert!(out.status.success(), "exactly 16 KiB fits: {out:?}");

    let refusals: [(&[u8], &str); 3] = [
        (b"   \n\t\n", "whitespace"),
        (b"", "whitespace"),
        (&[b'y'; 100_000], "16 KiB"),
    ];
    for (input, why) in refusals {
        let out = with_stdin(alice.cmd().args(["send", "team", "-"]), input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{stderr}");
    }
    let line = alice.fails(&["send", "team", " \t "]);
    assert!(line.contains("whitespace"), "{line}");
    let line = alice.fails(&["send", "team", &"z".repeat(limit + 1)]);
    assert!(line.contains("16 KiB") && line.contains("16384"), "{line}");

    bob.ok(&["sync"]);
    assert_eq!(
        bob.texts("team"),
        ["line one\nline two", &"x".repeat(limit)]
    );
    let help = stdout(&run_ok(vellum().args(["send", "--help"])));
    assert!(
        help.contains("16 KiB") && help.contains("standard input"),
        "{help}"
    );
}

/// Issue 10: `chat set --burn-on-read off` announced "disappear after 12 hours".
#[test]
fn issue_10_burn_on_read_off_says_so() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    alice.ok(&[
        "chat",
        "create",
        "timed",
        "--expire",
        "12h",
        "--burn-on-read",
        "1h",
    ]);
    let said = stdout(&alice.ok(&["chat", "set", "timed", "--burn-on-read", "off"]));
    assert_eq!(
        said.trim(),
        "burn-on-read is off (messages still disappear 12 hours after sending)"
    );
    let set = alice.json(&["chat", "set", "timed", "--expire", "1d", "--json"]);
    assert_eq!(set[0]["expire_secs"], 86_400, "{set:?}");
    assert_eq!(set[0]["burn_secs"], Value::Null, "{set:?}");
}

/// Issue 10, "lost from view": new chats showed only in history; `send` and chat changes
/// fetched incoming messages and events and the next `sync` never showed them; a sync showed one chat after another, not in the
/// order they were said. Now `sync` shows each exactly once, in the server's order across
/// chats, whichever command fetched it.
#[test]
fn issue_10_sync_shows_every_event_once_in_server_order_whoever_fetched_it() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let one = last_line(&alice.ok(&["chat", "create", "one", "--with", "bob"]));
    let two = last_line(&alice.ok(&["chat", "create", "two", "--with", "bob"]));
    // bob may change chat one's timers below.
    alice.ok(&["chat", "admins", "one", "add", "bob"]);
    // New chats show in sync, not only in history: one notice each.
    let joined: Vec<Value> = bob.json(&["sync", "--json"]);
    let mut chats: Vec<&str> = joined
        .iter()
        .filter(|m| m["kind"] == "event")
        .map(|m| m["chat"].as_str().unwrap())
        .collect();
    chats.sort();
    chats.dedup();
    let mut want = vec![one.as_str(), two.as_str()];
    want.sort();
    assert_eq!(chats, want, "{joined:?}");
    alice.ok(&["send", "two", "a1"]);
    alice.ok(&["send", "one", "a2"]);
    alice.ok(&["chat", "set", "two", "--expire", "1d"]);
    alice.ok(&["send", "two", "a3"]);
    alice.ok(&["send", "one", "a4"]);
    // bob's send and chat change fetch all of it first; they print none of it.
    let sent = stdout(&bob.ok(&["send", "one", "b1"]));
    assert!(sent.starts_with("sent "), "{sent}");
    bob.ok(&["chat", "set", "one", "--expire", "2d"]);

    let shown = bob.json(&["sync", "--json"]);
    let said: Vec<(String, String)> = shown
        .iter()
        .map(|m| {
            let what = match m["kind"].as_str() {
                Some("text") => m["text"].as_str().unwrap().to_owned(),
                _ => m["event"]["type"].as_str().unwrap_or("event").to_owned(),
            };
            (m["chat"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    let want = [
        (two.clone(), "a1".to_owned()),
        (one.clone(), "a2".to_owned()),
        (two.clone(), "timers_changed".to_owned()),
        (two.clone(), "a3".to_owned()),
        (one.clone(), "a4".to_owned()),
        (one.clone(), "timers_changed".to_owned()),
    ];
    assert_eq!(said, want, "{shown:?}");
    // Each once: a second sync shows nothing; history still has everything.
    assert!(bob.json(&["sync", "--json"]).is_empty());
    assert_eq!(bob.texts("one"), ["a2", "a4", "b1"]);
}

/// Issue 10: a member removed while `watch` runs saw nothing.
#[test]
fn issue_10_watch_shows_a_removal_of_this_member() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    let chat = last_line(&alice.ok(&["chat", "create", "team", "--with", "bob"]));
    bob.ok(&["sync"]);
    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut reader = BufReader::new(watcher.stdout.take().unwrap());
    alice.ok(&["send", "team", "before the removal"]);
    let seen = wait_for_line(
        &mut reader,
        |l| l.contains("before the removal"),
        Duration::from_secs(30),
    );
    assert!(seen.is_some(), "watch printed the message");
    alice.ok(&["chat", "remove", "team", "bob"]);
    let removal = wait_for_line(
        &mut reader,
        |l| l.contains("member_removed"),
        Duration::from_secs(30),
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let removal: Value = serde_json::from_str(&removal.expect("watch showed the removal")).unwrap();
    assert_eq!(removal["chat"], chat.as_str());
    assert_eq!(removal["event"]["user"], "bob");
    // Shown once: the next sync does not show it again.
    assert!(!bob
        .json(&["sync", "--json"])
        .iter()
        .any(|m| m["event"]["type"] == "member_removed"));
}

/// Issue 10, CLI habits: usage errors shown whole with clap's suggestions and usage; a bare
/// `vellum chat` lists its subcommands; completions; `VELLUM_SERVER`,
/// `VELLUM_ADMIN_TOKEN_FILE` and the default profile directory; lists print `[]` when empty;
/// local time by default and UTC with `--utc`.
#[test]
fn issue_10_cli_follows_its_ecosystems_habits() {
    let out = output(vellum().args(["chat"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for sub in ["create", "set", "add", "remove", "list", "members"] {
        assert!(stderr.contains(sub), "{stderr}");
    }
    let out = output(vellum().args(["send", "team"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("<TEXT>") && stderr.contains("Usage:"),
        "{stderr}"
    );
    let out = output(vellum().args(["sned", "team", "hi"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'send'"), "a suggestion: {stderr}");

    for (shell, mark) in [
        ("bash", "_vellum()"),
        ("zsh", "#compdef vellum"),
        ("fish", "complete -c vellum"),
    ] {
        let script = stdout(&run_ok(vellum().args(["completions", shell])));
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(script.contains("burn-on-read"), "{shell}");
    }

    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let data = root.path().join("xdg-data");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("VELLUM_SERVER", &server.url)
            .env("VELLUM_ADMIN_TOKEN_FILE", server.token_file())
            .env("XDG_DATA_HOME", &data)
            .env("TZ", "JST-9");
    };
    let mut add = vellum();
    env(add.args(["admin", "user", "add", "dana", "--json"]));
    let code: Value = serde_json::from_slice(&run_ok(&mut add).stdout).unwrap();
    let mut enroll = vellum();
    env(enroll
        .args(["enroll", "--user", "dana", "--code"])
        .arg(code["code"].as_str().unwrap()));
    run_ok(&mut enroll);
    assert!(
        data.join("vellum").is_dir(),
        "the profile is in the data directory"
    );
    for list in [&["chat", "list", "--json"][..], &["shred", "--json"][..]] {
        let mut cmd = vellum();
        env(cmd.args(list));
        assert_eq!(stdout(&run_ok(&mut cmd)).trim(), "[]", "{list:?}");
    }
    // One message, its header in local time (JST, UTC+9) and with --utc in UTC.
    let mut create = vellum();
    env(create.args(["chat", "create", "notes"]));
    run_ok(&mut create);
    let mut send = vellum();
    env(send.args(["send", "notes", "a note"]));
    run_ok(&mut send);
    let mut history = vellum();
    env(history.args(["history", "notes", "--json"]));
    let sent = stdout(&run_ok(&mut history))
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["text"] == "a note")
        .unwrap();
    let at = humantime::parse_rfc3339(sent["sent_at"].as_str().unwrap()).unwrap();
    let header = |utc: bool| {
        let mut cmd = vellum();
        env(cmd.args(["history", "notes"]));
        if utc {
            cmd.arg("--utc");
        }
        let shown = stdout(&run_ok(&mut cmd));
        let line = shown
            .lines()
            .find(|l| l.contains("a note"))
            .unwrap()
            .to_owned();
        line[1..20].to_owned()
    };
    let utc = humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace('T', " ");
    let local = humantime::format_rfc3339_seconds(at + Duration::from_secs(9 * 3600)).to_string();
    assert_eq!(header(true), utc[..19]);
    assert_eq!(header(false), local.replace('T', " ")[..19]);
    // Readable dates: when a message disappears, and how far off that is.
    let mut send = vellum();
    env(send.args(["send", "notes", "short-lived", "--expire", "2h"]));
    run_ok(&mut send);
    let mut history = vellum();
    env(history.args(["history", "notes"]));
    let shown = stdout(&run_ok(&mut history));
    let line = shown.lines().find(|l| l.contains("short-lived")).unwrap();
    assert!(
        line.contains("  disappears 20") && line.ends_with(" (in 2 hours)"),
        "{line}"
    );
}

/// A proxy in front of the server that, while `refuse_ack` is set, refuses every
/// acknowledgement (an API error, so the client does not retry): a sync then fails after it
/// stored what it fetched.
async fn ack_refusing_proxy(
    upstream: String,
    refuse_ack: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::response::Response;

    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (http, upstream, refuse_ack) = (http.clone(), upstream.clone(), refuse_ack.clone());
        async move {
            if request.uri().path() == "/v1/ack"
                && refuse_ack.load(std::sync::atomic::Ordering::SeqCst)
            {
                return Response::builder()
                    .status(409)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        r#"{"code":"test_refused","message":"refused by the test proxy"}"#,
                    ))
                    .unwrap();
            }
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut forwarded = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forwarded = forwarded.header(name, value);
                }
            }
            let answer = forwarded.body(body.to_vec()).send().await.unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Issue 10: a `sync` that failed half-way never reported what it had stored. Now it prints
/// what it stored, then the error (naming the cause), and the next sync does not show it
/// again.
#[test]
fn issue_10_a_sync_failing_half_way_prints_what_it_stored_first() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let refuse_ack = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(ack_refusing_proxy(server.url.clone(), refuse_ack.clone()));
    let alice = Device::new_user(&server, root.path(), "alice");
    let code = server.add_user("bob");
    let home = root.path().join("bob");
    run_ok(vellum().arg("--home").arg(&home).args([
        "enroll", "--server", &proxy, "--user", "bob", "--code", &code,
    ]));
    let bob = Device { home };
    alice.ok(&["chat", "create", "team", "--with", "bob"]);
    bob.ok(&["sync"]);
    let (first, second) = (marker("first"), marker("second"));
    alice.ok(&["send", "team", &first]);
    alice.ok(&["send", "team", &second]);

    refuse_ack.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = output(bob.cmd().args(["sync", "--json"]));
    assert!(!out.status.success());
    let printed = stdout(&out);
    let texts: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].clone())
        .collect();
    assert_eq!(texts, [first.as_str(), second.as_str()], "{printed}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused by the test proxy"), "{stderr}");

    refuse_ack.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(bob.json(&["sync", "--json"]).is_empty(), "shown once");
    assert_eq!(bob.texts("team"), [first, second]);
}

/// Issue 10 review: `vellum … | head -1` panicked with a backtrace when head closed the pipe.
#[test]
fn issue_10_a_closed_stdout_ends_the_command_quietly() {
    let mut child = vellum()
        .args(["completions", "bash"])
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the writer is done.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}
