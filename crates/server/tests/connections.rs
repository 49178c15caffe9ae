//! The server on a real socket: header and idle timeouts, the connection cap, WebSocket
//! keepalive. Each server gets its own already-bound listener (port 0, never released).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::{engine::general_purpose::STANDARD, Engine};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use tower::ServiceExt;
use vellum_mls::{DeviceKey, OrgSigner};
use vellum_server::{app, AppState, ServerConfig};
use vellum_store::SqliteStore;
use vellum_wire::{request_signing_bytes, AuthHeaders};

const ADMIN_TOKEN: &str = "test-admin-token";
/// Long enough for anything these tests wait for; a hang fails instead of blocking CI.
const PATIENCE: Duration = Duration::from_secs(10);

async fn start(config: impl FnOnce(&mut ServerConfig)) -> (SocketAddr, Arc<AppState>) {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    config(&mut cfg);
    let state = Arc::new(AppState::new(
        cfg,
        Arc::new(SqliteStore::in_memory().unwrap()),
        OrgSigner::generate(),
        Sha256::digest(ADMIN_TOKEN.as_bytes()).into(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(vellum_server::run(listener, state.clone()));
    (addr, state)
}

/// Reads until the server closes the connection (a reset counts as closed).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

async fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

/// Sends a keep-alive request and reads its whole answer, leaving the connection open.
async fn keep_alive_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.ends_with(b"\r\n\r\nok") {
        let n = timeout(PATIENCE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed early: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_slow_loris_and_an_idle_connection_are_cut_off() {
    let (addr, _) = start(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let mut loris = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    read_until_closed(&mut loris).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    keep_alive_request(&mut idle).await;
    let quiet = Instant::now();
    read_until_closed(&mut idle).await;
    assert!(quiet.elapsed() >= Duration::from_millis(300));

    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn issue_7_a_connection_that_never_speaks_is_closed_and_frees_its_slot() {
    let (addr, _) = start(|c| {
        c.header_read_timeout = Duration::from_millis(300);
        c.max_connections = Some(1);
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    read_until_closed(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Its one slot is free again: a real request is served.
    let deadline = Instant::now() + PATIENCE;
    while !healthz(addr).await.starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the slot never came back");
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_clearly_and_slots_come_back() {
    let (addr, _) = start(|c| c.max_connections = Some(2)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        keep_alive_request(&mut stream).await;
        held.push(stream);
    }
    let refused = healthz(addr).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let body: Value = serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");

    // Once the holders hang up, their slots are free again: the server notices the close
    // on its own, so poll until it has.
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = healthz(addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::task::yield_now().await;
    }
    assert!(vellum_server::connection_cap_from_rlimit() >= 1);
}

/// Enrolls a device through the API of the running server's state.
async fn enroll(state: &Arc<AppState>) -> (String, DeviceKey) {
    let router = app(state.clone());
    let admin = Request::post("/v1/admin/users")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({ "name": "alice" }).to_string()))
        .unwrap();
    let response = router.clone().oneshot(admin).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let code: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    let key = DeviceKey::generate();
    let enroll = json!({ "user": "alice", "code": code["code"], "signature_key": STANDARD.encode(key.public_key()) });
    let response = router
        .oneshot(
            Request::post("/v1/enroll")
                .header("content-type", "application/json")
                .body(Body::from(enroll.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    (body["device_id"].as_str().unwrap().to_owned(), key)
}

fn ws_headers(device: &str, key: &DeviceKey, nonce: &str) -> Vec<(&'static str, String)> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = request_signing_bytes("GET", "/v1/ws", device, timestamp, nonce, b"");
    vec![
        (AuthHeaders::DEVICE, device.to_owned()),
        (AuthHeaders::TIMESTAMP, timestamp.to_string()),
        (AuthHeaders::NONCE, nonce.to_owned()),
        (AuthHeaders::SIGNATURE, STANDARD.encode(key.sign(&signed))),
    ]
}

#[tokio::test]
async fn an_idle_websocket_is_pinged_kept_while_it_answers_and_closed_when_it_stops() {
    let (addr, state) = start(|c| {
        // Far shorter than the ping period: keepalive is what holds the socket open.
        c.header_read_timeout = Duration::from_millis(100);
        c.ws_ping_interval = Duration::from_millis(100);
        c.ws_pong_timeout = Duration::from_millis(350);
    })
    .await;
    let (device, key) = enroll(&state).await;

    // A client that answers pings (tungstenite replies to them as it reads) stays connected
    // well past the pong timeout.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/v1/ws"
        ))
        .unwrap();
    for (name, value) in ws_headers(&device, &key, "ws-1") {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let started = Instant::now();
    let mut pings = 0;
    while pings < 8 {
        match timeout(PATIENCE, socket.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => pings += 1,
            Some(Ok(_)) => {}
            other => panic!("the socket ended while answering pings: {other:?}"),
        }
    }
    assert!(started.elapsed() > Duration::from_millis(700));
    drop(socket);

    // A client that goes silent (never answers a ping) is closed by the server.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let mut upgrade = format!(
        "GET /v1/ws HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in ws_headers(&device, &key, "ws-2") {
        upgrade.push_str(&format!("{name}: {value}\r\n"));
    }
    upgrade.push_str("\r\n");
    raw.write_all(upgrade.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut raw).await;
    assert!(
        received.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    // Unmasked server frames: 0x89 opens a ping.
    assert!(received.contains(&0x89), "no ping was sent before closing");
}
