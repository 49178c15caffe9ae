//! Issue 11: the records API is one OpenAPI document, every operation in it is served, and
//! every operation that needs an account refuses a request without one and a role that may
//! not do it, before it reads the request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;
use vellum_archive::Archive;
use vellum_archiver::office::sha256;
use vellum_archiver::{app, ArchiveHandle, ArchiverState, OwedReceipts, Vault};
use vellum_record::api::office::Role;
use vellum_tlog::NoteSigner;

struct Api {
    app: Router,
    shares: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A sealed archive whose office has one account per role; each account's API token is
/// its role's name.
fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let mut archive = Archive::open(dir.path(), signer).unwrap();
    // A checkpoint exists, so the public routes answer 200 rather than "none yet".
    archive
        .append(vellum_archive::Leaf::Access {
            time: 1,
            action: "test".into(),
            detail: String::new(),
        })
        .unwrap();
    archive.checkpoint().unwrap();
    let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let vault = Vault::sealed(archive, generated.public, OwedReceipts::in_memory()).unwrap();
    vault
        .office
        .ensure_first_officer(&sha256("officer"), 1)
        .unwrap();
    for role in [Role::Keyholder, Role::Analyst, Role::Auditor] {
        vault
            .office
            .create(role.as_str(), role, "officer", 1)
            .unwrap();
        vault
            .office
            .conn()
            .execute(
                "UPDATE accounts SET api_token_hash = ?1 WHERE name = ?2",
                rusqlite::params![&sha256(role.as_str())[..], role.as_str()],
            )
            .unwrap();
    }
    let state = Arc::new(ArchiverState {
        vault: ArchiveHandle::spawn(vault).unwrap(),
        settings: Default::default(),
        console: Default::default(),
    });
    Api {
        app: app(state),
        shares: generated.shares.iter().map(|s| s.to_string()).collect(),
        _dir: dir,
    }
}

async fn call(app: &Router, method: &Method, path: &str, token: Option<&str>) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = if *method == Method::GET || *method == Method::DELETE {
        Body::empty()
    } else {
        Body::from("{}")
    };
    app.clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap()
        .status()
}

/// Every documented operation: (method, path with its parameters filled in, secured).
async fn operations(app: &Router) -> Vec<(Method, String, bool)> {
    let response = app
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let filled: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let secured = op.get("security").is_some();
            out.push((method, filled, secured));
        }
    }
    out
}

#[tokio::test]
async fn issue_11_every_documented_operation_is_served_and_needs_an_account() {
    let api = api();
    let ops = operations(&api.app).await;
    assert!(ops.len() >= 15, "{ops:?}");
    for (method, path, secured) in &ops {
        let anonymous = call(&api.app, method, path, None).await;
        assert_ne!(
            anonymous,
            StatusCode::NOT_FOUND,
            "{method} {path} is not served"
        );
        assert_ne!(anonymous, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if *secured {
            assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
            let forged = call(&api.app, method, path, Some("not-a-token")).await;
            assert_eq!(forged, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn issue_11_each_role_reaches_only_its_own_work() {
    let api = api();
    let forbidden = |role: &str, method: Method, path: &'static str| {
        let app = api.app.clone();
        let role = role.to_owned();
        async move {
            let status = call(&app, &method, path, Some(&role)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {method} {path}");
        }
    };
    // A keyholder unseals, and sees no content, policy or trail.
    forbidden("keyholder", Method::POST, "/v1/search").await;
    forbidden("keyholder", Method::GET, "/v1/holds").await;
    forbidden("keyholder", Method::GET, "/v1/audit").await;
    forbidden("keyholder", Method::GET, "/v1/accounts").await;
    // An analyst works cases and searches, but neither unseals nor manages people or holds.
    forbidden("analyst", Method::POST, "/v1/unseal").await;
    forbidden("analyst", Method::POST, "/v1/accounts").await;
    forbidden("analyst", Method::POST, "/v1/holds").await;
    forbidden("analyst", Method::GET, "/v1/audit").await;
    // An auditor reads the trail and the policy, no content.
    forbidden("auditor", Method::POST, "/v1/search").await;
    forbidden("auditor", Method::POST, "/v1/unseal").await;
    forbidden("auditor", Method::POST, "/v1/schedules").await;
    for (role, method, path) in [
        ("auditor", Method::GET, "/v1/audit"),
        ("auditor", Method::GET, "/v1/holds"),
        ("keyholder", Method::GET, "/v1/status"),
        ("officer", Method::GET, "/v1/accounts"),
    ] {
        let status = call(&api.app, &method, path, Some(role)).await;
        assert_eq!(status, StatusCode::OK, "{role}: {method} {path}");
    }
    // Sealed: content routes say so to the roles that may use them.
    let status = call(&api.app, &Method::POST, "/v1/search", Some("analyst")).await;
    assert_eq!(status, StatusCode::LOCKED);
}

async fn json_call(
    app: &Router,
    method: Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn issue_11_a_disabled_keyholders_share_no_longer_counts() {
    // The attack review: a keyholder handed in a share, was disabled, and the next share
    // still unsealed the archive.
    let api = api();
    let (status, body) = json_call(
        &api.app,
        Method::POST,
        "/v1/unseal",
        "keyholder",
        serde_json::json!({ "share": api.shares[0] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["shares_received"], 1);
    let (status, _) = json_call(
        &api.app,
        Method::POST,
        "/v1/accounts/keyholder/disable",
        "officer",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = json_call(
        &api.app,
        Method::GET,
        "/v1/status",
        "officer",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(body["shares_received"], 0, "{body}");
    assert_eq!(body["sealed"], true);
    // The disabled keyholder's token no longer works at all.
    let (status, _) = json_call(
        &api.app,
        Method::GET,
        "/v1/status",
        "keyholder",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
