//! Issue 13: the server's log under concurrent senders, SQLite and PostgreSQL: appends and
//! commits (transactions, each one durable flush) per second; and, as the baseline, the
//! raw durable insert rate of each (one row per commit, the store's synchronous setting).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use vellum_store::{ChatTimers, CommitAppend, Device, MessageAppend, NewGroup, SqliteStore, Store};
use vellum_store_pg::{tokio_postgres, PgStore};

/// Senders per group: a group of 8 members, each sending.
const GROUP: usize = 8;

fn database_url() -> String {
    std::env::var("VELLUM_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The store's own count of its log transactions.
trait LogCommits: Store + Clone {
    fn log_commits(&self) -> u64;
}

impl LogCommits for SqliteStore {
    fn log_commits(&self) -> u64 {
        SqliteStore::log_commits(self)
    }
}

impl LogCommits for PgStore {
    fn log_commits(&self) -> u64 {
        PgStore::log_commits(self)
    }
}

/// A schema of its own in the bench database, dropped after.
struct PgSchema {
    admin: tokio_postgres::Client,
    name: String,
}

impl PgSchema {
    async fn new() -> Result<Self> {
        let (admin, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
            .await
            .context("the bench database (VELLUM_BENCH_DATABASE_URL)")?;
        tokio::spawn(connection);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let name = format!("bench_{}_{nanos}", std::process::id());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await?;
        Ok(Self { admin, name })
    }

    fn config(&self) -> Result<tokio_postgres::Config> {
        let mut config: tokio_postgres::Config = database_url().parse()?;
        config.options(format!("-c search_path={}", self.name));
        Ok(config)
    }

    async fn drop_schema(self) -> Result<()> {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await?;
        Ok(())
    }
}

pub async fn store_figures(secs: f64) -> Result<()> {
    let run = Duration::from_secs_f64(secs);
    println!("\nraw durable inserts: one 100-byte row per commit, one connection, {secs} s");
    println!("| backend | commits/s |");
    println!("|---|---|");
    println!(
        "| SQLite (WAL, synchronous=FULL) | {:.0} |",
        raw_sqlite(run).await?
    );
    println!(
        "| PostgreSQL (synchronous_commit=on) | {:.0} |",
        raw_postgres(run).await?
    );
    println!("\nappend_message: N senders appending at once (groups of {GROUP}), {secs} s each");
    println!("| backend | senders | appends/s | commits/s | appends per commit |");
    println!("|---|---|---|---|---|");
    for senders in [1, 8, 64] {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("server.db"))?;
        appends("SQLite", store, senders, run).await?;
        let schema = PgSchema::new().await?;
        let store = PgStore::connect_config(schema.config()?).await?;
        appends("PostgreSQL", store.clone(), senders, run).await?;
        drop(store);
        schema.drop_schema().await?;
    }
    Ok(())
}

async fn appends<S: LogCommits>(name: &str, store: S, senders: usize, run: Duration) -> Result<()> {
    store.create_user("bench", 0).await?;
    let device = |i: usize| format!("d{i}");
    for i in 0..senders {
        let mut code = [0u8; 32];
        code[..8].copy_from_slice(&(i as u64).to_be_bytes());
        store.add_enrollment_code("bench", code, i64::MAX).await?;
        store
            .enroll_device(
                code,
                0,
                Device {
                    device_id: device(i),
                    user: "bench".into(),
                    signature_key: format!("key-{i}").into_bytes(),
                },
                false,
            )
            .await?;
    }
    for (g, members) in (0..senders).collect::<Vec<_>>().chunks(GROUP).enumerate() {
        let group_id = format!("g{g}");
        store
            .create_group(NewGroup {
                group_id: group_id.clone(),
                epoch: 0,
                state: vec![0; 64],
                timers: ChatTimers::default(),
                record: false,
                creator_device: device(members[0]),
                created_at: 0,
            })
            .await?;
        store
            .append_commit(CommitAppend {
                group_id,
                expected_epoch: 0,
                expected_state_version: 0,
                new_epoch: 1,
                state: vec![1; 64],
                timers: ChatTimers::default(),
                record: false,
                sender_device: device(members[0]),
                payload: vec![0; 100],
                received_at: 0,
                added: members[1..].iter().map(|&i| device(i)).collect(),
                removed: vec![],
                welcome: None,
            })
            .await?;
    }
    let commits_before = store.log_commits();
    let start = Instant::now();
    let end = start + run;
    let tasks: Vec<_> = (0..senders)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while Instant::now() < end {
                    store
                        .append_message(MessageAppend {
                            group_id: format!("g{}", i / GROUP),
                            epoch: 1,
                            sender_device: format!("d{i}"),
                            client_msg_id: format!("m{sent}"),
                            payload: vec![7; 100],
                            received_at: 0,
                            expires_at: None,
                        })
                        .await?;
                    sent += 1;
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    let mut appended = 0;
    for task in tasks {
        appended += task.await??;
    }
    let took = start.elapsed().as_secs_f64();
    let commits = store.log_commits() - commits_before;
    ensure!(commits > 0, "no commit counted");
    println!(
        "| {name} | {senders} | {:.0} | {:.0} | {:.1} |",
        appended as f64 / took,
        commits as f64 / took,
        appended as f64 / commits as f64
    );
    Ok(())
}

async fn raw_sqlite(run: Duration) -> Result<f64> {
    Ok(tokio::task::spawn_blocking(move || vellum_load::sqlite_insert_rate(100, run)).await??)
}

async fn raw_postgres(run: Duration) -> Result<f64> {
    let schema = PgSchema::new().await?;
    let rate = vellum_load::postgres_insert_rate(&schema.config()?, 100, run).await?;
    schema.drop_schema().await?;
    Ok(rate)
}
