//! The witness's data directory and its one state-changing operation.
//!
//! ```text
//! DIR/witness.key          the cosigning key (0600), a Go `note` private key string
//! DIR/logs                 verifier keys of the followed logs, one a line
//! DIR/checkpoints/<hex>    per log (SHA-256 of the origin), the newest cosigned checkpoint:
//!                          the log's note with the witness's cosignature line appended
//! DIR/lock                 held while a witness serves this directory
//! ```
//! Every file is written whole to a temporary file, fsynced, renamed over, and the directory
//! fsynced, so a crash leaves the old state or the new, never a torn one.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};
use vellum_tlog::cosignature::{CosignatureSigner, CosignatureVerifier};
use vellum_tlog::{Checkpoint, NoteSigner, NoteVerifier};

use crate::protocol::{self, AddCheckpoint, Refusal};
use crate::Error;

const KEY_FILE: &str = "witness.key";
const LOGS_FILE: &str = "logs";
const CHECKPOINTS: &str = "checkpoints";

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(format!("{}: {e}", path.display()))
}

/// Writes `contents` to `path` atomically: temporary file, fsync, rename, directory fsync.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().expect("files live in the data directory");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("a file name").to_string_lossy()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// The file name of a log's state: the SHA-256 of its origin in lower-case hex (as in the
/// specification's monitoring path), so any origin makes a safe file name.
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// The key file: `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`, golang.org/x/mod's
/// note key format (which transparency-dev's witness tooling also loads as a cosigner).
fn parse_key(path: &Path, text: &str) -> Result<CosignatureSigner, Error> {
    let corrupt = || Error::Corrupt(path.display().to_string());
    let parts: Vec<&str> = text.trim_end_matches('\n').splitn(5, '+').collect();
    let ["PRIVATE", "KEY", name, id, key] = parts.as_slice() else {
        return Err(corrupt());
    };
    let typed = STANDARD.decode(key).map_err(|_| corrupt())?;
    let seed: [u8; 32] = match typed.split_first() {
        Some((0x01, seed)) => seed.try_into().map_err(|_| corrupt())?,
        _ => return Err(corrupt()),
    };
    let note = NoteSigner::new(name, &seed).map_err(|_| corrupt())?;
    if format!("{:08x}", note.key_id()) != *id {
        return Err(corrupt());
    }
    CosignatureSigner::new(name, &seed).map_err(|_| corrupt())
}

/// Reads the witness's key, creating it first if the directory has none. A new key is
/// linked into place only if no other process created one meanwhile (no clobbering).
fn load_or_create_key(dir: &Path) -> Result<CosignatureSigner, Error> {
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => return parse_key(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    let mut seed = [0u8; 32];
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut seed).expect("operating system RNG");
    getrandom::fill(&mut suffix).expect("operating system RNG");
    let name = format!("vellum.witness/{}", hex::encode(suffix));
    let note = NoteSigner::new(&name, &seed)?;
    let mut typed = vec![0x01];
    typed.extend_from_slice(&seed);
    let text = format!(
        "PRIVATE+KEY+{name}+{:08x}+{}\n",
        note.key_id(),
        STANDARD.encode(typed)
    );
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    write_atomic(&tmp, text.as_bytes(), 0o600)?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
            CosignatureSigner::new(&name, &seed).map_err(Error::from)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            parse_key(&path, &text)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

fn prepare_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir.join(CHECKPOINTS)).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    Ok(())
}

/// The witness's cosignature verifier key (`name+id+base64(0x04 || key)`) for `dir`,
/// creating the key if the directory has none yet.
pub fn verifier_key(dir: &Path) -> Result<String, Error> {
    prepare_dir(dir)?;
    Ok(load_or_create_key(dir)?.verifier_key())
}

/// The newest checkpoint the witness in `dir` cosigned for `origin`, with its cosignature
/// (checked against the witness's key), or None if it never cosigned one. Reads only.
pub fn latest(dir: &Path, origin: &str) -> Result<Option<String>, Error> {
    let key_path = dir.join(KEY_FILE);
    let key = fs::read_to_string(&key_path).map_err(io(&key_path))?;
    let verifier = parse_key(&key_path, &key)?.verifier();
    read_state(dir, origin, &verifier).map(|state| state.map(|(note, _)| note))
}

/// The stored note of `origin` and its checkpoint; a file the witness's own cosignature does
/// not verify (damage, or a file put there by hand) is an error, never "nothing seen".
fn read_state(
    dir: &Path,
    origin: &str,
    verifier: &CosignatureVerifier,
) -> Result<Option<(String, Checkpoint)>, Error> {
    let path = dir.join(CHECKPOINTS).join(origin_hash(origin));
    let note = match fs::read_to_string(&path) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let (checkpoint, _) = verifier
        .verify(&note)
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    if checkpoint.origin != origin {
        return Err(Error::Corrupt(format!(
            "{}: holds the log {:?}",
            path.display(),
            checkpoint.origin
        )));
    }
    Ok(Some((note, checkpoint)))
}

