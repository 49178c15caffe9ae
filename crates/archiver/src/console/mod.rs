//! The records console: server-rendered pages under `/console/` for the records office's
//! people, signed in with a password and a TOTP code. Every page asks `Role::allows`, as
//! every API route does; every form carries the session's CSRF token and every POST must
//! come from this origin; every response forbids framing, caching, sniffing, referrers and
//! any script, style or image from elsewhere.

pub mod auth;
mod cases;
mod html;
mod pages;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use vellum_record::api::office::Permission;
use vellum_record::api::Status;

use crate::api::{current_status, now_ms, on_vault};
use crate::office::Caller;
use crate::ArchiverState;

/// What the console keeps beyond the office database.
pub struct ConsoleState {
    /// Served over TLS: cookies are `Secure` and `__Host-` prefixed, origins `https`.
    pub secure: bool,
    pub throttle: auth::Throttle,
    /// Argon2id runs (19 MiB each) at once: sign-in hashes even for an unknown name, so
    /// without a bound anyone who reaches the page could make the archiver hold gigabytes.
    pub hashing: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How many password hashes may run at once; more sign-ins meanwhile are told to retry.
pub const CONCURRENT_HASHES: usize = 4;

/// Plain HTTP (loopback, for development).
impl Default for ConsoleState {
    fn default() -> Self {
        Self::new(false)
    }
}

impl ConsoleState {
    pub fn new(secure: bool) -> Self {
        Self {
            secure,
            throttle: auth::Throttle::default(),
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
        }
    }

    /// A permit to hash a password, if fewer than [`CONCURRENT_HASHES`] run.
    pub(crate) fn hash_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.hashing.clone().try_acquire_owned().ok()
    }

    /// The page a sign-in or setup gets while every hashing permit is taken.
    pub(crate) fn busy_page() -> axum::response::Response {
        html::error_page(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Too many sign-ins are being checked at this moment: try again in a few seconds.",
        )
    }

    /// The session cookie's name: with `__Host-` over TLS, so that no other host or path
    /// can set it.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-vellum-session"
        } else {
            "vellum-session"
        }
    }

    fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }
}

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (merged into the archiver's app).
pub fn router(state: Arc<ArchiverState>) -> Router<Arc<ArchiverState>> {
    Router::new()
        .route("/console", get(|| async { redirect("/console/") }))
        .route("/console/", get(pages::dashboard))
        .route(
            "/console/sign-in",
            get(pages::sign_in_form).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/setup", get(pages::setup_form).post(pages::setup))
        .route(
            "/console/unseal",
            get(pages::unseal_form).post(pages::unseal),
        )
        .route("/console/seal", post(pages::seal))
        .route(
            "/console/search",
            get(pages::search_form).post(pages::search),
        )
        .route("/console/holds", get(pages::holds).post(pages::place_hold))
        .route("/console/holds/release", post(pages::release_hold))
        .route("/console/schedules", get(pages::schedules))
        .route("/console/schedules/define", post(pages::define_schedule))
        .route("/console/schedules/assign", post(pages::assign_schedule))
        .route("/console/audit", get(pages::audit))
        .route(
            "/console/accounts",
            get(pages::accounts).post(pages::create_account),
        )
        .route("/console/accounts/disable", post(pages::disable_account))
        .route("/console/token", get(pages::token).post(pages::new_token))
        .route("/console/cases", get(cases::list).post(cases::create))
        .route("/console/cases/{id}", get(cases::show))
        .route("/console/cases/{id}/add", post(cases::add))
        .route("/console/cases/{id}/review", post(cases::review))
        .route("/console/cases/{id}/notes", post(cases::note))
        .route("/console/cases/{id}/names", post(cases::redact_name))
        .route("/console/cases/{id}/records/{leaf}", get(cases::record))
        .route(
            "/console/cases/{id}/records/{leaf}/redact",
            post(cases::redact),
        )
        .route(
            "/console/cases/{id}/redactions/remove",
            post(cases::remove_redaction),
        )
        .route("/console/cases/{id}/produce", post(cases::produce))
        .route(
            "/console/cases/{id}/productions/{job}",
            get(cases::production),
        )
        .route(
            "/console/cases/{id}/productions/{job}/download",
            get(cases::download),
        )
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/console.js", get(script))
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            security_headers,
        ))
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
        .into_response()
}

