//! Idle device WebSockets: how many one node holds and what each costs it in memory.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::run::Machine;
use crate::server::{
    available_memory_kib, raise_open_files_limit, with_scratch_schema, ServerOptions, ServerProcess,
};
use crate::{Error, Org, Result};

/// Connections per device: well under the per-device request burst, so no upgrade is refused
/// for the rate limit.
const CONNECTIONS_PER_DEVICE: usize = 250;

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub connections: usize,
    /// Source addresses 127.0.0.2, 127.0.0.3, …: each has its own ephemeral ports.
    pub sources: u8,
    pub server: ServerOptions,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleSummary {
    pub scenario: &'static str,
    pub requested: usize,
    pub opened: usize,
    /// Upgrades refused or failed (the node's connection cap answers 503).
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub sources: u8,
    pub open_files_limit: u64,
    pub server_rss_kib_before: u64,
    pub server_rss_kib: u64,
    pub kib_per_connection: f64,
    pub available_memory_kib: u64,
    /// Connections the available memory would hold at this cost each.
    pub memory_limited_capacity: u64,
    pub machine: Machine,
}

pub async fn idle_connections(options: &IdleOptions) -> Result<IdleSummary> {
    if options.connections == 0 {
        return Err(Error::Invalid("--connections must be at least 1".into()));
    }
    if options.sources == 0 || options.sources > 250 {
        return Err(Error::Invalid("--sources must be from 1 to 250".into()));
    }
    // This process holds one end of each connection and the server (inheriting the limit)
    // the other.
    let open_files_limit = raise_open_files_limit(options.connections as u64 + 1024)?;
    with_scratch_schema(&options.server, |server| async move {
        idle_on(options, open_files_limit, &server).await
    })
    .await
}

/// [`idle_connections`] on a node started as `server` says.
async fn idle_on(
    options: &IdleOptions,
    open_files_limit: u64,
    server: &ServerOptions,
) -> Result<IdleSummary> {
    let root = tempfile::tempdir()?;
    let server = ServerProcess::start(server, &root.path().join("server"))?;
    let org = Org::connect(&server.url, &server.admin_token()?, root.path())?;
    let device_count = options.connections.div_ceil(CONNECTIONS_PER_DEVICE);
    eprintln!("enrolling {device_count} devices");
    let mut devices = Vec::with_capacity(device_count);
    for d in 0..device_count {
        devices.push(org.light_device(&format!("idle{d}")).await?);
    }
    let devices = Arc::new(devices);
    let before = server.rss_kib()?;
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    eprintln!(
        "opening {} WebSockets from {} source addresses",
        options.connections, options.sources
    );
    let mut opening = futures_util::stream::iter((0..options.connections).map(|i| {
        let (devices, url) = (devices.clone(), server.url.clone());
        let timestamp = org.api.timestamp();
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (i % options.sources as usize) as u8,
        ));
        async move {
            devices[i % devices.len()]
                .connect_ws(&url, timestamp, Some(source))
                .await
        }
    }))
    .buffer_unordered(64);
    let mut readers = Vec::with_capacity(options.connections);
    let mut last_progress = Instant::now();
    while let Some(opened) = opening.next().await {
        match opened {
            // Reading answers the server's pings, so the socket stays as an idle device's.
            Ok(mut socket) => readers.push(tokio::spawn(async move {
                while let Some(Ok(_)) = socket.next().await {}
            })),
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_or_insert_with(|| e.to_string());
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!("  {} open", readers.len());
        }
    }
    drop(opening);
    // Every upgrade finished on the server before its memory is read: wait for the RSS to
    // stop growing.
    let mut rss = server.rss_kib()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.rss_kib()?;
        if now <= rss || Instant::now() > deadline {
            rss = rss.max(now);
            break;
        }
        rss = now;
    }
    let opened = readers.iter().filter(|r| !r.is_finished()).count();
    let kib_per_connection = rss.saturating_sub(before) as f64 / opened.max(1) as f64;
    let available = available_memory_kib()?;
    for reader in &readers {
        reader.abort();
    }
    let first_error = first_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(IdleSummary {
        scenario: "idle",
        requested: options.connections,
        opened,
        failed: failed.load(Ordering::Relaxed),
        first_error,
        sources: options.sources,
        open_files_limit,
        server_rss_kib_before: before,
        server_rss_kib: rss,
        kib_per_connection: (kib_per_connection * 100.0).round() / 100.0,
        available_memory_kib: available,
        memory_limited_capacity: (available as f64 / kib_per_connection.max(0.01)) as u64,
        machine: Machine::now(),
    })
}
