//! The records office's commands: `records init` (admin), `archiver`, `records ...` and
//! the offline `archive verify` / `archive checkpoint`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use vellum_client::Api;
use vellum_record::api::office::{AccountInfo, CreatedAccount, WhoAmI};
use vellum_wire::{EnrollmentCode, RecordsInit};

use crate::output::{self, rfc3339_millis, safe};

#[derive(Subcommand)]
pub enum RecordsCommand {
    /// Give one custodian's share; the archive unseals once the threshold is met.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE unseal --share share-1"
    )]
    Unseal {
        /// The custodian's share file (from `admin records init`).
        #[arg(long)]
        share: PathBuf,
        /// Print the archive's status as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Forget the records key now (it also happens after an idle timeout).
    #[command(after_help = "Example: vellum records --archiver URL --token-file FILE seal")]
    Seal {
        /// Print the archive's status as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Sealed or not, shares received, log size.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE status --json"
    )]
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Legal holds.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// The records office's accounts (officers): add, list, disable.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the records console's URL (sign in there with a password and a TOTP code).
    #[command(after_help = "Example: vellum records --archiver URL --token-file FILE console")]
    Console,
    /// The account the token file belongs to, and its role.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE whoami --json"
    )]
    Whoami {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Retention schedules: how long records are kept, by chat and by user.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Which chats the archive holds (record chats) and which it does not (transitory
    /// chats: the delivery server's metadata only, members and timers).
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE chats --json"
    )]
    Chats {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail, newest first: every unseal, search, export, hold, schedule change
    /// and disposition, each a leaf of the tamper-evident log.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE audit --from 2026-11-01 --json"
    )]
    Audit {
        /// From this date (the office's day) or RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// At most this many entries (default 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Shred the content keys of records past their retention, except those under hold.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE dispose --dry-run"
    )]
    Dispose {
        /// Say what would be disposed of, and dispose of nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per record.
        #[arg(long)]
        json: bool,
    },
    /// FOIA cases: create, add records by search, review, redact, produce.
    Foia {
        #[command(subcommand)]
        command: crate::foia::FoiaCommand,
    },
    /// Search the unsealed archive's full-text index.
    ///
    /// The query finds words in message and edit text, titles, membership notes and
    /// attachment names, case-insensitively; every word must occur (in any order):
    ///
    ///   north gate           both words
    ///   "north gate"         the phrase, in that order
    ///   gate OR door         either word (AND is the default; AND binds tighter than OR)
    ///   gate NOT north       gate, without north (also: gate -north)
    ///   +gate -north         must have gate, must not have north
    ///   gat*                 a word beginning with "gat" (gate, gates, gatekeeper)
    ///   (gate OR door) code  parentheses group
    ///   '' (empty) or *      every record the filters let through
    ///
    /// Filters all hold at once: every --participant took part (sent or received it:
    /// "between alice and bob" is --participant alice --participant bob); a record is in
    /// any --chat and of any --kind given. --from and --to bound the delivery server's
    /// receipt time, inclusively: an RFC 3339 time with any offset
    /// (2026-11-03T09:00:00-05:00) or a plain date (2026-11-03), a day of the records
    /// office's time zone (--from its first instant, --to its last). A user or chat the
    /// archive has no record of is refused, never silently matched by nothing.
    ///
    /// Hits come in log order, each with --context records of its chat before and after
    /// it, indented under it. --json prints one JSON array of hits (each with a "context"
    /// array), the same page; the total count goes to standard error when more matched.
    /// Right after an unseal the index catches up on the archive: the command waits and
    /// shows how far it is.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  vellum records --archiver URL --token-file FILE search gate --participant alice --participant bob --from 2026-11-01 --to 2026-11-30\n  vellum records --archiver URL --token-file FILE search '\"north gate\" OR gat*' --chat field-ops --context 2 --json"
    )]
    Search {
        /// The query (see above); empty: every record the filters let through.
        query: String,
        /// A user who took part (sender or recipient); repeated (or comma-separated): all of
        /// them did.
        #[arg(long = "participant", value_name = "USER", value_delimiter = ',')]
        participants: Vec<String>,
        /// A chat (its id or title); repeated: any of them.
        #[arg(long = "chat", value_name = "CHAT")]
        chats: Vec<String>,
        /// A record kind (message, edit, delete, attachment, membership, title, timers,
        /// reaction, unknown); repeated: any of them.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Received at or after: RFC 3339 with an offset, or a date in the office's zone.
        #[arg(long)]
        from: Option<String>,
        /// Received at or before: RFC 3339 with an offset, or a date (all of that day).
        #[arg(long)]
        to: Option<String>,
        /// Records of the same chat to show before and after each hit (at most 50).
        #[arg(long, default_value_t = 0)]
        context: u32,
        /// At most this many hits (at most 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many hits first (the next page).
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print one JSON array of hits.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account; prints its one-time setup link (valid 72 hours), with which the
    /// person chooses a password and enrols an authenticator app in the console.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE user add kim --role keyholder"
    )]
    Add {
        /// The account's name: lowercase letters, digits, '.', '_' and '-'.
        name: String,
        /// What the account may do: keyholder (hands in a share, sees no content), officer
        /// (everything), analyst (search, cases, productions), auditor (audit trail, holds,
        /// schedules; no content).
        #[arg(long, value_parser = ["keyholder", "officer", "analyst", "auditor"])]
        role: String,
        /// Print the account and its setup code as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every account with its role and state.
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE user list --json"
    )]
    List {
        /// One JSON array of accounts.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account for good and end its console sessions (its name stays taken).
    #[command(
        after_help = "Example: vellum records --archiver URL --token-file FILE user disable kim"
    )]
    Disable {
        /// The account's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// The schedules, the default, and which chats and users fall under which.
    #[command(after_help = "Example: vellum records ... schedule list --json")]
    List {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Put a chat or a user under a schedule (a chat's wins over its sender's).
    #[command(after_help = "Example: vellum records ... schedule set --chat field-ops capstone")]
    Set {
        /// The chat (id or title).
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        chat: Option<String>,
        /// The user (their role decides, e.g. a capstone official).
        #[arg(long)]
        user: Option<String>,
        /// The schedule's name.
        schedule: String,
    },
    /// Define or redefine a schedule.
    #[command(after_help = "Example: vellum records ... schedule define litigation --keep 10y")]
    Define {
        /// The schedule's name.
        name: String,
        /// How long records are kept: 180d, 26w, 7y, or permanent.
        #[arg(long)]
        keep: String,
    },
}

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Put a legal hold on every record matching all the criteria given. A record is in
    /// the range if its sender's clock, the server's receipt or the archive's ingest is.
    /// Custodians must be users of the org and chats record chats the archive knows;
    /// anything else is refused.
    #[command(
        after_help = "Example: vellum records ... hold create crew-v-dhs --reason \"CREW v. DHS, 26-cv-1234\" --custodian alice --custodian bob --from 2026-11-01"
    )]
    Create {
        /// The hold's name (to release it by).
        name: String,
        /// Why: the matter, case or request it preserves for (shown to auditors). Without
        /// one, a warning.
        #[arg(long)]
        reason: Option<String>,
        /// A person whose communications are held (their e-discovery custodian); repeat for
        /// several. While the hold lasts, the disappearing timers of their transitory chats
        /// are suspended on every member's device (or the chats convert to record chats:
        /// `admin policy set --on-hold`).
        #[arg(long)]
        custodian: Vec<String>,
        /// Only this chat (its id or title); repeat for several.
        #[arg(long)]
        chat: Vec<String>,
        /// From this date (2026-11-01, the office's day) or RFC 3339 time with its offset,
        /// inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Until this date or RFC 3339 time, inclusive (a date: to its end).
        #[arg(long)]
        to: Option<String>,
        /// Print the hold as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The holds in force.
    #[command(after_help = "Example: vellum records ... hold list --json")]
    List {
        /// One JSON object per hold.
        #[arg(long)]
        json: bool,
    },
    /// Lift a hold; its records fall under their schedules again.
    #[command(after_help = "Example: vellum records ... hold release case-42")]
    Release {
        /// The hold's name.
        name: String,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Check an archive directory offline: every leaf, key slot and checkpoint, against the
    /// log keys the custodians bound to records.pub (never the key the archive carries).
    #[command(
        after_help = "Example: vellum archive verify --data archive --records-key records.pub"
    )]
    Verify {
        /// The archive directory.
        #[arg(long)]
        data: PathBuf,
        /// records.pub (version 2), obtained apart from the archive: only the log keys its
        /// custodians bound are trusted.
        #[arg(long = "records-key", value_name = "FILE")]
        records_key: Option<PathBuf>,
        /// A witness's cosignature verifier key: the newest checkpoint must carry its valid
        /// cosignature (besides the quorum the binding names). Repeatable.
        #[arg(long = "witness", value_name = "VKEY")]
        witnesses: Vec<String>,
        /// A checkpoint kept from earlier (an auditor's, or `witness latest`): the archive
        /// must still contain what it attested. Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// One JSON object with the result.
        #[arg(long)]
        json: bool,
    },
    /// Print the latest signed checkpoint.
    #[command(after_help = "Example: vellum archive checkpoint --data archive > checkpoint.txt")]
    Checkpoint {
        /// The archive directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Check a message's exported proof (`vellum receipts CHAT MSG_ID`) with nothing but
    /// `records.pub`: the custodians' binding, the bound log's signature and witnesses, the
    /// inclusion proof, and the leaf's commitments to each disclosed field.
    #[command(
        after_help = "Example: vellum archive verify-receipt proof.json --records-key records.pub"
    )]
    VerifyReceipt {
        /// The proof file (`vellum receipts CHAT MSG_ID > proof.json`).
        file: PathBuf,
        /// `records.pub`: the one input trusted.
        #[arg(long = "records-key")]
        records_key: Option<PathBuf>,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check a FOIA or discovery production offline, as a court would: every file's SHA-256
    /// against manifest.json, the checkpoint (signed by the log the custodians bound in
    /// records.pub, with its witness quorum), every record's inclusion proof, every opened
    /// field against its leaf's commitments, and the load file's text hashes. Names every
    /// failure; exits non-zero if there is any.
    #[command(
        after_help = "Example: vellum archive verify-production ./FOIA-2026-0042 --records-key records.pub"
    )]
    VerifyProduction {
        /// The production directory (with manifest.json).
        dir: PathBuf,
        /// `records.pub`: the one input trusted.
        #[arg(
            long = "records-key",
            value_name = "FILE",
            required_unless_present = "log_key"
        )]
        records_key: Option<PathBuf>,
        /// Instead of records.pub: the log's C2SP note verifier key, trusted as given.
        #[arg(long = "log-key", value_name = "VKEY", conflicts_with = "records_key")]
        log_key: Option<String>,
        /// Print the verdict as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// `admin records init`: the key pair is made here, split at once; only the public half and
