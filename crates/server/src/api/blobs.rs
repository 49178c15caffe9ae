//! Attachment blobs (issue 10): end-to-end encrypted files, stored as numbered ciphertext
//! chunks of one group. Only the group's current members see them; only the uploading
//! device adds chunks (in order, each of the exact length the declared size implies); the
//! uploader's user deletes them; the org's archiver says when it has fetched a record one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use vellum_http::{codes, ApiError, Json, Path, Query};
use vellum_store::{BlobInfo, NewBlob};
use vellum_wire::{BlobCreated, BlobStatus, CreateBlob, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

use super::{ErrorBody, St};
use crate::auth::AuthedDevice;

fn unknown_blob() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such file")
}

fn not_member() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        codes::NOT_MEMBER,
        "device is not a member of this file's chat",
    )
}

fn incomplete() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        codes::BLOB_INCOMPLETE,
        "the file's upload is not complete",
    )
}

/// Starts the upload of one encrypted file to a chat the device is a member of, within the
/// org's file size limit, its user's quota and the org's rule on files in the chat's class.
#[utoipa::path(post, path = "/v1/groups/{group_id}/blobs", tag = "blobs",
    params(("group_id" = String, Path, description = "The group id, hex")),
    request_body = CreateBlob,
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 201, description = "Created: send its chunks, then complete it", body = BlobCreated),
        (status = 403, description = "`files_forbidden`: the org allows no files in this chat's class; `not_member`", body = ErrorBody),
        (status = 413, description = "`file_too_large` or `quota_exceeded`", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn create(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(group_id): Path<String>,
    Json(req): Json<CreateBlob>,
) -> Result<impl IntoResponse, ApiError> {
    let group =
        state.store.group(&group_id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, codes::UNKNOWN_CHAT, "no such chat")
        })?;
    if !state.store.is_member(&group_id, &me.device_id).await? {
        return Err(not_member());
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
        return Err(ApiError::bad_request(format!(
            "chunk_size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes"
        )));
    }
    if req.expires_at.is_some_and(|t| t <= 0) {
        return Err(ApiError::bad_request(
            "expires_at must be a positive Unix time in milliseconds",
        ));
    }
    let org = state.store.org_policy().await?;
    files_allowed(&org, group.record)?;
    if req.size > org.max_file_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::FILE_TOO_LARGE,
            format!(
                "files are limited to {} bytes; this one has {}",
                org.max_file_bytes, req.size
            ),
        ));
    }
    // As for messages, the server only ever shortens a file's life.
    let now = state.now_millis();
    let limit =
        |secs: Option<u64>| secs.map(|s| now.saturating_add((s as i64).saturating_mul(1000)));
    let expires_at = [
        req.expires_at,
        limit(group.timers.expire_secs),
        limit(org.max_expire_secs),
    ]
    .into_iter()
    .flatten()
    .min();
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal())?;
    let blob_id = hex::encode(raw);
    let chunks = NewBlob::chunk_count(req.size, req.chunk_size);
    state
        .store
        .create_blob(NewBlob {
            blob_id: blob_id.clone(),
            group_id,
            uploader_device: me.device_id,
            size: req.size,
            chunk_size: req.chunk_size,
            record: group.record,
            expires_at,
            created_at: now,
            user_quota: org.user_quota_bytes,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(BlobCreated {
            blob: blob_id,
            chunks,
        }),
    ))
}

/// The blob, if the device may see it: a current member of its chat (or its uploader), and
/// not deleted for everyone (the org's archiver still sees a record it has to fetch).
/// The org's rule on files in a chat's class.
fn files_allowed(org: &vellum_wire::OrgPolicy, record: bool) -> Result<(), ApiError> {
    let allowed = if record {
        org.files_in_record
    } else {
        org.files_in_transitory
    };
    if allowed {
        return Ok(());
    }
    let class = if record { "record" } else { "transitory" };
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        codes::FILES_FORBIDDEN,
        format!("this organisation allows no files in {class} chats"),
    ))
}

/// A blob its uploading device is still sending: the device must still be a member of the
/// chat and the org must still allow files there (issue 10 review: a removed member, or a
/// policy changed mid-upload, could finish an upload begun before).
async fn own_upload(
    state: &crate::state::AppState,
    blob_id: &str,
    me: &AuthedDevice,
    what: &str,
) -> Result<BlobInfo, ApiError> {
    let blob = state.store.blob(blob_id).await?.ok_or_else(unknown_blob)?;
    if blob.uploader_device != me.device_id {
        return Err(ApiError::forbidden(format!(
            "only the device that started the upload {what}"
        )));
    }
    if !state.store.is_member(&blob.group_id, &me.device_id).await? {
        return Err(not_member());
    }
    files_allowed(&state.store.org_policy().await?, blob.record)?;
    Ok(blob)
}

