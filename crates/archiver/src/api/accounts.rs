//! `/v1/accounts`: the records office's people (officers only), and `/v1/whoami`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use vellum_http::{codes, ApiError};
use vellum_record::api::office::{AccountInfo, CreateAccount, CreatedAccount, Permission, WhoAmI};

use super::{caller, internal, log_access, now_ms, on_vault, ErrorBody, St};
use crate::office::OfficeError;
use crate::Vault;

fn office_error(e: OfficeError) -> ApiError {
    match e {
        OfficeError::Exists(_) => {
            ApiError::new(StatusCode::CONFLICT, codes::CONFLICT, e.to_string())
        }
        OfficeError::NoSuchAccount(_) => ApiError::not_found(e.to_string()),
        OfficeError::BadName | OfficeError::Refused(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.to_string())
        }
        OfficeError::Db(_) | OfficeError::Schema(_) => internal(e),
    }
}

/// Creates an account; the answer holds its one-time setup code, shown only here.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    request_body = CreateAccount,
    security(("api_token" = [])),
    responses(
        (status = 201, description = "Created, with its setup code", body = CreatedAccount),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn create(
    State(state): St,
    headers: HeaderMap,
    req: Result<Json<CreateAccount>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedAccount>), ApiError> {
    let caller = caller(&state, &headers, Permission::ManageAccounts).await?;
    let Json(req) = req?;
    on_vault(&state, move |v| {
        let created = v
            .office
            .create(&req.name, req.role, &caller.name, now_ms())
            .map_err(office_error)?;
        log_access(
            v,
            "account",
            &format!(
                "{} created {} ({})",
                caller.name, created.name, created.role
            ),
        );
        Ok((StatusCode::CREATED, Json(created)))
    })
    .await
}

/// Every account: names, roles and states, never a secret.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The accounts", body = Vec<AccountInfo>),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn list(
    State(state): St,
    headers: HeaderMap,
) -> Result<Json<Vec<AccountInfo>>, ApiError> {
    caller(&state, &headers, Permission::ManageAccounts).await?;
    on_vault(&state, |v| Ok(Json(v.office.list().map_err(office_error)?))).await
}

/// Disables an account for good and ends its sessions (its name stays taken).
#[utoipa::path(post, path = "/v1/accounts/{name}/disable", tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    security(("api_token" = [])),
    responses(
        (status = 204, description = "Disabled"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn disable(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers, Permission::ManageAccounts).await?;
    if name == caller.name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            "an officer cannot disable their own account",
        ));
    }
    on_vault(&state, move |v| {
        disable_account(v, &caller.name, &name).map_err(office_error)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Disables `name` for good (the API's and the console's one way): its sessions end, and a
/// share it handed in towards an unseal not yet complete no longer counts.
pub(crate) fn disable_account(v: &mut Vault, by: &str, name: &str) -> Result<(), OfficeError> {
    v.office.disable(name)?;
    if v.secret.is_none() && v.unseal_contributors.iter().any(|c| c == name) {
        v.unsealer = vellum_records::Unsealer::new(v.public.clone());
        v.unseal_contributors.clear();
        log_access(
            v,
            "unseal",
            &format!("the partial unseal was reset: {name}, who handed in a share, was disabled"),
        );
    }
    log_access(v, "account", &format!("{by} disabled {name}"));
    Ok(())
}

/// The caller's account and role.
#[utoipa::path(get, path = "/v1/whoami", tag = "accounts",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
    ))]
pub async fn whoami(State(state): St, headers: HeaderMap) -> Result<Json<WhoAmI>, ApiError> {
    let caller = caller(&state, &headers, Permission::Status).await?;
    Ok(Json(WhoAmI {
        name: caller.name,
        role: caller.role,
    }))
}
