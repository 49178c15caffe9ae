//! Offline verification of an archive directory, as an auditor runs it on a copy: needs no
//! key, names every leaf or file that is wrong.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_tlog::{leaf_hash, Checkpoint, Hash, NoteVerifier, RootBuilder};

use crate::files::{checkpoint_files, parse_log, Tail, SLOT_LEN};
use crate::Leaf;

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub leaves: u64,
    pub records: u64,
    pub disposed: u64,
    pub checkpoints: usize,
    /// The newest verified checkpoint's size.
    pub attested: u64,
    /// Leaves after the newest checkpoint: not yet vouched for by any signature.
    pub unattested: u64,
    /// Everything that is wrong, one sentence each. Empty: the archive is intact.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Nothing is wrong with what the files hold. (Leaves after the newest checkpoint are
    /// counted in `unattested`: the archiver checkpoints every second, so a copy may well
    /// end with a few.)
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `dir`. `trusted` is a checkpoint the auditor kept from earlier (signed note); the
/// log must still contain exactly what it attested.
pub fn verify(dir: &Path, trusted: Option<&str>) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut problem = |p: String| report_problem(&mut report.problems, p);
    let vkey = fs::read_to_string(dir.join("log.vkey"))
        .map_err(|e| e.to_string())
        .and_then(|k| {
            // Exactly one key and one newline: every byte of the file is significant.
            let key = k.strip_suffix('\n').ok_or("must end with one newline")?;
            NoteVerifier::parse(key).map_err(|e| e.to_string())
        });
    let verifier = match vkey {
        Ok(v) => Some(v),
        Err(e) => {
            problem(format!("log.vkey: {e}"));
            None
        }
    };

    // log.bin: every entry's stored hash must be its leaf's hash.
    let data = fs::read(dir.join("log.bin")).unwrap_or_else(|e| {
        problem(format!("log.bin: {e}"));
        Vec::new()
    });
    let (entries, partial) = parse_log(&data);
    match partial {
        Tail::Clean => {}
        Tail::Incomplete(at) => problem(format!(
            "log.bin: incomplete entry at byte {at}: the log was truncated or overwritten"
        )),
        Tail::Invalid(at) => problem(format!(
            "log.bin: impossible entry length at byte {at}: the log was overwritten"
        )),
    }
    let mut hashes: Vec<Hash> = Vec::with_capacity(entries.len());
    // Each record's key hash, and the key its entry carries (None: its key is in keys.bin).
    let mut records: BTreeMap<u64, (String, Option<&[u8]>)> = BTreeMap::new();
    let mut disposed: HashSet<u64> = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let hash = leaf_hash(&entry.bytes);
        if hash != entry.stored_hash {
            problem(format!(
                "log.bin: leaf {index} (byte {}) was altered",
                entry.offset
            ));
        }
        match Leaf::from_bytes(&entry.bytes) {
            Ok(Leaf::Record { key_hash, .. }) => {
                records.insert(index as u64, (key_hash, entry.key.as_deref()));
            }
            Ok(_) if entry.key.is_some() => problem(format!(
                "log.bin: leaf {index} carries a key but is not a record"
            )),
            Ok(Leaf::Disposition { record, .. }) => {
                disposed.insert(record);
            }
            Ok(_) => {}
            Err(e) => problem(format!("log.bin: leaf {index} is not a valid leaf ({e})")),
        }
        hashes.push(hash);
    }
    report.leaves = hashes.len() as u64;
    report.records = records.len() as u64;
    report.disposed = disposed.len() as u64;
    for d in &disposed {
        if !records.contains_key(d) {
            problem(format!(
                "log.bin: a disposition names leaf {d}, which is not a record"
            ));
        }
    }

    for (index, (key_hash, key)) in &records {
        if let Some(key) = key {
            if let Some(p) = key_problem(*index, key, key_hash, disposed.contains(index), "log.bin")
            {
                problem(p);
            }
        }
    }
    // keys.bin: one slot per record whose entry carries no key, in order. Archives begun
    // with keys in the records' entries have none.
    let slotted: Vec<(&u64, &String)> = records
        .iter()
        .filter(|(_, (_, key))| key.is_none())
        .map(|(index, (key_hash, _))| (index, key_hash))
        .collect();
    match fs::read(dir.join("keys.bin")) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && slotted.is_empty() => {}
        Err(e) => problem(format!(
            "keys.bin: {e} (it holds the keys of {} records)",
            slotted.len()
        )),
        Ok(keys) => {
            if keys.len() % SLOT_LEN != 0 {
                problem(format!(
                    "keys.bin: {} bytes is not a whole number of key slots",
                    keys.len()
                ));
            }
            let slots: Vec<&[u8]> = keys.chunks_exact(SLOT_LEN).collect();
            if slots.len() != slotted.len() {
                problem(format!(
                    "keys.bin: {} keys for {} records in the log that keep their key there",
                    slots.len(),
                    slotted.len()
                ));
            }
            for (slot, ((index, key_hash), bytes)) in slotted.iter().zip(&slots).enumerate() {
                let owner = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
                if owner != **index {
                    problem(format!("keys.bin: slot {slot} belongs to leaf {owner}, the log's record there is leaf {index} (a record was removed or reordered)"));
                } else {
                    let disposed = disposed.contains(*index);
                    if let Some(p) =
                        key_problem(**index, &bytes[8..], key_hash, disposed, "keys.bin")
                    {
                        problem(p);
                    }
                }
            }
        }
    }

    // Checkpoints: each must verify, fit the log, and match the recomputed root at its size.
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut sizes = Vec::new();
    let mut notes: Vec<(String, String)> = match checkpoint_files(dir) {
        Ok(files) => files
            .into_iter()
            .filter_map(|(name, path)| match fs::read_to_string(&path) {
                Ok(note) => Some((format!("checkpoints/{name}"), note)),
                Err(e) => {
                    problem(format!("checkpoints/{name}: {e}"));
                    None
                }
            })
            .collect(),
        Err(e) => {
            problem(format!("checkpoints: {e}"));
            Vec::new()
        }
    };
    if let Some(note) = trusted {
        notes.push(("the trusted checkpoint".into(), note.to_owned()));
    }
    let mut checked = Vec::new();
    for (name, note) in &notes {
        let Some(verifier) = &verifier else { break };
        let checkpoint = match NoteVerifier::open(note, std::slice::from_ref(verifier))
            .map_err(|e| e.to_string())
            .and_then(|text| Checkpoint::parse(text).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                problem(format!("{name}: {e}"));
                continue;
            }
        };
        if checkpoint.origin != verifier.name() {
            problem(format!(
                "{name}: is a checkpoint of another log ({:?})",
                checkpoint.origin
            ));
            continue;
        }
        if name.starts_with("checkpoints/")
            && *name != format!("checkpoints/{:020}", checkpoint.size)
        {
            problem(format!(
                "{name}: holds the checkpoint of size {}",
                checkpoint.size
            ));
        }
        if checkpoint.size > report.leaves {
            problem(format!("{name}: attests {} leaves, the log holds {}: the log was truncated or leaves removed", checkpoint.size, report.leaves));
            continue;
        }
        sizes.push(checkpoint.size);
        checked.push((name.clone(), checkpoint));
    }
    sizes.sort_unstable();
    let mut builder = RootBuilder::new();
    let mut wanted = sizes.iter().peekable();
    while let Some(&&size) = wanted.peek() {
        if builder.size() == size {
            roots.insert(size, builder.root());
            wanted.next();
        } else {
            builder.push(hashes[builder.size() as usize]);
        }
    }
    for (name, checkpoint) in &checked {
        if roots[&checkpoint.size] != checkpoint.root {
            problem(format!("{name}: the log's first {} leaves no longer hash to its root: a leaf was altered, removed or reordered", checkpoint.size));
        } else {
            report.attested = report.attested.max(checkpoint.size);
        }
    }
    report.checkpoints = checked.len();
    report.unattested = report.leaves - report.attested.min(report.leaves);
    report
}

