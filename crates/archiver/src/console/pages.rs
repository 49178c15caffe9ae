//! The console's pages. Each asks `require` (or `require_form`, which also checks the CSRF
//! token) with the permission the matching API route asks, and does its work through the
//! same functions as the API.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use vellum_record::api::office::{Permission, Role};
use vellum_record::api::search::SearchRequest;
use vellum_record::api::{AssignSchedule, DefineSchedule, HoldRequest, UnsealRequest};
use vellum_record::Record;

use super::html::{bare, csrf_field, esc, notice, page, time};
use super::{auth, redirect, require, require_form, signed_in, with_csrf, Signed};
use crate::api::holds::{holds_in_force, lift, place};
use crate::api::retention::{self, audit_trail};
use crate::api::{internal, log_access, now_ms, on_vault};
use crate::settings::Bound;
use crate::ArchiverState;

type St = State<Arc<ArchiverState>>;
type Answer = Result<Response, Response>;

fn bad_form(e: FormRejection) -> Response {
    super::html::error_page(StatusCode::BAD_REQUEST, "Bad form", &e.body_text())
}

fn tz(state: &ArchiverState) -> jiff::tz::TimeZone {
    state.settings.tz().unwrap_or(jiff::tz::TimeZone::UTC)
}

pub async fn not_found(State(state): St, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Some(signed) => page(
            &signed,
            StatusCode::NOT_FOUND,
            "",
            "Not found",
            "<p class=\"notice error\">There is no such page in the console.</p>",
        ),
        None => redirect("/console/sign-in"),
    }
}

// ---- Sign-in, sign-out, setup ----

fn sign_in_html(error: Option<&str>, name: &str) -> String {
    format!(
        "{}<form method=\"post\" action=\"/console/sign-in\" class=\"stack\">\
         <label>Account name <input name=\"name\" id=\"name\" autocomplete=\"username\" required value=\"{}\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
         <label>Code from your authenticator app <input name=\"code\" id=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required></label>\
         <button id=\"sign-in\">Sign in</button></form>\
         <p class=\"hint\">New here? Open the setup link an officer gave you.</p>",
        error.map(|e| notice("error", e)).unwrap_or_default(),
        esc(name)
    )
}

pub async fn sign_in_form(State(state): St, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).await.is_some() {
        return redirect("/console/");
    }
    bare(StatusCode::OK, "Sign in", &sign_in_html(None, ""))
}

#[derive(Deserialize)]
pub struct SignIn {
    name: String,
    password: String,
    code: String,
}

