//! `vellum demo`: the whole product in one process on a temporary directory.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use vellum_client::{Api, Client, MessageKind};
use vellum_wire::{CreateUserRequest, EnrollmentCode};

fn member_names(client: &Client, chat: &str) -> Result<String> {
    let members = client.members(chat)?;
    Ok(members
        .iter()
        .map(|m| m.user.as_str())
        .collect::<Vec<_>>()
        .join(", "))
}

fn heading(text: &str) {
    println!("\n== {text}");
}

fn show(who: &str, client: &Client, chat: &str) -> Result<()> {
    let history = client.history(chat)?;
    println!("  {who} sees {} message(s):", history.len());
    for m in history {
        match m.kind {
            MessageKind::Text => println!("    <{}> {}", m.sender_user, m.text),
            MessageKind::Event => println!("    * {}", m.text),
        }
    }
    Ok(())
}

async fn enroll(api: &Api, token: &str, server: &str, dir: &Path, name: &str) -> Result<Client> {
    let code: EnrollmentCode = api
        .call(
            Method::POST,
            "/v1/admin/users",
            Some(&CreateUserRequest { name: name.into() }),
            None,
            Some(token),
        )
        .await?;
    let client = Client::enroll(&dir.join(name), server, name, &code.code).await?;
    println!("  {name:<6} enrolled as device {}", client.device_id());
    Ok(client)
}

pub async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let state = vellum_server::AppState::open(vellum_server::ServerConfig::new(
        listener.local_addr()?,
        data.clone(),
    ))?;
    tokio::spawn(vellum_server::run(listener, state));
    heading(&format!(
        "delivery server on {url}, data in {}",
        data.display()
    ));
    let token = std::fs::read_to_string(data.join("admin-token"))?;
    let api = Api::new(&url)?;

    heading("the admin creates users; each enrolls a device (the org signs its MLS credential)");
    let mut alice = enroll(&api, token.trim(), &url, dir.path(), "alice").await?;
    let mut bob = enroll(&api, token.trim(), &url, dir.path(), "bob").await?;
    let mut carol = enroll(&api, token.trim(), &url, dir.path(), "carol").await?;

    heading(
        "alice creates the chat \"field-ops\" with bob and carol (one MLS commit, one Welcome)",
    );
    let chat = alice
        .create_chat(
            "field-ops",
            &["bob".into(), "carol".into()],
            Default::default(),
            None,
        )
        .await?;
    bob.sync().await?;
    carol.sync().await?;
    println!("  chat id {chat}");
    println!("  members: {}", member_names(&alice, &chat)?);

    heading("they talk");
    alice.send(&chat, "Crossing at 0600, north gate.").await?;
    bob.sync().await?;
    bob.send(&chat, "Copy. Two vehicles.").await?;
    carol.sync().await?;
    carol.send(&chat, "I'll bring the permits.").await?;
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync().await?;
    }
    show("alice", &alice, &chat)?;
    show("bob", &bob, &chat)?;
    show("carol", &carol, &chat)?;

    heading("alice removes carol; what follows is encrypted to a new epoch carol has no keys for");
    alice.remove_members(&chat, &["carol".into()]).await?;
    let after_removal = "Change of plan: 0500, east gate.";
    alice.send(&chat, after_removal).await?;
    bob.sync().await?;
    carol.sync().await?;
    show("bob", &bob, &chat)?;
    show("carol", &carol, &chat)?;
    ensure!(
        bob.history(&chat)?.iter().any(|m| m.text == after_removal),
        "bob did not receive the message"
    );
    ensure!(
        !carol
            .history(&chat)?
            .iter()
            .any(|m| m.text == after_removal),
        "carol read a message after removal"
    );
    println!("  members now: {}", member_names(&alice, &chat)?);

    heading(
        "what the server stored for this chat (its whole log: ciphertext and public handshake)",
    );
    let db = rusqlite::Connection::open_with_flags(
        data.join("server.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(
        "SELECT seq, epoch, kind, length(payload) FROM group_log WHERE group_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([&chat], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    println!(
        "  {:>4} {:>6} {:<12} {:>8}",
        "seq", "epoch", "kind", "bytes"
    );
    for row in rows {
        let (seq, epoch, kind, len) = row?;
        let kind = if kind == "commit" {
            "commit"
        } else {
            "ciphertext"
        };
        println!("  {seq:>4} {epoch:>6} {kind:<12} {len:>8}");
    }

    heading("alice makes messages disappear after 2 seconds; every member agreed through MLS");
    alice.set_timers(&chat, Some(Some(2)), None).await?;
    let fleeting = "Burn this: the gate code is 4417.";
    alice.send(&chat, fleeting).await?;
    bob.sync().await?;
    show("bob", &bob, &chat)?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    println!("  ...2.5 seconds later:");
    show("bob", &bob, &chat)?;
    ensure!(
        !bob.history(&chat)?.iter().any(|m| m.text == fleeting),
        "the message outlived its timer"
    );
    let db = rusqlite::Connection::open_with_flags(
        data.join("server.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let left: i64 = db.query_row(
        "SELECT COUNT(*) FROM group_log WHERE group_id = ?1 AND expires_at IS NOT NULL",
        [&chat],
        |r| r.get(0),
    )?;
    println!("  the server purged its ciphertext as well ({left} timed entries left in its log)");

    heading("searching every server file (database, -wal, -shm) for the plaintexts");
    let texts: Vec<String> = bob
        .history(&chat)?
        .into_iter()
        .filter(|m| m.kind == MessageKind::Text)
        .map(|m| m.text)
        .chain(["field-ops".to_string(), fleeting.to_string()])
        .collect();
    let mut hits = 0;
    for entry in std::fs::read_dir(&data)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
        for text in &texts {
            if bytes.windows(text.len()).any(|w| w == text.as_bytes()) {
                println!("  FOUND {text:?} in {}", path.display());
                hits += 1;
            }
        }
    }
    ensure!(hits == 0, "plaintext found in server files");
    println!(
        "  {} plaintexts (and the chat title) searched: none found",
        texts.len()
    );
    println!("\ndemo complete");
    Ok(())
}
