//! Issue 11: FOIA cases over the records API (the router, with accounts of each role):
//! roles, the sealed error, bad input that changes nothing, disposition that spares the
//! records of open cases, and production jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use vellum_archive::Archive;
use vellum_archiver::{app, ArchiveHandle, ArchiverState, OwedReceipts, Vault};
use vellum_record::{Member, Record, RecordKind, FORMAT_VERSION};

const OFFICER: &str = "officer-token";
const ANALYST: &str = "analyst-token";
const AUDITOR: &str = "auditor-token";
const KEYHOLDER: &str = "keyholder-token";

struct Office {
    app: Router,
    shares: Vec<String>,
    /// Record leaves: chat "c1", sent in 2020.
    leaves: Vec<u64>,
    _dir: tempfile::TempDir,
}

fn record(seq: u64, text: &str) -> Record {
    Record {
        version: FORMAT_VERSION,
        chat_id: "c1".into(),
        chat_title: Some("ops".into()),
        seq,
        kind: RecordKind::Message,
        message_id: Some(format!("m{seq}")),
        sender_user: "alice".into(),
        sender_device: "a1".into(),
        recipients: vec![Member {
            user: "bob".into(),
            device_id: "b1".into(),
        }],
        sent_at: 1_580_000_000_000,
        received_at: 1_580_000_000_000,
        text: Some(text.into()),
        expire_secs: None,
        burn_secs: None,
        log_hash: None,
        salt: Some("11".repeat(16)),
        reply_to: None,
        mentions: Vec::new(),
        target: None,
        remove: false,
    }
}

/// A sealed archiver with three records past a one-day retention, and an account of each
/// role with an API token.
fn office() -> Office {
    let dir = tempfile::tempdir().unwrap();
    let signer = vellum_tlog::NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let archive = Archive::open(dir.path(), signer).unwrap();
    let mut vault =
        Vault::sealed(archive, generated.public.clone(), OwedReceipts::in_memory()).unwrap();
    let mut leaves = Vec::new();
    for seq in 1..=3 {
        let event = record(seq, &format!("the quarry report, part {seq}"));
        let reference = event.reference();
        let sealed =
            vellum_records::seal(&vault.public_key, reference.as_bytes(), &event.encode()).unwrap();
        leaves.push(
            vault
                .archive
                .append_record(&reference, event.received_at, &sealed, event.commitments())
                .unwrap()
                .index,
        );
    }
    vault
        .office
        .ensure_first_officer(&vellum_archiver::office::sha256(OFFICER), 1)
        .unwrap();
    for (name, role, token) in [
        ("ana", "analyst", ANALYST),
        ("aud", "auditor", AUDITOR),
        ("kim", "keyholder", KEYHOLDER),
    ] {
        vault
            .office
            .conn()
            .execute(
                "INSERT INTO accounts (name, role, api_token_hash, created_at, created_by)
                 VALUES (?1, ?2, ?3, 1, 'test')",
                rusqlite::params![name, role, &vellum_archiver::office::sha256(token)[..]],
            )
            .unwrap();
    }
    vault
        .schedules
        .schedules
        .insert("default".into(), Some("1d".into()));
    let state = Arc::new(ArchiverState {
        vault: ArchiveHandle::spawn(vault).unwrap(),
        settings: Default::default(),
        console: Default::default(),
    });
    Office {
        app: app(state),
        shares: generated.shares.iter().map(|s| s.to_string()).collect(),
        leaves,
        _dir: dir,
    }
}

