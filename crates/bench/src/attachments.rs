//! Attachments (issue 10): upload and download MB/s through a real `vellum server` process
//! and the real `vellum` CLI, next to raw AES-256-GCM and a plain file copy on the same
//! machine; and the sending process's peak memory (VmHWM) while it sends the file.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use vellum_client::{Client, FileCipher, CHUNK_SIZE};

use crate::load::{start_server, vellum_binary};

fn mb_per_s(bytes: u64, took: Duration) -> String {
    format!("{:.1}", bytes as f64 / 1e6 / took.as_secs_f64())
}

/// A file of `mib` MiB of varied bytes; its SHA-256.
fn make_file(path: &Path, mib: u64) -> Result<String> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize)
                .wrapping_mul(31)
                .wrapping_add(j.wrapping_mul(7)) as u8;
        }
        hasher.update(&block);
        file.write_all(&block)?;
    }
    file.flush()?;
    file.get_ref().sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Runs `cmd` to completion, polling its VmHWM (peak resident memory, KiB) meanwhile.
fn run_measured(cmd: &mut Command) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting vellum")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            ensure!(status.success(), "{cmd:?} failed: {status}");
            return Ok((start.elapsed(), peak));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn attachment_figures(mib: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let bytes = mib << 20;
    let source = root.join("payload.bin");
    let sha = make_file(&source, mib)?;

    // Plain file copy (read + write + fsync), the disk's own speed.
    let copy = root.join("copy.bin");
    let start = Instant::now();
    std::fs::copy(&source, &copy)?;
    std::fs::File::open(&copy)?.sync_all()?;
    let copy_took = start.elapsed();
    std::fs::remove_file(&copy)?;

    // Raw AES-256-GCM over the same bytes in the same chunks, in memory, one core.
    let cipher = FileCipher::new(&[7; 32], [1; 7]);
    let chunks = bytes.div_ceil(u64::from(CHUNK_SIZE));
    let start = Instant::now();
    let mut sealed_total = 0u64;
    for i in 0..chunks {
        let chunk = vec![i as u8; CHUNK_SIZE as usize];
        sealed_total += cipher.seal(i, i + 1 == chunks, chunk)?.len() as u64;
    }
    let seal_took = start.elapsed();
    ensure!(sealed_total == bytes + 16 * chunks);

    // Through a server process, with the CLI a user runs.
    let (server, org) = start_server(root)?;
    let mut alice = org.client("alice").await?;
    let mut bob = org.client("bob").await?;
    let chat = alice
        .create_chat("files", &["bob".to_owned()], Default::default(), None)
        .await?;
    bob.sync().await?;
    // The CLI opens the profiles itself.
    drop((alice, bob));
    let vellum = vellum_binary()?;
    let (upload_took, peak_kib) = run_measured(
        Command::new(&vellum)
            .arg("--home")
            .arg(root.join("alice"))
            .args(["send", &chat, "the file", "--file"])
            .arg(&source)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped()),
    )?;
    let mut bob = Client::open(&root.join("bob"))?;
    let message = bob
        .sync()
        .await?
        .into_iter()
        .find(|m| !m.extra.attachments.is_empty())
        .context("bob received no file")?;
    drop(bob);
    let out = root.join("downloads");
    let (download_took, _) = run_measured(
        Command::new(&vellum)
            .arg("--home")
            .arg(root.join("bob"))
            .args(["download", &chat, &message.id, "--out"])
            .arg(&out)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped()),
    )?;
    let got = {
        let mut hasher = Sha256::new();
        let mut file = std::fs::File::open(out.join("payload.bin"))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hex::encode(hasher.finalize())
    };
    ensure!(got == sha, "the downloaded file differs from the one sent");

    println!("\nattachments: one {mib} MiB file (64 KiB chunks, AES-256-GCM STREAM), `vellum send --file` and `vellum download` against a `vellum server` process on loopback");
    println!("| measure | MB/s | seconds |");
    println!("|---|---|---|");
    for (what, took) in [
        ("plain file copy (read, write, fsync)", copy_took),
        ("raw AES-256-GCM, one core, in memory", seal_took),
        ("upload: read, hash, seal, send, server stores", upload_took),
        (
            "download: fetch, open, write, verify SHA-256",
            download_took,
        ),
    ] {
        println!(
            "| {what} | {} | {:.2} |",
            mb_per_s(bytes, took),
            took.as_secs_f64()
        );
    }
    println!(
        "\npeak memory of the sending process (VmHWM): {:.1} MiB (target < 64 MiB)",
        peak_kib as f64 / 1024.0
    );
    drop(server);
    Ok(())
}