pub async fn sign_in(State(state): St, form: Result<Form<SignIn>, FormRejection>) -> Answer {
    let Form(form) = form.map_err(bad_form)?;
    let name = form.name.trim().to_owned();
    let refuse =
        |status: StatusCode, why: &str| bare(status, "Sign in", &sign_in_html(Some(why), &name));
    if !crate::office::valid_account_name(&name)
        || form.password.len() > 4 * auth::MAX_PASSWORD_CHARS
    {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "The name, password or code is wrong.",
        ));
    }
    let throttle = &state.console.throttle;
    if throttle.locked(&name) {
        return Err(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins: this account is locked for 15 minutes. An officer can tell you more.",
        ));
    }
    let lookup = name.clone();
    let credentials = on_vault(&state, move |v| {
        v.office.credentials(&lookup).map_err(internal)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    // Hashing is CPU work: off the executor. An unknown name costs the same as a known one.
    let password = form.password;
    let phc = credentials
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let permit = state
        .console
        .hash_permit()
        .ok_or_else(super::ConsoleState::busy_page)?;
    let password_ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth::verify_password(&password, &phc)
    })
    .await
    .unwrap_or(false);
    let step = credentials
        .as_ref()
        .filter(|_| password_ok)
        .and_then(|c| auth::check_totp(&c.totp_secret, &form.code, (now_ms() / 1000) as u64));
    let (Some(credentials), Some(step)) = (credentials, step) else {
        throttle.failed(&name);
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "The name, password or code is wrong.",
        ));
    };
    let who = name.clone();
    let session = on_vault(&state, move |v| {
        if !v.office.accept_totp_step(&who, step).map_err(internal)? {
            return Ok(None);
        }
        let session = v.office.create_session(&who, now_ms()).map_err(internal)?;
        log_access(
            v,
            "sign-in",
            &format!("{who} ({}) signed in to the console", credentials.role),
        );
        Ok(Some(session))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let Some((token, _csrf)) = session else {
        throttle.failed(&name);
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "That code was used already: wait for the next one.",
        ));
    };
    throttle.succeeded(&name);
    let secure = if state.console.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
        state.console.cookie_name()
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// A valid hash of no one's password, verified against when the name is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| auth::hash_password("no account has this password").expect("hash"))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn sign_out(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    let (signed, _form) = require_form(&state, &headers, Permission::Status, form).await?;
    let token = signed.token.clone();
    on_vault(&state, move |v| {
        v.office.end_session(&token).map_err(internal)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let secure = if state.console.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        state.console.cookie_name()
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/sign-in".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

fn invalid_setup() -> Response {
    bare(
        StatusCode::GONE,
        "Setup link not valid",
        &notice(
            "error",
            "This setup link does not work: it was used already, it expired (links last 72 hours), or its account was disabled. Ask an officer for a new account.",
        ),
    )
}

fn setup_html(
    code: &str,
    caller: &crate::office::Caller,
    secret: &str,
    error: Option<&str>,
) -> String {
    let uri = auth::otpauth_uri("Vellum records", &caller.name, secret);
    format!(
        "{error}<p>Account <strong id=\"setup-name\">{name}</strong>, role <strong>{role}</strong>. Choose a password and add this account to an authenticator app.</p>\
         <form method=\"post\" action=\"/console/setup\" class=\"stack\">\
         <input type=\"hidden\" name=\"code\" value=\"{code}\">\
         <label>Password (at least {min} characters) <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label>\
         <label>Password again <input type=\"password\" name=\"again\" id=\"again\" autocomplete=\"new-password\" required></label>\
         <fieldset><legend>Second factor (TOTP)</legend>\
         <p>Scan this code with your authenticator app, or add an account with the key below (time-based, 6 digits, 30 seconds):</p>{qr}\
         <p><code id=\"totp-secret\">{secret}</code></p>\
         <p class=\"hint\">Or open this link on the device with the app: <a href=\"{uri}\" id=\"otpauth\">{uri_text}</a></p>\
         <label>The code the app shows now <input name=\"totp\" id=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"6\" required></label></fieldset>\
         <button id=\"finish-setup\">Finish setup</button></form>",
        error = error.map(|e| notice("error", e)).unwrap_or_default(),
        name = esc(&caller.name),
        role = esc(caller.role.as_str()),
        code = esc(code),
        secret = esc(secret),
        min = auth::MIN_PASSWORD_CHARS,
        uri = esc(&uri),
        uri_text = esc(&uri),
        qr = auth::qr_svg_data_uri(&uri)
            .map(|src| format!("<img class=\"qr\" id=\"totp-qr\" alt=\"QR code of the key\" src=\"{src}\">"))
            .unwrap_or_default(),
    )
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    code: String,
}

pub async fn setup_form(State(state): St, Query(q): Query<SetupQuery>) -> Answer {
    let code = q.code.trim().to_owned();
    if code.is_empty() || code.len() > 64 {
        return Err(invalid_setup());
    }
    let lookup = code.clone();
    let caller = on_vault(&state, move |v| {
        v.office.setup_account(&lookup, now_ms()).map_err(internal)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?
    .ok_or_else(invalid_setup)?;
    let secret = auth::offered_totp_secret(&code);
    Ok(bare(
        StatusCode::OK,
        "Set up your account",
        &setup_html(&code, &caller, &secret, None),
    ))
}

#[derive(Deserialize)]
pub struct Setup {
    code: String,
    password: String,
    again: String,
    totp: String,
}

pub async fn setup(State(state): St, form: Result<Form<Setup>, FormRejection>) -> Answer {
    let Form(form) = form.map_err(bad_form)?;
    let code = form.code.trim().to_owned();
    let lookup = code.clone();
    let caller = on_vault(&state, move |v| {
        v.office.setup_account(&lookup, now_ms()).map_err(internal)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?
    .ok_or_else(invalid_setup)?;
    // The secret the page showed, derived again from the code: never the browser's word.
    let secret = auth::offered_totp_secret(&code);
    let again = |why: &str| {
        bare(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Set up your account",
            &setup_html(&code, &caller, &secret, Some(why)),
        )
    };
    if let Some(problem) = auth::password_problem(&form.password, &form.again) {
        return Err(again(&problem));
    }
    let Some(step) = auth::check_totp(&secret, &form.totp, (now_ms() / 1000) as u64) else {
        return Err(again("That code does not match: check the app's clock and that the key was typed right, and try the newest code."));
    };
    let password = form.password;
    let permit = state
        .console
        .hash_permit()
        .ok_or_else(super::ConsoleState::busy_page)?;
    let phc = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth::hash_password(&password)
    })
    .await
    .map_err(|e| {
        super::html::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e.to_string())
    })?
    .map_err(|e| super::html::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Error", &e))?;
    let done = on_vault(&state, move |v| {
        let name = v
            .office
            .complete_setup(&code, &phc, &secret, step, now_ms())
            .map_err(internal)?;
        if let Some(name) = &name {
            log_access(
                v,
                "account",
                &format!("{name} completed setup (password and TOTP)"),
            );
        }
        Ok(name)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    if done.is_none() {
        return Err(invalid_setup());
    }
    Ok(bare(
        StatusCode::OK,
        "Account ready",
        "<p class=\"notice ok\" id=\"setup-done\">Your password and second factor are set. The setup link no longer works.</p><p>Sign in with the <em>next</em> code your app shows: each code works once, and the one you just typed is used.</p><p><a href=\"/console/sign-in\" class=\"button\">Sign in</a></p>",
    ))
}

// ---- Overview, unseal, seal ----

pub async fn dashboard(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::Status).await?;
    let s = &signed.status;
    let role = signed.caller.role;
    let mut body = String::new();
    body.push_str("<div class=\"cards\">");
    body.push_str(&format!(
        "<div class=\"stat\"><span>Archive</span><strong>{}</strong></div>\
         <div class=\"stat\"><span>Records</span><strong>{}</strong></div>\
         <div class=\"stat\"><span>Log leaves</span><strong>{}</strong></div>\
         <div class=\"stat\"><span>Last checkpoint</span><strong>{}</strong></div>",
        if s.sealed { "Sealed" } else { "Unsealed" },
        s.records,
        s.log_size,
        s.checkpoint_size
            .map_or("none".into(), |c| format!("{c} leaves")),
    ));
    body.push_str("</div>");
    let binding = match (s.binding_serial, s.binding_on_server) {
        (None, _) => {
            "The archiver is not bound yet: the keyholders bind it when they unseal.".to_owned()
        }
        (Some(n), true) => {
            format!("Bound by the keyholders (binding {n}), on the delivery server.")
        }
        (Some(n), false) => {
            format!("Bound by the keyholders (binding {n}); handing it to the delivery server.")
        }
    };
    body.push_str(&notice("info", &binding));
    let next = match role {
        Role::Keyholder if s.sealed => "To unseal, hand in your share on the Unseal page.",
        Role::Keyholder => "The archive is unsealed. Keyholders see its status, never its content.",
        Role::Analyst if s.sealed => {
            "The archive is sealed: keyholders must unseal it before you can search."
        }
        Role::Analyst => "Search the archive from the Search page.",
        Role::Auditor => "The audit trail lists every access, hold, release and disposition.",
        Role::Officer if s.sealed => {
            "The archive is sealed: keyholders must unseal it before anyone can search."
        }
        Role::Officer => "Search, holds, retention, the audit trail and accounts are in the menu.",
    };
    body.push_str(&format!("<p>{}</p>", esc(next)));
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/",
        "Overview",
        &body,
    ))
}

fn unseal_body(signed: &Signed, contributed: bool, message: Option<String>) -> String {
    let s = &signed.status;
    let mut body = message.unwrap_or_default();
    body.push_str(&format!(
        "<div class=\"progress\" id=\"unseal-progress\"><div class=\"bar\"><span class=\"w{}\"></span></div><p><strong>{} of {}</strong> shares handed in</p></div>",
        (s.shares_received * 10).checked_div(s.shares_needed).unwrap_or(0).min(10),
        s.shares_received,
        s.shares_needed
    ));
    if !s.sealed {
        body.push_str(&notice("ok", "The archive is unsealed."));
    } else if contributed {
        body.push_str(&notice(
            "info",
            "You have handed in your share. Another keyholder must hand in the next one.",
        ));
    } else {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/console/unseal\" class=\"stack\">{}\
             <label>Your share (paste it, or choose the file) <textarea name=\"share\" id=\"share\" rows=\"4\" required spellcheck=\"false\" autocomplete=\"off\"></textarea></label>\
             <label class=\"file\">Share file <input type=\"file\" id=\"share-file\" data-fills=\"share\"></label>\
             <button id=\"hand-in\">Hand in my share</button></form>",
            csrf_field(&signed.csrf)
        ));
    }
    body
}

pub async fn unseal_form(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::Unseal).await?;
    let me = signed.caller.name.clone();
    let contributed = on_vault(&state, move |v| Ok(v.unseal_contributors.contains(&me)))
        .await
        .unwrap_or(false);
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/unseal",
        "Unseal",
        &unseal_body(&signed, contributed, None),
    ))
}

