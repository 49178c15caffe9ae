//! `vellum records … foia …` (issue 11): FOIA cases, review, redaction and productions,
//! over the records API.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Subcommand};
use reqwest::Method;
use serde_json::json;
use vellum_client::Api;
use vellum_record::api::foia::{
    Added, Case, CaseDetail, CaseItem, CaseSummary, Exemption, JobState, Mark, MetadataField,
    NameRedaction, Note, ProductionJob, Redaction, RedactionTarget,
};
use vellum_record::api::search::SearchRequest;

use crate::output::{json_array, json_text, rfc3339_millis, safe};

#[derive(Subcommand)]
pub enum FoiaCommand {
    /// Open a case for a request; it is due 20 working days after receipt (the office's
    /// calendar, DATA/office.json). The case id is printed on the last line.
    #[command(
        after_help = "Example: vellum records … foia create --requester 'CREW' --description 'messages about the gate, November 2026' --received 2026-11-20"
    )]
    Create {
        /// Who asked: a person or an organisation.
        #[arg(long)]
        requester: String,
        /// The request as received.
        #[arg(long)]
        description: String,
        /// The day it was received (YYYY-MM-DD, the office's time zone); default today.
        #[arg(long, value_name = "DATE")]
        received: Option<String>,
        /// Print the case as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every case: status, dates, analyst, how much is reviewed.
    #[command(after_help = "Example: vellum records … foia list --json")]
    List {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// A case with its notes and its review set: each record's text, mark and redactions.
    #[command(after_help = "Example: vellum records … foia show FOIA-2026-0001")]
    Show {
        /// The case id.
        case: String,
        /// The case and its records as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Add every record a search finds to the case's review set. The query syntax is
    /// search's (`vellum records search --help`).
    #[command(
        after_help = "Example: vellum records … foia add FOIA-2026-0001 gate --participant alice --participant bob --from 2026-11-01 --to 2026-11-30"
    )]
    Add {
        /// The case id.
        case: String,
        /// What to search for (empty: every record the filters let through).
        query: String,
        /// A user who must have taken part; repeat (or separate with commas) for all of
        /// them: "between alice and bob".
        #[arg(
            long = "participant",
            visible_alias = "participants",
            value_name = "USER",
            value_delimiter = ','
        )]
        participants: Vec<String>,
        /// A chat (id or title); repeat for any of several.
        #[arg(long = "chat", value_name = "CHAT")]
        chats: Vec<String>,
        /// From this date or time of the server's receipt (YYYY-MM-DD in the office's time
        /// zone, or RFC 3339), inclusive.
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Up to this date or time, inclusive.
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// Print what was added as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Take a record out of the case's review set, with its marks and redactions.
    #[command(after_help = "Example: vellum records … foia remove FOIA-2026-0001 42")]
    Remove {
        /// The case id.
        case: String,
        /// The record's leaf index (what search prints).
        record_id: u64,
    },
    /// Mark a record of the review set responsive or not responsive.
    #[command(
        after_help = "Example: vellum records … foia review FOIA-2026-0001 42 --responsive",
        group(ArgGroup::new("mark").required(true).args(["responsive", "not_responsive"]))
    )]
    Review {
        /// The case id.
        case: String,
        /// The record's leaf index (what search prints).
        record_id: u64,
        /// The record answers the request: it is produced.
        #[arg(long)]
        responsive: bool,
        /// The record does not answer the request: it is left out.
        #[arg(long)]
        not_responsive: bool,
    },
    /// Redact part of a record under a FOIA exemption: a span of its text, a piece of its
    /// metadata, a participant's name wherever it appears in it, or the whole record.
    #[command(
        after_help = "Example: vellum records … foia redact FOIA-2026-0001 42 --exemption b6 --span 10:25",
        group(ArgGroup::new("target").required(true).args(["span", "whole", "field", "participant"]))
    )]
    Redact {
        /// The case id.
        case: String,
        /// The record's leaf index (what search prints).
        record_id: u64,
        /// The exemption: b1 … b9, b7a … b7f (also written (b)(6), (b)(7)(C)).
        #[arg(long)]
        exemption: String,
        /// Characters START to END of the text (Unicode characters, END excluded).
        #[arg(long, value_name = "START:END")]
        span: Option<String>,
        /// Withhold the whole record.
        #[arg(long)]
        whole: bool,
        /// A piece of metadata: sender, chat-title or attachment-name.
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        /// A participant's name, wherever it appears in the record (metadata and text).
        #[arg(long, value_name = "USER")]
        participant: Option<String>,
        /// Print the redaction as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Redact a person's name in every record of the case where it appears (metadata and
    /// text), including records added later.
    #[command(
        after_help = "Example: vellum records … foia redact-name FOIA-2026-0001 carol --exemption b6"
    )]
    RedactName {
        /// The case id.
        case: String,
        /// The user whose name is withheld.
        user: String,
        /// The exemption: b1 … b9, b7a … b7f.
        #[arg(long)]
        exemption: String,
    },
    /// Remove a redaction by its number (`foia show` lists them).
    #[command(after_help = "Example: vellum records … foia unredact FOIA-2026-0001 3")]
    Unredact {
        /// The case id.
        case: String,
        /// The redaction's number.
        redaction: u64,
    },
    /// Add a note to the case.
    #[command(
        after_help = "Example: vellum records … foia note FOIA-2026-0001 'requester agreed to narrow the dates'"
    )]
    Note {
        /// The case id.
        case: String,
        /// The note.
        text: String,
    },
    /// Assign the case to an analyst (or an officer).
    #[command(after_help = "Example: vellum records … foia assign FOIA-2026-0001 dana")]
    Assign {
        /// The case id.
        case: String,
        /// The analyst's account name.
        analyst: String,
    },
    /// Set a due date by hand (an extension, or a state law's deadline).
    #[command(after_help = "Example: vellum records … foia due FOIA-2026-0001 2027-01-15")]
    Due {
        /// The case id.
        case: String,
        /// The new due date (YYYY-MM-DD).
        date: String,
    },
    /// Close the case: answered. Its records fall under their schedules again.
    #[command(after_help = "Example: vellum records … foia close FOIA-2026-0001")]
    Close {
        /// The case id.
        case: String,
    },
    /// Reopen a closed case.
    #[command(after_help = "Example: vellum records … foia reopen FOIA-2026-0001")]
    Reopen {
        /// The case id.
        case: String,
    },
    /// Produce the case's responsive records into DIR (which must be empty or absent): RSMF,
    /// a Bates-numbered PDF with burned-in redactions, a CSV load file, the withholding
    /// log and a manifest of proofs. A progress bar is shown on a terminal.
    #[command(
        after_help = "Example: vellum records … foia produce FOIA-2026-0001 --out production-1 --bates-prefix CREW --format rsmf,pdf,csv"
    )]
    Produce {
        /// The case id.
        case: String,
        /// The directory to write the production into (created; must be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The Bates number prefix (default: the case id).
        #[arg(long, value_name = "PFX")]
        bates_prefix: Option<String>,
        /// Which formats: rsmf, pdf, csv (the load file) (default all); the withholding log
        /// and manifest are written whatever is chosen.
        #[arg(long = "format", value_name = "FORMATS", value_delimiter = ',')]
        formats: Vec<String>,
        /// Print the production's summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn path_of(case: &str) -> String {
    format!("/v1/foia/cases/{}", crate::records::urlencode(case))
}

