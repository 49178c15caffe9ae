//! `cargo run --release -p vellum-bench`: loopback figures for BENCHMARKS.md.
//!
//! Everything is real: an in-process delivery server on 127.0.0.1 with its SQLite file on
//! disk (synchronous=FULL), clients with their own SQLite profiles, MLS via mls-rs.

mod app;
mod attachments;
mod directory;
mod load;
mod production;
mod search;
mod store;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use vellum_client::{LocalStore, MessageKind, MessageRow};
use vellum_load::{ms, percentile, Org};
use vellum_tlog::cosignature::CosignatureVerifier;

/// An org on an in-process server on loopback, with no rate limit in the way.
async fn start_org() -> Result<Org> {
    let root = tempfile::tempdir()?;
    let (listener, config) = server_config(root.path()).await?;
    serve(root, listener, config).await
}

/// A loopback listener and a server configuration for `root`/server, with no rate limit in
/// the way.
async fn server_config(
    root: &Path,
) -> Result<(tokio::net::TcpListener, vellum_server::ServerConfig)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = vellum_server::ServerConfig::new(listener.local_addr()?, root.join("server"));
    config.rate_per_sec = 1e9;
    config.rate_burst = 1e9;
    Ok((listener, config))
}

/// An org whose key directory is followed by a witness (`vellum-witness` on its own
/// loopback port, in this process): every checkpoint is served only once it carries the
/// witness's cosignature. Returns the witness's verifier too.
async fn start_witnessed_org() -> Result<(Org, CosignatureVerifier)> {
    use std::sync::Arc;
    let root = tempfile::tempdir()?;
    let (server_listener, mut config) = server_config(root.path()).await?;
    // The log key a witness operator is given: DATA/directory.vkey, written at the first
    // start.
    drop(vellum_server::AppState::open(config.clone())?);
    let vkey = std::fs::read_to_string(root.path().join("server/directory.vkey"))?;
    let witness = Arc::new(vellum_witness::Witness::open(
        &root.path().join("witness"),
        &[vkey.trim().to_owned()],
    )?);
    let verifier = witness.verifier();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(vellum_witness::serve(
        listener,
        witness,
        std::future::pending(),
    ));
    config.directory_witnesses = vec![vellum_witness::WitnessTarget {
        url,
        verifier: verifier.clone(),
    }];
    Ok((serve(root, server_listener, config).await?, verifier))
}

async fn serve(
    root: tempfile::TempDir,
    listener: tokio::net::TcpListener,
    config: vellum_server::ServerConfig,
) -> Result<Org> {
    let addr = listener.local_addr()?;
    let state = vellum_server::AppState::open(config)?;
    tokio::spawn(vellum_server::run(listener, state));
    let token = std::fs::read_to_string(root.path().join("server/admin-token"))?;
    Ok(Org::connect(&format!("http://{addr}"), token.trim(), root.path())?.keeping(root))
}

async fn chat_figures(members: usize, samples: usize, burst: usize) -> Result<()> {
    let org = start_org().await?;
    let mut alice = org.client("alice").await?;
    let mut others = Vec::new();
    for i in 1..members {
        others.push(org.client(&format!("m{i}")).await?);
    }
    let names: Vec<String> = (1..members).map(|i| format!("m{i}")).collect();
    let chat = alice
        .create_chat("bench", &names, Default::default(), None)
        .await?;
    for c in &mut others {
        c.sync().await?;
    }
    let receiver = &mut others[0];
    for i in 0..5 {
        alice.send(&chat, &format!("warm-up {i}")).await?;
        receiver.sync().await?;
    }

    // Latency: from the call to send until the receiver has it decrypted and stored.
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let text = format!("latency {i}");
        let start = Instant::now();
        alice.send(&chat, &text).await?;
        loop {
            if receiver.sync().await?.iter().any(|m| m.text == text) {
                break;
            }
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();

    // Throughput: one sender back to back (each acknowledged durably), then every receiver
    // syncing concurrently. Receivers first catch up on the latency round.
    for c in &mut others {
        c.sync().await?;
    }
    let start = Instant::now();
    for i in 0..burst {
        alice.send(&chat, &format!("burst {i}")).await?;
    }
    let send_rate = burst as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in others {
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < burst {
                got += c.sync().await?.len();
            }
            anyhow::Ok(got)
        }));
    }
    let mut delivered = 0;
    for t in tasks {
        delivered += t.await??;
    }
    let deliver_rate = delivered as f64 / start.elapsed().as_secs_f64();
    ensure!(
        delivered == burst * (members - 1),
        "every receiver got every message"
    );
    println!(
        "| {members} | {} | {} | {send_rate:.0} | {deliver_rate:.0} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    Ok(())
}

