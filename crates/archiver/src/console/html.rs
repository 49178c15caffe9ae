//! HTML by hand: every value from outside (names, record text, chat titles, errors) goes
//! through `esc`; the markup itself is constant.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use vellum_record::api::office::Permission;

use super::Signed;

/// Escapes text for an HTML text node or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Unix-ms time in the office's time zone.
pub fn time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Vellum records console</title>\
         <link rel=\"stylesheet\" href=\"/console/static/console.css\">\
         <script src=\"/console/static/console.js\" defer></script></head>",
        esc(title)
    )
}

/// The pages in the navigation, each with what its role must allow.
const NAV: &[(&str, &str, Permission)] = &[
    ("/console/", "Overview", Permission::Status),
    ("/console/unseal", "Unseal", Permission::Unseal),
    ("/console/search", "Search", Permission::ReadContent),
    ("/console/cases", "FOIA cases", Permission::Cases),
    ("/console/holds", "Legal holds", Permission::ViewPolicy),
    ("/console/schedules", "Retention", Permission::ViewPolicy),
    ("/console/audit", "Audit trail", Permission::ReadAudit),
    ("/console/accounts", "Accounts", Permission::ManageAccounts),
    ("/console/token", "API token", Permission::Status),
];

/// A page for a signed-in person: header, status banner, navigation by role, content.
pub fn page(
    signed: &Signed,
    status: StatusCode,
    active: &str,
    title: &str,
    body: &str,
) -> Response {
    let s = &signed.status;
    let banner = if s.sealed {
        format!(
            "<div class=\"banner sealed\" id=\"archive-state\"><strong>Sealed</strong> · {} of {} keyholder shares handed in · {} records</div>",
            s.shares_received, s.shares_needed, s.records
        )
    } else {
        format!(
            "<div class=\"banner unsealed\" id=\"archive-state\"><strong>Unsealed</strong> · {} records in a log of {} leaves</div>",
            s.records, s.log_size
        )
    };
    let paused = s
        .paused
        .as_deref()
        .map(|p| format!("<div class=\"banner warn\">{}</div>", esc(p)))
        .unwrap_or_default();
    let nav: String = NAV
        .iter()
        .filter(|(_, _, p)| signed.caller.role.allows(*p))
        .map(|(href, label, _)| {
            let current = if *href == active {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{current}>{label}</a>")
        })
        .collect();
    let seal = if !s.sealed && signed.caller.role.allows(Permission::Seal) {
        format!(
            "<form method=\"post\" action=\"/console/seal\" class=\"inline\">{}<button class=\"secondary\" id=\"seal\">Seal now</button></form>",
            csrf_field(&signed.csrf)
        )
    } else {
        String::new()
    };
    let html = format!(
        "{head}<body><header class=\"top\"><div class=\"brand\">Vellum <span>Records console</span></div>\
         <div class=\"who\">{seal}<span id=\"whoami\">{name} · {role}</span>\
         <form method=\"post\" action=\"/console/sign-out\" class=\"inline\">{csrf}<button class=\"link\" id=\"sign-out\">Sign out</button></form></div></header>\
         {banner}{paused}<div class=\"layout\"><nav>{nav}</nav><main><h1>{title}</h1>{body}</main></div></body></html>",
        head = head(title),
        name = esc(&signed.caller.name),
        role = esc(signed.caller.role.as_str()),
        csrf = csrf_field(&signed.csrf),
        title = esc(title),
    );
    (status, Html(html)).into_response()
}

/// A page for a signed-out browser (sign-in, setup, errors).
pub fn bare(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "{head}<body class=\"bare\"><main class=\"card\"><div class=\"brand\">Vellum <span>Records console</span></div><h1>{title}</h1>{body}</main></body></html>",
        head = head(title),
        title = esc(title),
    );
    (status, Html(html)).into_response()
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    bare(
        status,
        title,
        &format!(
            "<p class=\"notice error\">{}</p><p><a href=\"/console/\">Back to the console</a></p>",
            esc(message)
        ),
    )
}

pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

pub fn notice(kind: &str, message: &str) -> String {
    format!("<p class=\"notice {kind}\">{}</p>", esc(message))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            super::esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
