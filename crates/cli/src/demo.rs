//! `vellum demo`: the whole product in one process on a temporary directory.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use reqwest::Method;
use vellum_client::{Api, Client, MessageKind};
use vellum_wire::{CreateUserRequest, EnrollmentCode};

use crate::output::safe;

fn member_names(client: &Client, chat: &str) -> Result<String> {
    let members = client.members(chat)?;
    Ok(members
        .iter()
        .map(|m| m.user.as_str())
        .collect::<Vec<_>>()
        .join(", "))
}

/// `PUT /v1/admin/policy` with the admin token.
async fn set_policy(api: &Api, token: &str, update: vellum_wire::OrgPolicyUpdate) -> Result<()> {
    let _: vellum_wire::OrgPolicy = api
        .call(
            Method::PUT,
            "/v1/admin/policy",
            Some(&update),
            None,
            Some(token),
        )
        .await?;
    Ok(())
}

/// `records seal` with the records officer's credential.
async fn seal(records_api: &Api, officer: Option<&str>) -> Result<()> {
    let _: vellum_archiver::api_types::Status = records_api
        .call(Method::POST, "/v1/seal", None::<&()>, None, officer)
        .await?;
    Ok(())
}

/// Issue 10: a reply quoting its parent, an edit (the archive would keep both versions), a
/// reaction; bob's view folds them into the messages.
async fn rich_messages(alice: &mut Client, bob: &mut Client, chat: &str) -> Result<()> {
    heading("replies, edits and reactions");
    let parent = bob
        .history(chat)?
        .into_iter()
        .find(|m| m.sender_user == "bob" && m.kind == MessageKind::Text)
        .ok_or_else(|| anyhow::anyhow!("bob's message is missing"))?;
    let reply = alice
        .send_message(
            chat,
            vellum_client::OutgoingMessage {
                text: "@bob Which vehicles?".into(),
                reply_to: Some(parent.id.clone()),
                ..Default::default()
            },
        )
        .await?;
    alice
        .edit(chat, &reply.id, "@bob Which two vehicles?")
        .await?;
    bob.sync().await?;
    bob.react(chat, &reply.id, "👍", false).await?;
    alice.sync().await?;
    let shown = alice
        .history(chat)?
        .into_iter()
        .find(|m| m.id == reply.id)
        .ok_or_else(|| anyhow::anyhow!("the reply is missing"))?;
    let reactions = alice.reactions(&shown.group_id, &shown.id)?;
    println!("    <{}> {}", parent.sender_user, parent.text);
    println!(
        "    <alice> {}  (reply to bob's; edited; mentions {}; reactions: {})",
        shown.text,
        shown.extra.mentions.join(", "),
        reactions
            .iter()
            .map(|r| format!("{} {}", r.emoji, r.users.join(", ")))
            .collect::<Vec<_>>()
            .join("  ")
    );
    ensure!(
        shown.extra.edited_at.is_some() && reactions.len() == 1,
        "the edit and the reaction reached alice's view"
    );
    Ok(())
}

fn heading(text: &str) {
    println!("\n== {text}");
}

