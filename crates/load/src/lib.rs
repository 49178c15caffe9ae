//! Load generation against `vellum server` processes, shared by `vellum bench` (the CLI) and
//! `vellum-bench` (BENCHMARKS.md's figures): an org's light devices (enrolled and signing
//! requests without a full client), server child processes read through `/proc`, the load
//! and idle-connection scenarios, their baselines and plots.

mod baselines;
mod idle;
mod org;
mod plot;
mod run;
mod server;
mod stats;

pub use baselines::{postgres_insert_rate, sqlite_insert_rate, BaselineOptions, Baselines};
pub use idle::{idle_connections, IdleOptions, IdleSummary};
pub use org::{LightDevice, Org};
pub use plot::write_plot;
pub use run::{load, sweep, LoadOptions, LoadSummary, SweepSummary};
pub use server::{raise_open_files_limit, ServerOptions, ServerProcess};
pub use stats::{ms, percentile};

/// Why a load scenario could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Options that cannot describe a run: nothing was started.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Client(#[from] vellum_client::Error),
    #[error("MLS: {0}")]
    Mls(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A `vellum server` child that did not start or answer as expected.
    #[error("server process: {0}")]
    Server(String),
    /// A baseline (NATS, SQLite, PostgreSQL, raw MLS) that could not be measured.
    #[error("baseline {what}: {detail}")]
    Baseline { what: &'static str, detail: String },
    #[error("plot: {0}")]
    Plot(String),
}

impl From<vellum_mls::Error> for Error {
    fn from(e: vellum_mls::Error) -> Self {
        Error::Mls(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