impl Office {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, bytes) = self
            .raw(token, method, path, body.map(|b| b.to_string()))
            .await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, value)
    }

    async fn raw(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    async fn unseal(&self) {
        for share in &self.shares[..2] {
            let (status, _) = self
                .call(
                    OFFICER,
                    "POST",
                    "/v1/unseal",
                    Some(json!({ "share": share })),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    async fn new_case(&self) -> String {
        let (status, case) = self
            .call(
                ANALYST,
                "POST",
                "/v1/foia/cases",
                Some(json!({ "requester": "CREW", "description": "quarry records" })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{case}");
        case["id"].as_str().unwrap().to_owned()
    }
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn issue_11_case_routes_check_roles_the_seal_and_input() {
    let office = office();
    // Sealed: the "sealed" error, for reads and writes alike.
    let (status, body) = office.call(ANALYST, "GET", "/v1/foia/cases", None).await;
    assert_eq!((status, code(&body)), (StatusCode::LOCKED, "sealed"));
    let (status, body) = office
        .call(
            ANALYST,
            "POST",
            "/v1/foia/cases",
            Some(json!({ "requester": "r", "description": "d" })),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::LOCKED, "sealed"));
    office.unseal().await;
    let id = office.new_case().await;
    let case_path = format!("/v1/foia/cases/{id}");

    // An auditor and a keyholder read no case and change none.
    for token in [AUDITOR, KEYHOLDER] {
        for (method, path, body) in [
            ("GET", "/v1/foia/cases".to_owned(), None),
            ("GET", case_path.clone(), None),
            (
                "POST",
                format!("{case_path}/notes"),
                Some(json!({ "text": "n" })),
            ),
            ("POST", format!("{case_path}/productions"), Some(json!({}))),
        ] {
            let (status, reply) = office.call(token, method, &path, body).await;
            assert_eq!(
                (status, code(&reply)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{token} {method} {path}"
            );
        }
    }
    let (status, _) = office
        .call("no-such-token", "GET", "/v1/foia/cases", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, before) = office.call(ANALYST, "GET", &case_path, None).await;
    let leaf = office.leaves[0];
    for (method, path, body, want) in [
        // Malformed, unknown fields, oversized.
        (
            "POST",
            format!("{case_path}/notes"),
            "{\"text\":".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("{case_path}/notes"),
            json!({ "text": "n", "by": "x" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("{case_path}/notes"),
            json!({ "text": "n".repeat(70_000) }).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "POST",
            format!("{case_path}/notes"),
            json!({ "text": "n".repeat(10_001) }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            case_path.clone(),
            json!({ "status": "lost" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("{case_path}/leaves"),
            json!({ "leaves": [leaf, 999] }).to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("{case_path}/items"),
            json!({ "q": "quarry", "participant": "bob" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        // Unknown case; a record not in the case; a leaf that is not a number.
        (
            "POST",
            "/v1/foia/cases/FOIA-1999-0001/notes".to_owned(),
            json!({ "text": "n" }).to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            format!("{case_path}/items/{leaf}/review"),
            json!({ "mark": "responsive" }).to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            format!("{case_path}/items/first/review"),
            json!({ "mark": "responsive" }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("{case_path}/items/{leaf}/redactions"),
            json!({ "exemption": "b6", "target": { "kind": "whole" } }).to_string(),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("{case_path}/items/{leaf}/redactions"),
            json!({ "exemption": "b10", "target": { "kind": "whole" } }).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "DELETE",
            format!("{case_path}/redactions/7"),
            String::new(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let body = (!body.is_empty()).then_some(body);
        let (status, reply) = office.raw(ANALYST, method, &path, body).await;
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(status, want, "{method} {path}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, after) = office.call(ANALYST, "GET", &case_path, None).await;
    assert_eq!(before, after, "refused requests changed nothing");

    // The routes are in the OpenAPI document.
    let (_, doc) = office.call(ANALYST, "GET", "/openapi.json", None).await;
    for path in [
        "/v1/foia/cases",
        "/v1/foia/cases/{id}",
        "/v1/foia/cases/{id}/items/{leaf}/redactions",
        "/v1/foia/cases/{id}/productions/{job}/download",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn issue_11_disposition_spares_the_records_of_open_cases() {
    let office = office();
    office.unseal().await;
    let id = office.new_case().await;
    let kept = office.leaves[1];
    let (status, _) = office
        .call(
            ANALYST,
            "POST",
            &format!("/v1/foia/cases/{id}/leaves"),
            Some(json!({ "leaves": [kept] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, disposals) = office
        .call(OFFICER, "POST", "/v1/dispose", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{disposals}");
    let by_leaf = |d: &Value, leaf: u64| {
        d.as_array()
            .unwrap()
            .iter()
            .find(|x| x["leaf"] == leaf)
            .cloned()
            .unwrap()
    };
    let held = by_leaf(&disposals, kept);
    assert_eq!(
        (held["held_by"].as_str(), held["disposed"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    for other in [office.leaves[0], office.leaves[2]] {
        assert_eq!(by_leaf(&disposals, other)["disposed"], true);
    }
    // The record is still in the case, readable.
    let (_, case) = office
        .call(ANALYST, "GET", &format!("/v1/foia/cases/{id}"), None)
        .await;
    assert_eq!(case["records"][0]["leaf"], kept);
    // Closed, the case keeps it no longer.
    let (status, _) = office
        .call(
            ANALYST,
            "PATCH",
            &format!("/v1/foia/cases/{id}"),
            Some(json!({ "status": "closed" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, disposals) = office
        .call(OFFICER, "POST", "/v1/dispose", Some(json!({})))
        .await;
    assert_eq!(by_leaf(&disposals, kept)["disposed"], true);
}

#[tokio::test]
async fn issue_11_a_production_is_a_job_that_ends_and_is_dropped_at_seal() {
    let office = office();
    office.unseal().await;
    let id = office.new_case().await;
    let productions = format!("/v1/foia/cases/{id}/productions");
    // Nothing responsive yet: nothing to produce.
    let (status, body) = office
        .call(ANALYST, "POST", &productions, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let leaf = office.leaves[0];
    office
        .call(
            ANALYST,
            "POST",
            &format!("/v1/foia/cases/{id}/leaves"),
            Some(json!({ "leaves": [leaf] })),
        )
        .await;
    let (status, _) = office
        .call(
            ANALYST,
            "PUT",
            &format!("/v1/foia/cases/{id}/items/{leaf}/review"),
            Some(json!({ "mark": "responsive" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for bad in [
        json!({ "bates_prefix": "has space" }),
        json!({ "formats": ["docx"] }),
    ] {
        let (status, body) = office.call(ANALYST, "POST", &productions, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, job) = office
        .call(
            ANALYST,
            "POST",
            &productions,
            Some(json!({ "bates_prefix": "CREW", "formats": ["pdf", "csv"] })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        (job["total"].as_u64(), job["state"].as_str()),
        (Some(1), Some("running"))
    );
    let job_path = format!("{productions}/{}", job["job"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let (status, view) = office.call(ANALYST, "GET", &job_path, None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        if view["state"] != "running" {
            break view;
        }
        assert!(Instant::now() < deadline, "the production never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, zip) = office
        .raw(ANALYST, "GET", &format!("{job_path}/download"), None)
        .await;
    match finished["state"].as_str() {
        // The production formats in place: one download of the zip, then it is gone.
        Some("done") => {
            assert_eq!(status, StatusCode::OK);
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
            assert!(archive.by_name("manifest.json").is_ok());
            let (status, _) = office
                .raw(ANALYST, "GET", &format!("{job_path}/download"), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "downloaded once");
        }
        // Not yet: the failure is reported, with its reason, and nothing is downloadable.
        Some("failed") => {
            let reason = finished["error"].as_str().unwrap();
            assert!(!reason.is_empty());
            let body: Value = serde_json::from_slice(&zip).unwrap();
            assert_eq!(status, StatusCode::CONFLICT);
            assert!(body["message"].as_str().unwrap().contains(reason), "{body}");
        }
        other => panic!("unexpected state {other:?}"),
    }
    // Sealing drops every job.
    let (status, again) = office
        .call(ANALYST, "POST", &productions, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    office.call(ANALYST, "POST", "/v1/seal", None).await;
    let again = format!("{productions}/{}", again["job"].as_str().unwrap());
    let (status, body) = office.call(ANALYST, "GET", &again, None).await;
    assert_eq!((status, code(&body)), (StatusCode::LOCKED, "sealed"));
    office.unseal().await;
    let (status, _) = office.call(ANALYST, "GET", &again, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "forgotten at the seal");
}
