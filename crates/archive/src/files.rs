use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};
use vellum_records::{PreviousLog, SealedRecord, SignedBinding, SEALED_KEY_LEN};
use vellum_tlog::{leaf_hash, Checkpoint, Hash, NoteSigner, NoteVerifier};

use crate::{Error, Leaf};

/// A keys.bin slot: `[u64 leaf index][sealed key]`.
pub(crate) const SLOT_LEN: usize = 8 + SEALED_KEY_LEN;
/// A log.bin entry's length word and leaf hash.
pub(crate) const ENTRY_HEADER: usize = 4 + 32;
/// Set in a record entry's length word: its sealed content key follows the leaf hash. No
/// length can have it (leaves are at most [`MAX_LEAF_BYTES`]), so an older reader refuses
/// such an entry as damage instead of misreading it.
const WITH_KEY: u32 = 1 << 31;
/// Where the sealed key of a keyed entry starts; its leaf follows at `KEYED_HEADER`.
pub(crate) const KEYED_HEADER: usize = ENTRY_HEADER + SEALED_KEY_LEN;
/// No single leaf may be larger than this (a record is at most a message and its metadata).
pub(crate) const MAX_LEAF_BYTES: usize = 1 << 20;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Injected write failures, for tests of the archiver on a full disk. While armed, each
/// archive write (a record or other leaf, a key's destruction, a checkpoint) fails with "no
/// space left on device" after writing half its bytes, as a disk that fills mid-write does.
/// It also counts the fsyncs of log.bin and keys.bin, so tests can hold an append to its
/// cost. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    skip: AtomicU32,
    fail: AtomicU32,
    syncs: AtomicU64,
}

impl Faults {
    /// Makes the next `n` archive writes fail.
    pub fn fail_next(&self, n: u32) {
        self.fail_after(0, n);
    }

    /// Lets `skip` writes succeed, then makes `n` fail.
    pub fn fail_after(&self, skip: u32, n: u32) {
        self.0.skip.store(skip, Ordering::SeqCst);
        self.0.fail.store(n, Ordering::SeqCst);
    }

    /// How many times the archive has made a write to log.bin or keys.bin durable.
    pub fn syncs(&self) -> u64 {
        self.0.syncs.load(Ordering::SeqCst)
    }

    /// Whether this write is to fail.
    fn fire(&self) -> bool {
        let take = |c: &AtomicU32| {
            c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        if self.0.fail.load(Ordering::SeqCst) == 0 || take(&self.0.skip) {
            return false;
        }
        take(&self.0.fail)
    }

    /// `file.sync_data()`, counted.
    fn sync(&self, file: &File) -> std::io::Result<()> {
        file.sync_data()?;
        self.0.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn full() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    }

    /// `file.write_all_at(bytes, offset)`, or half of it and a full disk.
    fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        if self.fire() {
            file.write_all_at(&bytes[..bytes.len() / 2], offset)?;
            return Err(Self::full());
        }
        file.write_all_at(bytes, offset)
    }
}

