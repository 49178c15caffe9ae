//! What keeps the window live while it is open: the delivery server's wake-up WebSocket
//! (each wake-up runs `sync` on the device thread and puts what it found on the event
//! stream) and the shredder (every [`SHRED_TICK`], each shredded message becomes `gone`).
//!
//! The socket lives on the serving runtime; only the device work (sync, shred) runs on the
//! device thread, between requests.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use vellum_client::{ChatEvent, Client, MessageKind, Shredded, SHRED_TICK};
use vellum_http::ApiError;

use crate::api::view;
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::AppState;

/// The longest wait between two attempts to reach the delivery server.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an unenrolled window looks whether enrollment happened.
const ENROLL_POLL: Duration = Duration::from_millis(500);

/// Starts the wake-up loop and the shredder; they run until the runtime stops.
pub fn spawn(state: AppState) -> (JoinHandle<()>, JoinHandle<()>) {
    (
        tokio::spawn(wakeups(state.clone())),
        tokio::spawn(shredder(state)),
    )
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

/// The link to the delivery server of each window this process serves (by its listener's
/// authority), for a page that subscribes after the last change: its stream starts with it.
/// A map, not a field of `AppState`, so that the state's other users are left as they are.
static CONNECTIONS: std::sync::Mutex<Option<std::collections::HashMap<String, bool>>> =
    std::sync::Mutex::new(None);

fn set_connection(authority: &str, online: bool) {
    let mut map = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    map.get_or_insert_with(Default::default)
        .insert(authority.to_owned(), online);
}

/// The window's link to the delivery server as last seen; `None` before the first attempt.
pub fn connection(authority: &str) -> Option<bool> {
    let map = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    map.as_ref().and_then(|m| m.get(authority).copied())
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

/// Keeps the wake-up socket open, reconnecting with backoff; syncs on each wake-up.
async fn wakeups(state: AppState) {
    let mut backoff = Duration::from_millis(250);
    let mut online: Option<bool> = None;
    let mut refused_before = false;
    let set_online = |online: &mut Option<bool>, now: bool| {
        set_connection(state.security.authority(), now);
        if *online != Some(now) {
            *online = Some(now);
            let _ = state.events.send(AppEvent::Connection {
                online: now,
                alarms: Vec::new(),
            });
        }
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
                set_online(&mut online, true);
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
                set_online(&mut online, false);
            }
            Err(e) => {
                // Said again on every attempt, not only on the change: a page opened while
                // offline learns it within one backoff.
                online = None;
                set_online(&mut online, false);
                tracing::warn!(error = %e, "delivery server unreachable; retrying");
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
        Err(e) => tracing::warn!(code = e.code, "sync failed"),
    }
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
        Err(e) if events.is_empty() => return Err(e),
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
