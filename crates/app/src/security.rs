//! Who may use the window: the browser that opened the launch URL, and nobody else.
//!
//! - The launch URL carries a single-use secret that expires in [`LAUNCH_TTL`] (it shows in
//!   process listings, so it must be worthless once used). `GET /open?secret=…` exchanges it
//!   for a session cookie: HttpOnly, SameSite=Strict, named after the port (cookies ignore
//!   ports, and two users' windows may share a browser).
//! - Every request must name this listener in `Host` (no DNS rebinding), and every request
//!   but the exchange must carry the session cookie.
//! - A request that changes anything must also carry the session's CSRF token in
//!   `X-Vellum-CSRF` (a header no other origin can set without a preflight we never grant),
//!   and must not come from another origin (`Origin`, `Sec-Fetch-Site`).
//! - Every response carries a strict CSP and `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vellum_http::ApiError;

use crate::AppState;

/// How long the launch URL's secret may wait to be used.
pub const LAUNCH_TTL: Duration = Duration::from_secs(120);

/// The header carrying the session's CSRF token on every request that changes anything.
pub const CSRF_HEADER: &str = "x-vellum-csrf";

/// The Content-Security-Policy of every response: this origin's script and style only,
/// nothing inline, no frames, no workers (so no service-worker cache), no other origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; worker-src 'none'; \
     manifest-src 'none'";

#[derive(Clone)]
pub struct Security {
    inner: Arc<Mutex<Inner>>,
    /// `127.0.0.1:PORT`: the only `Host` this window answers.
    authority: Arc<str>,
    cookie_name: Arc<str>,
    ttl: Duration,
}

struct Inner {
    /// The launch secret, until it is used or expires.
    launch: Option<Launch>,
    /// Sessions by SHA-256 of their cookie.
    sessions: HashMap<[u8; 32], Session>,
}

struct Launch {
    /// SHA-256 of the secret.
    digest: [u8; 32],
    deadline: Instant,
    /// The URL is opened in the app's own browser profile (see [`Session::dedicated_browser`]).
    dedicated_browser: bool,
}

/// A session the request proved it holds.
#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    /// The launch that opened it was handed to Chromium in app mode over `HOME/browser` by
    /// `vellum app` itself: files it saves land where the shredder looks. False for a URL
    /// printed (`--no-open`) or given to the default browser. A hint for the page's
    /// warning, not a security boundary.
    pub dedicated_browser: bool,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Security {
    /// Guards the listener at `authority` (`127.0.0.1:PORT`); returns it and the launch
    /// secret to put in the URL.
    pub fn new(authority: &str, ttl: Duration) -> (Self, String) {
        let secret = random_hex();
        let port = authority.rsplit(':').next().unwrap_or_default();
        let security = Self {
            inner: Arc::new(Mutex::new(Inner {
                launch: Some(Launch {
                    digest: digest(&secret),
                    deadline: Instant::now() + ttl,
                    dedicated_browser: false,
                }),
                sessions: HashMap::new(),
            })),
            authority: authority.into(),
            // Random per window as well: the cookie reaches every port of this address, and a
            // page there must not be able to replace it blind.
            cookie_name: format!("vellum_app_{port}_{}", &random_hex()[..16]).into(),
            ttl,
        };
        (security, secret)
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL that opens the window (its secret works once).
    pub fn launch_url(&self, secret: &str) -> String {
        format!("http://{}/open?secret={secret}", self.authority)
    }

    /// A fresh launch secret, replacing any unused one (e.g. to open a second window).
    pub fn renew_launch(&self) -> String {
        self.renew_launch_for(false)
    }

    /// [`Self::renew_launch`] for a URL that will be opened in the app's own browser
    /// profile (`dedicated_browser`) or not.
    pub fn renew_launch_for(&self, dedicated_browser: bool) -> String {
        let secret = random_hex();
        self.lock().launch = Some(Launch {
            digest: digest(&secret),
            deadline: Instant::now() + self.ttl,
            dedicated_browser,
        });
        secret
    }

    /// Says whether the unused launch URL goes to the app's own browser profile (set before
    /// the browser starts; unset again if it could not).
    pub fn set_launch_dedicated(&self, dedicated_browser: bool) {
        if let Some(launch) = self.lock().launch.as_mut() {
            launch.dedicated_browser = dedicated_browser;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uses up the launch secret: a new session's cookie value, or `None` if the secret is
    /// wrong, used or expired.
    fn exchange(&self, secret: &str) -> Option<String> {
        let mut inner = self.lock();
        let launch = inner.launch.as_ref()?;
        if Instant::now() > launch.deadline {
            inner.launch = None;
            return None;
        }
        if !bool::from(digest(secret).ct_eq(&launch.digest)) {
            return None;
        }
        let dedicated_browser = launch.dedicated_browser;
        inner.launch = None;
        let cookie = random_hex();
        let session = Session {
            csrf: random_hex(),
            dedicated_browser,
        };
        inner.sessions.insert(digest(&cookie), session);
        Some(cookie)
    }

    /// The session of the first cookie of our name that is one: another local page may
    /// have set a cookie of the same name (cookies ignore ports), which must not hide ours.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let inner = self.lock();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, value)| *name == &*self.cookie_name && value.len() == 64)
            .find_map(|(_, value)| inner.sessions.get(&digest(value)).cloned())
    }

    fn host_is_ours(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| host == &*self.authority)
    }

    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|site| matches!(site, "same-origin" | "none"));
        let origin_ok = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            None => true,
            Some(origin) => origin == format!("http://{}", self.authority),
        };
        site_ok && origin_ok
    }
}

/// `GET /open?secret=…`: the launch URL. Sets the session cookie and goes to the window.
pub async fn open(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let secret = query.get("secret").map(String::as_str).unwrap_or_default();
    match state.security.exchange(secret) {
        Some(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!(
                        "{}={cookie}; HttpOnly; SameSite=Strict; Path=/",
                        state.security.cookie_name
                    ),
                ),
                (header::LOCATION, "/".to_owned()),
            ],
        )
            .into_response(),
        None => refused_page(
            StatusCode::FORBIDDEN,
            "This link has been used or has expired. Run `vellum app` again to open a new window.",
        ),
    }
}

/// The checks every request passes before any handler (see the module's description).
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let security = &state.security;
    let headers = req.headers();
    if !security.host_is_ours(headers) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            "this window answers only its own address",
        )
        .into_response();
    }
    if !security.same_origin(headers) {
        return ApiError::forbidden("requests from other sites are refused").into_response();
    }
    let path = req.uri().path();
    if path == "/open" && req.method() == Method::GET {
        return next.run(req).await;
    }
    let Some(session) = security.session(headers) else {
        return if path.starts_with("/api/") {
            ApiError::unauthenticated("open the window with `vellum app`").into_response()
        } else {
            refused_page(
                StatusCode::UNAUTHORIZED,
                "Open this window with `vellum app`: it starts the messenger and opens it for you.",
            )
        };
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let token = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        if !token.is_some_and(|t| bool::from(t.ct_eq(session.csrf.as_bytes()))) {
            return ApiError::forbidden("missing or wrong CSRF token").into_response();
        }
    }
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// The headers every response carries, refusals included.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    vellum_http::page_security_headers(h, CSP);
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    response
}

fn refused_page(status: StatusCode, sentence: &'static str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vellum</title></head>\
         <body><p>{sentence}</p></body></html>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}
