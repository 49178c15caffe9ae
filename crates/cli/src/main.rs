//! `vellum`: the delivery server, the device CLI, the admin CLI and the demo in one binary.

mod demo;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use vellum_client::{Api, Client};
use vellum_wire::{CreateUserRequest, EnrollmentCode};

use output::Output;

#[derive(Parser)]
#[command(
    name = "vellum",
    version,
    about = "Records-compliant end-to-end-encrypted messaging"
)]
struct Cli {
    /// The device's profile directory.
    #[arg(long, global = true, env = "VELLUM_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the delivery server.
    Server {
        #[arg(long, default_value = "127.0.0.1:7480")]
        listen: SocketAddr,
        #[arg(long, default_value = "vellum-data")]
        data: PathBuf,
    },
    /// Administer the org on a delivery server.
    Admin(AdminArgs),
    /// Enroll this device with a single-use code from the admin.
    Enroll {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        code: String,
    },
    /// Create, change and inspect chats.
    #[command(subcommand)]
    Chat(ChatCommand),
    /// Send a text message.
    Send { chat: String, text: String },
    /// Fetch and process everything pending; print new messages.
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Show a chat's local, decrypted history.
    History {
        chat: String,
        #[arg(long)]
        json: bool,
    },
    /// Stream new messages until interrupted.
    Watch {
        #[arg(long)]
        json: bool,
    },
    /// A self-contained walkthrough: server, three users, a group chat, a removal.
    Demo,
}

#[derive(Args)]
struct AdminArgs {
    #[arg(long)]
    server: String,
    /// File holding the admin token (the server writes DATA/admin-token on first start).
    #[arg(long)]
    token_file: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    #[command(subcommand)]
    User(UserCommand),
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a single-use enrollment code on the last line.
    Add { name: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Issue an enrollment code for another device of an existing user.
    Add { user: String },
}

#[derive(Subcommand)]
enum ChatCommand {
    /// Create a chat; prints its id on the last line.
    Create {
        title: String,
        /// Users to add, comma-separated.
        #[arg(long, value_delimiter = ',')]
        with: Vec<String>,
    },
    /// Add every device of the given users.
    Add {
        chat: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove every device of the given users.
    Remove {
        chat: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Members {
        chat: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let server_mode = matches!(cli.command, Command::Server { .. });
    let default_level = if server_mode { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn home(cli_home: &Option<PathBuf>) -> Result<PathBuf> {
    cli_home
        .clone()
        .context("no profile directory: pass --home DIR or set VELLUM_HOME")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server { listen, data } => {
            vellum_server::serve(vellum_server::ServerConfig::new(listen, data)).await?;
        }
        Command::Admin(args) => admin(args).await?,
        Command::Enroll { server, user, code } => {
            let client = Client::enroll(&home(&cli.home)?, &server, &user, &code).await?;
            println!(
                "enrolled {} as device {}",
                client.user(),
                client.device_id()
            );
        }
        Command::Chat(command) => {
            let mut client = Client::open(&home(&cli.home)?)?;
            chat(&mut client, command).await?;
        }
        Command::Send { chat, text } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.sync().await?;
            let sent = client.send(&chat, &text).await?;
            println!("sent {}", sent.id);
        }
        Command::Sync { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            for m in client.sync().await? {
                out.message(client.store(), &m)?;
            }
        }
        Command::History { chat, json } => {
            let client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            for m in client.history(&chat)? {
                out.message(client.store(), &m)?;
            }
        }
        Command::Watch { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            watch(&mut client, Output::new(json)).await?;
        }
        Command::Demo => demo::run().await?,
    }
    Ok(())
}

async fn admin(args: AdminArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read token file {}", args.token_file.display()))?;
    let api = Api::new(&args.server)?;
    let code: EnrollmentCode = match args.command {
        AdminCommand::User(UserCommand::Add { name }) => {
            api.call(
                Method::POST,
                "/v1/admin/users",
                Some(&CreateUserRequest { name }),
                None,
                Some(token.trim()),
            )
            .await?
        }
        AdminCommand::Device(DeviceCommand::Add { user }) => {
            api.call(
                Method::POST,
                &format!("/v1/admin/users/{user}/devices"),
                None::<&()>,
                None,
                Some(token.trim()),
            )
            .await?
        }
    };
    println!(
        "enrollment code for {} (single use, expires at unix time {}):",
        code.user, code.expires_at
    );
    println!("{}", code.code);
    Ok(())
}

async fn chat(client: &mut Client, command: ChatCommand) -> Result<()> {
    match command {
        ChatCommand::Create { title, with } => {
            client.sync().await?;
            let id = client.create_chat(&title, &with).await?;
            println!("created chat {title:?}");
            println!("{id}");
        }
        ChatCommand::Add { chat, users } => {
            client.sync().await?;
            client.add_members(&chat, &users).await?;
            println!("added {}", users.join(", "));
        }
        ChatCommand::Remove { chat, users } => {
            client.sync().await?;
            client.remove_members(&chat, &users).await?;
            println!("removed {}", users.join(", "));
        }
        ChatCommand::List { json } => Output::new(json).chats(&client.chats()?)?,
        ChatCommand::Members { chat, json } => {
            Output::new(json).members(&client.members(&chat)?)?
        }
    }
    Ok(())
}

async fn watch(client: &mut Client, out: Output) -> Result<()> {
    let mut backoff = std::time::Duration::from_millis(250);
    let store = client.store().clone();
    loop {
        let mut printer = |batch: &[vellum_client::MessageRow]| {
            for m in batch {
                if let Err(e) = out.message(&store, m) {
                    eprintln!("error: {e}");
                }
            }
        };
        let result = tokio::select! {
            r = client.watch_once(&mut printer) => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match result {
            Err(vellum_client::Error::Network(e)) => {
                tracing::warn!(%e, "connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => bail!(e),
            Ok(()) => return Ok(()),
        }
    }
}