#[derive(Deserialize)]
pub struct ShareForm {
    csrf: String,
    share: String,
}

pub async fn unseal(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<ShareForm>, FormRejection>,
) -> Answer {
    let (mut signed, form) = require_form(&state, &headers, Permission::Unseal, form).await?;
    let me = signed.caller.name.clone();
    let result = crate::api::unseal_as(
        &state,
        signed.caller.clone(),
        UnsealRequest { share: form.share },
    )
    .await;
    let (status, message) = match result {
        Ok(status) => {
            let message = if status.sealed {
                notice("ok", "Your share was accepted.")
            } else {
                notice(
                    "ok",
                    "Your share was the last one needed: the archive is unsealed.",
                )
            };
            signed.status = status;
            (StatusCode::OK, message)
        }
        Err(e) => (e.status, notice("error", &e.message)),
    };
    let contributed = on_vault(&state, move |v| Ok(v.unseal_contributors.contains(&me)))
        .await
        .unwrap_or(false);
    Ok(page(
        &signed,
        status,
        "/console/unseal",
        "Unseal",
        &unseal_body(&signed, contributed, Some(message)),
    ))
}

pub async fn seal(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    let (signed, _form) = require_form(&state, &headers, Permission::Seal, form).await?;
    crate::api::seal_as(&state, signed.caller)
        .await
        .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    Ok(redirect("/console/"))
}

// ---- Search ----

