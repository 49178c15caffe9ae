//! `vellum app`: the messenger in a browser window, served by the device's own process on
//! loopback. The process keeps the keys, the MLS state and the shredder (as Signal Desktop's
//! does); the browser is only its window and keeps nothing (see ARCHITECTURE.md, issue 12).
//!
//! - [`device`]: the one thread that owns the profile; every request's device work runs there.
//! - [`security`]: launch secret, session cookie, Host/Origin/CSRF checks, response headers.
//! - [`api`]: the JSON API the page calls; [`events`]: the live stream (server-sent events).
//! - [`launch`]: opening Chromium in app mode over a profile of its own.

pub mod api;
pub mod device;
mod error;
pub mod events;
pub mod launch;
pub mod security;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use device::{Device, DeviceHandle};
pub use error::client_error;
pub use events::AppEvent;
pub use security::Security;

/// What the window's handlers share.
#[derive(Clone)]
pub struct AppState {
    pub device: DeviceHandle,
    pub security: Security,
    pub events: tokio::sync::broadcast::Sender<AppEvent>,
    /// The device's profile directory.
    pub home: Arc<PathBuf>,
}

/// The window: static page, JSON API and event stream, behind the security layers.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/open", get(security::open))
        .route("/", get(index))
        .route("/static/app.js", get(script))
        .route("/static/app.css", get(stylesheet))
        .route("/static/icon.svg", get(icon))
        .nest("/api", api::router())
        .fallback(|| async { vellum_http::ApiError::not_found("no such page") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../static/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/app.css"),
    )
}

async fn icon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../static/icon.svg"),
    )
}

/// How `vellum app` runs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub home: PathBuf,
    /// Loopback only: anything else is refused.
    pub listen: SocketAddr,
    /// Open a browser window (false: print the URL only).
    pub open: bool,
}
