//! The tlog-witness HTTP interface. Bodies are text: the specification fixes the 200 and 409
//! bodies; other refusals carry one line saying why.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::{origin_hash, Refusal, Witness};

/// Larger bodies get 413 before any parsing: 63 proof lines and a checkpoint with a few
/// dozen signatures (post-quantum ones included) fit well below it.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn refusal(refusal: Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).expect("a valid status");
    match refusal {
        // The body is the witness's size, for the client to retry from.
        Refusal::Conflict { known, .. } => (
            status,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{known}\n"),
        )
            .into_response(),
        other => text(status, format!("{other}\n")),
    }
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    // Signature checks, the proof and the fsync are blocking work.
    match tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await {
        Ok(Ok(cosignature)) => text(StatusCode::OK, cosignature),
        Ok(Err(e)) => refusal(e),
        Err(_) => refusal(Refusal::Storage("the request's task failed".into())),
    }
}

/// `GET /<origin hash>/checkpoint`, the monitoring retrieval of tlog-witness.
async fn checkpoint(State(witness): State<Arc<Witness>>, Path(hash): Path<String>) -> Response {
    let found = tokio::task::spawn_blocking(move || {
        let origin = witness
            .origins()
            .into_iter()
            .find(|o| origin_hash(o) == hash)
            .map(str::to_owned);
        origin.map(|o| witness.latest(&o)).transpose()
    })
    .await;
    match found {
        Ok(Ok(Some(Some(note)))) => text(StatusCode::OK, note),
        Ok(Ok(_)) => text(
            StatusCode::NOT_FOUND,
            "this witness has cosigned no checkpoint of that log\n".into(),
        ),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's task failed\n".into(),
        ),
    }
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "no such endpoint\n".into())
}

/// The witness's routes; tests drive it with `oneshot`.
pub fn app(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

/// Serves the witness on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(witness))
        .with_graceful_shutdown(shutdown)
        .await
}
