//! Submitting each new checkpoint to the archiver's witnesses (C2SP tlog-witness) and
//! storing their cosignatures with it. Runs as a task of its own: a slow, down or refusing
//! witness delays nothing but its own cosignature, and is retried at the next checkpoint.

use std::sync::Arc;
use std::time::Duration;

use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_witness::{AddCheckpoint, Submitted};

use crate::{ArchiverState, Error};

/// A witness the archiver submits to: its submission prefix and the key it cosigns with.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    pub url: String,
    pub verifier: CosignatureVerifier,
}

/// One request's limit: a hung witness must not hold back the next checkpoint's round.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Followed {
    target: WitnessTarget,
    /// The size of the checkpoint this witness last cosigned for us (0: none yet; a
    /// restarted archiver learns the real one from the witness's 409).
    cosigned: u64,
}

/// Every `interval`, submits the newest checkpoint to each witness that has not cosigned it.
pub(crate) async fn follow(
    state: Arc<ArchiverState>,
    targets: Vec<WitnessTarget>,
    quorum: usize,
    interval: Duration,
) {
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the witnesses' HTTP client");
            return;
        }
    };
    let mut witnesses: Vec<Followed> = targets
        .into_iter()
        .map(|target| Followed {
            target,
            cosigned: 0,
        })
        .collect();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = None;
    loop {
        tick.tick().await;
        let newest = match state.vault.call(|v| v.archive.latest_checkpoint()).await {
            Ok(Ok(Some(newest))) => newest,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the newest checkpoint for the witnesses");
                continue;
            }
            Err(_) => return, // the actor stopped: the process is going down
        };
        let (size, note) = newest;
        let mut cosigners = 0;
        for w in &mut witnesses {
            // Already on file (e.g. before a restart): nothing to ask.
            if w.target.verifier.verify(&note).is_ok() {
                w.cosigned = w.cosigned.max(size);
                cosigners += 1;
                continue;
            }
            match submit(&state, &http, w, size, &note).await {
                Ok(()) => cosigners += 1,
                Err(Error::Stopped) => return,
                Err(e) => tracing::warn!(
                    witness = w.target.verifier.name(),
                    url = %w.target.url,
                    size,
                    error = %e,
                    "no cosignature; retrying at the next checkpoint"
                ),
            }
        }
        if cosigners < quorum && reported != Some(size) {
            reported = Some(size);
            tracing::warn!(
                size,
                cosigners,
                quorum,
                "checkpoint below the witness quorum"
            );
        }
    }
}

/// Submits checkpoint `size` to one witness (once more from the size it says it holds, on a
/// 409) and stores its verified cosignature lines with the checkpoint.
async fn submit(
    state: &ArchiverState,
    http: &reqwest::Client,
    w: &mut Followed,
    size: u64,
    note: &str,
) -> Result<(), Error> {
    let mut old = w.cosigned.min(size);
    for attempt in 0..2 {
        let proof = state
            .vault
            .call(move |v| v.archive.consistency_proof(old, size))
            .await??;
        let request = AddCheckpoint {
            old_size: old,
            proof,
            note: note.to_owned(),
        };
        match vellum_witness::submit(http, &w.target.url, &request).await {
            Ok(Submitted::Cosigned(lines)) => {
                let verifier = w.target.verifier.clone();
                state
                    .vault
                    .call(move |v| v.archive.add_cosignature(size, &lines, &verifier))
                    .await??;
                w.cosigned = size;
                tracing::info!(witness = w.target.verifier.name(), size, "checkpoint cosigned");
                return Ok(());
            }
            Ok(Submitted::Conflict(held)) if attempt == 0 && held <= size => old = held,
            Ok(Submitted::Conflict(held)) => {
                return Err(Error::Setup(format!(
                    "the witness holds a checkpoint of size {held}, not consistent with ours of size {size}"
                )))
            }
            Err(e) => return Err(Error::Setup(e.to_string())),
        }
    }
    Err(Error::Setup(
        "the witness refused the size it asked for".into(),
    ))
}
