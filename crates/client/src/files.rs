//! End-to-end encrypted attachments (issue 10).
//!
//! Each file gets a fresh 32-byte AES-256-GCM key and a 7-byte nonce prefix, and is sealed
//! in chunks of [`CHUNK_SIZE`] plaintext bytes under the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár): chunk `i`'s nonce is the prefix, `i` as a big-endian
//! 32-bit counter and a last-chunk flag byte, exactly `aead::stream::StreamBE32` of aead
//! 0.5. So chunks cannot be reordered, dropped or the file cut short without detection.
//! Only one chunk is in memory at a time, whatever the file's size.
//!
//! Uploads resume: the blob, key and nonce of an upload in progress are kept in the
//! profile (`uploads`, client V9) under the file's path, size and modification time, so
//! sending the same file again continues where the server's status says; the row goes once
//! the message is sent. Downloads resume from their `.part` file and are checked against
//! the sender's SHA-256 before taking their name. A file saved inside the profile is listed
//! in `downloads` and deleted by the shredder with its message.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use vellum_wire::{codes, ApiError, AttachmentRef, BlobCreated, BlobStatus, CreateBlob};
use zeroize::Zeroizing;

use crate::messages::OutgoingMessage;
use crate::store::db;
use crate::{now_millis, Client, Error, LocalStore, MessageRow};
use vellum_record::{AttachedFile, Record, RecordKind};

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: u32 = 64 * 1024;

/// Chunks sent or fetched per request: 1 MiB of plaintext, so a gigabyte is about a
/// thousand requests (well within a device's rate limit).
const CHUNKS_PER_REQUEST: u64 = 16;

/// Called with (bytes done, bytes in all) as a transfer goes.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// One chunk sealed or opened at a time under a file's key.
pub struct FileCipher {
    aead: Aes256Gcm,
    prefix: [u8; 7],
}

impl FileCipher {
    pub fn new(key: &[u8; 32], prefix: [u8; 7]) -> Self {
        Self {
            aead: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
            prefix,
        }
    }

    fn nonce(&self, index: u64, last: bool) -> Result<Nonce<aes_gcm::aead::consts::U12>, Error> {
        let counter = u32::try_from(index)
            .map_err(|_| Error::Invalid("a file has at most 2^32 chunks".into()))?;
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.prefix);
        nonce[7..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(last);
        Ok(Nonce::from(nonce))
    }

    /// Seals chunk `index` in place (16 bytes longer).
    pub fn seal(&self, index: u64, last: bool, mut chunk: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.aead
            .encrypt_in_place(&self.nonce(index, last)?, b"", &mut chunk)
            .map_err(|_| Error::Invalid("cannot encrypt the file".into()))?;
        Ok(chunk)
    }

    /// Opens chunk `index`: fails unless it is that chunk of this file, sealed as the last
    /// one exactly when `last`.
    pub fn open(&self, index: u64, last: bool, mut chunk: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.aead
            .decrypt_in_place(&self.nonce(index, last)?, b"", &mut chunk)
            .map_err(|_| {
                Error::Invalid(format!(
                    "chunk {index} of the file does not decrypt: it was altered, reordered or cut"
                ))
            })?;
        Ok(chunk)
    }
}

/// A file `download` saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Saved inside the profile: the shredder deletes it with the message (at its expiry,
    /// its burn, a delete for everyone or a remote wipe).
    pub tracked: bool,
    /// Saved outside the profile for a message with a timer: nothing will delete it.
    pub untracked_expiring: bool,
}

fn random<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    getrandom::fill(&mut raw).expect("operating system RNG");
    raw
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// The profile's `downloads` directory, owner-only (0700, tightened if it was created
/// looser): decrypted files wait there for their message's shredder.
fn private_downloads(home: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = home.join("downloads");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io("create", &dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("protect", &dir, e))?;
    Ok(dir)
}

/// A MIME type from the file name's extension (the common ones; the rest is opaque bytes).
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// A name a sender chose, safe to create in a directory: no directory part, no control
/// characters, not hidden, never `.`/`..`.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || is_disguising(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned
    }
}

