//! The JSON API the page calls. Every route is behind `security::guard`.

mod session;
pub mod view;

use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/session", get(session::show))
}
