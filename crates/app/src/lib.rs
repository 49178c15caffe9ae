//! `vellum app`: the messenger in a browser window, served by the device's own process on
//! loopback. The process keeps the keys, the MLS state and the shredder (as Signal Desktop's
//! does); the browser is only its window and keeps nothing (see ARCHITECTURE.md, issue 12).
//!
//! - [`device`]: the one thread that owns the profile; every request's device work runs there.
//! - [`security`]: launch secret, session cookie, Host/Origin/CSRF checks, response headers.
//! - [`api`]: the JSON API the page calls; [`events`]: the live stream (server-sent events).
//! - [`launch`]: opening Chromium in app mode over a profile of its own.
//! - [`instance`]: one app per profile; a second `vellum app` asks it for a new window.
//! - [`live`]: the delivery server's wake-ups and the shredder, turned into events.

pub mod api;
pub mod device;
mod error;
pub mod events;
pub mod instance;
pub mod launch;
pub mod listener;
pub mod live;
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
    /// Loopback only: anything else is refused. `None`: a random address of 127.0.0.0/8,
    /// so that the window's cookie is sent to no other local server (see [`listener`]).
    pub listen: Option<SocketAddr>,
    /// Open a browser window (false: print the URL only).
    pub open: bool,
}

/// Why `vellum app` could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("refusing to listen on {0}: the window is served on loopback only (e.g. 127.0.0.1:0)")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("cannot open the profile: {0}")]
    Device(#[from] vellum_client::Error),
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
}

/// How many events a slow page may fall behind before it is told to reload.
const EVENT_BUFFER: usize = 1024;

/// A window being served: its launch URL and state.
pub struct Running {
    /// Opens the window once (it carries the launch secret).
    pub url: String,
    pub state: AppState,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    live: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops serving (the device thread ends with the last handle).
    pub fn stop(self) {
        self.server.abort();
        for task in &self.live {
            task.abort();
        }
    }
}

/// Opens the profile, binds the loopback listener and starts serving and the live loop.
pub async fn start(config: &AppConfig) -> Result<Running, AppError> {
    let wanted = config
        .listen
        .unwrap_or(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)));
    if !wanted.ip().is_loopback() {
        return Err(AppError::NotLoopback(wanted));
    }
    create_home(&config.home)?;
    // Uploads staged by an earlier run and never sent go before anything is served.
    api::files::tidy_staging(&config.home);
    let device = Device::open(&config.home)?;
    let listener = listener::bind(config.listen)
        .await
        .map_err(|e| AppError::Bind(wanted, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| AppError::Bind(wanted, e))?;
    // Only this OS user's connections reach the router.
    let listener = listener::OwnerOnly::new(listener);
    // The Host the page uses is the URL's: `127.x.y.z:PORT` (or `[::1]:PORT`).
    let (security, secret) = Security::new(&local.to_string(), security::LAUNCH_TTL);
    let url = security.launch_url(&secret);
    let device =
        DeviceHandle::spawn(device).map_err(|e| AppError::Io("the device thread".into(), e))?;
    let (events, _) = tokio::sync::broadcast::channel(EVENT_BUFFER);
    let state = AppState {
        device,
        security,
        events,
        home: Arc::new(config.home.clone()),
    };
    let router = app(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let live = live::spawn(state.clone());
    Ok(Running {
        url,
        state,
        server,
        live,
    })
}

/// `vellum app`: serves the window until Ctrl-C or SIGTERM. The launch URL is the first
/// line of stdout. When an app already serves this profile, asks it for a fresh launch URL
/// instead, prints and opens that, and returns (the one app keeps serving).
pub async fn run(config: AppConfig) -> Result<(), AppError> {
    if let Some(wanted) = config.listen.filter(|a| !a.ip().is_loopback()) {
        return Err(AppError::NotLoopback(wanted));
    }
    create_home(&config.home)?;
    // Decided before the URL exists: the session it opens says which browser holds it.
    let dedicated = config.open && launch::has_dedicated_browser();
    let Some(lock) = instance::claim(&config.home)? else {
        let url = instance::ask_running(&config.home, dedicated).await?;
        print_url(&url)?;
        show(&config, &url, None);
        return Ok(());
    };
    let running = start(&config).await?;
    running.state.security.set_launch_dedicated(dedicated);
    let listening = instance::listen(&config.home, running.state.security.clone())?;
    print_url(&running.url)?;
    show(&config, &running.url, Some(&running.state.security));
    vellum_http::shutdown_signal().await;
    running.stop();
    drop(listening);
    drop(lock);
    Ok(())
}

fn print_url(url: &str) -> Result<(), AppError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{url}").map_err(|e| AppError::Io("stdout".into(), e))?;
    out.flush().map_err(|e| AppError::Io("stdout".into(), e))
}

/// Opens the window (unless `--no-open`); a window outside the app's own browser profile
/// is told about on stderr, and its launch no longer counts as dedicated.
fn show(config: &AppConfig, url: &str, security: Option<&Security>) {
    let opened = if config.open {
        match launch::open_window(&config.home, url) {
            Ok(opened) => Some(opened),
            Err(e) => {
                eprintln!("warning: {e}; open the URL above in a browser");
                None
            }
        }
    } else {
        None
    };
    if opened != Some(launch::Opened::Dedicated) {
        if let Some(security) = security {
            security.set_launch_dedicated(false);
        }
        eprintln!("{}", launch::NOT_SHREDDED_NOTE);
    }
}

/// The profile directory, created owner-only if missing (an unenrolled window enrolls
/// into it); an existing one that the group or others may enter is tightened to 0700
/// (the keys, the database and decrypted files live there).
fn create_home(home: &std::path::Path) -> Result<(), AppError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |e| AppError::Io(home.display().to_string(), e);
    if !home.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(home)
            .map_err(io)?;
    }
    let mode = std::fs::metadata(home).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}
