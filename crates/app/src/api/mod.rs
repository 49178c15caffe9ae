//! The JSON API the page calls. Every route is behind `security::guard`.

mod chat_list;
mod chats;
mod devices;
mod directory;
mod enroll;
pub mod files;
mod input;
mod messages;
mod policy;
mod safety;
mod session;
pub mod view;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/session", get(session::show))
        .route("/enroll", post(enroll::enroll))
        .route("/chats/{id}", get(chats::show))
        .route("/chats/{id}/settings", post(chats::settings))
        .route("/chats/{id}/members", post(chats::members))
        .route("/chats/{id}/admins", post(chats::admins))
        .route("/chats/{id}/leave", post(chats::leave))
        .route(
            "/chats/{id}/messages/{mid}/files/{index}",
            get(files::download),
        )
        .route("/uploads", post(files::upload))
        .route("/uploads/{id}", axum::routing::delete(files::discard))
        .route("/directory", get(directory::list))
        .route("/devices", get(devices::list))
        .route("/devices/{id}/approve", post(devices::approve))
        .route("/devices/{id}/revoke", post(devices::revoke))
        .route("/safety/{user}", get(safety::show))
        .route("/safety/{user}/confirm", post(safety::confirm))
        // The chat list and a conversation's messages (issue 12, core).
        .route("/events", get(crate::events::serve))
        .route("/chats", get(chat_list::list).post(chats::create))
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
