//! Issue 12: `vellum app`, two windows (alice's and bob's) over a real server, driven
//! through their HTTP API and event streams as the page drives them.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A running `vellum app --no-open` with the session its launch URL opened.
struct Window {
    child: Child,
    base: String,
    cookie: String,
    csrf: String,
    http: reqwest::Client,
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event stream of a window, read as the page reads it.
struct Events {
    response: reqwest::Response,
    buffer: String,
    /// Events read while waiting for others: a later wait may want them (two events of one
    /// change may come in either order).
    skipped: Vec<Value>,
}

impl Window {
    async fn open(device: &Device) -> Window {
        let mut child = spawn_piped(device.cmd().args(["app", "--no-open"]));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        stdout.read_line(&mut url).unwrap();
        let url = url.trim().to_owned();
        // An address of its own in 127.0.0.0/8 (its cookie goes to no other local server).
        assert!(url.starts_with("http://127."), "first line: {url:?}");
        let base = url.split("/open").next().unwrap().to_owned();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let opened = http.get(&url).send().await.unwrap();
        assert_eq!(opened.status(), 303);
        let cookie = opened.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        // The URL in the process listing is worthless once used.
        assert_eq!(http.get(&url).send().await.unwrap().status(), 403);
        let mut window = Window {
            child,
            base,
            cookie,
            csrf: String::new(),
            http,
        };
        let session = window.get("/api/session").await;
        assert_eq!(session["state"], "enrolled");
        window.csrf = session["csrf"].as_str().unwrap().to_owned();
        window
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-vellum-csrf", &self.csrf);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Stages a file as the page does (`POST /api/uploads`); its upload id.
    async fn upload(&self, name: &str, bytes: Vec<u8>) -> String {
        let response = self
            .http
            .post(format!("{}/api/uploads", self.base))
            .header("cookie", &self.cookie)
            .header("x-vellum-csrf", &self.csrf)
            .header("x-file-name", name)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let staged: Value = response.json().await.unwrap();
        staged["upload_id"].as_str().unwrap().to_owned()
    }

    async fn events(&self) -> Events {
        let response = self
            .http
            .get(format!("{}/api/events", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Events {
            response,
            buffer: String::new(),
            skipped: Vec::new(),
        }
    }

    /// The chat's id in this window's chat list, waiting for it to arrive.
    async fn chat_id(&self, title: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let chats = self.get("/api/chats").await;
            if let Some(chat) = chats["chats"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["title"] == title)
            {
                return chat["id"].as_str().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no chat {title}: {chats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn summary(&self, chat: &str) -> Value {
        let chats = self.get("/api/chats").await;
        chats["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == chat)
            .cloned()
            .unwrap()
    }

    /// Every message of the chat, page by page.
    async fn all_messages(&self, chat: &str, limit: usize) -> (Vec<Value>, usize) {
        let mut pages = Vec::new();
        let mut before = String::new();
        loop {
            let page = self
                .get(&format!(
                    "/api/chats/{chat}/messages?limit={limit}&before={before}"
                ))
                .await;
            let messages = page["messages"].as_array().unwrap().clone();
            assert!(messages.len() <= limit);
            pages.push(messages);
            match page["before"].as_str() {
                Some(cursor) => before = cursor.to_owned(),
                None => break,
            }
        }
        let count = pages.len();
        (pages.into_iter().rev().flatten().collect(), count)
    }
}

impl Events {
    /// The next event `want` accepts, within the deadline.
    async fn wait(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.skipped.iter().position(&want) {
            return self.skipped.remove(at);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                for line in frame.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        let event: Value = serde_json::from_str(data).unwrap();
                        if want(&event) {
                            return event;
                        }
                        self.skipped.push(event);
                    }
                }
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no event: {what}"));
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(other) => panic!("the event stream ended waiting for {what}: {other:?}"),
                Err(_) => panic!("no event: {what}"),
            }
        }
    }
}

fn is_message(event: &Value, text: &str) -> bool {
    event["type"] == "message" && event["message"]["text"] == text
}

#[test]
fn issue_12_a_message_round_trip_through_two_windows() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    runtime().block_on(async {
        let a = Window::open(&alice).await;
        let b = Window::open(&bob).await;
        let chat = a.chat_id("ops").await;
        assert_eq!(b.chat_id("ops").await, chat);
        let mut a_events = a.events().await;
        let mut b_events = b.events().await;

        // Empty and oversized messages are refused before anything is sent.
        let (status, _) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": "  "}),
            )
            .await;
        assert_eq!(status, 400);
        let (status, _) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": "x".repeat(16 * 1024 + 1)}),
            )
            .await;
        assert_eq!(status, 413);

        let text = marker("hello bob");
        let (status, sent) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": format!("{text} @bob")}),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        assert_eq!(sent["mine"], true);
        assert_eq!(sent["mentions"], json!(["bob"]));
        assert!(sent["seq"].is_u64(), "accepted by the server: {sent}");
        let id = sent["id"].as_str().unwrap().to_owned();

        // Bob's window hears of it by itself (wake-up → sync → event).
        let event = b_events
            .wait("bob gets the message", |e| {
                e["type"] == "message" && e["message"]["id"] == id.as_str()
            })
            .await;
        assert_eq!(event["chat"], chat.as_str());
        assert_eq!(event["message"]["text"], format!("{text} @bob"));
        assert_eq!(event["message"]["mine"], false);
        assert_eq!(event["message"]["sender"], "alice");

        let summary = b.summary(&chat).await;
        assert_eq!(summary["unread"], 1, "{summary}");
        assert_eq!(summary["last"]["sender"], "alice");
        assert_eq!(summary["last"]["kind"], "text");
        assert!(summary["last"]["preview"]
            .as_str()
            .unwrap()
            .starts_with(&text));
        assert_eq!(summary["class"], "transitory");
        assert_eq!(summary["members"], 2);

        let (messages, _) = b.all_messages(&chat, 50).await;
        let shown = messages.iter().find(|m| m["id"] == id.as_str()).unwrap();
        assert_eq!(shown["text"], format!("{text} @bob"));
        let (status, _) = b
            .post(&format!("/api/chats/{chat}/read"), json!({"ids": [id]}))
            .await;
        assert_eq!(status, 204);
        assert_eq!(b.summary(&chat).await["unread"], 0);

        // A reply and a reaction from bob reach alice as changes of her message.
        let reply = marker("reply");
        let (status, replied) = b
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": reply, "reply_to": id}),
            )
            .await;
        assert_eq!(status, 201, "{replied}");
        assert_eq!(replied["reply_to"]["id"], id.as_str());
        a_events
            .wait("alice gets the reply", |e| is_message(e, &reply))
            .await;
        let (status, reacted) = b
            .post(
                &format!("/api/chats/{chat}/messages/{id}/react"),
                json!({"emoji": "👍"}),
            )
            .await;
        assert_eq!(status, 200, "{reacted}");
        assert_eq!(
            reacted["reactions"],
            json!([{"emoji": "👍", "count": 1, "mine": true}])
        );
        a_events
            .wait("alice sees the reaction", |e| {
                e["type"] == "message"
                    && e["message"]["id"] == id.as_str()
                    && e["message"]["reactions"]
                        == json!([{"emoji": "👍", "count": 1, "mine": false}])
            })
            .await;

        // Alice edits; bob's page replaces the text.
        let edited = marker("edited");
        let (status, answer) = a
            .post(
                &format!("/api/chats/{chat}/messages/{id}/edit"),
                json!({"text": edited}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["edited_at"].is_i64());
        b_events
            .wait("bob sees the edit", |e| {
                e["type"] == "message"
                    && e["message"]["id"] == id.as_str()
                    && e["message"]["text"] == edited.as_str()
            })
            .await;

        // Bob may not delete alice's message; alice may, and it leaves bob's page.
        let (status, _) = b
            .post(
                &format!("/api/chats/{chat}/messages/{id}/delete"),
                json!({}),
            )
            .await;
        assert_eq!(status, 403);
        let (status, _) = a
            .post(
                &format!("/api/chats/{chat}/messages/{id}/delete"),
                json!({}),
            )
            .await;
        assert_eq!(status, 204);
        let gone = b_events
            .wait("bob's page drops the deleted message", |e| {
                e["type"] == "gone" && e["id"] == id.as_str()
            })
            .await;
        assert_eq!(gone["reason"], "deleted");
        let (messages, _) = b.all_messages(&chat, 50).await;
        assert!(messages.iter().all(|m| m["id"] != id.as_str()));
    });
}

#[test]
fn issue_12_history_pages_and_burn_on_read_and_expiry() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "long", "--with", "bob"]);
    runtime().block_on(async {
        let a = Window::open(&alice).await;
        let b = Window::open(&bob).await;
        let chat = a.chat_id("long").await;
        b.chat_id("long").await;
        let mut b_events = b.events().await;

        // Paging: every message once, in order, the newest page first.
        let mut sent = Vec::new();
        for i in 0..60 {
            let (status, m) = a
                .post(
                    &format!("/api/chats/{chat}/messages"),
                    json!({"text": format!("message {i}")}),
                )
                .await;
            assert_eq!(status, 201, "{m}");
            sent.push(m["id"].as_str().unwrap().to_owned());
        }
        b_events
            .wait("the last one arrives", |e| is_message(e, "message 59"))
            .await;
        for window in [&a, &b] {
            let (messages, pages) = window.all_messages(&chat, 25).await;
            let ids: Vec<&str> = messages
                .iter()
                .filter(|m| m["kind"] == "text")
                .map(|m| m["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, sent.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(pages >= 3, "{pages}");
        }
        let first = b.get(&format!("/api/chats/{chat}/messages?limit=10")).await;
        assert_eq!(first["messages"].as_array().unwrap().len(), 10);
        assert_eq!(first["messages"][9]["text"], "message 59");
        for bad in ["limit=0", "limit=201", "before=nonsense"] {
            let (status, _) = b
                .call(
                    reqwest::Method::GET,
                    &format!("/api/chats/{chat}/messages?{bad}"),
                    None,
                )
                .await;
            assert_eq!(status, 400, "{bad}");
        }

        // Burn-on-read: sealed on bob's page (and in his chat list) until revealed; being
        // displayed does not open it; revealing starts its timer.
        let secret = marker("burn");
        let (status, m) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": secret, "burn_secs": 30}),
            )
            .await;
        assert_eq!(status, 201, "{m}");
        let burn_id = m["id"].as_str().unwrap().to_owned();
        let event = b_events
            .wait("the sealed message arrives", |e| {
                e["type"] == "message" && e["message"]["id"] == burn_id.as_str()
            })
            .await;
        assert_eq!(event["message"]["sealed"], true);
        assert_eq!(event["message"]["text"], Value::Null);
        assert_eq!(b.summary(&chat).await["last"]["preview"], Value::Null);
        let (status, _) = b
            .post(
                &format!("/api/chats/{chat}/read"),
                json!({"ids": [burn_id]}),
            )
            .await;
        assert_eq!(status, 204);
        let page = b.get(&format!("/api/chats/{chat}/messages?limit=1")).await;
        assert_eq!(page["messages"][0]["id"], burn_id.as_str());
        assert_eq!(page["messages"][0]["sealed"], true);
        assert_eq!(page["messages"][0]["text"], Value::Null);
        assert_eq!(page["messages"][0]["burn_at"], Value::Null);
        let (status, revealed) = b
            .post(
                &format!("/api/chats/{chat}/messages/{burn_id}/reveal"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{revealed}");
        assert_eq!(revealed["text"], secret.as_str());
        assert_eq!(revealed["sealed"], false);
        let burn_at = revealed["burn_at"].as_i64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (now + 20_000..=now + 31_000).contains(&burn_at),
            "{burn_at} vs {now}"
        );

        // Expiry: both pages are told the moment the shredder takes it.
        let mut a_events = a.events().await;
        let short = marker("expiring");
        let (status, m) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": short, "expire_secs": 2}),
            )
            .await;
        assert_eq!(status, 201, "{m}");
        let id = m["id"].as_str().unwrap().to_owned();
        assert!(m["expires_at"].is_i64());
        for events in [&mut a_events, &mut b_events] {
            let gone = events
                .wait("the expired message leaves the page", |e| {
                    e["type"] == "gone" && e["id"] == id.as_str()
                })
                .await;
            assert_eq!(gone["reason"], "expired");
            assert_eq!(gone["chat"], chat.as_str());
        }
        for window in [&a, &b] {
            let page = window
                .get(&format!("/api/chats/{chat}/messages?limit=5"))
                .await;
            assert!(page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["id"] != id.as_str()));
        }
    });
}

