//! The REST part of `vellum app` (issue 12) driven through the router with `oneshot`:
//! input validation and the unenrolled device. What needs a real delivery server is in the
//! CLI's integration tests (`crates/cli/tests/it/app_rest.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use vellum_app::{app, AppState, Device, DeviceHandle, Security};

const HOST: &str = "127.0.0.1:7711";

struct Window {
    router: Router,
    cookie: String,
    csrf: String,
    _home: tempfile::TempDir,
    home: std::path::PathBuf,
}

async fn window() -> Window {
    let home = tempfile::tempdir().unwrap();
    let (security, secret) = Security::new(HOST, Duration::from_secs(60));
    let (events, _) = tokio::sync::broadcast::channel(64);
    let state = AppState {
        device: DeviceHandle::spawn(Device::open(home.path()).unwrap()).unwrap(),
        security,
        events,
        home: Arc::new(home.path().to_owned()),
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
    let mut w = Window {
        router,
        cookie,
        csrf: String::new(),
        home: home.path().to_owned(),
        _home: home,
    };
    let (status, session) = w.get("/api/session").await;
    assert_eq!(status, StatusCode::OK);
    w.csrf = session["csrf"].as_str().unwrap().to_owned();
    w
}

impl Window {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
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

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.send(
            self.post_req(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.post_req("/api/uploads")
                .header("x-file-name", name)
                .body(Body::from(bytes))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn issue_12_an_unenrolled_session_says_so_with_no_server_or_policy() {
    let w = window().await;
    let (status, session) = w.get("/api/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["state"], "unenrolled");
    assert_eq!(session["pending"], false);
    assert!(session["server"].is_null());
    assert!(session["policy"].is_null());
}

#[tokio::test]
async fn issue_12_malformed_json_is_a_400_in_the_windows_error_shape() {
    let w = window().await;
    for (path, body) in [
        ("/api/enroll", "{not json"),
        (
            "/api/enroll",
            r#"{"server":"http://127.0.0.1:1","user":"a"}"#,
        ),
        ("/api/chats", r#"{"title": 5}"#),
        ("/api/chats", r#"{"title":"t","members":[],"surprise":1}"#),
        ("/api/chats/abc/settings", r#"{"expire_secs":"soon"}"#),
    ] {
        let (status, error) = w.post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(error["code"], "bad_request", "{path}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("malformed JSON"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn issue_12_an_unenrolled_device_answers_409_not_enrolled() {
    let w = window().await;
    let cases = [
        w.post("/api/chats", r#"{"title":"ops","members":["bob"]}"#)
            .await,
        w.get("/api/chats/0123abcd").await,
        w.post("/api/chats/0123abcd/settings", r#"{"title":"x"}"#)
            .await,
        w.post("/api/chats/0123abcd/members", r#"{"add":["bob"]}"#)
            .await,
        w.post("/api/chats/0123abcd/leave", "").await,
        w.get("/api/directory").await,
        w.get("/api/devices").await,
        w.post("/api/devices/d1/approve", "").await,
        w.get("/api/safety/bob").await,
        w.upload("a.txt", b"hello".to_vec()).await,
    ];
    for (i, (status, error)) in cases.into_iter().enumerate() {
        assert_eq!(status, StatusCode::CONFLICT, "case {i}: {error}");
        assert_eq!(error["code"], "not_enrolled", "case {i}");
    }
    // Nothing was staged for the refused upload.
    assert!(
        !w.home.join("app-uploads").exists()
            || std::fs::read_dir(w.home.join("app-uploads"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[tokio::test]
async fn issue_12_upload_names_with_a_directory_part_or_tricks_are_refused() {
    let w = window().await;
    for name in [
        "..%2Fescape.txt",
        "a%2Fb.txt",
        "a%5Cb.txt",
        "..",
        ".hidden",
        "invoice%E2%80%AEfdp.exe",
        "nul%00byte",
        "%ZZbad",
        "%FF%FE",
    ] {
        let (status, error) = w.upload(name, b"x".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {error}");
    }
    // No name at all.
    let (status, _) = w
        .send(w.post_req("/api/uploads").body(Body::from("x")).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn issue_12_enrollment_checks_its_input_and_an_unreachable_server_leaves_no_profile() {
    let w = window().await;
    let (status, error) = w
        .post(
            "/api/enroll",
            r#"{"server":"ftp://x","user":"alice","code":"c"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = w
        .post(
            "/api/enroll",
            r#"{"server":"http://127.0.0.1:9","user":"al ice","code":"c"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Port 9 (discard) is closed on loopback: the server cannot be reached.
    let (status, error) = w
        .post(
            "/api/enroll",
            r#"{"server":"http://127.0.0.1:9","user":"alice","code":"c"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{error}");
    assert_eq!(error["code"], "offline");
    assert!(
        !w.home.join("vellum.db").exists(),
        "a refused enrollment must leave the device unenrolled on its next start"
    );
    let (_, session) = w.get("/api/session").await;
    assert_eq!(session["state"], "unenrolled");
}

#[tokio::test]
async fn issue_12_a_write_without_the_csrf_header_is_refused_before_any_handler() {
    let w = window().await;
    let (status, _) = w
        .send(
            Request::post("/api/enroll")
                .header(header::HOST, HOST)
                .header(header::COOKIE, &w.cookie)
                .body(Body::from(
                    r#"{"server":"http://127.0.0.1:9","user":"alice","code":"c"}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn issue_12_uploads_left_by_an_earlier_run_go_when_the_window_starts() {
    let home = tempfile::tempdir().unwrap();
    let left = home.path().join("app-uploads").join("ab".repeat(16));
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("draft.txt"), b"staged plaintext").unwrap();
    let (security, secret) = Security::new(HOST, Duration::from_secs(60));
    let (events, _) = tokio::sync::broadcast::channel(4);
    let router = app(AppState {
        device: DeviceHandle::spawn(Device::open(home.path()).unwrap()).unwrap(),
        security,
        events,
        home: Arc::new(home.path().to_owned()),
    });
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
    let session = router
        .oneshot(
            Request::get("/api/session")
                .header(header::HOST, HOST)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    assert!(
        !left.exists(),
        "a staged file of an earlier run is still there"
    );
}

/// Input the window refuses before it asks the device anything (so even unenrolled).
#[tokio::test]
async fn issue_12_bad_chat_and_message_input_is_refused_up_front() {
    let w = window().await;
    let long = "x".repeat(16 * 1024 + 1);
    let upload = "0".repeat(32);
    let cases = [
        (
            "/api/chats",
            r#"{"title":"   ","members":["bob"]}"#.to_owned(),
            400,
        ),
        (
            "/api/chats",
            r#"{"title":"ops","members":["b ob"]}"#.to_owned(),
            400,
        ),
        (
            "/api/chats",
            r#"{"title":"ops","expire_secs":0}"#.to_owned(),
            400,
        ),
        (
            "/api/chats",
            r#"{"title":"ops","class":"secret"}"#.to_owned(),
            400,
        ),
        (
            "/api/chats/c1/settings",
            r#"{"burn_secs":0}"#.to_owned(),
            400,
        ),
        ("/api/chats/c1/members", r#"{}"#.to_owned(), 400),
        (
            "/api/chats/c1/admins",
            r#"{"user":"","admin":true}"#.to_owned(),
            400,
        ),
        (
            "/api/chats/c1/messages",
            format!(r#"{{"text":" ","uploads":["{upload}"]}}"#),
            400,
        ),
        (
            "/api/chats/c1/messages",
            r#"{"text":"hi","uploads":["../../etc/passwd"]}"#.to_owned(),
            400,
        ),
        (
            "/api/chats/c1/messages",
            format!(r#"{{"text":"{long}","uploads":["{upload}"]}}"#),
            413,
        ),
        ("/api/devices/..%2Fx/approve", "{}".to_owned(), 400),
    ];
    for (path, body, want) in cases {
        let (status, error) = w.post(path, &body).await;
        assert_eq!(
            status.as_u16(),
            want,
            "{path} {}: {error}",
            &body[..body.len().min(60)]
        );
        assert!(error["code"].is_string(), "{error}");
    }
    let (status, _) = w.get("/api/chats/c1/messages/m1/files/first").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = w.get("/api/safety/a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A zero timer on one message is no timer: refused before the device is asked, as the
/// chat settings refuse it.
#[tokio::test]
async fn issue_12_a_message_with_a_zero_timer_is_400() {
    let w = window().await;
    for body in [
        r#"{"text":"hi","expire_secs":0}"#,
        r#"{"text":"hi","burn_secs":0}"#,
        r#"{"text":"hi","expire_secs":99999999999}"#,
    ] {
        let (status, error) = w.post("/api/chats/c1/messages", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], "bad_request", "{body}: {error}");
    }
    // A valid timer gets past the check (and meets the unenrolled device).
    let (status, error) = w
        .post(
            "/api/chats/c1/messages",
            r#"{"text":"hi","expire_secs":60}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
}

/// A file the page dropped before sending is zeroed and unlinked at once; an unknown id is
/// 404, a malformed one 400, and without the CSRF token nothing is removed.
#[tokio::test]
async fn issue_12_a_staged_upload_can_be_discarded() {
    let w = window().await;
    let id = "ab".repeat(16);
    let dir = w.home.join("app-uploads").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("draft.txt"), b"staged plaintext").unwrap();
    // A second name for the same bytes shows they were overwritten, not only unlinked.
    let witness = w.home.join("witness");
    std::fs::hard_link(dir.join("draft.txt"), &witness).unwrap();
    let delete = |path: String, csrf: bool| {
        let mut req = Request::delete(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, &w.cookie);
        if csrf {
            req = req.header("x-vellum-csrf", &w.csrf);
        }
        req.body(Body::empty()).unwrap()
    };
    let (status, _) = w.send(delete(format!("/api/uploads/{id}"), false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(dir.join("draft.txt").exists());
    let (status, error) = w.send(delete(format!("/api/uploads/{id}"), true)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{error}");
    assert!(!dir.exists());
    assert_eq!(std::fs::read(&witness).unwrap(), vec![0u8; 16]);
    let (status, _) = w.send(delete(format!("/api/uploads/{id}"), true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["..%2F..%2Fetc", "xyz", &"g".repeat(32)] {
        let (status, _) = w.send(delete(format!("/api/uploads/{bad}"), true)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}