/// the archiver's code cross the network.
pub async fn init(
    api: &Api,
    token: Option<&str>,
    custodians: u8,
    threshold: u8,
    out: &Path,
    origin: &str,
) -> Result<String> {
    let generated = vellum_records::generate(custodians, threshold, origin)?;
    fs::create_dir_all(out)?;
    let public = generated.public.to_json();
    // Written before the key is registered, so that a registered key always has its shares;
    // removed again if it is not registered (refused, unreachable): they would be of no use.
    let mut written = Vec::new();
    let registered = async {
        let path = out.join("records.pub");
        write_new(&path, &public, 0o644)?;
        written.push(path);
        for (i, share) in generated.shares.iter().enumerate() {
            let path = out.join(format!("share-{}", i + 1));
            write_new(&path, share, 0o600)?;
            written.push(path);
        }
        let request = RecordsInit {
            records_public: public.clone(),
        };
        api.call::<EnrollmentCode>(
            Method::POST,
            "/v1/admin/records",
            Some(&request),
            None,
            token,
        )
        .await
        .map_err(anyhow::Error::from)
    }
    .await;
    let code = match registered {
        Ok(code) => code,
        Err(e) => {
            for path in &written {
                let _ = fs::remove_file(path);
            }
            return Err(
                e.context("records init: nothing was registered, and no key files were left")
            );
        }
    };
    println!("wrote {}/records.pub and share-1 … share-{custodians} (any {threshold} unseal the archive)", out.display());
    println!("give each share to a different custodian; no copy of the whole key exists");
    println!("log origin: {origin}");
    println!("archiver enrollment code (single use):");
    println!("{}", code.code);
    Ok(code.code)
}

