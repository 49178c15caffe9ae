//! Safety numbers: `GET /api/safety/{user}` and `POST /api/safety/{user}/confirm`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use vellum_client::SafetyNumber;
use vellum_http::ApiError;

use super::input;
use crate::device::Device;
use crate::events::AppEvent;
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct SafetyView {
    pub user: String,
    /// Digits to compare out of band (60 for another user, 30 for oneself).
    pub number: String,
    pub confirmed: bool,
    /// The user's identity was reset since it was last confirmed.
    pub reset: bool,
}

impl From<SafetyNumber> for SafetyView {
    fn from(s: SafetyNumber) -> Self {
        Self {
            user: s.user,
            number: s.number,
            confirmed: s.confirmed,
            reset: s.reset_seen,
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<SafetyView>, ApiError> {
    let user = input::user_name(&user)?.to_owned();
    state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |c| c.safety(&user))
                .await
                .map(SafetyView::from)
        })
        .await
        .map(Json)
}

pub async fn confirm(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<SafetyView>, ApiError> {
    let user = input::user_name(&user)?.to_owned();
    let view = state
        .device
        .run(async move |device: &mut Device| {
            device
                .with_client(async |c| c.confirm_identity(&user))
                .await
                .map(SafetyView::from)
        })
        .await?;
    let _ = state.events.send(AppEvent::Chats);
    Ok(Json(view))
}