/// Invisible and direction-changing characters: in a file name they disguise its extension
/// (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`).
fn is_disguising(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// `dir/name`, or `dir/stem (n).ext` for the first n that is free. A `.part` left there
/// is resumed (as `curl -C -`, `wget -c`): the SHA-256 check at the end discards one that
/// belonged to another file.
fn free_path(dir: &Path, name: &str) -> PathBuf {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (name.to_owned(), String::new()),
    };
    let mut n = 0;
    loop {
        let candidate = match n {
            0 => dir.join(name),
            n => dir.join(format!("{stem} ({n}){ext}")),
        };
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// Overwrites a file with zeros before unlinking it, so its bytes are gone from the
/// blocks the file system reuses in place; a missing file is fine.
pub fn shred_file(path: &Path) {
    if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(path) {
        if let Ok(meta) = file.metadata() {
            let zeros = vec![0u8; 64 * 1024];
            let mut left = meta.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                if file.write_all(&zeros[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
            let _ = file.sync_all();
        }
    }
    let _ = std::fs::remove_file(path);
}

/// How long the shredder keeps looking for a saved copy after its message went (a browser
/// may still be writing it out when the message expires).
pub const SAVED_COPY_GRACE_MS: i64 = 10 * 60 * 1000;

/// A copy of a downloaded file that another program saves into `dir` under a name it may
/// change (`name`, `name (1).ext`, `name.crdownload`): see [`Client::watch_saved_copy`].
#[derive(Debug, Clone)]
pub struct SavedCopy<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub group_id: &'a str,
    pub message_id: &'a str,
}

/// Whether `candidate` is `name` as a browser saves it: the name itself, with a number the
/// browser adds when it is taken (`stem (n).ext`), or either unfinished (`.crdownload`).
pub(crate) fn is_saved_variant(candidate: &str, name: &str) -> bool {
    let candidate = candidate.strip_suffix(".crdownload").unwrap_or(candidate);
    if candidate == name {
        return true;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    candidate
        .strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix(" ("))
        .and_then(|rest| rest.strip_suffix(ext.as_str()))
        .and_then(|rest| rest.strip_suffix(')'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Shreds every regular file in `dir` that is a copy of the file: a finished one by its
/// content (SHA-256, whatever its name), an unfinished one (`.crdownload`) by its name or a
/// browser's variant of it. A finished file that only shares the name (another message's
/// file, or the user's own) is not ours to remove; an unnamed partial ("Unconfirmed
/// N.crdownload") may be another download, and once finished it is caught by its content
/// within [`SAVED_COPY_GRACE_MS`].
fn shred_saved_copies(dir: &Path, name: &str, sha256: &str, size: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Never through a link: only what is in the folder itself.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let copy = if file_name.ends_with(".crdownload") {
            is_saved_variant(&file_name, name)
        } else {
            meta.len() == size
                && hash_file(&entry.path()).is_ok_and(|h| h.eq_ignore_ascii_case(sha256))
        };
        if copy {
            shred_file(&entry.path());
        }
    }
}

struct Upload {
    blob: String,
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 7],
    sha256: String,
}

/// Where an upload is kept: the file's absolute path, size and modification time.
struct FileId {
    path: String,
    size: u64,
    mtime_ns: i64,
}

fn file_id(path: &Path) -> Result<FileId, Error> {
    let absolute = std::fs::canonicalize(path).map_err(|e| io("read", path, e))?;
    let meta = std::fs::metadata(&absolute).map_err(|e| io("read", path, e))?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("{} is not a file", path.display())));
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok(FileId {
        path: absolute.to_string_lossy().into_owned(),
        size: meta.len(),
        mtime_ns,
    })
}

impl LocalStore {
    fn upload(&self, id: &FileId, group_id: &str) -> Result<Option<Upload>, Error> {
        self.lock()
            .query_row(
                "SELECT blob_id, key, nonce, sha256 FROM uploads
                 WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND group_id = ?4
                   AND chunk_size = ?5",
                params![id.path, id.size as i64, id.mtime_ns, group_id, CHUNK_SIZE],
                |r| {
                    let key: Vec<u8> = r.get(1)?;
                    let nonce: Vec<u8> = r.get(2)?;
                    Ok((r.get::<_, String>(0)?, key, nonce, r.get::<_, String>(3)?))
                },
            )
            .optional()
            .map_err(db)?
            .map(|(blob, key, nonce, sha256)| {
                let key = Zeroizing::new(
                    <[u8; 32]>::try_from(key.as_slice())
                        .map_err(|_| Error::Store("an upload's key is damaged".into()))?,
                );
                let nonce = <[u8; 7]>::try_from(nonce.as_slice())
                    .map_err(|_| Error::Store("an upload's nonce is damaged".into()))?;
                Ok(Upload {
                    blob,
                    key,
                    nonce,
                    sha256,
                })
            })
            .transpose()
    }

    fn save_upload(&self, id: &FileId, group_id: &str, upload: &Upload) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO uploads
                 (path, size, mtime_ns, group_id, blob_id, key, nonce, sha256, chunk_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id.path,
                    id.size as i64,
                    id.mtime_ns,
                    group_id,
                    upload.blob,
                    upload.key.as_slice(),
                    upload.nonce.as_slice(),
                    upload.sha256,
                    CHUNK_SIZE
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn forget_upload(&self, blob: &str) -> Result<(), Error> {
        self.lock()
            .execute("DELETE FROM uploads WHERE blob_id = ?1", [blob])
            .map_err(db)?;
        Ok(())
    }

    fn track_download(&self, path: &Path, group_id: &str, message_id: &str) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO downloads (path, group_id, message_id) VALUES (?1, ?2, ?3)",
                params![path.to_string_lossy(), group_id, message_id],
            )
            .map_err(db)?;
        Ok(())
    }

    fn watch_saved_copy(&self, copy: &SavedCopy<'_>) -> Result<(), Error> {
        self.lock()
            .execute(
                "INSERT INTO saved_copies (dir, name, sha256, size, group_id, message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    copy.dir.to_string_lossy(),
                    copy.name,
                    copy.sha256.to_ascii_lowercase(),
                    copy.size as i64,
                    copy.group_id,
                    copy.message_id
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn downloads_of(&self, group_id: &str, message_id: &str) -> Result<Vec<PathBuf>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT path FROM downloads WHERE group_id = ?1 AND message_id = ?2")
            .map_err(db)?;
        let rows = stmt
            .query_map(params![group_id, message_id], |r| r.get::<_, String>(0))
            .map_err(db)?;
        let paths: Vec<String> = rows.collect::<rusqlite::Result<_>>().map_err(db)?;
        Ok(paths.into_iter().map(PathBuf::from).collect())
    }

    /// Shreds the copies another program saved of files of messages that are gone, and keeps
    /// looking for [`SAVED_COPY_GRACE_MS`] after: a browser may finish writing one late.
    pub(crate) fn sweep_saved_copies(&self, now: i64) -> Result<(), Error> {
        type Row = (i64, String, String, String, i64, Option<i64>);
        let gone: Vec<Row> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT id, dir, name, sha256, size, gone_at FROM saved_copies s
                     WHERE NOT EXISTS (SELECT 1 FROM messages m
                                       WHERE m.group_id = s.group_id AND m.id = s.message_id)",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        for (id, dir, name, sha256, size, gone_at) in gone {
            shred_saved_copies(Path::new(&dir), &name, &sha256, size as u64);
            let conn = self.lock();
            match gone_at {
                None => conn.execute(
                    "UPDATE saved_copies SET gone_at = ?2 WHERE id = ?1",
                    params![id, now],
                ),
                Some(at) if now.saturating_sub(at) >= SAVED_COPY_GRACE_MS => {
                    conn.execute("DELETE FROM saved_copies WHERE id = ?1", [id])
                }
                Some(_) => Ok(0),
            }
            .map_err(db)?;
        }
        Ok(())
    }

    /// Deletes the saved files (and unfinished `.part` files) of messages that are gone.
    pub(crate) fn sweep_downloads(&self) -> Result<(), Error> {
        let gone: Vec<String> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare(
                    "SELECT path FROM downloads d WHERE NOT EXISTS (
                        SELECT 1 FROM messages m WHERE m.group_id = d.group_id AND m.id = d.message_id)",
                )
                .map_err(db)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        for path in gone {
            let path = PathBuf::from(path);
            shred_file(&part_path(&path));
            shred_file(&path);
            self.lock()
                .execute(
                    "DELETE FROM downloads WHERE path = ?1",
                    [path.to_string_lossy()],
                )
                .map_err(db)?;
        }
        self.sweep_saved_copies(now_millis())
    }
}