/// The witnesses' check: the newest checkpoint file must carry a valid cosignature from each
/// of `witnesses`. One sentence per witness that did not cosign it (empty: all did). The
/// checkpoint's own signature and contents are [`verify`]'s to check.
pub fn witnessed(dir: &Path, witnesses: &[CosignatureVerifier]) -> Vec<String> {
    if witnesses.is_empty() {
        return Vec::new();
    }
    let newest = match crate::files::latest_checkpoint(dir) {
        Ok(Some((size, note))) => (size, note),
        Ok(None) => {
            return witnesses
                .iter()
                .map(|w| format!("witness {}: there is no checkpoint to cosign", w.name()))
                .collect()
        }
        Err(e) => return vec![format!("checkpoints: {e}")],
    };
    let (size, note) = newest;
    witnesses
        .iter()
        .filter_map(|w| match w.verify(&note) {
            Ok(_) => None,
            Err(e) => Some(format!(
                "witness {} (key id {:08x}): the newest checkpoint (size {size}) carries no valid cosignature of its key ({e})",
                w.name(),
                w.key_id()
            )),
        })
        .collect()
}

/// What is wrong with record leaf `index`'s sealed `key`, kept in `file`: a destroyed key
/// needs a disposition, and any other key must be the one the leaf's `key_hash` names.
fn key_problem(
    index: u64,
    key: &[u8],
    key_hash: &str,
    disposed: bool,
    file: &str,
) -> Option<String> {
    let destroyed = key.iter().all(|b| *b == 0);
    if destroyed && !disposed {
        Some(format!(
            "{file}: the key of record leaf {index} was destroyed without a disposition"
        ))
    } else if !destroyed && disposed {
        Some(format!(
            "{file}: record leaf {index} was disposed but its key still exists"
        ))
    } else if !destroyed && hex::encode(Sha256::digest(key)) != key_hash {
        Some(format!(
            "{file}: the key of record leaf {index} was altered"
        ))
    } else {
        None
    }
}

fn report_problem(problems: &mut Vec<String>, problem: String) {
    // Bound the report: one damaged byte can make every later leaf look wrong.
    if problems.len() < 1000 {
        problems.push(problem);
    }
}
