//! `vellum`: the delivery server, the device CLI, the admin CLI and the demo in one binary.

mod demo;
mod files;
mod output;
mod records;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use vellum_client::{Api, ApprovalStep, ChatClass, Client, MessageTimers, Revocation};
use vellum_mls::ChatPolicy;
use vellum_wire::{
    timer, CreateUserRequest, DeviceList, EnrollmentCode, HoldAction, OrgPolicy, OrgPolicyUpdate,
    ResetScheduled,
};

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
        /// The key directory's log name (C2SP origin) in every checkpoint. Default: one
        /// derived from the org key. Devices pin it: do not change it later.
        #[arg(long = "directory-origin", value_name = "NAME")]
        directory_origin: Option<String>,
        /// A witness to submit each key directory checkpoint to: its URL and its
        /// cosignature verifier key (`vellum witness key`), as URL=VKEY. Repeatable. Its
        /// operator follows DATA/directory.vkey.
        #[arg(long = "directory-witness", value_name = "URL=VKEY")]
        directory_witnesses: Vec<String>,
        /// How many witnesses must cosign a checkpoint before devices are served it
        /// (default: all of them).
        #[arg(long = "directory-witness-quorum", value_name = "K")]
        directory_witness_quorum: Option<usize>,
        /// The shortest wait an identity reset may have (`policy set --reset-wait` cannot
        /// go below it). Devices pin it at enrollment, so lowering it later changes nothing
        /// for them.
        #[arg(
            long = "min-reset-wait",
            value_name = "DURATION",
            default_value = "24h"
        )]
        min_reset_wait: String,
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
    /// List your devices (state, enrolled, last seen); on a device waiting for approval,
    /// also its verification code. Subcommands approve, revoke, veto a reset.
    Devices {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Send a text message.
    Send {
        chat: String,
        text: String,
        /// Expire this message sooner than the chat's default (30s, 10m, 12h, 7d).
        #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
        expire: Option<String>,
        /// Burn this message sooner after reading than the chat's default.
        #[arg(long = "burn-on-read", value_name = "DUR", allow_hyphen_values = true)]
        burn_on_read: Option<String>,
        /// Attach a file (repeatable), end-to-end encrypted; an interrupted upload resumes
        /// when the same command is run again. Example: --file report.pdf --file data.csv
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
    },
    /// Download, decrypt and check the files of a message (default: into the profile,
    /// where the shredder removes them with the message); an interrupted download resumes.
    #[command(after_help = "Example: vellum download ops 3f2a… --out ~/Documents")]
    Download {
        chat: String,
        message_id: String,
        /// The directory to save into (a warning says so if the shredder cannot reach it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Display unread messages of a chat; starts their burn-on-read timers.
    Read {
        chat: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete one of your own messages for everyone.
    Delete { chat: String, message_id: String },
    /// Run the shredder now and report what it removed.
    Shred {
        #[arg(long)]
        json: bool,
    },
    /// Fetch and process everything pending; print new messages (alarms about the archive
    /// go to standard error).
    Sync {
        #[arg(long)]
        json: bool,
    },
    /// Sync, then say how this device sees the org's archive: the newest checkpoint it
    /// checked, and every alarm. Exits non-zero if the archive's log forked or went back, or
    /// the key directory failed a check.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number of you and USER from the key directory, to compare with them
    /// out of band (in person, or on a call). After the administrator reset USER's identity,
    /// USER is added to no chat until you compare and confirm it.
    Safety {
        user: String,
        /// Confirm USER's current identity (after comparing the number).
        #[arg(long)]
        confirm: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a chat's archive receipts of your messages, or write one message's
    /// self-contained proof (for `archive verify-receipt`) to standard output.
    Receipts {
        chat: String,
        message_id: Option<String>,
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
    /// Run the org's archiver: the records member of every record chat.
    Archiver {
        #[arg(long)]
        server: String,
        #[arg(long)]
        data: PathBuf,
        /// `records.pub` from `records init`.
        #[arg(long = "records-key")]
        records_key: PathBuf,
        /// The log's stable origin, for an archive whose records.pub is version 1 (made
        /// before Vellum 0.2): the custodians' next unseal upgrades records.pub (written to
        /// DATA/records.pub) and binds the archive to this origin. Otherwise records.pub's.
        #[arg(long)]
        origin: Option<String>,
        /// The archiver's enrollment code (first start only).
        #[arg(long)]
        code: Option<String>,
        /// Where the records API listens (port 0: any free port). The first line printed
        /// names the bound address.
        #[arg(long, default_value = "127.0.0.1:7481")]
        listen: SocketAddr,
        /// Seal again after this long without records-office activity.
        #[arg(long = "idle-seal", default_value = "15m", value_name = "DUR")]
        idle_seal: String,
        /// How often new leaves get a signed checkpoint (and senders their receipts): 1s,
        /// 250ms, 5m.
        #[arg(long = "checkpoint-interval", default_value = "1s", value_name = "DUR")]
        checkpoint_interval: humantime::Duration,
        /// A witness to submit each checkpoint to: its URL and its cosignature verifier key
        /// (`vellum witness key`), as URL=VKEY. Repeatable.
        #[arg(long = "witness", value_name = "URL=VKEY")]
        witnesses: Vec<String>,
        /// How many witnesses must cosign each checkpoint (default: all of them).
        #[arg(long = "witness-quorum", value_name = "K")]
        witness_quorum: Option<usize>,
    },
    /// The records office's API on the archiver.
    Records {
        #[arg(long)]
        archiver: String,
        #[arg(long)]
        token_file: PathBuf,
        #[command(subcommand)]
        command: records::RecordsCommand,
    },
    /// Offline checks of an archive directory, for auditors.
    #[command(subcommand)]
    Archive(records::ArchiveCommand),
    /// Run a C2SP tlog witness that cosigns a log's consistent checkpoints (or, with a
    /// subcommand, print its key or its newest cosigned checkpoint).
    Witness(witness::WitnessArgs),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Approve a new device of yours. Without --code: starts the exchange (step 1); then
    /// run `vellum devices` on the new device (step 2) and type the code it shows here with
    /// --code (step 3). A wrong code approves nothing.
    Approve {
        device_id: String,
        /// The verification code the new device shows (`1234-5678-9012`; spaces and dashes
        /// are ignored).
        #[arg(long)]
        code: Option<String>,
    },
    /// Revoke one of your devices: published in the key directory, and removed from your
    /// chats. Revoking this device wipes its profile.
    Revoke { device_id: String },
    /// Stop the administrator's pending reset of your identity.
    VetoReset,
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
    #[command(subcommand)]
    Policy(Box<PolicyCommand>),
    #[command(subcommand)]
    Records(RecordsAdminCommand),
    /// Records configuration, archiver lag and warnings.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RecordsAdminCommand {
    /// Generate the records key on this machine, split it among custodians, register the
    /// public half; prints the archiver's enrollment code on the last line.
    Init {
        #[arg(long)]
        custodians: u8,
        #[arg(long)]
        threshold: u8,
        #[arg(long)]
        out: PathBuf,
        /// The log's stable name, in every checkpoint (C2SP origin), for example
        /// `records.agency.example/vellum`. Default: the server's host followed by
        /// `/vellum-records`.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Replace a dead archiver: revoke its device and print the enrollment code of the new
    /// one (last line). It serves record chats once k custodians unseal it (binding it).
    ReplaceArchiver,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Set the org's bounds on message timers, read receipts and files.
    Set {
        /// Longest expiration timer a chat or message may have, or `off` for no limit.
        #[arg(
            long = "max-expire",
            value_name = "DUR|off",
            allow_hyphen_values = true
        )]
        max_expire: Option<String>,
        /// Longest burn-on-read timer, or `off` for no limit.
        #[arg(
            long = "max-burn-on-read",
            value_name = "DUR|off",
            allow_hyphen_values = true
        )]
        max_burn_on_read: Option<String>,
        /// Whether chats may have no expiration timer.
        #[arg(long = "allow-no-expiry", value_name = "true|false")]
        allow_no_expiry: Option<String>,
        /// The class of new chats when their creator does not say.
        #[arg(long = "default-class", value_name = "record|transitory")]
        default_class: Option<String>,
        /// Whether chats may be transitory once records are configured. `false` makes every
        /// existing transitory chat convert at its next commit; until then it takes no message.
        #[arg(long = "allow-transitory", value_name = "true|false")]
        allow_transitory: Option<String>,
        /// What a legal hold on a person does to that person's transitory chats:
        /// `suspend-timers` (the default: nothing there expires or burns until the hold is
        /// released) or `convert` (they become record chats at their next commit).
        #[arg(long = "on-hold", value_name = "suspend-timers|convert")]
        on_hold: Option<String>,
        /// After how long a missing archive receipt, or a checkpoint not renewed or not
        /// witnessed, is an alarm: seconds, or a duration (10m).
        #[arg(long = "receipt-alarm", value_name = "SECS|DUR")]
        receipt_alarm: Option<String>,
        /// How long `admin user reset` waits (any device of the user may veto it
        /// meanwhile): seconds, or a duration (72h).
        #[arg(long = "reset-wait", value_name = "SECS|DUR")]
        reset_wait: Option<String>,
        /// Whether chats may turn on read receipts.
        #[arg(long = "read-receipts", value_name = "true|false")]
        read_receipts: Option<String>,
        /// Largest attachment: bytes, or with a unit (500KiB, 100MiB, 1GiB).
        #[arg(long = "max-file", value_name = "SIZE")]
        max_file: Option<String>,
        /// Most attachment bytes one user may keep on the server (e.g. 10GiB).
        #[arg(long = "user-quota", value_name = "SIZE")]
        user_quota: Option<String>,
        /// Whether files may be sent in transitory chats.
        #[arg(long = "files-in-transitory", value_name = "true|false")]
        files_in_transitory: Option<String>,
        /// Whether files may be sent in record chats.
        #[arg(long = "files-in-record", value_name = "true|false")]
        files_in_record: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a single-use enrollment code on the last line.
    Add { name: String },
    /// Reset the identity of a user who lost every device: it takes effect after the org's
    /// reset wait unless a device of the user vetoes it, and revokes all their devices.
    Reset { name: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Issue an enrollment code for another device of an existing user.
    Add { user: String },
    /// List a user's devices.
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device of a user (published in the key directory; the device wipes itself
    /// when it next reaches the server).
    Revoke { name: String, device_id: String },
}

#[derive(Subcommand)]
enum ChatCommand {
    /// Create a chat; prints its id on the last line.
    Create {
        title: String,
        /// Users to add, comma-separated.
        #[arg(long, value_delimiter = ',')]
        with: Vec<String>,
        /// Messages disappear this long after sending (30s, 10m, 12h, 7d).
        #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
        expire: Option<String>,
        /// Messages burn this long after each device first displays them.
        #[arg(long = "burn-on-read", value_name = "DUR", allow_hyphen_values = true)]
        burn_on_read: Option<String>,
        /// `record` (kept by the org's archiver) or `transitory`; default: the org's.
        #[arg(long, value_name = "record|transitory")]
        class: Option<String>,
    },
    /// Change the chat's default timers; they apply to messages sent afterwards.
    Set {
        chat: String,
        #[arg(long, value_name = "DUR|off", allow_hyphen_values = true)]
        expire: Option<String>,
        #[arg(
            long = "burn-on-read",
            value_name = "DUR|off",
            allow_hyphen_values = true
        )]
        burn_on_read: Option<String>,
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
    /// The chat's members (with --devices: each device, its state and fingerprint).
    Members {
        chat: String,
        /// Each device: its state in the key directory and its key's fingerprint.
        #[arg(long)]
        devices: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // Usage errors too are one line: the first line of clap's message.
            let rendered = e.to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line}");
            std::process::exit(2);
        }
    };
    let server_mode = matches!(cli.command, Command::Server { .. });
    let default_level = if server_mode { "info" } else { "warn" };
    // Migrations report each step at info; the server says what matters itself.
    let default_filter = format!("{default_level},refinery_core=warn");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Server {
            listen,
            data,
            directory_origin,
            directory_witnesses,
            directory_witness_quorum,
            min_reset_wait,
        } => {
            let mut config = vellum_server::ServerConfig::new(listen, data);
            config.min_reset_wait_secs = timer::parse_duration(&min_reset_wait)?;
            config.directory_witnesses = witness_targets(
                "--directory-witness",
                &directory_witnesses,
                directory_witness_quorum,
            )?;
            config.directory_witness_quorum = directory_witness_quorum;
            config.directory_origin = directory_origin;
            vellum_server::serve(config).await?;
        }
        Command::Admin(args) => admin(args).await?,
        Command::Enroll { server, user, code } => {
            let client = Client::enroll(&home(&cli.home)?, &server, &user, &code).await?;
            let (user, id) = (client.user(), client.device_id());
            println!("enrolled {user} as device {id}");
            if user != vellum_wire::RECORDS_USER && !client.holds_identity()? {
                println!("pending approval by an approved device of {user}; it receives nothing until then:");
                println!("  1. on the approved device: vellum devices approve {id}");
                println!(
                    "  2. on this device:         vellum devices    (shows the verification code)"
                );
                println!("  3. on the approved device: vellum devices approve {id} --code CODE");
            }
            // Scripts read the id from the last line.
            println!("{id}");
        }
        Command::Devices { json, command } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            devices(&mut client, json, command).await?;
        }
        Command::Chat(command) => {
            let mut client = Client::open(&home(&cli.home)?)?;
            chat(&mut client, command).await?;
        }
        Command::Send {
            chat,
            text,
            expire,
            burn_on_read,
            files,
        } => {
            let overrides = MessageTimers {
                expire_secs: duration(expire.as_deref())?,
                burn_secs: duration(burn_on_read.as_deref())?,
            };
            let mut client = Client::open(&home(&cli.home)?)?;
            client.sync().await?;
            if !files.is_empty() {
                return files::send(&mut client, &chat, &text, &files, overrides).await;
            }
            let sent = client.send_with(&chat, &text, overrides).await?;
            println!("sent {}", sent.id);
        }
        Command::Download {
            chat,
            message_id,
            out,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.sync().await?;
            files::download(&mut client, &chat, &message_id, out.as_deref(), json).await?;
        }
        Command::Read { chat, json } => {
            let client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            for m in client.read(&chat)? {
                out.message(client.store(), &m)?;
            }
        }
        Command::Delete { chat, message_id } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.sync().await?;
            client.delete(&chat, &message_id).await?;
            println!("deleted {message_id} for everyone");
        }
        Command::Shred { json } => {
            let client = Client::open(&home(&cli.home)?)?;
            Output::new(json).shredded(&client.shred()?)?;
        }
        Command::Sync { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            for m in client.sync().await? {
                out.message(client.store(), &m)?;
            }
            for alarm in client.records_alarms(vellum_client::now_millis())? {
                eprintln!("WARNING: {alarm}");
            }
            let directory = client.directory_alarms()?;
            for alarm in &directory {
                eprintln!("WARNING: {alarm}");
            }
            // Like `status`: a script running `sync` must not miss them.
            if !directory.is_empty() {
                bail!("the server's key directory failed this device's checks, or a reset of your identity is pending (see the warnings above)");
            }
        }
        Command::Status { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            // Each sync of a new process refreshes the key directory too.
            client.sync().await?;
            let mut alarms = client.records_alarms(vellum_client::now_millis())?;
            let directory = client.directory_alarms()?;
            alarms.extend(directory.iter().cloned());
            out.device_status(&client, &alarms)?;
            if alarms
                .iter()
                .any(|a| a.starts_with(vellum_client::RECORDS_LOG_CHANGED))
            {
                bail!(
                    "the organisation's archive log forked or went back (see the warnings above)"
                );
            }
            if !directory.is_empty() {
                bail!("the server's key directory failed this device's checks (see the warnings above)");
            }
        }
        Command::Safety {
            user,
            confirm,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.sync().await?;
            let number = match confirm {
                true => client.confirm_identity(&user)?,
                false => client.safety(&user)?,
            };
            Output::new(json).safety(client.user(), &number)?;
        }
        Command::Receipts {
            chat,
            message_id,
            json,
        } => {
            let client = Client::open(&home(&cli.home)?)?;
            match message_id {
                Some(id) => print!("{}", client.receipt_proof(&chat, &id)?.to_json()),
                None => Output::new(json).receipts(&client.receipts(&chat, None)?)?,
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
        Command::Archiver {
            server,
            data,
            records_key,
            origin,
            code,
            listen,
            idle_seal,
            checkpoint_interval,
            witnesses,
            witness_quorum,
        } => {
            let idle_seal = std::time::Duration::from_secs(timer::parse_duration(&idle_seal)?);
            let checkpoint_interval = *checkpoint_interval;
            if checkpoint_interval.is_zero() {
                anyhow::bail!("--checkpoint-interval must be longer than zero");
            }
            let config = vellum_archiver::ArchiverConfig {
                server,
                data,
                records_key,
                origin,
                code,
                listen,
                idle_seal,
                checkpoint_interval,
                witness_quorum: witness_quorum.unwrap_or(witnesses.len()),
                witnesses: witness_targets("--witness", &witnesses, witness_quorum)?,
            };
            vellum_archiver::run(config).await?;
        }
        Command::Records {
            archiver,
            token_file,
            command,
        } => records::records(&archiver, &token_file, command).await?,
        Command::Archive(command) => records::archive(command)?,
        Command::Witness(args) => witness::witness(args).await?,
    }
    Ok(())
}

