//! `GET /api/session`: who this window is, and the CSRF token for its requests.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use vellum_http::ApiError;

use super::policy::{self, OrgPolicyView};
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
    /// The delivery server this device enrolled with.
    pub server: Option<String>,
    /// This device waits for approval by an approved device of its user.
    pub pending: bool,
    /// The org's bounds; `None` before enrollment or while the server cannot be reached.
    pub policy: Option<OrgPolicyView>,
    /// This window is the app's own browser (Chromium in app mode over `HOME/browser`,
    /// started by `vellum app`): what it saves is shredded with its message. False: files
    /// saved by this browser are not (the page warns).
    pub dedicated_browser: bool,
}

struct Who {
    user: String,
    device_id: String,
    server: String,
    pending: bool,
    policy: Option<OrgPolicyView>,
}

pub async fn show(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Json<SessionView>, ApiError> {
    view(&state, &session).await.map(Json)
}

/// The session as the page sees it (also the answer to an enrollment).
pub(crate) async fn view(state: &AppState, session: &Session) -> Result<SessionView, ApiError> {
    let csrf = session.csrf.clone();
    let dedicated_browser = session.dedicated_browser;
    // The page asks for its session first thing: uploads staged by an earlier run (or
    // waiting longer than an hour) go now.
    super::files::tidy_staging(&state.home);
    let who = state
        .device
        .run(async |device: &mut Device| {
            Ok(match device {
                Device::Enrolled(client) => {
                    let pending = client.user() != vellum_wire::RECORDS_USER
                        && !client
                            .holds_identity()
                            .map_err(crate::error::client_error)?;
                    Some(Who {
                        user: client.user().to_owned(),
                        device_id: client.device_id().to_owned(),
                        server: client.server().to_owned(),
                        pending,
                        policy: policy::view(client).await,
                    })
                }
                Device::Unenrolled { .. } => None,
            })
        })
        .await?;
    Ok(match who {
        Some(who) => SessionView {
            state: "enrolled",
            user: Some(who.user),
            device_id: Some(who.device_id),
            csrf,
            server: Some(who.server),
            pending: who.pending,
            policy: who.policy,
            dedicated_browser,
        },
        None => SessionView {
            state: "unenrolled",
            user: None,
            device_id: None,
            csrf,
            server: None,
            pending: false,
            policy: None,
            dedicated_browser,
        },
    })
}