impl Client {
    /// A signed request with a raw body (file chunks); the answer's bytes. Chunks are put
    /// and fetched idempotently, so a node that does not answer is left for the next one.
    async fn raw_request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut nodes_left = self.api.servers().len();
        let (status, bytes) = loop {
            nodes_left -= 1;
            let base = self.api.base().to_owned();
            let mut request = self
                .api
                .http()
                .request(method.clone(), format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
            for (name, value) in
                self.signer()
                    .headers_at(method.as_str(), path, &body, self.api.timestamp())
            {
                request = request.header(name, value);
            }
            let answer = match request.body(body.clone()).send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|bytes| (status, bytes))
                }
                Err(e) => Err(e),
            };
            let unreachable = match &answer {
                Ok((status, _)) => matches!(
                    *status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(_) => true,
            };
            if unreachable && nodes_left > 0 {
                self.api.failed(&base);
                continue;
            }
            break answer.map_err(|e| Error::Network(format!("{base}: {}", e.without_url())))?;
        };
        if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(Error::Network(format!(
                "the server did not confirm the request (HTTP {status})"
            )));
        }
        if !status.is_success() {
            let body: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
                code: "http_error".into(),
                message: format!("HTTP {status}"),
            });
            return Err(Error::Api {
                status: status.as_u16(),
                code: body.code,
                message: body.message,
            });
        }
        Ok(bytes.to_vec())
    }

    /// Encrypts and uploads one file to the chat, resuming an upload of the same file
    /// (path, size and modification time) that was interrupted. Returns what the message
    /// carries.
    async fn upload_file(
        &mut self,
        group_id: &str,
        path: &Path,
        expires_at: Option<i64>,
        progress: Progress<'_>,
    ) -> Result<AttachmentRef, Error> {
        let id = file_id(path)?;
        let name = safe_name(&path.file_name().unwrap_or_default().to_string_lossy());
        let mut resumed = None;
        if let Some(upload) = self.store.upload(&id, group_id)? {
            let status_path = format!("/v1/blobs/{}", upload.blob);
            match self
                .request::<BlobStatus>(Method::GET, &status_path, None::<&()>)
                .await
            {
                Ok(status) => resumed = Some((upload, status.present, status.complete)),
                // Purged or refused since (expired, deleted): start again.
                Err(Error::Api { .. }) => self.store.forget_upload(&upload.blob)?,
                Err(e) => return Err(e),
            }
        }
        let (upload, present, complete) = match resumed {
            Some(found) => found,
            None => {
                let source = PathBuf::from(&id.path);
                let sha256 = tokio::task::spawn_blocking(move || hash_file(&source))
                    .await
                    .map_err(|e| Error::Io(e.to_string()))??;
                let created: BlobCreated = self
                    .request(
                        Method::POST,
                        &format!("/v1/groups/{group_id}/blobs"),
                        Some(&CreateBlob {
                            size: id.size,
                            chunk_size: CHUNK_SIZE,
                            expires_at,
                        }),
                    )
                    .await?;
                let upload = Upload {
                    blob: created.blob,
                    key: Zeroizing::new(random()),
                    nonce: random(),
                    sha256,
                };
                self.store.save_upload(&id, group_id, &upload)?;
                (upload, 0, false)
            }
        };
        let chunks = vellum_store::NewBlob::chunk_count(id.size, CHUNK_SIZE);
        let chunk_bytes = u64::from(CHUNK_SIZE);
        progress((present * chunk_bytes).min(id.size), id.size);
        if !complete {
            let cipher = std::sync::Arc::new(FileCipher::new(&upload.key, upload.nonce));
            let mut file = std::fs::File::open(&id.path).map_err(|e| io("read", path, e))?;
            file.seek(SeekFrom::Start(present * chunk_bytes))
                .map_err(|e| io("read", path, e))?;
            let mut file = Some(file);
            let mut batch_start = present;
            while batch_start < chunks {
                let batch_end = (batch_start + CHUNKS_PER_REQUEST).min(chunks);
                let size = id.size;
                // Reading and sealing run off the executor; one batch in memory at a time.
                let (mut f, sealer) = (file.take(), cipher.clone());
                let (back, body) = tokio::task::spawn_blocking(move || {
                    let f_ref = f.as_mut().ok_or_else(|| Error::Io("file closed".into()))?;
                    let mut body = Vec::new();
                    for index in batch_start..batch_end {
                        let len = size.saturating_sub(index * chunk_bytes).min(chunk_bytes);
                        let mut buf = vec![0u8; len as usize];
                        f_ref
                            .read_exact(&mut buf)
                            .map_err(|e| Error::Io(format!("cannot read the file: {e}")))?;
                        buf.reserve_exact(16);
                        body.extend_from_slice(&sealer.seal(index, index + 1 == chunks, buf)?);
                    }
                    Ok::<_, Error>((f, body))
                })
                .await
                .map_err(|e| Error::Io(e.to_string()))??;
                file = back;
                let chunk_path = format!("/v1/blobs/{}/chunks/{batch_start}", upload.blob);
                match self.raw_request(Method::PUT, &chunk_path, body).await {
                    Ok(_) => {}
                    // A retried request whose first attempt landed.
                    Err(e) if e.is_code(codes::CHUNK_EXISTS) => {}
                    Err(e) => return Err(e),
                }
                progress((batch_end * chunk_bytes).min(id.size), id.size);
                batch_start = batch_end;
            }
            let complete_path = format!("/v1/blobs/{}/complete", upload.blob);
            self.request::<()>(Method::POST, &complete_path, None::<&()>)
                .await?;
        }
        Ok(AttachmentRef {
            blob: upload.blob.clone(),
            mime: mime_of(&name).into(),
            name,
            size: id.size,
            sha256: upload.sha256.clone(),
            key: STANDARD.encode(upload.key.as_slice()),
            nonce: STANDARD.encode(upload.nonce),
            chunk_size: CHUNK_SIZE,
        })
    }

    /// Sends a message with files: each is encrypted and uploaded (resuming an interrupted
    /// upload of the same file), then the message carries their keys. A file is purged
    /// from the server no later than the message expires.
    pub async fn send_files(
        &mut self,
        chat: &str,
        message: OutgoingMessage,
        files: &[PathBuf],
        progress: Progress<'_>,
    ) -> Result<MessageRow, Error> {
        let timers = message.timers;
        // Checked before anything is uploaded: a refused send must leave no file behind.
        if message.text.trim().is_empty() {
            return Err(Error::Invalid(
                "a message with files needs a text (its caption)".into(),
            ));
        }
        let group_id = self.resolve_chat(chat)?;
        let policy = self.chat_policy(&group_id)?;
        let expire = policy
            .message_timers(timers.expire_secs, timers.burn_secs)
            .map_err(|e| Error::Invalid(e.0))?
            .expire_secs;
        let expires_at =
            expire.map(|s| now_millis().saturating_add((s as i64).saturating_mul(1000)));
        let mut attachments = Vec::with_capacity(files.len());
        for path in files {
            attachments.push(
                self.upload_file(&group_id, path, expires_at, &mut *progress)
                    .await?,
            );
        }
        let blobs: Vec<String> = attachments.iter().map(|a| a.blob.clone()).collect();
        let sent = self
            .send_message(
                &group_id,
                OutgoingMessage {
                    attachments,
                    ..message
                },
            )
            .await?;
        for blob in blobs {
            self.store.forget_upload(&blob)?;
        }
        Ok(sent)
    }

    /// Drops a message's files from the server (delete for everyone by their sender).
    pub(crate) async fn delete_blobs(&self, message: &MessageRow) -> Result<(), Error> {
        for file in &message.extra.attachments {
            let path = format!("/v1/blobs/{}", file.blob);
            match self.request::<()>(Method::DELETE, &path, None::<&()>).await {
                // Already purged: nothing left to drop.
                Ok(()) | Err(Error::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Downloads, decrypts and checks the files of a message into `out` (by default the
    /// profile's `downloads` directory). An interrupted download resumes from its `.part`.
    pub async fn download(
        &mut self,
        chat: &str,
        message_id: &str,
        out: Option<&Path>,
        progress: Progress<'_>,
    ) -> Result<Vec<Downloaded>, Error> {
        let group_id = self.resolve_chat(chat)?;
        let message = self
            .store
            .message(&group_id, message_id)?
            .ok_or_else(|| Error::Invalid(format!("no message {message_id} in this chat")))?;
        if message.extra.attachments.is_empty() {
            return Err(Error::Invalid(format!("message {message_id} has no files")));
        }
        let dir = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
                dir.to_path_buf()
            }
            None => private_downloads(&self.home)?,
        };
        let dir = std::fs::canonicalize(&dir).map_err(|e| io("open", &dir, e))?;
        let home = std::fs::canonicalize(&self.home).map_err(|e| io("open", &self.home, e))?;
        let expiring = message.expires_at.is_some() || message.burn_secs.is_some();
        let inside = dir.starts_with(&home);
        // Every file must be one of this chat's: a sender could otherwise point at a file of
        // another chat the reader shares with it, around that chat's rules (files forbidden
        // in its class, or its archiver). Checked before anything is saved.
        for file in &message.extra.attachments {
            let status: BlobStatus = self
                .request(
                    Method::GET,
                    &format!("/v1/blobs/{}", file.blob),
                    None::<&()>,
                )
                .await?;
            if status.group_id != group_id {
                return Err(Error::Invalid(format!(
                    "file {} of message {message_id} belongs to another chat: not downloaded",
                    safe_name(&file.name)
                )));
            }
        }
        let mut saved = Vec::new();
        for file in &message.extra.attachments {
            let name = safe_name(&file.name);
            let target = free_path(&dir, &name);
            // Everything saved inside the profile is the profile's: it goes with its message.
            let tracked = inside;
            if tracked {
                // Listed before a byte is written, so a crash leaves nothing the shredder misses.
                self.store.track_download(&target, &group_id, message_id)?;
            }
            self.fetch_file(file, &target, &mut *progress).await?;
            saved.push(Downloaded {
                path: target,
                name,
                size: file.size,
                sha256: file.sha256.clone(),
                tracked,
                untracked_expiring: expiring && !inside,
            });
        }
        Ok(saved)
    }

    /// Downloads, decrypts and checks file `index` of a message into the profile's
    /// `downloads` directory (tracked: the shredder deletes it with the message), or finds
    /// the copy already there.
    pub async fn download_file(
        &mut self,
        chat: &str,
        message_id: &str,
        index: usize,
        progress: Progress<'_>,
    ) -> Result<Downloaded, Error> {
        let group_id = self.resolve_chat(chat)?;
        let message = self
            .store
            .message(&group_id, message_id)?
            .ok_or_else(|| Error::Invalid(format!("no message {message_id} in this chat")))?;
        let file = message
            .extra
            .attachments
            .get(index)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("message {message_id} has no file {index}")))?;
        let name = safe_name(&file.name);
        for path in self.store.downloads_of(&group_id, message_id)? {
            let same = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == file.size)
                && hash_file(&path).is_ok_and(|h| h.eq_ignore_ascii_case(&file.sha256));
            if same {
                return Ok(Downloaded {
                    path,
                    name,
                    size: file.size,
                    sha256: file.sha256.clone(),
                    tracked: true,
                    untracked_expiring: false,
                });
            }
        }
        // The file must be one of this chat's (see `download`).
        let status: BlobStatus = self
            .request(
                Method::GET,
                &format!("/v1/blobs/{}", file.blob),
                None::<&()>,
            )
            .await?;
        if status.group_id != group_id {
            return Err(Error::Invalid(format!(
                "file {name} of message {message_id} belongs to another chat: not downloaded"
            )));
        }
        let dir = private_downloads(&self.home)?;
        let target = free_path(&dir, &name);
        // Listed before a byte is written, so a crash leaves nothing the shredder misses.
        self.store.track_download(&target, &group_id, message_id)?;
        self.fetch_file(&file, &target, &mut *progress).await?;
        Ok(Downloaded {
            path: target,
            name,
            size: file.size,
            sha256: file.sha256.clone(),
            tracked: true,
            untracked_expiring: false,
        })
    }

    /// Tracks a copy of a downloaded file that another program saves where this device
    /// cannot name it in advance (the app's browser, into its download folder): when the
    /// message goes (expiry, burn, delete), the shredder overwrites and deletes every file
    /// of `copy.dir` that is that copy, as it does the profile's own downloads.
    pub fn watch_saved_copy(&self, copy: &SavedCopy<'_>) -> Result<(), Error> {
        let exists = self
            .store
            .message(copy.group_id, copy.message_id)?
            .is_some();
        self.store.watch_saved_copy(copy)?;
        if !exists {
            // Already gone: nothing may keep it.
            self.store.sweep_saved_copies(now_millis())?;
        }
        Ok(())
    }

    async fn fetch_file(
        &self,
        file: &AttachmentRef,
        target: &Path,
        progress: Progress<'_>,
    ) -> Result<(), Error> {
        let (key, nonce) = file_key(file)?;
        let cipher = std::sync::Arc::new(FileCipher::new(&key, nonce));
        let chunk_bytes = u64::from(file.chunk_size);
        let chunks = vellum_store::NewBlob::chunk_count(file.size, file.chunk_size);
        let part = part_path(target);
        // Whole chunks already written are kept; their bytes are hashed again.
        let (mut out, mut hasher, done) = {
            let part = part.clone();
            tokio::task::spawn_blocking(move || resume_part(&part, chunk_bytes))
                .await
                .map_err(|e| Error::Io(e.to_string()))??
        };
        progress((done * chunk_bytes).min(file.size), file.size);
        let mut batch_start = done;
        while batch_start < chunks {
            let path = format!(
                "/v1/blobs/{}/chunks/{batch_start}?count={CHUNKS_PER_REQUEST}",
                file.blob
            );
            let body = self.raw_request(Method::GET, &path, Vec::new()).await?;
            let (opener, size) = (cipher.clone(), file.size);
            let (back_out, back_hasher, batch_end) = match tokio::task::spawn_blocking(move || {
                let mut index = batch_start;
                let mut rest = &body[..];
                while !rest.is_empty() && index < chunks {
                    let len =
                        (size.saturating_sub(index * chunk_bytes).min(chunk_bytes) + 16) as usize;
                    if rest.len() < len {
                        break;
                    }
                    let (sealed, tail) = rest.split_at(len);
                    rest = tail;
                    let plain =
                        Zeroizing::new(opener.open(index, index + 1 == chunks, sealed.to_vec())?);
                    hasher.update(&*plain);
                    out.write_all(&plain)
                        .map_err(|e| Error::Io(format!("cannot write the file: {e}")))?;
                    index += 1;
                }
                if !rest.is_empty() || index == batch_start {
                    return Err(Error::Invalid(
                        "the server sent chunks of the wrong length".into(),
                    ));
                }
                Ok::<_, Error>((out, hasher, index))
            })
            .await
            .map_err(|e| Error::Io(e.to_string()))?
            {
                Ok(opened) => opened,
                // A chunk that does not open (altered, cut short): what was already decrypted
                // goes too, wherever it was being saved, rather than stay as a plaintext
                // `.part` (issue 10 review). A network error keeps it for the next resume.
                Err(e) => {
                    shred_file(&part);
                    return Err(e);
                }
            };
            out = back_out;
            hasher = back_hasher;
            progress((batch_end * chunk_bytes).min(file.size), file.size);
            batch_start = batch_end;
        }
        let digest = hex::encode(hasher.finalize());
        let (part2, target2) = (part.clone(), target.to_path_buf());
        tokio::task::spawn_blocking(move || {
            out.sync_all()
                .map_err(|e| Error::Io(format!("cannot write the file: {e}")))
        })
        .await
        .map_err(|e| Error::Io(e.to_string()))??;
        if !digest.eq_ignore_ascii_case(&file.sha256) {
            shred_file(&part2);
            return Err(Error::Invalid(format!(
                "file {} does not match the SHA-256 its sender gave (got {digest}): discarded",
                file.name
            )));
        }
        std::fs::rename(&part2, &target2).map_err(|e| io("save", &target2, e))
    }
}

