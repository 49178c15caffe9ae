//! What keeps the window live while it is open: the delivery server's wake-up WebSocket
//! (each wake-up runs `sync` on the device thread and puts what it found on the event
//! stream) and the shredder (every [`SHRED_TICK`], each shredded message becomes `gone`).
//!
//! The socket lives on the serving runtime; only the device work (sync, shred) runs on the
//! device thread, between requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use vellum_client::{ChatEvent, Client, MessageKind, Shredded, SHRED_TICK};
use vellum_http::ApiError;

use crate::api::view::{self, Receipts};
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::AppState;

/// The longest wait between two attempts to reach the delivery server.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an unenrolled window looks whether enrollment happened.
const ENROLL_POLL: Duration = Duration::from_millis(500);

/// Starts the wake-up loop, the shredder and the receipt watch; they run until the
/// runtime stops.
pub fn spawn(state: AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(wakeups(state.clone())),
        tokio::spawn(shredder(state.clone())),
        tokio::spawn(receipts(state)),
    ]
}

/// Every [`SHRED_TICK`]: shreds what is due and tells the page.
async fn shredder(state: AppState) {
    let mut tick = tokio::time::interval(SHRED_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut swept = None;
    loop {
        tick.tick().await;
        // Staged uploads the page never sent (older than their TTL) go too, once a minute.
        if crate::api::files::sweep_due(&mut swept) {
            let home = state.home.clone();
            tokio::task::spawn_blocking(move || {
                crate::api::files::clear_staging(&home, Some(crate::api::files::STAGED_TTL))
            });
        }
        let shredded = state
            .device
            .run(async |device: &mut Device| match device {
                Device::Enrolled(client) => client.shred().map_err(client_error),
                Device::Unenrolled { .. } => Ok(Vec::new()),
            })
            .await;
        match shredded {
            Ok(shredded) => announce_shredded(&state, &shredded),
            // The device thread stopped: the window is closing.
            Err(e) if e.code == "stopped" => return,
            Err(e) => tracing::warn!(code = e.code, "shredder run failed"),
        }
    }
}

/// The link to the delivery server as the page is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub online: bool,
    /// Online, but this device waits for approval: it receives nothing yet.
    pub pending: bool,
}

impl Link {
    pub fn event(self) -> AppEvent {
        AppEvent::Connection {
            online: self.online,
            pending: self.pending,
            alarms: Vec::new(),
        }
    }
}

/// What the live loop keeps of each window this process serves (by its listener's
/// authority): the link as last seen, for a page that subscribes after the last change (its
/// stream starts with it), and the chats pages opened, whose receipts it watches. A map, not
/// a field of `AppState`, so that the state's other users are left as they are.
#[derive(Default)]
struct WindowLive {
    link: Option<Link>,
    open: HashMap<String, OpenChat>,
    /// Wakes the receipt watch (after a sync).
    nudge: Arc<Notify>,
}

/// A chat a page opened: the receipts of its own messages as last shown, from `from_seq`
/// (the oldest message a page of it showed; older ones are not on any page).
struct OpenChat {
    asked: Instant,
    from_seq: u64,
    shown: HashMap<String, Receipts>,
}

static WINDOWS: std::sync::Mutex<Option<HashMap<String, WindowLive>>> = std::sync::Mutex::new(None);

fn with_window<T>(authority: &str, f: impl FnOnce(&mut WindowLive) -> T) -> T {
    let mut map = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    f(map
        .get_or_insert_with(Default::default)
        .entry(authority.to_owned())
        .or_default())
}

fn set_connection(authority: &str, link: Link) {
    with_window(authority, |w| w.link = Some(link));
}

/// The window's link to the delivery server as last seen; `None` before the first attempt.
pub fn connection(authority: &str) -> Option<Link> {
    with_window(authority, |w| w.link)
}

/// How long a chat a page opened stays watched for receipts without being asked again.
const OPEN_FOR: Duration = Duration::from_secs(30 * 60);
/// How often the receipts of the open chats are looked at (delivery is the server's: it
/// tells no one when a member's device fetched a message).
pub const RECEIPT_POLL: Duration = Duration::from_secs(3);
/// How many of the newest own messages of an open chat are watched.
const WATCHED: usize = 200;