#[test]
fn issue_12_app_refuses_other_than_loopback_and_serves_an_unenrolled_home() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("fresh");
    let line = run_fails(vellum().arg("--home").arg(&home).args([
        "app",
        "--no-open",
        "--listen",
        "0.0.0.0:0",
    ]));
    assert!(line.contains("loopback"), "{line}");
    assert!(!home.exists(), "nothing is created for a refused address");

    let mut child = KillOnDrop(spawn_piped(
        vellum().arg("--home").arg(&home).args(["app", "--no-open"]),
    ));
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut url = String::new();
    stdout.read_line(&mut url).unwrap();
    let url = url.trim().to_owned();
    runtime().block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = url.split("/open").next().unwrap();
        // Without the secret: nothing.
        let page = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 401);
        assert!(!page.text().await.unwrap().contains("<script"));
        let opened = http.get(&url).send().await.unwrap();
        assert_eq!(opened.status(), 303);
        let cookie = opened.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let session: Value = serde_json::from_slice(
            &http
                .get(format!("{base}/api/session"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(session["state"], "unenrolled");
        let chats = http
            .get(format!("{base}/api/chats"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(chats.status(), 409);
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&home).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// A child process that does not outlive a failed assertion.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 12: a chat of 10,000 messages opens on its newest page and pages back by cursor
/// (how fast is `vellum-bench app`'s figure; the query plan is held by the client's tests).
#[test]
fn issue_12_a_ten_thousand_message_chat_opens_on_its_newest_page() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let _bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "big", "--with", "bob"]);
    {
        // Stored as sync would store them, without 10,000 round trips.
        let client = vellum_client::Client::open(&alice.home).unwrap();
        let chat = client.chats().unwrap()[0].group_id.clone();
        let store = client.store();
        store.begin().unwrap();
        for i in 0..10_000i64 {
            store
                .add_message(&vellum_client::MessageRow {
                    group_id: chat.clone(),
                    id: format!("bulk-{i}"),
                    kind: vellum_client::MessageKind::Text,
                    sender_user: "bob".into(),
                    sender_device: "d".into(),
                    sent_at: 1_000_000 + i,
                    received_at: 1_000_000 + i,
                    seq: Some(1_000 + i as u64),
                    text: format!("bulk message {i}"),
                    expires_at: None,
                    burn_secs: None,
                    read_at: None,
                    burn_at: None,
                    archived_leaf: None,
                    salt: None,
                    event: None,
                    extra: Default::default(),
                })
                .unwrap();
        }
        store.commit().unwrap();
    }
    runtime().block_on(async {
        let a = Window::open(&alice).await;
        let chat = a.chat_id("big").await;
        let chats = a.get("/api/chats").await;
        let page = a.get(&format!("/api/chats/{chat}/messages?limit=50")).await;
        let before = page["before"].as_str().unwrap();
        let older = a
            .get(&format!(
                "/api/chats/{chat}/messages?limit=50&before={before}"
            ))
            .await;
        assert_eq!(chats["chats"][0]["unread"], 10_000);
        assert_eq!(page["messages"].as_array().unwrap().len(), 50);
        assert_eq!(page["messages"][49]["text"], "bulk message 9999");
        assert_eq!(older["messages"][49]["text"], "bulk message 9949");
    });
}

/// The window follows its link to the delivery server: offline when it goes, online and
/// caught up when it comes back (a message sent around the restart arrives).
#[test]
fn issue_12_the_window_reconnects_and_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "link", "--with", "bob"]);
    let rt = runtime();
    let b = rt.block_on(Window::open(&bob));
    let mut events = rt.block_on(async {
        b.chat_id("link").await;
        let mut events = b.events().await;
        // Connected first (the first attempt may be refused as signed before the server's
        // start second; what came before is no evidence about the kill below).
        events
            .wait("online", |e| {
                e["type"] == "connection" && e["online"] == true
            })
            .await;
        events.skipped.clear();
        events
    });
    server.kill();
    rt.block_on(events.wait("offline", |e| {
        e["type"] == "connection" && e["online"] == false
    }));
    server.restart();
    let text = marker("while away");
    alice.ok(&["send", "link", &text]);
    rt.block_on(async {
        events
            .wait("online again", |e| {
                e["type"] == "connection" && e["online"] == true
            })
            .await;
        events
            .wait("the message sent meanwhile", |e| is_message(e, &text))
            .await;
    });
}

