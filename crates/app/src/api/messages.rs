//! A conversation's messages: paged history, send, edit, react, delete, reveal, read.
//! See /work/notes/app-contract.md ("Messages"). Every handler's device work runs on the
//! device thread; what changed is also broadcast on the event stream, so that a second
//! window (and this one's other views) follow.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use vellum_client::{Client, HistoryCursor, MessageTimers, OutgoingMessage};
use vellum_http::{ApiError, Json, Path, Query};

use crate::api::view::{self, Message};
use crate::device::Device;
use crate::events::AppEvent;
use crate::AppState;

/// A page's size when the page does not say.
pub const DEFAULT_PAGE: usize = 50;
/// The largest page a request may ask for.
pub const MAX_PAGE: usize = 200;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    before: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Page {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// The cursor of the page before this one; `None`: nothing older.
    pub before: Option<String>,
}

/// `GET /api/chats/{id}/messages?before&limit`: a page of the history from the newest back.
/// Displays nothing by itself: the page says what it showed with `read`, and a sealed
/// message opens only with `reveal`.
pub async fn page(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let before = query
        .before
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(str::parse::<HistoryCursor>)
        .transpose()
        .map_err(|_| ApiError::bad_request("not a cursor this window gave out"))?;
    let page = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    // What is due goes first, and as `gone` to every view (the page's own
                    // read would shred it silently).
                    let shredded = client.shred()?;
                    let group_id = client.resolve_chat(&chat)?;
                    let (rows, older) = client.history_page(&chat, before.as_ref(), limit)?;
                    let messages = rows
                        .iter()
                        .map(|row| view::message(client, row))
                        .collect::<Result<Vec<_>, _>>()?;
                    let page = Page {
                        messages,
                        before: older.map(|c| c.to_string()),
                    };
                    let from_seq = rows.iter().filter_map(|r| r.seq).min();
                    Ok((page, shredded, group_id, from_seq))
                })
                .await
        })
        .await?;
    let (page, shredded, group_id, from_seq) = page;
    crate::live::announce_shredded(&state, &shredded);
    // The page shows this chat: changes of its own messages' receipts are announced.
    let shown = page
        .messages
        .iter()
        .filter_map(|m| m.receipts.map(|r| (m.id.clone(), r)));
    crate::live::chat_opened(state.security.authority(), &group_id, from_seq, shown);
    Ok(Json(page))
}

#[derive(Debug, Deserialize)]
pub struct SendBody {
    text: String,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    expire_secs: Option<u64>,
    #[serde(default)]
    burn_secs: Option<u64>,
    /// Staged uploads (`POST /api/uploads`) to send with the message.
    #[serde(default)]
    uploads: Vec<String>,
}

/// `POST /api/chats/{id}/messages`: sends a text message (its `@user` words mention members).
pub async fn send(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Json(body): Json<SendBody>,
) -> Result<impl IntoResponse, ApiError> {
    let uploads = body.uploads;
    for upload in &uploads {
        super::files::upload_id(upload)?;
    }
    // A message with files needs a text too: its caption.
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("the message is empty"));
    }
    if body.text.len() > vellum_wire::MAX_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the message is {} bytes; the limit is {}",
                body.text.len(),
                vellum_wire::MAX_TEXT_BYTES
            ),
        ));
    }
    let outgoing = OutgoingMessage {
        text: body.text,
        reply_to: body.reply_to.filter(|r| !r.is_empty()),
        // Empty: the client finds the `@user` words that name members.
        mentions: Vec::new(),
        attachments: Vec::new(),
        timers: MessageTimers {
            expire_secs: body.expire_secs,
            burn_secs: body.burn_secs,
        },
    };
    let events = state.events.clone();
    let message = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let row = if uploads.is_empty() {
                client
                    .send_message(&chat, outgoing)
                    .await
                    .map_err(crate::error::client_error)?
            } else {
                // Staged files (api/files.rs): uploaded with progress events, then sent.
                super::files::send_with_uploads(client, &chat, outgoing, &uploads, events).await?
            };
            view::message(client, &row).map_err(crate::error::client_error)
        })
        .await?;
    announce(&state, &message);
    Ok((StatusCode::CREATED, Json(message)))
}

#[derive(Debug, Deserialize)]
pub struct EditBody {
    text: String,
}

