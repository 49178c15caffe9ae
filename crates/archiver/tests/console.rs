//! Issue 11, item 4: the records console's defences, driven through the router with
//! `oneshot`: sessions, cookies, CSRF and origin checks, security headers, TOTP replay,
//! single-use setup codes, lockout and permissions by role.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;
use vellum_archive::Archive;
use vellum_archiver::console::{auth, ConsoleState, CSP};
use vellum_archiver::{app, ArchiveHandle, ArchiverState, OwedReceipts, Vault};
use vellum_tlog::NoteSigner;

const OFFICER_TOKEN: &str = "the first officer's records token";
const PASSWORD: &str = "a long enough passphrase";
const HOST: &str = "127.0.0.1:7481";

struct Console {
    app: Router,
    state: Arc<ArchiverState>,
    origin: String,
    vault: ArchiveHandle,
    shares: Vec<String>,
    _dir: tempfile::TempDir,
}

fn console(secure: bool) -> Console {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let archive = Archive::open(dir.path(), signer).unwrap();
    let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let vault = Vault::sealed(archive, generated.public, OwedReceipts::in_memory()).unwrap();
    vault
        .office
        .ensure_first_officer(&vellum_archiver::office::sha256(OFFICER_TOKEN), 1)
        .unwrap();
    let vault = ArchiveHandle::spawn(vault).unwrap();
    let state = Arc::new(ArchiverState {
        vault: vault.clone(),
        settings: Default::default(),
        console: ConsoleState::new(secure),
    });
    Console {
        app: app(state.clone()),
        state,
        origin: format!("{}://{HOST}", if secure { "https" } else { "http" }),
        vault,
        shares: generated.shares.iter().map(|s| s.to_string()).collect(),
        _dir: dir,
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Console {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(path).header(header::HOST, HOST);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_from(
        &self,
        origin: &str,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::from(form_body(fields))).unwrap())
            .await
    }

    /// A POST as a browser sends it from a page of `site` under `no-referrer`.
    async fn post_null_origin(
        &self,
        site: &str,
        path: &str,
        cookie: &str,
        fields: &[(&str, &str)],
    ) -> Answer {
        let request = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "null")
            .header("sec-fetch-site", site)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request.body(Body::from(form_body(fields))).unwrap())
            .await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Answer {
        self.post_from(&self.origin, path, cookie, fields).await
    }

    async fn api(&self, method: &str, path: &str, json: Option<serde_json::Value>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {OFFICER_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json");
        let body = json.map_or(Body::empty(), |j| Body::from(j.to_string()));
        self.send(request.body(body).unwrap()).await
    }

    /// Creates `name` through the API and completes its setup; returns its TOTP secret.
    async fn account(&self, name: &str, role: &str) -> String {
        let code = self.setup_code(name, role).await;
        let page = self.get(&format!("/console/setup?code={code}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let secret = between(&page.body, "id=\"totp-secret\">", "<");
        let done = self
            .post(
                "/console/setup",
                None,
                &[
                    ("code", &code),
                    ("password", PASSWORD),
                    ("again", PASSWORD),
                    ("totp", &totp(&secret, 0)),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{}", done.body);
        assert!(done.body.contains("setup-done"));
        secret
    }

    async fn setup_code(&self, name: &str, role: &str) -> String {
        let created = self
            .api(
                "POST",
                "/v1/accounts",
                Some(serde_json::json!({ "name": name, "role": role })),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let created: serde_json::Value = serde_json::from_str(&created.body).unwrap();
        created["setup_code"].as_str().unwrap().to_owned()
    }

    /// Signs `name` in with the code of `step_offset` steps from now; the session cookie.
    async fn sign_in(&self, name: &str, secret: &str, step_offset: u64) -> Result<String, Answer> {
        let answer = self
            .post(
                "/console/sign-in",
                None,
                &[
                    ("name", name),
                    ("password", PASSWORD),
                    ("code", &totp(secret, step_offset)),
                ],
            )
            .await;
        if answer.status != StatusCode::SEE_OTHER {
            return Err(answer);
        }
        let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
        Ok(set.split(';').next().unwrap().to_owned())
    }

    /// A signed-in account of `role`: its cookie and its CSRF token.
    async fn signed_in(&self, name: &str, role: &str) -> (String, String) {
        let secret = self.account(name, role).await;
        // The setup used this step's code: a sign-in needs a later one.
        let cookie = self.sign_in(name, &secret, 1).await.ok().unwrap();
        let page = self.get("/console/", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = between(&page.body, "name=\"csrf\" value=\"", "\"");
        (cookie, csrf)
    }
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    text[from..from + len].to_owned()
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code `offset` steps after the current one, as an authenticator app computes it.
fn totp(secret: &str, offset: u64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    format!(
        "{:06}",
        auth::totp_code(&raw, now_s() / auth::TOTP_STEP_SECONDS + offset)
    )
}

fn assert_headers(answer: &Answer, what: &str) {
    let h = &answer.headers;
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{what}");
    assert_eq!(h[header::CACHE_CONTROL], "no-store", "{what}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{what}");
}

#[tokio::test]
async fn issue_11_every_console_page_carries_the_security_headers() {
    let c = console(false);
    let (cookie, _) = c.signed_in("olive", "officer").await;
    let (analyst, _) = c.signed_in("ann", "analyst").await;
    for (path, cookie) in [
        ("/console/sign-in", None),
        ("/console/setup?code=nope", None),
        ("/console/", None),
        ("/console/static/console.css", None),
        ("/console/", Some(cookie.as_str())),
        ("/console/search", Some(&cookie)),
        ("/console/holds", Some(&cookie)),
        ("/console/schedules", Some(&cookie)),
        ("/console/audit", Some(&cookie)),
        ("/console/accounts", Some(&cookie)),
        ("/console/token", Some(&cookie)),
        ("/console/unseal", Some(&cookie)),
        ("/console/no-such-page", Some(&cookie)),
        ("/console/accounts", Some(&analyst)),
    ] {
        let answer = c.get(path, cookie).await;
        assert_headers(&answer, path);
    }
    let refused = c
        .post_from("https://evil.example", "/console/sign-in", None, &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_headers(&refused, "a refused POST");
    // Pages render no inline script or style: the policy would block them.
    let page = c.get("/console/", Some(&cookie)).await;
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
}

#[tokio::test]
async fn issue_11_a_signed_out_browser_reaches_only_sign_in_and_setup() {
    let c = console(false);
    for path in [
        "/console/",
        "/console/unseal",
        "/console/search",
        "/console/holds",
        "/console/schedules",
        "/console/audit",
        "/console/accounts",
        "/console/token",
        "/console/anything",
    ] {
        let answer = c.get(path, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.location(), "/console/sign-in", "{path}");
        // A cookie that is no session's is the same as none.
        let forged = c.get(path, Some("vellum-session=0123456789abcdef")).await;
        assert_eq!(forged.location(), "/console/sign-in", "{path}");
    }
    for path in [
        "/console/seal",
        "/console/unseal",
        "/console/holds",
        "/console/accounts",
        "/console/search",
    ] {
        let answer = c.post(path, None, &[("csrf", "x")]).await;
        assert_eq!(answer.location(), "/console/sign-in", "{path}");
    }
    assert_eq!(c.get("/console/sign-in", None).await.status, StatusCode::OK);
    let bad = c.get("/console/setup?code=0123", None).await;
    assert_eq!(bad.status, StatusCode::GONE);
    assert!(bad.body.contains("does not work"));
}

#[tokio::test]
async fn issue_11_session_cookies_are_http_only_same_site_strict_and_secure_over_tls() {
    for secure in [false, true] {
        let c = console(secure);
        let secret = c.account("kim", "keyholder").await;
        let origin = if secure { "https" } else { "http" };
        let answer = c
            .post_from(
                &format!("{origin}://{HOST}"),
                "/console/sign-in",
                None,
                &[
                    ("name", "kim"),
                    ("password", PASSWORD),
                    ("code", &totp(&secret, 1)),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        let attrs: Vec<&str> = cookie.split("; ").collect();
        assert!(attrs.contains(&"HttpOnly"), "{cookie}");
        assert!(attrs.contains(&"SameSite=Strict"), "{cookie}");
        assert!(attrs.contains(&"Path=/"), "{cookie}");
        assert_eq!(attrs.contains(&"Secure"), secure, "{cookie}");
        assert_eq!(
            cookie.starts_with("__Host-vellum-session="),
            secure,
            "{cookie}"
        );
        // Only the token's hash is stored.
        let token = attrs[0].split_once('=').unwrap().1.to_owned();
        let stored: Vec<Vec<u8>> = c
            .vault
            .call(|v| {
                let mut stmt = v
                    .office
                    .conn()
                    .prepare("SELECT token_hash FROM sessions")
                    .unwrap();
                let rows = stmt.query_map([], |r| r.get(0)).unwrap();
                rows.map(Result::unwrap).collect()
            })
            .await
            .unwrap();
        assert_eq!(
            stored,
            vec![vellum_archiver::office::sha256(&token).to_vec()]
        );
    }
}

#[tokio::test]
async fn issue_11_forms_without_the_session_csrf_token_or_from_another_origin_are_refused() {
    let c = console(false);
    let (cookie, csrf) = c.signed_in("olive", "officer").await;
    let fields = |token: &str| {
        vec![
            ("csrf".to_owned(), token.to_owned()),
            ("name".to_owned(), "case-1".to_owned()),
            ("reason".to_owned(), "CREW v. Agency".to_owned()),
        ]
    };
    let wrong = fields("0000");
    let answer = c
        .post("/console/holds", Some(&cookie), &as_refs(&wrong))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("no longer valid"));
    let missing = c
        .post("/console/holds", Some(&cookie), &[("name", "case-1")])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let right = fields(&csrf);
    let cross = c
        .post_from(
            "https://evil.example",
            "/console/holds",
            Some(&cookie),
            &as_refs(&right),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let hidden = c
        .post_null_origin("cross-site", "/console/holds", &cookie, &as_refs(&right))
        .await;
    assert_eq!(hidden.status, StatusCode::FORBIDDEN);
    // Nothing was placed by the refused forms.
    let holds = c.api("GET", "/v1/holds", None).await;
    assert_eq!(holds.body, "[]");
    let placed = c
        .post("/console/holds", Some(&cookie), &as_refs(&right))
        .await;
    assert_eq!(placed.status, StatusCode::OK, "{}", placed.body);
    let holds: serde_json::Value =
        serde_json::from_str(&c.api("GET", "/v1/holds", None).await.body).unwrap();
    assert_eq!(holds[0]["name"], "case-1");
    assert_eq!(holds[0]["reason"], "CREW v. Agency");
    assert_eq!(holds[0]["author"], "olive");
}

#[tokio::test]
async fn issue_11_expired_ended_and_disabled_sessions_reach_nothing() {
    let c = console(false);
    let (cookie, csrf) = c.signed_in("olive", "officer").await;
    let (kim, _) = c.signed_in("kim", "keyholder").await;
    let (lee, _) = c.signed_in("lee", "keyholder").await;
    assert_eq!(c.get("/console/", Some(&kim)).await.status, StatusCode::OK);
    // Idle expiry passed.
    c.vault
        .call(|v| {
            v.office
                .conn()
                .execute(
                    "UPDATE sessions SET expires_at = 0 WHERE account = 'kim'",
                    [],
                )
                .unwrap()
        })
        .await
        .unwrap();
    assert_eq!(
        c.get("/console/", Some(&kim)).await.location(),
        "/console/sign-in"
    );
    // Absolute expiry passed, however busy the session was.
    c.vault
        .call(|v| {
            v.office
                .conn()
                .execute(
                    "UPDATE sessions SET created_at = 0 WHERE account = 'lee'",
                    [],
                )
                .unwrap()
        })
        .await
        .unwrap();
    assert_eq!(
        c.get("/console/", Some(&lee)).await.location(),
        "/console/sign-in"
    );
    // An account disabled by an officer loses its session at once.
    let (ann, _) = c.signed_in("ann", "analyst").await;
    let disabled = c
        .post(
            "/console/accounts/disable",
            Some(&cookie),
            &[("csrf", &csrf), ("name", "ann")],
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    assert_eq!(
        c.get("/console/", Some(&ann)).await.location(),
        "/console/sign-in"
    );
    // Signing out ends the session on the server, not only in the browser.
    let out = c
        .post("/console/sign-out", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.location(), "/console/sign-in");
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        c.get("/console/", Some(&cookie)).await.location(),
        "/console/sign-in"
    );
}

#[tokio::test]
async fn issue_11_a_totp_code_is_never_accepted_twice() {
    let c = console(false);
    let code = c.setup_code("olive", "officer").await;
    let page = c.get(&format!("/console/setup?code={code}"), None).await;
    let secret = between(&page.body, "id=\"totp-secret\">", "<");
    let first = totp(&secret, 0);
    let fields = [
        ("code", code.as_str()),
        ("secret", &secret),
        ("password", PASSWORD),
        ("again", PASSWORD),
        ("totp", &first),
    ];
    assert_eq!(
        c.post("/console/setup", None, &fields).await.status,
        StatusCode::OK
    );
    let sign_in = |code: String| {
        let c = &c;
        async move {
            c.post(
                "/console/sign-in",
                None,
                &[("name", "olive"), ("password", PASSWORD), ("code", &code)],
            )
            .await
        }
    };
    // The code the setup was confirmed with cannot sign in.
    let replayed = sign_in(first.clone()).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.body.contains("used already"), "{}", replayed.body);
    let next = totp(&secret, 1);
    let signed = sign_in(next.clone()).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    // The same code again, even with the right password, is refused.
    let again = sign_in(next.clone()).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.body.contains("used already"), "{}", again.body);
    // A wrong password with a fresh code says nothing about which was wrong.
    let wrong = c
        .post(
            "/console/sign-in",
            None,
            &[
                ("name", "olive"),
                ("password", "wrong password!"),
                ("code", &next),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("name, password or code is wrong"));
}

#[tokio::test]
async fn issue_11_a_setup_code_works_once() {
    let c = console(false);
    let code = c.setup_code("kim", "keyholder").await;
    let page = c.get(&format!("/console/setup?code={code}"), None).await;
    let secret = between(&page.body, "id=\"totp-secret\">", "<");
    let fields = |password: &str, totp_code: &str| {
        vec![
            ("code".to_owned(), code.clone()),
            ("secret".to_owned(), secret.clone()),
            ("password".to_owned(), password.to_owned()),
            ("again".to_owned(), password.to_owned()),
            ("totp".to_owned(), totp_code.to_owned()),
        ]
    };
    // A short password or a wrong first code is refused and leaves the code usable.
    let short = c
        .post(
            "/console/setup",
            None,
            &as_refs(&fields("short", &totp(&secret, 0))),
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("at least 12 characters"));
    let wrong = c
        .post(
            "/console/setup",
            None,
            &as_refs(&fields(PASSWORD, "000000")),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = c
        .post(
            "/console/setup",
            None,
            &as_refs(&fields(PASSWORD, &totp(&secret, 0))),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    // Used: neither the page nor the form work again, and the password stays the first one.
    let reuse_page = c.get(&format!("/console/setup?code={code}"), None).await;
    assert_eq!(reuse_page.status, StatusCode::GONE);
    let reuse = c
        .post(
            "/console/setup",
            None,
            &as_refs(&fields("another long password", &totp(&secret, 1))),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::GONE);
    assert!(c.sign_in("kim", &secret, 1).await.is_ok());
}

#[tokio::test]
async fn issue_11_failed_sign_ins_lock_the_account_for_a_while() {
    let c = console(false);
    let secret = c.account("kim", "keyholder").await;
    for _ in 0..auth::MAX_FAILURES {
        let wrong = c
            .post(
                "/console/sign-in",
                None,
                &[
                    ("name", "kim"),
                    ("password", "not the password"),
                    ("code", "123456"),
                ],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let locked = c.sign_in("kim", &secret, 1).await.unwrap_err();
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.body.contains("locked"));
}

#[tokio::test]
async fn issue_11_setup_takes_the_second_factor_the_page_offered_never_the_browsers() {
    // The attack review: setup took whatever secret the form brought back, all 'A's
    // included. The secret is the one the page derived from the code.
    let c = console(false);
    let code = c.setup_code("kim", "keyholder").await;
    let page = c.get(&format!("/console/setup?code={code}"), None).await;
    let offered = between(&page.body, "id=\"totp-secret\">", "<");
    let chosen = "A".repeat(32);
    assert_ne!(offered, chosen);
    let forged = c
        .post(
            "/console/setup",
            None,
            &[
                ("code", &code),
                ("secret", &chosen),
                ("password", PASSWORD),
                ("again", PASSWORD),
                ("totp", &totp(&chosen, 0)),
            ],
        )
        .await;
    assert_eq!(
        forged.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        forged.body
    );
    let done = c
        .post(
            "/console/setup",
            None,
            &[
                ("code", &code),
                ("password", PASSWORD),
                ("again", PASSWORD),
                ("totp", &totp(&offered, 0)),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
}

#[tokio::test]
async fn issue_11_password_hashing_is_bounded_so_a_sign_in_flood_cannot_exhaust_memory() {
    // The attack review held 4.7 GB with 200 parallel sign-ins of random names (each an
    // Argon2id of 19 MiB): hashes now run a few at a time, and the rest are told to retry.
    let c = console(false);
    let secret = c.account("kim", "keyholder").await;
    let busy = c
        .state
        .console
        .hashing
        .clone()
        .try_acquire_many_owned(vellum_archiver::console::CONCURRENT_HASHES as u32)
        .unwrap();
    let refused = c.sign_in("kim", &secret, 1).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.body.contains("try again"), "{}", refused.body);
    drop(busy);
    c.sign_in("kim", &secret, 1).await.unwrap();
}

#[tokio::test]
async fn issue_11_each_role_reaches_only_its_pages() {
    let c = console(false);
    let (analyst, analyst_csrf) = c.signed_in("ann", "analyst").await;
    let (keyholder, _) = c.signed_in("kim", "keyholder").await;
    let (auditor, _) = c.signed_in("aud", "auditor").await;
    let (officer, _) = c.signed_in("olive", "officer").await;
    let forbidden = StatusCode::FORBIDDEN;
    for (cookie, path, status) in [
        (&analyst, "/console/unseal", forbidden),
        (&analyst, "/console/accounts", forbidden),
        (&analyst, "/console/search", StatusCode::OK),
        (&keyholder, "/console/search", forbidden),
        (&keyholder, "/console/holds", forbidden),
        (&keyholder, "/console/audit", forbidden),
        (&keyholder, "/console/unseal", StatusCode::OK),
        (&auditor, "/console/search", forbidden),
        (&auditor, "/console/unseal", forbidden),
        (&auditor, "/console/audit", StatusCode::OK),
        (&auditor, "/console/holds", StatusCode::OK),
        (&officer, "/console/accounts", StatusCode::OK),
        (&keyholder, "/console/cases", forbidden),
        (&auditor, "/console/cases", forbidden),
        (&keyholder, "/console/cases/FOIA-2026-0001", forbidden),
        // Cases are sealed with the archive: the analyst is told so.
        (&analyst, "/console/cases", StatusCode::LOCKED),
    ] {
        let answer = c.get(path, Some(cookie)).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
    }
    // The navigation offers only what the role allows.
    let nav = c.get("/console/", Some(&keyholder)).await.body;
    assert!(nav.contains("href=\"/console/unseal\"") && !nav.contains("href=\"/console/search\""));
    // An analyst's form to make an account is refused and makes none.
    let refused = c
        .post(
            "/console/accounts",
            Some(&analyst),
            &[
                ("csrf", &analyst_csrf),
                ("name", "mallory"),
                ("role", "officer"),
            ],
        )
        .await;
    assert_eq!(refused.status, forbidden);
    let accounts = c.api("GET", "/v1/accounts", None).await.body;
    assert!(!accounts.contains("mallory"));
    let cases = c.get("/console/cases", Some(&analyst)).await;
    assert!(
        cases.body.contains("The archive is sealed"),
        "{}",
        cases.body
    );
    // Sealed: the analyst's search says so.
    let sealed = c
        .post(
            "/console/search",
            Some(&analyst),
            &[("csrf", &analyst_csrf), ("q", "gate")],
        )
        .await;
    assert_eq!(sealed.status, StatusCode::LOCKED);
    assert!(sealed.body.contains("The archive is sealed"));
}

#[tokio::test]
async fn issue_11_keyholders_unseal_from_their_own_accounts_one_share_each() {
    let c = console(false);
    let (kim, kim_csrf) = c.signed_in("kim", "keyholder").await;
    let (lee, lee_csrf) = c.signed_in("lee", "keyholder").await;
    let first = c
        .post(
            "/console/unseal",
            Some(&kim),
            &[("csrf", &kim_csrf), ("share", &c.shares[0])],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(
        first.body.contains("<strong>1 of 2</strong>"),
        "{}",
        first.body
    );
    // Kim's second share (someone else's) is refused: one share per keyholder.
    let twice = c
        .post(
            "/console/unseal",
            Some(&kim),
            &[("csrf", &kim_csrf), ("share", &c.shares[1])],
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert!(twice
        .body
        .contains("another keyholder must hand in the next"));
    let garbage = c
        .post(
            "/console/unseal",
            Some(&lee),
            &[("csrf", &lee_csrf), ("share", "not a share")],
        )
        .await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    let last = c
        .post(
            "/console/unseal",
            Some(&lee),
            &[("csrf", &lee_csrf), ("share", &c.shares[1])],
        )
        .await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    assert!(last.body.contains("the archive is unsealed"));
    let status: serde_json::Value =
        serde_json::from_str(&c.api("GET", "/v1/status", None).await.body).unwrap();
    assert_eq!(status["sealed"], false);
    // The audit trail names who handed in shares.
    let (auditor, _) = c.signed_in("aud", "auditor").await;
    let audit = c.get("/console/audit", Some(&auditor)).await.body;
    assert!(audit.contains("kim handed in a share"));
    assert!(audit.contains("lee handed in the last share"));
}

#[tokio::test]
async fn issue_11_an_api_token_made_in_the_console_works_on_the_api() {
    let c = console(false);
    let (cookie, csrf) = c.signed_in("ann", "analyst").await;
    let made = c
        .post("/console/token", Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(made.status, StatusCode::OK);
    let token = between(&made.body, "id=\"api-token\">", "<");
    let whoami = c
        .send(
            Request::get("/v1/whoami")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(whoami.status, StatusCode::OK);
    assert!(whoami.body.contains("\"analyst\""));
    // Only its hash is stored.
    let stored: Vec<u8> = c
        .vault
        .call(|v| {
            v.office
                .conn()
                .query_row(
                    "SELECT api_token_hash FROM accounts WHERE name = 'ann'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        })
        .await
        .unwrap();
    assert_eq!(stored, vellum_archiver::office::sha256(&token).to_vec());
}

#[tokio::test]
async fn issue_11_officers_edit_retention_in_the_console_and_auditors_only_read_it() {
    let c = console(false);
    let (officer, csrf) = c.signed_in("olive", "officer").await;
    let (auditor, auditor_csrf) = c.signed_in("aud", "auditor").await;
    let define = |cookie: &str, csrf: &str, keep: &str| {
        let fields = vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("name".to_owned(), "litigation".to_owned()),
            ("keep".to_owned(), keep.to_owned()),
        ];
        let cookie = cookie.to_owned();
        let c = &c;
        async move {
            c.post(
                "/console/schedules/define",
                Some(&cookie),
                &as_refs(&fields),
            )
            .await
        }
    };
    let refused = define(&auditor, &auditor_csrf, "10y").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let page = c.get("/console/schedules", Some(&auditor)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("litigation") && !page.body.contains("define-schedule"));
    let bad = define(&officer, &csrf, "ten years").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let done = define(&officer, &csrf, "10y").await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let listed: serde_json::Value =
        serde_json::from_str(&c.api("GET", "/v1/schedules", None).await.body).unwrap();
    assert_eq!(listed["schedules"]["litigation"], "10y");
    // An unknown person is refused, not silently assigned.
    let unknown = c
        .post(
            "/console/schedules/assign",
            Some(&officer),
            &[
                ("csrf", &csrf),
                ("user", "nobody"),
                ("schedule", "litigation"),
            ],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("no user named"));
}
