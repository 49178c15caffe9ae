//! `GET /api/session`: who this window is, and the CSRF token for its requests.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use vellum_http::ApiError;

use crate::device::Device;
use crate::security::Session;
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct SessionView {
    /// `enrolled` or `unenrolled` (the page then shows enrollment).
    pub state: &'static str,
    pub user: Option<String>,
    pub device_id: Option<String>,
    pub csrf: String,
}

pub async fn show(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Json<SessionView>, ApiError> {
    let who = state
        .device
        .run(async |device: &mut Device| {
            Ok(match device {
                Device::Enrolled(client) => {
                    Some((client.user().to_owned(), client.device_id().to_owned()))
                }
                Device::Unenrolled { .. } => None,
            })
        })
        .await?;
    Ok(Json(SessionView {
        state: if who.is_some() {
            "enrolled"
        } else {
            "unenrolled"
        },
        user: who.as_ref().map(|w| w.0.clone()),
        device_id: who.map(|w| w.1),
        csrf: session.csrf,
    }))
}