impl Client {
    /// The archiver's path: a record-chat message's files are queued with its entry.
    pub(crate) fn queue_archive_files(
        &self,
        message: &Record,
        extra: &crate::MessageExtra,
    ) -> Result<(), Error> {
        // The message's text is sealed in its own record already, and an attachment record
        // carries none: the queue, which outlives the sync on disk, does not keep it.
        let message = Record {
            text: None,
            mentions: Vec::new(),
            ..message.clone()
        };
        for file in &extra.attachments {
            let attachment = serde_json::to_string(file)
                .map_err(|e| Error::Store(format!("cannot queue a file: {e}")))?;
            let record = String::from_utf8(message.encode())
                .map_err(|e| Error::Store(format!("cannot queue a file: {e}")))?;
            self.store
                .lock()
                .execute(
                    "INSERT INTO archive_files (record, attachment) VALUES (?1, ?2)",
                    params![record, attachment],
                )
                .map_err(db)?;
        }
        Ok(())
    }

    /// The archiver fetches each queued file, decrypts it, checks its SHA-256, seals it as
    /// an `attachment` record and tells the server, which may then purge it. A file that
    /// cannot be had for good (refused, altered) is recorded as a failure in the log and
    /// dropped from the queue; a network failure leaves it for the next sync.
    pub(crate) async fn archive_files(&mut self) -> Result<(), Error> {
        let queued: Vec<(i64, String, String)> = {
            let conn = self.store.lock();
            let mut stmt = conn
                .prepare("SELECT id, record, attachment FROM archive_files ORDER BY id")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        for (id, record, attachment) in queued {
            let message = Record::decode(record.as_bytes())
                .map_err(|e| Error::Store(format!("a queued file's message: {e}")))?;
            let file: AttachmentRef = serde_json::from_str(&attachment)
                .map_err(|e| Error::Store(format!("a queued file: {e}")))?;
            match self.fetch_whole(&file).await {
                Ok(content) => {
                    // In parts, so that no record exceeds the archive's leaf limit.
                    let parts: Vec<&[u8]> = match content.is_empty() {
                        true => vec![&[][..]],
                        false => content
                            .chunks(vellum_record::ATTACHMENT_PART_BYTES)
                            .collect(),
                    };
                    let count = parts.len() as u32;
                    for (part, bytes) in parts.into_iter().enumerate() {
                        let record = Record {
                            kind: RecordKind::Attachment(Box::new(AttachedFile {
                                blob: file.blob.clone(),
                                name: file.name.clone(),
                                mime: file.mime.clone(),
                                size: file.size,
                                sha256: file.sha256.clone(),
                                content: STANDARD.encode(bytes),
                                part: part as u32,
                                parts: count,
                            })),
                            text: None,
                            // The archiver's own salt: the message's commits to the message.
                            salt: None,
                            ..message.clone()
                        };
                        self.emit(record)?;
                    }
                    let path = format!("/v1/blobs/{}/archived", file.blob);
                    self.request::<()>(Method::POST, &path, None::<&()>).await?;
                }
                // Passing troubles: the file stays queued for the next sync.
                Err(e @ Error::Network(_)) => return Err(e),
                Err(e) if e.is_code(codes::RATE_LIMITED) => return Err(e),
                Err(e) => {
                    tracing::error!(blob = %file.blob, error = %e, "a record's file cannot be archived");
                }
            }
            let conn = self.store.lock();
            conn.execute("DELETE FROM archive_files WHERE id = ?1", [id])
                .map_err(db)?;
            // The row held the file's key: secure_delete zeroed its page in the database, and
            // the WAL, which still holds the page as it was, is checkpointed and emptied.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(db)?;
        }
        Ok(())
    }

    /// A whole file in memory, decrypted and checked (the archiver seals it as one record).
    async fn fetch_whole(&self, file: &AttachmentRef) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (key, nonce) = file_key(file)?;
        let cipher = std::sync::Arc::new(FileCipher::new(&key, nonce));
        let chunks = vellum_store::NewBlob::chunk_count(file.size, file.chunk_size);
        let chunk_bytes = u64::from(file.chunk_size);
        let mut content = Zeroizing::new(Vec::new());
        let mut index = 0;
        while index < chunks {
            let path = format!(
                "/v1/blobs/{}/chunks/{index}?count={CHUNKS_PER_REQUEST}",
                file.blob
            );
            let body = self.raw_request(Method::GET, &path, Vec::new()).await?;
            let (opener, size, first) = (cipher.clone(), file.size, index);
            let (plain, next) = tokio::task::spawn_blocking(move || {
                let mut plain = Zeroizing::new(Vec::new());
                let mut index = first;
                let mut rest = &body[..];
                while !rest.is_empty() && index < chunks {
                    let len =
                        (size.saturating_sub(index * chunk_bytes).min(chunk_bytes) + 16) as usize;
                    if rest.len() < len {
                        break;
                    }
                    let (sealed, tail) = rest.split_at(len);
                    rest = tail;
                    let chunk =
                        Zeroizing::new(opener.open(index, index + 1 == chunks, sealed.to_vec())?);
                    plain.extend_from_slice(&chunk);
                    index += 1;
                }
                if !rest.is_empty() || index == first {
                    return Err(Error::Invalid(
                        "the server sent chunks of the wrong length".into(),
                    ));
                }
                Ok::<_, Error>((plain, index))
            })
            .await
            .map_err(|e| Error::Io(e.to_string()))??;
            content.extend_from_slice(&plain);
            index = next;
        }
        let digest = hex::encode(Sha256::digest(&*content));
        if !digest.eq_ignore_ascii_case(&file.sha256) {
            return Err(Error::Invalid(format!(
                "file {} does not match the SHA-256 its sender gave",
                file.name
            )));
        }
        Ok(content)
    }
}

