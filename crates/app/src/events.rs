//! The live stream the page listens to (`GET /api/events`, server-sent events).
//! See /work/notes/app-contract.md for every event's shape.

use serde::Serialize;

/// One event on the stream; `type` names it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AppEvent {
    /// The chat list changed (a new chat, a title, unread counts): the page reloads it.
    Chats,
    /// This chat's settings or members changed: the page reloads `/api/chats/{id}`.
    Chat { chat: String },
    /// The user's devices changed: the page reloads `/api/devices`.
    Devices,
    /// An upload to the delivery server advanced (`done` of `total` bytes).
    Progress {
        upload_id: String,
        done: u64,
        total: u64,
    },
}