/// `POST /api/chats/{id}/messages/{mid}/edit`: replaces the text of one's own message.
pub async fn edit(
    State(state): State<AppState>,
    Path((chat, id)): Path<(String, String)>,
    Json(body): Json<EditBody>,
) -> Result<Json<Message>, ApiError> {
    if body.text.len() > vellum_wire::MAX_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the limit is {} bytes", vellum_wire::MAX_TEXT_BYTES),
        ));
    }
    let message = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    let row = client.edit(&chat, &id, &body.text).await?;
                    view::message(client, &row)
                })
                .await
        })
        .await?;
    announce(&state, &message);
    Ok(Json(message))
}

#[derive(Debug, Deserialize)]
pub struct ReactBody {
    emoji: String,
    #[serde(default)]
    remove: bool,
}

/// `POST /api/chats/{id}/messages/{mid}/react`: adds or withdraws a reaction; answers the
/// target message with its reactions.
pub async fn react(
    State(state): State<AppState>,
    Path((chat, id)): Path<(String, String)>,
    Json(body): Json<ReactBody>,
) -> Result<Json<Message>, ApiError> {
    if body.emoji.is_empty() || body.emoji.chars().count() > 16 {
        return Err(ApiError::bad_request("a reaction is one emoji"));
    }
    let message = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    client.react(&chat, &id, &body.emoji, body.remove).await?;
                    let group_id = client.resolve_chat(&chat)?;
                    match client.store().message(&group_id, &id)? {
                        Some(row) => view::message(client, &row),
                        None => Err(vellum_client::Error::Invalid(format!(
                            "no message {id} in this chat"
                        ))),
                    }
                })
                .await
        })
        .await?;
    announce(&state, &message);
    Ok(Json(message))
}

/// `POST /api/chats/{id}/messages/{mid}/delete`: deletes one's own message for everyone.
pub async fn delete(
    State(state): State<AppState>,
    Path((chat, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (group_id, id) = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    let group_id = client.resolve_chat(&chat)?;
                    let own = client
                        .store()
                        .message(&group_id, &id)?
                        .map(|m| m.sender_user == client.user());
                    match own {
                        None => Ok(Err(ApiError::not_found("no such message in this chat"))),
                        Some(false) => Ok(Err(ApiError::forbidden(
                            "you can only delete your own messages",
                        ))),
                        Some(true) => {
                            client.delete(&group_id, &id).await?;
                            Ok(Ok((group_id, id)))
                        }
                    }
                })
                .await?
        })
        .await?;
    let _ = state.events.send(AppEvent::Gone {
        chat: group_id,
        id,
        reason: "deleted",
    });
    let _ = state.events.send(AppEvent::Chats);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/chats/{id}/messages/{mid}/reveal`: opens a sealed (burn-on-read) message on
/// this device; its burn timer starts now.
pub async fn reveal(
    State(state): State<AppState>,
    Path((chat, id)): Path<(String, String)>,
) -> Result<Json<Message>, ApiError> {
    let message = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    let shredded = client.shred()?;
                    let message = match client.reveal(&chat, &id)? {
                        Some(row) => Some(view::message(client, &row)?),
                        None => None,
                    };
                    Ok((message, shredded))
                })
                .await
        })
        .await?;
    let (message, shredded) = message;
    crate::live::announce_shredded(&state, &shredded);
    let message = message.ok_or_else(|| ApiError::not_found("this message is gone"))?;
    announce(&state, &message);
    Ok(Json(message))
}

#[derive(Debug, Deserialize)]
pub struct ReadBody {
    ids: Vec<String>,
}

/// `POST /api/chats/{id}/read`: the page displayed these messages. They count as read on
/// this device and read receipts may go out; a sealed message stays sealed.
pub async fn read(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    Json(body): Json<ReadBody>,
) -> Result<StatusCode, ApiError> {
    if body.ids.len() > 1000 {
        return Err(ApiError::bad_request("too many ids at once"));
    }
    state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |client: &mut Client| {
                    let shown = client.mark_displayed(&chat, &body.ids)?;
                    // A receipt that cannot go out now goes with the next display; the
                    // messages are read either way.
                    if let Err(e) = client.read_receipts_for(&shown).await {
                        tracing::warn!(error = %e, "read receipt not sent");
                    }
                    Ok(())
                })
                .await
        })
        .await?;
    let _ = state.events.send(AppEvent::Chats);
    Ok(StatusCode::NO_CONTENT)
}

/// Tells every open view about a message this window changed.
fn announce(state: &AppState, message: &Message) {
    let _ = state.events.send(AppEvent::Message {
        chat: message.chat.clone(),
        message: Box::new(message.clone()),
    });
    let _ = state.events.send(AppEvent::Chats);
}