/// `records init`'s origin when none is given: the server's host (and port), then
/// `/vellum-records`.
pub fn default_origin(server: &str) -> Result<String> {
    let url =
        reqwest::Url::parse(server).with_context(|| format!("invalid server URL {server:?}"))?;
    let host = url.host_str().context("the server URL has no host")?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}/vellum-records"),
        None => format!("{host}/vellum-records"),
    })
}

async fn schedule(api: &Api, token: Option<&str>, command: ScheduleCommand) -> Result<()> {
    use vellum_archiver::api_types::{AssignSchedule, DefineSchedule, Schedules};
    let schedules: Schedules = match command {
        ScheduleCommand::List { json } => {
            let schedules: Schedules = api
                .call(Method::GET, "/v1/schedules", None::<&()>, None, token)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&schedules)?);
                return Ok(());
            }
            schedules
        }
        ScheduleCommand::Set {
            chat,
            user,
            schedule,
        } => {
            let request = AssignSchedule {
                chat,
                user,
                schedule,
            };
            api.call(
                Method::POST,
                "/v1/schedules/assign",
                Some(&request),
                None,
                token,
            )
            .await?
        }
        ScheduleCommand::Define { name, keep } => {
            api.call(
                Method::POST,
                "/v1/schedules",
                Some(&DefineSchedule { name, keep }),
                None,
                token,
            )
            .await?
        }
    };
    println!("schedules:");
    for (name, keep) in &schedules.schedules {
        let default = if *name == schedules.default_schedule {
            " (default)"
        } else {
            ""
        };
        println!(
            "  - {}: {}{default}",
            output::safe(name),
            keep.as_deref().unwrap_or("permanent")
        );
    }
    for (chat, name) in &schedules.chats {
        println!("chat {}: {}", output::safe(chat), output::safe(name));
    }
    for (user, name) in &schedules.users {
        println!("user {}: {}", output::safe(user), output::safe(name));
    }
    Ok(())
}