async fn add_member_figures(members: usize) -> Result<()> {
    let org = start_org().await?;
    let mut alice = org.client("alice").await?;
    let mut bob = org.client("bob").await?;
    let mut names = vec!["bob".to_string()];
    for i in 2..members {
        let name = format!("m{i}");
        org.light_device(&name).await?;
        names.push(name);
    }
    org.light_device("newcomer").await?;
    let start = Instant::now();
    let chat = alice
        .create_chat("big", &names, Default::default(), None)
        .await?;
    let create = start.elapsed();
    bob.sync().await?;
    ensure!(alice.members(&chat)?.len() == members);

    let start = Instant::now();
    alice.add_members(&chat, &["newcomer".into()]).await?;
    let add = start.elapsed();
    let start = Instant::now();
    bob.sync().await?;
    let process = start.elapsed();
    ensure!(bob.members(&chat)?.len() == members + 1);
    println!(
        "| {members} | {} | {} | {} |",
        ms(create),
        ms(add),
        ms(process)
    );
    Ok(())
}

fn stored_message(i: usize, expires_at: i64) -> MessageRow {
    MessageRow {
        group_id: "bench".into(),
        id: format!("m{i:06}"),
        kind: MessageKind::Text,
        sender_user: "alice".into(),
        sender_device: "d".into(),
        sent_at: 0,
        received_at: 0,
        seq: Some(i as u64),
        text: format!("message number {i} with a little text in it"),
        expires_at: Some(expires_at),
        burn_secs: None,
        read_at: None,
        burn_at: None,
        archived_leaf: None,
        salt: None,
        event: None,
        extra: Default::default(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Shredding throughput on a device holding 100,000 messages.
fn shred_throughput() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = LocalStore::open(dir.path())?;
    store.add_chat("bench", Some("bench"), 0)?;
    let total = 100_000;
    store.begin()?;
    for i in 0..total {
        // Every tenth message is due first; the rest much later.
        let expires_at = if i % 10 == 0 {
            1_000
        } else {
            1_000_000 + i as i64
        };
        store.add_message(&stored_message(i, expires_at))?;
    }
    store.commit()?;
    let start = Instant::now();
    let tenth = store.shred_due(1_000)?.len();
    let partial = start.elapsed();
    let start = Instant::now();
    let rest = store.shred_due(i64::MAX)?.len();
    let all = start.elapsed();
    ensure!(tenth == total / 10 && rest == total - tenth);
    println!(
        "| 10% due ({tenth} of {total}) | {} | {:.0} |",
        ms(partial),
        tenth as f64 / partial.as_secs_f64()
    );
    println!(
        "| the other 90% ({rest}) | {} | {:.0} |",
        ms(all),
        rest as f64 / all.as_secs_f64()
    );
    Ok(())
}

/// Expiry lag of a running client: messages due over four seconds, shredded by the same
/// tick the client's watch loop uses.
fn expiry_lag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = LocalStore::open(dir.path())?;
    store.add_chat("bench", Some("bench"), 0)?;
    let count = 2_000;
    let base = now_ms() + 500;
    store.begin()?;
    for i in 0..count {
        store.add_message(&stored_message(i, base + (i as i64 * 4_000) / count as i64))?;
    }
    store.commit()?;
    let mut lags = Vec::with_capacity(count);
    while lags.len() < count {
        std::thread::sleep(vellum_client::SHRED_TICK);
        for s in store.shred_due(now_ms())? {
            lags.push(Duration::from_millis((now_ms() - s.due_at).max(0) as u64));
        }
    }
    lags.sort();
    println!(
        "| {count} | {} | {} | {} |",
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().unwrap())
    );
    Ok(())
}