fn exemption(text: &str) -> Result<Exemption> {
    Exemption::parse(text).with_context(|| {
        format!("unknown exemption {text:?}: b1 … b9 or b7a … b7f (also written (b)(6), (b)(7)(C))")
    })
}

/// `START:END`, in Unicode characters.
pub fn parse_span(text: &str) -> Result<(usize, usize)> {
    let (start, end) = text
        .split_once(':')
        .with_context(|| format!("--span {text:?}: give START:END, like 10:25"))?;
    let number = |n: &str| {
        n.trim()
            .parse::<usize>()
            .with_context(|| format!("--span {text:?}: {n:?} is not a character offset"))
    };
    let (start, end) = (number(start)?, number(end)?);
    if start >= end {
        bail!("--span {text:?}: START must be before END");
    }
    Ok((start, end))
}

fn target_text(target: &RedactionTarget) -> String {
    match target {
        RedactionTarget::Span { start, end } => format!("text {start}:{end}"),
        RedactionTarget::Field { field } => field.as_str().to_owned(),
        RedactionTarget::Participant { user } => format!("the name {}", safe(user)),
        RedactionTarget::Whole => "the whole record".into(),
    }
}

pub async fn run(api: &Api, token: Option<&str>, command: FoiaCommand) -> Result<()> {
    let call = |method: Method, path: String, body: Option<serde_json::Value>| async move {
        api.call::<serde_json::Value>(method, &path, body.as_ref(), None, token)
            .await
            .map_err(anyhow::Error::from)
    };
    let update = |case: String, body: serde_json::Value| async move {
        let case: Case =
            serde_json::from_value(call(Method::PATCH, path_of(&case), Some(body)).await?)?;
        Ok::<Case, anyhow::Error>(case)
    };
    match command {
        FoiaCommand::Create {
            requester,
            description,
            received,
            json,
        } => {
            let body =
                json!({ "requester": requester, "description": description, "received": received });
            let case: Case = serde_json::from_value(
                call(Method::POST, "/v1/foia/cases".into(), Some(body)).await?,
            )?;
            if json {
                println!("{}", json_text(&serde_json::to_value(&case)?));
            } else {
                println!(
                    "case {} opened: received {}, due {}",
                    case.id, case.received, case.due
                );
                println!("{}", case.id);
            }
        }
        FoiaCommand::List { json } => {
            let cases: Vec<CaseSummary> =
                serde_json::from_value(call(Method::GET, "/v1/foia/cases".into(), None).await?)?;
            if json {
                json_array(
                    cases
                        .iter()
                        .map(|c| serde_json::to_value(c).expect("serialises"))
                        .collect(),
                );
                return Ok(());
            }
            for c in &cases {
                println!(
                    "{}  {}  due {}  {}  {} records ({} responsive, {} unreviewed)  {}",
                    c.id,
                    c.status.as_str(),
                    c.due,
                    c.analyst
                        .as_deref()
                        .map(safe)
                        .unwrap_or_else(|| "unassigned".into()),
                    c.items,
                    c.responsive,
                    c.unreviewed,
                    safe(&c.requester)
                );
            }
        }
        FoiaCommand::Show { case, json } => {
            let value = call(Method::GET, path_of(&case), None).await?;
            if json {
                println!("{}", json_text(&value));
                return Ok(());
            }
            show(&serde_json::from_value(value)?);
        }
        FoiaCommand::Add {
            case,
            query,
            participants,
            chats,
            from,
            to,
            json,
        } => {
            let request = SearchRequest {
                q: query,
                participants,
                chats,
                from,
                to,
                ..SearchRequest::default()
            };
            let added: Added = serde_json::from_value(
                call(
                    Method::POST,
                    format!("{}/items", path_of(&case)),
                    Some(serde_json::to_value(&request)?),
                )
                .await?,
            )?;
            if json {
                println!("{}", json_text(&serde_json::to_value(&added)?));
            } else {
                println!(
                    "{} record(s) added to {case} ({} already in it)",
                    added.added.len(),
                    added.already
                );
            }
        }
        FoiaCommand::Remove { case, record_id } => {
            call(
                Method::DELETE,
                format!("{}/items/{record_id}", path_of(&case)),
                None,
            )
            .await?;
            println!("leaf {record_id} removed from {case}");
        }
        FoiaCommand::Review {
            case,
            record_id,
            responsive,
            not_responsive: _,
        } => {
            let mark = if responsive {
                Mark::Responsive
            } else {
                Mark::NotResponsive
            };
            let item: CaseItem = serde_json::from_value(
                call(
                    Method::PUT,
                    format!("{}/items/{record_id}/review", path_of(&case)),
                    Some(json!({ "mark": mark })),
                )
                .await?,
            )?;
            println!("leaf {} of {case}: {}", item.leaf, item.mark.as_str());
        }
        FoiaCommand::Redact {
            case,
            record_id,
            exemption: code,
            span,
            whole,
            field,
            participant,
            json,
        } => {
            let exemption = exemption(&code)?;
            let target = match (span, whole, field, participant) {
                (Some(span), ..) => {
                    let (start, end) = parse_span(&span)?;
                    RedactionTarget::Span { start, end }
                }
                (_, true, ..) => RedactionTarget::Whole,
                (_, _, Some(field), _) => RedactionTarget::Field {
                    field: MetadataField::parse(&field).with_context(|| {
                        format!("--field {field:?}: sender, chat-title or attachment-name")
                    })?,
                },
                (.., Some(user)) => RedactionTarget::Participant { user },
                _ => bail!("give --span, --whole, --field or --participant"),
            };
            let redaction: Redaction = serde_json::from_value(
                call(
                    Method::POST,
                    format!("{}/items/{record_id}/redactions", path_of(&case)),
                    Some(json!({ "exemption": exemption, "target": target })),
                )
                .await?,
            )?;
            if json {
                println!("{}", json_text(&serde_json::to_value(&redaction)?));
            } else {
                println!(
                    "redaction {}: {} of leaf {record_id} withheld under {}",
                    redaction.id,
                    target_text(&redaction.target),
                    redaction.exemption
                );
            }
        }
        FoiaCommand::RedactName {
            case,
            user,
            exemption: code,
        } => {
            let exemption = exemption(&code)?;
            let name: NameRedaction = serde_json::from_value(
                call(
                    Method::POST,
                    format!("{}/names", path_of(&case)),
                    Some(json!({ "user": user, "exemption": exemption })),
                )
                .await?,
            )?;
            println!(
                "redaction {}: the name {} withheld throughout {case} under {}",
                name.id,
                safe(&name.user),
                name.exemption
            );
        }
        FoiaCommand::Unredact { case, redaction } => {
            call(
                Method::DELETE,
                format!("{}/redactions/{redaction}", path_of(&case)),
                None,
            )
            .await?;
            println!("redaction {redaction} removed from {case}");
        }
        FoiaCommand::Note { case, text } => {
            let note: Note = serde_json::from_value(
                call(
                    Method::POST,
                    format!("{}/notes", path_of(&case)),
                    Some(json!({ "text": text })),
                )
                .await?,
            )?;
            println!("note added to {case} by {}", safe(&note.author));
        }
        FoiaCommand::Assign { case, analyst } => {
            let case = update(case, json!({ "analyst": analyst })).await?;
            println!(
                "{} assigned to {}",
                case.id,
                safe(case.analyst.as_deref().unwrap_or_default())
            );
        }
        FoiaCommand::Due { case, date } => {
            let case = update(case, json!({ "due": date })).await?;
            println!("{} is due {}", case.id, case.due);
        }
        FoiaCommand::Close { case } => {
            let case = update(case, json!({ "status": "closed" })).await?;
            println!("{} closed", case.id);
        }
        FoiaCommand::Reopen { case } => {
            let case = update(case, json!({ "status": "open" })).await?;
            println!("{} reopened", case.id);
        }
        FoiaCommand::Produce {
            case,
            out,
            bates_prefix,
            formats,
            json,
        } => produce(api, token, &case, &out, bates_prefix, formats, json).await?,
    }
    Ok(())
}