/// A file's key and nonce prefix from its reference, with its chunk size checked.
fn file_key(file: &AttachmentRef) -> Result<(Zeroizing<[u8; 32]>, [u8; 7]), Error> {
    let bad = |what: &str| Error::Invalid(format!("the message's file {what}"));
    let key: [u8; 32] = STANDARD
        .decode(&file.key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("key is malformed"))?;
    let nonce: [u8; 7] = STANDARD
        .decode(&file.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("nonce is malformed"))?;
    if !(vellum_wire::MIN_CHUNK_SIZE..=vellum_wire::MAX_CHUNK_SIZE).contains(&file.chunk_size) {
        return Err(bad("chunk size is out of bounds"));
    }
    Ok((Zeroizing::new(key), nonce))
}

/// SHA-256 of a file, lowercase hex, read a chunk at a time.
fn hash_file(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(|e| io("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Opens (or creates) a `.part` file, keeps its whole chunks, hashes them again and
/// returns it positioned at their end, with how many there were.
fn resume_part(part: &Path, chunk_bytes: u64) -> Result<(std::fs::File, Sha256, u64), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Decrypted bytes: owner-only (0600), also a `.part` left by an older version.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(part)
        .map_err(|e| io("write", part, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("protect", part, e))?;
    let len = file.metadata().map_err(|e| io("read", part, e))?.len();
    let done = len / chunk_bytes;
    file.set_len(done * chunk_bytes)
        .map_err(|e| io("write", part, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk_bytes as usize];
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io("read", part, e))?;
    for _ in 0..done {
        file.read_exact(&mut buf).map_err(|e| io("read", part, e))?;
        hasher.update(&buf);
    }
    Ok((file, hasher, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decrypted files are the owner's only: the profile's `downloads` is 0700 (tightened
    /// if it was looser) and every file written there 0600.
    #[test]
    fn issue_12_downloads_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let loose = home.path().join("downloads");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = private_downloads(home.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let part = dir.join("a.txt.part");
        std::fs::write(&part, b"").unwrap();
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o644)).unwrap();
        resume_part(&part, 16).unwrap();
        assert_eq!(mode(&part), 0o600);
        let fresh = dir.join("b.txt.part");
        resume_part(&fresh, 16).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn issue_10_stream_chunks_open_only_in_place_and_as_sealed() {
        let cipher = FileCipher::new(&[7; 32], [1; 7]);
        let sealed = cipher.seal(0, false, b"first".to_vec()).unwrap();
        assert_eq!(sealed.len(), 5 + 16);
        assert_eq!(cipher.open(0, false, sealed.clone()).unwrap(), b"first");
        // Another position, a forged last flag or another key: refused.
        assert!(cipher.open(1, false, sealed.clone()).is_err());
        assert!(cipher.open(0, true, sealed.clone()).is_err());
        assert!(FileCipher::new(&[8; 32], [1; 7])
            .open(0, false, sealed.clone())
            .is_err());
        let mut flipped = sealed;
        flipped[0] ^= 1;
        assert!(cipher.open(0, false, flipped).is_err());
    }

    /// The nonce layout is aead 0.5's `StreamBE32`: prefix, big-endian counter, last flag.
    #[test]
    fn issue_10_stream_nonces_are_prefix_counter_and_last_flag() {
        let cipher = FileCipher::new(&[0; 32], [9, 8, 7, 6, 5, 4, 3]);
        let nonce = cipher.nonce(0x0102_0304, true).unwrap();
        assert_eq!(nonce.as_slice(), [9, 8, 7, 6, 5, 4, 3, 1, 2, 3, 4, 1]);
        assert!(cipher.nonce(1 << 32, false).is_err());
    }

    #[test]
    fn issue_10_sender_names_cannot_escape_the_directory() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("..\\x\\..\\evil.txt"), "evil.txt");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a\u{1b}[2Jb.txt"), "a_[2Jb.txt");
        assert_eq!(safe_name(""), "file");
        // Issue 10 review: a right-to-left override cannot disguise the extension.
        assert_eq!(safe_name("invoice\u{202e}fdp.exe"), "invoice_fdp.exe");
    }

    #[test]
    fn issue_12_a_browsers_names_for_a_saved_copy_are_recognised() {
        assert!(is_saved_variant("r.pdf", "r.pdf"));
        assert!(is_saved_variant("r (1).pdf", "r.pdf"));
        assert!(is_saved_variant("r (12).pdf.crdownload", "r.pdf"));
        assert!(is_saved_variant("r.pdf.crdownload", "r.pdf"));
        assert!(is_saved_variant("notes (2)", "notes"));
        assert!(!is_saved_variant("r (x).pdf", "r.pdf"));
        assert!(!is_saved_variant("r ().pdf", "r.pdf"));
        assert!(!is_saved_variant("rr.pdf", "r.pdf"));
        assert!(!is_saved_variant("r.pdf.txt", "r.pdf"));
    }

    #[test]
    fn issue_12_saved_copies_go_by_content_or_as_named_partials_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"the attachment";
        let sha = hex::encode(Sha256::digest(content));
        let write = |n: &str, b: &[u8]| std::fs::write(dir.path().join(n), b).unwrap();
        write("a.txt", content);
        write("a (2).txt", content);
        write("a (1).txt.crdownload", b"the attach");
        write("renamed.bin", content);
        // Review: a finished file that only shares the name is another's; so may an unnamed
        // partial be.
        write("a (1).txt", b"other bytes, same name");
        write("Unconfirmed 123.crdownload", b"part");
        write("unrelated.txt", b"keep me");
        write("same size!!!!!", b"not the file!!");
        shred_saved_copies(dir.path(), "a.txt", &sha, content.len() as u64);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "Unconfirmed 123.crdownload",
                "a (1).txt",
                "same size!!!!!",
                "unrelated.txt"
            ]
        );
    }

    #[test]
    fn issue_10_a_taken_name_gets_a_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join("r (1).pdf.part"), b"x").unwrap();
        // The name after the taken one, whose `.part` is resumed.
        assert_eq!(free_path(dir.path(), "r.pdf"), dir.path().join("r (1).pdf"));
        assert_eq!(free_path(dir.path(), "new"), dir.path().join("new"));
    }
}