#[derive(Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    participants: String,
    #[serde(default)]
    chat: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn search_form_html(signed: &Signed, f: &SearchForm) -> String {
    format!(
        "<form method=\"post\" action=\"/console/search\" class=\"search\">{csrf}\
         <label class=\"wide\">Query <input name=\"q\" id=\"q\" value=\"{q}\" placeholder='gate AND \"north entrance\" -draft'></label>\
         <label>Participants (all of them) <input name=\"participants\" id=\"participants\" value=\"{p}\" placeholder=\"alice, bob\"></label>\
         <label>Chat <input name=\"chat\" id=\"chat\" value=\"{chat}\" placeholder=\"id or title\"></label>\
         <label>From <input name=\"from\" id=\"from\" value=\"{from}\" placeholder=\"2026-11-01\"></label>\
         <label>To <input name=\"to\" id=\"to\" value=\"{to}\" placeholder=\"2026-11-30\"></label>\
         <button id=\"run-search\">Search</button></form>\
         <p class=\"hint\">Words, \"a phrase\", AND, OR, NOT, +must, -mustnot, prefix*. Dates are RFC 3339 or plain dates in the office's time zone; times are the delivery server's receipt.</p>",
        csrf = csrf_field(&signed.csrf),
        q = esc(&f.q),
        p = esc(&f.participants),
        chat = esc(&f.chat),
        from = esc(&f.from),
        to = esc(&f.to),
    )
}

pub async fn search_form(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::ReadContent).await?;
    let mut body = String::new();
    if signed.status.sealed {
        body.push_str(&sealed_notice("sealed-now"));
    }
    body.push_str(&search_form_html(&signed, &SearchForm::default()));
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/search",
        "Search",
        &body,
    ))
}

/// The sealed notice; `id` tells the page before a search (`sealed-now`) from a search's
/// refusal (`sealed`).
fn sealed_notice(id: &str) -> String {
    format!("<p class=\"notice error\" id=\"{id}\">The archive is sealed: keyholders must unseal it before anyone can read records.</p>")
}

fn record_row(leaf: u64, r: &Record, tz: &jiff::tz::TimeZone, class: &str) -> String {
    let participants: Vec<&str> = r.recipients.iter().map(|m| m.user.as_str()).collect();
    format!(
        "<tr class=\"{class}\"><td class=\"num\">{leaf}</td><td class=\"time\">{when}</td><td>{chat}</td><td>{sender}</td><td class=\"muted\">{to}</td><td>{kind}</td><td class=\"text\">{text}</td></tr>",
        when = esc(&time(r.received_at, tz)),
        chat = esc(r.chat_title.as_deref().unwrap_or(&r.chat_id)),
        sender = esc(&r.sender_user),
        to = esc(&participants.join(", ")),
        kind = esc(r.kind.as_str()),
        text = esc(r.text.as_deref().unwrap_or("")),
    )
}

