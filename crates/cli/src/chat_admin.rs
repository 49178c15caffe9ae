//! `chat rename`, `chat admins`, `chat set --read-receipts`, `chat leave` (issue 10 roles).

use anyhow::{bail, Result};
use serde_json::json;
use vellum_client::Client;

/// `chat admins CHAT add|remove USER`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AdminAction {
    Add,
    Remove,
}

pub async fn rename(client: &mut Client, chat: &str, title: &str, json: bool) -> Result<()> {
    client.catch_up().await?;
    let id = client.resolve_chat(chat)?;
    client.rename_chat(&id, title).await?;
    if json {
        println!("{}", json!({ "chat": id, "title": title }));
    } else {
        println!("renamed the chat to {title:?}");
    }
    Ok(())
}

pub async fn admins(
    client: &mut Client,
    chat: &str,
    action: AdminAction,
    user: &str,
    json: bool,
) -> Result<()> {
    client.catch_up().await?;
    let add = matches!(action, AdminAction::Add);
    let settings = client.set_admin(chat, user, add).await?;
    let admins = settings.admin_names();
    if json {
        println!(
            "{}",
            json!({ "chat": client.resolve_chat(chat)?, "admins": admins })
        );
    } else if add {
        println!("{user} is now an admin (admins: {})", admins.join(", "));
    } else {
        println!(
            "{user} is no longer an admin (admins: {})",
            admins.join(", ")
        );
    }
    Ok(())
}

pub async fn read_receipts(client: &mut Client, chat: &str, on: &str) -> Result<()> {
    let on = match on {
        "on" => true,
        "off" => false,
        other => bail!("--read-receipts takes on or off, not {other:?}"),
    };
    client.catch_up().await?;
    client.set_read_receipts(chat, on).await?;
    println!("read receipts {}", if on { "on" } else { "off" });
    if on && !client.org_policy().await?.allow_read_receipts {
        eprintln!(
            "note: the organisation's policy forbids read receipts: none are sent while it does"
        );
    }
    Ok(())
}

pub async fn leave(client: &mut Client, chat: &str, json: bool) -> Result<()> {
    client.catch_up().await?;
    let id = client.resolve_chat(chat)?;
    client.leave_chat(&id).await?;
    if json {
        println!("{}", json!({ "chat": id, "left": true }));
    } else {
        println!("left the chat; the other members' devices take you out at their next sync");
    }
    Ok(())
}
