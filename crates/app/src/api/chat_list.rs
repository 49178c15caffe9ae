//! `GET /api/chats`: the chat list, latest activity first.

use axum::extract::State;
use serde::Serialize;
use vellum_client::Client;
use vellum_http::{ApiError, Json};

use crate::api::view::{self, ChatSummary};
use crate::device::Device;
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct ChatList {
    pub chats: Vec<ChatSummary>,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<ChatList>, ApiError> {
    let chats = state
        .device
        .run(async |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    // What is due goes first, and as `gone` (the unread count would shred
                    // it silently).
                    let shredded = client.shred()?;
                    Ok((view::chat_list(client)?, shredded))
                })
                .await
        })
        .await?;
    let (chats, shredded) = chats;
    crate::live::announce_shredded(&state, &shredded);
    Ok(Json(ChatList { chats }))
}
