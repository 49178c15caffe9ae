//! Load scenarios against a `vellum server` child process, so that the server's own CPU and
//! memory can be read from `/proc` apart from the clients driving it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::sync::mpsc;

use crate::{ms, percentile, Org};

/// A `vellum server` process on a loopback port it chose itself (`--listen 127.0.0.1:0`).
pub struct ServerProcess {
    child: Child,
    pub url: String,
    pub data: PathBuf,
}

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

impl ServerProcess {
    pub fn start(root: &Path) -> Result<Self> {
        let data = root.join("server");
        let mut child = Command::new(vellum_binary()?)
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting vellum server")?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut first)?;
        let Some(url) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
            bail!("the server's first line names no address: {first:?}");
        };
        Ok(Self {
            url: url.to_owned(),
            child,
            data,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the server has used so far.
    pub fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // USER_HZ is 100 on every Linux ABI.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("malformed VmRSS")?
            .parse()?)
    }

    pub async fn org(&self, root: &Path) -> Result<Org> {
        let token = std::fs::read_to_string(self.data.join("admin-token"))?;
        Org::connect(&self.url, token.trim(), root).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let root = tempfile::tempdir()?;
    let server = ServerProcess::start(root.path())?;
    let org = server.org(root.path()).await?;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for c in 0..chats {
        let mut sender = org.client(&format!("c{c}s")).await?;
        let mut names = Vec::new();
        for m in 1..members {
            let name = format!("c{c}m{m}");
            receivers.push(org.client(&name).await?);
            names.push(name);
        }
        let chat = sender
            .create_chat(&format!("load {c}"), &names, Default::default(), None)
            .await?;
        senders.push((sender, chat));
    }

    // Every receiver reports (sent micros, received micros) per message, stamped on one clock.
    let base = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, u64)>();
    let mut watchers = Vec::new();
    for mut client in receivers {
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            loop {
                let mut report = |batch: &[vellum_client::MessageRow]| {
                    let now = base.elapsed().as_micros() as u64;
                    for m in batch {
                        if let Some(sent) = m.text.strip_prefix("load ") {
                            if let Ok(sent) = sent.parse::<u64>() {
                                let _ = tx.send((sent, now));
                            }
                        }
                    }
                };
                // A dropped connection (server busy) is retried, as `vellum watch` does.
                let _ = client.watch_once(&mut report).await;
            }
        }));
    }
    drop(tx);
    // Let every receiver connect and drain the chat-creation events first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}

    let per_chat = Duration::from_secs_f64(chats as f64 / total_rate);
    let started = base.elapsed();
    let stop_at = Instant::now() + duration;
    let cpu_before = server.cpu()?;
    let sent_total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sending = Vec::new();
    for (i, (mut sender, chat)) in senders.into_iter().enumerate() {
        let sent_total = sent_total.clone();
        sending.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + per_chat.mul_f64(i as f64 / chats as f64),
                per_chat,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < stop_at {
                tick.tick().await;
                let text = format!("load {}", base.elapsed().as_micros());
                sender.send(&chat, &text).await?;
                sent_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }

    let mut latencies = Vec::new();
    let mut window = Vec::new();
    let mut window_start = Instant::now();
    let mut window_sent = 0;
    let drain_until = stop_at + Duration::from_secs(10);
    while Instant::now() < drain_until {
        let wait = drain_until.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(wait.min(Duration::from_millis(200)), rx.recv()).await;
        if let Ok(Some((sent, received))) = got {
            let latency = Duration::from_micros(received.saturating_sub(sent));
            latencies.push(latency);
            window.push(latency);
        }
        if let Some(every) = report_every {
            if window_start.elapsed() >= every && Instant::now() < stop_at {
                let sent_now = sent_total.load(std::sync::atomic::Ordering::Relaxed);
                let secs = window_start.elapsed().as_secs_f64();
                window.sort();
                println!(
                    "| {:.0} s | {:.0} | {:.0} | {} | {} |",
                    (Instant::now() + duration - stop_at).as_secs_f64(),
                    (sent_now - window_sent) as f64 / secs,
                    window.len() as f64 / secs,
                    ms(percentile_or_zero(&window, 0.5)),
                    ms(percentile_or_zero(&window, 0.99)),
                );
                window.clear();
                window_sent = sent_now;
                window_start = Instant::now();
            }
        }
        let expected = sent_total.load(std::sync::atomic::Ordering::Relaxed) * (members as u64 - 1);
        if Instant::now() >= stop_at && latencies.len() as u64 >= expected {
            break;
        }
    }
    for s in sending {
        s.await??;
    }
    let cpu = server.cpu()? - cpu_before;
    for w in watchers {
        w.abort();
    }
    let elapsed = (base.elapsed() - started).as_secs_f64();
    let sent = sent_total.load(std::sync::atomic::Ordering::Relaxed);
    let delivered = latencies.len();
    latencies.sort();
    if report_every.is_none() {
        println!(
            "| {total_rate:.0} | {:.0} | {:.0} | {} | {} | {:.1} | {}/{} |",
            sent as f64 / duration.as_secs_f64(),
            delivered as f64 / elapsed,
            ms(percentile_or_zero(&latencies, 0.5)),
            ms(percentile_or_zero(&latencies, 0.99)),
            cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64,
            delivered,
            sent * (members as u64 - 1),
        );
    }
    Ok(())
}