/// A `SECS|DUR` option of at least a second: 600, 10m, 72h.
fn seconds(flag: &str, value: Option<&str>) -> Result<Option<u64>> {
    value
        .map(|v| match v.parse::<u64>() {
            Ok(0) => bail!("{flag} must be at least 1 second"),
            Ok(secs) => Ok(secs),
            Err(_) => Ok(timer::parse_duration(v)?),
        })
        .transpose()
}

/// `vellum devices …`.
async fn devices(client: &mut Client, json: bool, command: Option<DevicesCommand>) -> Result<()> {
    match command {
        None => Output::new(json).devices(&client.devices().await?)?,
        Some(DevicesCommand::Approve { device_id, code }) => {
            match client.approve_device(&device_id, code.as_deref()).await? {
                ApprovalStep::Started { device_id } => {
                    println!("started approving device {device_id}");
                    println!("now run `vellum devices` on device {device_id} and read the verification code it shows,");
                    println!("then here: vellum devices approve {device_id} --code CODE");
                }
                ApprovalStep::Approved { device_id, chats } => {
                    println!("approved device {device_id}; added it to {chats} chat(s)")
                }
            }
        }
        Some(DevicesCommand::Revoke { device_id }) => match client.revoke_device(&device_id).await?
        {
            Revocation::Other { device_id, chats } => {
                println!("revoked device {device_id}; removed it from {chats} chat(s)")
            }
            Revocation::ThisDevice => {
                println!("revoked this device: its profile has been wiped")
            }
        },
        Some(DevicesCommand::VetoReset) => {
            let vetoed = client.veto_reset().await?;
            println!(
                "vetoed the reset of {}'s identity (request {}, due at {})",
                client.user(),
                vetoed.request_id,
                output::rfc3339_secs(vetoed.effective_at)
            );
        }
    }
    Ok(())
}

