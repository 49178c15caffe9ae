//! How the CLI prints: readable lines, or with `--json` JSON (one object per line for
//! streams; one array for lists).
//!
//! Everything a sender or another member controls (texts, titles, event texts) goes through
//! [`safe`] before it reaches a terminal: control characters and bidi overrides are shown
//! escaped, and a message's further lines are indented under its header, so no line of a
//! message can pass for another message (issue 10).

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use serde_json::json;
use vellum_client::{
    ChatRow, Client, DeviceEntry, DevicesView, LocalStore, Member, MemberDevice, MessageKind,
    MessageRow, SafetyNumber, Shredded, StoredReceipt,
};
use vellum_wire::DeviceState;

pub struct Output {
    json: bool,
}

/// Unix seconds as RFC 3339, to the second (JSON and machine-read lines: always UTC).
pub fn rfc3339_secs(unix_secs: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn rfc3339_millis(unix_millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// How readable lines show times and whether they use colour: set once from the global
/// options, before anything prints.
struct Style {
    zone: jiff::tz::TimeZone,
    colour: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// `--utc` shows times in UTC; otherwise the system's time zone (`TZ`, /etc/localtime).
/// Colour only when standard output is a terminal and `NO_COLOR` is not set.
pub fn configure(utc: bool) {
    let zone = match utc {
        true => jiff::tz::TimeZone::UTC,
        false => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
    };
    let _ = STYLE.set(Style {
        zone,
        colour: colour_wanted(std::io::stdout().is_terminal()),
    });
}

/// Colour on a terminal, unless `NO_COLOR` is set to anything non-empty (no-color.org).
pub fn colour_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn style() -> &'static Style {
    STYLE.get_or_init(|| Style {
        zone: jiff::tz::TimeZone::UTC,
        colour: false,
    })
}

fn zoned(unix_millis: i64) -> jiff::ZonedDateTime {
    jiff::Timestamp::from_millisecond(unix_millis)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(style().zone.clone())
}

/// A time for people, to the second: `2026-12-06 14:00:05` in the local zone (with `--utc`,
/// `2026-12-06 14:00:05 UTC`).
pub fn time(unix_millis: i64) -> String {
    let z = zoned(unix_millis);
    match style().zone == jiff::tz::TimeZone::UTC {
        true => format!("{} UTC", z.strftime("%Y-%m-%d %H:%M:%S")),
        false => z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

/// A receipt's disclosed field for people: times (`sent_at`, Unix milliseconds in the leaf)
/// readable, with the committed value after them; everything else as disclosed.
pub fn disclosed_field(field: &str, value: &str) -> String {
    match value.parse::<i64>() {
        Ok(millis) if field.ends_with("_at") => format!("{} ({value})", time(millis)),
        _ => value.to_owned(),
    }
}

/// A date for people, to the minute, with how far it is: `2026-12-06 14:00 (in 7 days)`.
pub fn date(unix_millis: i64) -> String {
    date_at(unix_millis, vellum_client::now_millis())
}

fn date_at(unix_millis: i64, now_millis: i64) -> String {
    let z = zoned(unix_millis);
    let utc = if style().zone == jiff::tz::TimeZone::UTC {
        " UTC"
    } else {
        ""
    };
    format!(
        "{}{utc} ({})",
        z.strftime("%Y-%m-%d %H:%M"),
        relative(unix_millis - now_millis)
    )
}

/// `in 7 days`, `3 hours ago`, `now`: the largest whole unit.
fn relative(delta_millis: i64) -> String {
    let secs = delta_millis.unsigned_abs() / 1000;
    if secs < 60 {
        return "now".into();
    }
    let (n, unit) = [(86_400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size)
        // Rounded: a wait of 72 hours less a moment is "in 3 days".
        .map(|(size, unit)| ((secs + size / 2) / size, unit))
        .unwrap_or((secs / 60, "minute"));
    let plural = if n == 1 { "" } else { "s" };
    match delta_millis > 0 {
        true => format!("in {n} {unit}{plural}"),
        false => format!("{n} {unit}{plural} ago"),
    }
}

/// `text` for one line of a terminal: control characters (C0, DEL, C1), bidi overrides and
/// isolates, and line or paragraph separators are written as escapes (`\x1b`, `\n`,
/// `\u{202e}`), never raw, so a sender can neither drive the reader's terminal nor make
/// text look like something else.
pub fn safe(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            // C1 controls (CSI is U+009B), bidi marks, embeddings, overrides and isolates,
            // line and paragraph separators, and the byte-order mark.
            '\u{80}'..='\u{9f}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            // Invisible ones that hide or disguise text: soft hyphen, zero-width space, word
            // joiner and its kin, interlinear annotations.
            | '\u{ad}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{2060}'..='\u{2064}'
            | '\u{fff9}'..='\u{fffb}' => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A chat's title where it heads a line: [`safe`], with runs of spaces collapsed and angle
/// brackets shown as ‹ › — a title such as `ops <alice> pay now` followed by padding must not
/// read as alice's message.
pub fn chat_label(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for word in safe(title).split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| match c {
            '<' => '‹',
            '>' => '›',
            c => c,
        }));
    }
    out
}

/// A message text as lines for a terminal, each made [`safe`]: the first follows the
/// header, the others are printed indented under it.
pub fn safe_lines(text: &str) -> Vec<String> {
    text.split('\n').map(safe).collect()
}

/// A message's further lines start with this, so none starts like a header (`[`).
const CONTINUATION: &str = "    ";

/// `[time] chat <sender> text  (id)`, a multi-line text's further lines indented under it.
pub fn message_lines(when: &str, chat: &str, sender: &str, text: &str, id: &str) -> String {
    let lines = safe_lines(text);
    let sender = match style().colour {
        true => format!("\x1b[1m<{}>\x1b[0m", safe(sender)),
        false => format!("<{}>", safe(sender)),
    };
    let mut out = format!("[{when}] {} {sender} {}", chat_label(chat), lines[0]);
    for line in &lines[1..] {
        out.push('\n');
        out.push_str(CONTINUATION);
        out.push_str(line);
    }
    out.push_str(&format!("  ({})", safe(id)));
    out
}

/// A message (or event, reaction, edit) as one JSON object: what `sync`, `watch`, `history`
/// and `search` print.
pub fn message_json(
    store: &LocalStore,
    m: &MessageRow,
    title: Option<&str>,
) -> Result<serde_json::Value> {
    let mut line = json!({
        "id": m.id,
        "kind": m.kind.as_str(),
        "chat": m.group_id,
        "chat_title": title,
        "sender": m.sender_user,
        "sender_device": m.sender_device,
        "sent_at": rfc3339_millis(m.sent_at),
        "received_at": rfc3339_millis(m.received_at),
        "seq": m.seq,
        "text": m.text,
        "expires_at": m.expires_at.map(rfc3339_millis),
        "burn_at": m.burn_at.map(rfc3339_millis),
        "archived": m.archived_leaf.is_some(),
        "archive_leaf": m.archived_leaf,
    });
    // An event also says what it is, typed ({"type": "member_added", ...}).
    if let Some(event) = &m.event {
        line["event"] = serde_json::to_value(event)?;
    }
    crate::rich::extend_json(store, m, &mut line)?;
    Ok(line)
}

/// Prints a list as one JSON array (`[]` when empty), so a script always gets a value.
pub fn json_array(items: Vec<serde_json::Value>) {
    println!("{}", json_text(&serde_json::Value::Array(items)));
}

/// A JSON value as one line that is safe on a terminal too: serde escapes only characters
/// below U+0020, so C1 controls (U+0080–U+009F, the one-byte CSI among them) and the line
/// and paragraph separators are written as `\u` escapes here. Still the same JSON.
pub fn json_text(value: &serde_json::Value) -> String {
    use std::fmt::Write;
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn message(&self, store: &LocalStore, m: &MessageRow) -> Result<()> {
        let title = store.chat(&m.group_id)?.and_then(|c| c.title);
        if self.json {
            let line = message_json(store, m, title.as_deref())?;
            println!("{}", json_text(&line));
        } else {
            // Account notices (key directory news about this user) belong to no chat.
            let chat = match m.group_id.is_empty() {
                true => "account".to_owned(),
                false => title.unwrap_or_else(|| m.group_id.clone()),
            };
            let when = time(m.sent_at);
            match m.kind {
                MessageKind::Text => {
                    // When it leaves this device: whichever timer runs out first.
                    let gone = match (m.expires_at, m.burn_at) {
                        (Some(e), Some(b)) => Some(e.min(b)),
                        (e, b) => e.or(b),
                    };
                    let gone = gone
                        .map(|at| format!("  disappears {}", date(at)))
                        .unwrap_or_default();
                    println!(
                        "{}{gone}",
                        message_lines(&when, &chat, &m.sender_user, &m.text, &m.id)
                    );
                    // Two spaces and a dash: a message's own further lines are indented four
                    // spaces, so none can pass for a reply quote or the reactions.
                    for detail in crate::rich::detail_lines(store, m)? {
                        println!("  - {}", safe(&detail));
                    }
                }
                // An event is one line: a newline in it (a title, say) is shown escaped.
                MessageKind::Event => {
                    println!("[{when}] {} * {}", chat_label(&chat), safe(&m.text))
                }
                MessageKind::Reaction | MessageKind::Edit => {
                    println!(
                        "[{when}] {} * {}",
                        chat_label(&chat),
                        safe(&crate::rich::about_sentence(store, m)?)
                    )
                }
            }
        }
        Ok(())
    }

    pub fn chats(
        &self,
        chats: &[ChatRow],
        classes: &[&str],
        unread: &std::collections::HashMap<String, u64>,
    ) -> Result<()> {
        if self.json {
            let items = chats.iter().zip(classes).map(|(c, class)| {
                let unread = unread.get(&c.group_id).copied().unwrap_or(0);
                json!({ "id": c.group_id, "title": c.title, "removed": c.removed, "class": class, "held": c.held, "unread": unread })
            });
            json_array(items.collect());
            return Ok(());
        }
        if chats.is_empty() {
            eprintln!("no chats yet: create one with `vellum chat create TITLE --with USER`");
        }
        for (c, class) in chats.iter().zip(classes) {
            let title = safe(c.title.as_deref().unwrap_or("(untitled)"));
            let removed = if c.removed {
                "  (you were removed)"
            } else {
                ""
            };
            let held = if c.held {
                "  (legal hold: timers suspended)"
            } else {
                ""
            };
            let unread = match unread.get(&c.group_id).copied().unwrap_or(0) {
                0 => String::new(),
                n => format!("  ({n} unread)"),
            };
            println!("{}  {title}  [{class}]{unread}{held}{removed}", c.group_id);
        }
        Ok(())
    }

    /// One device: `ID  STATE  enrolled T  last seen T`, or a JSON object; a device waiting
    /// for approval shows its code on the next line (JSON: `code`).
    pub fn device(&self, d: &DeviceEntry) {
        if self.json {
            println!("{}", device_json(d));
            return;
        }
        let state = match d.state {
            DeviceState::Legacy => "approved at upgrade",
            _ => device_state(d.state),
        };
        let at = |secs: i64| date(secs * 1000);
        println!(
            "{}  {state}  enrolled {}  last seen {}{}",
            d.device_id,
            d.enrolled_at.map_or("unknown".into(), at),
            d.last_seen.map_or("never".into(), at),
            if d.this_device { "  (this device)" } else { "" }
        );
        if let Some(code) = &d.code {
            println!("verification code: {code}");
        }
    }

    /// `vellum devices`: each device, then what to do next (on stderr with `--json`, so
    /// every stdout line stays a JSON object).
    pub fn devices(&self, view: &DevicesView) -> Result<()> {
        self.device_list(&view.devices);
        for notice in &view.notices {
            match self.json {
                true => eprintln!("{notice}"),
                false => println!("{notice}"),
            }
        }
        Ok(())
    }

    /// A list of devices: a JSON array, or one line each.
    pub fn device_list(&self, devices: &[DeviceEntry]) {
        match self.json {
            true => json_array(devices.iter().map(device_json).collect()),
            false => devices.iter().for_each(|d| self.device(d)),
        }
    }

    pub fn shredded(&self, removed: &[Shredded]) -> Result<()> {
        if self.json {
            json_array(
                removed
                    .iter()
                    .map(|s| json!({ "chat": s.group_id, "id": s.id, "reason": s.reason.as_str() }))
                    .collect(),
            );
        } else {
            println!("shredded {} message(s)", removed.len());
            for s in removed {
                println!("  {} {} ({})", s.group_id, s.id, s.reason.as_str());
            }
        }
        Ok(())
    }

    /// Each member, with what it is when it is not a person (the records archive).
    pub fn members(&self, members: &[(Member, Option<String>)]) -> Result<()> {
        if self.json {
            json_array(
                members
                    .iter()
                    .map(|(m, role)| json!({ "user": m.user, "device": m.device_id, "role": role }))
                    .collect(),
            );
            return Ok(());
        }
        for (m, role) in members {
            match role {
                Some(role) => println!("{}  {}  ({role})", m.user, m.device_id),
                None => println!("{}  {}", m.user, m.device_id),
            }
        }
        Ok(())
    }

    /// `chat members --devices`: each device with its state and fingerprint.
    pub fn member_devices(&self, devices: &[MemberDevice]) -> Result<()> {
        if self.json {
            let items = devices.iter().map(|d| {
                json!({
                    "user": d.user,
                    "device": d.device_id,
                    "state": d.state.as_str(),
                    "fingerprint": d.fingerprint,
                    "role": d.role,
                })
            });
            json_array(items.collect());
            return Ok(());
        }
        for d in devices {
            let role = d
                .role
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default();
            println!(
                "{}  {}  {}  {}{role}",
                d.user,
                d.device_id,
                d.state.as_str(),
                d.fingerprint
            );
        }
        Ok(())
    }

    /// `vellum status`: the archive log as this device checked it, and the alarms.
    pub fn device_status(&self, client: &Client, alarms: &[String]) -> Result<()> {
        let log = client.records_log()?;
        if self.json {
            let line = json!({
                "user": client.user(),
                "device": client.device_id(),
                "checkpoint_size": log.as_ref().map(|l| l.size),
                "cosigners": log.as_ref().map(|l| l.cosigners),
                "witness_quorum": log.as_ref().map(|l| l.quorum),
                "checkpoint_published_at": log.as_ref().and_then(|l| l.renewed_at).map(rfc3339_millis),
                "warnings": alarms,
            });
            println!("{line}");
            return Ok(());
        }
        println!("{} on device {}", client.user(), client.device_id());
        match log {
            Some(l) => println!(
                "archive log: newest checkpoint {} leaves, {} of {} witness cosignature(s), published {}",
                l.size,
                l.cosigners,
                l.quorum,
                l.renewed_at.map_or("at an unknown time".into(), date)
            ),
            None => println!("archive log: not followed (no archiver is bound, or none has published a checkpoint)"),
        }
        for alarm in alarms {
            println!("WARNING: {alarm}");
        }
        Ok(())
    }

    /// `vellum safety USER`: the number to compare, and whether it is confirmed.
    pub fn safety(&self, me: &str, n: &SafetyNumber) -> Result<()> {
        if self.json {
            let line = json!({
                "user": n.user,
                "identity_key": n.identity_key,
                "safety_number": n.number,
                "confirmed": n.confirmed,
                "reset_seen": n.reset_seen,
            });
            println!("{line}");
            return Ok(());
        }
        if n.user == me {
            println!("your own digits (identity key {}):", n.identity_key);
            println!("{}", n.number);
            return Ok(());
        }
        println!(
            "safety number of {me} and {} ({}'s identity key {}):",
            n.user, n.user, n.identity_key
        );
        // Twelve groups of five digits, as three lines of four.
        let groups: Vec<&str> = n.number.split(' ').collect();
        for line in groups.chunks(4) {
            println!("  {}", line.join(" "));
        }
        if n.reset_seen {
            println!(
                "{}'s identity was reset by the administrator: compare this number with {} (in person or on a call), then run `vellum safety {} --confirm`",
                n.user, n.user, n.user
            );
        } else if n.confirmed {
            println!("confirmed");
        } else {
            println!(
                "not confirmed: compare it with {}, then run `vellum safety {} --confirm`",
                n.user, n.user
            );
        }
        Ok(())
    }

    /// `vellum receipts CHAT`: one line per kept receipt.
    pub fn receipts(&self, receipts: &[(StoredReceipt, MessageRow)]) -> Result<()> {
        let mut items = Vec::new();
        for (r, m) in receipts {
            let receipt: vellum_wire::Receipt = serde_json::from_str(&r.receipt)?;
            let text = receipt.checkpoint.split("\n\n").next().unwrap_or_default();
            let size = vellum_tlog::Checkpoint::parse(&format!("{text}\n"))
                .map(|c| c.size)
                .ok();
            if self.json {
                let line = json!({
                    "id": m.id,
                    "chat": m.group_id,
                    "seq": m.seq,
                    "sent_at": rfc3339_millis(m.sent_at),
                    "text": m.text,
                    "leaf": r.leaf_index,
                    "checkpoint_size": size,
                    "received_at": rfc3339_millis(r.received_at),
                });
                items.push(line);
            } else {
                println!(
                    "[{}] {}  leaf {} in the checkpoint of {} leaves: {}",
                    time(m.sent_at),
                    m.id,
                    r.leaf_index,
                    size.map_or("?".into(), |s| s.to_string()),
                    safe(&m.text)
                );
            }
        }
        if self.json {
            json_array(items);
        }
        Ok(())
    }
}

fn device_state(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Approved => "approved",
        DeviceState::Pending => "pending",
        DeviceState::Legacy => "legacy",
        DeviceState::Revoked => "revoked",
    }
}

fn device_json(d: &DeviceEntry) -> serde_json::Value {
    json!({
        "device_id": d.device_id,
        "state": device_state(d.state),
        "enrolled_at": d.enrolled_at.map(rfc3339_secs),
        "last_seen": d.last_seen.map(rfc3339_secs),
        "this_device": d.this_device,
        "code": d.code,
        "warning": d.warning,
    })
}

/// Parses a size: bytes, or a number with a unit (`500KiB`, `100MiB`, `1GiB`, `2TiB`; `KB`,
/// `MB`, `GB` are powers of ten; `K`, `M`, `G` are read as the binary units).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        anyhow::anyhow!("{text:?} is not a size (e.g. 1048576, 500KiB, 100MiB, 1GiB)")
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => anyhow::bail!("unknown size unit {other:?} in {text:?}: use KiB, MiB, GiB or TiB"),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"))
}

/// A size for people: `1.5 MiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("5MB").unwrap(), 5_000_000);
        for bad in ["", "MiB", "1.5GiB", "-1", "10 parsecs", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 10), "1.5 MiB");
    }

    /// Issue 10 review: JSON lines carried C1 controls raw (a terminal may obey U+009B).
    #[test]
    fn issue_10_json_lines_escape_c1_controls_and_stay_the_same_json() {
        let value = json!({ "text": "csi\u{9b}31m nel\u{85} sep\u{2028} ok é" });
        let line = json_text(&value);
        assert!(
            !line.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "{line}"
        );
        assert!(
            line.contains("\\u009b") && line.contains("\\u2028"),
            "{line}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            value
        );
    }
}