fn show(detail: &CaseDetail) {
    let c = &detail.case;
    println!("{}  {}", c.id, c.status.as_str());
    println!("requester: {}", safe(&c.requester));
    println!("request: {}", safe(&c.description));
    println!(
        "received {}, due {}{}; analyst: {}",
        c.received,
        c.due,
        if c.due_overridden {
            " (set by hand)"
        } else {
            ""
        },
        c.analyst
            .as_deref()
            .map(safe)
            .unwrap_or_else(|| "unassigned".into())
    );
    for note in &c.notes {
        println!(
            "note by {} at {}: {}",
            safe(&note.author),
            rfc3339_millis(note.at),
            safe(&note.text)
        );
    }
    for name in &c.names {
        println!(
            "redaction {}: the name {} throughout the case, {}",
            name.id,
            safe(&name.user),
            name.exemption
        );
    }
    println!("{} record(s) in the review set", c.items.len());
    for item in &c.items {
        let record = detail.records.iter().find(|r| r.leaf == item.leaf);
        let marked = match (&item.marked_by, item.marked_at) {
            (Some(by), Some(at)) => format!(" by {} at {}", safe(by), rfc3339_millis(at)),
            _ => String::new(),
        };
        println!("leaf {}: {}{marked}", item.leaf, item.mark.as_str());
        match record {
            Some(r) => {
                let e = &r.record;
                let to: Vec<String> = e.recipients.iter().map(|m| safe(&m.user)).collect();
                println!(
                    "  {} in {} from {} to {}",
                    rfc3339_millis(e.received_at),
                    safe(e.chat_title.as_deref().unwrap_or(&e.chat_id)),
                    safe(&e.sender_user),
                    to.join(", ")
                );
                println!("  {}", safe(e.text.as_deref().unwrap_or(e.kind.as_str())));
                for red in &item.redactions {
                    let excerpt = match (&red.target, &e.text) {
                        (RedactionTarget::Span { start, end }, Some(text)) => format!(
                            " «{}»",
                            safe(
                                &text
                                    .chars()
                                    .skip(*start)
                                    .take(end - start)
                                    .collect::<String>()
                            )
                        ),
                        _ => String::new(),
                    };
                    println!(
                        "  redaction {}: {}{excerpt}, {} (by {})",
                        red.id,
                        target_text(&red.target),
                        red.exemption,
                        safe(&red.by)
                    );
                }
            }
            None => println!("  (disposed or unreadable)"),
        }
    }
}

