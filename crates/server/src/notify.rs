//! Waking devices' WebSockets: on this node directly, on the deployment's other nodes
//! through NATS core pub/sub (issue 13).
//!
//! A wake is only a hint to call `/v1/sync`: the entries are committed to the database before
//! anyone is woken, so a hint that never arrives costs latency, not a message. While the bus
//! is down (or when a node runs on the shared database without one) every socket of this node
//! is woken each poll interval instead, and once more when the bus comes back, for the hints
//! published meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use vellum_wire::nodes::{node_subject, NodeEvent, NodeHint};

/// Device ids per published event, so no event comes near the size a node decodes.
const DEVICES_PER_EVENT: usize = 10_000;

/// The sockets of this node, by device.
#[derive(Default)]
struct LocalSockets {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl LocalSockets {
    fn subscribe(&self, device_id: &str) -> watch::Receiver<u64> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(device_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn wake<'a>(&self, devices: impl IntoIterator<Item = &'a String>) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        // Only the entries woken are looked at: a wake costs its devices, not every socket
        // of the node. Entries of closed sockets that are never woken stay until the next
        // wake_all: at most one per device of the org.
        for device in devices {
            let Some(sender) = channels.get(device) else {
                continue;
            };
            if sender.receiver_count() == 0 {
                channels.remove(device);
            } else {
                sender.send_modify(|n| *n += 1);
            }
        }
    }

    fn wake_all(&self) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, sender| sender.receiver_count() > 0);
        for sender in channels.values() {
            sender.send_modify(|n| *n += 1);
        }
    }

    fn connected(&self) -> usize {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.values().map(|s| s.receiver_count()).sum()
    }
}

/// Wakes a device's open WebSocket when something is appended for it, wherever it is
/// connected.
pub struct Notifier {
    local: Arc<LocalSockets>,
    /// On a bus, devices are named by [`WakeTags`], so NATS never carries a device id.
    tags: Option<WakeTags>,
    /// Hints for the other nodes, published by [`Bus`]'s task.
    outbox: Option<mpsc::UnboundedSender<NodeHint>>,
    /// The directory size another node last announced (`u64::MAX`: unknown, look again).
    directory: watch::Sender<u64>,
}

impl Default for Notifier {
    /// One node alone (SQLite): nobody else to tell.
    fn default() -> Self {
        Self {
            local: Arc::default(),
            tags: None,
            outbox: None,
            directory: watch::channel(0).0,
        }
    }
}

/// What NATS carries instead of device ids: HMAC-SHA256 of the id under a key every node
/// derives from the deployment's `directory.key`, cut to 128 bits. Someone reading the
/// subject learns when chats are busy, not which devices are in them.
#[derive(Clone)]
pub struct WakeTags {
    key: [u8; 32],
}

impl WakeTags {
    pub fn new(directory_key: &[u8; 32]) -> Self {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(directory_key)
            .expect("HMAC takes any key length");
        mac.update(b"vellum/nats-wake-tags/v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn tag(&self, device_id: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(device_id.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

impl Notifier {
    /// The key a device's socket is known by on this node (and on the bus).
    fn wake_key(&self, device_id: &str) -> String {
        match &self.tags {
            Some(tags) => tags.tag(device_id),
            None => device_id.to_owned(),
        }
    }

    pub fn subscribe(&self, device_id: &str) -> watch::Receiver<u64> {
        self.local.subscribe(&self.wake_key(device_id))
    }

    pub fn wake<'a>(&self, devices: impl IntoIterator<Item = &'a String>) {
        let keys: Vec<String> = devices.into_iter().map(|d| self.wake_key(d)).collect();
        self.local.wake(&keys);
        if let Some(outbox) = &self.outbox {
            if !keys.is_empty() {
                let _ = outbox.send(NodeHint::Wake { tags: keys });
            }
        }
    }

    /// Wakes every open WebSocket of every node: for rare org-wide changes (a legal hold
    /// placed or released), which any chat may show.
    pub fn wake_all(&self) {
        self.local.wake_all();
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(NodeHint::WakeAll);
        }
    }

    /// Tells the other nodes that the key directory grew to `size` entries.
    pub fn directory_grew(&self, size: u64) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(NodeHint::Directory { size });
        }
    }

    /// Changes each time another node says the key directory grew (or the bus came back
    /// after hints may have been lost).
    pub fn directory_changes(&self) -> watch::Receiver<u64> {
        self.directory.subscribe()
    }

    /// WebSockets open on this node.
    pub fn connected(&self) -> usize {
        self.local.connected()
    }
}

