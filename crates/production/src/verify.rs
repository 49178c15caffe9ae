//! The offline check of a production, for a court or a requester: with nothing but the
//! production directory and `records.pub` (or the log's verifier key), every file's SHA-256,
//! the checkpoint's signature (and witness quorum, with `records.pub`), every inclusion proof,
//! every opening against its leaf's commitments, and that the text of each record produced in
//! full is the opened text, both where the load file hashes it and where the RSMF shows a
//! message (so a file altered and re-hashed in the manifest is still caught); that each
//! released record's opened sender and time are the load file's; and that every file the
//! RSMF lists is in its `rsmf.zip` with its size. Every failure is named; none stops the
//! others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine};
use vellum_record::content::{Commitments, FIELDS};
use vellum_record::{RecordsPublic, SignedBinding};
use vellum_tlog::{leaf_hash, verify_inclusion, Checkpoint, NoteVerifier};

use crate::manifest::{sha256_hex, Manifest, FILE};
use crate::tables::LOADFILE;
use crate::Error;

/// What the checkpoint is checked with.
#[derive(Debug, Clone)]
pub enum Trust {
    /// `records.pub`: the manifest's binding must be the custodians', and the checkpoint
    /// signed by the log it binds with its witness quorum.
    RecordsPublic(RecordsPublic),
    /// The log's C2SP note verifier key, trusted as given.
    LogKey(String),
}