/// A page was served messages of `chat` (oldest `from_seq`) with these receipts on the
/// user's own ones: from now on a change of them is announced.
pub fn chat_opened(
    authority: &str,
    chat: &str,
    from_seq: Option<u64>,
    shown: impl IntoIterator<Item = (String, Receipts)>,
) {
    with_window(authority, |w| {
        let open = w.open.entry(chat.to_owned()).or_insert_with(|| OpenChat {
            asked: Instant::now(),
            from_seq: u64::MAX,
            shown: HashMap::new(),
        });
        open.asked = Instant::now();
        // An empty page: anything later is new to the page.
        open.from_seq = open.from_seq.min(from_seq.unwrap_or(0));
        open.shown.extend(shown);
        w.nudge.notify_one();
    });
}

/// Every [`RECEIPT_POLL`], and after each sync: refreshes the delivery state of the chats
/// pages have open and announces each own message whose counts changed.
async fn receipts(state: AppState) {
    let authority = state.security.authority().to_owned();
    let nudge = with_window(&authority, |w| w.nudge.clone());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECEIPT_POLL) => {}
            _ = nudge.notified() => {}
        }
        // Nobody listens: nothing to tell (a closed tab's stream is gone).
        if state.events.receiver_count() == 0 {
            continue;
        }
        let open: Vec<(String, u64, HashMap<String, Receipts>)> = with_window(&authority, |w| {
            w.open.retain(|_, o| o.asked.elapsed() < OPEN_FOR);
            w.open
                .iter()
                .map(|(chat, o)| (chat.clone(), o.from_seq, o.shown.clone()))
                .collect()
        });
        for (chat, from_seq, shown) in open {
            let group = chat.clone();
            let changed = state
                .device
                .run(async move |device: &mut Device| match device {
                    Device::Enrolled(client) => {
                        receipt_changes(client, &group, from_seq, &shown).await
                    }
                    Device::Unenrolled { .. } => Ok((Vec::new(), Vec::new())),
                })
                .await;
            match changed {
                Ok((counts, messages)) => {
                    with_window(&authority, |w| {
                        if let Some(open) = w.open.get_mut(&chat) {
                            open.shown.extend(counts);
                        }
                    });
                    for message in messages {
                        let _ = state.events.send(AppEvent::Message {
                            chat: chat.clone(),
                            message: Box::new(message),
                        });
                    }
                }
                Err(e) if e.code == "stopped" => return,
                Err(e) => tracing::debug!(code = e.code, "receipts not refreshed"),
            }
        }
    }
}

/// The counts of the chat's watched own messages that differ from those `shown`, and the
/// messages to announce for them.
async fn receipt_changes(
    client: &mut Client,
    chat: &str,
    from_seq: u64,
    shown: &HashMap<String, Receipts>,
) -> Result<(Vec<(String, Receipts)>, Vec<view::Message>), ApiError> {
    // Offline, the stored state still counts read markers a sync brought.
    if let Err(e) = client.refresh_delivery(chat).await {
        tracing::debug!(error = %e, "delivery state not refreshed");
    }
    let own = client
        .store()
        .own_sent(chat, client.user(), WATCHED)
        .map_err(client_error)?;
    let mut counts = Vec::new();
    let mut messages = Vec::new();
    for (id, seq) in own.into_iter().filter(|(_, seq)| *seq >= from_seq) {
        let (delivered, read) = client
            .store()
            .receipt_counts(chat, seq, client.user())
            .map_err(client_error)?;
        let now = Receipts { delivered, read };
        // A message newer than the page was announced when it came, with none yet.
        let before = shown.get(&id).copied().unwrap_or(Receipts {
            delivered: 0,
            read: 0,
        });
        if before != now {
            if let Some(row) = client.store().message(chat, &id).map_err(client_error)? {
                messages.push(view::message(client, &row).map_err(client_error)?);
                counts.push((id, now));
            }
        }
    }
    Ok((counts, messages))
}

/// Tells every view that these messages left the device.
pub fn announce_shredded(state: &AppState, shredded: &[Shredded]) {
    for s in shredded {
        let _ = state.events.send(AppEvent::Gone {
            chat: s.group_id.clone(),
            id: s.id.clone(),
            reason: s.reason.as_str(),
        });
    }
    if !shredded.is_empty() {
        let _ = state.events.send(AppEvent::Chats);
    }
}

/// The signed wake-up request, once the device is enrolled.
async fn wakeup_request(state: &AppState) -> Result<Option<Request>, ApiError> {
    state
        .device
        .run(async |device: &mut Device| match device {
            Device::Enrolled(client) => client.wakeup_request().map(Some).map_err(client_error),
            Device::Unenrolled { .. } => Ok(None),
        })
        .await
}

