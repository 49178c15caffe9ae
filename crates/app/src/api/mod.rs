//! The JSON API the page calls. Every route is behind `security::guard`.

mod chat_list;
mod messages;
mod session;
pub mod view;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", get(session::show))
        // The chat list and a conversation's messages (issue 12, core).
        .route("/events", get(crate::events::serve))
        .route("/chats", get(chat_list::list))
        .route(
            "/chats/{id}/messages",
            get(messages::page).post(messages::send),
        )
        .route("/chats/{id}/messages/{mid}/edit", post(messages::edit))
        .route("/chats/{id}/messages/{mid}/react", post(messages::react))
        .route("/chats/{id}/messages/{mid}/delete", post(messages::delete))
        .route("/chats/{id}/messages/{mid}/reveal", post(messages::reveal))
        .route("/chats/{id}/read", post(messages::read))
}
