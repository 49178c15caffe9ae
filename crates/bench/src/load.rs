//! Load scenarios against a `vellum server` child process (vellum-load), so that the
//! server's own CPU and memory can be read from `/proc` apart from the clients driving it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use vellum_load::{ms, IdleOptions, LoadOptions, Org, ServerOptions, ServerProcess};

/// The `vellum` binary: `VELLUM_BIN`, or the one built next to this benchmark.
pub(crate) fn vellum_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("VELLUM_BIN") {
        return Ok(path.into());
    }
    let here = std::env::current_exe()?;
    let sibling = here.with_file_name("vellum");
    ensure!(
        sibling.exists(),
        "{} not found: run `cargo build --release -p vellum` first, or set VELLUM_BIN",
        sibling.display()
    );
    Ok(sibling)
}

fn server_options() -> Result<ServerOptions> {
    Ok(ServerOptions {
        binary: vellum_binary()?,
        database_url: None,
        nats_url: None,
    })
}

/// A `vellum server` process on SQLite under `root`/server, and its org (profiles under
/// `root`).
pub(crate) fn start_server(root: &Path) -> Result<(ServerProcess, Org)> {
    let server = ServerProcess::start(&server_options()?, &root.join("server"))?;
    let org = Org::connect(&server.url, &server.admin_token()?, root)?;
    Ok((server, org))
}

/// `chats` chats of `members` full clients each; one sender per chat sends at a fixed total
/// rate for `duration`; every other member runs the client's own watch loop (WebSocket wake,
/// sync, decrypt, store, ack). Prints one table row, or one row per `report_every` window.
pub async fn many_senders(
    chats: usize,
    members: usize,
    total_rate: f64,
    duration: Duration,
    report_every: Option<Duration>,
) -> Result<()> {
    let summary = vellum_load::load(&LoadOptions {
        devices: chats * members,
        chats,
        members,
        rate: total_rate,
        duration,
        decrypt: true,
        servers: Vec::new(),
        admin_token: None,
        nodes: 1,
        server: server_options()?,
        baselines: false,
        windows: report_every,
    })
    .await?;
    if report_every.is_some() {
        for w in &summary.windows {
            println!(
                "| {:.0} s | {:.0} | {:.0} | {:.2} | {:.2} |",
                w.end_s, w.sent_per_s, w.deliveries_per_s, w.p50_ms, w.p99_ms
            );
        }
        return Ok(());
    }
    println!(
        "| {total_rate:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.1} | {}/{} |",
        summary.sent_per_s,
        summary.deliveries_per_s,
        summary.send_to_deliver.p50_ms,
        summary.send_to_deliver.p99_ms,
        summary.server_cpu_us_per_delivery,
        summary.deliveries,
        summary.expected_deliveries,
    );
    Ok(())
}

/// Server memory per idle, authenticated WebSocket at each count.
pub async fn idle_websockets(counts: &[usize]) -> Result<()> {
    for &connections in counts {
        let summary = vellum_load::idle_connections(&IdleOptions {
            connections,
            sources: 4,
            server: server_options()?,
        })
        .await?;
        println!(
            "| {} | {:.1} | {:.1} |",
            summary.opened,
            summary.server_rss_kib as f64 / 1024.0,
            summary.kib_per_connection
        );
    }
    Ok(())
}

/// Adding one member to a chat of `members`: Vellum end to end next to the same MLS work
/// done by raw mls-rs in memory (commit without update path, committer applies, the server's
/// public view processes it, one member processes it).
pub async fn add_member_against_raw(members: usize) -> Result<()> {
    let raw = raw_add_member(members)?;
    let root = tempfile::tempdir()?;
    let (_server, org) = start_server(root.path())?;
    let mut alice = org.client("alice").await?;
    let mut bob = org.client("bob").await?;
    let mut names = vec!["bob".to_string()];
    for i in 2..members {
        let name = format!("m{i}");
        org.light_device(&name).await?;
        names.push(name);
    }
    let chat = alice
        .create_chat("big", &names, Default::default(), None)
        .await?;
    bob.sync().await?;
    let mut vellum_total = Vec::new();
    for round in 0..3 {
        let name = format!("newcomer{round}");
        org.light_device(&name).await?;
        let start = Instant::now();
        alice.add_members(&chat, &[name]).await?;
        bob.sync().await?;
        vellum_total.push(start.elapsed());
    }
    vellum_total.sort();
    let vellum = vellum_total[1];
    println!(
        "| {members} | {} | {} | {:.1}x |",
        ms(raw),
        ms(vellum),
        vellum.as_secs_f64() / raw.as_secs_f64()
    );
    Ok(())
}

/// The raw mls-rs cost of one add (median of three), with the same ciphersuite and config.
fn raw_add_member(members: usize) -> Result<Duration> {
    use vellum_mls::mls_rs::ExtensionList;
    use vellum_mls::{GroupTracker, InMemoryDevice, OrgIdentityProvider, OrgSigner};
    let org = OrgSigner::generate();
    let device = |user: &str| vellum_mls::in_memory_device(&org, user, user);
    let key_package = |d: &InMemoryDevice| {
        d.generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
    };
    let alice = device("alice");
    let bob = device("bob");
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let mut group = alice.create_group(ExtensionList::new(), Default::default(), None)?;
    let info = group.group_info_message(true)?.to_bytes()?;
    let mut tracked = tracker.observe(&info, "alice")?;
    let mut builder = group.commit_builder().add_member(key_package(&bob)?)?;
    for i in 2..members {
        builder = builder.add_member(key_package(&device(&format!("m{i}")))?)?;
    }
    let commit = builder.build()?;
    tracked.apply_commit(commit.commit_message.clone(), "alice")?;
    group.apply_pending_commit()?;
    let (mut bob_group, _) = bob.join_group(None, &commit.welcome_messages[0], None)?;
    let mut times = Vec::new();
    for round in 0..3 {
        let newcomer = key_package(&device(&format!("new{round}")))?;
        let start = Instant::now();
        let commit = group.commit_builder().add_member(newcomer)?.build()?;
        group.apply_pending_commit()?;
        tracked.apply_commit(commit.commit_message.clone(), "alice")?;
        bob_group.process_incoming_message(commit.commit_message)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[1])
}