/// A hold's details, one "  - " line each.
fn print_hold_details(h: &vellum_archiver::api_types::Hold) {
    let list = |names: &[String], all: &str| {
        if names.is_empty() {
            all.to_owned()
        } else {
            output::safe(&names.join(", "))
        }
    };
    let when = |t: Option<i64>| t.map(rfc3339_millis).unwrap_or_else(|| "any time".into());
    println!(
        "  - reason: {}",
        h.reason
            .as_deref()
            .map(output::safe)
            .unwrap_or_else(|| "(none given)".into())
    );
    if let (Some(author), Some(at)) = (&h.author, h.placed_at) {
        println!(
            "  - placed by {} at {}",
            output::safe(author),
            rfc3339_millis(at)
        );
    }
    println!("  - custodians: {}", list(&h.custodians, "everyone"));
    println!("  - chats: {}", list(&h.chats, "every chat"));
    println!("  - from {} to {}", when(h.from), when(h.to));
    match h.records {
        Some(n) => println!("  - keeps {n} records"),
        None => println!("  - records kept: counted once the archive is unsealed"),
    }
}

pub async fn records(archiver: &str, token_file: &Path, command: RecordsCommand) -> Result<()> {
    let token = fs::read_to_string(token_file)
        .with_context(|| format!("cannot read token file {}", token_file.display()))?;
    let token = Some(token.trim());
    let api = Api::new(archiver)?;
    let show_status = |status: &vellum_archiver::api_types::Status, as_json: bool| {
        if as_json {
            println!(
                "{}",
                serde_json::to_string(status).expect("status serialises")
            );
        } else {
            let state = if status.sealed {
                format!(
                    "sealed ({} of {} shares given)",
                    status.shares_received, status.shares_needed
                )
            } else {
                "unsealed".into()
            };
            println!(
                "{state}; {} records in a log of {} leaves; last checkpoint at {}",
                status.records,
                status.log_size,
                status
                    .checkpoint_size
                    .map_or("none".into(), |s| s.to_string())
            );
            if let Some(paused) = &status.paused {
                println!("{paused}");
            }
            if let Some(index) = &status.index {
                match index.indexed < index.total {
                    true => println!(
                        "search index catching up: {} of {} records",
                        index.indexed, index.total
                    ),
                    false => println!("search index: {} records (in memory)", index.total),
                }
            }
            match (status.binding_serial, status.binding_on_server) {
                (None, _) => println!("the archiver is not bound yet: it is bound at an unseal by the custodians; record chats wait for it"),
                (Some(serial), true) => println!("bound by the custodians (binding {serial}), on the delivery server"),
                (Some(serial), false) => println!("bound by the custodians (binding {serial}); handing it to the delivery server"),
            }
        }
    };
    match command {
        RecordsCommand::Foia { command } => crate::foia::run(&api, token, command).await?,
        RecordsCommand::Unseal { share, json } => {
            let share = fs::read_to_string(&share)
                .with_context(|| format!("cannot read share {}", share.display()))?;
            let status: vellum_archiver::api_types::Status = api
                .call(
                    Method::POST,
                    "/v1/unseal",
                    Some(&json!({ "share": share })),
                    None,
                    token,
                )
                .await?;
            show_status(&status, json);
        }
        RecordsCommand::Seal { json } => {
            let status = api
                .call(Method::POST, "/v1/seal", None::<&()>, None, token)
                .await?;
            show_status(&status, json);
        }
        RecordsCommand::Status { json } => {
            let status = api
                .call(Method::GET, "/v1/status", None::<&()>, None, token)
                .await?;
            show_status(&status, json);
        }
        RecordsCommand::User { command } => user(&api, archiver, token, command).await?,
        RecordsCommand::Console => println!("{}", console_url(archiver)),
        RecordsCommand::Whoami { json } => {
            let me: WhoAmI = api
                .call(Method::GET, "/v1/whoami", None::<&()>, None, token)
                .await?;
            match json {
                true => println!("{}", serde_json::to_string(&me)?),
                false => println!("{} ({})", safe(&me.name), me.role),
            }
        }
        RecordsCommand::Hold {
            command:
                HoldCommand::Create {
                    name,
                    reason,
                    custodian,
                    chat,
                    from,
                    to,
                    json,
                },
        } => {
            let request = vellum_archiver::api_types::HoldRequest {
                name,
                custodians: custodian,
                chats: chat,
                from,
                to,
                reason,
            };
            let created: vellum_archiver::api_types::Hold = api
                .call(Method::POST, "/v1/holds", Some(&request), None, token)
                .await?;
            if created.reason.is_none() {
                eprintln!(
                    "warning: the hold has no reason (--reason): auditors will not see what \
                     it preserves for"
                );
            }
            match json {
                true => println!("{}", serde_json::to_string(&created)?),
                false => {
                    println!("hold {:?} in force", output::safe(&created.name));
                    print_hold_details(&created);
                }
            }
        }
        RecordsCommand::Hold {
            command: HoldCommand::List { json },
        } => {
            let holds: Vec<vellum_archiver::api_types::Hold> = api
                .call(Method::GET, "/v1/holds", None::<&()>, None, token)
                .await?;
            // A list prints one JSON array, `[]` when empty (issue 10).
            if json {
                println!("{}", serde_json::to_string(&holds)?);
                return Ok(());
            }
            if holds.is_empty() {
                println!("no holds in force");
            }
            for h in holds {
                println!("{}", output::safe(&h.name));
                print_hold_details(&h);
            }
        }
        RecordsCommand::Hold {
            command: HoldCommand::Release { name, json },
        } => {
            let _: () = api
                .call(
                    Method::DELETE,
                    &format!("/v1/holds/{}", urlencode(&name)),
                    None::<&()>,
                    None,
                    token,
                )
                .await?;
            match json {
                true => println!("{}", json!({ "released": name })),
                false => println!("hold {name:?} released"),
            }
        }
        RecordsCommand::Schedule { command } => schedule(&api, token, command).await?,
        RecordsCommand::Chats { json } => {
            let classes: vellum_archiver::api_types::ChatClasses = api
                .call(Method::GET, "/v1/chats", None::<&()>, None, token)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&classes)?);
                return Ok(());
            }
            println!("record chats (archived): {}", classes.record.len());
            for chat in &classes.record {
                println!(
                    "  - {} {}",
                    chat.id,
                    output::safe(chat.title.as_deref().unwrap_or("(untitled)"))
                );
            }
            match &classes.transitory {
                None => println!("transitory chats: not listed by the delivery server yet"),
                Some(t) => {
                    println!("transitory chats (not archived): {}", t.total);
                    let timer = |s: Option<u64>| {
                        s.map(|s| {
                            humantime::format_duration(std::time::Duration::from_secs(s))
                                .to_string()
                        })
                        .unwrap_or_else(|| "off".into())
                    };
                    for chat in &t.chats {
                        println!(
                            "  - {} members {}; expire {}, burn {}{}",
                            chat.id,
                            output::safe(&chat.members.join(", ")),
                            timer(chat.expire_secs),
                            timer(chat.burn_secs),
                            if chat.held {
                                " (held: timers suspended)"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
        }
        RecordsCommand::Audit { from, limit, json } => {
            let mut query = Vec::new();
            query.extend(from.map(|f| format!("from={}", urlencode(&f))));
            query.extend(limit.map(|l| format!("limit={l}")));
            let path = format!("/v1/audit?{}", query.join("&"));
            let entries: Vec<vellum_archiver::api_types::AuditEntry> = api
                .call(Method::GET, &path, None::<&()>, None, token)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&entries)?);
                return Ok(());
            }
            for e in &entries {
                println!(
                    "{} leaf {} {}: {}",
                    rfc3339_millis(e.time),
                    e.leaf,
                    output::safe(&e.action),
                    output::safe(&e.detail)
                );
            }
            if entries.is_empty() {
                println!("no audit entries");
            }
        }
        RecordsCommand::Dispose { dry_run, json } => {
            let disposals: Vec<vellum_archiver::api_types::Disposal> = api
                .call(
                    Method::POST,
                    "/v1/dispose",
                    Some(&json!({ "dry_run": dry_run })),
                    None,
                    token,
                )
                .await?;
            if json {
                let items: Vec<_> = disposals.iter().map(|d| json!({ "leaf": d.leaf, "chat": d.chat_id, "chat_title": d.chat_title, "schedule": d.schedule, "held_by": d.held_by, "disposed": d.disposed })).collect();
                println!("{}", serde_json::Value::Array(items));
                return Ok(());
            }
            for d in &disposals {
                let what = match (&d.held_by, d.disposed) {
                    (Some(h), _) => format!("kept by hold {h:?}"),
                    (None, true) => "disposed".into(),
                    (None, false) => "would be disposed".into(),
                };
                println!(
                    "leaf {} ({}, schedule {}): {what}",
                    d.leaf,
                    d.chat_title.as_deref().unwrap_or(&d.chat_id),
                    d.schedule
                );
            }
            println!("{} record(s) past retention", disposals.len());
        }
        RecordsCommand::Search {
            query,
            participants,
            chats,
            kinds,
            from,
            to,
            context,
            limit,
            offset,
            json,
        } => {
            let request = vellum_archiver::api_types::SearchRequest {
                q: query,
                participants,
                chats,
                kinds,
                from,
                to,
                context,
                limit: Some(limit),
                offset,
            };
            let results = search(&api, token, &request).await?;
            let shown = results.hits.len() as u64;
            if json {
                let items = results.hits.iter().map(|hit| {
                    let mut item = record_json(hit.leaf, &hit.record);
                    item["context"] = serde_json::Value::Array(
                        hit.context
                            .iter()
                            .map(|c| record_json(c.leaf, &c.record))
                            .collect(),
                    );
                    item
                });
                crate::output::json_array(items.collect());
                if results.total > u64::from(offset) + shown {
                    eprintln!(
                        "{shown} of {} matches shown (--offset for more)",
                        results.total
                    );
                }
                return Ok(());
            }
            for hit in &results.hits {
                let (before, after): (Vec<_>, Vec<_>) =
                    hit.context.iter().partition(|c| c.leaf < hit.leaf);
                let indented = |c: &vellum_archiver::api_types::ContextRecord| {
                    record_lines(c.leaf, &c.record)
                        .lines()
                        .map(|line| format!("    {line}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                for c in before {
                    println!("{}", indented(c));
                }
                println!("{}", record_lines(hit.leaf, &hit.record));
                for c in after {
                    println!("{}", indented(c));
                }
            }
            match results.total {
                0 => println!("no matches"),
                total if total > u64::from(offset) + shown => println!(
                    "{shown} of {total} matches shown (from match {}; --offset for more)",
                    u64::from(offset) + 1
                ),
                total => println!("{total} match(es)"),
            }
        }
    }
    Ok(())
}

/// Runs a search; while the index catches up after an unseal, says how far it is (on
/// standard error) and asks again.
async fn search(
    api: &Api,
    token: Option<&str>,
    request: &vellum_archiver::api_types::SearchRequest,
) -> Result<vellum_archiver::api_types::SearchResults> {
    loop {
        match api
            .call(Method::POST, "/v1/search", Some(request), None, token)
            .await
        {
            Err(vellum_client::Error::Api { code, message, .. })
                if code == vellum_wire::codes::INDEXING =>
            {
                eprintln!("{message}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            result => return Ok(result?),
        }
    }
}

/// What a record says, for a line: its text, a file's name, or its kind.
fn record_text(record: &vellum_record::Record) -> String {
    match &record.kind {
        vellum_record::RecordKind::Attachment(file) => format!("[file {}]", file.name),
        vellum_record::RecordKind::Title => {
            format!("set the title to {}", record.text.as_deref().unwrap_or(""))
        }
        kind => record
            .text
            .clone()
            .unwrap_or_else(|| kind.as_str().to_owned()),
    }
}

/// A record as lines: its receipt time (local), chat, sender and text, escaped.
fn record_lines(leaf: u64, record: &vellum_record::Record) -> String {
    crate::output::message_lines(
        &crate::output::time(record.received_at),
        // A chat's first records (joining, its title) predate the title they would carry.
        record
            .chat_title
            .as_deref()
            .or(match record.kind {
                vellum_record::RecordKind::Title => record.text.as_deref(),
                _ => None,
            })
            .unwrap_or(&record.chat_id),
        &record.sender_user,
        &record_text(record),
        &format!("leaf {leaf}"),
    )
}

fn record_json(leaf: u64, e: &vellum_record::Record) -> serde_json::Value {
    let file = match &e.kind {
        vellum_record::RecordKind::Attachment(f) => Some(
            json!({ "name": f.name, "mime": f.mime, "size": f.size, "sha256": f.sha256, "part": f.part, "parts": f.parts }),
        ),
        _ => None,
    };
    json!({ "leaf": leaf, "chat": e.chat_id, "chat_title": e.chat_title, "seq": e.seq, "kind": e.kind.as_str(), "id": e.message_id, "sender": e.sender_user, "sender_device": e.sender_device, "recipients": e.recipients, "sent_at": rfc3339_millis(e.sent_at), "received_at": rfc3339_millis(e.received_at), "text": e.text, "file": file })
}

/// `archive verify`: the verdict, on stdout as lines or one JSON object; an error (non-zero
/// exit) unless the archive is intact, attested and witnessed as required.
fn verify(
    data: &Path,
    records_key: Option<&Path>,
    witnesses: &[String],
    checkpoints: &[PathBuf],
    json: bool,
) -> Result<()> {
    let Some(records_key) = records_key else {
        bail!("archive verify needs --records-key FILE (records.pub, obtained apart from the archive): the key an archive carries proves nothing");
    };
    let public = fs::read_to_string(records_key)
        .with_context(|| format!("cannot read {}", records_key.display()))?;
    let public = vellum_records::RecordsPublic::parse(&public)
        .with_context(|| format!("--records-key {}", records_key.display()))?;
    let witnesses = witnesses
        .iter()
        .map(|w| {
            vellum_tlog::cosignature::CosignatureVerifier::parse(w)
                .map_err(|e| anyhow::anyhow!("--witness: not a witness key: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let kept = checkpoints
        .iter()
        .map(|p| fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let dir = data.join("archive");
    if !dir.join("log.bin").exists() {
        bail!(
            "no archive in {} (expected {})",
            data.display(),
            dir.display()
        );
    }
    let audit = vellum_archive::audit(&dir, &public, &kept, &witnesses);
    let verdict = audit.verdict();
    let r = &audit.report;
    let newest = audit.bindings.last();
    if json {
        println!(
            "{}",
            json!({
                "ok": verdict == vellum_archive::Verdict::Intact,
                "verdict": verdict.as_str(),
                "origin": public.origin,
                "leaves": r.leaves,
                "records": r.records,
                "disposed": r.disposed,
                "checkpoints": r.checkpoints,
                "attested": r.attested,
                "unattested": r.unattested,
                "bindings": audit.bindings.iter().map(|b| b.serial).collect::<Vec<_>>(),
                "archiver_device": newest.map(|b| b.archiver_device.clone()),
                "log_keys": audit.log_keys.iter().map(|(k, up_to)| json!({ "key": k, "up_to": up_to })).collect::<Vec<_>>(),
                "witness_quorum": newest.map(|b| b.witness_quorum),
                "cosigned_by": audit.cosigned_by,
                "problems": r.problems,
                "unwitnessed": audit.unwitnessed,
            })
        );
    } else {
        for problem in r.problems.iter().chain(&audit.unwitnessed) {
            println!("PROBLEM: {problem}");
        }
    }
    use vellum_archive::Verdict;
    match verdict {
        Verdict::Failed => bail!(
            "the archive failed verification: {} problem(s)",
            r.problems.len()
        ),
        Verdict::Unattested => bail!(
            "the archive is unattested: no checkpoint signed by a bound log key vouches for its {} leaves (checkpoints deleted, or never made)",
            r.leaves
        ),
        Verdict::Unwitnessed => bail!(
            "the archive's newest checkpoint is unwitnessed: {}",
            audit.unwitnessed.join("; ")
        ),
        Verdict::Intact => {}
    }
    if !json {
        println!(
            "archive intact: {} leaves ({} records, {} disposed), {} checkpoints, attested up to {}",
            r.leaves, r.records, r.disposed, r.checkpoints, r.attested
        );
        if let Some(b) = newest {
            println!(
                "log {} bound by {} of {} custodians (binding {}, archiver device {}){}",
                b.origin,
                public.threshold,
                public.custodians,
                b.serial,
                b.archiver_device,
                b.previous
                    .as_ref()
                    .map(|p| format!("; continues {} up to leaf {}", p.origin, p.size))
                    .unwrap_or_default()
            );
        }
        for w in &audit.cosigned_by {
            println!("cosigned by witness {w}");
        }
    }
    Ok(())
}

/// The records console's address on the archiver `archiver`.
fn console_url(archiver: &str) -> String {
    format!("{}/console/", archiver.trim_end_matches('/'))
}

async fn user(api: &Api, archiver: &str, token: Option<&str>, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add { name, role, json } => {
            let created: CreatedAccount = api
                .call(
                    Method::POST,
                    "/v1/accounts",
                    Some(&json!({ "name": name, "role": role })),
                    None,
                    token,
                )
                .await?;
            let link = format!("{}{}", archiver.trim_end_matches('/'), created.setup_path);
            if json {
                println!(
                    "{}",
                    json!({
                        "name": created.name,
                        "role": created.role,
                        "setup_link": link,
                        "setup_code": created.setup_code,
                        "setup_expires_at": rfc3339_millis(created.setup_expires_at),
                    })
                );
                return Ok(());
            }
            println!("account {} ({}) created", safe(&created.name), created.role);
            println!(
                "give this one-time setup link to {} only; it works once, until {}:",
                safe(&created.name),
                rfc3339_millis(created.setup_expires_at)
            );
            println!("{}", safe(&link));
            println!("setup code: {}", safe(&created.setup_code));
        }
        UserCommand::List { json } => {
            let accounts: Vec<AccountInfo> = api
                .call(Method::GET, "/v1/accounts", None::<&()>, None, token)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&accounts)?);
                return Ok(());
            }
            for a in accounts {
                let state = match (a.disabled, a.active) {
                    (true, _) => "disabled",
                    (false, true) => "active",
                    (false, false) => "awaiting setup",
                };
                println!(
                    "{} ({}): {state}, created {} by {}",
                    safe(&a.name),
                    a.role,
                    rfc3339_millis(a.created_at),
                    safe(&a.created_by)
                );
            }
        }
        UserCommand::Disable { name } => {
            let _: () = api
                .call(
                    Method::POST,
                    &format!("/v1/accounts/{}/disable", urlencode(&name)),
                    None::<&()>,
                    None,
                    token,
                )
                .await?;
            println!("{} disabled; their console sessions ended", safe(&name));
        }
    }
    Ok(())
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn archive(command: ArchiveCommand) -> Result<()> {
    match command {
        ArchiveCommand::Verify {
            data,
            records_key,
            witnesses,
            checkpoints,
            json,
        } => verify(
            &data,
            records_key.as_deref(),
            &witnesses,
            &checkpoints,
            json,
        )?,
        ArchiveCommand::VerifyReceipt {
            file,
            records_key,
            json,
        } => {
            let records_key = records_key.context(
                "give --records-key FILE (records.pub): a proof is checked against the custodians' key alone",
            )?;
            verify_receipt(&file, &records_key, json)?
        }
        ArchiveCommand::VerifyProduction {
            dir,
            records_key,
            log_key,
            json,
        } => verify_production(&dir, records_key.as_deref(), log_key, json)?,
        ArchiveCommand::Checkpoint { data } => {
            let checkpoints = data.join("archive").join("checkpoints");
            let latest = fs::read_dir(&checkpoints)
                .with_context(|| format!("no archive in {}", data.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .max()
                .context("the archive has no checkpoint yet")?;
            print!("{}", fs::read_to_string(latest)?);
        }
    }
    Ok(())
}

fn verify_receipt(file: &Path, records_key: &Path, as_json: bool) -> Result<()> {
    let read =
        |p: &Path| fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
    let public = vellum_records::RecordsPublic::parse(&read(records_key)?)
        .with_context(|| records_key.display().to_string())?;
    let proof = vellum_record::ReceiptProof::parse(&read(file)?)
        .with_context(|| file.display().to_string())?;
    let proven = proof
        .verify(&public)
        .context("the receipt does not verify")?;
    let r = &proven.receipt;
    let checkpoint = &proven.checkpoint;
    if as_json {
        let fields: serde_json::Map<String, serde_json::Value> = proven
            .fields
            .iter()
            .map(|(f, v)| (f.clone(), json!(v)))
            .collect();
        println!(
            "{}",
            json!({
                "verified": true,
                "origin": proven.binding.origin,
                "archiver_device": proven.binding.archiver_device,
                "binding_serial": proven.binding.serial,
                "chat_id": r.chat_id,
                "seq": r.seq,
                "leaf": r.leaf_index,
                "checkpoint_size": checkpoint.checkpoint.size,
                "cosigners": checkpoint.cosigners,
                "witness_quorum": proven.binding.witness_quorum,
                "fields": fields,
                "withheld": proven.withheld,
            })
        );
        return Ok(());
    }
    println!(
        "receipt verified: leaf {} of the archive log {} holds this record of chat {} (position {})",
        r.leaf_index, proven.binding.origin, r.chat_id, r.seq
    );
    println!(
        "  the archiver ({}) and its log key are bound by records.pub's custodians (binding {})",
        proven.binding.archiver_device, proven.binding.serial
    );
    println!(
        "  checkpoint of {} leaves, signed by the bound log key; witnesses: {} (quorum {})",
        checkpoint.checkpoint.size,
        if checkpoint.cosigners.is_empty() {
            "none".into()
        } else {
            checkpoint.cosigners.join(", ")
        },
        proven.binding.witness_quorum
    );
    for (field, value) in &proven.fields {
        println!(
            "  {field}: {}",
            crate::output::disclosed_field(field, value)
        );
    }
    if !proven.withheld.is_empty() {
        println!(
            "  withheld (committed, not disclosed): {}",
            proven.withheld.join(", ")
        );
    }
    Ok(())
}

fn verify_production(
    dir: &Path,
    records_key: Option<&Path>,
    log_key: Option<String>,
    as_json: bool,
) -> Result<()> {
    use vellum_production::Trust;
    let trust = match (records_key, log_key) {
        (Some(path), _) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Trust::RecordsPublic(
                vellum_records::RecordsPublic::parse(&text)
                    .with_context(|| path.display().to_string())?,
            )
        }
        (None, Some(key)) => Trust::LogKey(key),
        (None, None) => bail!("give --records-key FILE (records.pub) or --log-key VKEY"),
    };
    let verified = vellum_production::verify_production(dir, &trust)
        .with_context(|| format!("cannot check the production in {}", dir.display()))?;
    if as_json {
        println!(
            "{}",
            json!({
                "verified": verified.ok(),
                "case_id": verified.case_id,
                "checkpoint_size": verified.checkpoint_size,
                "files": verified.files,
                "records_released": verified.records_released,
                "records_withheld": verified.records_withheld,
                "openings": verified.openings,
                "cosigners": verified.cosigners,
                "failures": verified.failures,
            })
        );
    } else if verified.ok() {
        println!(
            "production {} verified: {} files unaltered; {} records released ({} fields proven) and {} withheld, all in the checkpoint of {} leaves",
            crate::output::safe(&verified.case_id),
            verified.files,
            verified.records_released,
            verified.openings,
            verified.records_withheld,
            verified.checkpoint_size
        );
    } else {
        for failure in &verified.failures {
            println!("FAILED: {}", crate::output::safe(failure));
        }
    }
    if !verified.ok() {
        bail!(
            "the production does not verify: {} failure(s)",
            verified.failures.len()
        );
    }
    Ok(())
}
