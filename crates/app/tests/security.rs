//! Issue 12: the window answers only the browser that opened its launch URL. Driven through
//! the whole router (`app(state)`) with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vellum_app::security::{CSP, CSRF_HEADER};
use vellum_app::{app, AppState, Device, DeviceHandle, Security};

const AUTHORITY: &str = "127.0.0.1:4711";

fn state(ttl: Duration) -> (AppState, String, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let device = Device::open(home.path()).unwrap();
    let (security, secret) = Security::new(AUTHORITY, ttl);
    let (events, _) = tokio::sync::broadcast::channel(16);
    let state = AppState {
        device: DeviceHandle::spawn(device).unwrap(),
        security,
        events,
        home: Arc::new(home.path().to_owned()),
    };
    (state, secret, home)
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::HOST, AUTHORITY)
}

async fn send(state: &AppState, req: Request<Body>) -> Response<Body> {
    let response = app(state.clone()).oneshot(req).await.unwrap();
    // Every answer, refusals included, carries the CSP and is never cached.
    assert_eq!(response.headers()[header::CONTENT_SECURITY_POLICY], CSP);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    response
}

async fn body(response: Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Opens the window with the launch secret: the session cookie header and the CSRF token.
async fn session(state: &AppState, secret: &str) -> (String, String) {
    let opened = send(
        state,
        get(&format!("/open?secret={secret}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    let set = opened.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let answer = send(
        state,
        get("/api/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body(answer).await).unwrap();
    assert_eq!(json["state"], "unenrolled");
    (cookie, json["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn issue_12_without_the_cookie_the_api_is_401_and_the_page_has_no_content() {
    let (state, _secret, _home) = state(Duration::from_secs(60));
    let api = send(&state, get("/api/chats").body(Body::empty()).unwrap()).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let page = send(&state, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    let text = body(page).await;
    assert!(!text.contains("<script"), "{text}");
    assert!(!text.contains("app.js"), "{text}");
    let script = send(&state, get("/static/app.js").body(Body::empty()).unwrap()).await;
    assert_eq!(script.status(), StatusCode::UNAUTHORIZED);
    let events = send(&state, get("/api/events").body(Body::empty()).unwrap()).await;
    assert_eq!(events.status(), StatusCode::UNAUTHORIZED);
    // A made-up cookie of the right shape is no session either.
    let forged = send(
        &state,
        get("/api/session")
            .header(
                header::COOKIE,
                format!("vellum_app_4711={}", "a".repeat(64)),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issue_12_a_wrong_host_is_421_even_with_a_session() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let (cookie, _) = session(&state, &secret).await;
    for host in ["evil.example:4711", "localhost:4711", "127.0.0.1:4712"] {
        let answer = send(
            &state,
            Request::get("/api/session")
                .header(header::HOST, host)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    let none = send(
        &state,
        Request::get("/api/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(none.status(), StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn issue_12_other_origins_are_403() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let (cookie, csrf) = session(&state, &secret).await;
    let origin = send(
        &state,
        get("/api/session")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(origin.status(), StatusCode::FORBIDDEN);
    let site = send(
        &state,
        Request::post("/api/chats/c/read")
            .header(header::HOST, AUTHORITY)
            .header(header::COOKIE, &cookie)
            .header(CSRF_HEADER, &csrf)
            .header("sec-fetch-site", "cross-site")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"ids\":[]}"))
            .unwrap(),
    )
    .await;
    assert_eq!(site.status(), StatusCode::FORBIDDEN);
    // The launch URL itself refuses a cross-site navigation's exchange.
    let (state, secret, _home) = self::state(Duration::from_secs(60));
    let open = send(
        &state,
        get(&format!("/open?secret={secret}"))
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(open.status(), StatusCode::FORBIDDEN);
    // ... and the secret was not used up by it.
    session(&state, &secret).await;
}

#[tokio::test]
async fn issue_12_changes_need_the_sessions_csrf_token() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let (cookie, csrf) = session(&state, &secret).await;
    let post = |token: Option<&str>| {
        let mut req = Request::post("/api/chats/c/messages")
            .header(header::HOST, AUTHORITY)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            req = req.header(CSRF_HEADER, token);
        }
        req.body(Body::from("{\"text\":\"hello\"}")).unwrap()
    };
    assert_eq!(
        send(&state, post(None)).await.status(),
        StatusCode::FORBIDDEN
    );
    let wrong = "0".repeat(csrf.len());
    assert_eq!(
        send(&state, post(Some(&wrong))).await.status(),
        StatusCode::FORBIDDEN
    );
    // With the token the request reaches its handler: this device is not enrolled.
    let answer = send(&state, post(Some(&csrf))).await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert!(body(answer).await.contains("not_enrolled"));
}

#[tokio::test]
async fn issue_12_the_launch_secret_works_once() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let wrong = send(
        &state,
        get(&format!("/open?secret={}", "0".repeat(64)))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    session(&state, &secret).await;
    let again = send(
        &state,
        get(&format!("/open?secret={secret}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(again.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn issue_12_the_launch_secret_expires() {
    let (state, secret, _home) = state(Duration::from_millis(1));
    // Past its deadline (a wait on the clock itself, not on a condition).
    let deadline = std::time::Instant::now() + Duration::from_millis(5);
    while std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let late = send(
        &state,
        get(&format!("/open?secret={secret}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(late.status(), StatusCode::FORBIDDEN);
    assert!(late.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn issue_12_the_session_gets_the_page_and_the_event_stream() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let (cookie, _) = session(&state, &secret).await;
    let page = send(
        &state,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let events = send(
        &state,
        get("/api/events")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = events.into_body();
    state.events.send(vellum_app::AppEvent::Chats).unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), stream.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let data = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert_eq!(data, "data: {\"type\":\"chats\"}\n\n");
}

/// Issue 12: a used link says how to get a new window; the session says whether the
/// window is the app's own browser (only a launch handed to it is), so that the page can
/// warn that what another browser saves is not shredded.
#[tokio::test]
async fn issue_12_a_session_knows_whether_it_is_the_apps_own_browser() {
    let (state, secret, _home) = state(Duration::from_secs(60));
    let (cookie, _) = session(&state, &secret).await;
    let used = send(
        &state,
        get(&format!("/open?secret={secret}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(used.status(), StatusCode::FORBIDDEN);
    assert!(body(used)
        .await
        .contains("Run `vellum app` again to open a new window."));
    let session_json = |cookie: String| {
        let state = state.clone();
        async move {
            let answer = send(
                &state,
                get("/api/session")
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            serde_json::from_str::<serde_json::Value>(&body(answer).await).unwrap()
        }
    };
    assert_eq!(session_json(cookie).await["dedicated_browser"], false);

    // A launch handed to the app's own Chromium: its session says so.
    let dedicated = state.security.renew_launch_for(true);
    let (cookie, _) = session(&state, &dedicated).await;
    assert_eq!(session_json(cookie).await["dedicated_browser"], true);
    // Marked, then unmarked (the browser could not start): not dedicated.
    let fresh = state.security.renew_launch();
    state.security.set_launch_dedicated(true);
    state.security.set_launch_dedicated(false);
    let (cookie, _) = session(&state, &fresh).await;
    assert_eq!(session_json(cookie).await["dedicated_browser"], false);
}