/// What the user sent from another of their devices is never unread on this one: not in
/// the window's chat list, not in `chat list --json` (they share the count).
#[test]
fn issue_12_own_messages_from_another_device_are_not_unread() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let phone = Device::new_user(&server, root.path(), "alice");
    let laptop = Device::approved(&server, root.path(), "alice-laptop", "alice", &phone);
    let _bob = Device::new_user(&server, root.path(), "bob");
    phone.ok(&["chat", "create", "mine", "--with", "bob"]);
    laptop.ok(&["sync"]);
    let text = marker("from the laptop");
    laptop.ok(&["send", "mine", &text]);
    runtime().block_on(async {
        let w = Window::open(&phone).await;
        let chat = w.chat_id("mine").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let summary = w.summary(&chat).await;
            if summary["last"]["preview"] == text.as_str() {
                assert_eq!(summary["unread"], 0, "{summary}");
                break;
            }
            assert!(Instant::now() < deadline, "never arrived: {summary}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let listed = phone.json(&["chat", "list", "--json"]);
    let mine = listed.iter().find(|c| c["title"] == "mine").unwrap();
    assert_eq!(mine["unread"], 0, "{listed:?}");
}

/// A new device waiting for approval: its window is online but pending (not offline),
/// learns by itself that the approving device started (its code can be shown), and
/// switches to approved by itself.
#[test]
fn issue_12_a_pending_device_follows_its_approval_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let laptop = Device {
        home: root.path().join("alice-laptop"),
    };
    let out = run_ok(laptop.cmd().args([
        "enroll",
        "--server",
        &server.url,
        "--user",
        "alice",
        "--code",
        &server.add_device("alice"),
    ]));
    let id = last_line(&out);
    runtime().block_on(async {
        let old = Window::open(&alice).await;
        let new = Window::open(&laptop).await;
        assert_eq!(new.get("/api/session").await["pending"], true);
        let mut events = new.events().await;
        events
            .wait("online but pending", |e| {
                e["type"] == "connection" && e["online"] == true && e["pending"] == true
            })
            .await;
        assert!(
            !events
                .skipped
                .iter()
                .any(|e| e["type"] == "connection" && e["online"] == false),
            "never offline: {:?}",
            events.skipped
        );
        events.skipped.clear();

        // Step 1 on the approved device: the new window is told without asking.
        let (status, started) = old
            .post(&format!("/api/devices/{id}/approve"), json!({}))
            .await;
        assert_eq!(status, 200, "{started}");
        assert_eq!(started["step"], "started");
        events
            .wait("the new device's code is there", |e| e["type"] == "devices")
            .await;
        let code = new.get("/api/devices").await["pending_code"]
            .as_str()
            .expect("the pending device shows its code")
            .to_owned();

        // Step 3: approved; the new window switches by itself.
        let mut old_events = old.events().await;
        let (status, approved) = old
            .post(&format!("/api/devices/{id}/approve"), json!({"code": code}))
            .await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["step"], "approved");
        old_events
            .wait("the approving window reloads its devices", |e| {
                e["type"] == "devices"
            })
            .await;
        events
            .wait("online and approved", |e| {
                e["type"] == "connection" && e["online"] == true && e["pending"] == false
            })
            .await;
        events.wait("devices", |e| e["type"] == "devices").await;
        events.wait("chats", |e| e["type"] == "chats").await;
        assert_eq!(new.get("/api/session").await["pending"], false);
        let devices = new.get("/api/devices").await;
        let me = devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["this"] == true)
            .cloned()
            .unwrap();
        assert_eq!(me["state"], "approved", "{devices}");
        assert!(devices["pending_code"].is_null(), "{devices}");
    });
}