/// The headers every console response carries, error pages included.
async fn security_headers(
    State(state): State<Arc<ArchiverState>>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if state.console.secure {
        // Once seen over TLS, a browser never tries the console over plain HTTP.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    vellum_http::page_security_headers(h, CSP);
    response
}

/// Refuses a POST that a browser says came from another origin (the CSRF token is checked
/// as well, by each form's handler; sign-in and setup have no session and rely on this).
async fn same_origin(
    State(state): State<Arc<ArchiverState>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::POST && !from_this_origin(&state.console, &req) {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site. Open the console yourself and try again.",
        );
    }
    next.run(req).await
}

fn from_this_origin(console: &ConsoleState, req: &Request) -> bool {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        // Under `Referrer-Policy: no-referrer` a browser sends `Origin: null` with its own
        // forms: then its fetch metadata must say same-origin.
        Some("null") | None => fetch_site.is_none_or(|site| matches!(site, "same-origin" | "none")),
        Some(origin) => {
            host.is_some_and(|host| origin == format!("{}://{host}", console.scheme()))
                && fetch_site.is_none_or(|site| site != "cross-site")
        }
    }
}

/// A signed-in browser: its account, its session's CSRF token and the archive's status.
pub(crate) struct Signed {
    pub caller: Caller,
    pub csrf: String,
    pub token: String,
    pub status: Status,
}

fn session_cookie(console: &ConsoleState, headers: &HeaderMap) -> Option<String> {
    let name = console.cookie_name();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The signed-in session of this request, if any.
pub(crate) async fn signed_in(state: &ArchiverState, headers: &HeaderMap) -> Option<Signed> {
    let token = session_cookie(&state.console, headers)?;
    let lookup = token.clone();
    let found = on_vault(state, move |v| {
        let session = v
            .office
            .session(&lookup, now_ms())
            .map_err(crate::api::internal)?;
        if session.is_some() {
            // The console counts as records-office activity for the idle seal.
            v.last_activity = Instant::now();
        }
        Ok(session.map(|s| (s, current_status(v))))
    })
    .await
    .ok()??;
    let (session, status) = found;
    Some(Signed {
        caller: session.caller,
        csrf: session.csrf,
        token,
        status,
    })
}

/// The signed-in session if its role allows `permission`; otherwise the answer to give:
/// the sign-in page for a signed-out browser, a refusal for a role that may not.
pub(crate) async fn require(
    state: &ArchiverState,
    headers: &HeaderMap,
    permission: Permission,
) -> Result<Signed, Response> {
    let Some(signed) = signed_in(state, headers).await else {
        return Err(redirect("/console/sign-in"));
    };
    if !signed.caller.role.allows(permission) {
        return Err(html::page(
            &signed,
            StatusCode::FORBIDDEN,
            "",
            "Not allowed",
            &format!(
                "<p class=\"notice error\">Your account has the role <strong>{}</strong>, which may not do this.</p>",
                html::esc(signed.caller.role.as_str())
            ),
        ));
    }
    Ok(signed)
}

/// A form that carries the session's CSRF token.
pub(crate) trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// Forms whose CSRF token is their `csrf` field.
macro_rules! with_csrf {
    ($($form:ty),+ $(,)?) => {
        $(impl crate::console::WithCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(crate) use with_csrf;

/// Like `require`, for a form: the session and role first (a signed-out browser learns
/// nothing from a form's errors), then the form, whose CSRF token must be the session's.
pub(crate) async fn require_form<T: WithCsrf>(
    state: &ArchiverState,
    headers: &HeaderMap,
    permission: Permission,
    form: Result<axum::Form<T>, axum::extract::rejection::FormRejection>,
) -> Result<(Signed, T), Response> {
    let signed = require(state, headers, permission).await?;
    let axum::Form(form) = form.map_err(|e| {
        html::page(
            &signed,
            StatusCode::BAD_REQUEST,
            "",
            "Bad form",
            &html::notice("error", &e.body_text()),
        )
    })?;
    use subtle::ConstantTimeEq;
    if !bool::from(signed.csrf.as_bytes().ct_eq(form.csrf().as_bytes())) {
        return Err(html::page(
            &signed,
            StatusCode::FORBIDDEN,
            "",
            "Form expired",
            "<p class=\"notice error\">This form is no longer valid (it came from an earlier session or another site). Reload the page and try again.</p>",
        ));
    }
    Ok((signed, form))
}

pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