fn show(who: &str, client: &Client, chat: &str) -> Result<()> {
    let history = client.history(chat)?;
    println!("  {who} sees {} message(s):", history.len());
    for m in history {
        match m.kind {
            MessageKind::Text => println!("    <{}> {}", m.sender_user, safe(&m.text)),
            MessageKind::Event | MessageKind::Reaction | MessageKind::Edit => {
                println!("    * {}", safe(&m.text))
            }
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
    // The last part's database, checked before the rest runs for a minute.
    if let Ok(database) = std::env::var("VELLUM_DATABASE_URL") {
        vellum_store_pg::PgStore::admin_client(&database)
            .await
            .context("VELLUM_DATABASE_URL (the demo's last part runs two nodes on it)")?;
    }
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
    forged_lines_stay_inside_their_message(&mut alice, &mut bob, &chat).await?;

    rich_messages(&mut alice, &mut bob, &chat).await?;

    roles(&mut alice, &mut bob, &chat).await?;

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

    no_silent_readers(
        &api,
        token.trim(),
        &url,
        dir.path(),
        &mut alice,
        &mut bob,
        &chat,
    )
    .await?;

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

    files(&data, dir.path(), &mut alice, &mut bob, &chat).await?;

    window(&dir.path().join("bob"), &mut alice, &chat).await?;

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
    for text in &texts {
        for file in files_holding(&data, text)? {
            println!("  FOUND {text:?} in {file}");
            hits += 1;
        }
    }
    ensure!(hits == 0, "plaintext found in server files");
    println!(
        "  {} plaintexts (and the chat title) searched: none found",
        texts.len()
    );
    records(
        &api,
        token.trim(),
        &url,
        dir.path(),
        &mut alice,
        &mut bob,
        &chat,
    )
    .await?;
    foundations(&url).await?;
    scale_out(dir.path()).await?;
    println!("\ndemo complete");
    Ok(())
}

/// Issue 10: a message cannot drive the reader's terminal or pass a line off as another
/// member's message: escapes are shown escaped, further lines indented under the header.
async fn forged_lines_stay_inside_their_message(
    alice: &mut Client,
    bob: &mut Client,
    chat: &str,
) -> Result<()> {
    heading("bob tries to forge a line from alice (and to clear alice's screen)");
    let forged = "ok\n[2026-01-01 06:00:00] field-ops <alice> Cancel everything.\u{1b}[2J";
    let sent = bob.send(chat, forged).await?;
    let shown = alice.sync().await?;
    let m = shown
        .iter()
        .find(|m| m.id == sent.id)
        .ok_or_else(|| anyhow::anyhow!("alice did not get bob's message"))?;
    let printed = crate::output::message_lines("now", "field-ops", &m.sender_user, &m.text, &m.id);
    for line in printed.lines() {
        println!("  | {line}");
    }
    ensure!(
        !printed.contains('\u{1b}') && printed.lines().skip(1).all(|l| l.starts_with(' ')),
        "a forged line passed for a message"
    );
    Ok(())
}

/// Issue 10: the chat's creator is its admin; a member cannot manage it, every member sees a
/// rename.
async fn roles(alice: &mut Client, bob: &mut Client, chat: &str) -> Result<()> {
    heading("roles: alice created the chat, so she is its admin; bob is a member");
    match bob.remove_members(chat, &["alice".into()]).await {
        Ok(()) => bail!("a member removed the admin"),
        Err(e) => println!("  bob removes alice: refused ({e})"),
    }
    alice.rename_chat(chat, "field-ops (north)").await?;
    for m in bob.sync().await? {
        println!("  bob sees: {}", m.text);
    }
    ensure!(
        bob.chats()?
            .iter()
            .any(|c| c.title.as_deref() == Some("field-ops (north)")),
        "bob did not see the rename"
    );
    Ok(())
}

/// Issue 10: a file travels end to end encrypted; the server holds only ciphertext chunks.
async fn files(
    data: &Path,
    dir: &Path,
    alice: &mut Client,
    bob: &mut Client,
    chat: &str,
) -> Result<()> {
    heading("alice sends a file: a fresh key, sealed in 64 KiB chunks; the server sees ciphertext");
    let plan = dir.join("route-plan.txt");
    let secret = "Route plan: north gate, then the river road.";
    std::fs::write(&plan, secret)?;
    let mut quiet = |_: u64, _: u64| {};
    alice
        .send_files(
            chat,
            vellum_client::OutgoingMessage {
                text: "the route".into(),
                ..Default::default()
            },
            &[plan],
            &mut quiet,
        )
        .await?;
    let message = bob
        .sync()
        .await?
        .into_iter()
        .find(|m| !m.extra.attachments.is_empty())
        .context("bob received no file")?;
    let saved = bob.download(chat, &message.id, None, &mut quiet).await?;
    for file in &saved {
        println!(
            "  bob saved {} ({} bytes, sha256 {}…)",
            file.name,
            file.size,
            &file.sha256[..16]
        );
        ensure!(
            std::fs::read_to_string(&file.path)? == secret,
            "the file differs"
        );
    }
    ensure!(
        files_holding(data, secret)?.is_empty(),
        "the file's plaintext is on the server"
    );
    println!("  the server's files hold no byte of its plaintext");
    Ok(())
}

/// Issue 9: a second device joins only by its user's approval (a code compared between the
/// two devices), every member sees it join, and a device the server adds on its own is
/// refused.
async fn no_silent_readers(
    api: &Api,
    token: &str,
    url: &str,
    dir: &Path,
    alice: &mut Client,
    bob: &mut Client,
    chat: &str,
) -> Result<()> {
    heading("bob enrolls a laptop: it waits for approval by his phone and receives nothing");
    let code: EnrollmentCode = api
        .call(
            Method::POST,
            "/v1/admin/users/bob/devices",
            None::<&()>,
            None,
            Some(token),
        )
        .await?;
    let mut laptop = Client::enroll(&dir.join("bob-laptop"), url, "bob", &code.code).await?;
    let laptop_id = laptop.device_id().to_owned();
    println!("  laptop enrolled as device {laptop_id}: pending approval");
    ensure!(
        laptop.chats()?.is_empty(),
        "a pending device was given a chat"
    );

    heading("bob's phone starts the approval; the laptop shows a code; bob types it on the phone");
    bob.approve_device(&laptop_id, None).await?;
    let view = laptop.devices().await?;
    let shown = view
        .devices
        .iter()
        .find_map(|d| d.code.clone())
        .ok_or_else(|| anyhow::anyhow!("the laptop shows no code"))?;
    println!("  the laptop shows the code {shown}");
    let wrong = bob.approve_device(&laptop_id, Some("0000-0000-0000")).await;
    ensure!(wrong.is_err(), "a wrong code was accepted");
    println!("  bob mistypes it: nothing is approved, and the exchange starts over");
    // A wrong code cancels the exchange: the laptop commits to fresh keys, and it starts again.
    laptop.devices().await?;
    bob.approve_device(&laptop_id, None).await?;
    let shown = laptop
        .devices()
        .await?
        .devices
        .iter()
        .find_map(|d| d.code.clone())
        .ok_or_else(|| anyhow::anyhow!("the laptop shows no code"))?;
    match bob.approve_device(&laptop_id, Some(&shown)).await? {
        vellum_client::ApprovalStep::Approved { chats, .. } => {
            println!("  the right code: approved, signed into the key directory by bob's identity, added to {chats} chat(s)")
        }
        other => anyhow::bail!("approval did not complete: {other:?}"),
    }
    laptop.devices().await?;
    laptop.sync().await?;
    alice.sync().await?;
    let joined = alice
        .history(chat)?
        .into_iter()
        .rfind(|m| matches!(m.event, Some(vellum_client::ChatEvent::DeviceAdded { .. })))
        .map(|m| m.text)
        .ok_or_else(|| anyhow::anyhow!("alice was not told of bob's new device"))?;
    println!("  alice's history says: * {joined}");
    alice.send(chat, "Welcome aboard, laptop.").await?;
    laptop.sync().await?;
    ensure!(
        laptop
            .history(chat)?
            .iter()
            .any(|m| m.text == "Welcome aboard, laptop."),
        "the approved laptop did not receive the chat"
    );
    println!("  the laptop reads the chat from here on");
    println!(
        "  safety number of alice and bob (unchanged by bob's new device):\n    {}",
        alice.safety("bob")?.number
    );
    Ok(())
}

/// Every file under `dir` that holds `text`.
/// What keeps it all readable across upgrades: versioned schemas and records, and an API
/// that describes itself.
async fn foundations(url: &str) -> Result<()> {
    heading("formats that outlive versions, and an API that describes itself");
    println!(
        "  server.db is at schema version {} (numbered migrations; a newer file is refused)",
        vellum_store::SqliteStore::schema_version()
    );
    println!(
        "  archived records are format version {} (a message kind this version does not know is archived verbatim)",
        vellum_archiver::record::FORMAT_VERSION
    );
    let http = reqwest::Client::new();
    let document: serde_json::Value = http
        .get(format!("{url}/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let operations: usize = document["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .filter_map(|p| p.as_object())
                .map(|p| p.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "  GET /openapi.json: OpenAPI {}, {operations} operations, generated from the router's own code",
        document["openapi"].as_str().unwrap_or("?")
    );
    let answer = http.get(format!("{url}/v1/no-such-route")).send().await?;
    println!(
        "  every error is JSON: GET /v1/no-such-route -> {} {}",
        answer.status().as_u16(),
        answer.text().await?
    );
    Ok(())
}

/// Issue 13: with a PostgreSQL named by `VELLUM_DATABASE_URL` (and NATS by
/// `VELLUM_NATS_URL`), two nodes of one deployment in a schema of their own, dropped after;
/// without, the commands that run them.
async fn scale_out(dir: &Path) -> Result<()> {
    heading("several nodes: one PostgreSQL as the source of truth, NATS only to wake devices");
    let Ok(database) = std::env::var("VELLUM_DATABASE_URL") else {
        println!("  on each node: vellum server --data KEYS --database-url postgres://… --nats-url nats://…");
        println!("  (run the demo with VELLUM_DATABASE_URL=postgres://… [VELLUM_NATS_URL=nats://…] to see two nodes here)");
        return Ok(());
    };
    let nats = std::env::var("VELLUM_NATS_URL").ok();
    let schema = vellum_store_pg::PgStore::scratch_schema(&database, "vellum_demo")
        .await
        .context("VELLUM_DATABASE_URL")?;
    let outcome = two_nodes(dir, &schema.url, nats).await;
    schema.drop_all().await?;
    outcome
}

async fn two_nodes(dir: &Path, database: &str, nats: Option<String>) -> Result<()> {
    let keys = dir.join("node-keys");
    let mut urls = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = vellum_server::ServerConfig::new(listener.local_addr()?, keys.clone());
        config.database_url = Some(database.to_owned());
        config.nats_url = nats.clone();
        let state = vellum_server::AppState::open_configured(config).await?;
        urls.push(format!("http://{}", listener.local_addr()?));
        tokio::spawn(vellum_server::run(listener, state));
    }
    println!(
        "  node 1 on {}, node 2 on {}: one database schema, one copy of the keys, {}",
        urls[0],
        urls[1],
        if nats.is_some() {
            "NATS between them"
        } else {
            "no NATS (they poll)"
        }
    );
    let token = std::fs::read_to_string(keys.join("admin-token"))?;
    let api = Api::new(&urls[0])?;
    let mut dave = enroll(&api, token.trim(), &urls[0], dir, "dave").await?;
    let mut erin = enroll(&api, token.trim(), &urls[1], dir, "erin").await?;
    let chat = dave
        .create_chat("two-nodes", &["erin".into()], Default::default(), None)
        .await?;
    dave.send(&chat, "Sent through node 1.").await?;
    erin.sync().await?;
    show("erin", &erin, &chat)?;
    println!("  dave wrote through node 1; erin read through node 2, from the same committed log");
    Ok(())
}

fn files_holding(dir: &Path, text: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)?
                .windows(text.len())
                .any(|w| w == text.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    Ok(found)
}

/// The records office: a sealed archive no single person can read, kept by an MLS member
/// that the custodians bound to the records key.
/// Issue 11: the records office answers a FOIA request: a keyholder's account, a hold with
/// its reason, a case, review, a redaction by exemption, and a production a court checks
/// with records.pub alone.
async fn foia(
    records_api: &Api,
    officer: Option<&str>,
    dir: &Path,
    keys: &Path,
    leaf: u64,
) -> Result<()> {
    use vellum_record::api::foia::{
        Case, Exemption, JobState, Mark, ProductionJob, RedactRequest, RedactionTarget,
        ReviewRequest,
    };
    heading("the records office: named accounts, each with one role");
    let kim: vellum_record::api::office::CreatedAccount = records_api
        .call(
            Method::POST,
            "/v1/accounts",
            Some(&serde_json::json!({ "name": "kim", "role": "keyholder" })),
            None,
            officer,
        )
        .await?;
    println!(
        "  kim ({}) gets a one-time setup link ({}/console/setup?code=…): a password and an \
         authenticator code",
        kim.role,
        records_api.base().trim_end_matches('/')
    );
    println!("  a keyholder hands in one share per unseal and never sees content");
    let hold: vellum_archiver::api_types::Hold = records_api
        .call(
            Method::POST,
            "/v1/holds",
            Some(&serde_json::json!({
                "name": "crew-request",
                "custodians": ["alice"],
                "reason": "FOIA request from CREW: permits, November",
            })),
            None,
            officer,
        )
        .await?;
    println!(
        "  hold {:?} on alice's records, by {}: {} (keeps {} records)",
        hold.name,
        hold.author.as_deref().unwrap_or("?"),
        hold.reason.as_deref().unwrap_or(""),
        hold.records.unwrap_or_default()
    );

    heading("a FOIA request: a case, review, a redaction by exemption, a production");
    let case: Case = records_api
        .call(
            Method::POST,
            "/v1/foia/cases",
            Some(&serde_json::json!({
                "requester": "CREW",
                "description": "messages about permits",
            })),
            None,
            officer,
        )
        .await?;
    println!(
        "  case {} opened, due {} (20 working days)",
        case.id, case.due
    );
    let path = format!("/v1/foia/cases/{}", case.id);
    let _: serde_json::Value = records_api
        .call(
            Method::POST,
            &format!("{path}/items"),
            Some(&serde_json::json!({ "q": "permit" })),
            None,
            officer,
        )
        .await?;
    let _: serde_json::Value = records_api
        .call(
            Method::PUT,
            &format!("{path}/items/{leaf}/review"),
            Some(&ReviewRequest {
                mark: Mark::Responsive,
            }),
            None,
            officer,
        )
        .await?;
    // "Permit 88 is approved.": the permit's number is withheld under (b)(4).
    let _: serde_json::Value = records_api
        .call(
            Method::POST,
            &format!("{path}/items/{leaf}/redactions"),
            Some(&RedactRequest {
                exemption: Exemption::B4,
                target: RedactionTarget::Span { start: 7, end: 9 },
            }),
            None,
            officer,
        )
        .await?;
    println!("  leaf {leaf} marked responsive; \"88\" redacted under (b)(4)");
    let mut job: ProductionJob = records_api
        .call(
            Method::POST,
            &format!("{path}/productions"),
            Some(&serde_json::json!({ "bates_prefix": "CREW" })),
            None,
            officer,
        )
        .await?;
    let job_path = format!("{path}/productions/{}", job.job);
    while job.state == JobState::Running {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        job = records_api
            .call(Method::GET, &job_path, None::<&()>, None, officer)
            .await?;
    }
    ensure!(
        job.state == JobState::Done,
        "the production failed: {:?}",
        job.error
    );
    let mut request =
        reqwest::Client::new().get(format!("{}{job_path}/download", records_api.base()));
    if let Some(token) = officer {
        request = request.bearer_auth(token.trim());
    }
    let zip = request.send().await?.error_for_status()?.bytes().await?;
    let out = dir.join("production");
    zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec()))?.extract(&out)?;
    let mut files: Vec<String> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    println!("  production: {}", files.join(", "));
    let leaked = files_holding(&out, "Permit 88")?;
    ensure!(leaked.is_empty(), "the redacted text is in {leaked:?}");
    println!("  no file of the production holds the redacted \"Permit 88\"");

    heading("a court checks the production with records.pub alone");
    let public =
        vellum_record::RecordsPublic::parse(&std::fs::read_to_string(keys.join("records.pub"))?)?;
    let verified = vellum_production::verify_production(
        &out,
        &vellum_production::Trust::RecordsPublic(public),
    )?;
    ensure!(
        verified.failures.is_empty(),
        "the production does not verify: {:?}",
        verified.failures
    );
    println!(
        "  {} files hashed, {} record(s) proven in the log of {} leaves, {} field(s) opened; \
         the redacted text's commitment stays closed",
        verified.files, verified.records_released, verified.checkpoint_size, verified.openings
    );
    Ok(())
}

async fn records(
    api: &Api,
    token: &str,
    url: &str,
    dir: &Path,
    alice: &mut Client,
    bob: &mut Client,
    transitory: &str,
) -> Result<()> {
    heading("the records office splits a new records key among 3 custodians (any 2 unseal)");
    let keys = dir.join("keys");
    let code =
        crate::records::init(api, Some(token), 3, 2, &keys, "records.demo.example/vellum").await?;
    let config = vellum_archiver::ArchiverConfig {
        server: url.to_owned(),
        data: dir.join("archiver"),
        records_key: keys.join("records.pub"),
        origin: None,
        code: Some(code),
        // Any free port: `start` says which it bound.
        listen: ([127, 0, 0, 1], 0).into(),
        idle_seal: std::time::Duration::from_secs(900),
        checkpoint_interval: vellum_archiver::DEFAULT_CHECKPOINT_INTERVAL,
        witnesses: Vec::new(),
        witness_quorum: 0,
        tls: None,
    };
    let archive_dir = config.data.clone();
    let (listen, ingest) = vellum_archiver::start(config).await?;
    tokio::spawn(async move {
        if let Err(e) = ingest.await {
            eprintln!("archiver: {e}");
        }
    });
    set_policy(
        api,
        token,
        vellum_wire::OrgPolicyUpdate {
            default_record: Some(true),
            ..Default::default()
        },
    )
    .await?;
    let records_api = Api::new(&format!("http://{listen}"))?;
    // The archiver writes the records officer's credential on its first start.
    let officer = loop {
        match std::fs::read_to_string(archive_dir.join("records-token")) {
            Ok(t) if !t.trim().is_empty() => break t,
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let officer = Some(officer.trim().to_owned());
    println!(
        "  the archiver made its identity and log keys on its own host; nobody else holds them"
    );

    heading("before the custodians bind the archiver, no record chat can be created");
    let refused = alice
        .create_chat("too-early", &["bob".into()], Default::default(), None)
        .await;
    ensure!(
        refused.is_err(),
        "a record chat was created before the binding"
    );
    println!(
        "  alice: {}",
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    );

    heading("two custodians unseal: their assembled shares bind the archiver to the records key");
    let unseal = |share: &'static str| {
        let records_api = &records_api;
        let officer = officer.clone();
        let keys = keys.clone();
        async move {
            let body = serde_json::json!({ "share": std::fs::read_to_string(keys.join(share))? });
            let status: vellum_archiver::api_types::Status = records_api
                .call(
                    Method::POST,
                    "/v1/unseal",
                    Some(&body),
                    None,
                    officer.as_deref(),
                )
                .await?;
            anyhow::Ok(status)
        }
    };
    unseal("share-1").await?;
    let status = unseal("share-2").await?;
    println!(
        "  unsealed; binding {} signed with the key only the assembled seed yields: this archiver's device, identity key, log key and origin",
        status.binding_serial.unwrap_or_default()
    );
    seal(&records_api, officer.as_deref()).await?;
    println!("  sealed again at once: the binding stays");
    // The archiver hands the binding to the server; devices take it from there.
    while alice.org_policy().await?.records_binding.is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    heading("alice opens a record chat: only the bound archiver is added, from the first commit");
    let chat = alice
        .create_chat("case-1234", &["bob".into()], Default::default(), None)
        .await?;
    bob.sync().await?;
    // One line per user: bob's phone and laptop are both members.
    let mut members: Vec<(String, Option<String>, usize)> = Vec::new();
    for (member, role) in alice.described_members(&chat)? {
        match members.iter_mut().find(|(user, ..)| *user == member.user) {
            Some((.., devices)) => *devices += 1,
            None => members.push((member.user, role, 1)),
        }
    }
    for (user, role, devices) in members {
        println!(
            "  member {user}{}{}",
            role.map(|r| format!(": {r}")).unwrap_or_default(),
            if devices > 1 {
                format!(" ({devices} devices)")
            } else {
                String::new()
            }
        );
    }
    let permit = alice.send(&chat, "Permit 88 is approved.").await?;
    bob.sync().await?;
    bob.send(&chat, "Noted, filing it today.").await?;
    show("bob", bob, &chat)?;
    let status = loop {
        let status: vellum_archiver::api_types::Status = records_api
            .call(
                Method::GET,
                "/v1/status",
                None::<&()>,
                None,
                officer.as_deref(),
            )
            .await?;
        if status.records >= 4 {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    println!(
        "  the archive holds {} sealed records in a log of {} leaves",
        status.records, status.log_size
    );
    let leaked = [
        files_holding(&archive_dir, "Permit 88")?,
        files_holding(&dir.join("server"), "Permit 88")?,
    ]
    .concat();
    ensure!(leaked.is_empty(), "plaintext in {leaked:?}");
    println!("  no archive or server file holds the text");
    let permit_search = vellum_archiver::api_types::SearchRequest {
        q: "permit".into(),
        ..Default::default()
    };
    let sealed = records_api
        .call::<vellum_archiver::api_types::SearchResults>(
            Method::POST,
            "/v1/search",
            Some(&permit_search),
            None,
            officer.as_deref(),
        )
        .await;
    println!(
        "  search while sealed: {}",
        sealed
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "answered?!".into())
    );

    heading("two custodians unseal again; the records office searches");
    unseal("share-1").await?;
    let status = unseal("share-3").await?;
    println!(
        "  (still binding {}: nothing about the archiver changed, so nothing new to sign)",
        status.binding_serial.unwrap_or_default()
    );
    let hits = records_api
        .call::<vellum_archiver::api_types::SearchResults>(
            Method::POST,
            "/v1/search",
            Some(&permit_search),
            None,
            officer.as_deref(),
        )
        .await?
        .hits;
    for hit in &hits {
        let e = &hit.record;
        // The record names every device; people read users.
        let mut to: Vec<&str> = e.recipients.iter().map(|r| r.user.as_str()).collect();
        to.sort_unstable();
        to.dedup();
        println!(
            "  leaf {}: <{}> to {} in {:?}: {}",
            hit.leaf,
            e.sender_user,
            to.join(", "),
            e.chat_title.as_deref().unwrap_or("?"),
            e.text.as_deref().unwrap_or("")
        );
    }
    ensure!(hits.len() == 1, "the record was not found");
    foia(&records_api, officer.as_deref(), dir, &keys, hits[0].leaf).await?;
    seal(&records_api, officer.as_deref()).await?;

    heading("the org now keeps every chat as records: the old transitory chat converts");
    set_policy(
        api,
        token,
        vellum_wire::OrgPolicyUpdate {
            allow_transitory: Some(false),
            ..Default::default()
        },
    )
    .await?;
    let status: vellum_wire::AdminStatus = api
        .call(
            Method::GET,
            "/v1/admin/status",
            None::<&()>,
            None,
            Some(token),
        )
        .await?;
    println!(
        "  admin status: {} chat(s) not compliant yet",
        status.noncompliant_chat_count
    );
    // The server refuses bob's message (record_required); his device converts the chat
    // (the archiver joins) and sends it again.
    bob.sync().await?;
    bob.send(transitory, "Kept from now on.").await?;
    alice.sync().await?;
    for m in alice.history(transitory)? {
        if m.kind == MessageKind::Event && m.text.contains("now kept as a record") {
            println!("  alice sees: * {}", m.text);
        }
    }
    ensure!(
        alice.chat_class(transitory)? == vellum_client::ChatClass::Record,
        "the chat did not convert"
    );

    heading("an auditor checks a copy of the archive offline, trusting only records.pub");
    let public =
        vellum_records::RecordsPublic::parse(&std::fs::read_to_string(keys.join("records.pub"))?)?;
    let audit = loop {
        // Waits for the checkpoint over the last accesses (one a second).
        let audit = vellum_archive::audit(&archive_dir.join("archive"), &public, &[], &[]);
        if audit.verdict() == vellum_archive::Verdict::Intact && audit.report.unattested == 0 {
            break audit;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    println!("  $ vellum archive verify --data archiver --records-key keys/records.pub");
    println!(
        "  intact: {} leaves ({} records), {} checkpoints signed by the log key the custodians bound (binding {})",
        audit.report.leaves,
        audit.report.records,
        audit.report.checkpoints,
        audit.bindings.last().map_or(0, |b| b.serial)
    );
    let copy = dir.join("audit-copy");
    copy_tree(&archive_dir.join("archive"), &copy)?;
    std::fs::remove_dir_all(copy.join("checkpoints"))?;
    std::fs::create_dir_all(copy.join("checkpoints"))?;
    let stripped = vellum_archive::audit(&copy, &public, &[], &[]);
    println!(
        "  a copy whose checkpoints were deleted: {}",
        stripped.verdict().as_str()
    );
    ensure!(
        stripped.verdict() == vellum_archive::Verdict::Unattested,
        "deleted checkpoints went unnoticed"
    );

    heading("alice exports her receipt; anyone holding records.pub checks what she sent");
    // Receipts go out once the custodians' binding and a checkpoint are published.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !alice
        .history(&chat)?
        .iter()
        .any(|m| m.id == permit.id && m.archived_leaf.is_some())
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "no verified receipt came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        alice.sync().await?;
    }
    let proof = alice.receipt_proof(&chat, &permit.id)?;
    let public =
        vellum_records::RecordsPublic::parse(&std::fs::read_to_string(keys.join("records.pub"))?)?;
    let proven = proof.verify(&public)?;
    println!(
        "  `vellum receipts {chat:.8}… {}` > proof.json; `vellum archive verify-receipt proof.json --records-key records.pub`:",
        permit.id
    );
    println!(
        "  leaf {} of the log {}, bound by the custodians, in a checkpoint of {} leaves",
        proven.receipt.leaf_index, proven.binding.origin, proven.checkpoint.checkpoint.size
    );
    for (field, value) in &proven.fields {
        println!(
            "    {field}: {}",
            crate::output::disclosed_field(field, value)
        );
    }
    let mut forged = proof.clone();
    if let Some(text) = forged.disclosures.iter_mut().find(|d| d.field == "text") {
        text.value = "Permit 88 is denied.".into();
    }
    println!(
        "  the same proof with the text changed: {}",
        forged
            .verify(&public)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "accepted?!".into())
    );
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Issue 12: the messenger window. Bob's device process serves it on loopback; the demo is
/// its browser: the single-use launch link, the chat list, a message arriving live, and
/// what a page without the link, or another site, gets.
async fn window(bob_home: &Path, alice: &mut Client, chat: &str) -> Result<()> {
    heading(
        "bob opens the messenger window (`vellum app`): his device process serves it on loopback",
    );
    let running = vellum_app::start(&vellum_app::AppConfig {
        home: bob_home.to_owned(),
        listen: None,
        open: false,
    })
    .await?;
    let base = running
        .url
        .split("/open")
        .next()
        .unwrap_or_default()
        .to_owned();
    println!("  window at {base} (the launch link carries a secret that works once)");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let opened = http.get(&running.url).send().await?;
    let cookie = opened
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        opened.status() == reqwest::StatusCode::SEE_OTHER && !cookie.is_empty(),
        "the launch link did not open the window"
    );
    println!("  the link gives the browser an HttpOnly, SameSite=Strict session cookie");
    let again = http.get(&running.url).send().await?.status();
    println!("  the same link again: {again}");
    ensure!(
        again == reqwest::StatusCode::FORBIDDEN,
        "the launch link worked twice"
    );
    let nobody = http.get(format!("{base}/api/chats")).send().await?.status();
    println!("  a page without the session: {nobody}");
    ensure!(
        nobody == reqwest::StatusCode::UNAUTHORIZED,
        "the window answered a stranger"
    );

    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
    };
    let session: serde_json::Value = get("/api/session").await?.json().await?;
    let csrf = session["csrf"].as_str().unwrap_or_default().to_owned();
    let chats: serde_json::Value = get("/api/chats").await?.json().await?;
    println!("  bob's chat list in the window:");
    for c in chats["chats"].as_array().into_iter().flatten() {
        println!(
            "    {} ({}, {} unread, {} members)",
            c["title"].as_str().unwrap_or_default(),
            c["class"].as_str().unwrap_or_default(),
            c["unread"],
            c["members"]
        );
    }

    // The page's live stream: alice's next message arrives as an event.
    let mut events = get("/api/events").await?;
    let live = "The window shows this as it arrives.";
    alice.send(chat, live).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut stream = String::new();
    while !stream.contains(live) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ensure!(!left.is_zero(), "the window never received alice's message");
        if let Ok(Some(chunk)) = tokio::time::timeout(left, events.chunk()).await? {
            stream.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    println!("  the page's event stream delivered alice's message: {live:?}");

    let forged = http
        .post(format!("{base}/api/chats/{chat}/messages"))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-vellum-csrf", &csrf)
        .header(reqwest::header::ORIGIN, "http://evil.example")
        .json(&serde_json::json!({ "text": "sent by another site" }))
        .send()
        .await?
        .status();
    println!("  the same request from another site: {forged}");
    ensure!(
        forged == reqwest::StatusCode::FORBIDDEN,
        "another site sent a message"
    );
    println!(
        "  headers on every answer: a strict Content-Security-Policy, Cache-Control: no-store; \
         the browser stores no message"
    );
    println!(
        "  (run `vellum --home {} app` to open it in a Chromium window of its own)",
        bob_home.display()
    );
    running.stop();
    Ok(())
}