async fn visible(state: &St, blob_id: &str, me: &AuthedDevice) -> Result<BlobInfo, ApiError> {
    let State(state) = state;
    let blob = state.store.blob(blob_id).await?.ok_or_else(unknown_blob)?;
    let archiver = state.store.org_policy().await?.archiver_device;
    let is_archiver = archiver.as_deref() == Some(me.device_id.as_str());
    if blob.deleted && !is_archiver {
        return Err(unknown_blob());
    }
    if blob.uploader_device != me.device_id
        && !state.store.is_member(&blob.group_id, &me.device_id).await?
    {
        return Err(not_member());
    }
    Ok(blob)
}

/// Where an upload stands: which chunks are stored (they are taken in order), so an
/// interrupted upload resumes at `present`.
#[utoipa::path(get, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(("blob_id" = String, Path, description = "The blob id")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The upload's state", body = BlobStatus),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn status(
    state: St,
    Extension(me): Extension<AuthedDevice>,
    Path(blob_id): Path<String>,
) -> Result<Json<BlobStatus>, ApiError> {
    let blob = visible(&state, &blob_id, &me).await?;
    Ok(Json(BlobStatus {
        blob: blob.blob_id,
        group_id: blob.group_id,
        size: blob.size,
        chunk_size: blob.chunk_size,
        chunks: blob.chunks,
        present: blob.present,
        complete: blob.finished,
        expires_at: blob.expires_at,
    }))
}

/// Stores chunk `index` (ciphertext, 16 bytes longer than its plaintext), or consecutive
/// chunks from `index` in one body (fewer requests; the lengths say where each ends). Only
/// the uploading device sends chunks, each once, in order.
#[utoipa::path(put, path = "/v1/blobs/{blob_id}/chunks/{index}", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "The blob id"),
        ("index" = u64, Path, description = "The chunk's number, from 0"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "`chunk_size`: not the length this chunk must have", body = ErrorBody),
        (status = 409, description = "`chunk_out_of_order` (resume from the status's `present`), \
            `chunk_exists`, `blob_complete`", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error (507: disk full)", body = ErrorBody),
    ))]
