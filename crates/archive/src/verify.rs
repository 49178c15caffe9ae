//! Offline verification of an archive directory, as an auditor runs it on a copy: needs no
//! key, names every leaf or file that is wrong.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};
use vellum_records::{ArchiverBinding, RecordsPublic, SignedBinding};
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

/// A log key whose checkpoints count, and the largest tree size it may attest: a key the
/// log moved on from (a transition) signs nothing after it.
#[derive(Debug, Clone)]
pub(crate) struct LogKey {
    verifier: NoteVerifier,
    up_to: Option<u64>,
}

/// The keys the archive itself names: `log.vkey` and the keys it moved on from
/// (`transitions.json`). What the archiver checks its own directory against at open;
/// an auditor trusts only [`audit`], which takes the keys from the custodians' bindings.
fn own_keys(dir: &Path) -> Result<Vec<LogKey>, String> {
    let key = fs::read_to_string(dir.join("log.vkey"))
        .map_err(|e| e.to_string())
        .and_then(|k| {
            // Exactly one key and one newline: every byte of the file is significant.
            let key = k.strip_suffix('\n').ok_or("must end with one newline")?;
            NoteVerifier::parse(key).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("log.vkey: {e}"))?;
    let mut keys = vec![LogKey {
        verifier: key,
        up_to: None,
    }];
    for previous in crate::files::transitions(dir).map_err(|e| e.to_string())? {
        let verifier =
            NoteVerifier::parse(&previous.log_key).map_err(|e| format!("transitions.json: {e}"))?;
        keys.push(LogKey {
            verifier,
            up_to: Some(previous.size),
        });
    }
    Ok(keys)
}

/// Verifies `dir` against the keys it names itself ([`own_keys`]). `trusted` is a
/// checkpoint kept from earlier (signed note); the log must still contain exactly what it
/// attested.
pub fn verify(dir: &Path, trusted: Option<&str>) -> VerifyReport {
    let kept: Vec<(String, String)> = trusted
        .map(|note| ("the trusted checkpoint".to_owned(), note.to_owned()))
        .into_iter()
        .collect();
    check(dir, own_keys(dir), &kept)
}

/// Verifies every leaf, key slot and checkpoint of `dir`, and each of the `kept`
/// checkpoints (name, note), against `keys`.
fn check(dir: &Path, keys: Result<Vec<LogKey>, String>, kept: &[(String, String)]) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut problem = |p: String| report_problem(&mut report.problems, p);
    let keys = match keys {
        Ok(keys) => Some(keys),
        Err(e) => {
            problem(e);
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
    notes.extend(kept.iter().cloned());
    let mut checked = Vec::new();
    for (name, note) in &notes {
        let Some(keys) = &keys else { break };
        // The first key whose signature opens it: its name must be the checkpoint's origin.
        let opened = keys.iter().find_map(|key| {
            let text = NoteVerifier::open(note, std::slice::from_ref(&key.verifier)).ok()?;
            Some((key, text))
        });
        let Some((key, text)) = opened else {
            let why = match keys.as_slice() {
                [only] => NoteVerifier::open(note, std::slice::from_ref(&only.verifier))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                _ => "not signed by any of the log's keys".to_owned(),
            };
            problem(format!("{name}: {why}"));
            continue;
        };
        let checkpoint = match Checkpoint::parse(text) {
            Ok(c) => c,
            Err(e) => {
                problem(format!("{name}: {e}"));
                continue;
            }
        };
        if checkpoint.origin != key.verifier.name() {
            problem(format!(
                "{name}: is a checkpoint of another log ({:?})",
                checkpoint.origin
            ));
            continue;
        }
        if key.up_to.is_some_and(|limit| checkpoint.size > limit) {
            problem(format!(
                "{name}: signed with the key of {:?}, which the log left at size {}, yet attests {}",
                key.verifier.name(),
                key.up_to.unwrap_or_default(),
                checkpoint.size
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

/// What an auditor concludes about an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every file verifies against the bound keys, and the newest checkpoint is witnessed as
    /// the binding (and the auditor) require.
    Intact,
    /// Something is wrong: the problems say what.
    Failed,
    /// Nothing is wrong with the files, but no checkpoint vouches for them.
    Unattested,
    /// Intact and attested, but the newest checkpoint lacks the cosignatures required.
    Unwitnessed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Intact => "intact",
            Verdict::Failed => "failed",
            Verdict::Unattested => "unattested",
            Verdict::Unwitnessed => "unwitnessed",
        }
    }
}

/// [`audit`]'s findings.
#[derive(Debug)]
pub struct Audit {
    pub report: VerifyReport,
    /// The bindings that verified against `records.pub`, oldest first.
    pub bindings: Vec<ArchiverBinding>,
    /// The log keys the bindings name: `(verifier key, largest size it attests)`.
    pub log_keys: Vec<(String, Option<u64>)>,
    /// The witnesses whose valid cosignature the newest checkpoint carries.
    pub cosigned_by: Vec<String>,
    /// Why the newest checkpoint does not count as witnessed (empty: it does).
    pub unwitnessed: Vec<String>,
}

impl Audit {
    pub fn verdict(&self) -> Verdict {
        if !self.report.problems.is_empty() {
            Verdict::Failed
        } else if self.report.checkpoints == 0 {
            Verdict::Unattested
        } else if !self.unwitnessed.is_empty() {
            Verdict::Unwitnessed
        } else {
            Verdict::Intact
        }
    }
}

/// The auditor's check of an archive directory, trusting nothing it holds but what the
/// custodians signed: the log keys are those the bindings in `bindings/` name, each
/// verified against `public` (the pinned `records.pub`), with the keys a binding says the
/// log continues (`previous`) up to the size it left them at. Every `kept` checkpoint (notes
/// an auditor or a witness kept from earlier) must still be contained in the log, which
/// catches a rollback to a shorter prefix. The newest checkpoint must carry cosignatures of a
/// quorum of the newest binding's witnesses, and of every witness in `required`.
pub fn audit(
    dir: &Path,
    public: &RecordsPublic,
    kept: &[String],
    required: &[CosignatureVerifier],
) -> Audit {
    let mut problems = Vec::new();
    let mut bindings: Vec<ArchiverBinding> = Vec::new();
    match crate::files::binding_files(dir) {
        Err(e) => problems.push(format!("bindings: {e}")),
        Ok(files) => {
            for (name, text) in files {
                match SignedBinding::parse(&text).and_then(|b| b.verify(public)) {
                    Ok(b) if format!("{:020}.json", b.serial) == name => bindings.push(b),
                    Ok(b) => problems.push(format!(
                        "bindings/{name}: holds the binding of serial {}",
                        b.serial
                    )),
                    Err(e) => problems.push(format!("bindings/{name}: {e}")),
                }
            }
        }
    }
    bindings.sort_by_key(|b| b.serial);
    let mut log_keys: Vec<(String, Option<u64>)> = Vec::new();
    let mut bound = |key: &str, up_to: Option<u64>| {
        match log_keys.iter_mut().find(|(k, _)| k == key) {
            // A key some binding says the log moved on from attests no more than that.
            Some((_, limit)) => {
                *limit = match (*limit, up_to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            None => log_keys.push((key.to_owned(), up_to)),
        }
    };
    for b in &bindings {
        bound(&b.log_key, None);
        if let Some(p) = &b.previous {
            bound(&p.log_key, Some(p.size));
        }
    }
    let keys = if bindings.is_empty() {
        Err(match public.version {
            1 => "records.pub is version 1, which binds no log key: give the version 2 records.pub the archiver wrote (DATA/records.pub) at the first unseal after its upgrade".to_owned(),
            _ => "no binding in bindings/ verifies against this records.pub: no log key is bound, so no checkpoint can be trusted".to_owned(),
        })
    } else {
        log_keys
            .iter()
            .map(|(key, up_to)| {
                NoteVerifier::parse(key)
                    .map(|verifier| LogKey {
                        verifier,
                        up_to: *up_to,
                    })
                    .map_err(|e| format!("a bound log key: {e}"))
            })
            .collect()
    };
    let kept: Vec<(String, String)> = kept
        .iter()
        .enumerate()
        .map(|(i, note)| (format!("kept checkpoint {}", i + 1), note.clone()))
        .collect();
    let mut report = check(dir, keys, &kept);
    for p in problems {
        report_problem(&mut report.problems, p);
    }
    let mut unwitnessed = witnessed(dir, required);
    let mut cosigned_by: Vec<String> = Vec::new();
    if let Ok(Some((size, note))) = crate::files::latest_checkpoint(dir) {
        let bound_witnesses = bindings
            .last()
            .map(|b| b.witness_verifiers())
            .unwrap_or_default();
        for w in bound_witnesses.iter().chain(required) {
            if w.verify(&note).is_ok() && !cosigned_by.iter().any(|c| c == w.name()) {
                cosigned_by.push(w.name().to_owned());
            }
        }
        if let Some(newest) = bindings.last() {
            let quorum = bound_witnesses
                .iter()
                .filter(|w| cosigned_by.iter().any(|c| c == w.name()))
                .count();
            if (quorum as u32) < newest.witness_quorum {
                let names: Vec<&str> = bound_witnesses.iter().map(|w| w.name()).collect();
                unwitnessed.push(format!(
                    "the newest checkpoint (size {size}) carries {quorum} of the {} cosignatures the binding requires of its witnesses ({})",
                    newest.witness_quorum,
                    names.join(", ")
                ));
            }
        }
    }
    Audit {
        report,
        bindings,
        log_keys,
        cosigned_by,
        unwitnessed,
    }
}

fn report_problem(problems: &mut Vec<String>, problem: String) {
    // Bound the report: one damaged byte can make every later leaf look wrong.
    if problems.len() < 1000 {
        problems.push(problem);
    }
}
