//! `POST /api/enroll {server, user, code}`: a first-time user enrolls this device from the
//! window. The profile the window serves becomes the enrolled client, on the device thread.

use std::path::Path;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use vellum_client::Client;
use vellum_http::ApiError;

use super::input;
use super::session::{self, SessionView};
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::security::Session;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    server: String,
    user: String,
    code: String,
}

/// The profile files an enrollment creates before the server has said yes.
const PROFILE_FILES: [&str; 3] = ["vellum.db", "vellum.db-wal", "vellum.db-shm"];

pub async fn enroll(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Json<SessionView>, ApiError> {
    let body: EnrollBody = input::json(&body)?;
    // A server of several nodes (issue 13): their addresses, comma separated, in order.
    let servers: Vec<String> = body
        .server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if servers.is_empty()
        || !servers
            .iter()
            .all(|s| s.starts_with("http://") || s.starts_with("https://"))
    {
        return Err(ApiError::bad_request(
            "the server's address starts with https:// (or http://)",
        ));
    }
    let user = input::user_name(&body.user)?.to_owned();
    let code = body.code.trim().to_owned();
    if code.is_empty() {
        return Err(ApiError::bad_request(
            "type the enrollment code you were given",
        ));
    }
    state
        .device
        .run(async move |device: &mut Device| {
            let home = match device {
                Device::Enrolled(_) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "already_enrolled",
                        "this device is enrolled already",
                    ))
                }
                Device::Unenrolled { home } => home.clone(),
            };
            let fresh = !home.join("vellum.db").exists();
            match Client::enroll_at(&home, &servers, &user, &code).await {
                Ok(client) => {
                    *device = Device::Enrolled(Box::new(client));
                    Ok(())
                }
                Err(e) => {
                    // Enrolled on the server but a later step failed (the directory, key
                    // packages): the profile is whole, and the device is enrolled.
                    if let Ok(client) = Client::open(&home) {
                        tracing::warn!(error = %e, "enrollment finished with an error");
                        *device = Device::Enrolled(Box::new(client));
                        return Ok(());
                    }
                    if fresh {
                        forget_attempt(&home);
                    }
                    Err(client_error(e))
                }
            }
        })
        .await?;
    let _ = state.events.send(AppEvent::Chats);
    session::view(&state, &session).await.map(Json)
}

/// A refused enrollment leaves no profile behind: the next launch must see an unenrolled
/// device (it holds no key the server knows).
fn forget_attempt(home: &Path) {
    for name in PROFILE_FILES {
        let _ = std::fs::remove_file(home.join(name));
    }
}