/// How a node on the shared database hears the others.
#[derive(Clone)]
pub struct BusConfig {
    /// Names devices on the bus.
    pub tags: WakeTags,
    /// The database's instance id: the deployment's subject.
    pub instance_id: String,
    /// How often every local socket is woken while there is no bus.
    pub poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("cannot subscribe to NATS at {address}: {reason}")]
    Subscribe { address: String, reason: String },
}

enum NatsCredentials {
    UserPassword(String, String),
    /// `nats://TOKEN@host`: a user part alone is NATS's token.
    Token(String),
}

/// The URL without its user part, and the credentials it carried (the NATS client does not
/// take them from the URL itself).
fn split_credentials(raw: &str) -> Result<(String, Option<NatsCredentials>), String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("not a NATS URL: {e}"))?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "the URL's credentials are not UTF-8".to_owned())
    };
    let user = decode(url.username())?;
    let password = url.password().map(decode).transpose()?;
    let credentials = match (user.is_empty(), password) {
        (true, None) => None,
        (_, Some(password)) => Some(NatsCredentials::UserPassword(user, password)),
        (false, None) => Some(NatsCredentials::Token(user)),
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url.to_string(), credentials))
}

/// `nats://user:password@host:port` as `host:port`: errors and logs never carry a password.
pub(crate) fn redacted_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    host.split(['/', '?']).next().unwrap_or(host).to_owned()
}

/// A connection to the NATS server, made first at start: a node that cannot reach it
/// stops before it writes anything.
pub struct NatsConnection {
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    address: String,
}

impl NatsConnection {
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let address = redacted_address(url);
        // Connection changes as they happen: a drop shorter than a poll interval still loses
        // the hints published meanwhile, so every reconnect wakes every socket.
        let (events_tx, events) = mpsc::unbounded_channel();
        let (url, credentials) = split_credentials(url).map_err(|reason| BusError::Connect {
            address: address.clone(),
            reason,
        })?;
        let options = match credentials {
            Some(NatsCredentials::UserPassword(user, password)) => {
                async_nats::ConnectOptions::new().user_and_password(user, password)
            }
            Some(NatsCredentials::Token(token)) => async_nats::ConnectOptions::new().token(token),
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            })
            .name("vellum-server")
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5)).min(2_000))
            })
            .connect(url.as_str())
            .await
            .map_err(|e| BusError::Connect {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            events,
            address,
        })
    }
}

impl Notifier {
    /// A notifier for a node of a deployment on the shared database: subscribes to the
    /// deployment's subject on `nats` and starts the tasks that publish this node's hints,
    /// apply the others', and poll while the bus is down (always, without `nats`).
    pub async fn with_bus(
        nats: Option<NatsConnection>,
        config: BusConfig,
    ) -> Result<Self, BusError> {
        let node = random_node_id();
        let local = Arc::new(LocalSockets::default());
        let directory = watch::channel(0).0;
        let Some(NatsConnection {
            client,
            events,
            address,
        }) = nats
        else {
            tracing::warn!(
                poll_ms = config.poll_interval.as_millis() as u64,
                "no --nats-url: this node wakes its devices by polling, so messages sent \
                 through other nodes arrive up to a poll interval late; every node of a \
                 deployment needs the same NATS, or none"
            );
            tokio::spawn(poll_without_bus(
                local.clone(),
                None,
                directory.clone(),
                config.poll_interval,
            ));
            return Ok(Self {
                local,
                tags: Some(config.tags),
                outbox: None,
                directory,
            });
        };
        let subject = node_subject(&config.instance_id);
        let subscription =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| BusError::Subscribe {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
        // A subscription is live once the server has it: flush, so that a node that says it
        // is listening hears every hint published from now on.
        client.flush().await.map_err(|e| BusError::Subscribe {
            address: address.clone(),
            reason: e.to_string(),
        })?;
        let (outbox, hints) = mpsc::unbounded_channel();
        tokio::spawn(publish_hints(client.clone(), subject, node.clone(), hints));
        tokio::spawn(apply_hints(
            subscription,
            node,
            local.clone(),
            directory.clone(),
        ));
        tokio::spawn(poll_without_bus(
            local.clone(),
            Some((client, events, outbox.clone())),
            directory.clone(),
            config.poll_interval,
        ));
        tracing::info!(nats = %address, "wakeups between nodes through NATS");
        Ok(Self {
            local,
            tags: Some(config.tags),
            outbox: Some(outbox),
            directory,
        })
    }
}

fn random_node_id() -> String {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).expect("operating system RNG");
    hex::encode(raw)
}

