use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use vellum_wire::Wake;

use crate::auth::AuthedDevice;
use crate::state::AppState;

/// `GET /v1/ws`: a signed upgrade; the server then sends a [`Wake`] frame whenever something
/// is appended for this device (and once on connect). Content is always fetched by `/v1/sync`.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Extension(me): Extension<AuthedDevice>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let wakes = state.notifier.subscribe(&me.device_id);
    upgrade
        .max_message_size(4096)
        .on_upgrade(move |socket| push_wakes(socket, wakes))
}

async fn push_wakes(mut socket: WebSocket, mut wakes: tokio::sync::watch::Receiver<u64>) {
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
    let mut keepalive = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            changed = wakes.changed() => {
                if changed.is_err() || socket.send(frame()).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                // Clients say nothing but pings and close; anything else ends the session.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return,
            },
            _ = keepalive.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