/// Sealed ingest next to the single-fsync limit of the same disk, then full verification
/// and proofs. `count` records of 400 bytes go in `rounds` rounds; after each round the same
/// directory gets as many bare appends of one record's size, each followed by the fsync the
/// archive uses (`sync_data`). Short alternating rounds put any change in the disk's load
/// (other processes' writes) on both alike.
fn archive_figures(count: usize, rounds: usize) -> Result<()> {
    use std::os::unix::fs::FileExt;
    use vellum_archive::{verify, Archive};
    use vellum_tlog::{verify_inclusion, Checkpoint, NoteSigner, NoteVerifier};
    let dir = tempfile::tempdir()?;
    let keys = vellum_records::generate(3, 2, "records.test/vellum")?;
    let public = keys.public.key_bytes()?;
    let mut archive = Archive::open(
        dir.path(),
        NoteSigner::new("bench.records/vellum", &[1; 32])?,
    )?;
    // What the archive holds on disk: the log and, in archives that have one, keys.bin.
    let on_disk = || -> u64 {
        ["log.bin", "keys.bin"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum()
    };
    let probe = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(dir.path().join("fsync-probe"))?;
    let per_round = count / rounds;
    let body = vec![b'x'; 400];
    let (mut ingest, mut sealing, mut limit) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut record_bytes, mut probe_len) = (0u64, 0u64);
    for round in 0..rounds {
        let before = on_disk();
        let start = Instant::now();
        for i in round * per_round..(round + 1) * per_round {
            let reference = format!("bench/{i}");
            let seal_start = Instant::now();
            let sealed = vellum_records::seal(&public, reference.as_bytes(), &body)?;
            sealing += seal_start.elapsed();
            // Each leaf commits to its record's fields, as the archiver's do.
            let content = vellum_record::content::Content {
                kind: "message".into(),
                chat_id: "bench".into(),
                message_id: Some(format!("m{i}")),
                sender_user: "alice".into(),
                sender_device: "d1".into(),
                sent_at: i as i64,
                text: Some("x".repeat(400)),
            };
            let commitments = content.commit(&[i as u8; 32]);
            archive.append_record(&reference, i as i64, &sealed, Some(commitments))?;
        }
        ingest += start.elapsed();
        record_bytes = (on_disk() - before) / per_round as u64;
        let buffer = vec![0x5a; record_bytes as usize];
        let start = Instant::now();
        for _ in 0..per_round {
            probe.write_all_at(&buffer, probe_len)?;
            probe.sync_data()?;
            probe_len += record_bytes;
        }
        limit += start.elapsed();
    }
    let count = per_round * rounds;
    let ingest_rate = count as f64 / ingest.as_secs_f64();
    let limit_rate = count as f64 / limit.as_secs_f64();
    let note = archive.checkpoint()?;
    let start = Instant::now();
    let report = verify(dir.path(), None);
    let verification = start.elapsed();
    ensure!(report.ok() && report.leaves == count as u64);
    let verifier =
        NoteVerifier::parse(std::fs::read_to_string(dir.path().join("log.vkey"))?.trim())?;
    let checkpoint = Checkpoint::parse(NoteVerifier::open(&note, &[verifier])?)?;
    let start = Instant::now();
    let proofs: Vec<_> = (0..200)
        .map(|i| archive.inclusion_proof(i * 10 % count as u64, checkpoint.size))
        .collect::<Result<_, _>>()?;
    let proving = start.elapsed() / 200;
    let start = Instant::now();
    for (i, proof) in proofs.iter().enumerate() {
        let index = i as u64 * 10 % count as u64;
        verify_inclusion(
            &archive.leaf_hash(index).unwrap(),
            index,
            checkpoint.size,
            proof,
            &checkpoint.root,
        )?;
    }
    let checking = start.elapsed() / 200;
    println!("| sealed ingest, durable (records/s; {count} records, {record_bytes} bytes each on disk) | {ingest_rate:.0} |");
    println!("| single-fsync limit, same run and directory (appends of {record_bytes} bytes + fdatasync per s) | {limit_rate:.0} |");
    println!(
        "| sealed ingest / single-fsync limit | {:.0}% |",
        100.0 * ingest_rate / limit_rate
    );
    println!(
        "| of each record's time, sealing (HPKE + AES-GCM, µs) / the rest: encode, write, fsync (µs) | {:.0} / {:.0} |",
        sealing.as_secs_f64() * 1e6 / count as f64,
        (ingest - sealing).as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "| full verification of {count} leaves (leaves/s) | {:.0} |",
        count as f64 / verification.as_secs_f64()
    );
    println!(
        "| inclusion proof, generate (µs, {count} leaves) | {:.1} |",
        proving.as_secs_f64() * 1e6
    );
    println!(
        "| inclusion proof, verify (µs) | {:.1} |",
        checking.as_secs_f64() * 1e6
    );
    Ok(())
}

