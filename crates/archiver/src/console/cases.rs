//! The console's FOIA pages: cases, the review set with responsive / not responsive marks,
//! the redaction screen, and productions with progress and download. The work is done by
//! `crate::foia` (as for the API); these pages only show it and take its forms.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use vellum_http::Path;
use vellum_record::api::foia::{
    CaseDetail, CreateCase, Exemption, JobState, Mark, MetadataField, RedactionTarget,
    StartProduction,
};
use vellum_record::api::office::Permission;
use vellum_record::api::search::SearchRequest;
use vellum_record::Record;

use super::html::{csrf_field, esc, notice, page, time};
use super::{redirect, require, require_form, with_csrf, Signed, WithCsrf};
use crate::api::foia::foia_error;
use crate::api::on_vault;
use crate::foia::{self, jobs, FoiaError};
use crate::office::Caller;
use crate::ArchiverState;

type St = State<Arc<ArchiverState>>;
type Answer = Result<Response, Response>;

const ACTIVE: &str = "/console/cases";

fn tz(state: &ArchiverState) -> jiff::tz::TimeZone {
    state.settings.tz().unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Runs `f` on the actor; a refusal becomes this page's error, a sealed archive says so.
async fn work<R: Send + 'static>(
    state: &ArchiverState,
    signed: &Signed,
    f: impl FnOnce(&mut crate::Vault) -> Result<R, FoiaError> + Send + 'static,
) -> Result<R, Response> {
    let answer = on_vault(state, move |v| Ok(f(v).map_err(foia_error)))
        .await
        .and_then(|r| r);
    answer.map_err(|e| {
        let body = if e.code == vellum_http::codes::SEALED {
            "<p class=\"notice error\" id=\"sealed\">The archive is sealed: keyholders must unseal it before anyone can work on cases.</p>".to_owned()
        } else {
            notice("error", &e.message)
        };
        page(signed, e.status, ACTIVE, "FOIA cases", &body)
    })
}

/// A form posted on a case's page: session, role and CSRF token checked, `act` done on the
/// actor as the caller, then back to the case.
async fn case_form<T: WithCsrf + Send + 'static>(
    state: &ArchiverState,
    headers: &HeaderMap,
    id: String,
    form: Result<Form<T>, FormRejection>,
    act: impl FnOnce(&mut crate::Vault, &Caller, &str, T) -> Result<(), FoiaError> + Send + 'static,
) -> Answer {
    let (signed, form) = require_form(state, headers, Permission::Cases, form).await?;
    let caller = signed.caller.clone();
    let case = id.clone();
    work(state, &signed, move |v| act(v, &caller, &case, form)).await?;
    Ok(redirect(&format!("/console/cases/{id}")))
}

with_csrf!(
    NewCase,
    AddForm,
    ReviewForm,
    RedactForm,
    RemoveRedaction,
    NameForm,
    NoteForm,
    ProduceForm
);

// ---- The list ----