/// A `DUR` option: 30s, 10m, 12h, 7d, 2w.
fn duration(value: Option<&str>) -> Result<Option<u64>> {
    value
        .map(timer::parse_duration)
        .transpose()
        .map_err(Into::into)
}

/// A `DUR|off` option: `None` leaves the setting alone, `Some(None)` switches it off.
fn timer_setting(value: Option<&str>) -> Result<Option<Option<u64>>> {
    value
        .map(timer::parse_timer)
        .transpose()
        .map_err(Into::into)
}

fn class(value: Option<&str>) -> Result<Option<ChatClass>> {
    value
        .map(|v| match v {
            "record" => Ok(ChatClass::Record),
            "transitory" => Ok(ChatClass::Transitory),
            other => bail!("a chat class is record or transitory, not {other:?}"),
        })
        .transpose()
}

fn boolean(value: Option<&str>) -> Result<Option<bool>> {
    value
        .map(|v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            other => bail!("expected true or false, got {other:?}"),
        })
        .transpose()
}

async fn admin(args: AdminArgs) -> Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read token file {}", args.token_file.display()))?;
    let token = Some(token.trim());
    let api = Api::new(&args.server)?;
    let code: EnrollmentCode = match args.command {
        AdminCommand::User(UserCommand::Add { name }) => {
            let request = CreateUserRequest { name };
            api.call(Method::POST, "/v1/admin/users", Some(&request), None, token)
                .await?
        }
        AdminCommand::Device(DeviceCommand::Add { user }) => {
            let path = format!("/v1/admin/users/{user}/devices");
            api.call(Method::POST, &path, None::<&()>, None, token)
                .await?
        }
        AdminCommand::Device(DeviceCommand::List { name, json }) => {
            let path = format!("/v1/admin/users/{name}/devices");
            let list: DeviceList = api
                .call(Method::GET, &path, None::<&()>, None, token)
                .await?;
            let out = Output::new(json);
            for d in list.devices {
                out.device(&vellum_client::DeviceEntry {
                    device_id: d.device_id,
                    state: d.state,
                    enrolled_at: Some(d.enrolled_at),
                    last_seen: d.last_seen,
                    this_device: false,
                    code: None,
                    warning: None,
                });
            }
            return Ok(());
        }
        AdminCommand::Device(DeviceCommand::Revoke { name, device_id }) => {
            let path = format!("/v1/admin/users/{name}/devices/{device_id}/revoke");
            let _: serde::de::IgnoredAny = api
                .call(Method::POST, &path, None::<&()>, None, token)
                .await?;
            println!("revoked device {device_id} of {name}: it is published in the key directory, every chat drops it, and it wipes itself when it next reaches the server");
            return Ok(());
        }
        AdminCommand::User(UserCommand::Reset { name }) => {
            let path = format!("/v1/admin/users/{name}/reset");
            let reset: ResetScheduled = api
                .call(Method::POST, &path, None::<&()>, None, token)
                .await?;
            println!(
                "{0}'s identity will be reset at {1} unless a device of {0} vetoes it",
                reset.user,
                output::rfc3339_secs(reset.effective_at)
            );
            return Ok(());
        }
        AdminCommand::Status { json } => {
            let status: vellum_wire::AdminStatus = api
                .call(Method::GET, "/v1/admin/status", None::<&()>, None, token)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!(
                    "records: {}; archiver: {}{}; backlog: {} entries{}",
                    if status.records_configured {
                        "configured"
                    } else {
                        "NOT configured"
                    },
                    status.archiver_device.as_deref().unwrap_or("none"),
                    match status.archiver_binding_serial {
                        Some(serial) => format!(" (bound by the custodians, binding {serial})"),
                        None => " (not bound)".into(),
                    },
                    status.archiver_backlog,
                    status
                        .archiver_lag_ms
                        .map(|ms| format!(", oldest {} s old", ms / 1000))
                        .unwrap_or_default()
                );
                if status.noncompliant_chat_count > 0 {
                    println!(
                        "chats not compliant (transitory while every chat must be a record): {}",
                        status.noncompliant_chat_count
                    );
                    for chat in &status.noncompliant_chats {
                        println!("  {chat}");
                    }
                    let unlisted =
                        status.noncompliant_chat_count as usize - status.noncompliant_chats.len();
                    if unlisted > 0 {
                        println!("  … and {unlisted} more");
                    }
                }
                if let Some(size) = status.checkpoint_size {
                    println!(
                        "newest checkpoint: {size} leaves, published {} s ago, {} witness cosignature(s); record messages without a receipt past the alarm time: {}",
                        status.checkpoint_age_ms.unwrap_or(0) / 1000,
                        status.checkpoint_cosigners.unwrap_or(0),
                        status.unreceipted_messages
                    );
                }
                for warning in &status.warnings {
                    println!("WARNING: {warning}");
                }
            }
            return Ok(());
        }
        AdminCommand::Records(RecordsAdminCommand::Init {
            custodians,
            threshold,
            out,
            origin,
        }) => {
            let origin = match origin {
                Some(origin) => origin,
                None => records::default_origin(&args.server)?,
            };
            return records::init(&api, token, custodians, threshold, &out, &origin)
                .await
                .map(|_| ());
        }
        AdminCommand::Records(RecordsAdminCommand::ReplaceArchiver) => {
            let code: EnrollmentCode = api
                .call(
                    Method::POST,
                    "/v1/admin/records/replace-archiver",
                    None::<&()>,
                    None,
                    token,
                )
                .await?;
            println!("the old archiver device is revoked; start the new archiver with this code, then k custodians unseal it to bind it");
            println!(
                "archiver enrollment code (single use, expires at {}):",
                output::rfc3339_millis(code.expires_at * 1000)
            );
            println!("{}", code.code);
            return Ok(());
        }
        AdminCommand::Policy(policy) => {
            let PolicyCommand::Set {
                max_expire,
                max_burn_on_read,
                allow_no_expiry,
                default_class,
                allow_transitory,
                on_hold,
                receipt_alarm,
                reset_wait,
                read_receipts,
                max_file,
                user_quota,
                files_in_transitory,
                files_in_record,
            } = *policy;
            // `off` clears a maximum, which the API spells 0.
            let update = OrgPolicyUpdate {
                max_expire_secs: timer_setting(max_expire.as_deref())?.map(|v| v.unwrap_or(0)),
                max_burn_secs: timer_setting(max_burn_on_read.as_deref())?.map(|v| v.unwrap_or(0)),
                allow_no_expiry: boolean(allow_no_expiry.as_deref())?,
                default_record: class(default_class.as_deref())?.map(|c| c == ChatClass::Record),
                allow_transitory: boolean(allow_transitory.as_deref())?,
                on_hold: on_hold
                    .as_deref()
                    .map(|v| match v {
                        "suspend-timers" => Ok(HoldAction::SuspendTimers),
                        "convert" => Ok(HoldAction::Convert),
                        other => bail!("--on-hold is suspend-timers or convert, not {other:?}"),
                    })
                    .transpose()?,
                receipt_alarm_secs: seconds("--receipt-alarm", receipt_alarm.as_deref())?,
                reset_wait_secs: seconds("--reset-wait", reset_wait.as_deref())?,
                allow_read_receipts: boolean(read_receipts.as_deref())?,
                max_file_bytes: max_file.as_deref().map(output::parse_size).transpose()?,
                user_quota_bytes: user_quota.as_deref().map(output::parse_size).transpose()?,
                files_in_transitory: boolean(files_in_transitory.as_deref())?,
                files_in_record: boolean(files_in_record.as_deref())?,
            };
            if update.max_expire_secs.is_none()
                && update.max_burn_secs.is_none()
                && update.allow_no_expiry.is_none()
                && update.default_record.is_none()
                && update.allow_transitory.is_none()
                && update.on_hold.is_none()
                && update.receipt_alarm_secs.is_none()
                && update.reset_wait_secs.is_none()
                && update.allow_read_receipts.is_none()
                && update.max_file_bytes.is_none()
                && update.user_quota_bytes.is_none()
                && update.files_in_transitory.is_none()
                && update.files_in_record.is_none()
            {
                bail!("nothing to set: give --max-expire, --max-burn-on-read, --allow-no-expiry, --default-class, --allow-transitory, --on-hold, --receipt-alarm, --reset-wait, --read-receipts, --max-file, --user-quota, --files-in-transitory or --files-in-record");
            }
            let policy: OrgPolicy = api
                .call(Method::PUT, "/v1/admin/policy", Some(&update), None, token)
                .await?;
            let show = |v: Option<u64>| v.map_or("none".to_string(), timer::describe);
            println!(
                "max expiration: {}; max burn-on-read: {}; chats without expiry: {}; receipt alarm after {}; identity resets wait {}",
                show(policy.max_expire_secs),
                show(policy.max_burn_secs),
                if policy.allow_no_expiry {
                    "allowed"
                } else {
                    "not allowed"
                },
                timer::describe(policy.receipt_alarm_secs),
                timer::describe(policy.reset_wait_secs)
            );
            let allowed = |yes: bool| if yes { "allowed" } else { "not allowed" };
            println!(
                "read receipts: {}; files up to {} each, {} per user; files in transitory chats: {}; in record chats: {}",
                allowed(policy.allow_read_receipts),
                output::format_size(policy.max_file_bytes),
                output::format_size(policy.user_quota_bytes),
                allowed(policy.files_in_transitory),
                allowed(policy.files_in_record)
            );
            return Ok(());
        }
    };
    println!(
        "enrollment code for {} (single use, expires at {}):",
        code.user,
        output::rfc3339_millis(code.expires_at * 1000)
    );
    println!("{}", code.code);
    Ok(())
}

