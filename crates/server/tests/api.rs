//! The HTTP API driven in-process with `oneshot`: every endpoint with good and bad input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;
use vellum_mls::mls_rs::storage_provider::in_memory::{
    InMemoryGroupStateStorage, InMemoryKeyPackageStorage,
};
use vellum_mls::mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{
    device_client, ChatPolicy, DeviceCertificate, DeviceClient, DeviceKey, OrgIdentityProvider,
    OrgSigner,
};
use vellum_server::{app, AppState, ServerConfig};
use vellum_store::{SqliteStore, Store};
use vellum_wire::{request_signing_bytes, AuthHeaders};

const ADMIN_TOKEN: &str = "test-admin-token";

struct Harness {
    app: Router,
    state: Arc<AppState>,
    store: Arc<SqliteStore>,
}

type Mls = DeviceClient<InMemoryGroupStateStorage, InMemoryKeyPackageStorage>;

struct TestDevice {
    id: String,
    key: DeviceKey,
    mls: Mls,
}

fn harness_with(config: impl FnOnce(&mut ServerConfig)) -> Harness {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    config(&mut cfg);
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let token_hash: [u8; 32] = Sha256::digest(ADMIN_TOKEN.as_bytes()).into();
    let state = Arc::new(AppState::new(
        cfg,
        store.clone(),
        OrgSigner::generate(),
        token_hash,
    ));
    Harness {
        app: app(state.clone()),
        state,
        store,
    }
}

fn harness() -> Harness {
    harness_with(|_| {})
}