pub async fn list(State(state): St, headers: HeaderMap) -> Answer {
    let signed = require(&state, &headers, Permission::Cases).await?;
    let caller = signed.caller.clone();
    let cases = work(&state, &signed, move |v| foia::list(v, &caller)).await?;
    let mut body = String::new();
    if cases.is_empty() {
        body.push_str("<p id=\"no-cases\">No case yet.</p>");
    } else {
        body.push_str("<table id=\"cases\"><thead><tr><th>Case</th><th>Requester</th><th>Status</th><th>Received</th><th>Due</th><th>Analyst</th><th>Records</th><th>Unreviewed</th><th>Responsive</th></tr></thead><tbody>");
        for c in &cases {
            body.push_str(&format!(
                "<tr><td><a href=\"/console/cases/{id}\">{id}</a></td><td>{}</td><td><span class=\"tag\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&c.requester),
                esc(c.status.as_str()),
                esc(&c.received),
                esc(&c.due),
                esc(c.analyst.as_deref().unwrap_or("")),
                c.items,
                c.unreviewed,
                c.responsive,
                id = esc(&c.id),
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&format!(
        "<h2>New case</h2><form method=\"post\" action=\"/console/cases\" class=\"grid\">{}\
         <label>Requester <input name=\"requester\" id=\"case-requester\" required maxlength=\"200\"></label>\
         <label>Received <input name=\"received\" id=\"case-received\" placeholder=\"today\"></label>\
         <label class=\"wide\">Request <textarea name=\"description\" id=\"case-description\" rows=\"3\" required maxlength=\"4000\"></textarea></label>\
         <button id=\"create-case\">Open case</button></form>\
         <p class=\"hint\">The due date is counted in working days from the day received, on the office's calendar.</p>",
        csrf_field(&signed.csrf)
    ));
    Ok(page(&signed, StatusCode::OK, ACTIVE, "FOIA cases", &body))
}

#[derive(Deserialize)]
pub struct NewCase {
    csrf: String,
    requester: String,
    description: String,
    #[serde(default)]
    received: String,
}

fn optional(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub async fn create(
    State(state): St,
    headers: HeaderMap,
    form: Result<Form<NewCase>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::Cases, form).await?;
    let caller = signed.caller.clone();
    let settings = state.settings.clone();
    let req = CreateCase {
        requester: form.requester,
        description: form.description,
        received: optional(&form.received),
    };
    let case = work(&state, &signed, move |v| {
        foia::create(v, &caller, &settings, req)
    })
    .await?;
    Ok(redirect(&format!("/console/cases/{}", case.id)))
}

// ---- One case ----

fn mark_tag(mark: Mark) -> String {
    let class = match mark {
        Mark::Responsive => "active",
        Mark::NotResponsive => "disabled",
        Mark::Unreviewed => "",
    };
    format!("<span class=\"tag {class}\">{}</span>", mark.as_str())
}

fn case_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub async fn show(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let signed = require(&state, &headers, Permission::Cases).await?;
    case_page(&state, &signed, &id, StatusCode::OK, String::new()).await
}

async fn case_page(
    state: &ArchiverState,
    signed: &Signed,
    id: &str,
    status: StatusCode,
    message: String,
) -> Answer {
    let caller = signed.caller.clone();
    let lookup = id.to_owned();
    let CaseDetail { case, records } =
        work(state, signed, move |v| foia::show(v, &caller, &lookup)).await?;
    let tz = tz(state);
    let csrf = csrf_field(&signed.csrf);
    let cid = esc(&case.id);
    let mut body = message;
    body.push_str(&format!(
        "<div class=\"cards\"><div class=\"stat\"><span>Status</span><strong id=\"case-status\">{}</strong></div>\
         <div class=\"stat\"><span>Received</span><strong>{}</strong></div>\
         <div class=\"stat\"><span>Due</span><strong>{}{}</strong></div>\
         <div class=\"stat\"><span>Analyst</span><strong>{}</strong></div></div>\
         <p><strong>{}</strong> asked: {}</p>",
        esc(case.status.as_str()),
        esc(&case.received),
        esc(&case.due),
        if case.due_overridden { " (set by hand)" } else { "" },
        esc(case.analyst.as_deref().unwrap_or("none")),
        esc(&case.requester),
        esc(&case.description),
    ));
    // The review set.
    body.push_str("<h2>Review set</h2>");
    if case.items.is_empty() {
        body.push_str("<p id=\"no-items\">No record yet: add them with a search below.</p>");
    } else {
        body.push_str("<table class=\"records\" id=\"review-set\"><thead><tr><th>Leaf</th><th>Received</th><th>Chat</th><th>From</th><th>Text</th><th>Review</th><th>Redactions</th><th></th></tr></thead><tbody>");
        for item in &case.items {
            let record = records
                .iter()
                .find(|r| r.leaf == item.leaf)
                .map(|r| &r.record);
            let (when, chat, from, text) = match record {
                Some(r) => (
                    time(r.received_at, &tz),
                    r.chat_title.clone().unwrap_or_else(|| r.chat_id.clone()),
                    r.sender_user.clone(),
                    r.text.clone().unwrap_or_default(),
                ),
                None => (
                    String::new(),
                    String::new(),
                    String::new(),
                    "(disposed)".into(),
                ),
            };
            let buttons = [(Mark::Responsive, "Responsive"), (Mark::NotResponsive, "Not responsive")]
                .iter()
                .filter(|(m, _)| *m != item.mark)
                .map(|(m, label)| {
                    format!(
                        "<form method=\"post\" action=\"/console/cases/{cid}/review\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"leaf\" value=\"{}\"><input type=\"hidden\" name=\"mark\" value=\"{}\"><button class=\"secondary\" id=\"mark-{}-{}\">{label}</button></form>",
                        item.leaf,
                        serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                        item.leaf,
                        if *m == Mark::Responsive { "responsive" } else { "not-responsive" },
                    )
                })
                .collect::<String>();
            let redactions: Vec<String> = item
                .redactions
                .iter()
                .map(|r| format!("{} {}", r.exemption.label(), target_text(&r.target)))
                .collect();
            body.push_str(&format!(
                "<tr><td class=\"num\">{}</td><td class=\"time\">{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td><td>{} {buttons}</td><td>{}</td><td><a href=\"/console/cases/{cid}/records/{}\" id=\"redact-{}\">Redact</a></td></tr>",
                item.leaf,
                esc(&when),
                esc(&chat),
                esc(&from),
                esc(&text),
                mark_tag(item.mark),
                esc(&redactions.join("; ")),
                item.leaf,
                item.leaf,
            ));
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&format!(
        "<h2>Add records</h2><form method=\"post\" action=\"/console/cases/{cid}/add\" class=\"search\">{csrf}\
         <label class=\"wide\">Query <input name=\"q\" id=\"add-q\"></label>\
         <label>Participants (all of them) <input name=\"participants\" id=\"add-participants\" placeholder=\"alice, bob\"></label>\
         <label>From <input name=\"from\" id=\"add-from\"></label><label>To <input name=\"to\" id=\"add-to\"></label>\
         <button id=\"add-records\">Add every match</button></form>"
    ));
    // Names withheld across the case.
    body.push_str("<h2>Names withheld in every record</h2>");
    if !case.names.is_empty() {
        body.push_str("<ul>");
        for n in &case.names {
            body.push_str(&format!(
                "<li>{} under {} <form method=\"post\" action=\"/console/cases/{cid}/redactions/remove\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"redaction\" value=\"{}\"><button class=\"link\">remove</button></form></li>",
                esc(&n.user),
                n.exemption.label(),
                n.id
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/console/cases/{cid}/names\" class=\"grid\">{csrf}\
         <label>Person <input name=\"user\" id=\"name-user\" required></label>\
         <label>Exemption <select name=\"exemption\">{}</select></label>\
         <button id=\"redact-name\">Withhold the name</button></form>",
        exemption_options(Exemption::B6)
    ));
    // Notes.
    body.push_str("<h2>Notes</h2>");
    for n in &case.notes {
        body.push_str(&format!(
            "<p class=\"note\"><span class=\"muted\">{} · {}</span><br>{}</p>",
            esc(&n.author),
            esc(&time(n.at, &tz)),
            esc(&n.text)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/console/cases/{cid}/notes\" class=\"stack\">{csrf}<label>Note <textarea name=\"text\" rows=\"2\" required></textarea></label><button>Add note</button></form>"
    ));
    // Production.
    if signed.caller.role.allows(Permission::Produce) {
        body.push_str(&format!(
            "<h2>Production</h2><p class=\"hint\">Produces the responsive records, redacted: RSMF, PDF with Bates numbers, CSV load file, withholding log and manifest.</p>\
             <form method=\"post\" action=\"/console/cases/{cid}/produce\" class=\"grid\">{csrf}\
             <label>Bates prefix <input name=\"bates_prefix\" id=\"bates-prefix\" placeholder=\"{cid}\"></label>\
             <label><span><input type=\"checkbox\" name=\"rsmf\" value=\"1\" checked> RSMF</span></label>\
             <label><span><input type=\"checkbox\" name=\"pdf\" value=\"1\" checked> PDF</span></label>\
             <label><span><input type=\"checkbox\" name=\"csv\" value=\"1\" checked> CSV</span></label>\
             <button id=\"produce\">Start production</button></form>"
        ));
    }
    Ok(page(signed, status, ACTIVE, &case.id, &body))
}

fn exemption_options(selected: Exemption) -> String {
    Exemption::ALL
        .iter()
        .map(|e| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                e.as_str(),
                if *e == selected { " selected" } else { "" },
                e.label()
            )
        })
        .collect()
}

fn target_text(t: &RedactionTarget) -> String {
    match t {
        RedactionTarget::Span { start, end } => format!("characters {start}-{end}"),
        RedactionTarget::Field { field } => format!("the {}", field.as_str()),
        RedactionTarget::Participant { user } => format!("the name {user}"),
        RedactionTarget::Whole => "the whole record".into(),
    }
}

#[derive(Deserialize)]
pub struct AddForm {
    csrf: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    participants: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub async fn add(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<AddForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::Cases, form).await?;
    let req = SearchRequest {
        q: form.q.trim().to_owned(),
        participants: form
            .participants
            .split([',', ' '])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        from: optional(&form.from),
        to: optional(&form.to),
        ..SearchRequest::default()
    };
    let caller = signed.caller.clone();
    let case = id.clone();
    let added = work(&state, &signed, move |v| {
        foia::add_search(v, &caller, &case, req)
    })
    .await?;
    let message = notice(
        "ok",
        &format!(
            "{} records added ({} were in the review set already).",
            added.added.len(),
            added.already
        ),
    );
    case_page(&state, &signed, &id, StatusCode::OK, message).await
}

#[derive(Deserialize)]
pub struct ReviewForm {
    csrf: String,
    leaf: u64,
    mark: Mark,
}

pub async fn review(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Answer {
    case_form(&state, &headers, id, form, |v, caller, case, form| {
        foia::review(v, caller, case, form.leaf, form.mark).map(drop)
    })
    .await
}

#[derive(Deserialize)]
pub struct NoteForm {
    csrf: String,
    text: String,
}

pub async fn note(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<NoteForm>, FormRejection>,
) -> Answer {
    case_form(&state, &headers, id, form, |v, caller, case, form| {
        foia::add_note(v, caller, case, &form.text).map(drop)
    })
    .await
}

#[derive(Deserialize)]
pub struct NameForm {
    csrf: String,
    user: String,
    exemption: Exemption,
}

pub async fn redact_name(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<NameForm>, FormRejection>,
) -> Answer {
    case_form(&state, &headers, id, form, |v, caller, case, form| {
        foia::redact_name(v, caller, case, form.user.trim(), form.exemption).map(drop)
    })
    .await
}

// ---- The redaction screen ----

pub async fn record(
    State(state): St,
    headers: HeaderMap,
    Path((id, leaf)): Path<(String, u64)>,
) -> Answer {
    let signed = require(&state, &headers, Permission::Cases).await?;
    record_page(&state, &signed, &id, leaf, StatusCode::OK, String::new()).await
}

async fn record_page(
    state: &ArchiverState,
    signed: &Signed,
    id: &str,
    leaf: u64,
    status: StatusCode,
    message: String,
) -> Answer {
    let caller = signed.caller.clone();
    let lookup = id.to_owned();
    let CaseDetail { case, records } =
        work(state, signed, move |v| foia::show(v, &caller, &lookup)).await?;
    let Some(item) = case.items.iter().find(|i| i.leaf == leaf) else {
        return Err(page(
            signed,
            StatusCode::NOT_FOUND,
            ACTIVE,
            "Not in the case",
            &notice(
                "error",
                &format!("record {leaf} is not in {}'s review set", case.id),
            ),
        ));
    };
    let record: Option<&Record> = records.iter().find(|r| r.leaf == leaf).map(|r| &r.record);
    let tz = tz(state);
    let csrf = csrf_field(&signed.csrf);
    let cid = esc(&case.id);
    let mut body = message;
    body.push_str(&format!(
        "<p><a href=\"/console/cases/{cid}\">← {cid}</a> · record {leaf} · {}</p>",
        mark_tag(item.mark)
    ));
    match record {
        None => body.push_str(&notice("error", "This record was disposed of.")),
        Some(r) => {
            let text = r.text.clone().unwrap_or_default();
            body.push_str(&format!(
                "<table><tbody><tr><th>Chat</th><td>{}</td></tr><tr><th>From</th><td>{}</td></tr><tr><th>To</th><td>{}</td></tr><tr><th>Received</th><td>{}</td></tr></tbody></table>\
                 <h2>Text</h2><p class=\"hint\">Select words to fill the span, or type the offsets (characters, counted from 0).</p>\
                 <pre id=\"record-text\" class=\"record-text\" data-start=\"span-start\" data-end=\"span-end\">{}</pre>",
                esc(r.chat_title.as_deref().unwrap_or(&r.chat_id)),
                esc(&r.sender_user),
                esc(&r.recipients.iter().map(|m| m.user.as_str()).collect::<Vec<_>>().join(", ")),
                esc(&time(r.received_at, &tz)),
                esc(&text),
            ));
            let fields: String = [
                MetadataField::Sender,
                MetadataField::ChatTitle,
                MetadataField::AttachmentName,
            ]
            .iter()
            .map(|f| {
                format!(
                    "<option value=\"{}\">{}</option>",
                    serde_json::to_value(f)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    f.as_str()
                )
            })
            .collect();
            body.push_str(&format!(
                "<h2>Redact</h2><form method=\"post\" action=\"/console/cases/{cid}/records/{leaf}/redact\" class=\"grid\">{csrf}\
                 <label>Exemption <select name=\"exemption\" id=\"exemption\">{ex}</select></label>\
                 <label>From character <input name=\"start\" id=\"span-start\" inputmode=\"numeric\"></label>\
                 <label>To character (exclusive) <input name=\"end\" id=\"span-end\" inputmode=\"numeric\"></label>\
                 <button name=\"kind\" value=\"span\" id=\"redact-span\">Redact the span</button></form>\
                 <form method=\"post\" action=\"/console/cases/{cid}/records/{leaf}/redact\" class=\"grid\">{csrf}\
                 <label>Exemption <select name=\"exemption\">{ex}</select></label>\
                 <label>Field <select name=\"field\" id=\"redact-field-name\">{fields}</select></label>\
                 <button name=\"kind\" value=\"field\" id=\"redact-field\">Redact the field</button>\
                 <button name=\"kind\" value=\"whole\" class=\"danger\" id=\"withhold\">Withhold the whole record</button></form>",
                ex = exemption_options(Exemption::B6),
            ));
        }
    }
    body.push_str("<h2>Redactions of this record</h2>");
    if item.redactions.is_empty() {
        body.push_str("<p class=\"muted\" id=\"no-redactions\">None.</p>");
    } else {
        body.push_str("<table id=\"redactions\"><thead><tr><th>#</th><th>Exemption</th><th>What</th><th>Withheld text</th><th>By</th><th></th></tr></thead><tbody>");
        let text: Vec<char> = record
            .and_then(|r| r.text.as_deref())
            .unwrap_or("")
            .chars()
            .collect();
        for r in &item.redactions {
            let withheld = match r.target {
                RedactionTarget::Span { start, end } if start <= end && end <= text.len() => {
                    text[start..end].iter().collect()
                }
                _ => String::new(),
            };
            body.push_str(&format!(
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><mark>{}</mark></td><td>{} · {}</td><td><form method=\"post\" action=\"/console/cases/{cid}/redactions/remove\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"redaction\" value=\"{}\"><input type=\"hidden\" name=\"leaf\" value=\"{leaf}\"><button class=\"link\">remove</button></form></td></tr>",
                r.id,
                r.exemption.label(),
                esc(&target_text(&r.target)),
                esc(&withheld),
                esc(&r.by),
                esc(&time(r.at, &tz)),
                r.id,
            ));
        }
        body.push_str("</tbody></table>");
    }
    Ok(page(
        signed,
        status,
        ACTIVE,
        &format!("Review {}", case.id),
        &body,
    ))
}

#[derive(Deserialize)]
pub struct RedactForm {
    csrf: String,
    kind: String,
    exemption: Exemption,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    field: Option<MetadataField>,
}

pub async fn redact(
    State(state): St,
    headers: HeaderMap,
    Path((id, leaf)): Path<(String, u64)>,
    form: Result<Form<RedactForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::Cases, form).await?;
    let target = match form.kind.as_str() {
        "span" => match (form.start.trim().parse(), form.end.trim().parse()) {
            (Ok(start), Ok(end)) => Some(RedactionTarget::Span { start, end }),
            _ => None,
        },
        "field" => form.field.map(|field| RedactionTarget::Field { field }),
        "whole" => Some(RedactionTarget::Whole),
        _ => None,
    };
    let Some(target) = target else {
        let message = notice(
            "error",
            "Give the span's first and last character, or choose a field.",
        );
        return record_page(&state, &signed, &id, leaf, StatusCode::BAD_REQUEST, message).await;
    };
    let caller = signed.caller.clone();
    let case = id.clone();
    let exemption = form.exemption;
    let done = on_vault(&state, move |v| {
        Ok(foia::redact(v, &caller, &case, leaf, exemption, target))
    })
    .await
    .map_err(|e| super::html::error_page(e.status, "Error", &e.message))?;
    match done {
        Ok(r) => {
            let message = notice(
                "ok",
                &format!(
                    "Redacted {} under {}.",
                    target_text(&r.target),
                    r.exemption.label()
                ),
            );
            record_page(&state, &signed, &id, leaf, StatusCode::OK, message).await
        }
        Err(e) => {
            let e = foia_error(e);
            record_page(
                &state,
                &signed,
                &id,
                leaf,
                e.status,
                notice("error", &e.message),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct RemoveRedaction {
    csrf: String,
    redaction: u64,
    #[serde(default)]
    leaf: Option<u64>,
}

pub async fn remove_redaction(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RemoveRedaction>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::Cases, form).await?;
    let caller = signed.caller.clone();
    let case = id.clone();
    work(&state, &signed, move |v| {
        foia::remove_redaction(v, &caller, &case, form.redaction)
    })
    .await?;
    Ok(redirect(&match form.leaf {
        Some(leaf) => format!("/console/cases/{id}/records/{leaf}"),
        None => format!("/console/cases/{id}"),
    }))
}

// ---- Productions ----

#[derive(Deserialize)]
pub struct ProduceForm {
    csrf: String,
    #[serde(default)]
    bates_prefix: String,
    #[serde(default)]
    rsmf: Option<String>,
    #[serde(default)]
    pdf: Option<String>,
    #[serde(default)]
    csv: Option<String>,
}

pub async fn produce(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ProduceForm>, FormRejection>,
) -> Answer {
    let (signed, form) = require_form(&state, &headers, Permission::Produce, form).await?;
    let formats = [("rsmf", &form.rsmf), ("pdf", &form.pdf), ("csv", &form.csv)]
        .iter()
        .filter(|(_, on)| on.is_some())
        .map(|(f, _)| f.to_string())
        .collect();
    let req = StartProduction {
        bates_prefix: optional(&form.bates_prefix),
        formats,
    };
    let caller = signed.caller.clone();
    let settings = state.settings.clone();
    let case = id.clone();
    let (job, plan) = work(&state, &signed, move |v| {
        jobs::start(v, &caller, &settings, &case, &req)
    })
    .await?;
    jobs::run(state.vault.clone(), plan);
    Ok(redirect(&format!(
        "/console/cases/{id}/productions/{}",
        job.job
    )))
}

pub async fn production(
    State(state): St,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Answer {
    let signed = require(&state, &headers, Permission::Produce).await?;
    let caller = signed.caller.clone();
    let (case, lookup) = (id.clone(), job.clone());
    let p = work(&state, &signed, move |v| {
        jobs::status(v, &caller, &case, &lookup)
    })
    .await?;
    let percent = (p.done * 10).checked_div(p.total).unwrap_or(0).min(10);
    let mut body = format!(
        "<p><a href=\"/console/cases/{cid}\">← {cid}</a></p>\
         <div class=\"progress\" id=\"production-progress\"><div class=\"bar\"><span class=\"w{percent}\"></span></div><p><strong>{} of {}</strong> records written</p></div>",
        p.done,
        p.total,
        cid = esc(&id),
    );
    let state_text = match p.state {
        JobState::Running => "Running: this page refreshes itself.",
        JobState::Done => "Done: the production is ready to download (once).",
        JobState::Failed => "Failed.",
        JobState::Gone => "Gone: downloaded already, or dropped when the archive sealed.",
    };
    body.push_str(&format!(
        "<p id=\"production-state\">{}</p>",
        esc(state_text)
    ));
    if let Some(error) = &p.error {
        body.push_str(&notice("error", error));
    }
    if p.state == JobState::Done {
        body.push_str(&format!(
            "<p><a class=\"button\" id=\"download\" href=\"/console/cases/{}/productions/{}/download\">Download the production (zip)</a></p>",
            esc(&id),
            esc(&job)
        ));
        if let Some(summary) = &p.summary {
            body.push_str(&format!(
                "<pre id=\"production-summary\">{}</pre>",
                esc(&serde_json::to_string_pretty(summary).unwrap_or_default())
            ));
        }
    }
    let mut response = page(&signed, StatusCode::OK, ACTIVE, "Production", &body);
    if p.state == JobState::Running {
        // No script: the browser reloads the page itself while the job runs.
        response
            .headers_mut()
            .insert(header::REFRESH, header::HeaderValue::from_static("1"));
    }
    Ok(response)
}

pub async fn download(
    State(state): St,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Answer {
    let signed = require(&state, &headers, Permission::Produce).await?;
    if !case_id_ok(&id) {
        return Err(page(
            &signed,
            StatusCode::NOT_FOUND,
            ACTIVE,
            "Not found",
            &notice("error", "no such case"),
        ));
    }
    let caller = signed.caller.clone();
    let (case, lookup) = (id.clone(), job.clone());
    let zip = work(&state, &signed, move |v| {
        jobs::download(v, &caller, &case, &lookup)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-production.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}