async fn chat(client: &mut Client, command: ChatCommand) -> Result<()> {
    match command {
        ChatCommand::Create {
            title,
            with,
            expire,
            burn_on_read,
            class: chat_class,
        } => {
            let timers = ChatPolicy {
                expire_secs: timer_setting(expire.as_deref())?.flatten(),
                burn_secs: timer_setting(burn_on_read.as_deref())?.flatten(),
            };
            let chat_class = class(chat_class.as_deref())?;
            client.sync().await?;
            let id = client
                .create_chat(&title, &with, timers, chat_class)
                .await?;
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
        ChatCommand::Set {
            chat,
            expire,
            burn_on_read,
        } => {
            let expire = timer_setting(expire.as_deref())?;
            let burn = timer_setting(burn_on_read.as_deref())?;
            client.sync().await?;
            let policy = client.set_timers(&chat, expire, burn).await?;
            println!("set {}", policy.describe());
        }
        ChatCommand::List { json } => {
            let chats = client.chats()?;
            let classes: Vec<&str> = chats
                .iter()
                .map(|c| {
                    client
                        .chat_class(&c.group_id)
                        .map(ChatClass::as_str)
                        .unwrap_or("unknown")
                })
                .collect();
            Output::new(json).chats(&chats, &classes)?
        }
        ChatCommand::Members {
            chat,
            devices: false,
            json,
        } => Output::new(json).members(&client.described_members(&chat)?)?,
        ChatCommand::Members {
            chat,
            devices: true,
            json,
        } => {
            // Each device's state is the key directory's: read it fresh.
            if let Err(e) = client.refresh_directory().await {
                eprintln!("warning: the key directory could not be refreshed: {e}");
            }
            Output::new(json).member_devices(&client.member_devices(&chat)?)?
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

/// `--witness URL=VKEY` (or `--directory-witness`, named by `flag`), checked before anything
/// starts.
fn witness_targets(
    flag: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<Vec<vellum_witness::WitnessTarget>> {
    let targets = witnesses
        .iter()
        .map(|w| {
            // A key's base64 (33 bytes) has no padding; a URL may hold '='.
            let (url, vkey) = w
                .rsplit_once('=')
                .with_context(|| format!("{flag} {w:?}: expected URL=VKEY"))?;
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            let Some(parsed) = parsed else {
                anyhow::bail!("{flag} {w:?}: {url:?} is not an http(s) URL");
            };
            // The URL shows up in logs and errors: it must not carry credentials.
            if !parsed.username().is_empty() || parsed.password().is_some() {
                anyhow::bail!("{flag}: the URL must not carry a user name or password");
            }
            let verifier = vellum_tlog::cosignature::CosignatureVerifier::parse(vkey)
                .map_err(|e| anyhow::anyhow!("{flag} {w:?}: not a witness key: {e}"))?;
            Ok(vellum_witness::WitnessTarget {
                url: url.to_owned(),
                verifier,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    match quorum {
        Some(k) if k > targets.len() => anyhow::bail!(
            "{flag}-quorum {k} exceeds the number of witnesses ({})",
            targets.len()
        ),
        Some(0) if !targets.is_empty() => anyhow::bail!("{flag}-quorum must be at least 1"),
        _ => Ok(targets),
    }
}