/// The temporary name `write_atomic` uses for `path`: hidden, in the same directory (a
/// rename is atomic only within one file system).
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` with `contents` all at once: written to a temporary file, fsynced,
/// renamed over `path`, and the directory fsynced. A crash or a full disk leaves either the
/// old file or the new one, never an empty or half-written one. `mode` applies to a new file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = temporary(path);
    // A leftover of an interrupted write goes first: created afresh, it gets `mode`.
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Removes what an interrupted `write_atomic` left in `dir` (its target is untouched).
pub fn remove_temporaries(dir: &Path) -> Result<(), Error> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// One parsed entry of log.bin.
pub(crate) struct Entry {
    pub offset: u64,
    pub stored_hash: Hash,
    /// The sealed content key a keyed record entry carries (zeros once disposed).
    pub key: Option<Vec<u8>>,
    pub bytes: Vec<u8>,
}

impl Entry {
    /// Its length in log.bin.
    pub fn len(&self) -> u64 {
        let header = if self.key.is_some() {
            KEYED_HEADER
        } else {
            ENTRY_HEADER
        };
        (header + self.bytes.len()) as u64
    }
}

/// How log.bin ends after its last whole entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    Clean,
    /// An entry cut short at the end of the file: what a crash mid-append leaves.
    Incomplete(u64),
    /// A length no entry can have: damage, never a crash.
    Invalid(u64),
}

/// One entry of log.bin: `[u32 big-endian length][32-byte RFC 6962 leaf hash][leaf JSON]`.
pub fn encode_entry(leaf: &Leaf) -> Result<Vec<u8>, Error> {
    encode(leaf, None)
}

/// A record's entry, which carries its sealed content key so that one write and one fsync
/// make the record durable: `[u32 big-endian 0x80000000 | length][32-byte leaf hash][64-byte
/// sealed key][leaf JSON]`. The leaf hash covers the JSON only; the JSON's `key_hash` commits
/// to the key, which disposition overwrites with zeros in place.
pub fn encode_record_entry(leaf: &Leaf, sealed_key: &[u8]) -> Result<Vec<u8>, Error> {
    if !matches!(leaf, Leaf::Record { .. }) {
        return Err(Error::Invalid("only a record leaf carries a key".into()));
    }
    if sealed_key.len() != SEALED_KEY_LEN {
        return Err(Error::Invalid("sealed key has the wrong length".into()));
    }
    encode(leaf, Some(sealed_key))
}

pub(crate) fn encode(leaf: &Leaf, key: Option<&[u8]>) -> Result<Vec<u8>, Error> {
    let bytes = leaf.to_bytes();
    if bytes.len() > MAX_LEAF_BYTES {
        return Err(Error::Invalid(format!(
            "a leaf of {} bytes is over the {MAX_LEAF_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let flag = if key.is_some() { WITH_KEY } else { 0 };
    let mut entry = Vec::with_capacity(KEYED_HEADER + bytes.len());
    entry.extend_from_slice(&(flag | bytes.len() as u32).to_be_bytes());
    entry.extend_from_slice(&leaf_hash(&bytes));
    entry.extend_from_slice(key.unwrap_or_default());
    entry.extend_from_slice(&bytes);
    Ok(entry)
}

/// An entry's leaf length and header length, from its length word.
fn layout(word: [u8; 4]) -> (usize, usize) {
    let word = u32::from_be_bytes(word);
    match word & WITH_KEY {
        0 => (word as usize, ENTRY_HEADER),
        _ => ((word & !WITH_KEY) as usize, KEYED_HEADER),
    }
}

/// The file holding the key at `at`, the key's offset in it, and the file's path.
fn key_file<'a>(
    dir: &Path,
    log: &'a File,
    keys: Option<&'a File>,
    at: KeyAt,
) -> Result<(&'a File, u64, PathBuf), Error> {
    match (at, keys) {
        (KeyAt::Log(offset), _) => Ok((log, offset, dir.join("log.bin"))),
        (KeyAt::Keys(offset), Some(keys)) => Ok((keys, offset, dir.join("keys.bin"))),
        (KeyAt::Keys(_), None) => Err(Error::Damaged("keys.bin is missing".into())),
    }
}

/// Splits log.bin into entries and says how it ends.
pub(crate) fn parse_log(data: &[u8]) -> (Vec<Entry>, Tail) {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < ENTRY_HEADER {
            return (entries, Tail::Incomplete(at as u64));
        }
        let (len, header) = layout(rest[..4].try_into().expect("4 bytes"));
        if len > MAX_LEAF_BYTES {
            return (entries, Tail::Invalid(at as u64));
        }
        if rest.len() < header + len {
            return (entries, Tail::Incomplete(at as u64));
        }
        let entry = Entry {
            offset: at as u64,
            stored_hash: rest[4..ENTRY_HEADER].try_into().expect("32 bytes"),
            key: (header == KEYED_HEADER).then(|| rest[ENTRY_HEADER..header].to_vec()),
            bytes: rest[header..header + len].to_vec(),
        };
        at += entry.len() as usize;
        entries.push(entry);
    }
    (entries, Tail::Clean)
}

pub(crate) fn checkpoint_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut out = Vec::new();
    let cps = dir.join("checkpoints");
    if !cps.exists() {
        return Ok(out);
    }
    for entry in fs::read_dir(&cps).map_err(io(&cps))? {
        let entry = entry.map_err(io(&cps))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue; // a temporary file of an interrupted write, removed at open
        }
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// The keys the log moved on from (`transitions.json`), oldest first.
pub(crate) fn transitions(dir: &Path) -> Result<Vec<PreviousLog>, Error> {
    let path = dir.join(TRANSITIONS);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Damaged(format!("{TRANSITIONS}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(&path)(e)),
    }
}

const TRANSITIONS: &str = "transitions.json";
const BINDINGS: &str = "bindings";

/// The files of `bindings/`: (file name, text), by name (so by serial).
pub(crate) fn binding_files(dir: &Path) -> Result<Vec<(String, String)>, Error> {
    let bindings = dir.join(BINDINGS);
    let entries = match fs::read_dir(&bindings) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&bindings)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&bindings))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temporary file of an interrupted write, removed at open
        }
        let text = fs::read_to_string(entry.path()).map_err(io(&entry.path()))?;
        out.push((name, text));
    }
    out.sort();
    Ok(out)
}

