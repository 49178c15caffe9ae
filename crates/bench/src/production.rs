//! Production rate (issue 11): synthetic records sealed in a real archive, checkpointed and
//! proved, then produced to RSMF alone, to PDF alone, and to every format; records per
//! second of `produce` (the manifest's proofs and openings are part of each run).

use std::time::Instant;

use anyhow::Result;
use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_production::{
    produce, FieldRedaction, Formats, ProducedItem, ProductionInput, RedactableField,
    TextRedaction, Treatment,
};
use vellum_record::api::foia::Exemption;
use vellum_record::{Member, Record, RecordKind, FORMAT_VERSION};

pub async fn production_figures(records: u64) -> Result<()> {
    tokio::task::spawn_blocking(move || production_rate(records)).await?
}

fn production_rate(n: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let origin = "bench.example/records";
    let g = vellum_records::generate(3, 2, origin)?;
    let signer = vellum_tlog::NoteSigner::new(origin, &[3; 32])?;
    let mut archive = vellum_archive::Archive::open(&dir.path().join("archive"), signer)?;
    // One sealed body for all: sealing is the archiver's cost, not the production's.
    let sealed = vellum_records::seal(&g.public.key_bytes()?, b"bench", b"body")?;
    let started = Instant::now();
    let mut records = Vec::with_capacity(n as usize);
    for i in 0..n {
        let chat = format!("chat-{}", i % 50);
        let text = format!(
            "message {i} about the gate schedule and the budget for next week, please review"
        );
        let record = Record {
            version: FORMAT_VERSION,
            chat_id: chat,
            chat_title: Some(format!("Project {}", i % 50)),
            seq: i / 50 + 1,
            kind: RecordKind::Message,
            message_id: Some(format!("m{i}")),
            sender_user: format!("user{}", i % 7),
            sender_device: format!("device{}", i % 7),
            recipients: vec![Member {
                user: format!("user{}", (i + 1) % 7),
                device_id: format!("device{}", (i + 1) % 7),
            }],
            sent_at: 1_764_000_000_000 + i as i64 * 1000,
            received_at: 1_764_000_000_100 + i as i64 * 1000,
            text: Some(text),
            expire_secs: None,
            burn_secs: None,
            log_hash: None,
            salt: Some(hex::encode((i as u128).to_be_bytes().repeat(2))),
            reply_to: None,
            mentions: vec![],
            target: None,
            remove: false,
        };
        let leaf = archive
            .append_record(
                &record.reference(),
                record.received_at,
                &sealed,
                record.commitments(),
            )?
            .index;
        records.push((leaf, record));
    }
    archive.checkpoint()?;
    let (size, note) = archive.latest_checkpoint()?.expect("signed above");
    println!(
        "{n} records sealed into the archive in {:.1} s (not part of the figures)",
        started.elapsed().as_secs_f64()
    );
    let items: Vec<ProducedItem> = records
        .into_iter()
        .map(|(leaf, record)| -> Result<ProducedItem> {
            // One in ten has a span redacted, one in twenty its sender withheld.
            let treatment = Treatment::Release {
                text: if leaf % 10 == 0 {
                    vec![TextRedaction {
                        start: 8,
                        end: 20,
                        exemption: Exemption::B5,
                    }]
                } else {
                    vec![]
                },
                fields: if leaf % 20 == 0 {
                    vec![FieldRedaction {
                        field: RedactableField::Sender,
                        exemption: Exemption::B6,
                    }]
                } else {
                    vec![]
                },
            };
            Ok(ProducedItem {
                leaf,
                leaf_data: STANDARD.encode(archive.leaf(leaf)?.to_bytes()),
                inclusion_proof: archive
                    .inclusion_proof(leaf, size)?
                    .iter()
                    .map(hex::encode)
                    .collect(),
                record,
                treatment,
            })
        })
        .collect::<Result<_>>()?;
    let input = ProductionInput {
        case_id: "BENCH-1".into(),
        requester: "bench".into(),
        description: "synthetic".into(),
        produced_at: 1_764_100_000_000,
        time_zone: "America/New_York".into(),
        bates_prefix: "VELLUM".into(),
        bates_start: 1,
        formats: Formats::default(),
        origin: origin.into(),
        verifier_key: archive.verifier_key(),
        checkpoint: note,
        checkpoint_size: size,
        binding: None,
        items,
    };
    println!("| records | formats | seconds | records/s | output MiB |");
    println!("|---|---|---|---|---|");
    for (name, formats) in [
        (
            "RSMF (+ manifest)",
            Formats {
                rsmf: true,
                pdf: false,
                csv: false,
            },
        ),
        (
            "PDF (+ manifest)",
            Formats {
                rsmf: false,
                pdf: true,
                csv: false,
            },
        ),
        ("RSMF, PDF, CSV, manifest", Formats::default()),
    ] {
        let out = tempfile::tempdir()?;
        let input = ProductionInput {
            formats,
            ..input.clone()
        };
        let started = Instant::now();
        let summary = produce(&input, &out.path().join("p"), &mut |_| {})?;
        let secs = started.elapsed().as_secs_f64();
        let bytes: u64 = summary
            .files
            .iter()
            .map(|f| std::fs::metadata(out.path().join("p").join(f)).map_or(0, |m| m.len()))
            .sum();
        println!(
            "| {n} | {name} | {secs:.2} | {:.0} | {:.1} |",
            n as f64 / secs,
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