/// What verified, and what did not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verified {
    pub case_id: String,
    pub checkpoint_size: u64,
    pub files: usize,
    pub records_released: usize,
    pub records_withheld: usize,
    pub openings: usize,
    /// The witnesses whose cosignatures verified (with `records.pub`).
    pub cosigners: Vec<String>,
    /// Every failure, each naming the file, record or field.
    pub failures: Vec<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Checks the production in `dir`. An `Err` only when there is nothing to check (no readable
/// manifest); every other problem is a failure in the result.
pub fn verify_production(dir: &Path, trust: &Trust) -> Result<Verified, Error> {
    let path = dir.join(FILE);
    let text = std::fs::read(&path).map_err(|e| Error::Io(path.display().to_string(), e))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::Unverified(format!("{FILE} is not a production manifest: {e}")))?;
    let mut report = Verified {
        case_id: manifest.case_id.clone(),
        checkpoint_size: manifest.checkpoint_size,
        files: manifest.files.len(),
        ..Verified::default()
    };
    let mut fail = |m: String| report.failures.push(m);

    // Files: each listed one unaltered, and nothing unlisted.
    let mut listed = BTreeSet::new();
    for f in &manifest.files {
        listed.insert(f.name.clone());
        if f.name.contains('/') || f.name.contains("..") {
            fail(format!("{}: not a file name of the production", f.name));
            continue;
        }
        match std::fs::read(dir.join(&f.name)) {
            Ok(bytes) if sha256_hex(&bytes) == f.sha256 => {}
            Ok(_) => fail(format!(
                "{}: its SHA-256 is not the manifest's: the file was altered",
                f.name
            )),
            Err(e) => fail(format!("{}: {e}", f.name)),
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name != FILE && !listed.contains(&name) {
                fail(format!("{name}: not listed in the manifest"));
            }
        }
    }

    // The checkpoint.
    let checkpoint = match check_checkpoint(&manifest, trust) {
        Ok((c, cosigners)) => {
            report.cosigners = cosigners;
            Some(c)
        }
        Err(e) => {
            report.failures.push(format!("checkpoint: {e}"));
            None
        }
    };
    let mut fail = |m: String| report.failures.push(m);
    if let Some(c) = &checkpoint {
        if c.size != manifest.checkpoint_size {
            fail(format!(
                "checkpoint: it is of {} leaves, the manifest says {}",
                c.size, manifest.checkpoint_size
            ));
        }
    }

    // The load file's rows, and the RSMF's message texts, by record.
    let loaded = read_loadfile(dir, &manifest);
    let messages = read_rsmf_messages(dir, &manifest);
    for m in check_rsmf_files(dir, &manifest) {
        fail(m);
    }

    let mut released = 0;
    let mut withheld = 0;
    let mut openings = 0;
    for r in &manifest.records {
        let name = format!("record {}", r.leaf);
        let (hash, data) = match (r.treatment.as_str(), &r.leaf_data, &r.leaf_hash) {
            ("released", Some(data), None) => match STANDARD.decode(data) {
                Ok(bytes) => (leaf_hash(&bytes), Some(bytes)),
                Err(_) => {
                    fail(format!("{name}: its leaf data is not base64"));
                    continue;
                }
            },
            ("withheld", None, Some(h)) if r.exemption.is_some() => {
                match hex::decode(h)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok())
                {
                    Some(h) => (h, None),
                    None => {
                        fail(format!("{name}: its leaf hash is not 32 bytes of hex"));
                        continue;
                    }
                }
            }
            _ => {
                fail(format!("{name}: neither a released record with its leaf data nor a withheld one with its leaf hash and exemption"));
                continue;
            }
        };
        if data.is_some() {
            released += 1;
        } else {
            withheld += 1;
        }
        let proof: Option<Vec<[u8; 32]>> = r
            .inclusion_proof
            .iter()
            .map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok()))
            .collect();
        match (&checkpoint, proof) {
            (_, None) => fail(format!(
                "{name}: the inclusion proof is not a list of hex hashes"
            )),
            (Some(c), Some(proof)) => {
                if let Err(e) = verify_inclusion(&hash, r.leaf, c.size, &proof, &c.root) {
                    fail(format!("{name}: the inclusion proof does not put this leaf at {} in the checkpoint's tree: {e}", r.leaf));
                }
            }
            (None, Some(_)) => {}
        }
        let Some(data) = data else {
            if !r.openings.is_empty() {
                fail(format!("{name}: withheld in full, yet it opens fields"));
            }
            continue;
        };
        let commitments = match leaf_commitments(&data) {
            Ok(c) => c,
            Err(e) => {
                fail(format!("{name}: {e}"));
                continue;
            }
        };
        let mut seen = BTreeSet::new();
        let mut text = None;
        let mut kind = None;
        let mut sender = None;
        let mut sent_at = None;
        for d in &r.openings {
            if !FIELDS.contains(&d.field.as_str()) || !seen.insert(d.field.clone()) {
                fail(format!(
                    "{name}: field {:?} is unknown or opened twice",
                    d.field
                ));
                continue;
            }
            match commitments.as_ref().map(|c| d.check(c)) {
                Some(Ok(())) => openings += 1,
                Some(Err(e)) => fail(format!("{name}: {}: {e}", d.field)),
                None => fail(format!(
                    "{name}: the leaf has no content commitments to open"
                )),
            }
            match d.field.as_str() {
                "text" => text = Some(d.value.clone()),
                "kind" => kind = Some(d.value.clone()),
                "sender_user" => sender = Some(d.value.clone()),
                "sent_at" => sent_at = d.value.parse::<i64>().ok(),
                _ => {}
            }
        }
        let row = loaded.as_ref().map(|l| l.get(&r.leaf));
        if let Some(None) = row {
            fail(format!("{name}: released, yet not in {LOADFILE}"));
        }
        if let Some(Some(row)) = row {
            // The load file writes a name as a CSV cell (a formula quoted), times to the second.
            if let Some(sender) = sender.filter(|s| crate::tables::cell(s.clone()) != row.sender) {
                fail(format!(
                    "{name}: {LOADFILE} names its sender {:?}, the leaf commits to {sender:?}",
                    row.sender
                ));
            }
            let sent = row.sent.parse::<jiff::Timestamp>().ok();
            if let Some(at) =
                sent_at.filter(|ms| sent.map(|t| t.as_second()) != Some(ms.div_euclid(1000)))
            {
                fail(format!(
                    "{name}: {LOADFILE} says it was sent {:?}, the leaf commits to {at} (Unix ms)",
                    row.sent
                ));
            }
        }
        if let (Some(text), Some("message"), Some(messages)) = (&text, kind.as_deref(), &messages) {
            if messages.get(&r.leaf) != Some(text) {
                fail(format!(
                    "{name}: the RSMF's text of this message is not the text the leaf commits to: the produced text was altered"
                ));
            }
        }
        if let (Some(text), Some(loaded)) = (text, &loaded) {
            let produced = loaded.get(&r.leaf).and_then(|row| row.text_hash.as_ref());
            if produced != Some(&sha256_hex(text.as_bytes())) {
                fail(format!(
                    "{name}: the text {LOADFILE} hashes is not the text the leaf commits to: the produced text was altered"
                ));
            }
        }
    }
    report.records_released = released;
    report.records_withheld = withheld;
    report.openings = openings;
    Ok(report)
}

/// The checkpoint the manifest's proofs are against, if it verifies under `trust`.
fn check_checkpoint(
    manifest: &Manifest,
    trust: &Trust,
) -> Result<(Checkpoint, Vec<String>), String> {
    match trust {
        Trust::RecordsPublic(public) => {
            let signed = manifest
                .binding
                .as_deref()
                .ok_or("the manifest carries no binding of the log to records.pub")?;
            let binding = SignedBinding::parse(signed)
                .and_then(|s| s.verify(public))
                .map_err(|e| e.to_string())?;
            if binding.log_key != manifest.verifier_key {
                return Err("the binding names another log key than the manifest".into());
            }
            let bound = vellum_record::check_checkpoint(&manifest.checkpoint, &binding)
                .map_err(|e| e.to_string())?;
            Ok((bound.checkpoint, bound.cosigners))
        }
        Trust::LogKey(key) => {
            let verifier = NoteVerifier::parse(key).map_err(|e| e.to_string())?;
            let text = NoteVerifier::open(&manifest.checkpoint, &[verifier])
                .map_err(|e| format!("not signed by the given log key: {e}"))?;
            let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
            Ok((checkpoint, vec![]))
        }
    }
}