/// The sender's window shows how many have its message and how many read it, and is told
/// when that changes.
#[test]
fn issue_12_own_messages_show_delivery_and_read_receipts_live() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "seen", "--with", "bob"]);
    runtime().block_on(async {
        let a = Window::open(&alice).await;
        let chat = a.chat_id("seen").await;
        let mut a_events = a.events().await;
        let text = marker("did you get it");
        let (status, sent) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": text}),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        let id = sent["id"].as_str().unwrap().to_owned();
        assert_eq!(sent["receipts"], json!({"delivered": 0, "read": 0}));
        // The page shows the chat (and so watches it).
        let page = a.get(&format!("/api/chats/{chat}/messages")).await;
        let shown = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .cloned()
            .unwrap();
        assert!(shown["receipts"]["read"] == 0, "{shown}");

        // Bob's window fetches it: delivered.
        let b = Window::open(&bob).await;
        b.chat_id("seen").await;
        a_events
            .wait("delivered to bob", |e| {
                e["type"] == "message"
                    && e["message"]["id"] == id.as_str()
                    && e["message"]["receipts"]["delivered"] == 1
            })
            .await;
        // Bob displays it: read.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (messages, _) = b.all_messages(&chat, 50).await;
            if messages.iter().any(|m| m["id"] == id.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "never arrived at bob's");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, _) = b
            .post(&format!("/api/chats/{chat}/read"), json!({"ids": [id]}))
            .await;
        assert_eq!(status, 204);
        let event = a_events
            .wait("read by bob", |e| {
                e["type"] == "message"
                    && e["message"]["id"] == id.as_str()
                    && e["message"]["receipts"]["read"] == 1
            })
            .await;
        assert_eq!(event["message"]["text"], text.as_str());
        // Others' messages carry none.
        let (status, from_bob) = b
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": "yes"}),
            )
            .await;
        assert_eq!(status, 201, "{from_bob}");
        let event = a_events
            .wait("bob's answer", |e| is_message(e, "yes"))
            .await;
        assert!(event["message"]["receipts"].is_null(), "{event}");
    });
}

