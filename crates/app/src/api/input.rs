//! What every handler of this part checks of its input: JSON bodies parsed into the
//! window's own errors (never axum's plain-text rejections), and chat ids that name a chat.

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use vellum_client::Client;
use vellum_http::ApiError;

/// The body as `T`, or 400 saying what is wrong with it (serde's message names the field,
/// never its value).
pub(crate) fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// An optional body: empty is `T::default()`.
pub(crate) fn json_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json(body)
}

/// `Some(value)` when the field is present, `Some(None)` when it is `null`, `None` when it is
/// absent (with `#[serde(default)]`): "null means off, absent unchanged".
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The chat `id` names exactly (the client also resolves titles and prefixes; the window's
/// ids are whole group ids), or 404.
pub(crate) fn chat_id(client: &Client, id: &str) -> Result<String, ApiError> {
    match client.store().chat(id) {
        Ok(Some(chat)) => Ok(chat.group_id),
        Ok(None) => Err(ApiError::not_found("no such chat")),
        Err(e) => Err(crate::error::client_error(e)),
    }
}

/// A user name as the org spells them: not empty, no spaces or control characters.
pub(crate) fn user_name(user: &str) -> Result<&str, ApiError> {
    let user = user.trim();
    if user.is_empty()
        || user.len() > 128
        || user.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::bad_request("a user name is empty or malformed"));
    }
    Ok(user)
}

/// A timer in seconds: at least one second, at most the protocol's maximum.
pub(crate) fn timer(what: &str, secs: Option<u64>) -> Result<Option<u64>, ApiError> {
    match secs {
        Some(0) => Err(ApiError::bad_request(format!(
            "{what} must be at least one second (null switches it off)"
        ))),
        Some(s) if s > vellum_wire::timer::MAX_TIMER_SECS => Err(ApiError::bad_request(format!(
            "{what} is longer than any timer can be"
        ))),
        other => Ok(other),
    }
}
