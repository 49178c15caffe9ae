//! The user's devices (`GET /api/devices`), approving a pending one and revoking one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use vellum_client::{ApprovalStep, Revocation};
use vellum_http::ApiError;
use vellum_wire::DeviceState;

use super::input;
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct DevicesView {
    pub devices: Vec<DeviceView>,
    pub notices: Vec<String>,
    /// On a device waiting for approval: its verification code, to type on an approved one.
    pub pending_code: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    /// `approved`, `pending`, `revoked` or `legacy`.
    pub state: &'static str,
    pub this: bool,
    /// Unix ms.
    pub enrolled_at: Option<i64>,
    /// Unix ms.
    pub last_seen: Option<i64>,
    pub warning: Option<String>,
}

fn state_name(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Approved => "approved",
        DeviceState::Pending => "pending",
        DeviceState::Legacy => "legacy",
        DeviceState::Revoked => "revoked",
    }
}

/// A device id as the server issues them: no path or control characters.
fn device_id(id: &str) -> Result<&str, ApiError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request("malformed device id"));
    }
    Ok(id)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<DevicesView>, ApiError> {
    state
        .device
        .run(async |device: &mut Device| {
            let view = device.with_client(async |c| c.devices().await).await?;
            let pending_code = view
                .devices
                .iter()
                .find(|d| d.this_device)
                .and_then(|d| d.code.clone());
            Ok(DevicesView {
                devices: view
                    .devices
                    .into_iter()
                    .map(|d| DeviceView {
                        state: state_name(d.state),
                        this: d.this_device,
                        // The server's times are Unix seconds; the page's are ms.
                        enrolled_at: d.enrolled_at.map(|s| s.saturating_mul(1000)),
                        last_seen: d.last_seen.map(|s| s.saturating_mul(1000)),
                        warning: d.warning,
                        id: d.device_id,
                    })
                    .collect(),
                notices: view.notices,
                pending_code,
            })
        })
        .await
        .map(Json)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApproveView {
    /// `started` (step 1: the new device shows its code now) or `approved`.
    pub step: &'static str,
    pub message: String,
}

/// `POST /api/devices/{id}/approve {code?}`: without a code step 1, with the code the new
/// device shows, the approval.
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ApproveView>, ApiError> {
    let body: ApproveBody = input::json_or_default(&body)?;
    let id = device_id(&id)?.to_owned();
    let code = body
        .code
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let view = state
        .device
        .run(async move |device: &mut Device| {
            let step = device
                .with_client(async |c| c.approve_device(&id, code.as_deref()).await)
                .await?;
            Ok(match step {
                ApprovalStep::Started { device_id } => ApproveView {
                    step: "started",
                    message: format!(
                        "Started approving device {device_id}: it now shows a verification code; type it here"
                    ),
                },
                ApprovalStep::Approved { device_id, chats } => ApproveView {
                    step: "approved",
                    message: format!("Approved device {device_id}; added it to {chats} chat(s)"),
                },
            })
        })
        .await?;
    let _ = state.events.send(AppEvent::Devices);
    Ok(Json(view))
}

/// `POST /api/devices/{id}/revoke` → 204. Revoking this device wipes its profile: the
/// window goes back to enrollment.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = device_id(&id)?.to_owned();
    state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let home = client.home().to_owned();
            match client.revoke_device(&id).await.map_err(client_error)? {
                Revocation::Other { .. } => {}
                Revocation::ThisDevice => {
                    // The wipe took the profile; files staged for sending go too.
                    super::files::clear_staging(&home, None);
                    *device = Device::Unenrolled { home };
                }
            }
            Ok(())
        })
        .await?;
    let _ = state.events.send(AppEvent::Devices);
    let _ = state.events.send(AppEvent::Chats);
    Ok(StatusCode::NO_CONTENT)
}