/// A harness whose server reads the time from `clock`.
fn clocked_harness(
    clock: Arc<vellum_server::ManualClock>,
    config: impl FnOnce(&mut ServerConfig),
) -> Harness {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    config(&mut cfg);
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let token_hash: [u8; 32] = Sha256::digest(ADMIN_TOKEN.as_bytes()).into();
    let state = Arc::new(AppState::with_clock(
        cfg,
        store.clone(),
        OrgSigner::generate(),
        token_hash,
        clock,
    ));
    Harness {
        app: app(state.clone()),
        state,
        store,
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

fn admin(method: &str, path: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn signed_headers(
    device: &TestDevice,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let to_sign = request_signing_bytes(method, path, &device.id, timestamp, nonce, body);
    vec![
        (AuthHeaders::DEVICE, device.id.clone()),
        (AuthHeaders::TIMESTAMP, timestamp.to_string()),
        (AuthHeaders::NONCE, nonce.to_string()),
        (AuthHeaders::SIGNATURE, b64(&device.key.sign(&to_sign))),
    ]
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fresh_nonce() -> String {
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).unwrap();
    hex::encode(raw)
}

fn signed(device: &TestDevice, method: &str, path: &str, body: Option<Value>) -> Request<Body> {
    signed_at(device, method, path, body, now())
}

fn signed_at(
    device: &TestDevice,
    method: &str,
    path: &str,
    body: Option<Value>,
    timestamp: i64,
) -> Request<Body> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in signed_headers(device, method, path, &bytes, timestamp, &fresh_nonce()) {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(bytes)).unwrap()
}

impl Harness {
    /// One signed request from `device`.
    async fn call(
        &self,
        device: &TestDevice,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = signed(device, method, path, body.clone());
        let response = self.app.clone().oneshot(request).await.unwrap();
        if let Some(start) = response.headers().get(AuthHeaders::SERVER_START) {
            // As a device does: signed again from the second the server started (a store
            // on disk opened this very second refuses the second itself).
            let start: i64 = start.to_str().unwrap().parse().unwrap();
            return send(&self.app, signed_at(device, method, path, body, start)).await;
        }
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = match bytes.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        };
        (status, body)
    }

    async fn code_for(&self, user: &str) -> String {
        let (status, body) = send(
            &self.app,
            admin("POST", "/v1/admin/users", json!({ "name": user })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    async fn enroll(&self, user: &str) -> TestDevice {
        let code = self.code_for(user).await;
        self.enroll_with(user, &code).await
    }

    async fn enroll_with(&self, user: &str, code: &str) -> TestDevice {
        self.enroll_answered(user, code).await.0
    }

    /// Enrolls with `code`: the device and the server's whole answer.
    async fn enroll_answered(&self, user: &str, code: &str) -> (TestDevice, Value) {
        let key = DeviceKey::generate();
        let request =
            json!({ "user": user, "code": code, "signature_key": b64(&key.public_key()) });
        let (status, body) = send(
            &self.app,
            Request::post("/v1/enroll")
                .header("content-type", "application/json")
                .body(Body::from(request.to_string()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        use base64::Engine;
        let decode = |v: &Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        let identity = OrgIdentityProvider::from_bytes(&decode(&body["org_key"])).unwrap();
        let cert =
            DeviceCertificate::verify(&decode(&body["credential"]), identity.org_key()).unwrap();
        let mls = device_client(
            &cert,
            &key,
            identity,
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        );
        let device = TestDevice {
            id: body["device_id"].as_str().unwrap().to_owned(),
            key,
            mls,
        };
        (device, body)
    }

    async fn upload_key_packages(&self, device: &TestDevice, n: usize) {
        let kps: Vec<String> = (0..n)
            .map(|_| {
                b64(&device
                    .mls
                    .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
                    .unwrap()
                    .to_bytes()
                    .unwrap())
            })
            .collect();
        let (status, body) = send(
            &self.app,
            signed(
                device,
                "POST",
                "/v1/key-packages",
                Some(json!({ "key_packages": kps })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    /// alice creates a group and adds `others`; returns alice's group and the group id.
    async fn group(
        &self,
        alice: &TestDevice,
        others: &[&TestDevice],
    ) -> (
        vellum_mls::mls_rs::group::Group<impl vellum_mls::mls_rs::client_builder::MlsConfig>,
        String,
    ) {
        self.group_with(alice, others, ChatPolicy::default()).await
    }

    async fn group_with(
        &self,
        alice: &TestDevice,
        others: &[&TestDevice],
        policy: ChatPolicy,
    ) -> (
        vellum_mls::mls_rs::group::Group<impl vellum_mls::mls_rs::client_builder::MlsConfig>,
        String,
    ) {
        let mut group = alice
            .mls
            .create_group(
                policy.to_extensions(ExtensionList::new()),
                Default::default(),
                None,
            )
            .unwrap();
        let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
        let (status, body) = send(
            &self.app,
            signed(
                alice,
                "POST",
                "/v1/groups",
                Some(json!({ "group_info": b64(&info) })),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let group_id = body["group_id"].as_str().unwrap().to_owned();
        if !others.is_empty() {
            let mut builder = group.commit_builder();
            for other in others {
                let kp = other
                    .mls
                    .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
                    .unwrap();
                builder = builder.add_member(kp).unwrap();
            }
            let out = builder.build().unwrap();
            let request = commit_json(&out);
            let (status, body) = send(
                &self.app,
                signed(
                    alice,
                    "POST",
                    &format!("/v1/groups/{group_id}/commits"),
                    Some(request),
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            group.apply_pending_commit().unwrap();
        }
        (group, group_id)
    }
}

/// The body of `POST /v1/groups/{id}/commits` for a commit built here.
fn commit_json(out: &vellum_mls::mls_rs::group::CommitOutput) -> Value {
    let mut request = json!({ "commit": b64(&out.commit_message.to_bytes().unwrap()) });
    if let Some(welcome) = out.welcome_messages.first() {
        request["welcome"] = json!(b64(&welcome.to_bytes().unwrap()));
    }
    request
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn healthz_and_openapi_document_every_route() {
    let h = harness();
    let (status, body) = send(
        &h.app,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, Value::String("ok".into())));
    let (status, doc) = send(
        &h.app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths documented", paths.len());
    for (path, item) in paths {
        // Concrete values for path parameters: what the router must match, not validate.
        let concrete = path
            .replace("{group_id}", "00ff")
            .replace("{seq}", "1")
            .replace("{name}", "alice")
            .replace("{device_id}", "00ff")
            .replace("{blob_id}", "00ff")
            .replace("{index}", "0");
        for method in ["get", "post", "put", "delete", "patch"] {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let (status, body) = send(&h.app, request).await;
            let Some(operation) = item.get(method) else {
                // Every method the document leaves out is refused as JSON by the router.
                assert_error(
                    status,
                    &body,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                );
                continue;
            };
            // Every documented operation is served: the router matched it (no 404 or 405 of
            // its own; without credentials the protected ones answer 401).
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body["code"] == "not_found"),
                "{method} {path} is documented but not routed: {body}"
            );
            // Every admin route is behind the token, whatever its documentation says.
            if operation.get("security").is_some() || path.starts_with("/v1/admin/") {
                assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
            }
            // Request and response schemas: a success and the JSON error of every operation.
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path} documents no success"
            );
            if ["/healthz", "/openapi.json"].contains(&path.as_str()) {
                continue;
            }
            assert_eq!(
                responses["4XX"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ApiError",
                "{method} {path} documents no error body"
            );
            let bodiless = [
                "/devices",
                "/replace-archiver",
                "/revoke",
                "/reset",
                "/complete",
                "/archived",
            ]
            .iter()
            .any(|end| path.ends_with(end));
            if ["post", "put"].contains(&method) && !bodiless {
                let content = &operation["requestBody"]["content"];
                assert!(
                    content["application/json"]["schema"].is_object()
                        || content["application/octet-stream"]["schema"].is_object(),
                    "{method} {path} documents no request body"
                );
            }
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in [
        "device_id",
        "device_timestamp",
        "device_nonce",
        "device_signature",
        "admin_token",
    ] {
        assert!(schemes.contains_key(scheme), "{scheme} missing");
    }
    let (status, body) = send(&h.app, Request::get("/debug").body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn admin_endpoints_need_the_token() {
    let h = harness();
    let unauthenticated = Request::post("/v1/admin/users")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"alice"}"#))
        .unwrap();
    let (status, body) = send(&h.app, unauthenticated).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let wrong = Request::post("/v1/admin/users")
        .header("authorization", "Bearer nope")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"alice"}"#))
        .unwrap();
    let (status, body) = send(&h.app, wrong).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        !h.store.user_exists("alice").await.unwrap(),
        "a refused request changed nothing"
    );

    h.code_for("alice").await;
    let (status, body) = send(
        &h.app,
        admin("POST", "/v1/admin/users", json!({ "name": "alice" })),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    for bad in ["", "Alice", "a/b", "x".repeat(65).as_str(), "al ice"] {
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/users", json!({ "name": bad })),
        )
        .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = send(
        &h.app,
        admin("POST", "/v1/admin/users", json!({ "nom": "x" })),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = send(
        &h.app,
        admin("POST", "/v1/admin/users/nobody/devices", json!({})),
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_user");
}

#[tokio::test]
async fn enrollment_code_works_once_for_its_user_only() {
    let h = harness();
    let code = h.code_for("alice").await;
    h.code_for("bob").await;
    let attempt = |user: &str, code: &str, key: Vec<u8>| {
        Request::post("/v1/enroll")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({ "user": user, "code": code, "signature_key": b64(&key) }).to_string(),
            ))
            .unwrap()
    };
    let key = DeviceKey::generate().public_key().to_vec();
    let (status, body) = send(&h.app, attempt("bob", &code, key.clone())).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "invalid_enrollment_code",
    );
    let (status, body) = send(&h.app, attempt("alice", &code, vec![1, 2, 3])).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = send(&h.app, attempt("alice", "0000", key.clone())).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "invalid_enrollment_code",
    );

    h.enroll_with("alice", &code).await;
    let (status, body) = send(
        &h.app,
        attempt("alice", &code, DeviceKey::generate().public_key().to_vec()),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "invalid_enrollment_code",
    );
    assert_eq!(
        h.store.user_devices("alice").await.unwrap().len(),
        1,
        "the second use enrolled nothing"
    );
    assert!(h.store.user_devices("bob").await.unwrap().is_empty());

    let truncated = Request::post("/v1/enroll")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"user":"alice","code":"#))
        .unwrap();
    let (status, body) = send(&h.app, truncated).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn device_requests_must_be_signed_fresh_and_unique() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let path = "/v1/key-packages/count";

    let (status, body) = send(&h.app, Request::get(path).body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Signed by bob's key but claiming to be alice.
    let mut forged = Request::get(path);
    let ts = now();
    let to_sign = request_signing_bytes("GET", path, &alice.id, ts, "n1", b"");
    for (name, value) in [
        (AuthHeaders::DEVICE, alice.id.clone()),
        (AuthHeaders::TIMESTAMP, ts.to_string()),
        (AuthHeaders::NONCE, "n1".into()),
        (AuthHeaders::SIGNATURE, b64(&bob.key.sign(&to_sign))),
    ] {
        forged = forged.header(name, value);
    }
    let (status, body) = send(&h.app, forged.body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // An absurd timestamp is refused, not a panic.
    let mut absurd = Request::get(path);
    for (name, value) in signed_headers(&alice, "GET", path, b"", i64::MIN, "n0") {
        absurd = absurd.header(name, value);
    }
    let (status, body) = send(&h.app, absurd.body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // A stale timestamp, validly signed.
    let mut stale = Request::get(path);
    for (name, value) in signed_headers(&alice, "GET", path, b"", now() - 3600, "n2") {
        stale = stale.header(name, value);
    }
    let (status, body) = send(&h.app, stale.body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // The signature covers the body: the same headers with another body fail.
    let headers = signed_headers(
        &alice,
        "POST",
        "/v1/ack",
        br#"{"welcomes":[],"cursors":[]}"#,
        now(),
        "n3",
    );
    let mut tampered = Request::post("/v1/ack").header("content-type", "application/json");
    for (name, value) in &headers {
        tampered = tampered.header(*name, value);
    }
    let (status, body) = send(
        &h.app,
        tampered
            .body(Body::from(r#"{"welcomes":[1],"cursors":[]}"#))
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // A replay of a request that succeeded.
    let headers = signed_headers(&alice, "GET", path, b"", now(), "n4");
    let build = || {
        let mut r = Request::get(path);
        for (name, value) in &headers {
            r = r.header(*name, value);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _) = send(&h.app, build()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&h.app, build()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "replayed_request");

    // An unknown device.
    let ghost = TestDevice {
        id: "ghost".into(),
        key: DeviceKey::generate(),
        mls: alice.mls,
    };
    let (status, body) = h.call(&ghost, "GET", path, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
}

/// Nonces live in memory, so a restart forgets them: requests timestamped before the server
/// started are refused with a code of their own and the start second, for the client to
/// sign again; the start second itself is accepted.
#[tokio::test]
async fn issue_7_requests_from_before_the_server_started_are_signed_again() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let path = "/v1/key-packages/count";
    let request = |ts: i64| {
        let mut r = Request::get(path);
        for (name, value) in signed_headers(&alice, "GET", path, b"", ts, &fresh_nonce()) {
            r = r.header(name, value);
        }
        r.body(Body::empty()).unwrap()
    };
    // Well inside the clock-skew window, but before this server's store was opened.
    let response = h.app.clone().oneshot(request(now() - 120)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let started: i64 = response.headers()[AuthHeaders::SERVER_START]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(started > now() - 120 && started <= now());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["code"], vellum_wire::codes::BEFORE_SERVER_START);
    let (status, _) = send(&h.app, request(started)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the start second itself is accepted"
    );
}

#[tokio::test]
async fn oversized_bodies_and_messages_are_refused() {
    let h = harness_with(|c| {
        c.max_body_bytes = 4096;
        c.max_message_bytes = 512;
    });
    let alice = h.enroll("alice").await;
    let huge = json!({ "key_packages": ["A".repeat(8192)] });
    let (status, body) = h.call(&alice, "POST", "/v1/key-packages", Some(huge)).await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let (mut group, group_id) = h.group(&alice, &[]).await;
    let big = group
        .encrypt_application_message(&[7u8; 1024], vec![])
        .unwrap()
        .to_bytes()
        .unwrap();
    let request = json!({ "client_msg_id": "m1", "message": b64(&big) });
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &format!("/v1/groups/{group_id}/messages"),
            Some(request),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        h.store
            .pending(&alice.id, 10)
            .await
            .unwrap()
            .groups
            .is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn key_packages_are_checked_and_claimed_once() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;

    // Bob cannot upload a key package of alice's, nor garbage.
    let alices = b64(&alice
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap()
        .to_bytes()
        .unwrap());
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages",
            Some(json!({ "key_packages": [alices] })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages",
            Some(json!({ "key_packages": [b64(b"garbage")] })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_mls");
    assert_eq!(
        h.store.key_package_count(&bob.id).await.unwrap(),
        (0, false)
    );

    let claim = |users: Value| {
        signed(
            &alice,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": users })),
        )
    };
    let (status, body) = send(&h.app, claim(json!(["bob"]))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_key_package");
    let (status, body) = send(&h.app, claim(json!(["nobody"]))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_user");

    h.upload_key_packages(&bob, 1).await;
    let (status, body) = send(&h.app, claim(json!(["bob", "nobody"]))).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_user");
    assert_eq!(
        h.store.key_package_count(&bob.id).await.unwrap(),
        (1, false),
        "a failed claim consumed nothing"
    );
    let (status, body) = send(&h.app, claim(json!(["bob"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key_packages"][0]["device_id"], bob.id.as_str());
    let (status, body) = send(&h.app, claim(json!(["bob"]))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_key_package");
}

#[tokio::test]
async fn commits_are_ordered_and_bad_ones_change_nothing() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    let commits = format!("/v1/groups/{group_id}/commits");

    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups",
            Some(json!({ "group_info": b64(b"\x00\x01junk") })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_mls");

    let kp = carol
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap();
    let out = group
        .commit_builder()
        .add_member(kp)
        .unwrap()
        .build()
        .unwrap();
    let commit = out.commit_message.to_bytes().unwrap();
    let welcome = b64(&out.welcome_messages[0].to_bytes().unwrap());

    // Truncated, garbage, and missing-Welcome commits are refused.
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &commits,
            Some(json!({ "commit": b64(&commit[..commit.len() / 2]), "welcome": welcome })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_mls");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &commits,
            Some(json!({ "commit": b64(&commit) })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Bob is a member but did not sign this commit.
    let (status, body) = h
        .call(
            &bob,
            "POST",
            &commits,
            Some(json!({ "commit": b64(&commit), "welcome": welcome })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Carol is not a member at all.
    let (status, body) = h
        .call(
            &carol,
            "POST",
            &commits,
            Some(json!({ "commit": b64(&commit), "welcome": welcome })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups/00ff/commits",
            Some(json!({ "commit": b64(&commit), "welcome": welcome })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_chat");
    assert_eq!(
        h.store.group(&group_id).await.unwrap().unwrap().epoch,
        1,
        "nothing changed"
    );

    let request = json!({ "commit": b64(&commit), "welcome": welcome });
    let (status, first) = h
        .call(&alice, "POST", &commits, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // The same commit again (a retry) is acknowledged with the same seq, not appended twice.
    let (status, again) = h.call(&alice, "POST", &commits, Some(request)).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    group.apply_pending_commit().unwrap();

    // Bob, still at the old epoch, loses the race with a clear stale-epoch error.
    let welcome = h.store.pending(&bob.id, 10).await.unwrap().welcomes[0]
        .payload
        .clone();
    let (mut bob_group, _) = bob
        .mls
        .join_group(None, &MlsMessage::from_bytes(&welcome).unwrap(), None)
        .unwrap();
    let stale = bob_group.commit_builder().build().unwrap();
    let (status, body) = h
        .call(&bob, "POST", &commits, Some(commit_json(&stale)))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_epoch");
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 2);
}

#[tokio::test]
async fn messages_need_membership_current_epoch_and_are_idempotent() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let (mut group, group_id) = h.group(&alice, &[]).await;
    let (mut other, other_id) = h.group(&bob, &[]).await;
    let messages = format!("/v1/groups/{group_id}/messages");

    let ct = b64(&group
        .encrypt_application_message(b"hello", vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let request = json!({ "client_msg_id": "m1", "message": ct });
    let (status, first) = h
        .call(&alice, "POST", &messages, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = h.call(&alice, "POST", &messages, Some(request)).await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &first),
        "a retried send is acknowledged once"
    );
    assert_eq!(
        h.store.pending(&alice.id, 10).await.unwrap().groups[0]
            .1
            .len(),
        1
    );

    // Bob is not a member of alice's group.
    let (status, body) = h
        .call(
            &bob,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "b1", "message": ct })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    // A message of another group posted here.
    let foreign = b64(&other
        .encrypt_application_message(b"x", vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "m2", "message": foreign })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // A commit is not an application message.
    let commit = b64(&group
        .commit_builder()
        .build()
        .unwrap()
        .commit_message
        .to_bytes()
        .unwrap());
    group.clear_pending_commit();
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "m3", "message": commit })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Garbage and bad ids.
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "m4", "message": b64(b"junk") })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_mls");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "", "message": ct })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &format!("/v1/groups/{other_id}/messages"),
            Some(json!({ "client_msg_id": "m5", "message": foreign })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");

    // After a commit, a message encrypted at the old epoch is stale.
    let old = b64(&group
        .encrypt_application_message(b"old", vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let out = group.commit_builder().build().unwrap();
    let (status, _) = h
        .call(
            &alice,
            "POST",
            &format!("/v1/groups/{group_id}/commits"),
            Some(commit_json(&out)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(json!({ "client_msg_id": "m6", "message": old })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_epoch");
    assert_eq!(
        h.store.pending(&alice.id, 10).await.unwrap().groups[0]
            .1
            .len(),
        2,
        "only the first message and the commit"
    );
}

#[tokio::test]
async fn sync_and_ack_deliver_in_order_and_reject_bad_cursors() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    for i in 0..3 {
        let ct = b64(&group
            .encrypt_application_message(format!("m{i}").as_bytes(), vec![])
            .unwrap()
            .to_bytes()
            .unwrap());
        let (status, _) = h
            .call(
                &alice,
                "POST",
                &format!("/v1/groups/{group_id}/messages"),
                Some(json!({ "client_msg_id": format!("m{i}"), "message": ct })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, sync) = h.call(&bob, "GET", "/v1/sync?limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["welcomes"].as_array().unwrap().len(), 1);
    assert_eq!(sync["more"], true);
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [], "cursors": [{ "group_id": group_id, "seq": 99 }] })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [], "cursors": [{ "group_id": "nope", "seq": 1 }] })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    let (status, body) = h
        .call(&bob, "POST", "/v1/ack", Some(json!({ "welcomes": "all" })))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    let welcome_id = sync["welcomes"][0]["id"].clone();
    // An ack is all or nothing (issue 13): a bad cursor after a good one keeps the Welcome
    // and the good cursor's entries pending.
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [welcome_id], "cursors": [
                { "group_id": group_id, "seq": 3 },
                { "group_id": group_id, "seq": 99 },
            ] })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // Longer than one sync hands out, or ids past i64: refused before the store is touched
    // (a long ack would hold the write lock of every node sharing the database).
    let too_many: Vec<u64> = (0..=500).collect();
    for body in [
        json!({ "welcomes": too_many, "cursors": [] }),
        json!({ "welcomes": [], "cursors": [], "receipts": too_many }),
        json!({ "welcomes": [], "cursors": too_many.iter().map(|_| json!({ "group_id": group_id, "seq": 1 })).collect::<Vec<_>>() }),
        json!({ "welcomes": [welcome_id], "cursors": [{ "group_id": group_id, "seq": u64::MAX }] }),
        json!({ "welcomes": [1u64 << 63], "cursors": [] }),
        json!({ "welcomes": [], "cursors": [], "receipts": [u64::MAX] }),
    ] {
        let (status, answer) = h.call(&bob, "POST", "/v1/ack", Some(body)).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (_, unchanged) = h.call(&bob, "GET", "/v1/sync?limit=2", None).await;
    assert_eq!(unchanged, sync, "a refused ack changes nothing");
    let (status, _) = h.call(&bob, "POST", "/v1/ack", Some(json!({ "welcomes": [welcome_id], "cursors": [{ "group_id": group_id, "seq": 3 }] }))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, sync) = h.call(&bob, "GET", "/v1/sync", None).await;
    let seqs: Vec<u64> = sync["groups"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4]);
    assert!(sync["welcomes"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn each_device_is_rate_limited() {
    let h = harness_with(|c| {
        c.rate_per_sec = 0.0;
        c.rate_burst = 3.0;
    });
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    for _ in 0..3 {
        let (status, _) = h.call(&alice, "GET", "/v1/key-packages/count", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = h.call(&alice, "GET", "/v1/key-packages/count", None).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let (status, _) = h.call(&bob, "GET", "/v1/key-packages/count", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another device is not limited by alice's traffic"
    );
}

fn admin_put(body: &str) -> Request<Body> {
    Request::put("/v1/admin/policy")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn issue_3_org_timer_bounds_are_enforced_on_the_public_handshake() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let unauthenticated = Request::put("/v1/admin/policy")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = send(&h.app, unauthenticated).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    for bad in [
        r#"{"max_expire_secs": -1}"#,
        r#"{"max_expire": 5}"#,
        r#"{"max_expire_secs": 315360001}"#,
        "nope",
    ] {
        let (status, body) = send(&h.app, admin_put(bad)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(
        h.store.org_policy().await.unwrap(),
        vellum_wire::OrgPolicy::default(),
        "refusals changed nothing"
    );
    let (status, policy) = send(
        &h.app,
        admin_put(r#"{"max_expire_secs": 3600, "max_burn_secs": 60, "allow_no_expiry": false}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{policy}");
    let (status, seen) = h.call(&alice, "GET", "/v1/policy", None).await;
    assert_eq!((status, &seen), (StatusCode::OK, &policy));
    assert_eq!(seen["max_expire_secs"], 3600);

    // A chat without a timer, or with one above the maximum, is refused at creation.
    for policy in [
        ChatPolicy::default(),
        ChatPolicy {
            expire_secs: Some(7200),
            burn_secs: None,
        },
        ChatPolicy {
            expire_secs: Some(600),
            burn_secs: Some(61),
        },
    ] {
        let group = alice
            .mls
            .create_group(
                policy.to_extensions(ExtensionList::new()),
                Default::default(),
                None,
            )
            .unwrap();
        let info = b64(&group.group_info_message(true).unwrap().to_bytes().unwrap());
        let (status, body) = h
            .call(
                &alice,
                "POST",
                "/v1/groups",
                Some(json!({ "group_info": info })),
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_violation",
        );
    }
    let ten_minutes = ChatPolicy {
        expire_secs: Some(600),
        burn_secs: Some(30),
    };
    let (mut group, group_id) = h.group_with(&alice, &[], ten_minutes).await;
    assert_eq!(
        h.store
            .group(&group_id)
            .await
            .unwrap()
            .unwrap()
            .timers
            .expire_secs,
        Some(600)
    );

    // Changing the timers by commit: beyond the bounds is refused, within them accepted.
    let commits = format!("/v1/groups/{group_id}/commits");
    let too_long = ChatPolicy {
        expire_secs: Some(7200),
        burn_secs: None,
    }
    .to_extensions(group.context().extensions.clone());
    let out = group
        .commit_builder()
        .set_group_context_ext(too_long)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    group.clear_pending_commit();
    assert_eq!(
        h.store.group(&group_id).await.unwrap().unwrap().epoch,
        0,
        "nothing changed"
    );
    let shorter = ChatPolicy {
        expire_secs: Some(300),
        burn_secs: None,
    }
    .to_extensions(group.context().extensions.clone());
    let out = group
        .commit_builder()
        .set_group_context_ext(shorter)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        h.store
            .group(&group_id)
            .await
            .unwrap()
            .unwrap()
            .timers
            .expire_secs,
        Some(300)
    );
}

#[tokio::test]
async fn issue_3_expired_ciphertext_is_purged_undelivered_and_only_senders_delete_for_everyone() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let minute = ChatPolicy {
        expire_secs: Some(60),
        burn_secs: None,
    };
    let (mut group, group_id) = h.group_with(&alice, &[&bob], minute).await;
    let messages = format!("/v1/groups/{group_id}/messages");
    let post =
        |id: &str, expires_at: Option<i64>, group: &mut vellum_mls::mls_rs::group::Group<_>| {
            let ct = b64(&group
                .encrypt_application_message(id.as_bytes(), vec![])
                .unwrap()
                .to_bytes()
                .unwrap());
            json!({ "client_msg_id": id, "message": ct, "expires_at": expires_at })
        };
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(post("neg", Some(-5), &mut group)),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Asks for an hour; the chat allows a minute: the server keeps it a minute at most.
    let (status, long) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(post("long", Some(now + 3_600_000), &mut group)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{long}");
    // Already expired when it arrives: purged by the next sweep, never delivered.
    let (status, _) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(post("gone", Some(now - 1), &mut group)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(vellum_server::purge_expired(&h.state).await.unwrap(), 1);
    let pending = h.store.pending(&bob.id, 100).await.unwrap();
    assert_eq!(
        pending.groups[0].1.len(),
        1,
        "only the live message is left for bob"
    );
    assert_eq!(h.store.purge_expired(now + 59_000, 0).await.unwrap(), 0);
    assert_eq!(
        h.store
            .purge_expired(now + 61_000 + 5_000, 0)
            .await
            .unwrap(),
        1,
        "clamped to the chat's minute"
    );

    // Delete for everyone.
    let (_, kept) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(post("kept", None, &mut group)),
        )
        .await;
    let seq = kept["seq"].as_u64().unwrap();
    let (status, body) = h
        .call(&bob, "DELETE", &format!("{messages}/{seq}"), None)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = h
        .call(&alice, "DELETE", &format!("{messages}/1"), None)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = h
        .call(
            &alice,
            "DELETE",
            &format!("/v1/groups/00ff/messages/{seq}"),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_chat");
    let (status, body) = h
        .call(&alice, "DELETE", &format!("{messages}/not-a-number"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        h.store.pending(&bob.id, 100).await.unwrap().groups[0]
            .1
            .len(),
        1,
        "refusals changed nothing"
    );
    let (status, _) = h
        .call(&alice, "DELETE", &format!("{messages}/{seq}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h
        .store
        .pending(&bob.id, 100)
        .await
        .unwrap()
        .groups
        .is_empty());
    let (status, body) = h
        .call(&alice, "DELETE", &format!("{messages}/{seq}"), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn issue_4_admin_status_and_metrics_report_records_configuration() {
    let h = harness();
    let (status, body) = send(
        &h.app,
        Request::get("/v1/admin/status")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = send(
        &h.app,
        Request::get("/v1/admin/metrics")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let get = |path: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = send(&h.app, get("/v1/admin/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records_configured"], false);
    assert!(body["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not configured"));
    let (status, body) = send(&h.app, get("/v1/admin/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str().unwrap().contains("vellum_archiver_backlog 0"),
        "{body}"
    );
    // records init refuses a malformed records.pub, and changes nothing.
    let (status, body) = send(
        &h.app,
        admin(
            "POST",
            "/v1/admin/records",
            json!({ "records_public": "{}" }),
        ),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(!h
        .store
        .user_exists(vellum_wire::RECORDS_USER)
        .await
        .unwrap());
    let public = vellum_records::generate(3, 2, "records.test/vellum")
        .unwrap()
        .public
        .to_json();
    let (status, body) = send(
        &h.app,
        admin(
            "POST",
            "/v1/admin/records",
            json!({ "records_public": public }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(
        &h.app,
        admin(
            "POST",
            "/v1/admin/records",
            json!({ "records_public": public }),
        ),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn issue_4_a_record_chat_always_keeps_the_archiver() {
    use vellum_mls::RecordChat;
    let h = harness();
    let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let public = (generated.public.to_json(), generated);
    let (status, code) = send(
        &h.app,
        admin(
            "POST",
            "/v1/admin/records",
            json!({ "records_public": public.0 }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let archiver = h
        .enroll_with(vellum_wire::RECORDS_USER, code["code"].as_str().unwrap())
        .await;
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let records = Records::with_public(public);
    let (status, body) = records.bind(&h, &archiver, 1, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A record chat naming the archiver, which joins in the first commit.
    let extensions = RecordChat::new(&archiver.id).add_to(ExtensionList::new());
    let mut group = alice
        .mls
        .create_group(extensions, Default::default(), None)
        .unwrap();
    let info = b64(&group.group_info_message(true).unwrap().to_bytes().unwrap());
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups",
            Some(json!({ "group_info": info })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group_id = body["group_id"].as_str().unwrap().to_owned();
    let commits = format!("/v1/groups/{group_id}/commits");

    // Adding bob without the archiver: refused.
    let kp = |d: &TestDevice| {
        d.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    };
    let out = group
        .commit_builder()
        .add_member(kp(&bob))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    group.clear_pending_commit();
    let out = group
        .commit_builder()
        .add_member(kp(&bob))
        .unwrap()
        .add_member(kp(&archiver))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    group.apply_pending_commit().unwrap();

    let org_key = h.state.org.public_key();
    let archiver_index = group
        .roster()
        .members_iter()
        .find(|m| {
            vellum_mls::DeviceCertificate::from_signing_identity(&m.signing_identity, &org_key)
                .is_ok_and(|c| c.device_id == archiver.id)
        })
        .expect("the archiver is a member")
        .index;
    // Removing the archiver, or turning the chat transitory to do so: both refused.
    let out = group
        .commit_builder()
        .remove_member(archiver_index)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    group.clear_pending_commit();
    let mut transitory = group.context().extensions.clone();
    transitory.remove(vellum_mls::RECORD_CHAT_EXTENSION);
    let out = group
        .commit_builder()
        .set_group_context_ext(transitory)
        .unwrap()
        .remove_member(archiver_index)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    group.clear_pending_commit();
    assert_eq!(
        h.store.group(&group_id).await.unwrap().unwrap().epoch,
        1,
        "nothing changed"
    );
}

#[tokio::test]
async fn issue_7_every_error_is_json_with_a_code() {
    let h = harness_with(|c| c.max_body_bytes = 1024);
    let alice = h.enroll("alice").await;
    // 404: no such route.
    let (status, body) = send(
        &h.app,
        Request::get("/nowhere").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // 405: a route that exists, with the wrong method.
    let (status, body) = send(
        &h.app,
        Request::delete("/v1/enroll").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // 415: a JSON route without a JSON content type.
    let (status, body) = send(
        &h.app,
        Request::post("/v1/enroll")
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // 413: a body over the limit, on an open route and on an admin route.
    for path in ["/v1/enroll", "/v1/admin/users"] {
        let huge =
            json!({ "name": "a".repeat(4096), "user": "a", "code": "b", "signature_key": "" });
        let (status, body) = send(&h.app, admin("POST", path, huge)).await;
        assert_error(
            status,
            &body,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );
    }
    // 400: a JSON body of the wrong shape.
    let (status, body) = send(
        &h.app,
        admin("POST", "/v1/admin/users", json!({ "nom": 1 })),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // 400: a bad path value and a bad query value, on signed requests.
    let (status, body) = h
        .call(
            &alice,
            "DELETE",
            "/v1/groups/00ff/messages/not-a-number",
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h.call(&alice, "GET", "/v1/sync?limit=-3", None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // 400: a WebSocket route asked without an upgrade.
    let (status, body) = h.call(&alice, "GET", "/v1/ws", None).await;
    assert!(status.is_client_error(), "{status}");
    assert!(body["code"].is_string(), "{body}");
}

#[tokio::test]
async fn issue_7_a_timeout_is_a_json_408() {
    let h = harness_with(|c| c.request_timeout = std::time::Duration::from_millis(50));
    let alice = h.enroll("alice").await;
    // The body never finishes arriving: the request times out, even inside authentication
    // (the device is known, so the body is read; a stranger's would not be).
    let (_tx, body) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    let stream = tokio_stream_from(body);
    let request = Request::post("/v1/ack")
        .header("content-type", "application/json")
        .header(AuthHeaders::DEVICE, &alice.id)
        .header(AuthHeaders::TIMESTAMP, now().to_string())
        .header(AuthHeaders::NONCE, "n")
        .header(AuthHeaders::SIGNATURE, "AAAA")
        .body(Body::from_stream(stream))
        .unwrap();
    let (status, body) = send(&h.app, request).await;
    assert_error(status, &body, StatusCode::REQUEST_TIMEOUT, "timeout");
}

/// A body stream that yields whatever the channel sends and ends when it closes.
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[tokio::test]
async fn issue_7_the_rate_limiter_refills_with_the_injected_clock() {
    let clock = Arc::new(vellum_server::ManualClock::at_system_time());
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    cfg.rate_per_sec = 1.0;
    cfg.rate_burst = 2.0;
    let token_hash: [u8; 32] = Sha256::digest(ADMIN_TOKEN.as_bytes()).into();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let state = Arc::new(AppState::with_clock(
        cfg,
        store.clone(),
        OrgSigner::generate(),
        token_hash,
        clock.clone(),
    ));
    let h = Harness {
        app: app(state.clone()),
        state,
        store,
    };
    let alice = h.enroll("alice").await;
    let count = "/v1/key-packages/count";
    for _ in 0..2 {
        assert_eq!(h.call(&alice, "GET", count, None).await.0, StatusCode::OK);
    }
    let (status, body) = h.call(&alice, "GET", count, None).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    clock.advance(1_000);
    assert_eq!(
        h.call(&alice, "GET", count, None).await.0,
        StatusCode::OK,
        "one second at 1/s gives one request back"
    );
    let (status, body) = h.call(&alice, "GET", count, None).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Enrollment codes expire by the same clock.
    let code = h.code_for("bob").await;
    clock.advance(8 * 24 * 3600 * 1000);
    let key = DeviceKey::generate();
    let request = json!({ "user": "bob", "code": code, "signature_key": b64(&key.public_key()) });
    let (status, body) = send(
        &h.app,
        Request::post("/v1/enroll")
            .header("content-type", "application/json")
            .body(Body::from(request.to_string()))
            .unwrap(),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "invalid_enrollment_code",
    );
}

/// Two nodes over one database, each with its own cache of groups' public state: two commits
/// for the same epoch give exactly one winner and one `409 stale_epoch`, and a node whose
/// cached state is behind the database reloads instead of trusting it.
#[tokio::test]
async fn issue_7_one_winner_per_epoch_across_nodes_whatever_the_cache_holds() {
    let h = harness();
    let node_b = app(Arc::new(AppState::new(
        h.state.config.clone(),
        h.store.clone(),
        OrgSigner::from_seed(&h.state.org.seed()).unwrap(),
        h.state.admin_token_hash,
    )));
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    let commits = format!("/v1/groups/{group_id}/commits");
    let welcome = h.store.pending(&bob.id, 10).await.unwrap().welcomes[0]
        .payload
        .clone();
    let (mut bob_group, _) = bob
        .mls
        .join_group(None, &MlsMessage::from_bytes(&welcome).unwrap(), None)
        .unwrap();

    // Both commit at epoch 1 at once, one through each node (node A has the group cached).
    let from_alice = group.commit_builder().build().unwrap();
    let from_bob = bob_group.commit_builder().build().unwrap();
    let (a, b) = tokio::join!(
        send(
            &h.app,
            signed(&alice, "POST", &commits, Some(commit_json(&from_alice)))
        ),
        send(
            &node_b,
            signed(&bob, "POST", &commits, Some(commit_json(&from_bob)))
        ),
    );
    let winners = [&a, &b]
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(winners, 1, "{a:?} {b:?}");
    let (lost_status, lost_body) = if a.0 == StatusCode::OK { &b } else { &a };
    assert_error(*lost_status, lost_body, StatusCode::CONFLICT, "stale_epoch");
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 2);

    // Whoever won, bring both members to epoch 2.
    if a.0 == StatusCode::OK {
        group.apply_pending_commit().unwrap();
        bob_group.clear_pending_commit();
        bob_group
            .process_incoming_message(from_alice.commit_message.clone())
            .unwrap();
    } else {
        bob_group.apply_pending_commit().unwrap();
        group.clear_pending_commit();
        group
            .process_incoming_message(from_bob.commit_message.clone())
            .unwrap();
    }
    // Epoch 2 -> 3 through node B, then 3 -> 4 through node A, whose cache (if any) is behind.
    let next = bob_group.commit_builder().build().unwrap();
    let (status, body) = send(
        &node_b,
        signed(&bob, "POST", &commits, Some(commit_json(&next))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    bob_group.apply_pending_commit().unwrap();
    group.process_incoming_message(next.commit_message).unwrap();
    let last = group.commit_builder().build().unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&last)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["epoch"], 4);
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 4);
}

/// The custodians' side of issue 8 in these tests: a records key and its k shares
/// assembled, so bindings can be signed as the first unseal signs them.
struct Records {
    public: vellum_records::RecordsPublic,
    secret: vellum_records::RecordsSecret,
}

const ORIGIN: &str = "records.test/vellum";

impl Records {
    fn with_public((_, generated): (String, vellum_records::Generated)) -> Self {
        let mut unsealer = vellum_records::Unsealer::new(generated.public.clone());
        unsealer.add(&generated.shares[0]).unwrap();
        let vellum_records::UnsealProgress::Unsealed(secret) =
            unsealer.add(&generated.shares[1]).unwrap()
        else {
            panic!("two shares unseal")
        };
        Self {
            public: generated.public,
            secret,
        }
    }

    fn new() -> Self {
        let generated = vellum_records::generate(3, 2, ORIGIN).unwrap();
        Self::with_public((generated.public.to_json(), generated))
    }

    /// `records init`: the archiver's enrollment code.
    async fn init(&self, h: &Harness) -> String {
        let (status, body) = send(
            &h.app,
            admin(
                "POST",
                "/v1/admin/records",
                json!({ "records_public": self.public.to_json() }),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    }

    fn statement(&self, device: &TestDevice, serial: u64) -> vellum_records::ArchiverBinding {
        vellum_records::ArchiverBinding {
            version: vellum_records::BINDING_VERSION,
            serial,
            origin: ORIGIN.into(),
            archiver_device: device.id.clone(),
            archiver_identity: b64(&device.key.public_key()),
            log_key: vellum_tlog::NoteSigner::new(ORIGIN, &[serial as u8; 32])
                .unwrap()
                .verifier_key(),
            witnesses: vec![],
            witness_quorum: 0,
            issued_at: 1,
            previous: None,
        }
    }

    fn sign(&self, statement: &vellum_records::ArchiverBinding) -> String {
        self.secret.sign_binding(statement).to_json()
    }

    /// `device` uploads the binding of itself with `serial`.
    async fn bind(
        &self,
        h: &Harness,
        device: &TestDevice,
        serial: u64,
        records_public: Option<String>,
    ) -> (StatusCode, Value) {
        let binding = self.sign(&self.statement(device, serial));
        put_binding(h, device, &binding, records_public).await
    }
}

async fn put_binding(
    h: &Harness,
    device: &TestDevice,
    binding: &str,
    records_public: Option<String>,
) -> (StatusCode, Value) {
    let mut body = json!({ "binding": binding });
    if let Some(public) = records_public {
        body["records_public"] = json!(public);
    }
    h.call(device, "PUT", "/v1/records/binding", Some(body))
        .await
}

async fn policy_of(h: &Harness, device: &TestDevice) -> Value {
    let (status, body) = h.call(device, "GET", "/v1/policy", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// alice registers a record chat naming `archiver`.
async fn create_record_chat(
    h: &Harness,
    alice: &TestDevice,
    archiver: &str,
) -> (StatusCode, Value) {
    let extensions = vellum_mls::RecordChat::new(archiver).add_to(ExtensionList::new());
    let group = alice
        .mls
        .create_group(extensions, Default::default(), None)
        .unwrap();
    let info = b64(&group.group_info_message(true).unwrap().to_bytes().unwrap());
    h.call(
        alice,
        "POST",
        "/v1/groups",
        Some(json!({ "group_info": info })),
    )
    .await
}

#[tokio::test]
async fn issue8_the_binding_endpoint_keeps_only_the_custodians_binding_of_this_archiver() {
    let h = harness();
    let records = Records::new();
    let code = records.init(&h).await;
    let archiver = h.enroll_with(vellum_wire::RECORDS_USER, &code).await;
    let alice = h.enroll("alice").await;

    // No record chat before the binding: the error names the step.
    let (status, body) = create_record_chat(&h, &alice, &archiver.id).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("2 custodians")
            && message.contains("vellum records")
            && message.contains("unseal"),
        "{message}"
    );
    let status_body = send(
        &h.app,
        Request::get("/v1/admin/status")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .1;
    assert_eq!(status_body["archiver_binding_serial"], Value::Null);
    assert!(
        status_body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("unseal"),
        "{status_body}"
    );
    let good = records.sign(&records.statement(&archiver, 1));

    // Unauthenticated, malformed, unknown fields, oversized: refused, nothing stored.
    let (status, body) = send(
        &h.app,
        Request::put("/v1/records/binding")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "binding": good }).to_string()))
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    for (body, want) in [
        (json!({ "binding": "not json" }), StatusCode::BAD_REQUEST),
        (json!({ "binding": 7 }), StatusCode::BAD_REQUEST),
        (
            json!({ "binding": good, "extra": 1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "binding": "x".repeat(17 * 1024) }),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let (status, reply) = h
            .call(&archiver, "PUT", "/v1/records/binding", Some(body))
            .await;
        assert_eq!(status, want, "{reply}");
        assert!(reply["code"].is_string(), "{reply}");
    }
    // Another device, even with the custodians' binding of the archiver: refused.
    let (status, body) = put_binding(&h, &alice, &good, None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Forged: the same statement signed by another records key's custodians.
    let impostor = Records::new();
    let forged = impostor.sign(&records.statement(&archiver, 1));
    let (status, body) = put_binding(&h, &archiver, &forged, None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("custodians"),
        "{body}"
    );
    // Nor may it swap records.pub for the impostor's.
    let (status, body) = put_binding(&h, &archiver, &forged, Some(impostor.public.to_json())).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Signed by the custodians, but naming alice's device, or another identity key.
    let naming_alice = records.sign(&records.statement(&alice, 1));
    let (status, body) = put_binding(&h, &archiver, &naming_alice, None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let mut other_key = records.statement(&archiver, 1);
    other_key.archiver_identity = b64(&DeviceKey::generate().public_key());
    let (status, body) = put_binding(&h, &archiver, &records.sign(&other_key), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let policy = policy_of(&h, &alice).await;
    assert_eq!(policy["records_binding"], Value::Null, "nothing stored");
    assert_eq!(
        policy["records_public"].as_str(),
        Some(records.public.to_json().as_str())
    );

    // The custodians' binding of this archiver: kept, and given to every device.
    let body = json!({ "binding": good });
    let bytes = body.to_string().into_bytes();
    let headers = signed_headers(
        &archiver,
        "PUT",
        "/v1/records/binding",
        &bytes,
        now(),
        &fresh_nonce(),
    );
    let request = || {
        let mut r = Request::put("/v1/records/binding").header("content-type", "application/json");
        for (name, value) in &headers {
            r = r.header(*name, value);
        }
        r.body(Body::from(bytes.clone())).unwrap()
    };
    let (status, reply) = send(&h.app, request()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reply}");
    // A replay of that very request is caught; sending the binding again changes nothing.
    let (status, reply) = send(&h.app, request()).await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "replayed_request");
    let (status, reply) = put_binding(&h, &archiver, &good, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{reply}");
    let policy = policy_of(&h, &alice).await;
    let stored =
        vellum_records::SignedBinding::parse(policy["records_binding"].as_str().unwrap()).unwrap();
    assert_eq!(
        stored.verify(&records.public).unwrap().archiver_device,
        archiver.id
    );
    assert!(policy.get("records_log_key").is_none());

    // Serials only go up: another serial-1 statement, and after serial 2 serial 1 again.
    let mut changed = records.statement(&archiver, 1);
    changed.issued_at = 2;
    let (status, body) = put_binding(&h, &archiver, &records.sign(&changed), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = records.bind(&h, &archiver, 2, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = put_binding(&h, &archiver, &good, None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(
        body["message"].as_str().unwrap().contains("serial 2"),
        "{body}"
    );

    // Now record chats can be created, naming the bound archiver only.
    let (status, body) = create_record_chat(&h, &alice, &alice.id).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    let (status, body) = create_record_chat(&h, &alice, &archiver.id).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn issue8_the_user_records_is_reserved_and_has_one_device() {
    let h = harness();
    // Before records init, and after: the admin cannot create it or add a device to it.
    for _ in 0..2 {
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/users", json!({ "name": "records" })),
        )
        .await;
        assert_error(status, &body, StatusCode::CONFLICT, "conflict");
        assert!(
            body["message"].as_str().unwrap().contains("reserved"),
            "{body}"
        );
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/users/records/devices", json!({})),
        )
        .await;
        assert_error(status, &body, StatusCode::CONFLICT, "conflict");
        if h.store.records_public().await.unwrap().is_none() {
            Records::new().init(&h).await;
        }
    }
    let code = {
        // The code records init printed was used up by the test above? No: records init ran
        // once; replace-archiver gives the code of the one archiver device.
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/records/replace-archiver", json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    };
    let archiver = h.enroll_with(vellum_wire::RECORDS_USER, &code).await;
    // A code for the records user issued any other way enrolls no second device.
    h.store
        .add_enrollment_code(
            vellum_wire::RECORDS_USER,
            Sha256::digest(b"second").into(),
            now() + 60,
        )
        .await
        .unwrap();
    let key = DeviceKey::generate();
    let (status, body) = send(
        &h.app,
        Request::post("/v1/enroll")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({ "user": "records", "code": "second", "signature_key": b64(&key.public_key()) })
                    .to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        h.store.user_devices("records").await.unwrap().len(),
        1,
        "one archiver device"
    );
    assert_eq!(
        policy_of(&h, &archiver).await["archiver_device"].as_str(),
        Some(archiver.id.as_str())
    );
}

#[tokio::test]
async fn issue8_a_replaced_archiver_is_revoked_and_the_next_needs_the_custodians() {
    use vellum_mls::RecordChat;
    let h = harness();
    let records = Records::new();
    let code = records.init(&h).await;
    let old = h.enroll_with(vellum_wire::RECORDS_USER, &code).await;
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    h.upload_key_packages(&old, 2).await;
    assert_eq!(
        records.bind(&h, &old, 1, None).await.0,
        StatusCode::NO_CONTENT
    );
    // A record chat with the archiver that will die.
    let mut group = alice
        .mls
        .create_group(
            RecordChat::new(&old.id).add_to(ExtensionList::new()),
            Default::default(),
            None,
        )
        .unwrap();
    let info = b64(&group.group_info_message(true).unwrap().to_bytes().unwrap());
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups",
            Some(json!({ "group_info": info })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let commits = format!("/v1/groups/{}/commits", body["group_id"].as_str().unwrap());
    let kp = |d: &TestDevice| {
        d.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    };
    let out = group
        .commit_builder()
        .add_member(kp(&old))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    group.apply_pending_commit().unwrap();

    // Replaced: the old device can no longer sign in, nor be claimed.
    let (status, body) = send(
        &h.app,
        admin("POST", "/v1/admin/records/replace-archiver", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let new = h
        .enroll_with(vellum_wire::RECORDS_USER, body["code"].as_str().unwrap())
        .await;
    h.upload_key_packages(&new, 2).await;
    let (status, body) = h.call(&old, "GET", "/v1/policy", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": ["records"], "devices": [] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claimed: Vec<&str> = body["key_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(claimed, vec![new.id.as_str()]);
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": [], "devices": [old.id] })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Until k custodians unseal the new archiver, no new record chat; the existing one
    // keeps working (it names the old archiver until a member switches it).
    let (status, body) = create_record_chat(&h, &alice, &new.id).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    assert!(
        body["message"].as_str().unwrap().contains("replaced"),
        "{body}"
    );
    let out = group
        .commit_builder()
        .add_member(kp(&bob))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    group.apply_pending_commit().unwrap();

    // The new archiver's binding must follow the old one's serial.
    let (status, body) = records.bind(&h, &new, 1, None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        records.bind(&h, &new, 2, None).await.0,
        StatusCode::NO_CONTENT
    );
    let mut fresh = alice
        .mls
        .create_group(
            RecordChat::new(&new.id).add_to(ExtensionList::new()),
            Default::default(),
            None,
        )
        .unwrap();
    let info = b64(&fresh.group_info_message(true).unwrap().to_bytes().unwrap());
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups",
            Some(json!({ "group_info": info })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fresh_commits = format!("/v1/groups/{}/commits", body["group_id"].as_str().unwrap());
    // No device of `records` but the archiver joins a chat: not the revoked one either.
    let out = fresh
        .commit_builder()
        .add_member(kp(&new))
        .unwrap()
        .add_member(kp(&old))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &fresh_commits, Some(commit_json(&out)))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("archiver device"),
        "{body}"
    );

    // The existing chat switches to the bound archiver in one commit.
    let org_key = h.state.org.public_key();
    let old_index = group
        .roster()
        .members_iter()
        .find(|m| {
            DeviceCertificate::from_signing_identity(&m.signing_identity, &org_key)
                .is_ok_and(|c| c.device_id == old.id)
        })
        .unwrap()
        .index;
    let switched = RecordChat::new(&new.id).add_to(group.context().extensions.clone());
    let out = group
        .commit_builder()
        .set_group_context_ext(switched)
        .unwrap()
        .add_member(kp(&new))
        .unwrap()
        .remove_member(old_index)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Records configured: `records init` and the archiver's device enrolled.
async fn records_configured(h: &Harness) -> TestDevice {
    // Configured and bound: k custodians have unsealed the archiver once.
    let records = Records::new();
    let code = records.init(h).await;
    let archiver = h.enroll_with(vellum_wire::RECORDS_USER, &code).await;
    let (status, body) = records.bind(h, &archiver, 1, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    archiver
}

async fn admin_status(h: &Harness) -> Value {
    let (status, body) = send(
        &h.app,
        Request::get("/v1/admin/status")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn encrypted(
    group: &mut vellum_mls::mls_rs::group::Group<
        impl vellum_mls::mls_rs::client_builder::MlsConfig,
    >,
    id: &str,
) -> Value {
    let ct = group
        .encrypt_application_message(id.as_bytes(), vec![])
        .unwrap();
    json!({ "client_msg_id": id, "message": b64(&ct.to_bytes().unwrap()) })
}

/// Issue 8: after `policy set --default-class record --allow-transitory false`, an existing
/// transitory chat kept taking messages that never reached the archive. Now it takes none
/// until a member has committed its conversion, and `admin status` lists it until then.
#[tokio::test]
async fn issue8_a_transitory_chat_takes_no_message_until_it_is_converted() {
    use vellum_mls::RecordChat;
    let h = harness();
    let archiver = records_configured(&h).await;
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    let messages = format!("/v1/groups/{group_id}/messages");
    let commits = format!("/v1/groups/{group_id}/commits");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(encrypted(&mut group, "before")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "allowed while transitory chats are: {body}"
    );
    assert_eq!(admin_status(&h).await["noncompliant_chat_count"], 0);

    let (status, _) = send(
        &h.app,
        admin_put(r#"{"default_record":true,"allow_transitory":false}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let status_now = admin_status(&h).await;
    assert_eq!(status_now["noncompliant_chat_count"], 1);
    assert_eq!(status_now["noncompliant_chats"], json!([group_id]));
    assert!(
        status_now["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("still transitory")),
        "{status_now}"
    );
    let (status, metrics) = send(
        &h.app,
        Request::get("/v1/admin/metrics")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("vellum_chats_not_compliant 1"));

    // A message: refused, with the code clients convert on; a stranger learns nothing.
    let refused = encrypted(&mut group, "after");
    let (status, body) = h
        .call(&alice, "POST", &messages, Some(refused.clone()))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "record_required");
    let (status, body) = h.call(&carol, "POST", &messages, Some(refused)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    // Any commit but the conversion: refused too (the next commit converts).
    let kp = |d: &TestDevice| {
        d.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    };
    let out = group
        .commit_builder()
        .add_member(kp(&carol))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "record_required");
    group.clear_pending_commit();
    // A conversion that leaves the archiver out, or names another device: refused.
    for named in [&archiver.id, &bob.id] {
        let extensions = RecordChat::new(named).add_to(group.context().extensions.clone());
        let out = group
            .commit_builder()
            .set_group_context_ext(extensions)
            .unwrap()
            .build()
            .unwrap();
        let (status, body) = h
            .call(&alice, "POST", &commits, Some(commit_json(&out)))
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_violation",
        );
        group.clear_pending_commit();
    }
    assert_eq!(
        h.store.pending(&alice.id, 10).await.unwrap().groups[0]
            .1
            .len(),
        2,
        "the add and the first message; every refusal changed nothing"
    );

    // The conversion: the record-chat extension and the archiver, in one commit.
    let extensions = RecordChat::new(&archiver.id).add_to(group.context().extensions.clone());
    let out = group
        .commit_builder()
        .set_group_context_ext(extensions)
        .unwrap()
        .add_member(kp(&archiver))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&out)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    group.apply_pending_commit().unwrap();
    assert!(h.store.group(&group_id).await.unwrap().unwrap().record);
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &messages,
            Some(encrypted(&mut group, "after")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(admin_status(&h).await["noncompliant_chat_count"], 0);
    assert_eq!(
        h.store.pending(&archiver.id, 10).await.unwrap().groups[0]
            .1
            .iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        vec![vellum_wire::EntryKind::Application],
        "the archiver gets what was said from its conversion on, not before"
    );
}

/// Issue 8: `PUT /v1/records/held-users` is the archiver's alone and checks its input; the
/// members of a held person's transitory chats learn it in sync, and the org's policy says
/// whether the chat's timers stop or the chat must convert.
#[tokio::test]
async fn issue8_held_users_come_from_the_archiver_and_reach_the_members() {
    let h = harness();
    let archiver = records_configured(&h).await;
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    let (_, other_id) = h.group(&alice, &[&carol]).await;
    let path = "/v1/records/held-users";

    let unsigned = Request::put(path)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"users":["bob"]}"#))
        .unwrap();
    let (status, body) = send(&h.app, unsigned).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = h
        .call(&alice, "PUT", path, Some(json!({ "users": ["alice"] })))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    for bad in [
        json!({ "users": "bob" }),
        json!({ "users": ["bob"], "chats": [] }),
        json!({ "users": ["Bob Smith"] }),
        json!({ "users": [""] }),
        json!({}),
    ] {
        let (status, body) = h.call(&archiver, "PUT", path, Some(bad.clone())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let (status, body) = h
        .call(&archiver, "PUT", path, Some(json!({ "users": many })))
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        h.store.held_users().await.unwrap().is_empty(),
        "every refusal changed nothing"
    );

    let (status, body) = h
        .call(
            &archiver,
            "PUT",
            path,
            Some(json!({ "users": ["bob", "bob"] })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(h.store.held_users().await.unwrap(), vec!["bob".to_string()]);
    for device in [&alice, &bob] {
        let (status, sync) = h.call(device, "GET", "/v1/sync", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sync["held_chats"], json!([group_id]), "{sync}");
    }
    let (_, sync) = h.call(&carol, "GET", "/v1/sync", None).await;
    assert_eq!(
        sync["held_chats"],
        json!([]),
        "carol's chat with alice is not held"
    );
    assert!(!h.store.group(&other_id).await.unwrap().unwrap().held);

    // By default the hold suspends timers: messages still go through.
    let messages = format!("/v1/groups/{group_id}/messages");
    let (status, body) = h
        .call(&alice, "POST", &messages, Some(encrypted(&mut group, "m1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Where the org's policy converts held chats, this one must convert first; others not.
    let (status, policy) = send(&h.app, admin_put(r#"{"on_hold":"convert"}"#)).await;
    assert_eq!(
        (status, &policy["on_hold"]),
        (StatusCode::OK, &json!("convert"))
    );
    let (status, body) = h
        .call(&alice, "POST", &messages, Some(encrypted(&mut group, "m2")))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "record_required");
    let (status, body) = send(&h.app, admin_put(r#"{"on_hold":"nonsense"}"#)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Released: the chat is free again.
    let (status, _) = h
        .call(&archiver, "PUT", path, Some(json!({ "users": [] })))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, sync) = h.call(&alice, "GET", "/v1/sync", None).await;
    assert_eq!(sync["held_chats"], json!([]));
    let (status, body) = h
        .call(&alice, "POST", &messages, Some(encrypted(&mut group, "m3")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Issue 8: chats stored before the server kept their class get it from their public
/// state at start, so that a released 0.1.0 database's transitory chats are seen as such.
#[tokio::test]
async fn issue8_chats_of_an_older_database_are_classified_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0");
    std::fs::copy(fixtures.join("server/server.db"), &path).unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("expected.json")).unwrap()).unwrap();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(store.unclassified_groups().await.unwrap().len(), 2);
    let state = Arc::new(AppState::new(
        ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_owned()),
        store.clone(),
        OrgSigner::generate(),
        [0; 32],
    ));
    assert_eq!(vellum_server::classify_groups(&state).await.unwrap(), 2);
    for (name, chat) in expected["chats"].as_object().unwrap() {
        let group = store
            .group(chat["id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(group.record, chat["class"] == "record", "{name}");
    }
    assert!(store.unclassified_groups().await.unwrap().is_empty());
    assert_eq!(
        vellum_server::classify_groups(&state).await.unwrap(),
        0,
        "once"
    );
}

/// The org on a manual clock with records configured (`records.pub` of a fresh key) and its
/// archiver enrolled: the harness, the archiver, the records key's custodians' secret.
async fn records_harness(
    clock: Arc<vellum_server::ManualClock>,
) -> (
    Harness,
    TestDevice,
    vellum_records::Generated,
    vellum_records::RecordsSecret,
) {
    let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    let token_hash: [u8; 32] = Sha256::digest(ADMIN_TOKEN.as_bytes()).into();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let state = Arc::new(AppState::with_clock(
        cfg,
        store.clone(),
        OrgSigner::generate(),
        token_hash,
        clock,
    ));
    let h = Harness {
        app: app(state.clone()),
        state,
        store,
    };
    let generated = vellum_records::generate(3, 2, ORIGIN).unwrap();
    let (status, code) = send(
        &h.app,
        admin(
            "POST",
            "/v1/admin/records",
            json!({ "records_public": generated.public.to_json() }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{code}");
    let archiver = h
        .enroll_with(vellum_wire::RECORDS_USER, code["code"].as_str().unwrap())
        .await;
    let secret = unseal(&generated);
    (h, archiver, generated, secret)
}

fn unseal(generated: &vellum_records::Generated) -> vellum_records::RecordsSecret {
    let mut unsealer = vellum_records::Unsealer::new(generated.public.clone());
    unsealer.add(&generated.shares[0]).unwrap();
    match unsealer.add(&generated.shares[1]).unwrap() {
        vellum_records::UnsealProgress::Unsealed(secret) => secret,
        _ => panic!("two shares unseal"),
    }
}

fn log_signer() -> vellum_tlog::NoteSigner {
    vellum_tlog::NoteSigner::new(ORIGIN, &[5; 32]).unwrap()
}

fn witness() -> vellum_tlog::cosignature::CosignatureSigner {
    vellum_tlog::cosignature::CosignatureSigner::new("witness.test", &[6; 32]).unwrap()
}

/// The custodians' binding of `archiver`, its log and one witness (quorum 1).
fn binding_of(
    secret: &vellum_records::RecordsSecret,
    archiver: &TestDevice,
    serial: u64,
) -> vellum_records::SignedBinding {
    secret.sign_binding(&vellum_records::ArchiverBinding {
        version: vellum_record::BINDING_VERSION,
        serial,
        origin: ORIGIN.into(),
        archiver_device: archiver.id.clone(),
        archiver_identity: b64(&archiver.key.public_key()),
        log_key: log_signer().verifier_key(),
        witnesses: vec![witness().verifier_key()],
        witness_quorum: 1,
        issued_at: 1,
        previous: None,
    })
}

/// A log of `n` leaves: their hashes.
fn leaves(n: u64, tag: &str) -> Vec<vellum_tlog::Hash> {
    (0..n)
        .map(|i| vellum_tlog::leaf_hash(format!("{tag} leaf {i}").as_bytes()))
        .collect()
}

/// The checkpoint of the first `size` of `hashes`, signed by `signer`, cosigned if asked.
fn note_of(
    hashes: &[vellum_tlog::Hash],
    size: u64,
    signer: &vellum_tlog::NoteSigner,
    cosigned: bool,
) -> String {
    let checkpoint = vellum_tlog::Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: vellum_tlog::root(&hashes[..size as usize]),
        extensions: vec![],
    };
    let mut note = signer.sign(&checkpoint.to_text()).unwrap();
    if cosigned {
        note += &witness().sign(&checkpoint, 1_764_000_000).unwrap();
    }
    note
}

fn push(hashes: &[vellum_tlog::Hash], old: u64, size: u64, note: String) -> Value {
    let proof: Vec<String> = vellum_tlog::consistency_proof(hashes, old, size)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    json!({ "old_size": old, "proof": proof, "note": note })
}

#[tokio::test]
async fn issue8_checkpoints_pushed_to_the_server_never_go_back_or_fork() {
    let clock = Arc::new(vellum_server::ManualClock::at_system_time());
    let (h, archiver, _generated, secret) = records_harness(clock.clone()).await;
    let alice = h.enroll("alice").await;
    let hashes = leaves(12, "a");
    let put = |who: &TestDevice, body: Value| {
        let request = signed(who, "PUT", "/v1/records/checkpoint", Some(body));
        send(&h.app, request)
    };

    // Nothing is accepted before the custodians bound the archiver, receipts included.
    let receipts =
        |receipt: &str| json!({ "receipts": [{ "device_id": alice.id, "receipt": receipt }] });
    let (status, body) = h
        .call(&archiver, "POST", "/v1/receipts", Some(receipts("{}")))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "records_not_bound");
    let (status, body) = put(
        &archiver,
        push(&hashes, 0, 3, note_of(&hashes, 3, &log_signer(), false)),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "records_not_bound");

    // The binding: only the archiver publishes it, and only a binding of itself by these
    // custodians; the same one again is fine, an older one never replaces a newer.
    let binding = |serial| json!({ "binding": binding_of(&secret, &archiver, serial).to_json() });
    let put_binding = |who: &TestDevice, body: Value| {
        send(
            &h.app,
            signed(who, "PUT", "/v1/records/binding", Some(body)),
        )
    };
    let (status, body) = put_binding(&alice, binding(1)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let foreign = unseal(&vellum_records::generate(3, 2, ORIGIN).unwrap());
    let (status, body) = put_binding(
        &archiver,
        json!({ "binding": binding_of(&foreign, &archiver, 1).to_json() }),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = put_binding(
        &archiver,
        json!({ "binding": binding_of(&secret, &alice, 1).to_json() }),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = put_binding(&archiver, json!({ "binding": "{" })).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(h
        .store
        .org_policy()
        .await
        .unwrap()
        .records_binding
        .is_none());
    for _ in 0..2 {
        let (status, body) = put_binding(&archiver, binding(2)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, body) = put_binding(&archiver, binding(1)).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let policy = h.store.org_policy().await.unwrap();
    assert_eq!(
        vellum_record::bound_log(&policy).unwrap().serial,
        2,
        "devices see the newer binding"
    );

    // A receipt that does not verify against the bound log is dropped, not delivered.
    let forged = vellum_wire::Receipt {
        chat_id: "00ff".into(),
        seq: 1,
        message_id: Some("m1".into()),
        leaf_index: 0,
        leaf: b"{}".to_vec().into(),
        proof: vec![],
        checkpoint: note_of(&hashes, 1, &log_signer(), true),
    };
    for receipt in [serde_json::to_string(&forged).unwrap(), "not json".into()] {
        let (status, body) = h
            .call(&archiver, "POST", "/v1/receipts", Some(receipts(&receipt)))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (_, synced) = h.call(&alice, "GET", "/v1/sync", None).await;
    assert_eq!(synced["receipts"], json!([]), "{synced}");
    let (status, body) = h
        .call(&alice, "POST", "/v1/receipts", Some(receipts("{}")))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // The first checkpoint, then the same one cosigned (the note is replaced), then a
    // consistent extension.
    let first = push(&hashes, 0, 3, note_of(&hashes, 3, &log_signer(), false));
    let (status, body) = put(&archiver, first.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let cosigned = note_of(&hashes, 3, &log_signer(), true);
    let (status, body) = put(&archiver, push(&hashes, 3, 3, cosigned.clone())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The same tree without the cosignature again: renewed, but never stripped.
    let (status, _) = put(&archiver, first).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.store
            .records_checkpoint_head()
            .await
            .unwrap()
            .unwrap()
            .note,
        cosigned
    );
    let (status, body) = put(
        &archiver,
        push(&hashes, 3, 7, note_of(&hashes, 7, &log_signer(), true)),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Refused, changing nothing: a rollback, a fork at the same size, a fork that does not
    // extend, a proof from a size the server does not hold, another key's note, junk, and
    // anyone but the archiver.
    let other = leaves(12, "b");
    let refusals = [
        (
            push(&hashes, 3, 5, note_of(&hashes, 5, &log_signer(), true)),
            StatusCode::CONFLICT,
            "checkpoint_rollback",
        ),
        (
            push(&other, 7, 7, note_of(&other, 7, &log_signer(), true)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "checkpoint_fork",
        ),
        (
            push(&other, 7, 9, note_of(&other, 9, &log_signer(), true)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "checkpoint_fork",
        ),
        (
            push(&hashes, 3, 9, note_of(&hashes, 9, &log_signer(), true)),
            StatusCode::CONFLICT,
            "checkpoint_conflict",
        ),
        (
            push(
                &hashes,
                7,
                9,
                note_of(
                    &hashes,
                    9,
                    &vellum_tlog::NoteSigner::new(ORIGIN, &[9; 32]).unwrap(),
                    true,
                ),
            ),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({ "old_size": 7, "proof": ["zz"], "note": note_of(&hashes, 9, &log_signer(), true) }),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({ "old_size": 7, "proof": [], "note": "not a note" }),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            json!({ "old_size": 7, "note": "missing proof" }),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (body, want_status, want_code) in refusals {
        let (status, answer) = put(&archiver, body.clone()).await;
        assert_error(status, &answer, want_status, want_code);
    }
    let good = push(&hashes, 7, 9, note_of(&hashes, 9, &log_signer(), true));
    let (status, body) = put(&alice, good.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let unsigned = Request::builder()
        .method("PUT")
        .uri("/v1/records/checkpoint")
        .header("content-type", "application/json")
        .body(Body::from(good.to_string()))
        .unwrap();
    let (status, body) = send(&h.app, unsigned).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        h.store
            .records_checkpoint_head()
            .await
            .unwrap()
            .unwrap()
            .size,
        7
    );

    // A replayed request is refused as such; the chain moved once.
    let request = signed(
        &archiver,
        "PUT",
        "/v1/records/checkpoint",
        Some(good.clone()),
    );
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let again = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let (status, answer) = send(&h.app, Request::from_parts(parts, Body::from(bytes))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, answer) = send(&h.app, again).await;
    assert_error(
        status,
        &answer,
        StatusCode::UNAUTHORIZED,
        "replayed_request",
    );

    // Devices read the chain, each step with its consistency proof from the one before.
    let (status, chain) = h
        .call(&alice, "GET", "/v1/records/checkpoints?from=3", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{chain}");
    let sizes: Vec<u64> = chain["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![3, 7, 9]);
    assert_eq!(
        (chain["head_size"].as_u64(), chain["more"].as_bool()),
        (Some(9), Some(false))
    );
    let step = &chain["checkpoints"][2];
    assert_eq!(step["previous_size"], 7);
    let proof: Vec<vellum_tlog::Hash> = step["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    vellum_tlog::verify_consistency(
        7,
        9,
        &vellum_tlog::root(&hashes[..7]),
        &vellum_tlog::root(&hashes[..9]),
        &proof,
    )
    .unwrap();
    let (_, page) = h
        .call(
            &alice,
            "GET",
            "/v1/records/checkpoints?from=0&limit=1",
            None,
        )
        .await;
    assert_eq!(
        (
            page["checkpoints"][0]["size"].as_u64(),
            page["more"].as_bool()
        ),
        (Some(3), Some(true))
    );
    let (status, body) = h
        .call(&alice, "GET", "/v1/records/checkpoints?form=1", None)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn issue8_admin_status_raises_alarms_on_a_stale_or_unwitnessed_checkpoint() {
    let clock = Arc::new(vellum_server::ManualClock::at_system_time());
    let (h, archiver, _generated, secret) = records_harness(clock.clone()).await;
    let body = json!({ "binding": binding_of(&secret, &archiver, 1).to_json() });
    let (status, _) = h
        .call(&archiver, "PUT", "/v1/records/binding", Some(body))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let status_now = || async {
        let request = Request::get("/v1/admin/status")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(&h.app, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };
    // The alarm time is the policy's: 0 is refused; 60 s from now on.
    let (status, body) = send(
        &h.app,
        admin(
            "PUT",
            "/v1/admin/policy",
            json!({ "receipt_alarm_secs": 0 }),
        ),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = send(
        &h.app,
        admin(
            "PUT",
            "/v1/admin/policy",
            json!({ "receipt_alarm_secs": 60 }),
        ),
    )
    .await;
    assert_eq!(
        (status, body["receipt_alarm_secs"].as_u64()),
        (StatusCode::OK, Some(60))
    );

    let hashes = leaves(8, "a");
    let put = |size: u64, old: u64, cosigned: bool| {
        let body = push(
            &hashes,
            old,
            size,
            note_of(&hashes, size, &log_signer(), cosigned),
        );
        h.call(&archiver, "PUT", "/v1/records/checkpoint", Some(body))
    };
    assert_eq!(put(2, 0, true).await.0, StatusCode::NO_CONTENT);
    let fresh = status_now().await;
    assert_eq!(fresh["warnings"], json!([]), "{fresh}");
    assert_eq!(
        (
            fresh["checkpoint_size"].as_u64(),
            fresh["checkpoint_cosigners"].as_u64()
        ),
        (Some(2), Some(1))
    );

    // The witness falls silent: new checkpoints lack its cosignature. Within the alarm time
    // that is witnessing's normal lag; past it, an alarm.
    clock.advance(30_000);
    assert_eq!(put(5, 2, false).await.0, StatusCode::NO_CONTENT);
    assert_eq!(status_now().await["warnings"], json!([]));
    clock.advance(31_000);
    assert_eq!(put(8, 5, false).await.0, StatusCode::NO_CONTENT);
    let unwitnessed = status_now().await;
    let warnings = unwitnessed["warnings"].to_string();
    assert!(
        warnings.contains("0 of the 1 witness cosignatures"),
        "{warnings}"
    );
    assert!(!warnings.contains("last published"), "{warnings}");

    // The archiver falls silent too: past the alarm time since it last published.
    clock.advance(61_000);
    let silent = status_now().await;
    let warnings = silent["warnings"].to_string();
    assert!(
        warnings.contains("was last published 61 seconds ago"),
        "{warnings}"
    );
    assert!(silent["checkpoint_age_ms"].as_i64().unwrap() >= 61_000);
    let metrics = {
        let request = Request::get("/v1/admin/metrics")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        send(&h.app, request).await.1
    };
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("vellum_records_checkpoint_age_seconds 61"),
        "{metrics}"
    );
}

/// The server keeps only the admin token's hash: once the admin took `admin-token` off the
/// host, the server still starts and the admin API still takes the token, and no file of
/// the data directory holds it.
#[tokio::test]
async fn issue_9_the_admin_token_works_after_it_left_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_owned());
    let create = |token: &str, name: &str| {
        Request::post("/v1/admin/users")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(json!({ "name": name }).to_string()))
            .unwrap()
    };
    let first = app(AppState::open(config.clone()).unwrap());
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let (status, body) = send(&first, create(&token, "alice")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    drop(first);

    std::fs::remove_file(dir.path().join("admin-token")).unwrap();
    let restarted = app(AppState::open(config).unwrap());
    let (status, body) = send(&restarted, create(&token, "bob")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(&restarted, create("not the token", "carol")).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let contents = std::fs::read(&path).unwrap();
        assert!(
            !contents.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} holds the admin token",
            path.display()
        );
    }
}

/// Claims are budgeted per claiming device in key packages handed out: past the budget a
/// claim is refused whole (nothing of the target consumed), other devices keep their own
/// budget, and it comes back as the clock moves.
#[tokio::test]
async fn issue_9_key_package_claims_are_rate_limited() {
    let clock = Arc::new(vellum_server::ManualClock::at_system_time());
    let h = clocked_harness(clock.clone(), |c| {
        c.claim_burst = 3.0;
        c.claims_per_hour = 3600.0;
    });
    let alice = h.enroll("alice").await;
    let carol = h.enroll("carol").await;
    let bob1 = h.enroll("bob").await;
    let code = {
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/users/bob/devices", json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    };
    let bob2 = h.enroll_with("bob", &code).await;
    // Bob's second device is claimed once his first approved it.
    let identity = h.post_identity(&bob1, "bob").await;
    h.approve("bob", &bob1, &identity, &bob2).await;
    h.upload_key_packages(&bob1, 5).await;
    h.upload_key_packages(&bob2, 5).await;
    let claim =
        |who: &TestDevice, body: Value| signed(who, "POST", "/v1/key-packages/claim", Some(body));
    let counts = || async {
        (
            h.store.key_package_count(&bob1.id).await.unwrap().0,
            h.store.key_package_count(&bob2.id).await.unwrap().0,
        )
    };

    let (status, body) = send(&h.app, claim(&alice, json!({ "users": ["bob"] }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(counts().await, (4, 4));
    // One key package left in alice's budget; bob's two devices need two.
    let (status, body) = send(&h.app, claim(&alice, json!({ "users": ["bob"] }))).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(counts().await, (4, 4), "the refused claim consumed nothing");
    let one = json!({ "users": [], "devices": [bob1.id] });
    let (status, body) = send(&h.app, claim(&alice, one.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&h.app, claim(&alice, one.clone())).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(counts().await, (3, 4));
    let (status, body) = send(&h.app, claim(&carol, json!({ "users": ["bob"] }))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "carol has a budget of her own: {body}"
    );
    assert_eq!(counts().await, (2, 3));

    clock.advance(999);
    let (status, body) = send(&h.app, claim(&alice, one.clone())).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    clock.advance(1_001);
    let (status, body) = send(&h.app, claim(&alice, json!({ "users": ["bob"] }))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "two seconds at 1/s give two back: {body}"
    );
    assert_eq!(counts().await, (1, 2));
}

/// A key package is filed once ever: the same one twice in an upload, the upload again
/// (signed anew), or again after it was claimed, is never handed out a second time.
#[tokio::test]
async fn issue_9_key_package_upload_twice_is_refused_or_ignored() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let kp = b64(&bob
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap()
        .to_bytes()
        .unwrap());
    let upload = |body: Value| async {
        let (status, response) = h.call(&bob, "POST", "/v1/key-packages", Some(body)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{response}");
    };
    upload(json!({ "key_packages": [kp, kp] })).await;
    upload(json!({ "key_packages": [kp] })).await;
    assert_eq!(
        h.store.key_package_count(&bob.id).await.unwrap(),
        (1, false)
    );
    let claim = || {
        h.call(
            &alice,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": ["bob"] })),
        )
    };
    let (status, body) = claim().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key_packages"][0]["key_package"], kp.as_str());
    // After the claim, neither as single-use nor as last-resort.
    upload(json!({ "key_packages": [kp] })).await;
    upload(json!({ "key_packages": [], "last_resort": kp })).await;
    assert_eq!(
        h.store.key_package_count(&bob.id).await.unwrap(),
        (0, false)
    );
    let (status, body) = claim().await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_key_package");
}

/// A revoked device may still read the key directory (so it wipes itself only on the
/// directory's word, not on the server's), and nothing else.
#[tokio::test]
async fn issue_9_a_revoked_device_may_read_the_directory_only() {
    let h = harness();
    let alice = h.enroll("alice").await;
    h.store.revoke_device(&alice.id, now()).await.unwrap();
    // Checkpoint and entries, verified and replayed.
    assert!(h.mirror(&alice).await.state.upgrade_done);
    for (method, path, body) in [
        ("GET", "/v1/devices", None),
        ("GET", "/v1/sync", None),
        ("GET", "/v1/policy", None),
        (
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": { "type": "upgrade_done" } })),
        ),
    ] {
        let (status, body) = h.call(&alice, method, path, body).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    }
}

/// A revoked device is told so, with a code of its own, but only under its own valid
/// signature: a request with a bad signature for a revoked id is answered as one for a
/// live device, so a stranger cannot find out which ids are revoked.
#[tokio::test]
async fn issue_9_a_revoked_device_is_told_so_under_its_own_signature() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    h.store.revoke_device(&alice.id, now()).await.unwrap();

    for (method, path, body) in [
        ("GET", "/v1/policy", None),
        (
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [], "cursors": [] })),
        ),
    ] {
        let (status, body) = h.call(&alice, method, path, body).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
        assert_eq!(body["message"], "this device was revoked");
    }
    // Signed by bob's key but naming alice (revoked) or carol (live): the same answer.
    let forged = |id: &str| {
        let mut request = signed(&bob, "GET", "/v1/policy", None);
        request
            .headers_mut()
            .insert(AuthHeaders::DEVICE, id.parse().unwrap());
        request
    };
    let revoked = send(&h.app, forged(&alice.id)).await;
    assert_error(
        revoked.0,
        &revoked.1,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    assert_eq!(revoked, send(&h.app, forged(&carol.id)).await);
    // An unknown device keeps its own answer.
    let (status, body) = send(&h.app, forged("ghost")).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(body["message"], "unknown device");
    // A revoked device is not claimed.
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": [], "devices": [alice.id] })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---- Issue 9: the key directory and device approval. ----

use vellum_directory::{
    verification_code, ApproverHello, DeviceOffer, DeviceRef, DeviceStatus, HelloSecret,
    IdentityKey, Mirror, OfferSecret, Vouch,
};
use vellum_server::{Clock, ManualClock};

fn device_ref(device: &TestDevice) -> DeviceRef {
    DeviceRef {
        device_id: device.id.clone(),
        signature_key: device.key.public_key(),
    }
}

fn b64_decode(value: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}

/// A device list's states by device id.
fn states_of(list: &Value) -> std::collections::BTreeMap<String, String> {
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let field = |name: &str| d[name].as_str().unwrap().to_owned();
            (field("device_id"), field("state"))
        })
        .collect()
}

/// A harness over `store` whose server reads `clock` and signs the directory with `key`.
fn harness_over(
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    key: [u8; 32],
    config: impl FnOnce(&mut ServerConfig),
) -> Harness {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    config(&mut cfg);
    let token_hash: [u8; 32] = Sha256::digest(ADMIN_TOKEN.as_bytes()).into();
    let state = Arc::new(
        AppState::with_clock(cfg, store.clone(), OrgSigner::generate(), token_hash, clock)
            .with_directory_key(key),
    );
    Harness {
        app: app(state.clone()),
        state,
        store,
    }
}

impl Harness {
    /// Another device of an existing user: (the device, the state enrollment answered).
    async fn another_device(&self, user: &str) -> (TestDevice, String) {
        let (status, body) = send(
            &self.app,
            admin(
                "POST",
                &format!("/v1/admin/users/{user}/devices"),
                json!({}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (device, answer) = self
            .enroll_answered(user, body["code"].as_str().unwrap())
            .await;
        (device, answer["state"].as_str().unwrap().to_owned())
    }

    async fn state_of(&self, device: &TestDevice) -> vellum_wire::DeviceState {
        self.store
            .device_record(&device.id)
            .await
            .unwrap()
            .unwrap()
            .state
    }

    async fn post_change(&self, device: &TestDevice, change: Value) -> (StatusCode, Value) {
        self.call(
            device,
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": change })),
        )
        .await
    }

    /// `device` starts its user's identity in the directory.
    async fn post_identity(&self, device: &TestDevice, user: &str) -> IdentityKey {
        let identity = IdentityKey::generate();
        let change = identity.identity_change(user, device_ref(device), &device.key);
        let (status, body) = self
            .call(
                device,
                "POST",
                "/v1/directory/changes",
                Some(json!({ "change": change })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        identity
    }

    /// The directory as a device sees it: the checkpoint verified by the log key of the
    /// configuration, every entry replayed against it.
    async fn mirror(&self, device: &TestDevice) -> Mirror {
        let (status, config) = send(
            &self.app,
            Request::get("/v1/directory/config")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{config}");
        let (status, checkpoint) = self
            .call(device, "GET", "/v1/directory/checkpoint", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{checkpoint}");
        let note = checkpoint["note"].as_str().unwrap();
        let verifier =
            vellum_tlog::NoteVerifier::parse(config["log_key"].as_str().unwrap()).unwrap();
        let text = vellum_tlog::NoteVerifier::open(note, &[verifier]).unwrap();
        let checkpoint = vellum_tlog::Checkpoint::parse(text).unwrap();
        assert_eq!(checkpoint.origin, config["origin"]);
        let mut leaves = Vec::new();
        while (leaves.len() as u64) < checkpoint.size {
            let path = format!("/v1/directory/entries?start={}&limit=2", leaves.len());
            let (status, page) = self.call(device, "GET", &path, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let entries = page["entries"].as_array().unwrap();
            assert!(!entries.is_empty(), "entries up to the checkpoint");
            leaves.extend(entries.iter().map(b64_decode));
        }
        let mut mirror = Mirror::default();
        mirror.extend(&leaves, &checkpoint).unwrap();
        mirror
    }

    /// The whole approval exchange: `old` (approved, holding `identity`) approves `new`.
    async fn approve(
        &self,
        user: &str,
        old: &TestDevice,
        identity: &IdentityKey,
        new: &TestDevice,
    ) -> IdentityKey {
        let offer = OfferSecret::new(device_ref(new));
        let commitment = hex::encode(offer.commitment(user));
        let ok = |(status, body): (StatusCode, Value)| {
            assert!(status.is_success(), "{status} {body}");
            body
        };
        ok(self
            .call(
                new,
                "PUT",
                "/v1/approvals/me/commitment",
                Some(json!({ "commitment": commitment })),
            )
            .await);
        let exchange = format!("/v1/approvals/{}", new.id);
        let seen = ok(self.call(old, "GET", &exchange, None).await);
        assert_eq!(seen["commitment"], commitment);
        let hello = HelloSecret::new(device_ref(old), identity.public());
        ok(self
            .call(
                old,
                "PUT",
                &format!("{exchange}/hello"),
                Some(json!({ "hello": hello.hello })),
            )
            .await);
        let mine = ok(self.call(new, "GET", "/v1/approvals/me", None).await);
        let relayed: ApproverHello = serde_json::from_value(mine["hello"].clone()).unwrap();
        assert_eq!(relayed, hello.hello);
        ok(self
            .call(
                new,
                "PUT",
                "/v1/approvals/me/offer",
                Some(json!({ "offer": offer.offer })),
            )
            .await);
        let shown = verification_code(user, &offer.offer, &relayed);
        let seen = ok(self.call(old, "GET", &exchange, None).await);
        let revealed: DeviceOffer = serde_json::from_value(seen["offer"].clone()).unwrap();
        let committed: [u8; 32] = hex::decode(seen["commitment"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sealed = hello
            .complete(user, &committed, &revealed, &shown, identity)
            .unwrap();
        let change = identity.approve_change(user, revealed.device.clone(), &old.id, &old.key);
        ok(self
            .call(
                old,
                "POST",
                &format!("{exchange}/complete"),
                Some(json!({ "change": change, "sealed_identity": b64(&sealed) })),
            )
            .await);
        let mine = ok(self.call(new, "GET", "/v1/approvals/me", None).await);
        let opened = offer
            .open_identity(user, &relayed, &b64_decode(&mine["sealed_identity"]))
            .unwrap();
        assert_eq!(
            self.call(new, "DELETE", "/v1/approvals/me", None).await.0,
            StatusCode::NO_CONTENT
        );
        opened
    }
}

#[tokio::test]
async fn issue_9_pending_device_receives_nothing() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let identity = h.post_identity(&alice, "alice").await;
    h.upload_key_packages(&alice, 2).await;
    h.upload_key_packages(&bob, 2).await;
    let (_group, group_id) = h.group(&bob, &[&alice]).await;
    let (laptop, answered) = h.another_device("alice").await;
    assert_eq!(answered, "pending");

    // Allowed: its key packages go on file (not handed out), the directory, its user's
    // devices, the policy, and a sync that answers nothing but the directory's size.
    h.upload_key_packages(&laptop, 2).await;
    for path in [
        "/v1/key-packages/count",
        "/v1/directory/checkpoint",
        "/v1/directory/entries?start=0",
        "/v1/devices",
        "/v1/policy",
        "/v1/approvals/me",
    ] {
        let (status, body) = h.call(&laptop, "GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, synced) = h.call(&laptop, "GET", "/v1/sync", None).await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    assert_eq!(synced["welcomes"], json!([]));
    assert_eq!(synced["groups"], json!([]));
    assert_eq!(
        synced["directory_size"], 2,
        "upgrade_done and alice's identity"
    );
    // Everything else: 403 device_pending, and nothing happens.
    let group_path = format!("/v1/groups/{group_id}/messages");
    for (method, path, body) in [
        ("POST", "/v1/groups", Some(json!({ "group_info": "AA==" }))),
        ("POST", group_path.as_str(), Some(json!({}))),
        (
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [], "cursors": [] })),
        ),
        (
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": ["bob"] })),
        ),
        (
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": {} })),
        ),
        ("GET", "/v1/ws", None),
        ("GET", &format!("/v1/approvals/{}", alice.id), None),
        (
            "PUT",
            "/v1/records/held-users",
            Some(json!({ "users": [] })),
        ),
    ] {
        let (status, body) = h.call(&laptop, method, path, body).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "device_pending");
    }
    assert_eq!(h.store.key_package_count(&bob.id).await.unwrap().0, 2);

    // Its key packages are not handed out: not with its user's, not by its id.
    let (status, claimed) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": ["alice"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let claimed: Vec<&str> = claimed["key_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(claimed, [alice.id.as_str()]);
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": [], "devices": [laptop.id] })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.store.key_package_count(&laptop.id).await.unwrap().0, 2);

    // A commit adding it (with a key package it made itself) is refused; the chat stays.
    let (mut group, group_id) = h.group(&bob, &[]).await;
    let kp = laptop
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap();
    let out = group
        .commit_builder()
        .add_member(kp)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(
            &bob,
            "POST",
            &format!("/v1/groups/{group_id}/commits"),
            Some(commit_json(&out)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("waiting for approval"));
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 0);
    assert!(!h.store.is_member(&group_id, &laptop.id).await.unwrap());

    // Once approved, it is like any device: claimed, added, synced.
    let opened = h.approve("alice", &alice, &identity, &laptop).await;
    assert_eq!(opened.public(), identity.public());
    let (status, body) = h
        .call(
            &bob,
            "POST",
            "/v1/key-packages/claim",
            Some(json!({ "users": [], "devices": [laptop.id] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h.call(&laptop, "POST", "/v1/groups", Some(json!({}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn issue_9_approval_exchange_through_the_server() {
    let h = harness();
    let (phone, answered) = {
        let code = h.code_for("alice").await;
        let (device, body) = h.enroll_answered("alice", &code).await;
        (device, body["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(answered, "approved", "a user's first device");
    let identity = h.post_identity(&phone, "alice").await;
    let bob = h.enroll("bob").await;
    h.post_identity(&bob, "bob").await;
    let (laptop, answered) = h.another_device("alice").await;
    assert_eq!(answered, "pending");
    let exchange = format!("/v1/approvals/{}", laptop.id);
    let offer = OfferSecret::new(device_ref(&laptop));
    let commitment = hex::encode(offer.commitment("alice"));
    let hello = HelloSecret::new(device_ref(&phone), identity.public());

    // Out of order: no hello before the commitment, no offer before the hello.
    let (status, body) = h
        .call(
            &phone,
            "PUT",
            &format!("{exchange}/hello"),
            Some(json!({ "hello": hello.hello })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");
    let (status, body) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/offer",
            Some(json!({ "offer": offer.offer })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");
    // Malformed commitments and bodies change nothing.
    for bad in [
        json!({ "commitment": "abc" }),
        json!({ "commitment": commitment.to_uppercase() }),
        json!({ "nope": 1 }),
    ] {
        let (status, body) = h
            .call(&laptop, "PUT", "/v1/approvals/me/commitment", Some(bad))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let truncated = Request::put("/v1/approvals/me/commitment");
    let mut request = truncated.header("content-type", "application/json");
    for (name, value) in signed_headers(
        &laptop,
        "PUT",
        "/v1/approvals/me/commitment",
        b"{\"commitment\":",
        now(),
        &fresh_nonce(),
    ) {
        request = request.header(name, value);
    }
    let (status, body) = send(
        &h.app,
        request.body(Body::from("{\"commitment\":")).unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.store.approval(&laptop.id).await.unwrap(), None);
    let (status, body) = send(
        &h.app,
        Request::get("/v1/approvals/me")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Step 0.
    let (status, body) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/commitment",
            Some(json!({ "commitment": commitment })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Another user's device sees nothing of it and cannot answer; nor can the pending
    // device answer for itself or an approved device approve itself.
    let (status, body) = h.call(&bob, "GET", &exchange, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let bob_hello = HelloSecret::new(device_ref(&bob), identity.public());
    let (status, body) = h
        .call(
            &bob,
            "PUT",
            &format!("{exchange}/hello"),
            Some(json!({ "hello": bob_hello.hello })),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = h
        .call(
            &phone,
            "PUT",
            &format!("/v1/approvals/{}/hello", phone.id),
            Some(json!({ "hello": hello.hello })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");
    // A hello must name the calling device and its user's identity.
    for wrong in [
        HelloSecret::new(device_ref(&bob), identity.public()),
        HelloSecret::new(device_ref(&phone), IdentityKey::generate().public()),
    ] {
        let (status, body) = h
            .call(
                &phone,
                "PUT",
                &format!("{exchange}/hello"),
                Some(json!({ "hello": wrong.hello })),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = h
        .call(
            &phone,
            "PUT",
            &format!("{exchange}/hello"),
            Some(json!({ "hello": "not a hello" })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Nothing to complete before the offer.
    let early = identity.approve_change("alice", device_ref(&laptop), &phone.id, &phone.key);
    let (status, body) = h
        .call(
            &phone,
            "POST",
            &format!("{exchange}/complete"),
            Some(json!({ "change": early, "sealed_identity": b64(&[0; 80]) })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");

    // Step 1, 2: the hello, then the offer (which must be the one committed to).
    let (status, body) = h
        .call(
            &phone,
            "PUT",
            &format!("{exchange}/hello"),
            Some(json!({ "hello": hello.hello })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let other_offer = OfferSecret::new(device_ref(&laptop));
    let (status, body) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/offer",
            Some(json!({ "offer": other_offer.offer })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/offer",
            Some(json!({ "offer": offer.offer })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/offer",
            Some(json!({ "offer": offer.offer })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");

    // A wrong code approves nothing: the approver cancels, and the exchange is gone.
    let (_, seen) = h.call(&phone, "GET", &exchange, None).await;
    let revealed: DeviceOffer = serde_json::from_value(seen["offer"].clone()).unwrap();
    let committed: [u8; 32] = hex::decode(&commitment).unwrap().try_into().unwrap();
    assert!(hello
        .complete("alice", &committed, &revealed, "0000-0000-0000", &identity)
        .is_err());
    let (status, _) = h.call(&phone, "DELETE", &exchange, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, mine) = h.call(&laptop, "GET", "/v1/approvals/me", None).await;
    assert_eq!(mine["commitment"], Value::Null);
    assert_eq!(mine["hello"], Value::Null);
    assert_eq!(h.state_of(&laptop).await, vellum_wire::DeviceState::Pending);

    // Again, from the start, with the right code (steps 0 to 4).
    let opened = h.approve("alice", &phone, &identity, &laptop).await;
    assert_eq!(
        opened.public(),
        identity.public(),
        "the identity key arrived"
    );
    assert_eq!(
        h.state_of(&laptop).await,
        vellum_wire::DeviceState::Approved
    );
    let mirror = h.mirror(&laptop).await;
    assert_eq!(
        mirror
            .state
            .vouch("alice", &laptop.id, &laptop.key.public_key()),
        Vouch::Approved
    );
    let (status, devices) = h.call(&laptop, "GET", "/v1/devices", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        states_of(&devices),
        states_of(&json!({ "devices": [
            { "device_id": &phone.id, "state": "approved" },
            { "device_id": &laptop.id, "state": "approved" },
        ]}))
    );
    // A replayed completion (and a late cancel) finds the exchange over; nothing appended.
    let size = mirror.size();
    let replay = identity.approve_change("alice", device_ref(&laptop), &phone.id, &phone.key);
    let (status, body) = h
        .call(
            &phone,
            "POST",
            &format!("{exchange}/complete"),
            Some(json!({ "change": replay, "sealed_identity": b64(&[0; 80]) })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "approval_out_of_order");
    assert_eq!(h.mirror(&laptop).await.size(), size);
}

#[tokio::test]
async fn issue_9_an_approval_must_be_signed_by_the_identity_and_name_the_device() {
    let h = harness();
    let phone = h.enroll("alice").await;
    let identity = h.post_identity(&phone, "alice").await;
    let (laptop, _) = h.another_device("alice").await;
    let exchange = format!("/v1/approvals/{}", laptop.id);
    let offer = OfferSecret::new(device_ref(&laptop));
    let hello = HelloSecret::new(device_ref(&phone), identity.public());
    h.call(
        &laptop,
        "PUT",
        "/v1/approvals/me/commitment",
        Some(json!({ "commitment": hex::encode(offer.commitment("alice")) })),
    )
    .await;
    h.call(
        &phone,
        "PUT",
        &format!("{exchange}/hello"),
        Some(json!({ "hello": hello.hello })),
    )
    .await;
    let (status, _) = h
        .call(
            &laptop,
            "PUT",
            "/v1/approvals/me/offer",
            Some(json!({ "offer": offer.offer })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let complete_path = format!("{exchange}/complete");
    let complete = |change: Value, sealed: Vec<u8>| {
        h.call(
            &phone,
            "POST",
            &complete_path,
            Some(json!({ "change": change, "sealed_identity": b64(&sealed) })),
        )
    };
    // Signed by another key (the server's own forgery would look like this): refused by
    // the directory's rules.
    let forged =
        IdentityKey::generate().approve_change("alice", device_ref(&laptop), &phone.id, &phone.key);
    let (status, body) = complete(json!(forged), vec![0; 80]).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "directory_refused",
    );
    // Another device, another approver, another kind, a wrong length: bad requests.
    let other_key = DeviceRef {
        device_id: laptop.id.clone(),
        signature_key: DeviceKey::generate().public_key(),
    };
    for change in [
        identity.approve_change("alice", other_key, &phone.id, &phone.key),
        identity.approve_change("alice", device_ref(&laptop), &laptop.id, &laptop.key),
        identity.revoke_change("alice", &laptop.id, &phone.id, &phone.key),
    ] {
        let (status, body) = complete(json!(change), vec![0; 80]).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let good = identity.approve_change("alice", device_ref(&laptop), &phone.id, &phone.key);
    let (status, body) = complete(json!(good), vec![0; 79]).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = complete(json!({ "type": "approved" }), vec![0; 80]).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.state_of(&laptop).await, vellum_wire::DeviceState::Pending);
    assert_eq!(h.mirror(&phone).await.size(), 2);
    let (status, body) = complete(json!(good), vec![0; 80]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["index"], 2);
}

#[tokio::test]
async fn issue_9_directory_changes_are_checked_before_they_are_appended() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let identity = IdentityKey::generate();
    // An identity names the device posting it.
    let (status, body) = h
        .post_change(
            &bob,
            json!(identity.identity_change("alice", device_ref(&alice), &alice.key)),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let impostor_key = DeviceKey::generate();
    let impostor = DeviceRef {
        device_id: alice.id.clone(),
        signature_key: impostor_key.public_key(),
    };
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.identity_change("alice", impostor, &impostor_key)),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Signed for another user: the rules refuse it.
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.identity_change("bob", device_ref(&alice), &alice.key)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "directory_refused",
    );
    // Kinds only the server writes, malformed changes, an unauthenticated post.
    for change in [
        json!({ "type": "upgrade_done" }),
        json!({ "type": "revoked_by_admin", "device_id": bob.id }),
        json!({ "type": "reset", "request_id": "x" }),
    ] {
        let (status, body) = h.post_change(&alice, change).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "directory_refused",
        );
    }
    for change in [json!({ "type": "nonsense" }), json!("identity"), json!({})] {
        let (status, body) = h.post_change(&alice, change).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = send(
        &h.app,
        Request::post("/v1/directory/changes")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.mirror(&alice).await.size(), 1, "nothing appended");

    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.identity_change("alice", device_ref(&alice), &alice.key)),
        )
        .await;
    assert_eq!(
        (status, &body["index"]),
        (StatusCode::OK, &json!(1)),
        "{body}"
    );
    // Replayed: the user has an identity already.
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.identity_change("alice", device_ref(&alice), &alice.key)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "directory_refused",
    );
    // by_device is the caller; a revocation of a device the user does not have is refused;
    // an oversized one too.
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.revoke_change("alice", &alice.id, &bob.id, &bob.key)),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.revoke_change("alice", &bob.id, &alice.id, &alice.key)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "directory_refused",
    );
    let long = "d".repeat(5000);
    let (status, body) = h
        .post_change(
            &alice,
            json!(identity.revoke_change("alice", &long, &alice.id, &alice.key)),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.mirror(&alice).await.size(), 2);

    // Entries: pages of 1 to 1000, never past the checkpoint.
    for query in ["?start=0&limit=0", "?start=0&limit=1001", "", "?start=x"] {
        let (status, body) = h
            .call(
                &alice,
                "GET",
                &format!("/v1/directory/entries{query}"),
                None,
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, body) = h
        .call(&alice, "GET", "/v1/directory/entries?start=5", None)
        .await;
    assert_eq!((status, &body["entries"]), (StatusCode::OK, &json!([])));

    // A user revokes its own device; the device is told so on its next request.
    let (laptop, _) = h.another_device("alice").await;
    let opened = h.approve("alice", &alice, &identity, &laptop).await;
    let (status, body) = h
        .post_change(
            &laptop,
            json!(opened.revoke_change("alice", &alice.id, &laptop.id, &laptop.key)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h.call(&alice, "GET", "/v1/policy", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    let mirror = h.mirror(&laptop).await;
    assert_eq!(
        mirror
            .state
            .vouch("alice", &alice.id, &alice.key.public_key()),
        Vouch::Revoked
    );
    assert_eq!(
        h.store.key_package_count(&alice.id).await.unwrap(),
        (0, false)
    );
}

#[tokio::test]
async fn issue_9_reset_waits_and_can_be_vetoed() {
    let clock = Arc::new(ManualClock::at_system_time());
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let h = harness_over(store, clock.clone(), [3; 32], |_| {});
    let phone = h.enroll("alice").await;
    let identity = h.post_identity(&phone, "alice").await;
    let reset = |name: &str| {
        send(
            &h.app,
            admin("POST", &format!("/v1/admin/users/{name}/reset"), json!({})),
        )
    };

    let (status, first) = reset("alice").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let request_id = first["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        first["effective_at"].as_i64().unwrap(),
        clock.now_secs() + vellum_wire::DEFAULT_RESET_WAIT_SECS as i64
    );
    let (status, body) = reset("alice").await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = reset("records").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = reset("nobody").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_user");
    let (status, body) = send(
        &h.app,
        Request::post("/v1/admin/users/alice/reset")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    // Public at once: every device of alice sees it in the directory.
    let mirror = h.mirror(&phone).await;
    assert!(mirror.state.user("alice").unwrap().pending_reset.is_some());

    // The phone vetoes it: nothing happens when the wait is over.
    let veto = identity.veto_change("alice", &request_id, &phone.id, &phone.key);
    let (status, body) = h
        .call(
            &phone,
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": veto })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call(
            &phone,
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": veto })),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "directory_refused",
    );
    clock.advance(vellum_wire::DEFAULT_RESET_WAIT_SECS as i64 * 1000 + 1000);
    assert_eq!(vellum_server::apply_due_resets(&h.state).await.unwrap(), 0);
    assert_eq!(h.state_of(&phone).await, vellum_wire::DeviceState::Approved);

    // A second request, with a shorter wait, that nobody vetoes takes effect after it.
    let (status, _) = send(&h.app, admin_put(r#"{"reset_wait_secs": 86400}"#)).await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        r#"{"reset_wait_secs": 0}"#,
        // Below the server's floor (a day by default), which devices pinned.
        r#"{"reset_wait_secs": 3600}"#,
        r#"{"reset_wait_secs": 999999999999}"#,
    ] {
        let (status, body) = send(&h.app, admin_put(bad)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (status, second) = reset("alice").await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        second["effective_at"].as_i64().unwrap(),
        clock.now_secs() + 86400
    );
    clock.advance(86_399_000);
    assert_eq!(vellum_server::apply_due_resets(&h.state).await.unwrap(), 0);
    assert_eq!(h.state_of(&phone).await, vellum_wire::DeviceState::Approved);
    clock.advance(1_000);
    assert_eq!(vellum_server::apply_due_resets(&h.state).await.unwrap(), 1);
    assert_eq!(vellum_server::apply_due_resets(&h.state).await.unwrap(), 0);
    assert_eq!(h.state_of(&phone).await, vellum_wire::DeviceState::Revoked);
    // The phone is told, under its own signature, signed at the server's time.
    let path = "/v1/policy";
    let mut request = Request::get(path);
    for (name, value) in signed_headers(&phone, "GET", path, b"", clock.now_secs(), &fresh_nonce())
    {
        request = request.header(name, value);
    }
    let (status, body) = send(&h.app, request.body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    let directory = h.state.directory().await.unwrap();
    let alice_state = directory.read(|d| d.user("alice").cloned()).await.unwrap();
    assert_eq!(alice_state.identity, None);
    assert!(alice_state
        .devices
        .values()
        .all(|d| d.status == DeviceStatus::Revoked));
    // The next device enrolled starts a new identity.
    let code = {
        let (status, body) = send(
            &h.app,
            admin("POST", "/v1/admin/users/alice/devices", json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().unwrap().to_owned()
    };
    let (_, answer) = h.enroll_answered("alice", &code).await;
    assert_eq!(answer["state"], "approved");
}

#[tokio::test]
async fn issue_9_admin_lists_and_revokes_devices() {
    let h = harness();
    let phone = h.enroll("alice").await;
    let identity = h.post_identity(&phone, "alice").await;
    let (laptop, _) = h.another_device("alice").await;
    let (tablet, _) = h.another_device("alice").await;
    h.approve("alice", &phone, &identity, &tablet).await;
    let bob = h.enroll("bob").await;
    let list = |name: &str| {
        send(
            &h.app,
            admin("GET", &format!("/v1/admin/users/{name}/devices"), json!({})),
        )
    };

    let (status, listed) = list("alice").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let states = states_of(&listed);
    assert_eq!(
        states,
        std::collections::BTreeMap::from([
            (phone.id.clone(), "approved".to_owned()),
            (laptop.id.clone(), "pending".to_owned()),
            (tablet.id.clone(), "approved".to_owned()),
        ])
    );
    let first = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == phone.id.as_str())
        .unwrap();
    assert_eq!(first["user"], "alice");
    assert_eq!(b64_decode(&first["signature_key"]), phone.key.public_key());
    assert_eq!(first["last_seen"], Value::Null, "never synced");
    // A sync is noted, a pending device's too.
    for device in [&phone, &laptop] {
        let (status, _) = h.call(device, "GET", "/v1/sync", None).await;
        assert_eq!(status, StatusCode::OK);
        let (_, listed) = list("alice").await;
        let seen = listed["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == device.id.as_str())
            .unwrap()["last_seen"]
            .as_i64();
        assert!(
            seen.is_some_and(|seen| (seen - now()).abs() < 60),
            "last seen at its sync: {seen:?}"
        );
    }
    let (status, body) = list("records").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = list("nobody").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_user");
    let (status, body) = send(
        &h.app,
        Request::get("/v1/admin/users/alice/devices")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");

    let revoke = |name: &str, id: &str| {
        send(
            &h.app,
            admin(
                "POST",
                &format!("/v1/admin/users/{name}/devices/{id}/revoke"),
                json!({}),
            ),
        )
    };
    // Not alice's, not a device, records: refused, nothing changes.
    for (name, id, code, status_want) in [
        ("alice", bob.id.as_str(), "not_found", StatusCode::NOT_FOUND),
        ("alice", "ghost", "not_found", StatusCode::NOT_FOUND),
        ("records", "ghost", "bad_request", StatusCode::BAD_REQUEST),
        ("nobody", "ghost", "unknown_user", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = revoke(name, id).await;
        assert_error(status, &body, status_want, code);
    }
    let size = h.mirror(&phone).await.size();

    // A pending device was never listed: revoked with no entry.
    let (status, body) = revoke("alice", &laptop.id).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(h.mirror(&phone).await.size(), size);
    let (status, body) = h.call(&laptop, "GET", "/v1/approvals/me", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    // A listed one is revoked publicly; twice is fine.
    let (status, body) = revoke("alice", &tablet.id).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = revoke("alice", &tablet.id).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mirror = h.mirror(&phone).await;
    assert_eq!(mirror.size(), size + 1);
    assert_eq!(
        mirror
            .state
            .vouch("alice", &tablet.id, &tablet.key.public_key()),
        Vouch::Revoked
    );
    let (status, body) = h.call(&tablet, "GET", "/v1/sync", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "device_revoked");
    // Nor is a revoked device added to a chat.
    let (mut group, group_id) = h.group(&phone, &[]).await;
    let kp = tablet
        .mls
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap();
    let out = group
        .commit_builder()
        .add_member(kp)
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(
            &phone,
            "POST",
            &format!("/v1/groups/{group_id}/commits"),
            Some(commit_json(&out)),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "policy_violation",
    );
    assert!(
        body["message"].as_str().unwrap().contains("was revoked"),
        "{body}"
    );
    let (_, listed) = list("alice").await;
    let states = states_of(&listed);
    assert_eq!(states[&laptop.id], "revoked");
    assert_eq!(states[&tablet.id], "revoked");
    assert_eq!(states[&phone.id], "approved");
}

#[tokio::test]
async fn issue_9_upgrade_lists_existing_devices_as_legacy() {
    // The v0.1.0 fixture: alice's, bob's and the archiver's devices.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/v0.1.0/server/server.db"
        ),
        &path,
    )
    .unwrap();
    let expected: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/v0.1.0/expected.json")).unwrap();
    let open = |key: [u8; 32]| {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        harness_over(store, Arc::new(ManualClock::at_system_time()), key, |c| {
            c.directory_origin = Some("directory.test.example/vellum".into());
        })
    };
    let h = open([5; 32]);
    let directory = h.state.open_directory().await.unwrap();
    let leaves = h.store.directory_entries(0, 100).await.unwrap();
    let entries: Vec<vellum_directory::DirectoryEntry> = leaves
        .iter()
        .map(|l| vellum_directory::DirectoryEntry::parse(l).unwrap())
        .collect();
    let listed: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| match &e.change {
            vellum_directory::Change::Legacy { device } => {
                Some((e.user.as_str(), device.device_id.as_str()))
            }
            _ => None,
        })
        .collect();
    let mut want: Vec<(&str, &str)> = expected["devices"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(user, id)| (user.as_str(), id.as_str().unwrap()))
        .collect();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "every device but the archiver's, as legacy");
    assert_eq!(entries.len(), listed.len() + 1);
    assert_eq!(
        entries.last().unwrap().change,
        vellum_directory::Change::UpgradeDone
    );
    let state = directory.read(|d| d.clone()).await;
    for (user, id) in &listed {
        let device = h.store.device_record(id).await.unwrap().unwrap();
        assert_eq!(device.state, vellum_wire::DeviceState::Legacy);
        assert_eq!(
            state.vouch(user, id, &device.device.signature_key),
            Vouch::Legacy
        );
    }
    assert!(state.user("records").is_none());
    let size = directory.size();
    drop(h);

    // Restarted: replayed, not listed again. With another directory key: refused, clearly.
    let h = open([5; 32]);
    assert_eq!(h.state.open_directory().await.unwrap().size(), size);
    assert_eq!(
        h.store.directory_entries(0, 100).await.unwrap().len() as u64,
        size
    );
    drop(h);
    let h = open([6; 32]);
    let err = h.state.open_directory().await.unwrap_err().to_string();
    assert!(err.contains("directory.key"), "{err}");
    drop(h);
    // An entry altered in the database stops the start, naming it.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE directory_entries SET body = CAST(REPLACE(CAST(body AS TEXT), '\"user_seq\":0', '\"user_seq\":7') AS BLOB) WHERE idx = 1",
        [],
    )
    .unwrap();
    drop(raw);
    let h = open([5; 32]);
    let err = h.state.open_directory().await.unwrap_err().to_string();
    assert!(err.contains("entry 1 "), "{err}");
}

#[tokio::test]
async fn issue_9_legacy_devices_confirm_through_the_earliest() {
    // Devices enrolled before the directory (made legacy as V7 makes them).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let h = harness_over(
        store,
        Arc::new(ManualClock::at_system_time()),
        [7; 32],
        |_| {},
    );
    let enroll_raw = |user: &'static str, seq: u8| {
        let h = &h;
        async move {
            if !h.store.user_exists(user).await.unwrap() {
                h.store.create_user(user, 0).await.unwrap();
            }
            let code = [seq; 32];
            h.store
                .add_enrollment_code(user, code, i64::MAX)
                .await
                .unwrap();
            let key = DeviceKey::generate();
            let id = format!("{user}{seq:02}");
            h.store
                .enroll_device(
                    code,
                    i64::from(seq),
                    vellum_store::Device {
                        device_id: id.clone(),
                        user: user.into(),
                        signature_key: key.public_key().to_vec(),
                    },
                    false,
                )
                .await
                .unwrap();
            let org = &h.state.org;
            let cert = org.issue(user, &id, &key.public_key());
            let identity = OrgIdentityProvider::new(org.public_key());
            let mls = device_client(
                &DeviceCertificate::verify(&cert.to_bytes(), identity.org_key()).unwrap(),
                &key,
                identity,
                InMemoryGroupStateStorage::default(),
                InMemoryKeyPackageStorage::default(),
            );
            TestDevice { id, key, mls }
        }
    };
    let old = enroll_raw("alice", 1).await;
    let newer = enroll_raw("alice", 2).await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE devices SET state = 'legacy'", [])
        .unwrap();
    assert_eq!(
        h.mirror(&old).await.size(),
        3,
        "two legacy entries and upgrade_done"
    );
    // Only the earliest starts the identity.
    let identity = IdentityKey::generate();
    let (status, body) = h
        .call(
            &newer,
            "POST",
            "/v1/directory/changes",
            Some(json!({ "change": identity.identity_change("alice", device_ref(&newer), &newer.key) })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = h
        .call(
            &old,
            "POST",
            "/v1/directory/changes",
            Some(
                json!({ "change": identity.identity_change("alice", device_ref(&old), &old.key) }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.state_of(&old).await, vellum_wire::DeviceState::Approved);
    // The other confirms through an approval by it, as a new device would.
    let opened = h.approve("alice", &old, &identity, &newer).await;
    assert_eq!(opened.public(), identity.public());
    let mirror = h.mirror(&newer).await;
    assert_eq!(
        mirror
            .state
            .vouch("alice", &newer.id, &newer.key.public_key()),
        Vouch::Approved
    );
}

#[tokio::test]
async fn issue_9_directory_checkpoint_verifies_and_witness_cosigns() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), data.path().join("server"));
    // The log key a witness operator is given: DATA/directory.vkey, from a first start.
    let vkey = {
        let state = AppState::open(config.clone()).unwrap();
        let key = std::fs::metadata(data.path().join("server/directory.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let vkey = std::fs::read_to_string(data.path().join("server/directory.vkey")).unwrap();
        assert_eq!(
            vkey.trim(),
            state.directory_signer().unwrap().verifier_key()
        );
        vkey.trim().to_owned()
    };
    let witness = Arc::new(
        vellum_witness::Witness::open(&data.path().join("witness"), std::slice::from_ref(&vkey))
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(vellum_witness::serve(
        listener,
        witness.clone(),
        std::future::pending(),
    ));
    config.directory_witnesses = vec![vellum_witness::WitnessTarget {
        url,
        verifier: witness.verifier(),
    }];
    let state = Arc::new(AppState::open(config.clone()).unwrap());
    let h = Harness {
        app: app(state.clone()),
        store: Arc::new(SqliteStore::in_memory().unwrap()), // unused: the state has its own
        state,
    };
    let (status, pinned) = send(
        &h.app,
        Request::get("/v1/directory/config")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pinned["log_key"], vkey.as_str());
    assert_eq!(pinned["witnesses"], json!([witness.verifier_key()]));
    assert_eq!(pinned["quorum"], 1);
    let token = std::fs::read_to_string(data.path().join("server/admin-token")).unwrap();
    let (status, body) = send(
        &h.app,
        Request::post("/v1/admin/users")
            .header("authorization", format!("Bearer {}", token.trim()))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"name":"alice"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alice = h.enroll_with("alice", body["code"].as_str().unwrap()).await;
    let directory = h.state.directory().await.unwrap().clone();
    let http = reqwest::Client::new();
    let cosigned_note = |note: &str| witness.verifier().verify(note).map(|(c, _)| c.size);

    assert_eq!(directory.cosign(&h.state.store, &http).await, 1);
    let (_, checkpoint) = h
        .call(&alice, "GET", "/v1/directory/checkpoint", None)
        .await;
    assert_eq!(cosigned_note(checkpoint["note"].as_str().unwrap()), Ok(1));
    // A new checkpoint is served once it carries the quorum; until then the witnessed one,
    // and no entry past it.
    h.post_identity(&alice, "alice").await;
    let (_, checkpoint) = h
        .call(&alice, "GET", "/v1/directory/checkpoint", None)
        .await;
    assert_eq!(cosigned_note(checkpoint["note"].as_str().unwrap()), Ok(1));
    let (_, synced) = h.call(&alice, "GET", "/v1/sync", None).await;
    assert_eq!(synced["directory_size"], 1);
    let (_, page) = h
        .call(&alice, "GET", "/v1/directory/entries?start=0", None)
        .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(directory.cosign(&h.state.store, &http).await, 1);
    let mirror = h.mirror(&alice).await;
    assert_eq!(mirror.size(), 2);
    let (_, checkpoint) = h
        .call(&alice, "GET", "/v1/directory/checkpoint", None)
        .await;
    let note = checkpoint["note"].as_str().unwrap();
    assert_eq!(cosigned_note(note), Ok(2));
    assert_eq!(
        vellum_witness::latest(
            &data.path().join("witness"),
            pinned["origin"].as_str().unwrap()
        )
        .unwrap()
        .as_deref(),
        Some(note),
        "the witness keeps what it cosigned"
    );
    // The cosigned note is what the store keeps.
    assert_eq!(
        h.state
            .store
            .directory_checkpoint()
            .await
            .unwrap()
            .as_deref(),
        Some(note)
    );
    drop(h);
    drop(directory);

    // Restarted: the witness's 409 tells the size it holds; the next checkpoint is proved
    // consistent from there and cosigned.
    let state = Arc::new(AppState::open(config).unwrap());
    let directory = state.open_directory().await.unwrap().clone();
    assert_eq!(directory.size(), 2);
    let reset = directory
        .append(&state.store, state.now_secs(), |_| {
            Ok(vec![vellum_server::Append {
                user: "alice".into(),
                change: vellum_directory::Change::ResetRequested {
                    request_id: "r1".into(),
                    effective_at: i64::MAX,
                },
                devices: None,
            }])
        })
        .await
        .unwrap();
    assert_eq!(reset, Some(2..3));
    assert_eq!(directory.cosign(&state.store, &http).await, 1);
    assert_eq!(directory.size(), 3);
}

/// Issue 10: the server runs the roles on every commit (a member who is no admin may not add
/// others: 403 `not_chat_admin`) and takes leave proposals: only signed by the leaving device,
/// only removing its own user's devices, at the current epoch; delivery to the leaver stops at
/// once, and a commit that leaves the leaver in is stale.
#[tokio::test]
async fn issue_10_roles_and_leaving_on_the_public_handshake() {
    use vellum_mls::ChatSettings;
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let dave = h.enroll("dave").await;
    let mut group = alice
        .mls
        .create_group(
            ChatSettings::new("alice").to_extensions(ExtensionList::new()),
            Default::default(),
            None,
        )
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    let (status, body) = h
        .call(
            &alice,
            "POST",
            "/v1/groups",
            Some(json!({ "group_info": b64(&info) })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group_id = body["group_id"].as_str().unwrap().to_owned();
    let commits = format!("/v1/groups/{group_id}/commits");
    let leave = format!("/v1/groups/{group_id}/leave");
    let kp = |d: &TestDevice| {
        d.mls
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    };
    let add = group
        .commit_builder()
        .add_member(kp(&bob))
        .unwrap()
        .add_member(kp(&carol))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&add)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    group.apply_pending_commit().unwrap();
    let welcome = &add.welcome_messages[0];
    let (mut bob_group, _) = bob.mls.join_group(None, welcome, None).unwrap();
    let (mut carol_group, _) = carol.mls.join_group(None, welcome, None).unwrap();

    // Bob is no admin: adding dave is refused, and nothing changes.
    let by_bob = bob_group
        .commit_builder()
        .add_member(kp(&dave))
        .unwrap()
        .build()
        .unwrap();
    let (status, body) = h
        .call(&bob, "POST", &commits, Some(commit_json(&by_bob)))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_chat_admin");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bob may not add dave"),
        "{body}"
    );
    bob_group.clear_pending_commit();
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 1);

    // Leave: bad input first, each refused with nothing changed.
    let carol_index = carol_group.current_member_index();
    let proposal = b64(&carol_group
        .propose_remove(carol_index, vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let unsigned = Request::post(leave.as_str())
        .header("content-type", "application/json")
        .body(Body::from(json!({ "proposals": [proposal] }).to_string()))
        .unwrap();
    let (status, body) = send(&h.app, unsigned).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = h
        .call(&carol, "POST", &leave, Some(json!({ "proposals": [] })))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let many: Vec<&String> = std::iter::repeat_n(&proposal, 65).collect();
    let (status, body) = h
        .call(&carol, "POST", &leave, Some(json!({ "proposals": many })))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(
            &carol,
            "POST",
            &leave,
            Some(json!({ "proposals": [b64(b"\x00\x01junk")] })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed_mls");
    // Posted by another member than its signer.
    let (status, body) = h
        .call(
            &bob,
            "POST",
            &leave,
            Some(json!({ "proposals": [proposal] })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    // Bob proposing carol's removal is no leave.
    let pushed = b64(&bob_group
        .propose_remove(carol_index, vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let (status, body) = h
        .call(&bob, "POST", &leave, Some(json!({ "proposals": [pushed] })))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_chat_admin");
    bob_group.clear_proposal_cache(); // refused: it is in no commit
    assert!(h.store.is_member(&group_id, &carol.id).await.unwrap());

    // Carol leaves (the signed request replayed is refused).
    let bytes = json!({ "proposals": [proposal] }).to_string().into_bytes();
    let headers = signed_headers(&carol, "POST", &leave, &bytes, now(), "leave-1");
    let build = || {
        let mut r = Request::post(leave.as_str()).header("content-type", "application/json");
        for (name, value) in &headers {
            r = r.header(*name, value);
        }
        r.body(Body::from(bytes.clone())).unwrap()
    };
    let (status, body) = send(&h.app, build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(&h.app, build()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "replayed_request");
    assert!(
        !h.store.is_member(&group_id, &carol.id).await.unwrap(),
        "cut off at once"
    );
    let (status, body) = h
        .call(
            &carol,
            "POST",
            &leave,
            Some(json!({ "proposals": [proposal] })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");

    // Alice commits without having seen the proposal: stale, she syncs and commits again.
    let blind = group.commit_builder().build().unwrap();
    let (status, body) = h
        .call(&alice, "POST", &commits, Some(commit_json(&blind)))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_epoch");
    group.clear_pending_commit();
    // Bob (no admin) takes the proposal from the log and commits it.
    let pending = h.store.pending(&bob.id, 100).await.unwrap();
    let entries = &pending
        .groups
        .iter()
        .find(|(g, _)| *g == group_id)
        .unwrap()
        .1;
    let logged = entries
        .iter()
        .find(|e| e.kind == vellum_wire::EntryKind::Proposal)
        .expect("the proposal is in the log");
    bob_group
        .process_incoming_message(MlsMessage::from_bytes(&logged.payload).unwrap())
        .unwrap();
    let commit = bob_group.commit_builder().build().unwrap();
    let (status, body) = h
        .call(&bob, "POST", &commits, Some(commit_json(&commit)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let members = h.store.group_members(&group_id).await.unwrap();
    assert!(
        !members.contains(&carol.id) && members.contains(&bob.id),
        "{members:?}"
    );
    assert_eq!(h.store.group(&group_id).await.unwrap().unwrap().epoch, 2);
}

/// Issue 10, delivery state: a member reads every current member device's acknowledged
/// position; nobody else does, and only by a fresh signed request.
#[tokio::test]
async fn issue_10_chat_cursors_are_for_members_and_follow_acks() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let (mut group, group_id) = h.group(&alice, &[&bob]).await;
    let ct = b64(&group
        .encrypt_application_message(b"hello", vec![])
        .unwrap()
        .to_bytes()
        .unwrap());
    let (status, accepted) = h
        .call(
            &alice,
            "POST",
            &format!("/v1/groups/{group_id}/messages"),
            Some(json!({ "client_msg_id": "m1", "message": ct })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seq = accepted["seq"].as_u64().unwrap();
    let path = format!("/v1/groups/{group_id}/cursors");
    let acked = |cursors: &Value, device: &str| -> u64 {
        cursors["cursors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["device_id"] == device)
            .and_then(|c| c["acked_seq"].as_u64())
            .unwrap_or_else(|| panic!("no {device} in {cursors}"))
    };
    let (status, cursors) = h.call(&bob, "GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{cursors}");
    assert_eq!(cursors["cursors"].as_array().unwrap().len(), 2);
    assert!(
        acked(&cursors, &bob.id) < seq,
        "not delivered yet: {cursors}"
    );
    let (status, _) = h
        .call(
            &bob,
            "POST",
            "/v1/ack",
            Some(json!({ "welcomes": [], "cursors": [{ "group_id": group_id, "seq": seq }] })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, cursors) = h.call(&alice, "GET", &path, None).await;
    assert_eq!(acked(&cursors, &bob.id), seq);
    assert!(cursors["cursors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["user"] == "bob"));

    // Not a member; an unknown or malformed chat; unsigned; replayed.
    let (status, body) = h.call(&carol, "GET", &path, None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    let (status, body) = h.call(&alice, "GET", "/v1/groups/00ff/cursors", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_chat");
    let (status, body) = h
        .call(&alice, "GET", "/v1/groups/%00%ff/cursors", None)
        .await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, body) = send(&h.app, Request::get(&path).body(Body::empty()).unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let headers = signed_headers(&alice, "GET", &path, b"", now(), "cursor-nonce");
    let build = || {
        let mut r = Request::get(&path);
        for (name, value) in &headers {
            r = r.header(*name, value);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _) = send(&h.app, build()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&h.app, build()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "replayed_request");
}

/// A signed request with a raw body (a file chunk), signed again from the server's start if
/// it answers so (as `Harness::call` does); the status and the raw answer.
async fn raw_call(
    h: &Harness,
    device: &TestDevice,
    method: &str,
    path: &str,
    body: &[u8],
) -> (StatusCode, Vec<u8>) {
    let build = |timestamp: i64| {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/octet-stream");
        for (name, value) in signed_headers(device, method, path, body, timestamp, &fresh_nonce()) {
            builder = builder.header(name, value);
        }
        builder.body(Body::from(body.to_vec())).unwrap()
    };
    let mut response = h.app.clone().oneshot(build(now())).await.unwrap();
    if let Some(start) = response.headers().get(AuthHeaders::SERVER_START) {
        let start: i64 = start.to_str().unwrap().parse().unwrap();
        response = h.app.clone().oneshot(build(start)).await.unwrap();
    }
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

fn code_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes).unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Issue 10: a file is uploaded in order, by its uploader, in chunks of exactly the length
/// its declared size implies, within the org's limits; only members download it; its
/// uploader deletes it for everyone; it is purged at its expiry.
#[tokio::test]
async fn issue_10_blobs_upload_in_order_download_by_members_and_go_at_expiry() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let carol = h.enroll("carol").await;
    let (_group, group_id) = h.group(&alice, &[&bob]).await;
    let create = format!("/v1/groups/{group_id}/blobs");

    // Unauthenticated, malformed, outside the bounds, non-member: refused, nothing stored.
    let (status, body) = send(
        &h.app,
        Request::post(&create)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"size":1,"chunk_size":4096}"#))
            .unwrap(),
    )
    .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (status, body) = h
        .call(&alice, "POST", &create, Some(json!({ "size": "big" })))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 1, "chunk_size": 1 })),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(
            &carol,
            "POST",
            &create,
            Some(json!({ "size": 1, "chunk_size": 4096 })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_member");
    let mut policy = h.store.org_policy().await.unwrap();
    policy.max_file_bytes = 10_000;
    policy.user_quota_bytes = 14_999;
    h.store.set_org_policy(policy.clone()).await.unwrap();
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 10_001, "chunk_size": 4096 })),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
    );

    // 5,000 bytes in chunks of 4 KiB: 4,112 and 920 bytes of ciphertext.
    let (status, created) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 5_000, "chunk_size": 4096 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["chunks"], 2);
    let blob = created["blob"].as_str().unwrap().to_owned();
    let chunk = |i: u64| format!("/v1/blobs/{blob}/chunks/{i}");
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 10_000, "chunk_size": 4096 })),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "quota_exceeded",
    );

    let first = vec![0xA5; 4112];
    let last = vec![0x5A; 920];
    let (status, body) = raw_call(&h, &alice, "PUT", &chunk(1), &last).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::CONFLICT, "chunk_out_of_order".into())
    );
    let (status, body) = raw_call(&h, &alice, "PUT", &chunk(0), &first[..4000]).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::BAD_REQUEST, "chunk_size".into())
    );
    let (status, body) = raw_call(&h, &bob, "PUT", &chunk(0), &first).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    let (status, body) = raw_call(&h, &alice, "PUT", &chunk(7), &first).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );
    // Oversized: past the body limit.
    let huge = vec![0u8; h.state.config.max_body_bytes + 1];
    let (status, _) = raw_call(&h, &alice, "PUT", &chunk(0), &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A replayed chunk request is refused by the signature check.
    let path = chunk(0);
    let headers = signed_headers(&alice, "PUT", &path, &first, now(), &fresh_nonce());
    let replayable = || {
        let mut builder = Request::put(&path);
        for (name, value) in &headers {
            builder = builder.header(*name, value);
        }
        builder.body(Body::from(first.clone())).unwrap()
    };
    let (status, _) = send(&h.app, replayable()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(&h.app, replayable()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "replayed_request");
    let (status, body) = raw_call(&h, &alice, "PUT", &chunk(0), &first).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::CONFLICT, "chunk_exists".into())
    );

    // Status says where to resume; nothing is downloadable before completion.
    let (status, st) = h
        .call(&bob, "GET", &format!("/v1/blobs/{blob}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(
        (st["present"].as_u64(), st["complete"].as_bool()),
        (Some(1), Some(false))
    );
    let (status, body) = raw_call(&h, &bob, "GET", &chunk(0), b"").await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::CONFLICT, "blob_incomplete".into())
    );
    let complete = format!("/v1/blobs/{blob}/complete");
    let (status, body) = h.call(&alice, "POST", &complete, None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "blob_incomplete");
    let (status, _) = raw_call(&h, &alice, "PUT", &chunk(1), &last).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.call(&alice, "POST", &complete, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = raw_call(&h, &alice, "PUT", &chunk(1), &last).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::CONFLICT, "blob_complete".into())
    );

    // Members download the same bytes; others may not.
    let (status, got) = raw_call(&h, &bob, "GET", &chunk(0), b"").await;
    assert_eq!((status, got), (StatusCode::OK, first.clone()));
    let (status, got) = raw_call(&h, &bob, "GET", &chunk(1), b"").await;
    assert_eq!((status, got), (StatusCode::OK, last.clone()));
    let (status, body) = raw_call(&h, &carol, "GET", &chunk(0), b"").await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::FORBIDDEN, "not_member".into())
    );
    let (status, body) = h
        .call(&carol, "POST", &format!("/v1/blobs/{blob}/archived"), None)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // Several chunks in one answer; a count out of bounds is refused.
    let (status, got) = raw_call(&h, &bob, "GET", &format!("{}?count=5", chunk(0)), b"").await;
    assert_eq!(
        (status, got),
        (StatusCode::OK, [first.clone(), last.clone()].concat())
    );
    let (status, body) = raw_call(&h, &bob, "GET", &format!("{}?count=0", chunk(0)), b"").await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::BAD_REQUEST, "bad_request".into())
    );

    // Delete for everyone: the uploader's user only.
    let (status, body) = h
        .call(&bob, "DELETE", &format!("/v1/blobs/{blob}"), None)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = h
        .call(&alice, "DELETE", &format!("/v1/blobs/{blob}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = raw_call(&h, &bob, "GET", &chunk(0), b"").await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    assert!(h.store.blob(&blob).await.unwrap().is_none());

    // Consecutive chunks in one body: split by their lengths, or refused whole.
    let (_, created) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 5_000, "chunk_size": 4096 })),
        )
        .await;
    let batched = created["blob"].as_str().unwrap().to_owned();
    let path = format!("/v1/blobs/{batched}/chunks/0");
    let both = [first.clone(), last.clone()].concat();
    let (status, body) = raw_call(&h, &alice, "PUT", &path, &both[..both.len() - 1]).await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::BAD_REQUEST, "chunk_size".into())
    );
    let (status, body) = raw_call(
        &h,
        &alice,
        "PUT",
        &path,
        &[both.clone(), vec![0; 16]].concat(),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (StatusCode::BAD_REQUEST, "chunk_size".into())
    );
    assert_eq!(h.store.blob(&batched).await.unwrap().unwrap().present, 0);
    let (status, _) = raw_call(&h, &alice, "PUT", &path, &both).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.store.blob(&batched).await.unwrap().unwrap().present, 2);

    // A file whose message expires goes with it at the next sweep.
    let expired = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1;
    let (status, created) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 10, "chunk_size": 4096, "expires_at": expired })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let short = created["blob"].as_str().unwrap().to_owned();
    assert_eq!(vellum_server::purge_expired(&h.state).await.unwrap(), 1);
    assert!(h.store.blob(&short).await.unwrap().is_none());

    // An org that forbids files in transitory chats refuses the upload.
    policy.files_in_transitory = false;
    h.store.set_org_policy(policy).await.unwrap();
    let (status, body) = h
        .call(
            &alice,
            "POST",
            &create,
            Some(json!({ "size": 10, "chunk_size": 4096 })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "files_forbidden");
}

/// Issue 10 review: an upload begun before the org forbade files in the chat's class could
/// still be finished, and a download could hold any number of 1 MiB chunks in one response.
#[tokio::test]
async fn issue_10_review_an_upload_follows_the_current_policy_and_downloads_stay_bounded() {
    let h = harness();
    let alice = h.enroll("alice").await;
    let bob = h.enroll("bob").await;
    let (_group, group_id) = h.group(&alice, &[&bob]).await;
    let chunk: u64 = 1 << 20;
    let size = 12 * chunk;
    let (status, created) = h
        .call(
            &alice,
            "POST",
            &format!("/v1/groups/{group_id}/blobs"),
            Some(json!({ "size": size, "chunk_size": chunk })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let blob = created["blob"].as_str().unwrap().to_owned();
    let sealed = vec![7u8; chunk as usize + 16];

    let mut policy = h.store.org_policy().await.unwrap();
    policy.files_in_transitory = false;
    h.store.set_org_policy(policy.clone()).await.unwrap();
    let path = format!("/v1/blobs/{blob}/chunks/0");
    let (status, body) = raw_call(&h, &alice, "PUT", &path, &sealed).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code_of(&body), "files_forbidden");
    assert_eq!(h.store.blob(&blob).await.unwrap().unwrap().present, 0);

    policy.files_in_transitory = true;
    h.store.set_org_policy(policy).await.unwrap();
    for index in 0..12 {
        let path = format!("/v1/blobs/{blob}/chunks/{index}");
        let (status, body) = raw_call(&h, &alice, "PUT", &path, &sealed).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", code_of(&body));
    }
    let (status, _) = h
        .call(&alice, "POST", &format!("/v1/blobs/{blob}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // 64 chunks asked, 12 MiB stored: one response carries at most the request size limit.
    let path = format!("/v1/blobs/{blob}/chunks/0?count=64");
    let (status, body) = raw_call(&h, &bob, "GET", &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() <= 8 << 20, "{} bytes", body.len());
    assert_eq!(body.len() % sealed.len(), 0, "whole chunks only");
    assert!(!body.is_empty());
}