#[cfg(test)]
mod safe_output_tests {
    use super::*;

    /// Issue 10: nothing a sender writes reaches the terminal raw.
    #[test]
    fn issue_10_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(safe("bell\u{7}"), "bell\\x07");
        assert_eq!(safe("x\ry\nz\t"), "x\\ry\\nz\\t");
        assert_eq!(safe("del\u{7f}"), "del\\x7f");
        assert_eq!(safe("csi\u{9b}31m"), "csi\\u{009b}31m");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{2066}iso\u{2069}"), "\\u{2066}iso\\u{2069}");
        assert_eq!(safe("line\u{2028}sep"), "line\\u{2028}sep");
        // Invisible characters that disguise text (issue 10 review).
        assert_eq!(safe("pay\u{200b}pal"), "pay\\u{200b}pal");
        assert_eq!(safe("soft\u{ad}hyphen"), "soft\\u{00ad}hyphen");
        assert_eq!(safe("word\u{2060}joiner"), "word\\u{2060}joiner");
        // Ordinary text, accents and emoji (joined ones too) pass as they are.
        assert_eq!(safe("Grüße, 👋 «ok» 👩‍💻"), "Grüße, 👋 «ok» 👩‍💻");
        let escaped = safe(&(0u8..=0x1f).map(char::from).collect::<String>());
        assert!(escaped.chars().all(|c| !c.is_control()), "{escaped}");
    }

    /// Issue 10 review: a title padded to look like a message header stays a title.
    #[test]
    fn issue_10_a_title_cannot_pass_for_a_message_header() {
        let title = format!("proj <alice> pay invoice 4411 today{}.", " ".repeat(150));
        let printed = message_lines("12:39", &title, "mallory", "ok", "m1");
        assert_eq!(
            printed,
            "[12:39] proj ‹alice› pay invoice 4411 today . <mallory> ok  (m1)"
        );
    }

    /// Issue 10: a message's further lines are indented under its header, so a forged
    /// `[time] chat <alice> …` line in bob's message cannot pass for alice's message.
    #[test]
    fn issue_10_continuation_lines_are_indented_under_the_header() {
        let forged = "hi\n[2026-01-01 00:00:00] team <alice> send the password\nbye";
        let printed = message_lines("2026-11-29 12:00:00", "team", "bob", forged, "m1");
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines,
            [
                "[2026-11-29 12:00:00] team <bob> hi",
                "    [2026-01-01 00:00:00] team <alice> send the password",
                "    bye  (m1)",
            ]
        );
        assert_eq!(
            message_lines("t", "team", "bob", "one line", "m2"),
            "[t] team <bob> one line  (m2)"
        );
        // A title or sender cannot break the header either.
        let header = message_lines("t", "a\nb", "x\u{1b}", "text", "m3");
        assert_eq!(header, "[t] a\\nb <x\\x1b> text  (m3)");
    }

    #[test]
    fn issue_10_dates_read_as_a_date_and_how_far_it_is() {
        // Unconfigured style: UTC.
        let now = 1_764_417_600_000; // 2025-11-29 12:00:00 UTC
        let week = 7 * 86_400_000;
        assert_eq!(date_at(now + week, now), "2025-12-06 12:00 UTC (in 7 days)");
        assert_eq!(
            date_at(now - 3 * 3_600_000, now),
            "2025-11-29 09:00 UTC (3 hours ago)"
        );
        assert_eq!(
            date_at(now + 61_000, now),
            "2025-11-29 12:01 UTC (in 1 minute)"
        );
        assert_eq!(date_at(now, now), "2025-11-29 12:00 UTC (now)");
        assert_eq!(time(now), "2025-11-29 12:00:00 UTC");
    }

    #[test]
    fn issue_10_colour_only_on_a_terminal_without_no_color() {
        // NO_COLOR is read from the environment; this test process does not set it unless
        // the caller did, in which case colour stays off either way.
        assert!(!colour_wanted(false));
        if std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
            assert!(colour_wanted(true));
        } else {
            assert!(!colour_wanted(true));
        }
    }
}
