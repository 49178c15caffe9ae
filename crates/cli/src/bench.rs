//! `vellum bench`: load against `vellum server` processes (issue 13). One JSON object on
//! stdout, progress on stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use vellum_load::{IdleOptions, LoadOptions, ServerOptions};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// N devices over real WebSockets, M chats of S members, a total send rate for a bounded
    /// time. Senders are full clients (real MLS encryption); receivers are measured when
    /// their sync after a WebSocket wake hands them the message (with --decrypt: once
    /// decrypted and stored by a full client). Prints sent/s, deliveries/s, send-to-deliver
    /// p50/p99/p99.9, server CPU per delivery and RSS, errors.
    #[command(
        after_help = "Examples:\n  vellum bench load --devices 1000 --chats 50 --members 10 --rate 2000 --duration 30\n  vellum bench load --devices 1000 --chats 50 --members 10 --rate 1000 --duration 20 --sweep --plot load.svg --baselines\n  vellum bench load --nodes 2 --database-url postgres://postgres@127.0.0.1/test --nats-url nats://127.0.0.1:4222 --devices 1000 --chats 50 --members 10 --rate 500"
    )]
    Load(LoadArgs),
    /// Idle device WebSockets on one node: the server's memory per connection and the
    /// number of connections its available memory would hold.
    #[command(after_help = "Example: vellum bench idle --connections 19000 --sources 4")]
    Idle(IdleArgs),
}

#[derive(Args)]
pub struct LoadArgs {
    /// Devices in all: one sender per chat, the rest receivers shared round-robin by the
    /// chats (at least chats + members - 1).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Chats, each with its own sender.
    #[arg(long, default_value_t = 10)]
    chats: usize,
    /// Members per chat, the sender included (at least 2).
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Messages per second, all chats together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of sending (deliveries still on their way are awaited up to 10 s more).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Receivers are full clients: measured once the message is decrypted and stored.
    #[arg(long)]
    decrypt: bool,
    /// A running server's URL instead of local nodes (repeatable: devices are spread over
    /// them); needs --token-file. Its CPU and memory are not read.
    #[arg(long = "server", value_name = "URL")]
    servers: Vec<String>,
    /// The admin token of the --server org.
    #[arg(long = "token-file", value_name = "FILE", requires = "servers")]
    token_file: Option<PathBuf>,
    /// Local `vellum server` nodes to start (above 1 needs --database-url).
    #[arg(long, default_value_t = 1, conflicts_with = "servers")]
    nodes: usize,
    /// Start the nodes on this PostgreSQL database instead of SQLite in a temporary
    /// directory (also the PostgreSQL insert baseline's database).
    #[arg(long = "database-url", value_name = "URL", conflicts_with = "servers")]
    database_url: Option<String>,
    /// The nodes' NATS server, for wakes across nodes.
    #[arg(long = "nats-url", value_name = "URL", conflicts_with = "servers")]
    nats_url: Option<String>,
    /// Also measure, in the same run and the same shape: NATS core fan-out (a private
    /// nats-server), durable single-row inserts (SQLite, and PostgreSQL with
    /// --database-url), raw mls-rs encryption and decryption of the same payload size.
    #[arg(long)]
    baselines: bool,
    /// Run several loads: the rate at 1/4, 1/2 and all of --rate, then chats of 10, 100
    /// and 1,000 members (as --devices allows) at the same deliveries per second.
    #[arg(long)]
    sweep: bool,
    /// Write the sweep's latency against load and throughput against chat size as SVG.
    #[arg(long, value_name = "FILE.svg", requires = "sweep")]
    plot: Option<PathBuf>,
}

#[derive(Args)]
pub struct IdleArgs {
    /// WebSockets to open.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Source addresses 127.0.0.2, 127.0.0.3, … to connect from (each has its own
    /// ephemeral ports).
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Start the node on this PostgreSQL database instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    database_url: Option<String>,
}

fn server_options(database_url: Option<String>, nats_url: Option<String>) -> Result<ServerOptions> {
    Ok(ServerOptions {
        binary: std::env::current_exe().context("finding the vellum binary")?,
        database_url,
        nats_url,
    })
}

pub async fn bench(command: BenchCommand) -> Result<()> {
    let json = match command {
        BenchCommand::Load(args) => load(args).await?,
        BenchCommand::Idle(args) => {
            let options = IdleOptions {
                connections: args.connections,
                sources: args.sources,
                server: server_options(args.database_url, None)?,
            };
            serde_json::to_string_pretty(&vellum_load::idle_connections(&options).await?)?
        }
    };
    println!("{json}");
    Ok(())
}

async fn load(args: LoadArgs) -> Result<String> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        anyhow::bail!(
            "--duration must be more than 0 seconds, got {}",
            args.duration
        );
    }
    let admin_token = match &args.token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let options = LoadOptions {
        devices: args.devices,
        chats: args.chats,
        members: args.members,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        decrypt: args.decrypt,
        servers: args.servers,
        admin_token,
        nodes: args.nodes,
        server: server_options(args.database_url, args.nats_url)?,
        baselines: args.baselines,
        windows: None,
    };
    options.check()?;
    if !args.sweep {
        return Ok(serde_json::to_string_pretty(
            &vellum_load::load(&options).await?,
        )?);
    }
    let sweep = vellum_load::sweep(&options).await?;
    if let Some(plot) = &args.plot {
        vellum_load::write_plot(plot, &sweep)?;
        eprintln!("plot written to {}", plot.display());
    }
    Ok(serde_json::to_string_pretty(&sweep)?)
}
