//! The Vellum delivery server: accounts, device enrollment (the org is the MLS
//! authentication service), the KeyPackage directory, strict per-group ordering of the MLS
//! handshake, and durable per-device delivery of ciphertext.
//!
//! It never holds plaintext or any group secret: it sees PublicMessage commits (the public
//! handshake), opaque PrivateMessages and Welcomes, and the public keys of devices.

mod auth;
mod config;
mod error;
mod limits;
mod notify;
mod routes;
mod state;
mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::{init_data_dir, ServerConfig};
pub use error::ApiError;
pub use state::AppState;

/// Every route of the API, as listed in `openapi.json` (a test keeps the two in step).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("post", "/v1/admin/users"),
    ("post", "/v1/admin/users/{name}/devices"),
    ("post", "/v1/enroll"),
    ("post", "/v1/key-packages"),
    ("get", "/v1/key-packages/count"),
    ("post", "/v1/key-packages/claim"),
    ("post", "/v1/groups"),
    ("post", "/v1/groups/{group_id}/commits"),
    ("post", "/v1/groups/{group_id}/messages"),
    ("delete", "/v1/groups/{group_id}/messages/{seq}"),
    ("get", "/v1/policy"),
    ("post", "/v1/receipts"),
    ("put", "/v1/records/log-key"),
    ("put", "/v1/admin/policy"),
    ("post", "/v1/admin/records"),
    ("get", "/v1/admin/status"),
    ("get", "/v1/admin/metrics"),
    ("get", "/v1/sync"),
    ("post", "/v1/ack"),
    ("get", "/v1/ws"),
];

pub const OPENAPI: &str = include_str!("openapi.json");

/// The whole HTTP API over `state`; tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: impl Into<Arc<AppState>>) -> Router {
    let state = state.into();
    let device_routes = Router::new()
        .route("/v1/key-packages", post(routes::upload_key_packages))
        .route("/v1/key-packages/count", get(routes::key_package_count))
        .route("/v1/key-packages/claim", post(routes::claim_key_packages))
        .route("/v1/groups", post(routes::create_group))
        .route("/v1/groups/{group_id}/commits", post(routes::post_commit))
        .route("/v1/groups/{group_id}/messages", post(routes::post_message))
        .route(
            "/v1/groups/{group_id}/messages/{seq}",
            delete(routes::delete_message),
        )
        .route("/v1/policy", get(routes::get_policy))
        .route("/v1/receipts", post(routes::post_receipts))
        .route("/v1/records/log-key", put(routes::put_log_key))
        .route("/v1/sync", get(routes::sync))
        .route("/v1/ack", post(routes::ack))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .route("/v1/ws", get(ws::connect))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::device_auth,
        ));
    let open_routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(routes::openapi))
        .route("/v1/admin/users", post(routes::admin_create_user))
        .route(
            "/v1/admin/users/{name}/devices",
            post(routes::admin_add_device),
        )
        .route("/v1/admin/policy", put(routes::admin_set_policy))
        .route("/v1/admin/records", post(routes::admin_records_init))
        .route("/v1/admin/status", get(routes::admin_status))
        .route("/v1/admin/metrics", get(routes::admin_metrics))
        .route("/v1/enroll", post(routes::enroll));
    Router::new()
        .merge(device_routes)
        .merge(open_routes)
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                vellum_wire::codes::NOT_FOUND,
                "no such route",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Binds `config.listen` and serves until the process is stopped.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let state = AppState::open(config.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(ServeError::Bind)?;
    let local = listener.local_addr().map_err(ServeError::Bind)?;
    tracing::info!(%local, data = %config.data_dir.display(), "vellum server listening");
    println!("vellum server listening on http://{local}");
    run(listener, state).await.map_err(ServeError::Serve)
}

/// SIGINT or SIGTERM: stop accepting, finish requests in flight. (Durability never depends
/// on this: every acknowledged write is already committed.)
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Serves the API on an already bound listener (the demo and tests bind port 0), with the
/// background purge of expired ciphertext, until SIGINT or SIGTERM.
pub async fn run(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let state = Arc::new(state);
    let purger = tokio::spawn(purge_loop(state.clone()));
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    purger.abort();
    served
}

/// Purges ciphertext whose timer ran out or that waited undelivered too long, delivered or not.
pub async fn purge_expired(state: &AppState) -> Result<u64, vellum_store::Error> {
    let now = state::now_millis();
    let oldest = now - state.config.max_undelivered.as_millis() as i64;
    state.store.purge_expired(now, oldest).await
}

async fn purge_loop(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match purge_expired(&state).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "purged expired ciphertext"),
            Err(e) => tracing::error!(error = %e, "purge failed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot prepare data directory: {0}")]
    DataDir(#[from] config::DataDirError),
    #[error("cannot open the store: {0}")]
    Store(#[from] vellum_store::Error),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}