/// How often a device waiting for approval looks at its standing (it shows its code as
/// soon as the approving device started, and takes its identity once approved).
pub const PENDING_POLL: Duration = Duration::from_secs(2);

/// Whether this device waits for approval (it holds no identity key yet), as the session
/// says it.
async fn is_pending(state: &AppState) -> Result<bool, ApiError> {
    state
        .device
        .run(async |device: &mut Device| match device {
            Device::Enrolled(client) => Ok(client.user() != vellum_wire::RECORDS_USER
                && !client.holds_identity().map_err(client_error)?),
            Device::Unenrolled { .. } => Ok(false),
        })
        .await
}

/// This device's row in its user's device list: its code (once the approving device
/// started) and state. Runs the waiting device's steps (`Client::devices`).
async fn standing(state: &AppState) -> Result<(Option<String>, String, bool), ApiError> {
    state
        .device
        .run(async |device: &mut Device| {
            let view = device.with_client(async |c| c.devices().await).await?;
            let client = device.client()?;
            let holds = client.holds_identity().map_err(client_error)?;
            let me = view.devices.iter().find(|d| d.this_device);
            Ok((
                me.and_then(|d| d.code.clone()),
                me.map(|d| format!("{:?}", d.state)).unwrap_or_default(),
                holds,
            ))
        })
        .await
}

/// A device waiting for approval: online but pending. Looks every [`PENDING_POLL`] and
/// tells the page when its code or state changes; returns once approved (false: the device
/// thread stopped).
async fn await_approval(state: &AppState, link: &mut Option<Link>) -> bool {
    let mut seen: Option<(Option<String>, String)> = None;
    loop {
        match standing(state).await {
            Ok((_, _, true)) => {
                // Approved: it holds its identity now. Everything the page shows changes.
                let _ = state.events.send(AppEvent::Devices);
                let _ = state.events.send(AppEvent::Chats);
                return true;
            }
            Ok((code, device_state, false)) => {
                announce_link(
                    state,
                    link,
                    Link {
                        online: true,
                        pending: true,
                    },
                );
                let now = (code, device_state);
                if seen.as_ref() != Some(&now) {
                    // Not on the first look: the page loads its devices when it starts.
                    if seen.is_some() {
                        let _ = state.events.send(AppEvent::Devices);
                    }
                    seen = Some(now);
                }
            }
            Err(e) if e.code == "stopped" => return false,
            Err(e) => {
                tracing::warn!(code = e.code, "cannot look at this device's approval");
                announce_link(
                    state,
                    link,
                    Link {
                        online: false,
                        pending: true,
                    },
                );
                // Not approved after all (revoked, wiped): the caller judges by a sync.
                if !matches!(is_pending(state).await, Ok(true)) {
                    return true;
                }
            }
        }
        tokio::time::sleep(PENDING_POLL).await;
    }
}

/// Records the link and tells the page when it changed.
fn announce_link(state: &AppState, link: &mut Option<Link>, now: Link) {
    set_connection(state.security.authority(), now);
    if *link != Some(now) {
        *link = Some(now);
        let _ = state.events.send(now.event());
    }
}

