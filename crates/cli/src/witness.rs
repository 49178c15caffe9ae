//! `vellum witness`: run a C2SP witness, print its key, print its newest cosigned checkpoint.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: Option<WitnessCommand>,
    /// The witness's data directory (its key, the logs it follows, their newest checkpoints).
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Where it listens (port 0: any free port). The first line printed names the bound
    /// address.
    #[arg(long, default_value = "127.0.0.1:7482")]
    listen: SocketAddr,
    /// A log to follow: its note verifier key, whose name is the log's origin. Repeatable;
    /// remembered in DATA for later starts.
    #[arg(long = "log", value_name = "VKEY")]
    logs: Vec<String>,
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Print the witness's cosignature verifier key (C2SP note key) on the last line.
    #[command(after_help = "Example: vellum witness key --data witness-data")]
    Key {
        /// The witness's data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Print the newest checkpoint of a log that this witness cosigned, with its
    /// cosignature, as a file's text.
    #[command(
        after_help = "Example: vellum witness latest --data witness-data --origin records.agency.example/vellum"
    )]
    Latest {
        /// The witness's data directory.
        #[arg(long)]
        data: PathBuf,
        /// The log's origin (its name in every checkpoint).
        #[arg(long)]
        origin: String,
    },
}

pub async fn witness(args: WitnessArgs) -> Result<()> {
    match args.command {
        Some(WitnessCommand::Key { data }) => {
            let vkey = vellum_witness::verifier_key(&data)?;
            println!("{vkey}");
        }
        Some(WitnessCommand::Latest { data, origin }) => {
            let note = vellum_witness::latest(&data, &origin)?.with_context(|| {
                format!(
                    "the witness in {} has cosigned no checkpoint of {origin:?}",
                    data.display()
                )
            })?;
            print!("{note}");
        }
        None => {
            let data = args.data.context("--data is required")?;
            let witness = Arc::new(vellum_witness::Witness::open(&data, &args.logs)?);
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let addr = listener.local_addr()?;
            println!("vellum witness listening on http://{addr}");
            // Past the address line, a closed stdout must not stop the witness.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "witness key: {}", witness.verifier_key());
            let origins = witness.origins();
            if origins.is_empty() {
                eprintln!("warning: following no log yet; restart with --log VKEY");
            }
            for origin in origins {
                let _ = writeln!(out, "following: {origin}");
            }
            let _ = out.flush();
            vellum_witness::serve(listener, witness, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
    }
    Ok(())
}