/// Proofs served by the archive itself at `leaves` leaves, as receipts and the witness task
/// ask for them: log.bin written directly (access leaves), the archive opened (which reads
/// and checks every leaf), then proofs through its lock and lazily built tile index.
fn archive_tile_figures(leaves: u64) -> Result<()> {
    use std::io::Write;
    use vellum_archive::{encode_entry, Archive, Leaf};
    use vellum_tlog::{verify_consistency, verify_inclusion, NoteSigner};
    let dir = tempfile::tempdir()?;
    let mut log = std::io::BufWriter::new(std::fs::File::create(dir.path().join("log.bin"))?);
    for i in 0..leaves {
        log.write_all(&encode_entry(&Leaf::Access {
            time: i as i64,
            action: "view".into(),
            detail: format!("{i}"),
        })?)?;
    }
    log.into_inner()?.sync_all()?;
    let start = Instant::now();
    let archive = Archive::open(
        dir.path(),
        NoteSigner::new("bench.records/vellum", &[3; 32])?,
    )?;
    let open = start.elapsed();
    let start = Instant::now();
    let root = archive.tree_root(leaves)?;
    let first = start.elapsed();
    let samples = 1_000u64;
    let start = Instant::now();
    let mut proofs = Vec::new();
    for s in 0..samples {
        let i = (s * 7_919 + 13) % leaves;
        proofs.push((i, archive.inclusion_proof(i, leaves)?));
    }
    let inclusion = start.elapsed() / samples as u32;
    for (i, proof) in &proofs {
        verify_inclusion(&archive.leaf_hash(*i).unwrap(), *i, leaves, proof, &root)?;
    }
    let start = Instant::now();
    let mut proofs = Vec::new();
    for s in 0..samples {
        let old = (s * 104_729 + 1) % leaves + 1;
        proofs.push((old, archive.consistency_proof(old, leaves)?));
    }
    let consistency = start.elapsed() / samples as u32;
    for (old, proof) in &proofs {
        verify_consistency(*old, leaves, &archive.tree_root(*old)?, &root, proof)?;
    }
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    println!(
        "| archive of {leaves} leaves: open, reading and checking every leaf (ms) | {} |",
        ms(open)
    );
    println!(
        "| its first root after open, building the tile index (ms) | {} |",
        ms(first)
    );
    println!(
        "| inclusion proof through the archive (µs, {leaves} leaves) | {} |",
        us(inclusion)
    );
    println!(
        "| consistency proof through the archive (µs, {leaves} leaves) | {} |",
        us(consistency)
    );
    Ok(())
}

