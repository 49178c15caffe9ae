//! The HTTP API, one module per resource. Every route is declared once, through
//! `utoipa_axum::routes!`, so the router and the OpenAPI document come from the same list.

use std::sync::Arc;

use axum::middleware;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vellum_wire::AuthHeaders;

use crate::auth::{device_auth, Admin};
use crate::state::AppState;

pub mod admin;
pub mod approvals;
pub mod blobs;
pub mod directory;
pub mod enroll;
pub mod groups;
pub mod key_packages;
pub mod meta;
pub mod policy;
pub mod records;
pub mod sync;

pub type St = axum::extract::State<Arc<AppState>>;

/// The `{code, message}` body of every error.
pub type ErrorBody = vellum_wire::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vellum delivery server",
        description = "Device requests are signed with the device's Ed25519 key over \
            `vellum-request-v1\\n{method}\\n{path_and_query}\\n{device_id}\\n{timestamp}\\n{nonce}\\n{hex sha256(body)}`. \
            Admin requests carry `Authorization: Bearer <admin token>`. \
            Every error is a JSON `{code, message}`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody)),
    tags(
        (name = "meta"), (name = "admin"), (name = "enroll"), (name = "key-packages"),
        (name = "groups"), (name = "sync"), (name = "policy"), (name = "records"),
        (name = "directory"), (name = "approvals"), (name = "blobs")
    )
)]
struct ApiDoc;

/// Security scheme names used by the operations' `security(...)`.
pub const DEVICE_ID: &str = "device_id";
pub const DEVICE_TIMESTAMP: &str = "device_timestamp";
pub const DEVICE_NONCE: &str = "device_nonce";
pub const DEVICE_SIGNATURE: &str = "device_signature";
pub const ADMIN_TOKEN: &str = "admin_token";

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, header, about) in [
            (DEVICE_ID, AuthHeaders::DEVICE, "the enrolled device's id"),
            (
                DEVICE_TIMESTAMP,
                AuthHeaders::TIMESTAMP,
                "Unix seconds, within 300 s of the server's clock",
            ),
            (
                DEVICE_NONCE,
                AuthHeaders::NONCE,
                "1-64 characters, never reused",
            ),
            (
                DEVICE_SIGNATURE,
                AuthHeaders::SIGNATURE,
                "base64 Ed25519 signature over the request-signing bytes",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    header, about,
                ))),
            );
        }
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the token in the data directory's admin-token file"))
                    .build(),
            ),
        );
    }
}

/// Every route with its documentation, before state is attached.
pub fn router(state: &Arc<AppState>) -> OpenApiRouter<Arc<AppState>> {
    let admin = OpenApiRouter::new()
        .routes(routes!(admin::create_user))
        .routes(routes!(admin::add_device, admin::list_devices))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::reset_user))
        .routes(routes!(admin::set_policy))
        .routes(routes!(admin::records_init))
        .routes(routes!(admin::replace_archiver))
        .routes(routes!(admin::status))
        .routes(routes!(admin::metrics))
        .route_layer(middleware::from_extractor_with_state::<Admin, _>(
            state.clone(),
        ));
    let device = OpenApiRouter::new()
        .routes(routes!(key_packages::upload))
        .routes(routes!(key_packages::count))
        .routes(routes!(key_packages::claim))
        .routes(routes!(groups::create))
        .routes(routes!(groups::post_commit))
        .routes(routes!(groups::leave))
        .routes(routes!(groups::post_message))
        .routes(routes!(groups::delete_message))
        .routes(routes!(groups::cursors))
        .routes(routes!(policy::get_policy))
        .routes(routes!(records::post_receipts))
        .routes(routes!(records::put_held_users))
        .routes(routes!(records::get_transitory_chats))
        .routes(routes!(records::put_binding))
        .routes(routes!(records::put_checkpoint))
        .routes(routes!(records::get_checkpoints))
        .routes(routes!(sync::sync))
        .routes(routes!(sync::ack))
        .routes(routes!(crate::ws::connect))
        .routes(routes!(directory::checkpoint))
        .routes(routes!(directory::entries))
        .routes(routes!(directory::post_change))
        .routes(routes!(approvals::list_devices))
        .routes(routes!(approvals::get_mine, approvals::delete_mine))
        .routes(routes!(approvals::put_commitment))
        .routes(routes!(approvals::put_offer))
        .routes(routes!(approvals::get_exchange, approvals::cancel))
        .routes(routes!(approvals::put_hello))
        .routes(routes!(approvals::complete))
        .routes(routes!(blobs::create))
        .routes(routes!(blobs::status, blobs::delete))
        .routes(routes!(blobs::put_chunk, blobs::get_chunk))
        .routes(routes!(blobs::complete))
        .routes(routes!(blobs::archived))
        .route_layer(middleware::from_fn_with_state(state.clone(), device_auth));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(enroll::enroll))
        .routes(routes!(directory::config))
        .merge(admin)
        .merge(device)
}

/// Unix seconds as RFC 3339, for messages people read.
pub(crate) fn rfc3339_secs(unix_secs: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}
