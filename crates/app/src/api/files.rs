//! Files: staging an upload from the page (`POST /api/uploads`), sending a message with
//! staged files (`send_with_uploads`, called by `POST /api/chats/{id}/messages`), and
//! serving a file of a message (`GET /api/chats/{id}/messages/{mid}/files/{index}`).
//!
//! A staged file is plaintext: it lives in the profile (`HOME/app-uploads/<id>/<name>`,
//! directories 0700, the file 0600), is overwritten and unlinked after its message is sent,
//! after [`STAGED_TTL`], or at the next start. A served file is first downloaded and checked
//! into the profile (tracked by the client's shredder); the copy the browser saves in its
//! download folder is registered with the same shredder (`Client::watch_saved_copy`), which
//! removes it with the message.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::broadcast;
use vellum_client::{Client, MessageRow, OutgoingMessage, SavedCopy};
use vellum_http::ApiError;

use super::input;
use crate::device::Device;
use crate::error::client_error;
use crate::events::AppEvent;
use crate::AppState;

/// The largest upload the window takes, whatever the org allows.
pub const HARD_CAP: u64 = 1 << 30;
/// How long a staged file waits for its message.
pub const STAGED_TTL: Duration = Duration::from_secs(3600);
/// Where uploads are staged, inside the profile.
pub const STAGING_DIR: &str = "app-uploads";
/// Most files one message carries.
const MAX_FILES: usize = 20;

/// The header naming an upload's file (percent-encoded UTF-8).
pub const FILE_NAME_HEADER: &str = "x-file-name";

/// The folder the app's browser saves downloads into (see `launch`).
pub fn browser_downloads(home: &FsPath) -> PathBuf {
    home.join("browser").join("Downloads")
}

fn staging(home: &FsPath) -> PathBuf {
    home.join(STAGING_DIR)
}

/// Shreds one staged upload's directory and what is in it.
fn remove_staged(dir: &FsPath) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                vellum_client::shred_file(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes staged uploads: all of them (`older_than` `None`, at start), or those older.
pub fn clear_staging(home: &FsPath, older_than: Option<Duration>) {
    let Ok(entries) = std::fs::read_dir(staging(home)) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = match older_than {
            None => true,
            Some(ttl) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age >= ttl),
        };
        if old {
            remove_staged(&entry.path());
        }
    }
}

/// The profiles whose leftovers this process removed already.
static CLEARED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Leftovers of an earlier run go once per process, at the window's first look at its
/// session (or first upload); those older than [`STAGED_TTL`] at every later one.
pub(crate) fn tidy_staging(home: &FsPath) {
    let first = {
        let mut cleared = CLEARED.lock().unwrap_or_else(|p| p.into_inner());
        cleared
            .get_or_insert_with(HashSet::new)
            .insert(home.to_owned())
    };
    clear_staging(home, (!first).then_some(STAGED_TTL));
}

/// How often the live loop looks for staged uploads older than [`STAGED_TTL`].
pub const STAGED_SWEEP: Duration = Duration::from_secs(60);

/// Whether the live loop's shredder tick sweeps staged uploads now (`clear_staging` with
/// [`STAGED_TTL`]): at most once per [`STAGED_SWEEP`]; `last` is when it last did.
pub(crate) fn sweep_due(last: &mut Option<std::time::Instant>) -> bool {
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < STAGED_SWEEP) {
        return false;
    }
    *last = Some(now);
    true
}

fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Invisible and direction-changing characters that disguise an extension.
fn is_disguising(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// The upload's file name from `X-File-Name`: one plain name, no directory part.
pub(crate) fn file_name(headers: &HeaderMap) -> Result<String, ApiError> {
    let raw = headers
        .get(FILE_NAME_HEADER)
        .ok_or_else(|| ApiError::bad_request("name the file in the X-File-Name header"))?
        .to_str()
        .map_err(|_| ApiError::bad_request("X-File-Name is percent-encoded UTF-8"))?;
    let name = percent_decode(raw)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("X-File-Name is percent-encoded UTF-8"))?;
    let name = name.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request("a file name is 1 to 255 bytes"));
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(ApiError::bad_request(
            "a file name has no directory part (no / or \\)",
        ));
    }
    if name.starts_with('.') || name.chars().any(|c| c.is_control() || is_disguising(c)) {
        return Err(ApiError::bad_request(
            "a file name may not be hidden or hold control or direction characters",
        ));
    }
    Ok(name.to_owned())
}

fn random_id() -> String {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).expect("the system's random source");
    hex::encode(raw)
}

pub(crate) fn upload_id(id: &str) -> Result<&str, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("malformed upload id"));
    }
    Ok(id)
}

/// The staged file of upload `id`.
fn staged_file(home: &FsPath, id: &str) -> Result<PathBuf, ApiError> {
    let dir = staging(home).join(upload_id(id)?);
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|mut entries| entries.find_map(|e| e.ok().map(|e| e.path())))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown upload {id}: it was sent already or has expired; attach the file again"
            ))
        })
}

