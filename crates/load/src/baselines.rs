//! What the same work costs without Vellum, measured in the same run with the same shape:
//! NATS core fan-out (a private nats-server, so its CPU is its own), one durable insert per
//! commit in SQLite and PostgreSQL, and raw mls-rs encryption and decryption.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::org::mls_error;
use crate::server::process_cpu;
use crate::stats::percentile;
use crate::{Error, Result};

/// Store inserts are a rate: a few seconds measure it.
const INSERT_TIME: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct BaselineOptions {
    pub chats: usize,
    pub members: usize,
    pub devices: usize,
    pub rate: f64,
    pub duration: Duration,
    pub payload_bytes: usize,
    pub database_url: Option<String>,
    /// The Vellum run's server CPU per delivery, for the ratio.
    pub vellum_cpu_us_per_delivery: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub nats: NatsFigures,
    pub sqlite_insert: InsertFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_insert: Option<InsertFigures>,
    pub mls: MlsFigures,
    /// Vellum's server CPU per delivery over nats-server's (target: at most 5).
    pub server_cpu_per_delivery_vs_nats: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NatsFigures {
    pub published: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub cpu_us_per_delivery: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InsertFigures {
    /// How each row is committed.
    pub settings: &'static str,
    pub rows_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MlsFigures {
    pub plaintext_bytes: usize,
    pub ciphertext_bytes: usize,
    pub encrypt_us: f64,
    pub decrypt_us: f64,
}

fn failed(what: &'static str) -> impl Fn(String) -> Error {
    move |detail| Error::Baseline { what, detail }
}

pub async fn measure(options: &BaselineOptions) -> Result<Baselines> {
    eprintln!("baseline: raw mls-rs");
    let payload = options.payload_bytes.max(16);
    let mls = tokio::task::spawn_blocking(move || raw_mls(payload))
        .await
        .map_err(|e| failed("mls")(e.to_string()))??;
    eprintln!("baseline: SQLite inserts");
    let rows_per_s = tokio::task::spawn_blocking(move || sqlite_insert_rate(payload, INSERT_TIME))
        .await
        .map_err(|e| failed("sqlite")(e.to_string()))??;
    let sqlite_insert = InsertFigures {
        settings: "WAL, synchronous=FULL, one row per commit",
        rows_per_s,
    };
    let postgres_insert = match &options.database_url {
        Some(url) => {
            eprintln!("baseline: PostgreSQL inserts");
            let config: tokio_postgres::Config = url
                .parse()
                .map_err(|e: tokio_postgres::Error| failed("postgres")(e.to_string()))?;
            Some(InsertFigures {
                settings: "synchronous_commit=on (default), one row per commit",
                rows_per_s: postgres_insert_rate(&config, payload, INSERT_TIME).await?,
            })
        }
        None => None,
    };
    eprintln!("baseline: NATS fan-out");
    let nats = nats_fan_out(options, payload).await?;
    Ok(Baselines {
        server_cpu_per_delivery_vs_nats: options.vellum_cpu_us_per_delivery
            / nats.cpu_us_per_delivery.max(f64::MIN_POSITIVE),
        nats,
        sqlite_insert,
        postgres_insert,
        mls,
    })
}

/// One sender and one receiver in memory, same ciphersuite and configuration as devices.
fn raw_mls(plaintext_bytes: usize) -> Result<MlsFigures> {
    use vellum_mls::mls_rs::ExtensionList;
    let org = vellum_mls::OrgSigner::generate();
    let device = |user: &str| vellum_mls::in_memory_device(&org, user, user);
    let (alice, bob) = (device("alice"), device("bob"));
    let mut group = alice
        .create_group(ExtensionList::new(), Default::default(), None)
        .map_err(mls_error)?;
    let key_package = bob
        .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .map_err(mls_error)?;
    let commit = group
        .commit_builder()
        .add_member(key_package)
        .and_then(|b| b.build())
        .map_err(mls_error)?;
    group.apply_pending_commit().map_err(mls_error)?;
    let (mut bob_group, _) = bob
        .join_group(None, &commit.welcome_messages[0], None)
        .map_err(mls_error)?;
    let plaintext = vec![0x5a; plaintext_bytes];
    let messages = 2_000;
    let start = Instant::now();
    let mut encrypted = Vec::with_capacity(messages);
    for _ in 0..messages {
        encrypted.push(
            group
                .encrypt_application_message(&plaintext, Vec::new())
                .map_err(mls_error)?,
        );
    }
    let encrypt = start.elapsed();
    let ciphertext_bytes = encrypted[0].to_bytes().map_err(mls_error)?.len();
    let start = Instant::now();
    for message in encrypted {
        bob_group
            .process_incoming_message(message)
            .map_err(mls_error)?;
    }
    let decrypt = start.elapsed();
    Ok(MlsFigures {
        plaintext_bytes,
        ciphertext_bytes,
        encrypt_us: encrypt.as_secs_f64() * 1e6 / messages as f64,
        decrypt_us: decrypt.as_secs_f64() * 1e6 / messages as f64,
    })
}

/// SQLite as the server's store opens it (WAL, synchronous=FULL, its journal size limit),
/// one row of `payload` bytes per commit for `run`: commits per second.
pub fn sqlite_insert_rate(payload: usize, run: Duration) -> Result<f64> {
    let fail = |e: rusqlite::Error| failed("sqlite")(e.to_string());
    let dir = tempfile::tempdir()?;
    let db = rusqlite::Connection::open(dir.path().join("raw.db")).map_err(fail)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 1048576;
         CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);",
    )
    .map_err(fail)?;
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(fail)?;
    let synchronous: i64 = db
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .map_err(fail)?;
    if (mode.as_str(), synchronous) != ("wal", 2) {
        return Err(failed("sqlite")(format!(
            "journal mode {mode}, synchronous {synchronous}"
        )));
    }
    let row = vec![0x5a_u8; payload];
    let mut insert = db
        .prepare("INSERT INTO t (payload) VALUES (?1)")
        .map_err(fail)?;
    // Past the first WAL checkpoint (1000 pages), as a store that has run for a while is:
    // until then every commit also grows the WAL file, a costlier flush.
    for _ in 0..1_100 {
        insert.execute([&row]).map_err(fail)?;
    }
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < run {
        insert.execute([&row]).map_err(fail)?;
        rows += 1;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// PostgreSQL with the commit settings of `config` (default: synchronous_commit on), one
/// row of `payload` bytes per commit for `run`, in a table of this process's own that is
/// dropped afterwards: commits per second.
pub async fn postgres_insert_rate(
    config: &tokio_postgres::Config,
    payload: usize,
    run: Duration,
) -> Result<f64> {
    let fail = |e: tokio_postgres::Error| failed("postgres")(e.to_string());
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(fail)?;
    tokio::spawn(connection);
    let table = format!("vellum_raw_inserts_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)"
        ))
        .await
        .map_err(fail)?;
    let insert = client
        .prepare(&format!("INSERT INTO {table} (payload) VALUES ($1)"))
        .await
        .map_err(fail)?;
    let row = vec![0x5a_u8; payload];
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < run {
        client.execute(&insert, &[&row]).await.map_err(fail)?;
        rows += 1;
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .map_err(fail)?;
    Ok(rate)
}

/// A nats-server of this run's own on a free loopback port, stopped when dropped.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    async fn start() -> Result<Self> {
        let fail = failed("nats");
        let binary = std::env::var("VELLUM_NATS_SERVER").unwrap_or_else(|_| {
            if std::path::Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("cannot start {binary}: {e}")))?;
        let server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(fail(format!("{binary} did not listen on port {port}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The load run's shape over NATS core: one connection per receiver subscribed to each of
/// its chats' subjects, one publisher per chat, the same total rate and payload size.
async fn nats_fan_out(options: &BaselineOptions, payload: usize) -> Result<NatsFigures> {
    let fail = failed("nats");
    let server = NatsServer::start().await?;
    let receivers = options.devices - options.chats;
    let connect = |url: String| async move {
        async_nats::connect(url)
            .await
            .map_err(|e| failed("nats")(e.to_string()))
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); receivers];
    for c in 0..options.chats {
        for j in 0..options.members - 1 {
            members[(c * (options.members - 1) + j) % receivers].push(c);
        }
    }
    let base = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let mut tasks = Vec::new();
    let mut connections = Vec::new();
    for chats in members.into_iter().filter(|c| !c.is_empty()) {
        let client = connect(server.url.clone()).await?;
        for c in chats {
            let mut subscription = client
                .subscribe(format!("chat.{c}"))
                .await
                .map_err(|e| fail(e.to_string()))?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    let now = base.elapsed().as_micros() as u64;
                    let sent = message
                        .payload
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(now, u64::from_be_bytes);
                    let _ = tx.send(now.saturating_sub(sent));
                }
            }));
        }
        client.flush().await.map_err(|e| fail(e.to_string()))?;
        connections.push(client);
    }
    drop(tx);
    let cpu_before = process_cpu(server.child.id())?;
    let per_chat = Duration::from_secs_f64(options.chats as f64 / options.rate);
    let stop_at = Instant::now() + options.duration;
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut publishers = Vec::new();
    let chats = options.chats;
    for c in 0..chats {
        let client = connect(server.url.clone()).await?;
        let published = published.clone();
        publishers.push(tokio::spawn(async move {
            let mut tick = crate::run::staggered_ticks(per_chat, c, chats);
            loop {
                tick.tick().await;
                if Instant::now() >= stop_at {
                    break;
                }
                let mut body = vec![0x5a_u8; payload.max(8)];
                body[..8].copy_from_slice(&(base.elapsed().as_micros() as u64).to_be_bytes());
                if client
                    .publish(format!("chat.{c}"), body.into())
                    .await
                    .is_err()
                {
                    break;
                }
                published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = client.flush().await;
        }));
    }
    let started = Instant::now();
    let fan_out = options.members as u64 - 1;
    let mut latencies = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(us)) => latencies.push(Duration::from_micros(us)),
            Ok(None) => break,
            Err(_) => {}
        }
        while let Ok(us) = rx.try_recv() {
            latencies.push(Duration::from_micros(us));
        }
        let done = publishers.iter().all(|p| p.is_finished());
        let expected = published.load(std::sync::atomic::Ordering::Relaxed) * fan_out;
        if (done && latencies.len() as u64 >= expected)
            || Instant::now() > stop_at + Duration::from_secs(10)
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu(server.child.id())?.saturating_sub(cpu_before);
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    for task in tasks.iter().chain(publishers.iter()) {
        task.abort();
    }
    latencies.sort();
    let deliveries = latencies.len() as u64;
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    Ok(NatsFigures {
        published: published.load(std::sync::atomic::Ordering::Relaxed),
        deliveries,
        deliveries_per_s: deliveries as f64 / elapsed.as_secs_f64(),
        cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64,
        p50_ms: ms(percentile(&latencies, 0.5)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        rss_kib,
    })
}
