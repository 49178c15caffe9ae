//! The load scenario: N devices, M chats of S members, a total send rate for a bounded time.
//! Senders are full clients (real MLS encryption); receivers are light devices measured when
//! `/v1/sync` hands them the entry after a WebSocket wake, or full clients (`decrypt`)
//! measured once the entry is decrypted and stored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde::Serialize;
use tokio::sync::mpsc;
use vellum_client::{Api, Client};
use vellum_wire::{AckRequest, EntryKind, GroupCursor, SyncResponse};

use crate::baselines::{self, BaselineOptions, Baselines};
use crate::server::{raise_open_files_limit, with_scratch_schema, ServerOptions, ServerProcess};
use crate::stats::percentile;
use crate::{Error, LightDevice, Org, Result};

/// Entries a sender's messages may still be on their way this long after sending stops.
const DRAIN: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub devices: usize,
    pub chats: usize,
    pub members: usize,
    /// Messages per second, all chats together.
    pub rate: f64,
    pub duration: Duration,
    /// Receivers are full clients, measured once the message is decrypted and stored.
    pub decrypt: bool,
    /// Servers someone else runs (their admin token in `admin_token`); empty: start `nodes`.
    pub servers: Vec<String>,
    pub admin_token: Option<String>,
    pub nodes: usize,
    pub server: ServerOptions,
    pub baselines: bool,
    /// Also report each window of this length while sending (a soak's figures over time).
    pub windows: Option<Duration>,
}

impl LoadOptions {
    /// Refuses options that cannot describe a run, before anything starts.
    pub fn check(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(m));
        if self.members < 2 {
            return invalid(format!(
                "--members must be at least 2 (a sender and a receiver), got {}",
                self.members
            ));
        }
        if self.chats == 0 {
            return invalid("--chats must be at least 1".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(format!(
                "--rate must be a positive number of messages per second, got {}",
                self.rate
            ));
        }
        if self.duration.is_zero() {
            return invalid("--duration must be more than 0 seconds".into());
        }
        if self.members > self.devices {
            return invalid(format!(
                "--members {} is more than --devices {}",
                self.members, self.devices
            ));
        }
        let needed = self.chats + self.members - 1;
        if self.devices < needed {
            return invalid(format!(
                "--devices {} is too few: {} senders (one per chat) and {} other members per chat need at least {needed}",
                self.devices,
                self.chats,
                self.members - 1
            ));
        }
        if self.servers.is_empty() {
            if self.nodes == 0 {
                return invalid("--nodes must be at least 1".into());
            }
            if self.nodes > 1 && self.server.database_url.is_none() {
                return invalid(
                    "--nodes above 1 needs --database-url (nodes share one PostgreSQL database)"
                        .into(),
                );
            }
        } else if self.admin_token.is_none() {
            return invalid("--server needs the org's admin token (--token-file)".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeFigures {
    pub url: String,
    pub cpu_s: f64,
    pub cpu_us_per_delivery: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    /// Send calls that failed.
    pub send: u64,
    /// WebSocket connections or syncs of receivers that failed.
    pub receive: u64,
    /// Deliveries expected (sent × (members − 1)) that never arrived.
    pub missing: u64,
}

/// One run's figures: the JSON object `vellum bench load` prints.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub scenario: &'static str,
    pub store: &'static str,
    pub nodes: usize,
    pub devices: usize,
    pub chats: usize,
    pub members: usize,
    pub offered_rate: f64,
    pub duration_s: f64,
    pub decrypt: bool,
    pub sent: u64,
    pub sent_per_s: f64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub deliveries_per_s: f64,
    pub send_to_deliver: Latency,
    /// Mean size of a delivered message's MLS ciphertext.
    pub payload_bytes: u64,
    /// Server CPU (all nodes) per delivery, and each node's figures.
    pub server_cpu_us_per_delivery: f64,
    pub server_rss_kib: u64,
    pub per_node: Vec<NodeFigures>,
    pub errors: Errors,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
    pub machine: Machine,
}

/// One window of a run with `LoadOptions::windows`.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub end_s: f64,
    pub sent_per_s: f64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_kib: u64,
    pub load_average: String,
}

impl Machine {
    pub fn now() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_kib,
            load_average,
        }
    }
}