#[derive(Debug, Serialize)]
pub struct UploadView {
    pub upload_id: String,
    pub name: String,
    pub size: u64,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("the file is larger than the {limit} bytes allowed"),
    )
}

/// `POST /api/uploads`: the raw body is the file; `X-File-Name` names it.
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadView>), ApiError> {
    let name = file_name(&headers)?;
    let org_max = state
        .device
        .run(async |device: &mut Device| {
            let client = device.client()?;
            Ok(super::policy::org_policy(client)
                .await
                .map(|p| p.max_file_bytes))
        })
        .await?;
    let limit = org_max.unwrap_or(HARD_CAP).min(HARD_CAP);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let home = state.home.as_ref().clone();
    tidy_staging(&home);
    let id = random_id();
    let dir = staging(&home).join(&id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot create the upload staging directory");
            ApiError::internal()
        })?;
    let path = dir.join(&name);
    let written = write_staged(&path, body, limit).await;
    match written {
        Ok(size) => Ok((
            StatusCode::CREATED,
            Json(UploadView {
                upload_id: id,
                name,
                size,
            }),
        )),
        Err(e) => {
            remove_staged(&dir);
            Err(e)
        }
    }
}

/// `DELETE /api/uploads/{id}`: the page dropped a staged file before sending it; it is
/// overwritten and unlinked now rather than at the end of [`STAGED_TTL`].
pub async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let dir = staging(&state.home).join(upload_id(&id)?);
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(ApiError::not_found(
            "no such upload: it was sent already or has expired",
        ));
    }
    tokio::task::spawn_blocking(move || remove_staged(&dir))
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn write_staged(path: &FsPath, body: Body, limit: u64) -> Result<u64, ApiError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot stage an upload");
            ApiError::internal()
        })?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|_| ApiError::bad_request("the upload was cut off"))?;
        size = size.saturating_add(chunk.len() as u64);
        if size > limit {
            return Err(too_large(limit));
        }
        file.write_all(&chunk).map_err(|e| {
            tracing::warn!(error = %e, "cannot write a staged upload");
            ApiError::internal()
        })?;
    }
    Ok(size)
}

/// Sends `message` with the staged files `upload_ids` to `chat` (`Client::send_files`):
/// each file's upload to the delivery server is reported as `progress` events; the staged
/// files are shredded once the message is sent (kept on failure, for a retry, until
/// [`STAGED_TTL`]).
pub(crate) async fn send_with_uploads(
    client: &mut Client,
    chat: &str,
    message: OutgoingMessage,
    upload_ids: &[String],
    progress: broadcast::Sender<AppEvent>,
) -> Result<MessageRow, ApiError> {
    if upload_ids.len() > MAX_FILES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_FILES} files in one message"
        )));
    }
    let home = client.home().to_owned();
    let mut files = Vec::with_capacity(upload_ids.len());
    for id in upload_ids {
        let path = staged_file(&home, id)?;
        if files.contains(&path) {
            return Err(ApiError::bad_request(format!(
                "upload {id} is attached twice"
            )));
        }
        files.push(path);
    }
    // The client reports each file's bytes in turn; a file is done at `done == total`.
    let mut current = 0usize;
    let mut finished = false;
    let ids = upload_ids.to_vec();
    let mut report = move |done: u64, total: u64| {
        if finished && current + 1 < ids.len() {
            current += 1;
        }
        finished = done >= total;
        if let Some(id) = ids.get(current) {
            let _ = progress.send(AppEvent::Progress {
                upload_id: id.clone(),
                done,
                total,
            });
        }
    };
    let sent = client
        .send_files(chat, message, &files, &mut report)
        .await
        .map_err(client_error)?;
    for path in &files {
        if let Some(dir) = path.parent() {
            remove_staged(dir);
        }
    }
    Ok(sent)
}