pub async fn search(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<SearchForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ReadContent, form).await?;
    let split = |s: &str| -> Vec<String> {
        s.split([',', ' '])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let request = SearchRequest {
        q: form.q.trim().to_owned(),
        participants: split(&form.participants),
        chats: opt(&form.chat).into_iter().collect(),
        from: opt(&form.from),
        to: opt(&form.to),
        context: 2,
        limit: Some(100),
        ..SearchRequest::default()
    };
    let who = signed.caller.name.clone();
    let result = on_vault(&state, move |v| {
        let result = crate::search::run(v, &request);
        if let Ok(found) = &result {
            // As the API logs it: that a search ran, by whom, how much it found, and only a
            // digest of its terms.
            let digest = crate::search::query_digest(v, &request).unwrap_or_default();
            log_access(
                v,
                "search",
                &format!(
                    "{who} ran query hmac:{digest} in the console -> {} records",
                    found.total
                ),
            );
        }
        Ok(result)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let tz = tz(&state);
    let mut body = search_form_html(&signed, &form);
    let status = match result {
        Err(crate::search::SearchError::Sealed) => {
            body.insert_str(0, &sealed_notice("sealed"));
            StatusCode::LOCKED
        }
        Err(e) => {
            body.push_str(&notice("error", &e.to_string()));
            StatusCode::BAD_REQUEST
        }
        Ok(found) => {
            body.push_str(&format!(
                "<p class=\"count\" id=\"result-count\">{} matching record{}{}</p>",
                found.total,
                if found.total == 1 { "" } else { "s" },
                if (found.hits.len() as u64) < found.total {
                    format!(", the first {} shown", found.hits.len())
                } else {
                    String::new()
                }
            ));
            if !found.hits.is_empty() {
                body.push_str("<table class=\"records\" id=\"results\"><thead><tr><th>Leaf</th><th>Received</th><th>Chat</th><th>From</th><th>To</th><th>Kind</th><th>Text</th></tr></thead><tbody>");
                for hit in &found.hits {
                    let (before, after): (Vec<_>, Vec<_>) =
                        hit.context.iter().partition(|c| c.leaf < hit.leaf);
                    for c in before {
                        body.push_str(&record_row(c.leaf, &c.record, &tz, "context"));
                    }
                    body.push_str(&record_row(hit.leaf, &hit.record, &tz, "hit"));
                    for c in after {
                        body.push_str(&record_row(c.leaf, &c.record, &tz, "context"));
                    }
                }
                body.push_str("</tbody></table>");
            }
            StatusCode::OK
        }
    };
    Ok(page(&signed, status, "/console/search", "Search", &body))
}

// ---- Legal holds ----

fn names(list: &[String], none: &str) -> String {
    if list.is_empty() {
        none.to_owned()
    } else {
        list.join(", ")
    }
}

async fn holds_page(
    state: &ArchiverState,
    signed: &Signed,
    status: StatusCode,
    message: String,
) -> Answer {
    let holds = on_vault(state, |v| holds_in_force(v))
        .await
        .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let tz = tz(state);
    let manage = signed.caller.role.allows(Permission::ManageHolds);
    let mut body = message;
    if holds.is_empty() {
        body.push_str("<p id=\"no-holds\">No hold is in force.</p>");
    } else {
        body.push_str("<table id=\"holds\"><thead><tr><th>Name</th><th>Reason</th><th>Custodians</th><th>Chats</th><th>From</th><th>To</th><th>Placed</th><th>Records</th>");
        if manage {
            body.push_str("<th></th>");
        }
        body.push_str("</tr></thead><tbody>");
        let when = |t: Option<i64>| t.map(|t| time(t, &tz)).unwrap_or_else(|| "any time".into());
        for h in &holds {
            let placed = match (&h.author, h.placed_at) {
                (Some(a), Some(t)) => format!("{} by {a}", time(t, &tz)),
                (Some(a), None) => a.clone(),
                (None, Some(t)) => time(t, &tz),
                (None, None) => String::new(),
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
                esc(&h.name),
                esc(h.reason.as_deref().unwrap_or("")),
                esc(&names(&h.custodians, "everyone")),
                esc(&names(&h.chats, "every chat")),
                esc(&when(h.from)),
                esc(&when(h.to)),
                esc(&placed),
                h.records.map_or("sealed".into(), |n| n.to_string()),
            ));
            if manage {
                body.push_str(&format!(
                    "<td><form method=\"post\" action=\"/console/holds/release\" class=\"inline\">{}<input type=\"hidden\" name=\"name\" value=\"{}\"><button class=\"secondary\">Release</button></form></td>",
                    csrf_field(&signed.csrf),
                    esc(&h.name)
                ));
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
    }
    if manage {
        body.push_str(&format!(
            "<h2>Place a hold</h2><form method=\"post\" action=\"/console/holds\" class=\"grid\">{}\
             <label>Name <input name=\"name\" id=\"hold-name\" required maxlength=\"100\"></label>\
             <label class=\"wide\">Reason (the matter or request) <input name=\"reason\" id=\"hold-reason\" maxlength=\"2000\"></label>\
             <label>Custodians (whose records) <input name=\"custodians\" id=\"hold-custodians\" placeholder=\"alice, bob\"></label>\
             <label>Chats (id or title) <input name=\"chats\" id=\"hold-chats\"></label>\
             <label>From <input name=\"from\" id=\"hold-from\" placeholder=\"2026-11-01\"></label>\
             <label>To <input name=\"to\" id=\"hold-to\" placeholder=\"2026-11-30\"></label>\
             <button id=\"place-hold\">Place hold</button></form>\
             <p class=\"hint\">Custodians and chats must exist. Dates are the office's days or RFC 3339 times.</p>",
            csrf_field(&signed.csrf)
        ));
    }
    Ok(page(signed, status, "/console/holds", "Legal holds", &body))
}

pub async fn holds(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::ViewPolicy).await?;
    holds_page(&state, &signed, StatusCode::OK, String::new()).await
}

#[derive(Deserialize)]
pub struct HoldForm {
    csrf: String,
    name: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    custodians: String,
    #[serde(default)]
    chats: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// A comma-separated field as a list.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn optional(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub async fn place_hold(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<HoldForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageHolds, form).await?;
    let request = HoldRequest {
        name: form.name.trim().to_owned(),
        custodians: list(&form.custodians),
        chats: list(&form.chats),
        from: optional(&form.from),
        to: optional(&form.to),
        reason: optional(&form.reason),
    };
    let author = signed.caller.name.clone();
    let settings = state.settings.clone();
    let placed = on_vault(&state, move |v| Ok(place(v, &author, request, &settings)))
        .await
        .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match placed {
        Ok(hold) => {
            let message = notice("ok", &format!("Hold {:?} is in force.", hold.name));
            holds_page(&state, &signed, StatusCode::OK, message).await
        }
        Err(e) => holds_page(&state, &signed, e.status, notice("error", &e.message)).await,
    }
}

#[derive(Deserialize)]
pub struct ReleaseForm {
    csrf: String,
    name: String,
}

pub async fn release_hold(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<ReleaseForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageHolds, form).await?;
    let name = form.name;
    let author = signed.caller.name.clone();
    let hold = name.clone();
    let lifted = on_vault(&state, move |v| Ok(lift(v, &author, hold)))
        .await
        .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match lifted {
        Ok(()) => {
            let message = notice("ok", &format!("Hold {name:?} released."));
            holds_page(&state, &signed, StatusCode::OK, message).await
        }
        Err(e) => holds_page(&state, &signed, e.status, notice("error", &e.message)).await,
    }
}

// ---- Retention ----

pub async fn schedules(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::ViewPolicy).await?;
    schedules_page(&state, &signed, StatusCode::OK, String::new()).await
}