/// One app per profile: a second `vellum app` on the same home gets a fresh launch URL from
/// the running one over `HOME/app.sock` and exits; the socket is the user's only, goes at
/// exit, and a stale one left by a killed process is replaced.
#[test]
fn issue_12_a_second_app_on_the_same_home_opens_a_new_window_of_the_first() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let socket = alice.home.join("app.sock");
    runtime().block_on(async {
        let mut first = Window::open(&alice).await;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let second = output(alice.cmd().args(["app", "--no-open"]));
        assert!(second.status.success(), "{second:?}");
        let stdout = String::from_utf8(second.stdout).unwrap();
        let url = stdout.lines().next().unwrap().trim().to_owned();
        assert!(
            url.starts_with(&format!("{}/open?secret=", first.base)),
            "{url}"
        );
        let stderr = String::from_utf8(second.stderr).unwrap();
        assert!(stderr.contains("not shredded"), "{stderr}");
        // The new URL opens a session on the first process, which keeps serving.
        let opened = first.http.get(&url).send().await.unwrap();
        assert_eq!(opened.status(), 303);
        let cookie = opened.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let session = first
            .http
            .get(format!("{}/api/session", first.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(session.status(), 200);
        let session: Value = serde_json::from_slice(&session.bytes().await.unwrap()).unwrap();
        assert_eq!(session["dedicated_browser"], false);
        assert!(first.child.try_wait().unwrap().is_none(), "still serving");
        let used = first.http.get(&url).send().await.unwrap();
        assert_eq!(used.status(), 403);
        assert!(used
            .text()
            .await
            .unwrap()
            .contains("Run `vellum app` again to open a new window."));

        // Stopped by a signal: the socket goes.
        let pid = first.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        first.child.wait().unwrap();
        assert!(!socket.exists(), "removed at exit");

        // Killed: the stale socket is replaced by the next app.
        let mut killed = Window::open(&alice).await;
        killed.child.kill().unwrap();
        killed.child.wait().unwrap();
        assert!(socket.exists(), "left by the killed process");
        let next = Window::open(&alice).await;
        let again = output(alice.cmd().args(["app", "--no-open"]));
        assert!(again.status.success(), "{again:?}");
        let url = String::from_utf8(again.stdout).unwrap();
        assert!(
            url.starts_with(&format!("{}/open?secret=", next.base)),
            "{url}"
        );
    });
}

/// A sealed (burn-on-read) message shows nothing of its content until revealed: no text,
/// no file names, no mentions, and a reply quoting it carries no text either.
#[test]
fn issue_12_a_sealed_message_hides_its_file_names_and_its_quotes() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    alice.ok(&["chat", "create", "sealed", "--with", "bob"]);
    runtime().block_on(async {
        let a = Window::open(&alice).await;
        let b = Window::open(&bob).await;
        let chat = a.chat_id("sealed").await;
        b.chat_id("sealed").await;
        let mut b_events = b.events().await;
        let upload = a
            .upload("merger-plan.txt", marker("plan").into_bytes())
            .await;
        let secret = marker("sealed caption");
        // What it answers is part of its content too.
        let answered = marker("answered in the open");
        let (status, open) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": answered}),
            )
            .await;
        assert_eq!(status, 201, "{open}");
        let (status, sent) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": format!("@bob {secret}"), "burn_secs": 60, "uploads": [upload],
                       "reply_to": open["id"]}),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        // The sender sees her own message whole.
        assert_eq!(sent["attachments"][0]["name"], "merger-plan.txt");
        let id = sent["id"].as_str().unwrap().to_owned();
        let (status, reply) = a
            .post(
                &format!("/api/chats/{chat}/messages"),
                json!({"text": marker("a reply"), "reply_to": id}),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        let reply_id = reply["id"].as_str().unwrap().to_owned();
        let event = b_events
            .wait("the sealed message arrives", |e| {
                e["type"] == "message" && e["message"]["id"] == id.as_str()
            })
            .await;
        b_events
            .wait("the reply arrives", |e| {
                e["type"] == "message" && e["message"]["id"] == reply_id.as_str()
            })
            .await;
        let page = b.get(&format!("/api/chats/{chat}/messages?limit=10")).await;
        let shown = |mid: &str| {
            page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == mid)
                .cloned()
                .unwrap()
        };
        for sealed in [event["message"].clone(), shown(&id)] {
            assert_eq!(sealed["sealed"], true, "{sealed}");
            assert_eq!(sealed["text"], Value::Null);
            assert_eq!(sealed["attachments"], json!([]), "{sealed}");
            assert_eq!(sealed["attachment_count"], 1);
            assert_eq!(sealed["mentions"], json!([]));
            assert_eq!(sealed["reply_to"], Value::Null, "{sealed}");
            assert!(!sealed.to_string().contains("merger-plan"), "{sealed}");
        }
        let quoted = shown(&reply_id);
        assert_eq!(quoted["reply_to"]["id"], id.as_str());
        assert_eq!(quoted["reply_to"]["text"], Value::Null, "{quoted}");
        assert!(!page.to_string().contains(&secret));
        assert!(!page.to_string().contains("merger-plan"));
        // Revealed: everything is there.
        let (status, revealed) = b
            .post(
                &format!("/api/chats/{chat}/messages/{id}/reveal"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{revealed}");
        assert_eq!(revealed["attachments"][0]["name"], "merger-plan.txt");
        assert_eq!(revealed["mentions"], json!(["bob"]));
        assert_eq!(revealed["reply_to"]["text"], answered.as_str());
        let page = b.get(&format!("/api/chats/{chat}/messages?limit=10")).await;
        assert!(page.to_string().contains(&secret));
    });
}

/// A device revoked from another of its user's devices learns it at its next sync: its
/// window is told at once (the page drops all it shows) and has no device any more.
#[test]
fn issue_12_a_revoked_device_window_is_told_and_keeps_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let phone = Device::new_user(&server, root.path(), "alice");
    let laptop = Device::approved(&server, root.path(), "alice-laptop", "alice", &phone);
    let _bob = Device::new_user(&server, root.path(), "bob");
    phone.ok(&["chat", "create", "gone", "--with", "bob"]);
    runtime().block_on(async {
        let w = Window::open(&laptop).await;
        w.chat_id("gone").await;
        let laptop_id = w.get("/api/session").await["device_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut events = w.events().await;
        phone.ok(&["devices", "revoke", &laptop_id]);
        // Something for the laptop to fetch: its sync is refused as revoked.
        phone.ok(&["send", "gone", "after the revocation"]);
        events.wait("revoked", |e| e["type"] == "revoked").await;
        assert_eq!(w.get("/api/session").await["state"], "unenrolled");
        let (status, answer) = w.call(reqwest::Method::GET, "/api/chats", None).await;
        assert_eq!(status, 409, "{answer}");
    });
}