fn percentile_or_zero(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        Duration::ZERO
    } else {
        percentile(sorted, p)
    }
}

/// Server memory per idle, authenticated WebSocket at each count.
pub async fn idle_websockets(counts: &[usize]) -> Result<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let root = tempfile::tempdir()?;
    let server = ServerProcess::start(root.path())?;
    let org = server.org(root.path()).await?;
    // Connections are spread over devices so no device meets its request rate limit.
    let mut devices = Vec::new();
    for d in 0..50 {
        devices.push(org.light_device(&format!("idle{d}")).await?);
    }
    let ws_url = format!("{}/v1/ws", server.url.replacen("http", "ws", 1));
    let mut sockets = Vec::new();
    // A few connections first, so the baseline includes the runtime's steady state.
    let baseline = server.rss_kib()?;
    let mut opened = 0;
    for &count in counts {
        while opened < count {
            let (device_id, key) = &devices[opened % devices.len()];
            let signer = vellum_client::Signer { device_id, key };
            let mut request = ws_url.as_str().into_client_request()?;
            for (name, value) in signer.headers("GET", "/v1/ws", b"") {
                request.headers_mut().insert(name, value.parse()?);
            }
            let (socket, _) = tokio_tungstenite::connect_async(request).await?;
            sockets.push(socket);
            opened += 1;
        }
        // Let the server finish every upgrade before reading its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server.rss_kib()?;
        println!(
            "| {count} | {:.1} | {:.1} |",
            rss as f64 / 1024.0,
            (rss.saturating_sub(baseline)) as f64 / count as f64
        );
    }
    drop(sockets);
    Ok(())
}

/// Adding one member to a chat of `members`: Vellum end to end next to the same MLS work
/// done by raw mls-rs in memory (commit without update path, committer applies, the server's
/// public view processes it, one member processes it).
pub async fn add_member_against_raw(members: usize) -> Result<()> {
    let raw = raw_add_member(members)?;
    let root = tempfile::tempdir()?;
    let server = ServerProcess::start(root.path())?;
    let org = server.org(root.path()).await?;
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
    use vellum_mls::mls_rs::storage_provider::in_memory::{
        InMemoryGroupStateStorage, InMemoryKeyPackageStorage,
    };
    use vellum_mls::mls_rs::ExtensionList;
    use vellum_mls::{device_client, DeviceKey, GroupTracker, OrgIdentityProvider, OrgSigner};
    let org = OrgSigner::generate();
    let device = |user: &str| {
        let key = DeviceKey::generate();
        let cert = org.issue(user, user, &key.public_key());
        device_client(
            &cert,
            &key,
            OrgIdentityProvider::new(org.public_key()),
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        )
    };
    let key_package = |d: &vellum_mls::DeviceClient<_, _>| {
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
