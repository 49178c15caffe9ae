//! Issue 12: the REST part of `vellum app` against a real delivery server — enrollment
//! through the window, a chat with a member, its settings within and outside the org's
//! bounds, and a file sent, served and saved by the browser, then shredded with its message
//! wherever it landed in the device's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vellum_app::{app, AppEvent, AppState, Device as AppDevice, DeviceHandle, Security};

use crate::harness::*;

const HOST: &str = "127.0.0.1:7712";

struct Window {
    router: Router,
    cookie: String,
    csrf: String,
    events: tokio::sync::broadcast::Receiver<AppEvent>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

impl Window {
    async fn open(home: &Path) -> Self {
        let (security, secret) = Security::new(HOST, Duration::from_secs(60));
        let (events, receiver) = tokio::sync::broadcast::channel(256);
        let state = AppState {
            device: DeviceHandle::spawn(AppDevice::open(home).unwrap()).unwrap(),
            security,
            events,
            home: Arc::new(home.to_owned()),
        };
        let router = app(state);
        let opened = router
            .clone()
            .oneshot(
                Request::get(format!("/open?secret={secret}"))
                    .header(header::HOST, HOST)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let cookie = opened.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut w = Self {
            router,
            cookie,
            csrf: String::new(),
            events: receiver,
        };
        w.csrf = w.get("/api/session").await.json()["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        w
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(
            Request::get(path)
                .header(header::HOST, HOST)
                .header(header::COOKIE, &self.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    fn post_req(&self, path: &str) -> axum::http::request::Builder {
        Request::post(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, &self.cookie)
            .header("x-vellum-csrf", &self.csrf)
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.post_req(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> Answer {
        self.send(
            self.post_req("/api/uploads")
                .header("x-file-name", name)
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes))
                .unwrap(),
        )
        .await
    }
}

fn admin(server: &Server) -> std::process::Command {
    let mut cmd = vellum();
    cmd.args(["admin", "--server", &server.url, "--token-file"])
        .arg(server.token_file());
    cmd
}

/// The files under `dir` whose bytes contain `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn issue_12_enroll_chat_settings_and_a_file_shredded_from_the_browsers_downloads() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    run_ok(admin(&server).args([
        "policy",
        "set",
        "--max-expire",
        "1d",
        "--allow-no-expiry",
        "true",
        "--max-file",
        "64KiB",
    ]));
    let _bob = Device::new_user(&server, root.path(), "bob");
    let code = server.add_user("alice");
    let home = root.path().join("alice");
    std::fs::create_dir_all(&home).unwrap();
    let alice = Device { home: home.clone() };
    let rt = runtime();
    rt.block_on(async {
        let mut w = Window::open(&home).await;

        // Enrollment through the window: a wrong code is refused with the server's word.
        let refused = w
            .post(
                "/api/enroll",
                json!({"server": server.url, "user": "alice", "code": "not-the-code"}),
            )
            .await;
        assert!(refused.status.is_client_error(), "{}", refused.json());
        assert_eq!(w.get("/api/session").await.json()["state"], "unenrolled");
        let enrolled = w
            .post(
                "/api/enroll",
                json!({"server": server.url, "user": "alice", "code": code}),
            )
            .await;
        assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.json());
        let session = enrolled.json();
        assert_eq!(session["state"], "enrolled");
        assert_eq!(session["user"], "alice");
        assert_eq!(session["server"], server.url.trim_end_matches('/'));
        assert_eq!(session["pending"], false);
        assert_eq!(session["policy"]["max_expire_secs"], 86400);
        assert_eq!(session["policy"]["max_file_bytes"], 64 * 1024);
        let again = w
            .post(
                "/api/enroll",
                json!({"server": server.url, "user": "alice", "code": code}),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(again.json()["code"], "already_enrolled");

        // The member picker lists the org's people.
        let directory = w.get("/api/directory").await.json();
        let users: Vec<&str> = directory["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user"].as_str().unwrap())
            .collect();
        assert!(
            users.contains(&"bob") && users.contains(&"alice"),
            "{directory}"
        );

        // A chat with an unknown member is refused, naming them; with bob it is made.
        let unknown = w
            .post(
                "/api/chats",
                json!({"title": "ops", "members": ["bob", "mallory"]}),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert!(unknown.json()["message"]
            .as_str()
            .unwrap()
            .contains("mallory"));
        let created = w
            .post(
                "/api/chats",
                json!({"title": "ops", "members": ["bob"], "expire_secs": 3600}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
        let chat = created.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(created.json()["expire_secs"], 3600);
        let detail = w.get(&format!("/api/chats/{chat}")).await.json();
        let members: Vec<(String, bool)> = detail["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["user"].as_str().unwrap().to_owned(), m["admin"] == true))
            .collect();
        assert_eq!(
            members,
            [("alice".to_owned(), true), ("bob".to_owned(), false)],
            "{detail}"
        );
        assert_eq!(detail["you_admin"], true);
        assert_eq!(w.get("/api/chats/ffff").await.status, StatusCode::NOT_FOUND);

        // Settings within the org's bounds change; outside them nothing changes.
        let within = w
            .post(
                &format!("/api/chats/{chat}/settings"),
                json!({"title": "ops room", "expire_secs": 7200}),
            )
            .await;
        assert_eq!(within.status, StatusCode::OK, "{}", within.json());
        assert_eq!(within.json()["expire_secs"], 7200);
        assert_eq!(within.json()["title"], "ops room");
        let outside = w
            .post(
                &format!("/api/chats/{chat}/settings"),
                json!({"title": "never", "expire_secs": 2 * 86400}),
            )
            .await;
        assert_eq!(outside.status, StatusCode::BAD_REQUEST);
        assert!(
            outside.json()["message"]
                .as_str()
                .unwrap()
                .contains("1 day"),
            "{}",
            outside.json()
        );
        let now = w.get(&format!("/api/chats/{chat}")).await.json();
        assert_eq!(now["expire_secs"], 7200);
        assert_eq!(now["title"], "ops room");

        // An upload over the org's maximum is refused and leaves nothing staged.
        let big = w.upload("big.bin", vec![1u8; 64 * 1024 + 1]).await;
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);

        // A file: staged, sent with a short timer, served as an attachment.
        let content = marker("app-file");
        let staged = w
            .upload("report%20v1.txt", content.clone().into_bytes())
            .await;
        assert_eq!(staged.status, StatusCode::CREATED, "{}", staged.json());
        let upload = staged.json()["upload_id"].as_str().unwrap().to_owned();
        assert_eq!(staged.json()["name"], "report v1.txt");
        let sent = w
            .post(
                &format!("/api/chats/{chat}/files-message"),
                json!({"text": "the report", "expire_secs": 8, "uploads": [upload]}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.json());
        let message = sent.json();
        let mid = message["id"].as_str().unwrap().to_owned();
        assert_eq!(message["attachments"][0]["name"], "report v1.txt");
        assert!(
            files_under(&home.join("app-uploads")).is_empty(),
            "the staged copy goes once sent"
        );
        let again = w
            .post(
                &format!("/api/chats/{chat}/files-message"),
                json!({"text": "again", "uploads": [upload]}),
            )
            .await;
        assert_eq!(
            again.status,
            StatusCode::BAD_REQUEST,
            "a used upload is gone"
        );

        // Its upload to the delivery server was reported, to the end.
        let mut reported = false;
        while let Ok(event) = w.events.try_recv() {
            if let AppEvent::Progress {
                upload_id,
                done,
                total,
            } = event
            {
                assert_eq!(upload_id, upload);
                reported |= done == total && total == content.len() as u64;
            }
        }
        assert!(reported, "no progress event reached the end of the upload");

        let served = w
            .get(&format!("/api/chats/{chat}/messages/{mid}/files/0"))
            .await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.json());
        assert_eq!(served.bytes, content.as_bytes());
        let disposition = served.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap();
        assert!(
            disposition.starts_with("attachment;")
                && disposition.contains("filename*=UTF-8''report%20v1.txt"),
            "{disposition}"
        );
        assert_eq!(served.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(served.headers[header::CONTENT_TYPE], "text/plain");
        let missing = w
            .get(&format!("/api/chats/{chat}/messages/{mid}/files/1"))
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);

        // What the browser saved: the name, its own numbered variant, and a renamed copy.
        let downloads = home.join("browser").join("Downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        std::fs::write(downloads.join("report v1.txt"), &content).unwrap();
        std::fs::write(downloads.join("report v1 (1).txt"), &content).unwrap();
        std::fs::write(downloads.join("renamed by hand.txt"), &content).unwrap();
        std::fs::write(downloads.join("unrelated.txt"), b"keep me").unwrap();
        assert!(holding(&home, content.as_bytes()).len() >= 4);

        // After the message expires, the shredder takes every copy, the browser's too.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            alice.ok(&["shred"]);
            let left = holding(&home, content.as_bytes());
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still holding the file after expiry: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            downloads.join("unrelated.txt").exists(),
            "only the file's copies go"
        );
        // A copy the browser finishes writing late goes at the next tick.
        std::fs::write(downloads.join("report v1 (2).txt"), &content).unwrap();
        alice.ok(&["shred"]);
        assert!(holding(&home, content.as_bytes()).is_empty());
        let gone = w
            .get(&format!("/api/chats/{chat}/messages/{mid}/files/0"))
            .await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);

        // Devices and safety numbers.
        let devices = w.get("/api/devices").await.json();
        let mine: Vec<&Value> = devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["this"] == true)
            .collect();
        assert_eq!(mine.len(), 1, "{devices}");
        assert_eq!(mine[0]["state"], "approved");
        assert!(devices["pending_code"].is_null());
        let safety = w.get("/api/safety/bob").await.json();
        assert_eq!(
            safety["number"]
                .as_str()
                .unwrap()
                .chars()
                .filter(char::is_ascii_digit)
                .count(),
            60,
            "{safety}"
        );
        assert_eq!(safety["confirmed"], false);
        let confirmed = w.post("/api/safety/bob/confirm", json!({})).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.json());
        assert_eq!(confirmed.json()["confirmed"], true);

        // Members and admins: bob out and back, made an admin; then alice leaves.
        let members_of = |detail: &Value| -> Vec<(String, bool)> {
            detail["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m["user"].as_str().unwrap().to_owned(), m["admin"] == true))
                .collect()
        };
        let out = w
            .post(
                &format!("/api/chats/{chat}/members"),
                json!({"remove": ["bob"]}),
            )
            .await;
        assert_eq!(out.status, StatusCode::OK, "{}", out.json());
        assert_eq!(members_of(&out.json()), [("alice".to_owned(), true)]);
        let back = w
            .post(
                &format!("/api/chats/{chat}/members"),
                json!({"add": ["bob"]}),
            )
            .await;
        assert_eq!(back.status, StatusCode::OK, "{}", back.json());
        let admin = w
            .post(
                &format!("/api/chats/{chat}/admins"),
                json!({"user": "bob", "admin": true}),
            )
            .await;
        assert_eq!(admin.status, StatusCode::OK, "{}", admin.json());
        assert_eq!(
            members_of(&admin.json()),
            [("alice".to_owned(), true), ("bob".to_owned(), true)]
        );
        let left = w.post(&format!("/api/chats/{chat}/leave"), json!({})).await;
        assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.json());
    });
}

#[test]
fn issue_12_a_second_device_enrolled_in_a_window_is_approved_from_another_window() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let first = Device::new_user(&server, root.path(), "alice");
    let second = root.path().join("alice-laptop");
    std::fs::create_dir_all(&second).unwrap();
    let code = server.add_device("alice");
    let rt = runtime();
    rt.block_on(async {
        let old = Window::open(&first.home).await;
        let new = Window::open(&second).await;
        let enrolled = new
            .post(
                "/api/enroll",
                json!({"server": server.url, "user": "alice", "code": code}),
            )
            .await;
        assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.json());
        assert_eq!(enrolled.json()["pending"], true, "it waits for approval");
        let id = enrolled.json()["device_id"].as_str().unwrap().to_owned();

        // Step 1 on the approved device; the new one then shows its code.
        let started = old
            .post(&format!("/api/devices/{id}/approve"), json!({}))
            .await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.json());
        assert_eq!(started.json()["step"], "started");
        let pending = new.get("/api/devices").await.json();
        assert!(
            pending["pending_code"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "no code on the pending device: {pending}"
        );
        let listed = old.get("/api/devices").await.json();
        assert!(
            listed["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["id"] == id.as_str() && d["state"] == "pending"),
            "{listed}"
        );

        // A wrong code approves nothing; the shown one does.
        let wrong = old
            .post(
                &format!("/api/devices/{id}/approve"),
                json!({"code": "000000"}),
            )
            .await;
        assert!(wrong.status.is_client_error(), "{}", wrong.json());
        // A wrong code ends that approval: the new device starts it again (as it does when
        // its devices screen is shown), then the approved one, with a fresh code.
        new.get("/api/devices").await;
        let restarted = old
            .post(&format!("/api/devices/{id}/approve"), json!({}))
            .await;
        assert_eq!(restarted.json()["step"], "started", "{}", restarted.json());
        let shown = new.get("/api/devices").await.json()["pending_code"]
            .as_str()
            .expect("the pending device shows its code again")
            .to_owned();
        let approved = old
            .post(
                &format!("/api/devices/{id}/approve"),
                json!({"code": shown}),
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.json());
        assert_eq!(approved.json()["step"], "approved");
        // Step 4: the new device takes its user's identity when it next looks.
        let now = new.get("/api/devices").await.json();
        assert!(now["pending_code"].is_null(), "{now}");
        assert_eq!(new.get("/api/session").await.json()["pending"], false);
    });
}
