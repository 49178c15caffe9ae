use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use tokio::time::Instant;
use vellum_http::ApiError;
use vellum_wire::Wake;

use crate::api::ErrorBody;
use crate::auth::AuthedDevice;
use crate::state::AppState;

/// Clients send nothing but pings, pongs and close: small buffers keep idle sockets cheap.
const WS_BUFFER_BYTES: usize = 4096;

/// A signed WebSocket upgrade; the server then sends a `{"pending": true}` frame whenever
/// something is appended for this device (and once on connect). Content is always fetched by
/// `/v1/sync`. Idle sockets are pinged; one that stops answering is closed.
#[utoipa::path(get, path = "/v1/ws", tag = "sync",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 101, description = "Switching to WebSocket; frames are JSON Wake objects"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Extension(me): Extension<AuthedDevice>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::from_status(e.status()))?;
    let wakes = state.notifier.subscribe(&me.device_id);
    let (ping_every, pong_within) = (state.config.ws_ping_interval, state.config.ws_pong_timeout);
    Ok(upgrade
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .max_write_buffer_size(4 * WS_BUFFER_BYTES)
        .max_message_size(WS_BUFFER_BYTES)
        .max_frame_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| push_wakes(socket, wakes, ping_every, pong_within)))
}

async fn push_wakes(
    mut socket: WebSocket,
    mut wakes: tokio::sync::watch::Receiver<u64>,
    ping_every: std::time::Duration,
    pong_within: std::time::Duration,
) {
    let frame = || {
        Message::Text(
            serde_json::to_string(&Wake { pending: true })
                .expect("wake serialises")
                .into(),
        )
    };
    if socket.send(frame()).await.is_err() {
        return;
    }
    let mut keepalive = tokio::time::interval(ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            changed = wakes.changed() => {
                if changed.is_err() || socket.send(frame()).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients say nothing but pings and close; anything else ends the session.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => heard = Instant::now(),
                _ => return,
            },
            _ = keepalive.tick() => {
                if heard.elapsed() > pong_within {
                    tracing::debug!("closing a WebSocket that stopped answering pings");
                    return;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
