//! The Vellum delivery server: accounts, device enrollment (the org is the MLS
//! authentication service), the KeyPackage directory, strict per-group ordering of the MLS
//! handshake, and durable per-device delivery of ciphertext.
//!
//! It never holds plaintext or any group secret: it sees PublicMessage commits (the public
//! handshake), opaque PrivateMessages and Welcomes, and the public keys of devices.

mod api;
mod auth;
mod clock;
mod config;
mod conn;
mod directory;
mod jobs;
mod limits;
mod notify;
mod state;
mod ws;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::{middleware, Extension, Router};
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody, TimeoutLayer};
use tower_http::trace::TraceLayer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{init_data_dir, ServerConfig};
pub use conn::connection_cap_from_rlimit;
pub use directory::{apply_due_resets, Append, Directory, DirectoryError};
pub use state::AppState;
pub use vellum_http::ApiError;

/// The whole HTTP API over `state`; tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: impl Into<Arc<AppState>>) -> Router {
    let state = state.into();
    let (router, doc) = api::router(&state).split_for_parts();
    let doc = api::meta::OpenApiDocument(Arc::new(
        doc.to_pretty_json()
            .expect("the OpenAPI document serialises"),
    ));
    let config = &state.config;
    router
        .fallback(vellum_http::not_found)
        .method_not_allowed_fallback(vellum_http::method_not_allowed)
        .layer(Extension(doc))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        // A body that stops arriving is cut off, including inside authentication.
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyTimeoutLayer::new(config.body_read_timeout))
                .map_request(|request: Request<TimeoutBody<Body>>| request.map(Body::new)),
        )
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(middleware::from_fn(vellum_http::json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Binds `config.listen` and serves until the process is stopped.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    // Each device's idle WebSocket is an open file: take all the hard limit allows, so the
    // connection cap (derived from it) is the host's, not a login shell's default.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    let state = AppState::open_configured(config.clone()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(ServeError::Bind)?;
    let local = listener.local_addr().map_err(ServeError::Bind)?;
    // First line of standard output: scripts and tests read the bound address from it.
    println!("vellum server listening on http://{local}");
    tracing::info!(%local, data = %config.data_dir.display(), shared = config.database_url.is_some(), "vellum server listening");
    run(listener, state).await.map_err(ServeError::Serve)
}

/// SIGINT or SIGTERM: stop accepting, finish requests in flight. (Durability never depends
/// on this: every acknowledged write is already committed.)
async fn shutdown_signal() {
    vellum_http::shutdown_signal().await;
    tracing::info!("shutting down");
}

/// Serves the API on an already bound listener (the demo and tests bind port 0), with the
/// background purge of expired ciphertext (and the key directory's due resets) and the
/// witnessing of the key directory, until SIGINT or SIGTERM.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: impl Into<Arc<AppState>>,
) -> std::io::Result<()> {
    let state = state.into();
    classify_groups(&state)
        .await
        .map_err(std::io::Error::other)?;
    // Before anything is served: a directory that does not replay stops the start.
    let directory = state
        .open_directory()
        .await
        .map_err(std::io::Error::other)?
        .clone();
    let witnessing = tokio::spawn(directory::witness_loop(
        directory.clone(),
        state.store.clone(),
        state.config.directory_witness_retry,
    ));
    let following = tokio::spawn(follow_other_nodes(state.clone(), directory));
    let purger = tokio::spawn(purge_loop(state.clone()));
    let served = conn::serve(
        listener,
        app(state.clone()),
        &state.config,
        shutdown_signal(),
    )
    .await;
    purger.abort();
    witnessing.abort();
    following.abort();
    served
}

/// Reads each chat's class (record or transitory) from its public state where the store
/// does not know it yet (a database from before classes were kept), so that the class
/// checks and `admin status` see every chat. Runs before serving; returns how many.
pub async fn classify_groups(state: &Arc<AppState>) -> Result<usize, vellum_store::Error> {
    let unclassified = state.store.unclassified_groups().await?;
    if unclassified.is_empty() {
        return Ok(0);
    }
    let tracker_state = state.clone();
    // Loading each group's public state is MLS work: off the executor.
    let classes = tokio::task::spawn_blocking(move || {
        unclassified
            .into_iter()
            .map(|(group_id, snapshot)| {
                let class = tracker_state
                    .tracker
                    .load(&snapshot)
                    .and_then(|tracked| tracked.archiver());
                (group_id, class)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| vellum_store::Error::Backend(format!("classifying chats: {e}")))?;
    let mut classified = 0;
    for (group_id, class) in classes {
        match class {
            Ok(archiver) => {
                state
                    .store
                    .set_group_class(&group_id, archiver.is_some())
                    .await?;
                classified += 1;
            }
            // Its commits cannot be checked either; the chat stays as it was.
            Err(e) => tracing::warn!(group = %group_id, error = %e, "cannot read a chat's class"),
        }
    }
    tracing::info!(
        classified,
        "read the class of chats stored before classes were kept"
    );
    Ok(classified)
}

/// Purges ciphertext whose timer ran out or that waited undelivered too long, delivered or
/// not, and files (blobs) that expired, were deleted or whose upload was abandoned as long.
pub async fn purge_expired(state: &AppState) -> Result<u64, vellum_store::Error> {
    let now = state.now_millis();
    let oldest = now - state.config.max_undelivered.as_millis() as i64;
    let messages = state.store.purge_expired(now, oldest).await?;
    Ok(messages + state.store.purge_blobs(now, oldest).await?)
}

/// Keeps this node's key directory in step with the deployment's other nodes: tells them of
/// its own changes and catches up with theirs (a single node has nobody to hear).
async fn follow_other_nodes(state: Arc<AppState>, directory: Arc<Directory>) {
    let mut own = directory.changed.subscribe();
    let mut theirs = state.notifier.directory_changes();
    loop {
        tokio::select! {
            changed = own.changed() => {
                if changed.is_err() {
                    return;
                }
                let size = *own.borrow_and_update();
                state.notifier.directory_grew(size);
            }
            changed = theirs.changed() => {
                if changed.is_err() {
                    return;
                }
                theirs.mark_unchanged();
                if let Err(e) = directory.refresh(&state.store).await {
                    tracing::warn!(error = %e, "cannot catch up with the key directory");
                }
            }
        }
    }
}

/// Runs the purge while this node holds the [`vellum_store::Job::Purge`] lease (always on
/// SQLite; on a shared database one node at a time).
async fn purge_loop(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lease = None;
    loop {
        tick.tick().await;
        if !jobs::hold(&state.store, vellum_store::Job::Purge, &mut lease).await {
            continue;
        }
        match purge_expired(&state).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "purged expired ciphertext"),
            Err(e) => tracing::error!(error = %e, "purge failed"),
        }
        match apply_due_resets(&state).await {
            Ok(0) => {}
            Ok(applied) => tracing::info!(applied, "identity resets took effect"),
            Err(e) => tracing::error!(error = e.message, "applying due identity resets failed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    // The sources' own messages follow in the error chain, so they are not repeated here.
    #[error("cannot prepare the data directory")]
    DataDir(#[from] config::DataDirError),
    #[error("cannot open {}", path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: vellum_store::Error,
    },
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The shared database (issue 13) cannot be used: its own message says why.
    #[error("the shared database")]
    Database(#[source] vellum_store::Error),
    #[error(transparent)]
    Bus(#[from] notify::BusError),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}
