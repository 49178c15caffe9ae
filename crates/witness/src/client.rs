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

/// A witness a log submits its checkpoints to: its submission prefix and the key it
/// cosigns with.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    pub url: String,
    pub verifier: vellum_tlog::cosignature::CosignatureVerifier,
}

/// Why [`cosign`] got no cosignature: the log could not make a proof, or the witness
/// refused or could not be reached.
#[derive(Debug)]
pub enum CosignError<E> {
    Proof(E),
    Witness(Error),
}

/// Asks `target` to cosign `note`, the log's checkpoint of `size`, proving consistency from
/// `cosigned` (the size it last cosigned for this log; 0 when not known, e.g. after a
/// restart). A 409 names the size the witness holds: the request is made once more from
/// there. `proof(old)` is the log's consistency proof from `old` to `size`. Returns the
/// witness's cosignature lines; the caller checks them with `target.verifier` as it adds
/// them to its note.
pub async fn cosign<E, F, P>(
    http: &reqwest::Client,
    target: &WitnessTarget,
    cosigned: u64,
    size: u64,
    note: &str,
    proof: P,
) -> Result<String, CosignError<E>>
where
    P: Fn(u64) -> F,
    F: std::future::Future<Output = Result<Vec<vellum_tlog::Hash>, E>>,
{
    let mut old = cosigned.min(size);
    for attempt in 0..2 {
        let request = AddCheckpoint {
            old_size: old,
            proof: proof(old).await.map_err(CosignError::Proof)?,
            note: note.to_owned(),
        };
        match submit(http, &target.url, &request).await {
            Ok(Submitted::Cosigned(lines)) => return Ok(lines),
            Ok(Submitted::Conflict(held)) if attempt == 0 && held <= size => old = held,
            Ok(Submitted::Conflict(held)) => {
                return Err(CosignError::Witness(Error::Refused {
                    status: 409,
                    message: format!(
                        "the witness holds a checkpoint of size {held}, not consistent with ours of size {size}"
                    ),
                }))
            }
            Err(e) => return Err(CosignError::Witness(e)),
        }
    }
    Err(CosignError::Witness(Error::Refused {
        status: 409,
        message: "the witness refused the size it asked for".into(),
    }))
}