/// A message a receiver has: which, when (micros on the run's clock), how big.
struct Receipt {
    group: String,
    seq: u64,
    at_us: u64,
    bytes: usize,
}

/// One node: its URL and a shared HTTP client for the light devices on it.
struct Node {
    url: String,
    api: Arc<Api>,
}

/// Runs one load scenario and returns its summary; progress goes to stderr.
pub async fn load(options: &LoadOptions) -> Result<LoadSummary> {
    options.check()?;
    if !options.servers.is_empty() {
        return load_on(options, &options.server).await;
    }
    with_scratch_schema(&options.server, |server| async move {
        load_on(options, &server).await
    })
    .await
}

/// [`load`] with local nodes started as `server` says.
async fn load_on(options: &LoadOptions, server: &ServerOptions) -> Result<LoadSummary> {
    // A WebSocket and an HTTP connection per device, on both sides of loopback.
    raise_open_files_limit(4 * options.devices as u64 + 1024)?;
    let root = tempfile::tempdir()?;
    let mut processes = Vec::new();
    let (urls, token) = if options.servers.is_empty() {
        let data = root.path().join("server");
        for n in 0..options.nodes {
            eprintln!("starting node {} of {}", n + 1, options.nodes);
            processes.push(ServerProcess::start(server, &data)?);
        }
        let token = processes[0].admin_token()?;
        (processes.iter().map(|p| p.url.clone()).collect(), token)
    } else {
        let token = options.admin_token.clone().unwrap_or_default();
        (options.servers.clone(), token)
    };
    let nodes = urls
        .iter()
        .map(|url| {
            Ok(Node {
                url: url.clone(),
                api: Arc::new(Api::new(url)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let org = Org::connect(&urls[0], &token, root.path())?;
    let base = Instant::now();
    let run = Run::set_up(options, &org, &nodes).await?;
    let measured = run.measure(options, base, &processes, &nodes).await?;
    let store = if options.server.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let baselines = if options.baselines {
        eprintln!(
            "baselines: same shape, payload {} bytes",
            measured.payload_bytes
        );
        Some(
            baselines::measure(&baseline_options(
                options,
                measured.payload_bytes,
                measured.cpu_us_per_delivery,
            ))
            .await?,
        )
    } else {
        None
    };
    drop(processes);
    Ok(LoadSummary {
        scenario: "load",
        store,
        nodes: urls.len(),
        devices: options.devices,
        chats: options.chats,
        members: options.members,
        offered_rate: options.rate,
        duration_s: options.duration.as_secs_f64(),
        decrypt: options.decrypt,
        sent: measured.sent,
        sent_per_s: measured.sent as f64 / options.duration.as_secs_f64(),
        deliveries: measured.deliveries,
        expected_deliveries: measured.sent * (options.members as u64 - 1),
        deliveries_per_s: measured.deliveries as f64 / measured.elapsed.as_secs_f64(),
        send_to_deliver: measured.latency,
        payload_bytes: measured.payload_bytes,
        server_cpu_us_per_delivery: measured.cpu_us_per_delivery,
        server_rss_kib: measured.per_node.iter().map(|n| n.rss_kib).sum(),
        per_node: measured.per_node,
        errors: Errors {
            send: measured.send_errors,
            receive: measured.receive_errors,
            missing: (measured.sent * (options.members as u64 - 1))
                .saturating_sub(measured.deliveries),
        },
        windows: measured.windows,
        baselines,
        machine: Machine::now(),
    })
}

enum Receiver {
    Light(Box<LightDevice>, usize),
    Full(Box<Client>),
}

struct Run {
    senders: Vec<(Client, String)>,
    receivers: Vec<Receiver>,
    sender_devices: Arc<HashSet<String>>,
}

struct Measured {
    sent: u64,
    deliveries: u64,
    elapsed: Duration,
    latency: Latency,
    payload_bytes: u64,
    cpu_us_per_delivery: f64,
    per_node: Vec<NodeFigures>,
    send_errors: u64,
    receive_errors: u64,
    windows: Vec<Window>,
}

impl Run {
    /// Enrolls every device and creates the chats: chat c is sender c and the next
    /// `members - 1` receivers, taken round-robin, so receivers share chats evenly.
    async fn set_up(options: &LoadOptions, org: &Org, nodes: &[Node]) -> Result<Self> {
        let receiver_count = options.devices - options.chats;
        let slots = options.chats * (options.members - 1);
        let chats_per_receiver = slots.div_ceil(receiver_count);
        eprintln!(
            "enrolling {} senders and {receiver_count} {} receivers",
            options.chats,
            if options.decrypt { "full" } else { "light" }
        );
        let mut receivers = Vec::with_capacity(receiver_count);
        // Light devices enroll a few at a time: each is four requests and a key generation.
        let mut enrolling = futures_util::stream::iter((0..receiver_count).map(|r| async move {
            let name = format!("r{r}");
            let node = &nodes[r % nodes.len()];
            if options.decrypt {
                Ok(Receiver::Full(Box::new(
                    org.client_on(&name, &node.url).await?,
                )))
            } else {
                let device = org
                    .light_device_with(&name, chats_per_receiver.max(1))
                    .await?;
                Ok::<_, Error>(Receiver::Light(Box::new(device), r % nodes.len()))
            }
        }))
        .buffered(8);
        while let Some(receiver) = enrolling.next().await {
            receivers.push(receiver?);
            if receivers.len() % 500 == 0 {
                eprintln!("  {} receivers enrolled", receivers.len());
            }
        }
        drop(enrolling);
        let mut senders = Vec::with_capacity(options.chats);
        let mut sender_devices = HashSet::new();
        for c in 0..options.chats {
            let node = &nodes[c % nodes.len()];
            let mut sender = org.client_on(&format!("s{c}"), &node.url).await?;
            let members: Vec<String> = (0..options.members - 1)
                .map(|j| format!("r{}", (c * (options.members - 1) + j) % receiver_count))
                .collect();
            let started = Instant::now();
            let chat = sender
                .create_chat(&format!("load {c}"), &members, Default::default(), None)
                .await?;
            if c == 0 || started.elapsed() > Duration::from_secs(1) {
                eprintln!(
                    "chat {} of {} ({} members) created in {:.1} s",
                    c + 1,
                    options.chats,
                    options.members,
                    started.elapsed().as_secs_f64()
                );
            }
            sender_devices.insert(sender.device_id().to_owned());
            senders.push((sender, chat));
        }
        Ok(Self {
            senders,
            receivers,
            sender_devices: Arc::new(sender_devices),
        })
    }

    async fn measure(
        self,
        options: &LoadOptions,
        base: Instant,
        processes: &[ServerProcess],
        nodes: &[Node],
    ) -> Result<Measured> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Receipt>();
        let ready = Arc::new(AtomicUsize::new(0));
        let receive_errors = Arc::new(AtomicU64::new(0));
        let receiver_count = self.receivers.len();
        let mut tasks = Vec::new();
        for receiver in self.receivers {
            let (tx, ready, errors) = (tx.clone(), ready.clone(), receive_errors.clone());
            let senders = self.sender_devices.clone();
            tasks.push(match receiver {
                Receiver::Light(device, node) => {
                    let (url, api) = (nodes[node].url.clone(), nodes[node].api.clone());
                    tokio::spawn(light_receiver(
                        *device, url, api, senders, base, tx, ready, errors,
                    ))
                }
                Receiver::Full(client) => {
                    tokio::spawn(full_receiver(*client, senders, base, tx, ready, errors))
                }
            });
        }
        drop(tx);
        // Every receiver connected and drained what chat creation left for it.
        let deadline = Instant::now() + Duration::from_secs(60 + receiver_count as u64 / 20);
        while ready.load(Ordering::Relaxed) < receiver_count {
            if Instant::now() > deadline {
                return Err(Error::Server(format!(
                    "only {} of {receiver_count} receivers connected",
                    ready.load(Ordering::Relaxed)
                )));
            }
            while rx.try_recv().is_ok() {}
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while rx.try_recv().is_ok() {}
        eprintln!(
            "{receiver_count} receivers connected; sending {} msg/s for {} s",
            options.rate,
            options.duration.as_secs_f64()
        );

        let cpu_before = processes
            .iter()
            .map(ServerProcess::cpu)
            .collect::<Result<Vec<_>>>()?;
        let sends = Arc::new(Mutex::new(HashMap::<(String, u64), u64>::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let send_errors = Arc::new(AtomicU64::new(0));
        let chats = self.senders.len();
        let per_chat = Duration::from_secs_f64(chats as f64 / options.rate);
        let started = Instant::now();
        let stop_at = started + options.duration;
        let mut sending = Vec::new();
        for (i, (mut sender, chat)) in self.senders.into_iter().enumerate() {
            let (sends, sent, errors) = (sends.clone(), sent.clone(), send_errors.clone());
            sending.push(tokio::spawn(async move {
                let mut tick = staggered_ticks(per_chat, i, chats);
                loop {
                    tick.tick().await;
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let start = base.elapsed().as_micros() as u64;
                    match sender.send(&chat, "load").await {
                        Ok(row) => {
                            if let Some(seq) = row.seq {
                                lock(&sends).insert((row.group_id, seq), start);
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("send failed: {e}");
                            }
                        }
                    }
                }
            }));
        }

        let fan_out = options.members as u64 - 1;
        let mut receipts = Vec::new();
        let mut last_progress = Instant::now();
        let mut sending_done = false;
        let mut windows = Vec::new();
        let (mut window_start, mut window_receipts, mut window_sent) = (Instant::now(), 0, 0);
        loop {
            let got = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
            match got {
                Ok(Some(receipt)) => receipts.push(receipt),
                Ok(None) => break,
                Err(_) => {}
            }
            while let Ok(receipt) = rx.try_recv() {
                receipts.push(receipt);
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                eprintln!(
                    "  {:.0} s: sent {}, delivered {}",
                    started.elapsed().as_secs_f64(),
                    sent.load(Ordering::Relaxed),
                    receipts.len()
                );
            }
            if let Some(every) = options.windows {
                if window_start.elapsed() >= every && Instant::now() < stop_at {
                    let mut latencies = {
                        let sends = lock(&sends);
                        receipts[window_receipts..]
                            .iter()
                            .filter_map(|r| {
                                let start = sends.get(&(r.group.clone(), r.seq))?;
                                Some(Duration::from_micros(r.at_us.saturating_sub(*start)))
                            })
                            .collect::<Vec<_>>()
                    };
                    latencies.sort();
                    let secs = window_start.elapsed().as_secs_f64();
                    let sent_now = sent.load(Ordering::Relaxed);
                    windows.push(Window {
                        end_s: started.elapsed().as_secs_f64().round(),
                        sent_per_s: (sent_now - window_sent) as f64 / secs,
                        deliveries_per_s: latencies.len() as f64 / secs,
                        p50_ms: millis(percentile(&latencies, 0.5)),
                        p99_ms: millis(percentile(&latencies, 0.99)),
                    });
                    (window_start, window_receipts, window_sent) =
                        (Instant::now(), receipts.len(), sent_now);
                }
            }
            if !sending_done && sending.iter().all(|t| t.is_finished()) {
                sending_done = true;
            }
            let expected = sent.load(Ordering::Relaxed) * fan_out;
            if sending_done && receipts.len() as u64 >= expected {
                break;
            }
            if Instant::now() > stop_at + DRAIN {
                eprintln!(
                    "gave up waiting for {} deliveries",
                    expected.saturating_sub(receipts.len() as u64)
                );
                break;
            }
        }
        let elapsed = started.elapsed();
        let cpu_after = processes
            .iter()
            .map(ServerProcess::cpu)
            .collect::<Result<Vec<_>>>()?;
        for task in tasks.iter().chain(sending.iter()) {
            task.abort();
        }

        let sends = lock(&sends);
        let mut latencies = Vec::with_capacity(receipts.len());
        let mut bytes = 0u64;
        for receipt in &receipts {
            if let Some(start) = sends.get(&(receipt.group.clone(), receipt.seq)) {
                latencies.push(Duration::from_micros(receipt.at_us.saturating_sub(*start)));
                bytes += receipt.bytes as u64;
            }
        }
        latencies.sort();
        let deliveries = latencies.len() as u64;
        let per_delivery = |cpu: Duration| cpu.as_secs_f64() * 1e6 / deliveries.max(1) as f64;
        let mut per_node = Vec::new();
        let mut total_cpu = Duration::ZERO;
        for ((process, before), after) in processes.iter().zip(&cpu_before).zip(&cpu_after) {
            let cpu = after.saturating_sub(*before);
            total_cpu += cpu;
            per_node.push(NodeFigures {
                url: process.url.clone(),
                cpu_s: cpu.as_secs_f64(),
                cpu_us_per_delivery: per_delivery(cpu),
                rss_kib: process.rss_kib()?,
                peak_rss_kib: process.peak_rss_kib()?,
            });
        }
        let ms = millis;
        Ok(Measured {
            sent: sent.load(Ordering::Relaxed),
            deliveries,
            elapsed,
            latency: Latency {
                p50_ms: ms(percentile(&latencies, 0.5)),
                p99_ms: ms(percentile(&latencies, 0.99)),
                p999_ms: ms(percentile(&latencies, 0.999)),
                max_ms: ms(latencies.last().copied().unwrap_or_default()),
            },
            payload_bytes: bytes / deliveries.max(1),
            cpu_us_per_delivery: per_delivery(total_cpu),
            per_node,
            send_errors: send_errors.load(Ordering::Relaxed),
            receive_errors: receive_errors.load(Ordering::Relaxed),
            windows,
        })
    }
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A light receiver: on each wake, sync (stamping the senders' application entries) and ack,
/// until the task is aborted. A dropped connection is counted and opened again.
#[allow(clippy::too_many_arguments)]
async fn light_receiver(
    device: LightDevice,
    url: String,
    api: Arc<Api>,
    senders: Arc<HashSet<String>>,
    base: Instant,
    tx: mpsc::UnboundedSender<Receipt>,
    ready: Arc<AtomicUsize>,
    errors: Arc<AtomicU64>,
) {
    let mut counted_ready = false;
    loop {
        // A signed request first: it catches up, and the shared client learns the server's
        // start, before which no WebSocket upgrade may be signed.
        if let Err(e) = drain(&device, &api, &senders, base, &tx).await {
            count_error(&errors, &e);
        }
        let mut socket = match device.connect_ws(&url, api.timestamp(), None).await {
            Ok(socket) => socket,
            Err(e) => {
                count_error(&errors, &e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(frame) if frame.is_text() => {
                    if let Err(e) = drain(&device, &api, &senders, base, &tx).await {
                        count_error(&errors, &e);
                    }
                    if !counted_ready {
                        counted_ready = true;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Pings are answered by the next read; nothing else is expected.
                Ok(_) => {}
                Err(e) => {
                    count_error(&errors, &e);
                    break;
                }
            }
        }
        let _ = socket.close(None).await;
    }
}

/// The baselines in the shape of `options`, with Vellum's measured payload and cost.
fn baseline_options(
    options: &LoadOptions,
    payload_bytes: u64,
    vellum_cpu_us_per_delivery: f64,
) -> BaselineOptions {
    BaselineOptions {
        chats: options.chats,
        members: options.members,
        devices: options.devices,
        rate: options.rate,
        duration: options.duration,
        payload_bytes: payload_bytes as usize,
        database_url: options.server.database_url.clone(),
        vellum_cpu_us_per_delivery,
    }
}

/// Sender `index` of `count`'s ticks, one every `period`: senders start spread over one
/// period, not all at once, and a late tick delays the next rather than bunching up.
pub(crate) fn staggered_ticks(
    period: Duration,
    index: usize,
    count: usize,
) -> tokio::time::Interval {
    let first = tokio::time::Instant::now() + period.mul_f64(index as f64 / count as f64);
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Counts a receiver's failure; the first one is said on stderr.
fn count_error(errors: &AtomicU64, error: &dyn std::fmt::Display) {
    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
        eprintln!("a receiver failed: {error}");
    }
}

/// Syncs until nothing is left, acking each batch.
async fn drain(
    device: &LightDevice,
    api: &Api,
    senders: &HashSet<String>,
    base: Instant,
    tx: &mpsc::UnboundedSender<Receipt>,
) -> Result<()> {
    loop {
        let sync: SyncResponse = api
            .call(
                Method::GET,
                "/v1/sync",
                None::<&()>,
                Some(&device.signer()),
                None,
            )
            .await?;
        let at_us = base.elapsed().as_micros() as u64;
        let mut ack = AckRequest {
            welcomes: sync.welcomes.iter().map(|w| w.id).collect(),
            ..Default::default()
        };
        for group in sync.groups {
            let Some(last) = group.entries.last() else {
                continue;
            };
            ack.cursors.push(GroupCursor {
                group_id: group.group_id.clone(),
                seq: last.seq,
            });
            for entry in &group.entries {
                if entry.kind == EntryKind::Application && senders.contains(&entry.sender_device) {
                    let _ = tx.send(Receipt {
                        group: group.group_id.clone(),
                        seq: entry.seq,
                        at_us,
                        bytes: entry.payload.len(),
                    });
                }
            }
        }
        if !ack.welcomes.is_empty() || !ack.cursors.is_empty() {
            let _: () = api
                .call(
                    Method::POST,
                    "/v1/ack",
                    Some(&ack),
                    Some(&device.signer()),
                    None,
                )
                .await?;
        }
        if !sync.more {
            return Ok(());
        }
    }
}

/// A full receiver: the client's own watch loop (wake, sync, decrypt, store, ack).
async fn full_receiver(
    mut client: Client,
    senders: Arc<HashSet<String>>,
    base: Instant,
    tx: mpsc::UnboundedSender<Receipt>,
    ready: Arc<AtomicUsize>,
    errors: Arc<AtomicU64>,
) {
    // The welcome and the chat's first events, before the clock starts.
    if let Err(e) = client.sync().await {
        count_error(&errors, &e);
    }
    ready.fetch_add(1, Ordering::Relaxed);
    loop {
        let mut report = |batch: &[vellum_client::MessageRow]| {
            let at_us = base.elapsed().as_micros() as u64;
            for row in batch {
                if let (Some(seq), None) = (row.seq, &row.event) {
                    if senders.contains(&row.sender_device) {
                        let _ = tx.send(Receipt {
                            group: row.group_id.clone(),
                            seq,
                            at_us,
                            bytes: row.text.len(),
                        });
                    }
                }
            }
        };
        // A dropped connection is opened again, as `vellum watch` does.
        if let Err(e) = client.watch_once(&mut report).await {
            count_error(&errors, &e);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Several runs: the offered rate at a quarter, half and all of `options.rate`, then chat
/// sizes 10, 100 and 1,000 (as many as `options.devices` allows) at the same offered
/// deliveries per second.
pub async fn sweep(options: &LoadOptions) -> Result<SweepSummary> {
    options.check()?;
    let mut by_rate = Vec::new();
    for fraction in [0.25, 0.5, 1.0] {
        let run = LoadOptions {
            rate: options.rate * fraction,
            baselines: false,
            ..options.clone()
        };
        eprintln!("sweep: {} msg/s", run.rate);
        by_rate.push(load(&run).await?);
    }
    let mut by_size = Vec::new();
    let deliveries = options.rate * (options.members - 1) as f64;
    for members in [10usize, 100, 1_000] {
        // One chat of `members` needs that many devices: its sender and the receivers.
        if members > options.devices {
            break;
        }
        let chats = options
            .chats
            .min((options.devices - members + 1).max(1))
            .min((options.devices / members).max(1));
        let run = LoadOptions {
            members,
            chats,
            rate: deliveries / (members - 1) as f64,
            baselines: false,
            ..options.clone()
        };
        eprintln!("sweep: {chats} chats of {members} at {:.1} msg/s", run.rate);
        by_size.push(load(&run).await?);
    }
    let baselines = if options.baselines {
        let last = by_rate.last().map_or(0, |s| s.payload_bytes);
        let vellum = by_rate.last().map_or(0.0, |s| s.server_cpu_us_per_delivery);
        Some(baselines::measure(&baseline_options(options, last, vellum)).await?)
    } else {
        None
    };
    Ok(SweepSummary {
        scenario: "sweep",
        by_rate,
        by_size,
        baselines,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    pub scenario: &'static str,
    pub by_rate: Vec<LoadSummary>,
    pub by_size: Vec<LoadSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
}
