//! How the CLI prints: readable lines, or with `--json` one JSON object per line.

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

/// Unix seconds as RFC 3339, to the second.
pub fn rfc3339_secs(unix_secs: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn rfc3339_millis(unix_millis: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_millis.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn message(&self, store: &LocalStore, m: &MessageRow) -> Result<()> {
        let title = store.chat(&m.group_id)?.and_then(|c| c.title);
        if self.json {
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
            println!("{line}");
        } else {
            // Account notices (key directory news about this user) belong to no chat.
            let chat = match m.group_id.is_empty() {
                true => "account".to_owned(),
                false => title.unwrap_or_else(|| m.group_id.clone()),
            };
            let when = rfc3339_millis(m.sent_at);
            match m.kind {
                MessageKind::Text => {
                    println!("[{when}] {chat} <{}> {}  ({})", m.sender_user, m.text, m.id);
                    for detail in crate::rich::detail_lines(store, m)? {
                        println!("    {detail}");
                    }
                }
                MessageKind::Event => println!("[{when}] {chat} * {}", m.text),
                MessageKind::Reaction | MessageKind::Edit => {
                    println!(
                        "[{when}] {chat} * {}",
                        crate::rich::about_sentence(store, m)?
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
        for (c, class) in chats.iter().zip(classes) {
            let title = c.title.as_deref().unwrap_or("(untitled)");
            let unread = unread.get(&c.group_id).copied().unwrap_or(0);
            if self.json {
                let line = json!({ "id": c.group_id, "title": c.title, "removed": c.removed, "class": class, "held": c.held, "unread": unread });
                println!("{line}");
            } else {
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
                let unread = match unread {
                    0 => String::new(),
                    n => format!("  ({n} unread)"),
                };
                println!("{}  {title}  [{class}]{unread}{held}{removed}", c.group_id);
            }
        }
        Ok(())
    }

    /// One device: `ID  STATE  enrolled T  last seen T`, or a JSON object; a device waiting
    /// for approval shows its code on the next line (JSON: `code`).
    pub fn device(&self, d: &DeviceEntry) {
        let state = match d.state {
            DeviceState::Approved => "approved",
            DeviceState::Pending => "pending",
            DeviceState::Legacy => "legacy",
            DeviceState::Revoked => "revoked",
        };
        if self.json {
            let line = json!({
                "device_id": d.device_id,
                "state": state,
                "enrolled_at": d.enrolled_at.map(rfc3339_secs),
                "last_seen": d.last_seen.map(rfc3339_secs),
                "this_device": d.this_device,
                "code": d.code,
                "warning": d.warning,
            });
            println!("{line}");
            return;
        }
        let state = match d.state {
            DeviceState::Legacy => "approved at upgrade",
            _ => state,
        };
        println!(
            "{}  {state}  enrolled {}  last seen {}{}",
            d.device_id,
            d.enrolled_at.map_or("unknown".into(), rfc3339_secs),
            d.last_seen.map_or("never".into(), rfc3339_secs),
            if d.this_device { "  (this device)" } else { "" }
        );
        if let Some(code) = &d.code {
            println!("verification code: {code}");
        }
    }

    /// `vellum devices`: each device, then what to do next (on stderr with `--json`, so
    /// every stdout line stays a JSON object).
    pub fn devices(&self, view: &DevicesView) -> Result<()> {
        for d in &view.devices {
            self.device(d);
        }
        for notice in &view.notices {
            match self.json {
                true => eprintln!("{notice}"),
                false => println!("{notice}"),
            }
        }
        Ok(())
    }

    pub fn shredded(&self, removed: &[Shredded]) -> Result<()> {
        if self.json {
            for s in removed {
                println!(
                    "{}",
                    json!({ "chat": s.group_id, "id": s.id, "reason": s.reason.as_str() })
                );
            }
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
        for (m, role) in members {
            if self.json {
                println!(
                    "{}",
                    json!({ "user": m.user, "device": m.device_id, "role": role })
                );
            } else {
                match role {
                    Some(role) => println!("{}  {}  ({role})", m.user, m.device_id),
                    None => println!("{}  {}", m.user, m.device_id),
                }
            }
        }
        Ok(())
    }

    /// `chat members --devices`: each device with its state and fingerprint.
    pub fn member_devices(&self, devices: &[MemberDevice]) -> Result<()> {
        for d in devices {
            if self.json {
                let line = json!({
                    "user": d.user,
                    "device": d.device_id,
                    "state": d.state.as_str(),
                    "fingerprint": d.fingerprint,
                    "role": d.role,
                });
                println!("{line}");
            } else {
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
                l.renewed_at.map_or("at an unknown time".into(), rfc3339_millis)
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
                println!("{line}");
            } else {
                println!(
                    "[{}] {}  leaf {} in the checkpoint of {} leaves: {}",
                    rfc3339_millis(m.sent_at),
                    m.id,
                    r.leaf_index,
                    size.map_or("?".into(), |s| s.to_string()),
                    m.text
                );
            }
        }
        Ok(())
    }
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
}