/// Removes empty checkpoint files: what a full disk left under the earlier, non-atomic
/// writer. An empty file attests nothing (it carries no signature), so nothing is lost.
fn remove_empty_checkpoints(dir: &Path) -> Result<(), Error> {
    for (_, path) in checkpoint_files(dir)? {
        if fs::metadata(&path).map_err(io(&path))?.len() == 0 {
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

pub(crate) fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, String)>, Error> {
    let Some((name, path)) = checkpoint_files(dir)?.pop() else {
        return Ok(None);
    };
    let size = name
        .parse()
        .map_err(|_| Error::Damaged(format!("checkpoint file {name}")))?;
    Ok(Some((size, fs::read_to_string(&path).map_err(io(&path))?)))
}

/// Opens keys.bin, if the archive has one: archives written before record entries carried
/// their keys keep the keys of those records there. Checks that its slots belong to
/// `record_leaves` (the records whose entries carry no key) in order, and trims a slot that
/// the earlier writer wrote for a leaf a crash cut off.
fn load_keys(dir: &Path, record_leaves: &[u64], size: u64) -> Result<Option<File>, Error> {
    let path = dir.join("keys.bin");
    let opened = OpenOptions::new().read(true).write(true).open(&path);
    let mut keys = match opened {
        Ok(keys) => keys,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && record_leaves.is_empty() => {
            return Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Damaged(format!(
                "keys.bin is missing; it holds the keys of {} records",
                record_leaves.len()
            )))
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let mut data = Vec::new();
    keys.read_to_end(&mut data).map_err(io(&path))?;
    let mut kept = 0;
    for (slot, chunk) in data.chunks_exact(SLOT_LEN).enumerate() {
        let index = u64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"));
        if slot >= record_leaves.len() && index >= size {
            break;
        }
        if record_leaves.get(slot) != Some(&index) {
            return Err(Error::Damaged(format!(
                "keys.bin slot {slot} belongs to leaf {index}"
            )));
        }
        kept += 1;
    }
    if kept != record_leaves.len() {
        return Err(Error::Damaged(format!(
            "keys.bin holds {kept} keys for {} records",
            record_leaves.len()
        )));
    }
    let keep_len = (kept * SLOT_LEN) as u64;
    if keep_len != data.len() as u64 {
        keys.set_len(keep_len).map_err(io(&path))?;
        keys.sync_all().map_err(io(&path))?;
    }
    Ok(Some(keys))
}

/// Where a record's sealed content key lies: the byte offset of its 64 bytes.
#[derive(Debug, Clone, Copy)]
enum KeyAt {
    /// In the record's own entry in log.bin.
    Log(u64),
    /// In its slot in keys.bin (records appended before entries carried their keys).
    Keys(u64),
}

pub struct Archive {
    dir: PathBuf,
    log: File,
    /// The keys.bin of an archive begun before record entries carried their keys; appends
    /// never write to it, dispositions of its records overwrite their keys in it.
    keys: Option<File>,
    signer: NoteSigner,
    pub(crate) leaf_hashes: Vec<Hash>,
    offsets: Vec<u64>,
    log_len: u64,
    /// Record leaves, in log order.
    record_leaves: Vec<u64>,
    key_at: HashMap<u64, KeyAt>,
    references: HashMap<String, u64>,
    disposed: HashSet<u64>,
    checkpointed: u64,
    faults: Faults,
    /// A failed append whose rollback (truncation) failed too: finish it before writing.
    untrimmed: bool,
    /// Hashes of levels 1 and up, for tiles and proofs (see tiles.rs); caught up on read.
    pub(crate) tiles: std::sync::Mutex<vellum_tlog::tiles::TileIndex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    /// False when the record was already in the log (a re-delivered event).
    pub new: bool,
}

impl Archive {
    /// Opens the archive in `dir` to continue it under `signer`'s key when its checkpoints
    /// so far were signed with another one (a new origin, or a restored archive whose log key
    /// stayed on the dead host). The old key, its origin and the size its checkpoints reached
    /// are recorded in `transitions.json` first, so the old checkpoints still verify, and no
    /// checkpoint of the old key may attest more. Returns the transition made now, if any.
    pub fn open_continuing(
        dir: &Path,
        signer: NoteSigner,
    ) -> Result<(Self, Option<PreviousLog>), Error> {
        let vkey_path = dir.join("log.vkey");
        let new_key = format!("{}\n", signer.verifier_key());
        let mut made = None;
        match fs::read_to_string(&vkey_path) {
            Ok(existing) if existing != new_key => {
                let old = NoteVerifier::parse(existing.trim_end())
                    .map_err(|e| Error::Damaged(format!("log.vkey: {e}")))?;
                let size = latest_checkpoint(dir)?.map_or(0, |(size, _)| size);
                let previous = PreviousLog {
                    origin: old.name().to_owned(),
                    log_key: existing.trim_end().to_owned(),
                    size,
                };
                let mut all = transitions(dir)?;
                // Written before log.vkey changes: a crash in between repeats this, once.
                if all.last() != Some(&previous) {
                    all.push(previous.clone());
                    let json = serde_json::to_vec_pretty(&all).expect("transitions serialise");
                    write_atomic(&dir.join(TRANSITIONS), &json, 0o644)?;
                }
                write_atomic(&vkey_path, new_key.as_bytes(), 0o644)?;
                made = Some(previous);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&vkey_path)(e)),
        }
        Ok((Self::open(dir, signer)?, made))
    }

    /// The keys this log moved on from, oldest first (see [`Archive::open_continuing`]).
    pub fn transitions(&self) -> Result<Vec<PreviousLog>, Error> {
        transitions(&self.dir)
    }

    /// Keeps a binding of the custodians with the archive (`bindings/<serial>.json`), where
    /// auditors find the log keys they may trust.
    pub fn save_binding(&self, serial: u64, binding: &SignedBinding) -> Result<(), Error> {
        let dir = self.dir.join(BINDINGS);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{serial:020}.json"));
        if self.faults.fire() {
            return Err(io(&path)(Faults::full()));
        }
        write_atomic(&path, binding.to_json().as_bytes(), 0o644)
    }

    /// The texts of the bindings kept with the archive, by serial.
    pub fn binding_texts(&self) -> Result<Vec<String>, Error> {
        Ok(binding_files(&self.dir)?
            .into_iter()
            .map(|(_, text)| text)
            .collect())
    }

    /// Opens (creating) the archive in `dir`, signing checkpoints with `signer`. Refuses a log
    /// that an existing checkpoint contradicts, or whose checkpoints another key signed;
    /// trims only an unacknowledged tail.
    pub fn open(dir: &Path, signer: NoteSigner) -> Result<Self, Error> {
        fs::create_dir_all(dir.join("checkpoints")).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        remove_temporaries(dir)?;
        remove_temporaries(&dir.join("checkpoints"))?;
        remove_temporaries(&dir.join(BINDINGS))?;
        remove_empty_checkpoints(dir)?;
        let vkey_path = dir.join("log.vkey");
        let vkey = signer.verifier_key();
        match fs::read_to_string(&vkey_path) {
            Ok(existing) if existing == format!("{vkey}\n") => {}
            Ok(_) => {
                return Err(Error::Invalid(
                    "this archive was signed by another log key".into(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomic(&vkey_path, format!("{vkey}\n").as_bytes(), 0o644)?
            }
            Err(e) => return Err(io(&vkey_path)(e)),
        }
        let log_path = dir.join("log.bin");
        // Written at explicit offsets (not O_APPEND), so a failed append's leftovers are
        // overwritten by the next one even if truncating them failed.
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let mut data = Vec::new();
        log.read_to_end(&mut data).map_err(io(&log_path))?;
        let (entries, partial) = parse_log(&data);
        let mut leaf_hashes = Vec::with_capacity(entries.len());
        let mut offsets = Vec::with_capacity(entries.len());
        let mut references = HashMap::new();
        let mut disposed = HashSet::new();
        let mut record_leaves = Vec::new();
        let mut key_at = HashMap::new();
        // Records whose entries carry no key: their keys are in keys.bin, slot by slot.
        let mut slotted = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let hash = leaf_hash(&entry.bytes);
            if hash != entry.stored_hash {
                return Err(Error::Damaged(format!("leaf {index} was altered")));
            }
            let leaf = Leaf::from_bytes(&entry.bytes)
                .map_err(|e| Error::Damaged(format!("leaf {index}: {e}")))?;
            let index = index as u64;
            match (leaf, entry.key.is_some()) {
                (Leaf::Record { reference, .. }, keyed) => {
                    references.insert(reference, index);
                    record_leaves.push(index);
                    if keyed {
                        key_at.insert(index, KeyAt::Log(entry.offset + ENTRY_HEADER as u64));
                    } else {
                        key_at.insert(
                            index,
                            KeyAt::Keys(slotted.len() as u64 * SLOT_LEN as u64 + 8),
                        );
                        slotted.push(index);
                    }
                }
                (_, true) => {
                    return Err(Error::Damaged(format!(
                        "leaf {index} carries a key but is not a record"
                    )))
                }
                (Leaf::Disposition { record, .. }, false) => {
                    disposed.insert(record);
                }
                _ => {}
            }
            leaf_hashes.push(hash);
            offsets.push(entry.offset);
        }
        let size = leaf_hashes.len() as u64;
        let checkpointed = match latest_checkpoint(dir)? {
            Some((cp, _)) if cp > size => {
                return Err(Error::Damaged(format!(
                    "checkpoint {cp} attests more leaves than the log holds ({size})"
                )))
            }
            Some((cp, _)) => cp,
            None => 0,
        };
        let mut log_len = data.len() as u64;
        match partial {
            Tail::Clean => {}
            Tail::Invalid(at) => {
                return Err(Error::Damaged(format!(
                    "log.bin: impossible entry length at byte {at}"
                )))
            }
            // An entry cut short after every attested leaf is what a crash mid-append
            // leaves; it was never acknowledged. (Damage inside attested leaves was refused
            // above, before any file changed.)
            Tail::Incomplete(at) => {
                log.set_len(at).map_err(io(&log_path))?;
                log.sync_all().map_err(io(&log_path))?;
                log_len = at;
            }
        }
        let keys = load_keys(dir, &slotted, size)?;
        // Finish a disposition a crash interrupted: its leaf is written before the key goes.
        for index in &disposed {
            let at = *key_at.get(index).ok_or_else(|| {
                Error::Damaged(format!("a disposition names leaf {index}, not a record"))
            })?;
            let (file, offset, path) = key_file(dir, &log, keys.as_ref(), at)?;
            let mut key = vec![0u8; SEALED_KEY_LEN];
            file.read_exact_at(&mut key, offset).map_err(io(&path))?;
            if key.iter().any(|b| *b != 0) {
                file.write_all_at(&[0u8; SEALED_KEY_LEN], offset)
                    .map_err(io(&path))?;
                file.sync_data().map_err(io(&path))?;
            }
        }
        // The archiver never signs over what it cannot vouch for: every leaf, key and
        // checkpoint must verify before it appends anything.
        let report = crate::verify(dir, None);
        if let Some(problem) = report.problems.first() {
            return Err(Error::Damaged(problem.clone()));
        }
        Ok(Self {
            dir: dir.to_owned(),
            log,
            keys,
            signer,
            leaf_hashes,
            offsets,
            log_len,
            record_leaves,
            key_at,
            references,
            disposed,
            checkpointed,
            faults: Faults::default(),
            untrimmed: false,
            tiles: Default::default(),
        })
    }

    /// The handle tests use to make this archive's next writes fail (see [`Faults`]).
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    pub fn size(&self) -> u64 {
        self.leaf_hashes.len() as u64
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verifier key string of this archive's checkpoints.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Before a write: the truncation a failed rollback owes.
    fn ready_to_write(&mut self) -> Result<(), Error> {
        if self.untrimmed {
            self.rollback()?;
        }
        Ok(())
    }

    /// Cuts log.bin back to its last good length after a failed append, so that a retry
    /// appends once. Remembered if it fails itself (the disk may be that bad).
    fn rollback(&mut self) -> Result<(), Error> {
        let log_path = self.dir.join("log.bin");
        let done = self.log.set_len(self.log_len).map_err(io(&log_path));
        self.untrimmed = done.is_err();
        done
    }

    /// Writes `entry` after the last good one and fsyncs it: one write, one fsync.
    fn write_entry_bytes(&mut self, entry: &[u8]) -> Result<(), Error> {
        let path = self.dir.join("log.bin");
        self.faults
            .write_at(&self.log, entry, self.log_len)
            .and_then(|_| self.faults.sync(&self.log))
            .map_err(io(&path))
    }

    fn push_leaf(&mut self, entry: &[u8]) -> u64 {
        let hash: Hash = entry[4..ENTRY_HEADER].try_into().expect("32 bytes");
        let index = self.size();
        self.offsets.push(self.log_len);
        self.log_len += entry.len() as u64;
        self.leaf_hashes.push(hash);
        index
    }

    /// Appends `entry` durably; on failure log.bin is cut back to where it was.
    fn write_entry(&mut self, entry: &[u8]) -> Result<u64, Error> {
        self.ready_to_write()?;
        if let Err(e) = self.write_entry_bytes(entry) {
            // A partial entry must not stay in front of the next one.
            let _ = self.rollback();
            return Err(e);
        }
        Ok(self.push_leaf(entry))
    }

    /// Appends a sealed record once per `reference`, with its content commitments, its sealed
    /// key in its entry; durable (one fsync) when this returns. On an error nothing was
    /// appended: log.bin is as it was, and a retry appends the record once.
    pub fn append_record(
        &mut self,
        reference: &str,
        time: i64,
        record: &SealedRecord,
        commitments: Option<std::collections::BTreeMap<String, String>>,
    ) -> Result<Appended, Error> {
        if let Some(&index) = self.references.get(reference) {
            return Ok(Appended { index, new: false });
        }
        if record.sealed_key.len() != SEALED_KEY_LEN {
            return Err(Error::Invalid("sealed key has the wrong length".into()));
        }
        let leaf = Leaf::Record {
            time,
            reference: reference.to_owned(),
            key_hash: hex::encode(Sha256::digest(&record.sealed_key)),
            body: STANDARD.encode(&record.body),
            commitments,
        };
        let entry = encode_record_entry(&leaf, &record.sealed_key)?;
        let offset = self.log_len;
        let index = self.write_entry(&entry)?;
        self.key_at
            .insert(index, KeyAt::Log(offset + ENTRY_HEADER as u64));
        self.record_leaves.push(index);
        self.references.insert(reference.to_owned(), index);
        Ok(Appended { index, new: true })
    }

    /// Appends a hold, release or access leaf.
    pub fn append(&mut self, leaf: Leaf) -> Result<u64, Error> {
        match leaf {
            Leaf::Record { .. } | Leaf::Disposition { .. } => Err(Error::Invalid(
                "records and dispositions have their own calls".into(),
            )),
            leaf => self.write_entry(&encode_entry(&leaf)?),
        }
    }

    pub fn leaf(&self, index: u64) -> Result<Leaf, Error> {
        let offset = *self
            .offsets
            .get(index as usize)
            .ok_or_else(|| Error::Invalid(format!("no leaf {index}")))?;
        let path = self.dir.join("log.bin");
        let mut word = [0u8; 4];
        self.log
            .read_exact_at(&mut word, offset)
            .map_err(io(&path))?;
        let (len, header) = layout(word);
        let mut bytes = vec![0u8; len];
        self.log
            .read_exact_at(&mut bytes, offset + header as u64)
            .map_err(io(&path))?;
        Leaf::from_bytes(&bytes).map_err(Error::Damaged)
    }

    /// The file, offset and path of record `index`'s sealed key.
    fn key_file(&self, index: u64) -> Result<(&File, u64, PathBuf), Error> {
        let at = *self
            .key_at
            .get(&index)
            .ok_or_else(|| Error::Invalid(format!("leaf {index} is not a record")))?;
        key_file(&self.dir, &self.log, self.keys.as_ref(), at)
    }

    /// The sealed record of leaf `index`, or `None` once disposed.
    pub fn record(&self, index: u64) -> Result<Option<SealedRecord>, Error> {
        let Leaf::Record { body, .. } = self.leaf(index)? else {
            return Err(Error::Invalid(format!("leaf {index} is not a record")));
        };
        if self.disposed.contains(&index) {
            return Ok(None);
        }
        let (file, offset, path) = self.key_file(index)?;
        let mut key = vec![0u8; SEALED_KEY_LEN];
        file.read_exact_at(&mut key, offset).map_err(io(&path))?;
        let body = STANDARD
            .decode(body)
            .map_err(|_| Error::Damaged(format!("leaf {index} body")))?;
        Ok(Some(SealedRecord {
            sealed_key: key,
            body,
        }))
    }

    /// Record leaves, oldest first, with whether each is disposed.
    pub fn records(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.record_leaves
            .iter()
            .map(|i| (*i, self.disposed.contains(i)))
    }

    /// Logs the disposition of record `index`, then destroys its content key in place. A
    /// crash in between is finished at the next open (the leaf names the key to destroy).
    pub fn dispose(&mut self, index: u64, schedule: &str, time: i64) -> Result<u64, Error> {
        self.key_file(index)?;
        if self.disposed.contains(&index) {
            // Its disposition leaf is written; if wiping its key failed then, wipe it now.
            self.wipe_key(index)?;
            return Err(Error::Invalid(format!(
                "record {index} is already disposed"
            )));
        }
        let leaf = self.write_entry(&encode_entry(&Leaf::Disposition {
            time,
            record: index,
            schedule: schedule.to_owned(),
        })?)?;
        self.disposed.insert(index);
        self.wipe_key(index)?;
        Ok(leaf)
    }

    /// Overwrites record `index`'s sealed key with zeros where it lies (in its log.bin entry
    /// or its keys.bin slot) and makes that durable (idempotent).
    fn wipe_key(&self, index: u64) -> Result<(), Error> {
        let (file, offset, path) = self.key_file(index)?;
        self.faults
            .write_at(file, &[0u8; SEALED_KEY_LEN], offset)
            .and_then(|_| self.faults.sync(file))
            .map_err(io(&path))
    }

    /// Signs and stores a checkpoint of the current size (if it grew); returns the latest note.
    pub fn checkpoint(&mut self) -> Result<String, Error> {
        if self.size() > self.checkpointed || self.latest_checkpoint()?.is_none() {
            // From the tile index: O(log n) hashes, not the whole log each interval.
            let text = Checkpoint {
                origin: self.signer.name().to_owned(),
                size: self.size(),
                root: self.tree_root(self.size())?,
                extensions: vec![],
            }
            .to_text();
            let note = self.signer.sign(&text)?;
            let path = self
                .dir
                .join("checkpoints")
                .join(format!("{:020}", self.size()));
            if self.faults.fire() {
                return Err(io(&path)(Faults::full()));
            }
            write_atomic(&path, note.as_bytes(), 0o644)?;
            self.checkpointed = self.size();
        }
        Ok(self
            .latest_checkpoint()?
            .map(|(_, note)| note)
            .expect("written above"))
    }

    /// Appends a witness's verified cosignature `lines` to the stored checkpoint of `size`,
    /// atomically. A signed note may carry signature lines of other keys; every reader of
    /// checkpoints ignores the keys it does not know. `verifier` must accept the result, so
    /// nothing unverified is ever stored; a cosignature by the same key is replaced.
    pub fn add_cosignature(
        &mut self,
        size: u64,
        lines: &str,
        verifier: &vellum_tlog::cosignature::CosignatureVerifier,
    ) -> Result<(), Error> {
        let path = self.dir.join("checkpoints").join(format!("{size:020}"));
        let note = fs::read_to_string(&path).map_err(io(&path))?;
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| Error::Damaged(format!("checkpoint {size} has no signatures")))?;
        let mut updated = note[..split + 2].to_owned();
        for line in note[split + 2..].lines() {
            let own = vellum_tlog::cosignature::CosignatureLine::parse(line)
                .is_ok_and(|l| l.name == verifier.name() && l.key_id == verifier.key_id());
            if !own {
                updated.push_str(line);
                updated.push('\n');
            }
        }
        if lines.is_empty() || !lines.ends_with('\n') || lines.contains("\n\n") {
            return Err(Error::Invalid("malformed cosignature lines".into()));
        }
        updated.push_str(lines);
        verifier.verify(&updated)?;
        // The log's own signature must still open it (the lines cannot have broken the note).
        NoteVerifier::parse(&self.signer.verifier_key())
            .and_then(|v| NoteVerifier::open(&updated, &[v]).map(|_| ()))?;
        if self.faults.fire() {
            return Err(io(&path)(Faults::full()));
        }
        write_atomic(&path, updated.as_bytes(), 0o644)
    }

    /// The newest checkpoint on disk: (size, signed note).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        latest_checkpoint(&self.dir)
    }

    /// From O(log n) tiles (see tiles.rs), equal to the linear RFC 6962 proof.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        self.tiled_inclusion_proof(index, size)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        self.tiled_consistency_proof(old, new)
    }

    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        self.leaf_hashes.get(index as usize).copied()
    }
}