async fn schedules_page(
    state: &ArchiverState,
    signed: &Signed,
    status: StatusCode,
    message: String,
) -> Answer {
    let (s, chats) = on_vault(state, |v| {
        let transitory = v.transitory.as_ref().map(|(at, t)| (*at, t.clone()));
        Ok((v.schedules.clone(), (v.known_chats.clone(), transitory)))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let mut body = message;
    body.push_str("<h2>Schedules</h2><table id=\"schedules\"><thead><tr><th>Schedule</th><th>Kept for</th></tr></thead><tbody>");
    for (name, keep) in &s.schedules {
        let default = if *name == s.default_schedule {
            " <span class=\"tag\">default</span>"
        } else {
            ""
        };
        body.push_str(&format!(
            "<tr><td>{}{default}</td><td>{}</td></tr>",
            esc(name),
            esc(keep.as_deref().unwrap_or("permanently"))
        ));
    }
    body.push_str("</tbody></table>");
    let assignments =
        |title: &str, what: &str, map: &std::collections::BTreeMap<String, String>| {
            let mut out = format!("<h2>{title}</h2>");
            if map.is_empty() {
                out.push_str("<p class=\"muted\">None: the default schedule applies.</p>");
                return out;
            }
            out.push_str(&format!(
                "<table><thead><tr><th>{what}</th><th>Schedule</th></tr></thead><tbody>"
            ));
            for (k, v) in map {
                out.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
            }
            out.push_str("</tbody></table>");
            out
        };
    body.push_str(&assignments(
        "Chats under a schedule",
        "Chat (id or title)",
        &s.chats,
    ));
    body.push_str(&assignments("People under a schedule", "User", &s.users));
    body.push_str("<p class=\"hint\">A chat's schedule wins over its people's. Records under a legal hold are never disposed.</p>");
    if signed.caller.role.allows(Permission::ManageRetention) {
        let options: String = s
            .schedules
            .keys()
            .map(|n| format!("<option>{}</option>", esc(n)))
            .collect();
        body.push_str(&format!(
            "<h2>Define a schedule</h2><form method=\"post\" action=\"/console/schedules/define\" class=\"grid\">{csrf}\
             <label>Name <input name=\"name\" id=\"schedule-name\" required></label>\
             <label>Keep for <input name=\"keep\" id=\"schedule-keep\" required placeholder=\"7y, 180d, 26w or permanent\"></label>\
             <button id=\"define-schedule\">Define</button></form>\
             <h2>Put a chat or a person under a schedule</h2><form method=\"post\" action=\"/console/schedules/assign\" class=\"grid\">{csrf}\
             <label>Chat (id or title) <input name=\"chat\" id=\"assign-chat\"></label>\
             <label>or person <input name=\"user\" id=\"assign-user\"></label>\
             <label>Schedule <select name=\"schedule\" id=\"assign-schedule\">{options}</select></label>\
             <button id=\"assign\">Assign</button></form>",
            csrf = csrf_field(&signed.csrf),
        ));
    }
    let (record, transitory) = chats;
    body.push_str("<h2>Record chats (archived)</h2>");
    if record.is_empty() {
        body.push_str("<p class=\"muted\">None yet.</p>");
    } else {
        body.push_str(
            "<table id=\"record-chats\"><thead><tr><th>Chat</th><th>Id</th></tr></thead><tbody>",
        );
        for (id, title) in &record {
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"muted\">{}</td></tr>",
                esc(title.as_deref().unwrap_or("(untitled)")),
                esc(id)
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Transitory chats (not archived: metadata only)</h2>");
    match transitory {
        None => body.push_str("<p class=\"muted\">Not heard from the delivery server yet.</p>"),
        Some((at, list)) => {
            body.push_str(&format!(
                "<p class=\"hint\">{} transitory chats, as the delivery server listed them at {}{}.</p>",
                list.total,
                esc(&time(at, &tz(state))),
                if (list.chats.len() as u64) < list.total {
                    format!("; the oldest {} shown", list.chats.len())
                } else {
                    String::new()
                }
            ));
            if !list.chats.is_empty() {
                body.push_str("<table id=\"transitory\"><thead><tr><th>Chat id</th><th>Members</th><th>Timers</th><th>Hold</th></tr></thead><tbody>");
                for c in &list.chats {
                    let timers = [("expire", c.expire_secs), ("burn", c.burn_secs)]
                        .iter()
                        .filter_map(|(what, secs)| secs.map(|s| format!("{what} after {s} s")))
                        .collect::<Vec<_>>()
                        .join(", ");
                    body.push_str(&format!(
                        "<tr><td class=\"muted\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&c.id),
                        esc(&c.members.join(", ")),
                        esc(&timers),
                        if c.held {
                            "a member is held: timers suspended"
                        } else {
                            ""
                        }
                    ));
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    Ok(page(
        signed,
        status,
        "/console/schedules",
        "Retention",
        &body,
    ))
}

#[derive(Deserialize)]
pub struct DefineForm {
    csrf: String,
    name: String,
    keep: String,
}

pub async fn define_schedule(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<DefineForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageRetention, form).await?;
    let author = signed.caller.name.clone();
    let name = form.name.trim().to_owned();
    let request = DefineSchedule {
        name: name.clone(),
        keep: form.keep,
    };
    let done = on_vault(&state, move |v| {
        Ok(retention::define_schedule(v, &author, request))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match done {
        Ok(_) => {
            let message = notice("ok", &format!("Schedule {name:?} defined."));
            schedules_page(&state, &signed, StatusCode::OK, message).await
        }
        Err(e) => schedules_page(&state, &signed, e.status, notice("error", &e.message)).await,
    }
}

#[derive(Deserialize)]
pub struct AssignForm {
    csrf: String,
    #[serde(default)]
    chat: String,
    #[serde(default)]
    user: String,
    schedule: String,
}

pub async fn assign_schedule(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<AssignForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageRetention, form).await?;
    let author = signed.caller.name.clone();
    let request = AssignSchedule {
        chat: optional(&form.chat),
        user: optional(&form.user),
        schedule: form.schedule.clone(),
    };
    let done = on_vault(&state, move |v| {
        Ok(retention::assign_schedule(v, &author, request))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match done {
        Ok(_) => {
            let message = notice("ok", &format!("Now under schedule {:?}.", form.schedule));
            schedules_page(&state, &signed, StatusCode::OK, message).await
        }
        Err(e) => schedules_page(&state, &signed, e.status, notice("error", &e.message)).await,
    }
}

// ---- Audit trail ----

#[derive(Deserialize)]
pub struct AuditForm {
    #[serde(default)]
    from: String,
}

/// Entries shown at most.
const AUDIT_PAGE: u32 = 500;

pub async fn audit(
    State(state): St,
    headers: HeaderMap,
    query: Result<Query<AuditForm>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let signed = require(&state, &headers, Permission::ReadAudit).await?;
    let from_text = query.map(|Query(q)| q.from).unwrap_or_default();
    let from = match optional(&from_text)
        .map(|f| state.settings.parse_time(&f, Bound::Start))
        .transpose()
    {
        Ok(from) => from,
        Err(why) => {
            return Ok(page(
                &signed,
                StatusCode::BAD_REQUEST,
                "/console/audit",
                "Audit trail",
                &notice("error", &why),
            ))
        }
    };
    let who = signed.caller.name.clone();
    let entries = on_vault(&state, move |v| {
        let entries = audit_trail(v, from, AUDIT_PAGE)?;
        log_access(
            v,
            "audit",
            &format!("{who} read {} audit entries in the console", entries.len()),
        );
        Ok(entries)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let tz = tz(&state);
    let mut body = format!(
        "<form method=\"get\" action=\"/console/audit\" class=\"grid\"><label>From <input name=\"from\" id=\"audit-from\" value=\"{}\" placeholder=\"2026-11-01\"></label><button>Show</button></form>\
         <p class=\"hint\">Every access, hold, release and disposition is a leaf of the tamper-evident log, newest first (at most {AUDIT_PAGE}). Searches show a digest of their terms, not the terms.</p>",
        esc(&from_text)
    );
    body.push_str("<table id=\"audit\"><thead><tr><th>Leaf</th><th>Time</th><th>Event</th><th>Detail</th></tr></thead><tbody>");
    for e in &entries {
        body.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td class=\"time\">{}</td><td><span class=\"tag\">{}</span></td><td>{}</td></tr>",
            e.leaf,
            esc(&time(e.time, &tz)),
            esc(&e.action),
            esc(&e.detail)
        ));
    }
    body.push_str("</tbody></table>");
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/audit",
        "Audit trail",
        &body,
    ))
}

// ---- Accounts ----

fn base_url(state: &ArchiverState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", state.console.scheme())
}

async fn accounts_page(
    state: &ArchiverState,
    signed: &Signed,
    status: StatusCode,
    message: String,
) -> Answer {
    let accounts = on_vault(state, |v| v.office.list().map_err(internal))
        .await
        .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    let tz = tz(state);
    let mut body = message;
    body.push_str("<table id=\"accounts\"><thead><tr><th>Name</th><th>Role</th><th>State</th><th>Created</th><th>By</th><th></th></tr></thead><tbody>");
    for a in &accounts {
        let state_text = if a.disabled {
            "disabled"
        } else if a.active {
            "active"
        } else {
            "awaiting setup"
        };
        let action = if a.disabled || a.name == signed.caller.name {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/console/accounts/disable\" class=\"inline\">{}<input type=\"hidden\" name=\"name\" value=\"{}\"><button class=\"danger\">Disable</button></form>",
                csrf_field(&signed.csrf),
                esc(&a.name)
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><span class=\"tag {state_text}\">{state_text}</span></td><td class=\"time\">{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&a.name),
            esc(a.role.as_str()),
            esc(&time(a.created_at, &tz)),
            esc(&a.created_by),
        ));
    }
    body.push_str("</tbody></table>");
    let roles: String = Role::ALL
        .iter()
        .map(|r| format!("<option value=\"{0}\">{0}</option>", r.as_str()))
        .collect();
    body.push_str(&format!(
        "<h2>New account</h2><form method=\"post\" action=\"/console/accounts\" class=\"grid\">{}\
         <label>Name <input name=\"name\" id=\"account-name\" required maxlength=\"64\" pattern=\"[a-z0-9._-]+\"></label>\
         <label>Role <select name=\"role\" id=\"account-role\">{roles}</select></label>\
         <button id=\"create-account\">Create</button></form>\
         <p class=\"hint\">Keyholders hold a share of the records key and see no content; analysts search and answer requests; auditors read the audit trail; officers do everything. Give the setup link to the person only: it works once, for 72 hours.</p>",
        csrf_field(&signed.csrf)
    ));
    Ok(page(signed, status, "/console/accounts", "Accounts", &body))
}

pub async fn accounts(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::ManageAccounts).await?;
    accounts_page(&state, &signed, StatusCode::OK, String::new()).await
}

#[derive(Deserialize)]
pub struct NewAccount {
    csrf: String,
    name: String,
    role: String,
}

pub async fn create_account(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<NewAccount>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageAccounts, form).await?;
    let Some(role) = Role::parse(&form.role) else {
        return accounts_page(
            &state,
            &signed,
            StatusCode::BAD_REQUEST,
            notice("error", "no such role"),
        )
        .await;
    };
    let by = signed.caller.name.clone();
    let name = form.name.trim().to_owned();
    let created = on_vault(&state, move |v| {
        let created = v.office.create(&name, role, &by, now_ms());
        if let Ok(c) = &created {
            log_access(
                v,
                "account",
                &format!("{by} created {} ({})", c.name, c.role),
            );
        }
        Ok(created)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match created {
        Ok(c) => {
            let link = format!("{}{}", base_url(&state, &headers), c.setup_path);
            let message = format!(
                "<div class=\"notice ok\"><p>Account <strong>{}</strong> ({}) created. Its one-time setup link, shown only now:</p><p><code id=\"setup-link\">{}</code></p><p>Setup code: <code id=\"setup-code\">{}</code>, valid until {}.</p></div>",
                esc(&c.name),
                esc(c.role.as_str()),
                esc(&link),
                esc(&c.setup_code),
                esc(&time(c.setup_expires_at, &tz(&state))),
            );
            accounts_page(&state, &signed, StatusCode::CREATED, message).await
        }
        Err(e) => {
            accounts_page(
                &state,
                &signed,
                StatusCode::BAD_REQUEST,
                notice("error", &e.to_string()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct DisableForm {
    csrf: String,
    name: String,
}

pub async fn disable_account(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<DisableForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::ManageAccounts, form).await?;
    if form.name == signed.caller.name {
        return accounts_page(
            &state,
            &signed,
            StatusCode::CONFLICT,
            notice("error", "An officer cannot disable their own account."),
        )
        .await;
    }
    let by = signed.caller.name.clone();
    let name = form.name.clone();
    let done = on_vault(&state, move |v| {
        Ok(crate::api::accounts::disable_account(v, &by, &name))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match done {
        Ok(()) => {
            let message = notice(
                "ok",
                &format!("{} is disabled; their sessions ended.", form.name),
            );
            accounts_page(&state, &signed, StatusCode::OK, message).await
        }
        Err(e) => {
            accounts_page(
                &state,
                &signed,
                StatusCode::NOT_FOUND,
                notice("error", &e.to_string()),
            )
            .await
        }
    }
}

// ---- API token ----

fn token_html(signed: &Signed, made: Option<&str>) -> String {
    let mut body = String::from("<p>An API token lets the command line act as your account: <code>vellum records --archiver URL --token-file FILE …</code>. Making a new one replaces the old one.</p>");
    if let Some(token) = made {
        body.push_str(&format!(
            "<div class=\"notice ok\"><p>Your new API token, shown only now. Save it in a file only you can read (chmod 600):</p><p><code id=\"api-token\">{}</code></p></div>",
            esc(token)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/console/token\">{}<button id=\"new-token\">Make a new API token</button></form>",
        csrf_field(&signed.csrf)
    ));
    body
}

pub async fn token(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::Status).await?;
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/token",
        "API token",
        &token_html(&signed, None),
    ))
}

pub async fn new_token(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    let (signed, _form) = require_form(&state, &headers, Permission::Status, form).await?;
    let me = signed.caller.name.clone();
    let token = on_vault(&state, move |v| {
        let token = v.office.new_api_token(&me).map_err(internal)?;
        log_access(v, "account", &format!("{me} made a new API token"));
        Ok(token)
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    Ok(page(
        &signed,
        StatusCode::OK,
        "/console/token",
        "API token",
        &token_html(&signed, Some(&token)),
    ))
}

with_csrf!(
    CsrfOnly,
    ShareForm,
    SearchForm,
    HoldForm,
    ReleaseForm,
    NewAccount,
    DisableForm,
    DefineForm,
    AssignForm
);
