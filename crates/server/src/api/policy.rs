use axum::extract::State;
use vellum_http::{ApiError, Json};
use vellum_wire::OrgPolicy;

use super::{ErrorBody, St};

/// The org's policy, for devices.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The policy in force", body = OrgPolicy),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_policy(State(state): St) -> Result<Json<OrgPolicy>, ApiError> {
    Ok(Json(state.store.org_policy().await?))
}