pub async fn put_chunk(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path((blob_id, index)): Path<(String, u64)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let blob = own_upload(&state, &blob_id, &me, "sends its chunks").await?;
    let complete = || {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::BLOB_COMPLETE,
            "the file's upload is complete",
        )
    };
    let exists = || {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::CHUNK_EXISTS,
            format!("chunk {index} is already stored"),
        )
    };
    let out_of_order = |present: u64| {
        ApiError::new(
            StatusCode::CONFLICT,
            codes::CHUNK_OUT_OF_ORDER,
            format!("chunks are taken in order: chunk {present} comes next"),
        )
    };
    if blob.finished {
        return Err(complete());
    }
    let Some(want) = blob.chunk_len(index) else {
        return Err(ApiError::bad_request(format!(
            "this file has {} chunks, numbered from 0",
            blob.chunks
        )));
    };
    if index < blob.present {
        return Err(exists());
    }
    if index > blob.present {
        return Err(out_of_order(blob.present));
    }
    // The body is one chunk or several consecutive ones: their lengths follow from the
    // blob's size, so it splits exactly or is refused.
    let mut chunks = Vec::new();
    let mut rest = &body[..];
    let mut next = index;
    let mut want = want;
    loop {
        if (rest.len() as u64) < want {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::CHUNK_SIZE,
                format!(
                    "{} bytes are not whole chunks from chunk {index}: chunk {next} must have \
                     {want} bytes of ciphertext",
                    body.len()
                ),
            ));
        }
        let (chunk, tail) = rest.split_at(want as usize);
        chunks.push(chunk.to_vec());
        rest = tail;
        next += 1;
        match (rest.is_empty(), blob.chunk_len(next)) {
            (true, _) => break,
            (false, Some(len)) => want = len,
            (false, None) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::CHUNK_SIZE,
                    format!(
                        "the body runs past the file's last chunk ({})",
                        blob.chunks - 1
                    ),
                ))
            }
        }
    }
    // The store checks the order again inside its transaction (two racing requests).
    match state.store.put_blob_chunks(&blob_id, index, chunks).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(vellum_store::Error::Conflict(_)) => Err(exists()),
        Err(vellum_store::Error::Refused(_)) => {
            let now = state.store.blob(&blob_id).await?.ok_or_else(unknown_blob)?;
            Err(if now.finished {
                complete()
            } else {
                out_of_order(now.present)
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Completes an upload once every chunk is stored; members may download it from then on.
#[utoipa::path(post, path = "/v1/blobs/{blob_id}/complete", tag = "blobs",
    params(("blob_id" = String, Path, description = "The blob id")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Complete"),
        (status = 409, description = "`blob_incomplete`: chunks are missing", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn complete(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(blob_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    own_upload(&state, &blob_id, &me, "completes it").await?;
    match state.store.finish_blob(&blob_id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(vellum_store::Error::Refused(message)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::BLOB_INCOMPLETE,
            message,
        )),
        Err(e) => Err(e.into()),
    }
}

/// How many chunks one download request may ask for.
pub const MAX_CHUNKS_PER_REQUEST: u64 = 64;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ChunkQuery {
    /// Consecutive chunks from `index` to return in one body (1 to 64; default 1).
    count: Option<u64>,
}

/// Chunks of a complete file's ciphertext from `index` (one, or `count` consecutive ones
/// concatenated, fewer at the file's end), for a current member of its chat.
#[utoipa::path(get, path = "/v1/blobs/{blob_id}/chunks/{index}", tag = "blobs",
    params(
        ("blob_id" = String, Path, description = "The blob id"),
        ("index" = u64, Path, description = "The chunk's number, from 0"),
        ChunkQuery,
    ),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 200, description = "The chunks' ciphertext", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 409, description = "`blob_incomplete`: not uploaded completely yet", body = ErrorBody),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn get_chunk(
    state: St,
    Extension(me): Extension<AuthedDevice>,
    Path((blob_id, index)): Path<(String, u64)>,
    Query(query): Query<ChunkQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let count = query.count.unwrap_or(1);
    if !(1..=MAX_CHUNKS_PER_REQUEST).contains(&count) {
        return Err(ApiError::bad_request(format!(
            "count must be 1 to {MAX_CHUNKS_PER_REQUEST}"
        )));
    }
    let blob = visible(&state, &blob_id, &me).await?;
    if !blob.finished {
        return Err(incomplete());
    }
    if index >= blob.chunks {
        return Err(ApiError::not_found(format!(
            "this file has {} chunks, numbered from 0",
            blob.chunks
        )));
    }
    // A response holds at most what a request may (`max_body_bytes`), whatever `count`
    // asks: one member's parallel downloads must not hold the server's memory hostage. The
    // client takes the chunks it got and asks again from the next one.
    let limit = state.0.config.max_body_bytes;
    let mut body = Vec::new();
    for i in index..(index + count).min(blob.chunks) {
        let data = state
            .0
            .store
            .blob_chunk(&blob_id, i)
            .await?
            .ok_or_else(unknown_blob)?;
        if !body.is_empty() && body.len() + data.len() > limit {
            break;
        }
        body.extend_from_slice(&data);
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body))
}

/// Deletes a file for everyone (a device of its uploader's user). In a record chat a file
/// the archiver has not fetched yet is hidden now and dropped once it has.
#[utoipa::path(delete, path = "/v1/blobs/{blob_id}", tag = "blobs",
    params(("blob_id" = String, Path, description = "The blob id")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): St,
    Extension(me): Extension<AuthedDevice>,
    Path(blob_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_blob(&blob_id, &me.device_id)
        .await
        .map_err(|e| match e {
            vellum_store::Error::NotFound(_) => unknown_blob(),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The org's archiver fetched and sealed a record file: it may now go at its expiry.
#[utoipa::path(post, path = "/v1/blobs/{blob_id}/archived", tag = "blobs",
    params(("blob_id" = String, Path, description = "The blob id")),
    security(("device_id" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])),
    responses(
        (status = 204, description = "Noted"),
        (status = "4XX", description = "Refused (see code)", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    ))]
pub async fn archived(
    state: St,
    Extension(me): Extension<AuthedDevice>,
    Path(blob_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let archiver = state.0.store.org_policy().await?.archiver_device;
    if archiver.as_deref() != Some(me.device_id.as_str()) {
        return Err(ApiError::forbidden(
            "only the org's archiver says it has archived a file",
        ));
    }
    let blob = visible(&state, &blob_id, &me).await?;
    if !blob.finished {
        return Err(incomplete());
    }
    state.0.store.mark_blob_archived(&blob_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
