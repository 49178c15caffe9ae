//! `GET /api/directory`: the org's users from this device's verified copy of the key
//! directory (refreshed first when the server answers), for the member picker.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use vellum_http::ApiError;

use crate::device::Device;
use crate::error::client_error;
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct DirectoryView {
    pub users: Vec<DirectoryUser>,
}

#[derive(Debug, Serialize)]
pub struct DirectoryUser {
    pub user: String,
    pub you: bool,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<DirectoryView>, ApiError> {
    state
        .device
        .run(async |device: &mut Device| {
            let client = device.client()?;
            if let Err(e) = client.refresh_directory().await {
                // Offline or refused: the verified copy this device holds still answers.
                tracing::debug!(error = %e, "the key directory could not be refreshed");
            }
            let mirror = client.directory().map_err(client_error)?;
            let users = mirror
                .state
                .users
                .keys()
                // The archive is no person to pick: record chats add it by themselves.
                .filter(|u| u.as_str() != vellum_wire::RECORDS_USER)
                .map(|u| DirectoryUser {
                    you: u == client.user(),
                    user: u.clone(),
                })
                .collect();
            Ok(DirectoryView { users })
        })
        .await
        .map(Json)
}