/// Publishes this node's hints, many wakes as one event where they queued up meanwhile.
async fn publish_hints(
    client: async_nats::Client,
    subject: String,
    node: String,
    mut hints: mpsc::UnboundedReceiver<NodeHint>,
) {
    while let Some(first) = hints.recv().await {
        let mut devices = HashSet::new();
        let mut wake_all = false;
        let mut directory = None;
        let mut take = |hint: NodeHint| match hint {
            NodeHint::Wake { tags } => devices.extend(tags),
            NodeHint::WakeAll => wake_all = true,
            NodeHint::Directory { size } => directory = directory.max(Some(size)),
        };
        take(first);
        while let Ok(hint) = hints.try_recv() {
            take(hint);
        }
        // While NATS is down the hints are dropped, not queued: the polling and the wake at
        // reconnect stand in for them, and memory stays bounded however long the outage.
        if client.connection_state() != async_nats::connection::State::Connected {
            continue;
        }
        let mut events = Vec::new();
        if wake_all {
            events.push(NodeHint::WakeAll);
        } else {
            let devices: Vec<String> = devices.into_iter().collect();
            for chunk in devices.chunks(DEVICES_PER_EVENT) {
                events.push(NodeHint::Wake {
                    tags: chunk.to_vec(),
                });
            }
        }
        events.extend(directory.map(|size| NodeHint::Directory { size }));
        for hint in events {
            let event = NodeEvent::new(&node, hint).to_bytes();
            // While disconnected the client queues and sends at reconnect; a hint that is
            // dropped anyway is covered by the polling and the wake at reconnect.
            if let Err(e) = client.publish(subject.clone(), event.into()).await {
                tracing::debug!(error = %e, "a wake hint was not published");
            }
        }
    }
}

/// Wakes this node's sockets for the other nodes' hints.
async fn apply_hints(
    mut subscription: async_nats::Subscriber,
    node: String,
    local: Arc<LocalSockets>,
    directory: watch::Sender<u64>,
) {
    use futures_util::StreamExt;
    while let Some(message) = subscription.next().await {
        let event = match NodeEvent::decode(&message.payload) {
            Ok(event) => event,
            Err(_) => {
                // Not the error's text: it would quote whatever someone published.
                tracing::warn!(
                    bytes = message.payload.len(),
                    "ignoring a malformed event on the nodes' subject"
                );
                continue;
            }
        };
        if event.node == node {
            continue;
        }
        match event.hint {
            NodeHint::Wake { tags } => local.wake(&tags),
            NodeHint::WakeAll => local.wake_all(),
            NodeHint::Directory { size } => {
                directory.send_modify(|heard| *heard = size);
            }
        }
    }
}

