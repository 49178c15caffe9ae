use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use vellum_mls::OrgSigner;

/// The default floor of the identity-reset wait: a day.
pub const DEFAULT_MIN_RESET_WAIT_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Largest request body (commits carry the Welcome and ratchet tree of large groups).
    pub max_body_bytes: usize,
    /// Largest application message ciphertext.
    pub max_message_bytes: usize,
    /// Per-device request rate: sustained requests per second and burst.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub enrollment_code_ttl: Duration,
    pub request_timeout: Duration,
    /// Most log entries one sync returns.
    pub sync_limit: usize,
    /// Undelivered ciphertext is purged after this long, whatever its timer.
    pub max_undelivered: Duration,
    /// How often expired ciphertext is purged.
    pub purge_interval: Duration,
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open waiting for the next request.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Concurrent connections; `None`: derived from the open-files limit.
    pub max_connections: Option<usize>,
    /// How often an idle WebSocket is pinged, and how long without a pong closes it.
    pub ws_ping_interval: Duration,
    pub ws_pong_timeout: Duration,
    /// Groups whose public state is kept in memory.
    pub cached_groups: usize,
    /// Key packages one device may claim (of other devices) at once, and how many of them
    /// come back per hour: claims consume other users' single-use key packages.
    pub claim_burst: f64,
    pub claims_per_hour: f64,
    /// The key directory's checkpoint origin; `None`: `vellum_directory::default_origin` of
    /// the org key.
    pub directory_origin: Option<String>,
    /// Witnesses each new checkpoint of the key directory is submitted to.
    pub directory_witnesses: Vec<vellum_witness::WitnessTarget>,
    /// How many of them must cosign a checkpoint before devices are served it; `None`: all.
    pub directory_witness_quorum: Option<usize>,
    /// How often a checkpoint some witness has not cosigned is submitted again.
    pub directory_witness_retry: Duration,
    /// The shortest identity-reset wait the org policy may set; devices pin it.
    pub min_reset_wait_secs: u64,
    /// A shared PostgreSQL database instead of `DATA/server.db` (issue 13): several nodes
    /// serve one deployment from it.
    pub database_url: Option<String>,
    /// The NATS server through which the nodes on the shared database wake each other's
    /// devices. Only with `database_url`.
    pub nats_url: Option<String>,
    /// How often every WebSocket of a node on the shared database is woken while it has no
    /// NATS connection.
    pub poll_interval: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            max_body_bytes: 8 * 1024 * 1024,
            max_message_bytes: 64 * 1024,
            rate_per_sec: 200.0,
            rate_burst: 1000.0,
            enrollment_code_ttl: Duration::from_secs(7 * 24 * 3600),
            request_timeout: Duration::from_secs(30),
            sync_limit: 500,
            max_undelivered: Duration::from_secs(30 * 24 * 3600),
            purge_interval: Duration::from_millis(500),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: None,
            ws_ping_interval: Duration::from_secs(30),
            ws_pong_timeout: Duration::from_secs(90),
            cached_groups: 1024,
            claim_burst: 1000.0,
            claims_per_hour: 1000.0,
            directory_origin: None,
            directory_witnesses: Vec::new(),
            directory_witness_quorum: None,
            directory_witness_retry: Duration::from_secs(30),
            min_reset_wait_secs: DEFAULT_MIN_RESET_WAIT_SECS,
            database_url: None,
            nats_url: None,
            poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is corrupt")]
    Corrupt(PathBuf),
    #[error(
        "{0} is missing but the server database (DATA/server.db or the shared database) serves an org: every device certificate \
         was signed with it; restore it from a backup instead of starting a new org"
    )]
    MissingOrgKey(PathBuf),
    #[error(
        "{0} is missing but the server database serves an org already: restore it from a \
         backup, or write a new admin token to admin-token beside it (the server then keeps \
         the new token's hash)"
    )]
    MissingAdminToken(PathBuf),
    #[error(
        "{0} is missing, and the shared database serves an org already: every node needs a \
         copy of the first node's org.key, directory.key and admin-token.sha256"
    )]
    MissingNodeKey(PathBuf),
    #[error("another vellum server is using {0}; one server process per data directory")]
    InUse(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a new secret file readable by the owner only; refuses to overwrite.
fn write_secret(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// The admin token, written on first start for the admin to take; never read again.
pub(crate) const ADMIN_TOKEN: &str = "admin-token";
/// The admin token's SHA-256 (hex): all the server keeps of it.
pub(crate) const ADMIN_TOKEN_HASH: &str = "admin-token.sha256";

/// What the data directory holds for the server: the org signing key, the hash of the
/// admin token and the key directory's log key. Each is created on first start (`org.key`,
/// `admin-token` and `admin-token.sha256`, `directory.key`, mode 0600).
pub struct DataDir {
    pub org: OrgSigner,
    pub admin_token_hash: [u8; 32],
    /// The seed of the key directory's checkpoint signing key.
    pub directory_key: [u8; 32],
    /// An exclusive lock on `DIR/lock`, held while a SQLite server runs: two processes on
    /// one SQLite file would each keep their own replay nonces and group cache. Nodes on a
    /// shared database take none: they may share one directory of keys.
    pub lock: Option<fs::File>,
}

/// The data directory of a server on `DIR/server.db`: one process at a time.
pub fn init_data_dir(dir: &Path) -> Result<DataDir, DataDirError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let lock_path = dir.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(DataDirError::InUse(dir.to_owned())),
        Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let mut data = read_keys(dir, dir.join("server.db").exists())?;
    data.lock = Some(lock);
    Ok(data)
}

/// The keys of a node on a shared database (issue 13), which several nodes may share (each
/// node of a deployment holds a copy of the first node's). `deployed`: the database already
/// serves an org, so missing keys are restored, never made up.
pub fn init_node_dir(dir: &Path, deployed: bool) -> Result<DataDir, DataDirError> {
    if deployed {
        // A copy of the first node's keys, complete, or nothing is made: a new key here
        // would only be refused later, and stay behind.
        for name in ["org.key", "directory.key", ADMIN_TOKEN_HASH] {
            let path = dir.join(name);
            if !path.exists() {
                return Err(DataDirError::MissingNodeKey(path));
            }
        }
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    read_keys(dir, deployed)
}

/// Reads (or, for a new org, creates) the keys; `existing`: a database already serves an
/// org with them.
fn read_keys(dir: &Path, existing: bool) -> Result<DataDir, DataDirError> {
    let key_path = dir.join("org.key");
    let org = if key_path.exists() {
        let seed = fs::read(&key_path).map_err(io(&key_path))?;
        OrgSigner::from_seed(&seed).map_err(|_| DataDirError::Corrupt(key_path.clone()))?
    } else if existing {
        return Err(DataDirError::MissingOrgKey(key_path));
    } else {
        let org = OrgSigner::generate();
        write_secret(&key_path, &org.seed())?;
        org
    };
    Ok(DataDir {
        org,
        admin_token_hash: admin_token_hash(dir, existing)?,
        directory_key: directory_key(dir)?,
        lock: None,
    })
}

/// The seed of the key directory's signing key, `DIR/directory.key`; a server from before
/// the key directory gets its key now. (A key lost later is caught at start: the stored
/// checkpoint no longer verifies.)
fn directory_key(dir: &Path) -> Result<[u8; 32], DataDirError> {
    let path = dir.join("directory.key");
    if path.exists() {
        let seed = fs::read(&path).map_err(io(&path))?;
        return seed.try_into().map_err(|_| DataDirError::Corrupt(path));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("operating system RNG");
    write_secret(&path, &seed)?;
    Ok(seed)
}

/// The admin token's SHA-256 from `DIR/admin-token.sha256`: all the server keeps of it.
/// A first start writes the token to `DIR/admin-token` for the admin to take (the server
/// never reads it again, so it may be moved off the host), then the hash; a directory from
/// before the hash was kept gets its hash file once, from `admin-token`.
fn admin_token_hash(dir: &Path, existing: bool) -> Result<[u8; 32], DataDirError> {
    let hash_path = dir.join(ADMIN_TOKEN_HASH);
    let token_path = dir.join(ADMIN_TOKEN);
    if hash_path.exists() {
        let text = fs::read_to_string(&hash_path).map_err(io(&hash_path))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut hash)
            .map_err(|_| DataDirError::Corrupt(hash_path))?;
        return Ok(hash);
    }
    let hash = if token_path.exists() {
        let token = fs::read_to_string(&token_path).map_err(io(&token_path))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(DataDirError::Corrupt(token_path));
        }
        tracing::warn!(
            "{} now holds the admin token's hash, and the server no longer reads {}: \
             move {} off the server host (to the admin's machine)",
            hash_path.display(),
            token_path.display(),
            token_path.display(),
        );
        admin_hash(token)
    } else if existing {
        return Err(DataDirError::MissingAdminToken(hash_path));
    } else {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("operating system RNG");
        let token = hex::encode(raw);
        // The token first: a start cut short between the two files finds the token and
        // writes the hash; the other way round the token would be lost.
        write_secret(&token_path, format!("{token}\n").as_bytes())?;
        admin_hash(&token)
    };
    write_secret(&hash_path, format!("{}\n", hex::encode(hash)).as_bytes())?;
    Ok(hash)
}

/// The hash an admin token is known by; a presented token is compared by it.
pub(crate) fn admin_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Writes `DATA/directory.vkey`, the key directory's note verifier key, for witness
/// operators (`vellum witness --log "$(cat DATA/directory.vkey)"`). Public; rewritten at
/// every start, so it follows `--directory-origin`.
pub fn write_directory_vkey(dir: &Path, vkey: &str) -> Result<(), DataDirError> {
    let path = dir.join("directory.vkey");
    let temporary = dir.join("directory.vkey.tmp");
    fs::write(&temporary, format!("{vkey}\n")).map_err(io(&temporary))?;
    fs::set_permissions(&temporary, fs::Permissions::from_mode(0o644)).map_err(io(&temporary))?;
    fs::rename(&temporary, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_7_one_server_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = init_data_dir(dir.path()).unwrap();
        assert!(matches!(
            init_data_dir(dir.path()),
            Err(DataDirError::InUse(_))
        ));
        drop(first);
        init_data_dir(dir.path()).expect("free again once the first server stopped");
    }

    #[test]
    fn issue_7_a_lost_org_key_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let org = init_data_dir(dir.path()).unwrap().org.public_key();
        fs::write(dir.path().join("server.db"), b"").unwrap();
        fs::remove_file(dir.path().join("org.key")).unwrap();
        let err = init_data_dir(dir.path()).err().expect("refused");
        assert!(matches!(err, DataDirError::MissingOrgKey(_)), "{err}");
        assert!(!dir.path().join("org.key").exists(), "no new key written");
        // A fresh directory still gets its key on first start.
        let fresh = tempfile::tempdir().unwrap();
        assert_ne!(init_data_dir(fresh.path()).unwrap().org.public_key(), org);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn issue_9_the_server_keeps_only_the_admin_token_hash() {
        let dir = tempfile::tempdir().unwrap();
        let first = init_data_dir(dir.path()).unwrap();
        let token_path = dir.path().join(ADMIN_TOKEN);
        let hash_path = dir.path().join(ADMIN_TOKEN_HASH);
        let token = fs::read_to_string(&token_path).unwrap();
        assert_eq!(first.admin_token_hash, admin_hash(&token));
        assert_eq!(
            fs::read_to_string(&hash_path).unwrap().trim(),
            hex::encode(admin_hash(&token))
        );
        assert_eq!((mode(&token_path), mode(&hash_path)), (0o600, 0o600));
        drop(first);
        // The admin took the token away: the server starts and knows it by its hash.
        fs::remove_file(&token_path).unwrap();
        let again = init_data_dir(dir.path()).unwrap();
        assert_eq!(again.admin_token_hash, admin_hash(&token));
        assert!(!token_path.exists(), "the token is not written again");
        drop(again);
        // A token file put back with other contents is not read either.
        fs::write(&token_path, "another token\n").unwrap();
        assert_eq!(
            init_data_dir(dir.path()).unwrap().admin_token_hash,
            admin_hash(&token)
        );
    }

    #[test]
    fn issue_9_an_older_data_directory_gets_the_hash_file_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(init_data_dir(dir.path()).unwrap());
        let token_path = dir.path().join(ADMIN_TOKEN);
        let hash_path = dir.path().join(ADMIN_TOKEN_HASH);
        let token = fs::read_to_string(&token_path).unwrap();
        // As 0.2.0 left it: a token file, no hash file, a database.
        fs::remove_file(&hash_path).unwrap();
        fs::write(dir.path().join("server.db"), b"").unwrap();
        let upgraded = init_data_dir(dir.path()).unwrap();
        assert_eq!(upgraded.admin_token_hash, admin_hash(&token));
        assert_eq!(
            fs::read_to_string(&hash_path).unwrap().trim(),
            hex::encode(admin_hash(&token))
        );
        assert_eq!(mode(&hash_path), 0o600);
        assert_eq!(
            fs::read_to_string(&token_path).unwrap(),
            token,
            "the token file is left for the admin to move"
        );
        drop(upgraded);
        fs::remove_file(&token_path).unwrap();
        assert_eq!(
            init_data_dir(dir.path()).unwrap().admin_token_hash,
            admin_hash(&token)
        );
    }

    #[test]
    fn issue_9_a_lost_or_damaged_admin_token_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(init_data_dir(dir.path()).unwrap());
        let hash_path = dir.path().join(ADMIN_TOKEN_HASH);
        for damaged in ["", "not hex\n", "abcd\n"] {
            fs::write(&hash_path, damaged).unwrap();
            let err = init_data_dir(dir.path()).err().expect("refused");
            assert!(
                matches!(&err, DataDirError::Corrupt(p) if *p == hash_path),
                "{err}"
            );
        }
        // Neither the hash nor the token, but a database: no new token is made up.
        fs::remove_file(&hash_path).unwrap();
        fs::remove_file(dir.path().join(ADMIN_TOKEN)).unwrap();
        fs::write(dir.path().join("server.db"), b"").unwrap();
        let err = init_data_dir(dir.path()).err().expect("refused");
        assert!(matches!(err, DataDirError::MissingAdminToken(_)), "{err}");
        assert!(err.to_string().contains("admin-token.sha256"), "{err}");
        assert!(!dir.path().join(ADMIN_TOKEN).exists());
        assert!(!hash_path.exists());
    }
}
