//! `send --file` and `download` (issue 10): the progress bar and what is printed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use vellum_client::{Client, MessageRow, OutgoingMessage};

use crate::output::format_size;

/// A progress line on standard error, only when it is a terminal, redrawn at most every
/// tenth of a second.
fn progress_bar(label: &str) -> impl FnMut(u64, u64) + Send + '_ {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut drawn: Option<Instant> = None;
    move |done, total| {
        if !tty {
            return;
        }
        let finished = done >= total;
        if !finished && drawn.is_some_and(|t| t.elapsed().as_millis() < 100) {
            return;
        }
        drawn = Some(Instant::now());
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let width = 30;
        let filled = (percent as usize * width) / 100;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = format_size((done as f64 / secs) as u64);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{label} [{}{}] {percent:>3}% {}/{} {rate}/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            format_size(done),
            format_size(total)
        );
        if finished {
            let _ = writeln!(err);
        }
    }
}

pub async fn send(
    client: &mut Client,
    chat: &str,
    message: OutgoingMessage,
    files: &[PathBuf],
) -> Result<MessageRow> {
    let mut bar = progress_bar("uploading");
    Ok(client.send_files(chat, message, files, &mut bar).await?)
}

pub async fn download(
    client: &mut Client,
    chat: &str,
    message_id: &str,
    out: Option<&Path>,
    json: bool,
) -> Result<()> {
    let mut bar = progress_bar("downloading");
    let saved = client.download(chat, message_id, out, &mut bar).await?;
    let mut listed = Vec::new();
    for file in &saved {
        if file.untracked_expiring {
            eprintln!(
                "warning: {} is outside the profile: the shredder will not remove it when \
                 the message expires",
                crate::output::safe(&file.path.display().to_string())
            );
        }
        if json {
            listed.push(serde_json::json!({
                "path": file.path,
                "name": file.name,
                "size": file.size,
                "sha256": file.sha256,
                "shredded_with_message": file.tracked,
            }));
        } else {
            println!(
                "saved {} ({}, sha256 {})",
                crate::output::safe(&file.path.display().to_string()),
                format_size(file.size),
                file.sha256
            );
        }
    }
    if json {
        crate::output::json_array(listed);
    }
    Ok(())
}