/// While the bus is down (always, without one), wakes every local socket each interval;
/// after every reconnect, wakes them once more and has the directory looked at again, for
/// the hints published while it was away.
async fn poll_without_bus(
    local: Arc<LocalSockets>,
    mut bus: Option<(
        async_nats::Client,
        mpsc::UnboundedReceiver<async_nats::Event>,
        mpsc::UnboundedSender<NodeHint>,
    )>,
    directory: watch::Sender<u64>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let look_again = |local: &LocalSockets| {
        local.wake_all();
        directory.send_modify(|heard| *heard = u64::MAX);
    };
    let mut down = false;
    loop {
        let event = match &mut bus {
            None => {
                tick.tick().await;
                look_again(&local);
                continue;
            }
            Some((_, events, _)) => tokio::select! {
                _ = tick.tick() => None,
                event = events.recv() => event,
            },
        };
        let connected = bus.as_ref().is_some_and(|(client, _, _)| {
            client.connection_state() == async_nats::connection::State::Connected
        });
        match event {
            Some(async_nats::Event::Disconnected) => {
                if !down {
                    tracing::warn!("the NATS connection is down: polling until it is back");
                }
                down = true;
                look_again(&local);
            }
            Some(async_nats::Event::Connected) => {
                if down {
                    tracing::info!("the NATS connection is back");
                    // The hints this node dropped while away were for the other nodes'
                    // devices too: they look again as well.
                    if let Some((_, _, outbox)) = &bus {
                        let _ = outbox.send(NodeHint::WakeAll);
                        let _ = outbox.send(NodeHint::Directory { size: u64::MAX });
                    }
                }
                down = false;
                look_again(&local);
            }
            // NATS dropped messages this node did not read in time: some were hints.
            Some(async_nats::Event::SlowConsumer(_)) => look_again(&local),
            Some(_) => {}
            None if down || !connected => {
                if !down {
                    tracing::warn!("the NATS connection is down: polling until it is back");
                }
                down = !connected;
                look_again(&local);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_13_nats_credentials_are_taken_from_the_url() {
        let (url, credentials) = split_credentials("nats://ops:p%40ss@127.0.0.1:4222").unwrap();
        assert_eq!(url, "nats://127.0.0.1:4222");
        assert!(
            matches!(credentials, Some(NatsCredentials::UserPassword(u, p)) if u == "ops" && p == "p@ss")
        );
        let (url, credentials) = split_credentials("nats://s3cr3t@nats.example:4222").unwrap();
        assert_eq!(url, "nats://nats.example:4222");
        assert!(matches!(credentials, Some(NatsCredentials::Token(t)) if t == "s3cr3t"));
        let (url, credentials) = split_credentials("nats://127.0.0.1:4222").unwrap();
        assert_eq!(url, "nats://127.0.0.1:4222");
        assert!(credentials.is_none());
        let err = split_credentials("not a url").err().unwrap();
        assert!(err.contains("not a NATS URL"), "{err}");
    }

    #[test]
    fn issue_13_addresses_in_errors_carry_no_password() {
        assert_eq!(
            redacted_address("nats://alice:s3cret@nats.example:4222"),
            "nats.example:4222"
        );
        assert_eq!(redacted_address("nats://127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(redacted_address("127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(
            redacted_address("postgres://u:p@db:5432/vellum?sslmode=disable"),
            "db:5432"
        );
    }

    #[test]
    fn issue_13_nats_names_devices_by_keyed_tags_only() {
        let tags = WakeTags::new(&[1; 32]);
        let tag = tags.tag("alice-1");
        assert_eq!(tag.len(), 32);
        assert!(!tag.contains("alice"));
        assert_eq!(tag, tags.tag("alice-1"), "every node derives the same tag");
        assert_ne!(tag, tags.tag("alice-2"));
        assert_ne!(
            tag,
            WakeTags::new(&[2; 32]).tag("alice-1"),
            "another deployment's key"
        );
        // A notifier on a bus keys its sockets by tag, so a wake heard from NATS finds them.
        let notifier = Notifier {
            tags: Some(tags.clone()),
            ..Notifier::default()
        };
        let alice = notifier.subscribe("alice-1");
        notifier.local.wake(&[tag]);
        assert!(alice.has_changed().unwrap());
    }

    #[tokio::test]
    async fn issue_13_a_wake_reaches_only_the_devices_named() {
        let notifier = Notifier::default();
        let mut alice = notifier.subscribe("alice-1");
        let bob = notifier.subscribe("bob-1");
        notifier.wake(&["alice-1".to_owned()]);
        assert!(alice.has_changed().unwrap());
        assert!(!bob.has_changed().unwrap());
        alice.mark_unchanged();
        notifier.wake_all();
        assert!(alice.has_changed().unwrap() && bob.has_changed().unwrap());
        assert_eq!(notifier.connected(), 2);
        drop(bob);
        notifier.wake_all();
        assert_eq!(notifier.connected(), 1);
    }
}
