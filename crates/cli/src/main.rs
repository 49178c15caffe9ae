//! `vellum`: the delivery server, the device CLI, the admin CLI and the demo in one binary.

mod bench;
mod chat_admin;
mod demo;
mod files;
mod foia;
mod output;
mod records;
mod rich;
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
    about = "Records-compliant end-to-end-encrypted messaging",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The device's profile directory. Default: $XDG_DATA_HOME/vellum, else
    /// ~/.local/share/vellum (on macOS ~/Library/Application Support/vellum).
    #[arg(long, global = true, env = "VELLUM_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Show times in UTC rather than the local time zone (JSON times are always UTC).
    #[arg(long, global = true)]
    utc: bool,
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
Examples:
  vellum enroll --server https://vellum.example --user alice --code CODE
  vellum chat create project --with \"bob, dave\" --expire 7d
  vellum send project 'hello'
  echo 'from a script' | vellum send project -
  vellum sync --json

Environment: VELLUM_HOME (profile directory), VELLUM_SERVER (--server of enroll and admin),
VELLUM_ADMIN_TOKEN_FILE (--token-file of admin), NO_COLOR (no colour), TZ (time zone).

Exit codes: 0 success, 1 error, 2 usage error, 3 an alarm (the archive's log or the key
directory failed this device's checks; see the warnings).";

#[derive(Subcommand)]
enum Command {
    /// Run the delivery server.
    #[command(after_help = "Example: vellum server --listen 0.0.0.0:7480 --data /var/lib/vellum")]
    Server {
        /// Address and port to listen on (port 0: any free port; the first line printed
        /// names the bound address).
        #[arg(long, default_value = "127.0.0.1:7480")]
        listen: SocketAddr,
        /// The server's data directory (database, keys, admin-token).
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
        /// Keep the deployment in this PostgreSQL database instead of DATA/server.db, so
        /// that several nodes serve it (postgres://USER@HOST:PORT/DB). Every node needs a
        /// copy of the first node's data directory (org.key, directory.key,
        /// admin-token.sha256); nodes on one host may share it.
        #[arg(
            long = "database-url",
            env = "VELLUM_DATABASE_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database_url: Option<String>,
        /// The NATS server through which nodes on the shared database wake each other's
        /// devices (nats://HOST:PORT). Without it, or while it is down, nodes poll.
        #[arg(
            long = "nats-url",
            env = "VELLUM_NATS_URL",
            hide_env_values = true,
            value_name = "URL",
            requires = "database_url"
        )]
        nats_url: Option<String>,
        /// How often a node on the shared database wakes its devices while it has no NATS
        /// connection.
        #[arg(
            long = "poll-interval",
            value_name = "DURATION",
            default_value = "1s",
            requires = "database_url"
        )]
        poll_interval: humantime::Duration,
    },
    /// Administer the org on a delivery server.
    #[command(
        after_help = "Example: vellum admin --server https://vellum.example --token-file vellum-data/admin-token user add alice"
    )]
    Admin(AdminArgs),
    /// Enroll this device with a single-use code from the admin.
    #[command(
        after_help = "Examples:\n  vellum enroll --server https://vellum.example --user alice --code 7Q2K-...\n  vellum enroll --server https://a.vellum.example,https://b.vellum.example --user alice --code 7Q2K-..."
    )]
    Enroll {
        /// The delivery server's URL. A server of several nodes: each node's URL, comma
        /// separated or --server repeated, in the order to try them.
        #[arg(
            long,
            env = "VELLUM_SERVER",
            value_name = "URL",
            value_delimiter = ',',
            required = true
        )]
        server: Vec<String>,
        /// Your user name, as the admin created it.
        #[arg(long)]
        user: String,
        /// The single-use enrollment code from `admin user add` or `admin device add`.
        #[arg(long)]
        code: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create, change and inspect chats.
    #[command(
        subcommand,
        after_help = "Example: vellum chat create project --with \"bob, dave\""
    )]
    Chat(ChatCommand),
    /// List your devices (state, enrolled, last seen); on a device waiting for approval,
    /// also its verification code. Subcommands approve, revoke, veto a reset.
    #[command(after_help = "Example: vellum devices --json")]
    Devices {
        /// Print a JSON array (one object per device), or the result of a subcommand as one
        /// JSON object.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Send a text message (at most 16 KiB of UTF-8).
    #[command(
        after_help = "Examples:\n  vellum send project 'see you at 10'\n  vellum send project --expire 1h 'gone in an hour'\n  git log -1 | vellum send project -"
    )]
    Send {
        /// The chat: its title or id.
        chat: String,
        /// The message, or `-` to read it from standard input. At most 16 KiB (16384 bytes);
        /// a message of only whitespace is refused.
        text: String,
        /// The id of the message this one replies to (shown quoted above it).
        #[arg(long = "reply-to", value_name = "MSG_ID")]
        reply_to: Option<String>,
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
        /// Print the sent message's id as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replace the text of one of your messages for everyone (TEXT `-`: standard input,
    /// at most 16 KiB). The archive keeps every version.
    #[command(after_help = "Example: vellum edit field-ops 3f2a…c1 \"Crossing at 0700\"")]
    Edit {
        /// The chat: its title or id.
        chat: String,
        /// The id of your message to edit.
        message_id: String,
        /// The new text, or `-` to read it from standard input.
        text: String,
        /// Print the edit as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// React to a message with one emoji, or withdraw your reaction with --remove.
    #[command(after_help = "Example: vellum react field-ops 3f2a…c1 👍")]
    React {
        /// The chat: its title or id.
        chat: String,
        /// The id of the message to react to.
        message_id: String,
        /// One emoji.
        emoji: String,
        /// Withdraw this reaction.
        #[arg(long)]
        remove: bool,
        /// Print the reaction as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Search your unexpired local history: messages containing every word, in any case.
    /// Nothing is indexed on disk.
    #[command(after_help = "Example: vellum search north gate --chat field-ops")]
    Search {
        /// Words that must all appear (any case).
        #[arg(required = true)]
        words: Vec<String>,
        /// Only this chat.
        #[arg(long)]
        chat: Option<String>,
        /// Print the matches as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Download, decrypt and check the files of a message (default: into the profile,
    /// where the shredder removes them with the message); an interrupted download resumes.
    #[command(after_help = "Example: vellum download ops 3f2a… --out ~/Documents")]
    Download {
        /// The chat: its title or id.
        chat: String,
        /// The id of the message whose files to save.
        message_id: String,
        /// The directory to save into (a warning says so if the shredder cannot reach it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print the saved files as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Display unread messages of a chat; starts their burn-on-read timers.
    #[command(after_help = "Example: vellum read project")]
    Read {
        /// The chat: its title or id.
        chat: String,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Delete one of your own messages for everyone.
    #[command(after_help = "Example: vellum delete project 3f9c0d...")]
    Delete {
        /// The chat: its title or id.
        chat: String,
        /// The message's id (shown in parentheses after it, or `id` in JSON).
        message_id: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run the shredder now and report what it removed.
    #[command(after_help = "Example: vellum shred --json")]
    Shred {
        /// Print a JSON array of what was removed.
        #[arg(long)]
        json: bool,
    },
    /// Fetch and process everything pending; print every message and event not shown yet
    /// (whichever command fetched it), in the server's order across chats. Alarms about the
    /// archive go to standard error.
    #[command(after_help = "Example: vellum sync --json")]
    Sync {
        /// One JSON object per message or event.
        #[arg(long)]
        json: bool,
    },
    /// Sync, then say how this device sees the org's archive: the newest checkpoint it
    /// checked, and every alarm. Exits non-zero if the archive's log forked or went back, or
    /// the key directory failed a check.
    #[command(after_help = "Example: vellum status --json")]
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number of you and USER from the key directory, to compare with them
    /// out of band (in person, or on a call). After the administrator reset USER's identity,
    /// USER is added to no chat until you compare and confirm it.
    #[command(
        after_help = "Example: vellum safety bob   (then, once compared: vellum safety bob --confirm)"
    )]
    Safety {
        /// The other user.
        user: String,
        /// Confirm USER's current identity (after comparing the number).
        #[arg(long)]
        confirm: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a chat's archive receipts of your messages, or write one message's
    /// self-contained proof (for `archive verify-receipt`) to standard output.
    #[command(
        after_help = "Examples:\n  vellum receipts project --json\n  vellum receipts project 3f9c0d... > proof.json"
    )]
    Receipts {
        /// The chat: its title or id.
        chat: String,
        /// One message's id: write its proof instead of the list.
        message_id: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a chat's local, decrypted history.
    #[command(after_help = "Example: vellum history project --json")]
    History {
        /// The chat: its title or id.
        chat: String,
        /// One JSON object per message or event.
        #[arg(long)]
        json: bool,
    },
    /// List the delivery server's nodes this device uses, in the order it tries them
    /// (each request goes to the first that answers). Subcommands add and remove one.
    #[command(
        after_help = "Examples:\n  vellum servers\n  vellum servers add https://b.vellum.example\n  vellum servers remove https://a.vellum.example"
    )]
    Servers {
        /// Print a JSON array of the URLs.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Option<ServersCommand>,
    },
    /// Stream new messages and events until interrupted (Ctrl-C).
    #[command(after_help = "Example: vellum watch --json")]
    Watch {
        /// One JSON object per message or event.
        #[arg(long)]
        json: bool,
    },
    /// Open the messenger in a window of its own, served by this device on loopback.
    #[command(
        after_help = "Example: vellum app\n         vellum app --no-open --listen 127.0.0.1:8470"
    )]
    App {
        /// Where to serve the window: a loopback address only. Without it, a random
        /// address of 127.0.0.0/8 and any free port, so that no other local server shares
        /// the window's cookie (cookies ignore ports).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Do not open a browser; print the window's URL only (its first line on stdout).
        #[arg(long)]
        no_open: bool,
    },
    /// A self-contained walkthrough: server, three users, a group chat, a removal.
    #[command(after_help = "Example: vellum demo")]
    Demo,
    /// Run the org's archiver: the records member of every record chat.
    #[command(
        after_help = "Example: vellum archiver --server https://vellum.example --data archive --records-key records.pub --code CODE --listen 0.0.0.0:7481 --tls-cert cert.pem --tls-key key.pem"
    )]
    Archiver {
        /// The delivery server's URL.
        #[arg(long, env = "VELLUM_SERVER", value_name = "URL")]
        server: String,
        /// The archive's directory (sealed records, log, keys).
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
        /// PEM certificate chain: serve the records API and console over TLS. Required to
        /// listen beyond loopback (keyholders connect from their own machines).
        #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long = "tls-key", value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// The records office's API on the archiver.
    #[command(
        after_help = "Example: vellum records --archiver http://127.0.0.1:7481 --token-file archive/records-token status"
    )]
    Records {
        /// The archiver's records API URL.
        #[arg(long, value_name = "URL")]
        archiver: String,
        /// File holding your account's API token (the first officer's is DATA/records-token;
        /// others make theirs in the console).
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
    /// Load benchmarks against `vellum server` processes: one JSON summary on stdout.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  vellum completions bash > ~/.local/share/bash-completion/completions/vellum\n  vellum completions zsh > ~/.zfunc/_vellum\n  vellum completions fish > ~/.config/fish/completions/vellum.fish"
    )]
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ServersCommand {
    /// Add a node of the server this device enrolled with, tried after the others. It must
    /// answer this device now: a mistyped URL is refused, not found out in an outage.
    #[command(after_help = "Example: vellum servers add https://b.vellum.example")]
    Add {
        /// The node's URL (http:// or https://).
        url: String,
    },
    /// Remove a node from the list (the last one stays).
    #[command(after_help = "Example: vellum servers remove https://a.vellum.example")]
    Remove {
        /// The node's URL, as `vellum servers` lists it.
        url: String,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Approve a new device of yours. Without --code: starts the exchange (step 1); then
    /// run `vellum devices` on the new device (step 2) and type the code it shows here with
    /// --code (step 3). A wrong code approves nothing.
    #[command(after_help = "Example: vellum devices approve 5e1a... --code 1234-5678-9012")]
    Approve {
        /// The new device's id (printed by its `enroll`).
        device_id: String,
        /// The verification code the new device shows (`1234-5678-9012`; spaces and dashes
        /// are ignored).
        #[arg(long)]
        code: Option<String>,
    },
    /// Revoke one of your devices: published in the key directory, and removed from your
    /// chats. Revoking this device wipes its profile.
    #[command(after_help = "Example: vellum devices revoke 5e1a...")]
    Revoke {
        /// The device's id (`vellum devices`).
        device_id: String,
    },
    /// Stop the administrator's pending reset of your identity.
    #[command(after_help = "Example: vellum devices veto-reset")]
    VetoReset,
}

#[derive(Args)]
struct AdminArgs {
    /// The delivery server's URL.
    #[arg(long, env = "VELLUM_SERVER", value_name = "URL")]
    server: String,
    /// File holding the admin token (the server writes DATA/admin-token on first start).
    #[arg(long, env = "VELLUM_ADMIN_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create users and reset their identity.
    #[command(subcommand, after_help = "Example: vellum admin ... user add alice")]
    User(UserCommand),
    /// Issue enrollment codes for more devices, list and revoke devices.
    #[command(
        subcommand,
        after_help = "Example: vellum admin ... device list alice --json"
    )]
    Device(DeviceCommand),
    /// The org's policy on timers, chat classes, holds, read receipts and files.
    #[command(
        subcommand,
        after_help = "Example: vellum admin ... policy set --max-expire 30d --read-receipts false"
    )]
    Policy(Box<PolicyCommand>),
    /// Configure records: the records key and its custodians, the archiver.
    #[command(
        subcommand,
        after_help = "Example: vellum admin ... records init --custodians 3 --threshold 2 --out shares"
    )]
    Records(RecordsAdminCommand),
    /// Records configuration, archiver lag and warnings.
    #[command(after_help = "Example: vellum admin ... status --json")]
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RecordsAdminCommand {
    /// Generate the records key on this machine, split it among custodians, register the
    /// public half; prints the archiver's enrollment code on the last line.
    #[command(
        after_help = "Example: vellum admin ... records init --custodians 3 --threshold 2 --out shares"
    )]
    Init {
        /// How many custodians get a share of the records key.
        #[arg(long)]
        custodians: u8,
        /// How many of them must give their share to unseal the archive.
        #[arg(long)]
        threshold: u8,
        /// Directory for the shares and records.pub (created if missing).
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
    #[command(after_help = "Example: vellum admin ... records replace-archiver")]
    ReplaceArchiver {
        /// Print the enrollment code as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Set the org's bounds on message timers, read receipts and files.
    #[command(
        after_help = "Example: vellum admin ... policy set --max-expire 30d --max-file 100MiB"
    )]
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
        /// Print the org's policy as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a single-use enrollment code on the last line.
    #[command(after_help = "Example: vellum admin ... user add alice")]
    Add {
        /// The new user's name.
        name: String,
        /// Print the enrollment code as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Reset the identity of a user who lost every device: it takes effect after the org's
    /// reset wait unless a device of the user vetoes it, and revokes all their devices.
    #[command(after_help = "Example: vellum admin ... user reset alice")]
    Reset {
        /// The user.
        name: String,
        /// Print the scheduled reset as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Issue an enrollment code for another device of an existing user.
    #[command(after_help = "Example: vellum admin ... device add alice")]
    Add {
        /// The user.
        user: String,
        /// Print the enrollment code as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a user's devices.
    #[command(after_help = "Example: vellum admin ... device list alice --json")]
    List {
        /// The user.
        name: String,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device of a user (published in the key directory; the device wipes itself
    /// when it next reaches the server).
    #[command(after_help = "Example: vellum admin ... device revoke alice 5e1a...")]
    Revoke {
        /// The user.
        name: String,
        /// The device's id (`device list`).
        device_id: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ChatCommand {
    /// Create a chat; prints its id on the last line.
    #[command(
        after_help = "Example: vellum chat create project --with \"bob, dave\" --expire 7d --class record"
    )]
    Create {
        /// The chat's title.
        title: String,
        /// Users to add, comma-separated (spaces around names are ignored); repeatable.
        #[arg(long, value_delimiter = ',', value_name = "USERS")]
        with: Vec<String>,
        /// Messages disappear this long after sending (30s, 10m, 12h, 7d).
        #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
        expire: Option<String>,
        /// Messages burn this long after each device first displays them.
        #[arg(long = "burn-on-read", value_name = "DUR", allow_hyphen_values = true)]
        burn_on_read: Option<String>,
        /// `record` (kept by the org's archiver) or `transitory`; default: the org's default
        /// class (`admin policy set --default-class`).
        #[arg(long, value_name = "record|transitory")]
        class: Option<String>,
        /// Print the new chat as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change the chat's default timers (they apply to messages sent afterwards) or its read
    /// receipts (admins only).
    #[command(
        after_help = "Examples:\n  vellum chat set project --expire 1d\n  vellum chat set project --burn-on-read off\n  vellum chat set project --read-receipts off"
    )]
    Set {
        /// The chat: its title or id.
        chat: String,
        /// Whether members send "read up to here" markers (if the org allows them).
        #[arg(long = "read-receipts", value_name = "on|off")]
        read_receipts: Option<String>,
        /// Messages disappear this long after sending (30s, 10m, 12h, 7d), or `off`.
        #[arg(long, value_name = "DUR|off", allow_hyphen_values = true)]
        expire: Option<String>,
        /// Messages burn this long after each device first displays them, or `off`.
        #[arg(
            long = "burn-on-read",
            value_name = "DUR|off",
            allow_hyphen_values = true
        )]
        burn_on_read: Option<String>,
        /// Print the chat's timers as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Add every device of the given users.
    #[command(after_help = "Example: vellum chat add project carol dave")]
    Add {
        /// The chat: its title or id.
        chat: String,
        /// The users to add.
        #[arg(required = true)]
        users: Vec<String>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove every device of the given users.
    #[command(after_help = "Example: vellum chat remove project dave")]
    Remove {
        /// The chat: its title or id.
        chat: String,
        /// The users to remove.
        #[arg(required = true)]
        users: Vec<String>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Your chats: id, title, class.
    #[command(after_help = "Example: vellum chat list --json")]
    List {
        /// Print a JSON array (`[]` when there is none).
        #[arg(long)]
        json: bool,
    },
    /// Rename the chat for every member (admins only; unique in your chat list).
    #[command(after_help = "Example: vellum chat rename ops \"Field Ops\"")]
    Rename {
        /// The chat: its title (any case), id, or a unique id prefix (4+ digits).
        chat: String,
        /// The new title (no control characters; unique in your chat list, any case).
        title: String,
        /// Print the chat's id and new title as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Leave the chat with all your devices: another member's device commits it; this
    /// device keeps no key of the chat (its history stays until its timers run out).
    #[command(after_help = "Example: vellum chat leave ops")]
    Leave {
        /// The chat: its title or id.
        chat: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Name a member an admin, or take the role away (admins only).
    #[command(after_help = "Example: vellum chat admins ops add bob")]
    Admins {
        /// The chat: its title or id.
        chat: String,
        /// `add` names the user an admin; `remove` takes the role away.
        #[arg(value_enum)]
        action: chat_admin::AdminAction,
        /// A member of the chat.
        user: String,
        /// Print the chat's admins as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The chat's members (with --devices: each device, its state and fingerprint).
    #[command(after_help = "Example: vellum chat members project --devices")]
    Members {
        /// The chat: its title or id.
        chat: String,
        /// Each device: its state in the key directory and its key's fingerprint.
        #[arg(long)]
        devices: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes (README): 0 success, 1 error, 2 usage error (clap's), 3 an alarm.
const EXIT_ALARM: i32 = 3;

/// An error that is an alarm about this device's view of the org (the archive's log forked
/// or went back, the key directory failed a check): exit code 3, so scripts can tell.
#[derive(Debug)]
struct Alarm(String);

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Alarm {}

fn main() {
    quiet_on_closed_stdout();
    // Usage errors are shown whole, with clap's suggestions and usage line (exit code 2); a
    // bare `vellum chat` lists its subcommands.
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    output::configure(cli.utc);
    let server_mode = matches!(cli.command, Command::Server { .. });
    let default_level = if server_mode { "info" } else { "warn" };
    // Migrations report each step at info; the server says what matters itself.
    let default_filter = format!("{default_level},refinery_core=warn");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
        // The NATS client logs its connect options, password included, at debug: never
        // below info, whatever RUST_LOG asks for (and its connects only where a server runs,
        // not between the demo's lines).
        .add_directive(
            format!("async_nats={default_level}")
                .parse()
                .expect("a valid directive"),
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(output::colour_wanted(std::io::IsTerminal::is_terminal(
            &std::io::stderr(),
        )))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        // One line, its control characters escaped (an error may quote a server's words).
        eprintln!(
            "error: {}",
            output::safe(&format!("{e:#}").replace('\n', " "))
        );
        let code = match e.downcast_ref::<Alarm>() {
            Some(_) => EXIT_ALARM,
            None => 1,
        };
        std::process::exit(code);
    }
}

/// The profile directory: `--home`, else `VELLUM_HOME`, else the platform's data directory.
fn home(cli_home: &Option<PathBuf>) -> Result<PathBuf> {
    match cli_home {
        Some(home) => Ok(home.clone()),
        None => default_home().context(
            "no profile directory: pass --home DIR, set VELLUM_HOME, or set HOME or XDG_DATA_HOME",
        ),
    }
}

/// `$XDG_DATA_HOME/vellum` (an absolute XDG_DATA_HOME only, as the spec says), else
/// `~/.local/share/vellum`; on macOS `~/Library/Application Support/vellum`.
fn default_home() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").and_then(absolute) {
        return Some(data.join("vellum"));
    }
    let home = std::env::var_os("HOME").and_then(absolute)?;
    match cfg!(target_os = "macos") {
        true => Some(home.join("Library/Application Support/vellum")),
        false => Some(home.join(".local/share/vellum")),
    }
}

/// A message's text: the argument, or with `-` standard input (at most 16 KiB, one trailing
/// newline dropped). Empty or whitespace-only text is refused.
fn message_text(text: String) -> Result<String> {
    use std::io::Read;
    let limit = vellum_wire::MAX_TEXT_BYTES;
    let text = match text.as_str() {
        "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .take(limit as u64 + 2)
                .read_to_end(&mut bytes)
                .context("cannot read the message from standard input")?;
            let mut text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("the message on standard input is not UTF-8"))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
        _ => text,
    };
    if text.len() > limit {
        bail!("the message is longer than the limit of 16 KiB ({limit} bytes): nothing sent");
    }
    if text.trim().is_empty() {
        bail!("the message is empty or only whitespace: nothing sent");
    }
    Ok(text)
}

/// User names from `--with` or arguments: `"bob, dave"` is bob and dave.
fn user_names(users: &[String]) -> Vec<String> {
    users
        .iter()
        .flat_map(|u| u.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
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
            database_url,
            nats_url,
            poll_interval,
        } => {
            let mut config = vellum_server::ServerConfig::new(listen, data);
            config.database_url = database_url;
            config.nats_url = nats_url;
            if poll_interval.is_zero() {
                bail!("--poll-interval must be longer than zero");
            }
            config.poll_interval = poll_interval.into();
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
        Command::Enroll {
            server,
            user,
            code,
            json,
        } => {
            let client = Client::enroll_at(&home(&cli.home)?, &server, &user, &code).await?;
            for url in client.unanswered_at_enrollment() {
                eprintln!(
                    "warning: {url} did not answer; kept after the nodes that did \
                     (`vellum servers remove {url}` if it is not a node of this server)"
                );
            }
            let (user, id) = (client.user(), client.device_id());
            if json {
                let pending = user != vellum_wire::RECORDS_USER && !client.holds_identity()?;
                let line =
                    serde_json::json!({"user": user, "device_id": id, "pending_approval": pending});
                println!("{line}");
                return Ok(());
            }
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
            reply_to,
            expire,
            burn_on_read,
            json,
            files,
        } => {
            let overrides = MessageTimers {
                expire_secs: duration(expire.as_deref())?,
                burn_secs: duration(burn_on_read.as_deref())?,
            };
            // Files travel with a text too (their caption): refused before any upload.
            let text = message_text(text)?;
            let mut client = Client::open(&home(&cli.home)?)?;
            client.catch_up().await?;
            let message = vellum_client::OutgoingMessage {
                text,
                reply_to,
                timers: overrides,
                ..Default::default()
            };
            let sent = match files.is_empty() {
                true => client.send_message(&chat, message).await?,
                false => files::send(&mut client, &chat, message, &files).await?,
            };
            match json {
                true => println!(
                    "{}",
                    serde_json::json!({"id": sent.id, "chat": sent.group_id, "sent_at": output::rfc3339_millis(sent.sent_at)})
                ),
                false => println!("sent {}", sent.id),
            }
        }
        Command::Edit {
            chat,
            message_id,
            text,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            rich::edit(&mut client, &chat, &message_id, &text, json).await?;
        }
        Command::React {
            chat,
            message_id,
            emoji,
            remove,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            rich::react(&mut client, &chat, &message_id, &emoji, remove, json).await?;
        }
        Command::Search { words, chat, json } => {
            let client = Client::open(&home(&cli.home)?)?;
            rich::search(&client, &words, chat.as_deref(), json)?;
        }
        Command::Download {
            chat,
            message_id,
            out,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.catch_up().await?;
            files::download(&mut client, &chat, &message_id, out.as_deref(), json).await?;
        }
        Command::Read { chat, json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            for m in client.read(&chat)? {
                out.message(client.store(), &m)?;
            }
            rich::after_display(&mut client, &chat).await;
        }
        Command::Delete {
            chat,
            message_id,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.catch_up().await?;
            client.delete(&chat, &message_id).await?;
            match json {
                true => println!("{}", serde_json::json!({"deleted": message_id})),
                false => println!("deleted {message_id} for everyone"),
            }
        }
        Command::Shred { json } => {
            let client = Client::open(&home(&cli.home)?)?;
            Output::new(json).shredded(&client.shred()?)?;
        }
        Command::Sync { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            // What was stored before a failure is printed before the error.
            let (shown, result) = client.sync_partial().await;
            for m in &shown {
                out.message(client.store(), m)?;
            }
            result?;
            for alarm in client.records_alarms(vellum_client::now_millis())? {
                eprintln!("WARNING: {alarm}");
            }
            let directory = client.directory_alarms()?;
            for alarm in &directory {
                eprintln!("WARNING: {alarm}");
            }
            // Like `status`: a script running `sync` must not miss them.
            if !directory.is_empty() {
                return Err(Alarm("the server's key directory failed this device's checks, or a reset of your identity is pending (see the warnings above)".into()).into());
            }
        }
        Command::Status { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            // Each sync of a new process refreshes the key directory too.
            client.catch_up().await?;
            let mut alarms = client.records_alarms(vellum_client::now_millis())?;
            let directory = client.directory_alarms()?;
            alarms.extend(directory.iter().cloned());
            out.device_status(&client, &alarms)?;
            if alarms
                .iter()
                .any(|a| a.starts_with(vellum_client::RECORDS_LOG_CHANGED))
            {
                return Err(Alarm(
                    "the organisation's archive log forked or went back (see the warnings above)"
                        .into(),
                )
                .into());
            }
            if !directory.is_empty() {
                return Err(Alarm("the server's key directory failed this device's checks (see the warnings above)".into()).into());
            }
        }
        Command::Safety {
            user,
            confirm,
            json,
        } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            client.catch_up().await?;
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
            let mut client = Client::open(&home(&cli.home)?)?;
            let out = Output::new(json);
            rich::before_display(&mut client, &chat).await;
            for m in client.history(&chat)? {
                out.message(client.store(), &m)?;
            }
            rich::after_display(&mut client, &chat).await;
        }
        Command::Servers { json, command } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            let changed = match command {
                None => None,
                Some(ServersCommand::Add { url }) => {
                    Some(("added", client.add_server(&url).await?))
                }
                Some(ServersCommand::Remove { url }) => {
                    Some(("removed", client.remove_server(&url)?))
                }
            };
            let servers = client.servers();
            match (json, changed) {
                (true, None) => println!("{}", serde_json::json!(servers)),
                (true, Some((done, url))) => {
                    println!("{}", serde_json::json!({ done: url, "servers": servers }))
                }
                (false, changed) => {
                    if let Some((done, url)) = changed {
                        println!("{done} {url}; the server's nodes, in the order tried:");
                    }
                    for url in servers {
                        println!("{url}");
                    }
                }
            }
        }
        Command::Watch { json } => {
            let mut client = Client::open(&home(&cli.home)?)?;
            watch(&mut client, Output::new(json)).await?;
        }
        Command::App { listen, no_open } => {
            vellum_app::run(vellum_app::AppConfig {
                home: home(&cli.home)?,
                listen,
                open: !no_open,
            })
            .await?;
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
            tls_cert,
            tls_key,
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
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| vellum_archiver::TlsFiles { cert, key }),
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
        Command::Bench(command) => bench::bench(command).await?,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into a buffer (clap_complete panics with its own message on a write error), then
            // printed like everything else: a closed pipe ends quietly (`quiet_on_closed_stdout`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "vellum", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
        }
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
                ApprovalStep::Started { device_id } if json => println!(
                    "{}",
                    serde_json::json!({"device_id": device_id, "step": "started"})
                ),
                ApprovalStep::Approved { device_id, chats } if json => println!(
                    "{}",
                    serde_json::json!({"device_id": device_id, "step": "approved", "chats": chats})
                ),
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
            Revocation::Other { device_id, chats } if json => println!(
                "{}",
                serde_json::json!({"revoked": device_id, "this_device": false, "chats": chats})
            ),
            Revocation::ThisDevice if json => println!(
                "{}",
                serde_json::json!({"revoked": device_id, "this_device": true})
            ),
            Revocation::Other { device_id, chats } => {
                println!("revoked device {device_id}; removed it from {chats} chat(s)")
            }
            Revocation::ThisDevice => {
                println!("revoked this device: its profile has been wiped")
            }
        },
        Some(DevicesCommand::VetoReset) => {
            let vetoed = client.veto_reset().await?;
            if json {
                let line = serde_json::json!({
                    "vetoed": vetoed.request_id,
                    "effective_at": output::rfc3339_secs(vetoed.effective_at),
                });
                println!("{line}");
                return Ok(());
            }
            println!(
                "vetoed the reset of {}'s identity (request {}, due {})",
                client.user(),
                vetoed.request_id,
                output::date(vetoed.effective_at * 1000)
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
    let (code, json): (EnrollmentCode, bool) = match args.command {
        AdminCommand::User(UserCommand::Add { name, json }) => {
            let request = CreateUserRequest { name };
            let code = api
                .call(Method::POST, "/v1/admin/users", Some(&request), None, token)
                .await?;
            (code, json)
        }
        AdminCommand::Device(DeviceCommand::Add { user, json }) => {
            let path = format!("/v1/admin/users/{user}/devices");
            let code = api
                .call(Method::POST, &path, None::<&()>, None, token)
                .await?;
            (code, json)
        }
        AdminCommand::Device(DeviceCommand::List { name, json }) => {
            let path = format!("/v1/admin/users/{name}/devices");
            let list: DeviceList = api
                .call(Method::GET, &path, None::<&()>, None, token)
                .await?;
            let devices: Vec<_> = list
                .devices
                .into_iter()
                .map(|d| vellum_client::DeviceEntry {
                    device_id: d.device_id,
                    state: d.state,
                    enrolled_at: Some(d.enrolled_at),
                    last_seen: d.last_seen,
                    this_device: false,
                    code: None,
                    warning: None,
                })
                .collect();
            Output::new(json).device_list(&devices);
            return Ok(());
        }
        AdminCommand::Device(DeviceCommand::Revoke {
            name,
            device_id,
            json,
        }) => {
            let path = format!("/v1/admin/users/{name}/devices/{device_id}/revoke");
            let _: serde::de::IgnoredAny = api
                .call(Method::POST, &path, None::<&()>, None, token)
                .await?;
            match json {
                true => println!("{}", serde_json::json!({"user": name, "revoked": device_id})),
                false => println!("revoked device {device_id} of {name}: it is published in the key directory, every chat drops it, and it wipes itself when it next reaches the server"),
            }
            return Ok(());
        }
        AdminCommand::User(UserCommand::Reset { name, json }) => {
            let path = format!("/v1/admin/users/{name}/reset");
            let reset: ResetScheduled = api
                .call(Method::POST, &path, None::<&()>, None, token)
                .await?;
            match json {
                true => println!(
                    "{}",
                    serde_json::json!({"user": reset.user, "effective_at": output::rfc3339_secs(reset.effective_at)})
                ),
                false => println!(
                    "{0}'s identity will be reset {1} unless a device of {0} vetoes it",
                    reset.user,
                    output::date(reset.effective_at * 1000)
                ),
            }
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
        AdminCommand::Records(RecordsAdminCommand::ReplaceArchiver { json }) => {
            let code: EnrollmentCode = api
                .call(
                    Method::POST,
                    "/v1/admin/records/replace-archiver",
                    None::<&()>,
                    None,
                    token,
                )
                .await?;
            if json {
                let line = serde_json::json!({
                    "code": code.code,
                    "expires_at": output::rfc3339_secs(code.expires_at),
                });
                println!("{line}");
                return Ok(());
            }
            println!("the old archiver device is revoked; start the new archiver with this code, then k custodians unseal it to bind it");
            println!(
                "archiver enrollment code (single use, expires {}):",
                output::date(code.expires_at * 1000)
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
                json,
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
            if json {
                println!("{}", serde_json::to_string(&policy)?);
                return Ok(());
            }
            // The timers last: scripts read the reset wait from the last line.
            let allowed = |yes: bool| if yes { "allowed" } else { "not allowed" };
            println!(
                "read receipts: {}; files up to {} each, {} per user; files in transitory chats: {}; in record chats: {}",
                allowed(policy.allow_read_receipts),
                output::format_size(policy.max_file_bytes),
                output::format_size(policy.user_quota_bytes),
                allowed(policy.files_in_transitory),
                allowed(policy.files_in_record)
            );
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
            return Ok(());
        }
    };
    if json {
        let line = serde_json::json!({
            "user": code.user,
            "code": code.code,
            "expires_at": output::rfc3339_secs(code.expires_at),
        });
        println!("{line}");
        return Ok(());
    }
    println!(
        "enrollment code for {} (single use, expires {}):",
        code.user,
        output::date(code.expires_at * 1000)
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
            json,
        } => {
            let timers = ChatPolicy {
                expire_secs: timer_setting(expire.as_deref())?.flatten(),
                burn_secs: timer_setting(burn_on_read.as_deref())?.flatten(),
            };
            let chat_class = class(chat_class.as_deref())?;
            let with = user_names(&with);
            client.catch_up().await?;
            let id = client
                .create_chat(&title, &with, timers, chat_class)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "title": title, "members": with})
                );
                return Ok(());
            }
            println!("created chat {}", output::safe(&format!("{title:?}")));
            println!("{id}");
        }
        ChatCommand::Add { chat, users, json } => {
            let users = user_names(&users);
            client.catch_up().await?;
            let already = client.add_members(&chat, &users).await?;
            let added: Vec<&String> = users.iter().filter(|u| !already.contains(u)).collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"added": added, "already_members": already})
                );
                return Ok(());
            }
            for user in &already {
                println!("{} is already a member", output::safe(user));
            }
            if !added.is_empty() {
                println!(
                    "added {}",
                    added
                        .iter()
                        .map(|u| output::safe(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        ChatCommand::Remove { chat, users, json } => {
            let users = user_names(&users);
            client.catch_up().await?;
            client.remove_members(&chat, &users).await?;
            match json {
                true => println!("{}", serde_json::json!({"removed": users})),
                false => println!("removed {}", users.join(", ")),
            }
        }
        ChatCommand::Rename { chat, title, json } => {
            chat_admin::rename(client, &chat, &title, json).await?
        }
        ChatCommand::Leave { chat, json } => chat_admin::leave(client, &chat, json).await?,
        ChatCommand::Admins {
            chat,
            action,
            user,
            json,
        } => chat_admin::admins(client, &chat, action, &user, json).await?,
        ChatCommand::Set {
            chat,
            read_receipts: Some(on),
            expire: None,
            burn_on_read: None,
            ..
        } => chat_admin::read_receipts(client, &chat, &on).await?,
        ChatCommand::Set {
            chat,
            read_receipts,
            expire,
            burn_on_read,
            json,
        } => {
            if let Some(on) = read_receipts {
                chat_admin::read_receipts(client, &chat, &on).await?;
            }
            let expire = timer_setting(expire.as_deref())?;
            let burn = timer_setting(burn_on_read.as_deref())?;
            client.catch_up().await?;
            let policy = client.set_timers(&chat, expire, burn).await?;
            match json {
                true => println!(
                    "{}",
                    serde_json::json!({"expire_secs": policy.expire_secs, "burn_secs": policy.burn_secs})
                ),
                false => println!("{}", timers_changed(expire, burn, &policy)),
            }
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
            Output::new(json).chats(&chats, &classes, &client.unread_counts()?)?
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
    const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
    let mut backoff = FIRST_BACKOFF;
    let store = client.store().clone();
    // The node watched last and whether its connection was lost since: a failover is said
    // once on stderr (which node, never message content), not at every retry.
    let mut watched: Option<String> = None;
    let mut lost = false;
    loop {
        let mut printer = |batch: &[vellum_client::MessageRow]| {
            for m in batch {
                if let Err(e) = out.message(&store, m) {
                    eprintln!("error: {e}");
                }
            }
        };
        let mut on_open = |server: &str| {
            match watched.as_deref() {
                Some(last) if last != server => eprintln!("moved to {server}"),
                Some(_) if lost => eprintln!("reconnected to {server}"),
                _ => {}
            }
            watched = Some(server.to_owned());
            lost = false;
            backoff = FIRST_BACKOFF;
        };
        let dialled = client.server().to_owned();
        let result = tokio::select! {
            r = client.watch_once_from(&mut on_open, &mut printer) => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match result {
            Err(vellum_client::Error::Network(e)) => {
                if lost {
                    tracing::debug!(%e, "still no connection; retrying");
                } else {
                    match watched {
                        Some(_) => eprintln!("connection lost ({e}); reconnecting"),
                        None => eprintln!("cannot connect ({e}); retrying"),
                    }
                    // A first node that never answered counts as the one moved away from.
                    watched.get_or_insert(dialled);
                    lost = true;
                }
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

/// `vellum history CHAT | head -1`: when the reader of stdout goes away, `println!` panics
/// ("failed printing to stdout"). That is no error of ours: exit at once and quietly, as
/// Unix tools do on SIGPIPE (Rust ignores the signal, and resetting it needs `unsafe`).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(EXIT_CLOSED_STDOUT);
        }
        default(info);
    }));
}

/// The shell's exit status for a process ended by SIGPIPE (128 + 13).
const EXIT_CLOSED_STDOUT: i32 = 141;

/// What `chat set` changed, then what holds now: `--burn-on-read off` says burn-on-read is
/// off, not only that messages disappear after 12 hours (issue 10).
fn timers_changed(
    expire: Option<Option<u64>>,
    burn: Option<Option<u64>>,
    now: &ChatPolicy,
) -> String {
    let mut changed = Vec::new();
    match expire {
        Some(Some(secs)) => changed.push(format!(
            "messages now disappear {} after sending",
            timer::describe(secs)
        )),
        Some(None) => changed.push("messages no longer disappear after a set time".into()),
        None => {}
    }
    match burn {
        Some(Some(secs)) => changed.push(format!(
            "messages now burn {} after reading",
            timer::describe(secs)
        )),
        Some(None) => changed.push("burn-on-read is off".into()),
        None => {}
    }
    let still = match (
        expire.is_none(),
        now.expire_secs,
        burn.is_none(),
        now.burn_secs,
    ) {
        (true, Some(e), _, _) => format!(
            " (messages still disappear {} after sending)",
            timer::describe(e)
        ),
        (_, _, true, Some(b)) => format!(
            " (messages still burn {} after reading)",
            timer::describe(b)
        ),
        _ => String::new(),
    };
    format!("{}{still}", changed.join("; "))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: `--with "bob, dave"` is bob and dave.
    #[test]
    fn issue_10_user_lists_ignore_spaces_and_empty_names() {
        let given = ["bob, dave".to_owned(), " carol ,".to_owned()];
        assert_eq!(user_names(&given), ["bob", "dave", "carol"]);
    }

    /// Issue 10: `chat set --burn-on-read off` on a chat expiring after 12 hours said "set
    /// messages to disappear after 12 hours", as if that were the change.
    #[test]
    fn issue_10_chat_set_says_what_changed() {
        let now = ChatPolicy {
            expire_secs: Some(43_200),
            burn_secs: None,
        };
        assert_eq!(
            timers_changed(None, Some(None), &now),
            "burn-on-read is off (messages still disappear 12 hours after sending)"
        );
        let now = ChatPolicy {
            expire_secs: Some(86_400),
            burn_secs: Some(60),
        };
        assert_eq!(
            timers_changed(Some(Some(86_400)), None, &now),
            "messages now disappear 1 day after sending (messages still burn 1 minute after reading)"
        );
        let now = ChatPolicy {
            expire_secs: None,
            burn_secs: None,
        };
        assert_eq!(
            timers_changed(Some(None), Some(None), &now),
            "messages no longer disappear after a set time; burn-on-read is off"
        );
    }

    #[test]
    fn issue_10_message_text_refuses_blank_text() {
        for blank in ["", "   ", "\n\t \r\n"] {
            let e = message_text(blank.into()).unwrap_err().to_string();
            assert!(e.contains("whitespace"), "{e}");
        }
        let long = "x".repeat(vellum_wire::MAX_TEXT_BYTES + 1);
        let e = message_text(long).unwrap_err().to_string();
        assert!(e.contains("16 KiB"), "{e}");
        let fits = "é".repeat(vellum_wire::MAX_TEXT_BYTES / 2);
        assert_eq!(message_text(fits.clone()).unwrap(), fits);
    }

    /// The command line itself is consistent (clap's own checks: unique names, globals).
    #[test]
    fn issue_10_the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}

#[cfg(test)]
mod help_tests {
    use super::*;

    /// What lacks help under `cmd`: commands without an about or (leaves) an example,
    /// arguments without help.
    fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name());
        if cmd.get_about().is_none() {
            out.push(format!("{path}: no about"));
        }
        if !cmd.has_subcommands()
            && !cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"))
        {
            out.push(format!("{path}: no example"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                out.push(format!("{path} {id}: no help"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" {
                missing(sub, &path, out);
            }
        }
    }

    /// Issue 10: many options had no help text. Every command says what it does and shows
    /// an example; every option and argument has help.
    #[test]
    fn issue_10_every_command_and_option_has_help_and_every_command_an_example() {
        let mut out = Vec::new();
        missing(&<Cli as clap::CommandFactory>::command(), "", &mut out);
        assert!(out.is_empty(), "{}", out.join("\n"));
    }
}
