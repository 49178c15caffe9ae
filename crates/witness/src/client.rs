//! The log's side of `add-checkpoint`.

use crate::{AddCheckpoint, Error};

/// The error with its causes: reqwest's own message alone does not say what failed.
fn network(e: reqwest::Error) -> Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Error::Network(message)
}

/// What a witness answered to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// 200: its cosignature lines, to append to the checkpoint note.
    Cosigned(String),
    /// 409: the size of the checkpoint the witness holds; resubmit with a proof from it.
    Conflict(u64),
}

/// Submits `request` to the witness at `prefix` (its submission prefix, e.g.
/// `http://127.0.0.1:7482`). Other refusals are [`Error::Refused`] with the witness's reason.
/// The caller checks the returned lines against the witness key it trusts.
pub async fn submit(
    http: &reqwest::Client,
    prefix: &str,
    request: &AddCheckpoint,
) -> Result<Submitted, Error> {
    let url = format!("{}/add-checkpoint", prefix.trim_end_matches('/'));
    let response = http
        .post(url)
        .body(request.to_body())
        .send()
        .await
        .map_err(network)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(network)?;
    match status {
        200 => Ok(Submitted::Cosigned(body)),
        409 => body
            .trim_end_matches('\n')
            .parse()
            .map(Submitted::Conflict)
            .map_err(|_| Error::Refused {
                status,
                message: format!("409 without a size: {body:?}"),
            }),
        _ => Err(Error::Refused {
            status,
            message: body.trim_end().to_owned(),
        }),
    }
}