/// Witness round trip per checkpoint: a `vellum-witness` serving HTTP on 127.0.0.1 (in this
/// process, on its own tokio tasks) gets `checkpoints` successive checkpoints of a log that
/// grows by `step` leaves between them, each with its consistency proof from the one before
/// (from tiles), as the archiver sends them. Timed from the request until its cosignature is
/// verified; the witness checks the log's signature and the proof, and writes its new state
/// atomically (fsync, rename, directory fsync) before it answers.
async fn witness_figures(checkpoints: usize, step: u64) -> Result<()> {
    use std::sync::Arc;
    use vellum_tlog::tiles::{self, TileIndex};
    use vellum_tlog::{leaf_hash, Checkpoint, NoteSigner};
    use vellum_witness::{AddCheckpoint, Submitted, Witness};
    let warm_up = 5;
    let dir = tempfile::tempdir()?;
    let signer = NoteSigner::new("bench.records/vellum", &[2; 32])?;
    let witness = Arc::new(Witness::open(dir.path(), &[signer.verifier_key()])?);
    let verifier = witness.verifier();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(vellum_witness::serve(
        listener,
        witness,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let (mut hashes, mut index) = (Vec::new(), TileIndex::new());
    let mut old = 0u64;
    let mut times = Vec::with_capacity(checkpoints);
    for c in 0..warm_up + checkpoints {
        let size = old + step;
        hashes.extend((old..size).map(|i| leaf_hash(&i.to_be_bytes())));
        index.extend(&hashes);
        let reader = index.reader(&hashes);
        let text = Checkpoint {
            origin: signer.name().to_owned(),
            size,
            root: tiles::tree_root(&reader, size)?,
            extensions: vec![],
        }
        .to_text();
        let note = signer.sign(&text)?;
        let proof = if old == 0 {
            Vec::new()
        } else {
            tiles::consistency_proof(&reader, old, size)?
        };
        let request = AddCheckpoint {
            old_size: old,
            proof,
            note: note.clone(),
        };
        let start = Instant::now();
        let Submitted::Cosigned(lines) = vellum_witness::submit(&http, &url, &request).await?
        else {
            anyhow::bail!("the witness refused checkpoint {size}");
        };
        let (cosigned, _) = verifier.verify(&format!("{note}{lines}"))?;
        let elapsed = start.elapsed();
        ensure!(cosigned.size == size);
        if c >= warm_up {
            times.push(elapsed);
        }
        old = size;
    }
    times.sort();
    println!(
        "| witness round trip per checkpoint (ms, median / p99; {checkpoints} checkpoints, +{step} leaves each, to {old} leaves) | {} / {} |",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
    Ok(())
}

/// Proof serving from C2SP tiles at archive scale: `leaves` leaf hashes generated straight
/// into a tile index (no sealing), proofs timed with their tile reads counted, next to the
/// linear (whole-tree) proofs at `linear_leaves`.
fn tile_figures(leaves: u64, linear_leaves: u64) -> Result<()> {
    use std::cell::Cell;
    use vellum_tlog::tiles::{self, IndexReader, TileIndex, TileReader};
    use vellum_tlog::{leaf_hash, verify_consistency, verify_inclusion, Hash};
    struct Counting<'a>(IndexReader<'a>, Cell<usize>);
    impl TileReader for Counting<'_> {
        type Error = vellum_tlog::Error;
        fn read_tile(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>, Self::Error> {
            self.1.set(self.1.get() + 1);
            self.0.read_tile(level, index, width)
        }
    }
    let samples = 1_000u64;
    let hashes: Vec<Hash> = (0..leaves).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let start = Instant::now();
    let mut index = TileIndex::new();
    index.extend(&hashes);
    let indexing = start.elapsed();
    let reader = Counting(index.reader(&hashes), Cell::new(0));
    let root = tiles::tree_root(&reader, leaves)?;
    let levels = (64 - leaves.leading_zeros()).div_ceil(8) as usize;

    let mut reads = Vec::new();
    let mut proofs = Vec::new();
    let start = Instant::now();
    for s in 0..samples {
        let i = (s * 7_919 + 13) % leaves;
        reader.1.set(0);
        proofs.push((i, tiles::inclusion_proof(&reader, i, leaves)?));
        reads.push(reader.1.get());
    }
    let inclusion = start.elapsed() / samples as u32;
    for (i, proof) in &proofs {
        verify_inclusion(&hashes[*i as usize], *i, leaves, proof, &root)?;
    }
    let inclusion_reads = reads.clone();

    reads.clear();
    let mut proofs = Vec::new();
    let start = Instant::now();
    for s in 0..samples {
        let old = (s * 104_729 + 1) % leaves + 1;
        reader.1.set(0);
        proofs.push((old, tiles::consistency_proof(&reader, old, leaves)?));
        reads.push(reader.1.get());
    }
    let consistency = start.elapsed() / samples as u32;
    for (old, proof) in &proofs {
        let old_root = tiles::tree_root(&reader, *old)?;
        verify_consistency(*old, leaves, &old_root, &root, proof)?;
    }
    let summary = |r: &[usize]| {
        let max = *r.iter().max().unwrap_or(&0);
        ensure!(max <= 2 * levels, "a proof read {max} tiles");
        Ok(format!(
            "{:.1} / {max}",
            r.iter().sum::<usize>() as f64 / r.len() as f64
        ))
    };

    let linear = &hashes[..linear_leaves.min(leaves) as usize];
    let n = linear.len() as u64;
    let linear_samples = 20u32;
    let start = Instant::now();
    for s in 0..u64::from(linear_samples) {
        vellum_tlog::inclusion_proof(linear, (s * 7_919 + 13) % n, n)?;
    }
    let linear_inclusion = start.elapsed() / linear_samples;
    let start = Instant::now();
    for s in 0..u64::from(linear_samples) {
        vellum_tlog::consistency_proof(linear, (s * 104_729 + 1) % n + 1, n)?;
    }
    let linear_consistency = start.elapsed() / linear_samples;
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    println!(
        "| tile index over {leaves} leaf hashes, build (ms) | {} |",
        ms(indexing)
    );
    println!(
        "| inclusion proof from tiles (µs, {leaves} leaves) | {} |",
        us(inclusion)
    );
    println!(
        "| tiles read per inclusion proof (mean / max) | {} |",
        summary(&inclusion_reads)?
    );
    println!(
        "| consistency proof from tiles (µs, {leaves} leaves) | {} |",
        us(consistency)
    );
    println!(
        "| tiles read per consistency proof (mean / max) | {} |",
        summary(&reads)?
    );
    println!(
        "| inclusion proof, linear (µs, {n} leaves) | {} |",
        us(linear_inclusion)
    );
    println!(
        "| consistency proof, linear (µs, {n} leaves) | {} |",
        us(linear_consistency)
    );
    Ok(())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}

const USAGE: &str =
    "usage: vellum-bench [quick|archive|load|soak|directory|senders|attachments|search|production|app|all]
  quick  in-process figures: delivery, adding a member, shredding, archive (the default)
  archive  the archive's figures alone: sealed ingest against the disk's single-fsync
         limit, verification, proofs at 1,000,000 leaves, witness round trip
  load   a `vellum server` process: 50 chats of 10 members at 200, 500 and 1,000 msg/s for
         60 s each, idle WebSocket memory, adding a member next to raw mls-rs
  soak   the same server at 200 msg/s for 10 minutes, one row per minute
  directory  the key directory: verifying it at 1,000 and 10,000 users, what it adds to
         creating a chat of 100 and 1,000, approval to a witness-cosigned checkpoint
  search [N]  the records search index over N synthetic records (default 1,000,000):
         build rate, query latency, ripgrep over a plaintext dump side by side
  senders RATE SECS   one many-senders row at RATE msg/s for SECS seconds
  attachments [MIB]   a file of MIB MiB (default 1024) sent and downloaded through a
         `vellum server` process and the CLI, next to raw AES-GCM and a file copy; the
         sender's peak memory (needs `cargo build --release -p vellum`)
  production [N]      N synthetic records (default 10000) produced to RSMF, to PDF and to
         every format: records per second (issue 11)
  app [N] [M]  `vellum app` in headless Chromium: N live messages received to screen
         (default 200), a chat of M messages opened (default 10000), the tab's memory
         (needs `cargo build --release -p vellum`, chromium and chromedriver)
  store [SECS]  issue 13: the server's log alone, SQLite and PostgreSQL
         (VELLUM_BENCH_DATABASE_URL, default the local test database): 1, 8 and 64
         concurrent senders appending for SECS seconds each (default 5), appends and commits
         per second; and the raw durable insert rate of each
  all    quick, then load (load and soak need `cargo build --release -p vellum`)";

#[tokio::main]
async fn main() -> Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "quick".into());
    println!("machine: {}", machine());
    match scenario.as_str() {
        "quick" => quick().await,
        "archive" => archive().await,
        "directory" => directory_bench().await,
        "load" => load_figures().await,
        "production" => {
            let records = std::env::args()
                .nth(2)
                .map_or(Ok(10_000), |a| a.parse::<u64>());
            let Ok(records) = records else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            production::production_figures(records).await
        }
        "soak" => soak().await,
        "app" => {
            let arg = |n: usize, default: usize| {
                std::env::args()
                    .nth(n)
                    .map_or(Ok(default), |a| a.parse::<usize>())
            };
            let (Ok(samples), Ok(fill)) = (arg(2, 200), arg(3, 10_000)) else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            // The browser is driven by blocking calls: off the async workers.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || app::app_figures(handle, samples, fill)).await?
        }
        "attachments" => {
            let mib = std::env::args()
                .nth(2)
                .map_or(Ok(1024), |a| a.parse::<u64>());
            let Ok(mib) = mib else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            attachments::attachment_figures(mib).await
        }
        "search" => {
            let records = std::env::args()
                .nth(2)
                .map_or(Ok(1_000_000), |a| a.parse::<u64>());
            let Ok(records) = records else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            search::search_figures(records)
        }
        "store" => {
            let secs = std::env::args()
                .nth(2)
                .map_or(Ok(5.0), |a| a.parse::<f64>());
            let Ok(secs) = secs else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            store::store_figures(secs).await
        }
        "senders" => {
            let arg = |n: usize, default: f64| {
                std::env::args()
                    .nth(n)
                    .map_or(Ok(default), |a| a.parse::<f64>())
            };
            let (Ok(rate), Ok(secs)) = (arg(2, 200.0), arg(3, 60.0)) else {
                eprintln!("{USAGE}");
                std::process::exit(2);
            };
            println!("| offered msg/s | sent msg/s | deliveries/s | send-to-deliver p50 ms | p99 ms | server CPU µs per delivery | delivered/expected |");
            println!("|---|---|---|---|---|---|---|");
            load::many_senders(50, 10, rate, Duration::from_secs_f64(secs), None).await
        }
        "all" => {
            quick().await?;
            load_figures().await
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn load_figures() -> Result<()> {
    println!("\nmany senders: 50 chats of 10 full clients, one sender per chat, 60 s at a fixed total rate; receivers run the watch loop (WebSocket wake, sync, decrypt, store, ack)");
    println!("| offered msg/s | sent msg/s | deliveries/s | send-to-deliver p50 ms | p99 ms | server CPU µs per delivery | delivered/expected |");
    println!("|---|---|---|---|---|---|---|");
    for rate in [200.0, 500.0, 1000.0] {
        load::many_senders(50, 10, rate, Duration::from_secs(60), None).await?;
    }
    println!("\nidle authenticated WebSockets: server resident memory");
    println!("| connections | server RSS MiB | KiB per connection |");
    println!("|---|---|---|");
    load::idle_websockets(&[1_000, 10_000]).await?;
    println!("\nadding one member: raw mls-rs in memory (commit without path, committer applies, server view, one member processes) next to Vellum end to end (add_members, then one member's sync); median of 3");
    println!("| members | raw mls-rs ms | Vellum ms | ratio |");
    println!("|---|---|---|---|");
    load::add_member_against_raw(100).await?;
    load::add_member_against_raw(1000).await?;
    Ok(())
}

async fn soak() -> Result<()> {
    println!("\nsoak: 50 chats of 10 members at 200 msg/s for 10 minutes, one row per minute");
    println!("| elapsed | sent msg/s | deliveries/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    load::many_senders(
        50,
        10,
        200.0,
        Duration::from_secs(600),
        Some(Duration::from_secs(60)),
    )
    .await
}

async fn quick() -> Result<()> {
    println!("\nsend-to-receive on loopback (latency: send call until one receiver has it decrypted and stored, by sync)");
    println!("| members | p50 ms | p99 ms | sent msg/s (durably acked) | delivered msg/s (all receivers) |");
    println!("|---|---|---|---|---|");
    chat_figures(2, 200, 300).await?;
    chat_figures(10, 200, 300).await?;
    chat_figures(100, 100, 100).await?;
    println!("\nadding one member (full clients: the committer alice and one member bob; the rest enrolled with key packages)");
    println!("| members | create the chat in one commit ms | add one member ms (claim, commit, server, apply, title) | one member processes it ms |");
    println!("|---|---|---|---|");
    add_member_figures(100).await?;
    add_member_figures(1000).await?;
    println!("\nshredding on a device store (SQLite, secure_delete, WAL truncated after each run)");
    println!("| shredded | ms | messages/s |");
    println!("|---|---|---|");
    shred_throughput()?;
    println!(
        "\nexpiry lag of a running client (tick {} ms)",
        vellum_client::SHRED_TICK.as_millis()
    );
    println!("| messages | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    expiry_lag()?;
    archive().await
}

/// The key directory's figures (issue 9).
async fn directory_bench() -> Result<()> {
    println!("\nkey directory (each user: identity entry + one approved device)");
    println!("| measure | value |");
    println!("|---|---|");
    directory::directory_figures(1_000)?;
    directory::directory_figures(10_000)?;
    println!("\ncreating a chat: what the key directory adds (alice full client, the others enrolled with identity and key packages; median of 3 orgs)");
    println!("| members | create ms (copy behind by the members) | directory work in it ms | directory / the rest | create ms (copy current) | catch-up refresh ms | refresh, nothing new ms | read copy / known identities ms | read the chat's roster ms | look up every member ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    directory::create_figures(100, 3).await?;
    directory::create_figures(1_000, 3).await?;
    println!("\napproval to witnessed publication (in-process witness following the directory)");
    println!("| measure | value |");
    println!("|---|---|");
    directory::approval_figures(20).await
}

/// The archive's figures: ingest against the fsync limit, verification, proofs from tiles at
/// a million leaves, and the witness round trip.
async fn archive() -> Result<()> {
    println!("\narchive (sealed records: HPKE + AES-128-GCM; RFC 6962 log)");
    println!("| measure | value |");
    println!("|---|---|");
    archive_figures(2_000, 100)?;
    tile_figures(1_000_000, 65_536)?;
    archive_tile_figures(1_000_000)?;
    witness_figures(200, 1_000).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn directory_figures_run_at_a_small_size() {
        super::directory::directory_figures(50).unwrap();
    }

    #[tokio::test]
    async fn directory_create_figures_run_at_a_small_size() {
        super::directory::create_figures(4, 2).await.unwrap();
    }

    #[tokio::test]
    async fn approvals_reach_a_witnessed_checkpoint() {
        super::directory::approval_figures(2).await.unwrap();
    }

    #[test]
    fn tile_figures_run_and_their_proofs_verify_at_a_small_size() {
        super::tile_figures(70_000, 600).unwrap();
        super::archive_tile_figures(3_000).unwrap();
    }

    #[test]
    fn archive_figures_run_at_a_small_size() {
        super::archive_figures(20, 2).unwrap();
    }

    #[tokio::test]
    async fn witness_figures_run_and_every_checkpoint_is_cosigned() {
        super::witness_figures(3, 300).await.unwrap();
    }
}
