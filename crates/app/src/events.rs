//! The live stream the page listens to (`GET /api/events`, server-sent events).
//! See /work/notes/app-contract.md for every event's shape.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::api::view::Message;
use crate::AppState;

/// How often an idle stream sends a comment, so that nothing between closes it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event on the stream; `type` names it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppEvent {
    /// A message is new or changed (edit, reaction, delivered, archived): the page inserts
    /// or replaces it by id.
    Message { chat: String, message: Box<Message> },
    /// A message left this device (expired, burned, deleted): the page drops it at once.
    Gone {
        chat: String,
        id: String,
        /// `expired`, `burned` or `deleted`.
        reason: &'static str,
    },
    /// The chat list changed (a new chat, a title, unread counts): the page reloads it.
    Chats,
    /// This chat's settings or members changed: the page reloads it.
    Chat { chat: String },
    /// The user's devices changed: the page reloads them.
    Devices,
    /// An upload to the delivery server went on.
    Progress {
        upload_id: String,
        done: u64,
        total: u64,
    },
    /// The link to the delivery server, and the archive's and directory's alarms.
    /// `pending`: online, but this device waits for approval (it receives nothing yet).
    Connection {
        online: bool,
        pending: bool,
        alarms: Vec<String>,
    },
    /// This stream fell behind and missed events (a `gone` among them, perhaps): the page
    /// reloads the chat list and the open chat rather than keep what may be gone.
    Resync,
    /// This device was revoked and its profile wiped: the page drops everything it shows.
    Revoked,
}

impl AppEvent {
    /// The event as one `data:` frame.
    fn frame(&self) -> Event {
        Event::default().data(serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned()))
    }
}

/// The next frame for a receiver: an event, or — when this receiver fell behind and
/// missed some — `resync`, so that the page reloads the list and the open chat (a missed
/// `gone` must not leave a message on screen). `None` when the sender is gone.
async fn next_frame(events: &mut broadcast::Receiver<AppEvent>) -> Option<AppEvent> {
    match events.recv().await {
        Ok(event) => Some(event),
        Err(broadcast::error::RecvError::Lagged(_)) => Some(AppEvent::Resync),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

fn stream(
    first: Option<AppEvent>,
    events: broadcast::Receiver<AppEvent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = futures_util::stream::iter(first.map(|e| Ok(e.frame())));
    let rest = futures_util::stream::unfold(events, |mut events| async move {
        let event = next_frame(&mut events).await?;
        Some((Ok(event.frame()), events))
    });
    futures_util::StreamExt::chain(first, rest)
}

/// `GET /api/events`: the live stream.
pub async fn serve(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed first, then the state read: a change in between is on the stream too.
    let events = state.events.subscribe();
    let first = crate::live::connection(state.security.authority()).map(|link| link.event());
    Sse::new(stream(first, events)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type() {
        let gone = AppEvent::Gone {
            chat: "c".into(),
            id: "m".into(),
            reason: "burned",
        };
        assert_eq!(
            serde_json::to_value(&gone).unwrap(),
            serde_json::json!({"type": "gone", "chat": "c", "id": "m", "reason": "burned"})
        );
        let online = AppEvent::Connection {
            online: false,
            pending: false,
            alarms: vec![],
        };
        assert_eq!(
            serde_json::to_value(&online).unwrap(),
            serde_json::json!({"type": "connection", "online": false, "pending": false, "alarms": []})
        );
    }

    /// A page that fell behind reloads everything it shows (not only the list), so that a
    /// missed `gone` cannot leave a deleted message on screen.
    #[tokio::test]
    async fn issue_12_a_lagged_receiver_gets_resync() {
        let (sender, mut receiver) = broadcast::channel(2);
        for i in 0..5 {
            sender
                .send(AppEvent::Chat {
                    chat: format!("c{i}"),
                })
                .unwrap();
        }
        let lagged = next_frame(&mut receiver).await.unwrap();
        assert_eq!(
            serde_json::to_value(&lagged).unwrap(),
            serde_json::json!({"type": "resync"})
        );
        assert!(matches!(
            next_frame(&mut receiver).await,
            Some(AppEvent::Chat { .. })
        ));
        drop(sender);
        receiver.recv().await.ok();
        assert!(next_frame(&mut receiver).await.is_none());
    }
}
