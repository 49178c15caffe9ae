use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Error, Result};

/// How to start `vellum server` children.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The `vellum` binary.
    pub binary: PathBuf,
    /// PostgreSQL instead of SQLite in the data directory (`--database-url`).
    pub database_url: Option<String>,
    /// NATS for the nodes' wakes (`--nats-url`).
    pub nats_url: Option<String>,
}

/// Runs `work` with `options` whose nodes, on PostgreSQL, use a schema of their own in the
/// named database, dropped afterwards (when `work` fails too): a database that already
/// holds a deployment, or an earlier run's nodes, is left as it was.
pub async fn with_scratch_schema<T, F, Fut>(options: &ServerOptions, work: F) -> Result<T>
where
    F: FnOnce(ServerOptions) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let Some(url) = &options.database_url else {
        return work(options.clone()).await;
    };
    let schema = vellum_store_pg::PgStore::scratch_schema(url, "vellum_bench")
        .await
        .map_err(|e| Error::Server(e.to_string()))?;
    let scoped = ServerOptions {
        database_url: Some(schema.url.clone()),
        ..options.clone()
    };
    let outcome = work(scoped).await;
    let dropped = schema
        .drop_all()
        .await
        .map_err(|e| Error::Server(format!("dropping the benchmark's schema: {e}")));
    let value = outcome?;
    dropped?;
    Ok(value)
}

/// A `vellum server` process on a loopback port it chose itself (`--listen 127.0.0.1:0`).
pub struct ServerProcess {
    child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl ServerProcess {
    /// Starts a node on `data`; nodes on one database may share it.
    pub fn start(options: &ServerOptions, data: &Path) -> Result<Self> {
        let mut command = Command::new(&options.binary);
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(data);
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
        }
        if let Some(url) = &options.nats_url {
            command.args(["--nats-url", url]);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::Server(format!("cannot start {}: {e}", options.binary.display()))
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Server("no stdout".into()))?;
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines.read_line(&mut first)?;
        // Whatever it prints later must not meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        let Some(url) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Server(format!(
                "the server's first line names no address: {first:?}"
            )));
        };
        Ok(Self {
            url: url.to_owned(),
            child,
            data: data.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the server has used so far.
    pub fn cpu(&self) -> Result<Duration> {
        process_cpu(self.pid())
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        status_kib(self.pid(), "VmRSS:")
    }

    /// The largest resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        status_kib(self.pid(), "VmHWM:")
    }

    pub fn admin_token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data.join("admin-token"))?
            .trim()
            .to_owned())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time of process `pid` (all its threads).
pub(crate) fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| Error::Server("malformed /proc stat".into()))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error::Server("malformed /proc stat".into()))
    };
    // USER_HZ is 100 on every Linux ABI.
    Ok(Duration::from_millis((field(11)? + field(12)?) * 10))
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Server(format!("no {key} in /proc/{pid}/status")))
}

/// Memory the kernel says is available for new work, in KiB.
pub(crate) fn available_memory_kib() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Server("no MemAvailable in /proc/meminfo".into()))
}

/// Raises this process's open-files limit so that `wanted` descriptors fit (children inherit
/// it): to `wanted` when privileged, else the soft limit to the hard one. Returns the soft
/// limit in force.
pub fn raise_open_files_limit(wanted: u64) -> Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if wanted > hard && rlimit::Resource::NOFILE.set(wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok(hard)
}