/// Starts the production, follows its progress (a bar on a terminal), downloads the zip
/// and unpacks it into `out`.
async fn produce(
    api: &Api,
    token: Option<&str>,
    case: &str,
    out: &Path,
    bates_prefix: Option<String>,
    formats: Vec<String>,
    as_json: bool,
) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("--out {}", out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "--out {} is not empty: a production is written into an empty directory",
            out.display()
        );
    }
    let body = json!({ "bates_prefix": bates_prefix, "formats": formats });
    let mut job: ProductionJob = api
        .call(
            Method::POST,
            &format!("{}/productions", path_of(case)),
            Some(&body),
            None,
            token,
        )
        .await?;
    let job_path = format!("{}/productions/{}", path_of(case), job.job);
    let tty = std::io::stderr().is_terminal();
    while job.state == JobState::Running {
        if tty {
            let percent = (job.done * 100).checked_div(job.total).unwrap_or(0);
            let filled = percent as usize * 30 / 100;
            eprint!(
                "\rproducing [{}{}] {percent:>3}% {}/{} records ",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                job.done,
                job.total
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = api
            .call(Method::GET, &job_path, None::<&()>, None, token)
            .await?;
    }
    if tty {
        eprintln!();
    }
    if job.state == JobState::Failed {
        bail!(
            "the production failed: {}",
            job.error.as_deref().unwrap_or("no reason given")
        );
    }
    let url = format!("{}{job_path}/download", api.base());
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        let message = serde_json::from_slice::<vellum_wire::ApiError>(&bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        bail!("the production could not be downloaded: {message}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))
        .context("the production download is not a zip")?;
    zip.extract(out)
        .with_context(|| format!("cannot unpack the production into {}", out.display()))?;
    if as_json {
        println!(
            "{}",
            json_text(&json!({ "case": case, "out": out, "summary": job.summary }))
        );
    } else {
        let summary = job.summary.unwrap_or_default();
        println!(
            "production of {case} written to {}: {} record(s) produced, {} withheld, Bates {} to {}",
            out.display(),
            summary["records_produced"],
            summary["records_withheld"],
            summary["bates_first"].as_str().unwrap_or("-"),
            summary["bates_last"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}