/// Keeps the wake-up socket open, reconnecting with backoff; syncs on each wake-up. A
/// device waiting for approval is refused the socket: it is online but pending until
/// approved, then goes on here.
async fn wakeups(state: AppState) {
    let mut backoff = Duration::from_millis(250);
    let mut link: Option<Link> = None;
    let mut refused_before = false;
    let online = |now: bool| Link {
        online: now,
        pending: false,
    };
    loop {
        let request = match wakeup_request(&state).await {
            Ok(Some(request)) => request,
            Ok(None) => {
                tokio::time::sleep(ENROLL_POLL).await;
                continue;
            }
            Err(e) if e.code == "stopped" => return,
            Err(e) => {
                tracing::warn!(code = e.code, "cannot build the wake-up request");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut socket, _)) => {
                announce_link(&state, &mut link, online(true));
                backoff = Duration::from_millis(250);
                // Connected first, then synced: nothing sent in between is missed.
                sync(&state).await;
                while let Some(frame) = socket.next().await {
                    let Ok(frame) = frame else { break };
                    if frame.is_close() {
                        break;
                    }
                    if !frame.is_text() {
                        continue;
                    }
                    // Wake-ups that queued up meanwhile are all answered by one sync.
                    let mut closed = false;
                    while let Some(queued) = futures_util::FutureExt::now_or_never(socket.next()) {
                        match queued {
                            Some(Ok(f)) if !f.is_close() => {}
                            _ => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    sync(&state).await;
                    if closed {
                        break;
                    }
                }
                announce_link(&state, &mut link, online(false));
            }
            Err(e) => {
                let forbidden = matches!(
                    &e,
                    tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403
                );
                // Refused because this device waits for approval: not offline.
                if forbidden && matches!(is_pending(&state).await, Ok(true)) {
                    if !await_approval(&state, &mut link).await {
                        return;
                    }
                    announce_link(&state, &mut link, online(true));
                    backoff = Duration::from_millis(250);
                    continue;
                }
                // Said again on every attempt, not only on the change: a page opened while
                // offline learns it within one backoff.
                link = None;
                announce_link(&state, &mut link, online(false));
                tracing::warn!(error = %e, "no live connection to the delivery server; retrying");
                // A refused socket is judged by a plain sync: a revoked device is told so,
                // and a server that started after the request's timestamp tells its start
                // (the client signs from it on), so the next attempt goes at once.
                sync(&state).await;
                let refused = matches!(
                    &e,
                    tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401
                );
                if refused && !refused_before {
                    refused_before = true;
                    continue;
                }
            }
        }
        refused_before = false;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one sync on the device thread and puts what it found on the event stream.
pub async fn sync(state: &AppState) {
    let events = state
        .device
        .run(async |device: &mut Device| match device {
            Device::Enrolled(client) => sync_events(client).await,
            Device::Unenrolled { .. } => Ok(Vec::new()),
        })
        .await;
    match events {
        Ok(events) => {
            for event in events {
                let _ = state.events.send(event);
            }
        }
        Err(e) if e.code == crate::error::REVOKED => {
            let _ = state.events.send(AppEvent::Revoked);
        }
        Err(e) => tracing::warn!(code = e.code, "sync failed"),
    }
    // A sync may have brought read markers; delivery may have moved meanwhile.
    with_window(state.security.authority(), |w| w.nudge.notify_one());
}

/// A sync's findings as the page's events: each new or changed message (a reaction or an
/// edit changes its target), each deletion, and a reload of the chat list and of every
/// chat whose settings or members an event changed.
async fn sync_events(client: &mut Client) -> Result<Vec<AppEvent>, ApiError> {
    let synced = client.sync().await;
    let deleted = client.take_deleted();
    let rows = synced.map_err(client_error);
    let mut events = Vec::new();
    for (chat, id) in &deleted {
        events.push(AppEvent::Gone {
            chat: chat.clone(),
            id: id.clone(),
            reason: "deleted",
        });
    }
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) if events.is_empty() || e.code == crate::error::REVOKED => return Err(e),
        Err(e) => {
            tracing::warn!(code = e.code, "sync stopped part-way");
            events.push(AppEvent::Chats);
            return Ok(events);
        }
    };
    let mut changed_chats: Vec<String> = Vec::new();
    for row in &rows {
        let shown = match row.kind {
            MessageKind::Text | MessageKind::Event => Some(row.clone()),
            MessageKind::Reaction | MessageKind::Edit => {
                match row.event.as_ref().and_then(|e| e.target()) {
                    Some(target) => client
                        .store()
                        .message(&row.group_id, target)
                        .map_err(client_error)?,
                    None => None,
                }
            }
        };
        if let Some(shown) = shown {
            let message = view::message(client, &shown).map_err(client_error)?;
            events.push(AppEvent::Message {
                chat: shown.group_id.clone(),
                message: Box::new(message),
            });
        }
        if row.kind == MessageKind::Event && !changed_chats.contains(&row.group_id) {
            changed_chats.push(row.group_id.clone());
        }
    }
    events.extend(
        changed_chats
            .into_iter()
            .map(|chat| AppEvent::Chat { chat }),
    );
    // A device came, went or was revoked: the devices screen reloads.
    let devices_changed = rows.iter().any(|row| {
        matches!(
            row.event,
            Some(
                ChatEvent::DeviceAdded { .. }
                    | ChatEvent::DeviceRemoved { .. }
                    | ChatEvent::DeviceRevoked { .. }
                    | ChatEvent::IdentityReset { .. }
                    | ChatEvent::UnvouchedDeviceRemoved { .. }
            )
        )
    });
    if devices_changed {
        events.push(AppEvent::Devices);
    }
    if !rows.is_empty() || !deleted.is_empty() {
        events.push(AppEvent::Chats);
    }
    Ok(events)
}