/// A running witness over its data directory.
pub struct Witness {
    dir: PathBuf,
    signer: CosignatureSigner,
    /// Trusted keys per origin (a key's name is its log's origin).
    logs: HashMap<String, Vec<NoteVerifier>>,
    /// Checking a request against the stored state and storing the new state happen under
    /// this lock, so two requests cannot both pass the old-size check (the race the
    /// specification describes).
    update: Mutex<()>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    _lock: File,
}

impl Witness {
    /// Opens (creating) the witness in `dir`, following the logs it followed before and the
    /// logs of `new_logs` (verifier keys), which are remembered from now on. One process
    /// per directory.
    pub fn open(dir: &Path, new_logs: &[String]) -> Result<Self, Error> {
        // A bad key is refused before anything is created or written.
        for vkey in new_logs {
            NoteVerifier::parse(vkey.trim()).map_err(|e| Error::BadLogKey(e.to_string()))?;
        }
        prepare_dir(dir)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::InUse(dir.display().to_string()))
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let signer = load_or_create_key(dir)?;
        let logs_path = dir.join(LOGS_FILE);
        let known = match fs::read_to_string(&logs_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&logs_path)(e)),
        };
        let mut vkeys: BTreeSet<String> = BTreeSet::new();
        let mut logs: HashMap<String, Vec<NoteVerifier>> = HashMap::new();
        for vkey in known.lines().chain(new_logs.iter().map(String::as_str)) {
            let vkey = vkey.trim();
            if vkey.is_empty() || vkeys.contains(vkey) {
                continue;
            }
            let verifier =
                NoteVerifier::parse(vkey).map_err(|e| Error::BadLogKey(e.to_string()))?;
            logs.entry(verifier.name().to_owned())
                .or_default()
                .push(verifier);
            vkeys.insert(vkey.to_owned());
        }
        let listed: String = vkeys.iter().map(|k| format!("{k}\n")).collect();
        if listed != known {
            write_atomic(&logs_path, listed.as_bytes(), 0o600)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            signer,
            logs,
            update: Mutex::new(()),
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("the clock is after 1970")
                    .as_secs()
            }),
            _lock: lock,
        })
    }

    /// Replaces the clock (POSIX seconds) that timestamps cosignatures; for tests.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        self.signer.verifier()
    }

    /// The origins of the logs this witness follows, sorted.
    pub fn origins(&self) -> Vec<&str> {
        let mut origins: Vec<&str> = self.logs.keys().map(String::as_str).collect();
        origins.sort_unstable();
        origins
    }

    /// The newest cosigned checkpoint of `origin` (the note served to monitors).
    pub fn latest(&self, origin: &str) -> Result<Option<String>, Error> {
        read_state(&self.dir, origin, &self.signer.verifier()).map(|s| s.map(|(note, _)| note))
    }

    /// Handles an `add-checkpoint` body: on success the state is durable and the response
    /// body (one cosignature line) is returned; on refusal nothing was written.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, Refusal> {
        let request = AddCheckpoint::parse(body)?;
        let verified = protocol::verify(&request, &self.logs)?;
        let origin = &verified.checkpoint.origin;
        let _update = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let known = read_state(&self.dir, origin, &self.signer.verifier())
            .map_err(|e| Refusal::Storage(e.to_string()))?
            .map(|(_, checkpoint)| checkpoint);
        if let Err(refusal) =
            protocol::check_consistency(&request, &verified.checkpoint, known.as_ref())
        {
            // A validly signed checkpoint that does not extend what the witness saw may be
            // evidence of a misbehaving log.
            if matches!(refusal, Refusal::Inconsistent(_)) {
                tracing::warn!(%origin, note = %request.note, %refusal, "refused a signed checkpoint");
            }
            return Err(refusal);
        }
        let line = self
            .signer
            .sign(&verified.checkpoint, (self.clock)())
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        let stored = format!("{}\n{}{line}", verified.text, verified.log_lines.concat());
        let path = self.dir.join(CHECKPOINTS).join(origin_hash(origin));
        write_atomic(&path, stored.as_bytes(), 0o644)
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        tracing::info!(%origin, size = verified.checkpoint.size, "cosigned");
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang.org/x/mod/sumdb/note's documented key pair (its base64 holds a `+`): the key
    /// file format reads it, and the cosigning key is the same Ed25519 key as type 0x04.
    #[test]
    fn reads_go_note_private_keys() {
        let path = Path::new("witness.key");
        let signer = parse_key(
            path,
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n",
        )
        .unwrap();
        assert_eq!(
            signer.verifier_key(),
            "PeterNeumann+18b9780b+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        // A key ID that does not match the key is damage.
        assert!(parse_key(
            path,
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n"
        )
        .is_err());
        assert!(parse_key(path, "").is_err());
    }

    /// A new key is written in that format and read back as the same key.
    #[test]
    fn created_keys_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        prepare_dir(tmp.path()).unwrap();
        let created = load_or_create_key(tmp.path()).unwrap().verifier_key();
        let text = fs::read_to_string(tmp.path().join(KEY_FILE)).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+vellum.witness/"));
        assert_eq!(
            load_or_create_key(tmp.path()).unwrap().verifier_key(),
            created
        );
    }
}