/// A content type the browser will not render as a page: the common document and image
/// types as they are, everything else (HTML, SVG, XML, scripts) as opaque bytes.
pub(crate) fn served_type(mime: &str) -> &'static str {
    const SAFE: [&str; 12] = [
        "text/plain",
        "text/csv",
        "application/pdf",
        "application/json",
        "application/zip",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/octet-stream",
    ];
    let base = mime.split(';').next().unwrap_or_default().trim();
    SAFE.into_iter()
        .find(|s| s.eq_ignore_ascii_case(base))
        .unwrap_or("application/octet-stream")
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266 / 5987).
pub(crate) fn disposition(name: &str) -> String {
    let mut encoded = String::new();
    for b in name.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
        if plain {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

struct Served {
    path: PathBuf,
    name: String,
    mime: String,
    size: u64,
}

/// `GET /api/chats/{id}/messages/{mid}/files/{index}`: the file's bytes, as an attachment.
pub async fn download(
    State(state): State<AppState>,
    Path((id, mid, index)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::bad_request("a file index is a number"))?;
    if mid.is_empty()
        || mid.len() > 128
        || !mid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::bad_request("malformed message id"));
    }
    let saved_in = browser_downloads(&state.home);
    let served = state
        .device
        .run(async move |device: &mut Device| {
            let client = device.client()?;
            let group_id = input::chat_id(client, &id)?;
            let message = client
                .store()
                .message(&group_id, &mid)
                .map_err(client_error)?
                .ok_or_else(|| ApiError::not_found("no such message"))?;
            let sealed = message.burn_secs.is_some()
                && message.read_at.is_none()
                && message.sender_user != client.user();
            if sealed {
                return Err(ApiError::new(
                    StatusCode::LOCKED,
                    "sealed",
                    "open the message first (tap to read)",
                ));
            }
            let mime = message
                .extra
                .attachments
                .get(index)
                .map(|a| a.mime.clone())
                .ok_or_else(|| ApiError::not_found("no such file in this message"))?;
            let file = client
                .download_file(&group_id, &mid, index, &mut |_, _| {})
                .await
                .map_err(client_error)?;
            // The browser's copy: tracked before a byte leaves, shredded with the message.
            client
                .watch_saved_copy(&SavedCopy {
                    dir: &saved_in,
                    name: &file.name,
                    sha256: &file.sha256,
                    size: file.size,
                    group_id: &group_id,
                    message_id: &mid,
                })
                .map_err(client_error)?;
            Ok(Served {
                path: file.path,
                name: file.name,
                mime,
                size: file.size,
            })
        })
        .await?;
    let file = tokio::fs::File::open(&served.path).await.map_err(|e| {
        tracing::warn!(error = %e, "a downloaded file cannot be read");
        ApiError::not_found("the file is gone")
    })?;
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(served_type(&served.mime)),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition(&served.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served.size));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(raw: &str) -> Result<String, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(FILE_NAME_HEADER, HeaderValue::from_str(raw).unwrap());
        file_name(&headers)
    }

    #[test]
    fn issue_12_upload_names_are_percent_decoded_and_plain() {
        assert_eq!(named("r%C3%A9sum%C3%A9%20v2.pdf").unwrap(), "résumé v2.pdf");
        assert_eq!(named("plain.txt").unwrap(), "plain.txt");
        for bad in [
            "a%2Fb",
            "..%5Cb",
            "..",
            ".env",
            "a%0Ab",
            "%E2%80%AEexe.pdf",
            "%C3",
            "%4",
        ] {
            assert!(named(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn issue_12_an_upload_over_the_limit_is_413_and_its_bytes_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let err = write_staged(&path, Body::from(vec![7u8; 101]), 100)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = dir.path().join("ok.bin");
        assert_eq!(
            write_staged(&ok, Body::from(vec![7u8; 100]), 100)
                .await
                .unwrap(),
            100
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&ok).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn issue_12_served_files_never_render_as_pages() {
        for mime in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "TEXT/HTML; charset=utf-8",
            "application/javascript",
        ] {
            assert_eq!(served_type(mime), "application/octet-stream", "{mime}");
        }
        assert_eq!(served_type("image/png"), "image/png");
        assert_eq!(served_type("application/pdf"), "application/pdf");
    }

    #[test]
    fn issue_12_content_disposition_is_an_attachment_with_the_utf8_name() {
        let d = disposition("r\u{e9}sum\u{e9} \"1\".pdf");
        assert!(d.starts_with("attachment; "), "{d}");
        assert!(
            d.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf"),
            "{d}"
        );
        assert!(!d.contains("\"1\""), "{d}");
    }

    #[test]
    fn issue_12_leftover_staged_uploads_are_removed_at_start() {
        let home = tempfile::tempdir().unwrap();
        let dir = staging(home.path()).join("0".repeat(32));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("left.txt"), b"plaintext left over").unwrap();
        clear_staging(home.path(), Some(STAGED_TTL));
        assert!(dir.join("left.txt").exists(), "a fresh upload stays");
        clear_staging(home.path(), None);
        assert!(!dir.exists());
    }

    /// The live loop's sweep takes uploads older than the TTL, and runs at most once a
    /// minute however often its tick comes.
    #[test]
    fn issue_12_the_live_sweep_removes_old_staged_uploads_once_a_minute() {
        let home = tempfile::tempdir().unwrap();
        let stage = |name: &str| {
            let dir = staging(home.path()).join(name.repeat(32));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f.txt"), b"staged").unwrap();
            let old = SystemTime::now() - STAGED_TTL - Duration::from_secs(60);
            std::fs::File::open(&dir)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_modified(old))
                .unwrap();
            dir
        };
        let fresh = staging(home.path()).join("f".repeat(32));
        std::fs::create_dir_all(&fresh).unwrap();
        let old = stage("a");
        let mut last = None;
        assert!(sweep_due(&mut last));
        clear_staging(home.path(), Some(STAGED_TTL));
        assert!(!old.exists(), "older than the TTL: gone");
        assert!(fresh.exists(), "a fresh upload stays");
        assert!(!sweep_due(&mut last), "not twice a minute");
        last = Some(std::time::Instant::now() - STAGED_SWEEP);
        assert!(sweep_due(&mut last));
    }
}