/// The content commitments a record leaf carries (`None` for a leaf sealed before them).
fn leaf_commitments(data: &[u8]) -> Result<Option<Commitments>, String> {
    let leaf: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("its leaf data is not JSON: {e}"))?;
    if leaf["kind"] != "record" {
        return Err("its leaf is not a record's".into());
    }
    match leaf.get("commitments") {
        None => Ok(None),
        Some(c) => serde_json::from_value(c.clone())
            .map(Some)
            .map_err(|e| format!("its commitments: {e}")),
    }
}

/// Message record leaf to its text as the RSMF produced it (before any edit), if the
/// production has an RSMF file listed in the manifest.
fn read_rsmf_messages(dir: &Path, manifest: &Manifest) -> Option<BTreeMap<u64, String>> {
    let file = manifest.files.iter().find(|f| f.name.ends_with(".rsmf"))?;
    let rsmf = crate::rsmf::read_manifest(&std::fs::read(dir.join(&file.name)).ok()?).ok()?;
    let mut out = BTreeMap::new();
    for event in rsmf["events"].as_array()? {
        if event["type"] != "message" {
            continue;
        }
        let leaf = event["custom"]
            .as_array()
            .and_then(|c| c.iter().find(|p| p["name"] == crate::rsmf::LEAVES_PROPERTY))
            .and_then(|p| p["value"].as_str()?.split(',').next()?.parse::<u64>().ok());
        let original = match event["edits"].as_array().and_then(|e| e.first()) {
            Some(first) => first["previous"].as_str(),
            None => event["body"].as_str(),
        };
        if let (Some(leaf), Some(text)) = (leaf, original) {
            out.insert(leaf, text.to_owned());
        }
    }
    Some(out)
}

/// What the verifier reads of a load file row.
struct LoadRow {
    /// The SHA-256 of its produced text, if the row hashes a text.
    text_hash: Option<String>,
    sender: String,
    sent: String,
}

/// Record leaf to its load file row, if the production has a load file listed in the
/// manifest.
fn read_loadfile(dir: &Path, manifest: &Manifest) -> Option<BTreeMap<u64, LoadRow>> {
    manifest.files.iter().find(|f| f.name == LOADFILE)?;
    let mut reader = csv::Reader::from_path(dir.join(LOADFILE)).ok()?;
    let headers = reader.headers().ok()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (id, of, sha) = (col("RECORD_ID")?, col("HASH_OF")?, col("SHA256")?);
    let (sender, sent) = (col("SENDER")?, col("SENT")?);
    let mut out = BTreeMap::new();
    for row in reader.records().flatten() {
        let Some(leaf) = row.get(id).and_then(|l| l.parse().ok()) else {
            continue;
        };
        let cell = |i: usize| row.get(i).unwrap_or_default().to_owned();
        out.insert(
            leaf,
            LoadRow {
                text_hash: (row.get(of) == Some("text")).then(|| cell(sha)),
                sender: cell(sender),
                sent: cell(sent),
            },
        );
    }
    Some(out)
}

/// Every file an RSMF event lists must be in `rsmf.zip` with the size it declares: a
/// requester's tool would otherwise show an attachment that is not there.
fn check_rsmf_files(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let Some(file) = manifest.files.iter().find(|f| f.name.ends_with(".rsmf")) else {
        return Vec::new();
    };
    let name = &file.name;
    let read = std::fs::read(dir.join(name))
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            Ok((
                crate::rsmf::read_manifest(&bytes)?,
                crate::rsmf::read_zip(&bytes)?,
            ))
        });
    let (rsmf, mut zip) = match read {
        Ok(r) => r,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let mut failures = Vec::new();
    let listed = rsmf["events"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["attachments"].as_array().into_iter().flatten());
    for a in listed {
        let id = a["id"].as_str().unwrap_or_default();
        let declared = a["size"].as_u64();
        match zip.by_name(id) {
            Ok(f) if Some(f.size()) == declared => {}
            Ok(f) => failures.push(format!(
                "{name}: attachment {id:?} is {} bytes in rsmf.zip, the RSMF declares {declared:?}",
                f.size()
            )),
            Err(_) => failures.push(format!("{name}: attachment {id:?} is not in rsmf.zip")),
        }
    }
    failures
}
