//! Submitting each new checkpoint to the archiver's witnesses (C2SP tlog-witness) and
//! storing their cosignatures with it. Runs as a task of its own: a slow, down or refusing
//! witness delays nothing but its own cosignature, and is retried at the next checkpoint.

use std::sync::Arc;
use std::time::Duration;

use vellum_witness::CosignError;

use crate::{ArchiverState, Error};

pub use vellum_witness::WitnessTarget;

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
    let proof = |old: u64| async move {
        state
            .vault
            .call(move |v| v.archive.consistency_proof(old, size))
            .await?
            .map_err(Error::from)
    };
    let lines = vellum_witness::cosign(http, &w.target, w.cosigned, size, note, proof)
        .await
        .map_err(|e| match e {
            CosignError::Proof(e) => e,
            CosignError::Witness(e) => Error::Witness(e.to_string()),
        })?;
    let verifier = w.target.verifier.clone();
    state
        .vault
        .call(move |v| v.archive.add_cosignature(size, &lines, &verifier))
        .await??;
    w.cosigned = size;
    tracing::info!(
        witness = w.target.verifier.name(),
        size,
        "checkpoint cosigned"
    );
    Ok(())
}

#[cfg(test)]
mod tests {

    use vellum_archive::{Archive, Leaf};
    use vellum_witness::Witness;

    use super::*;
    use crate::{ArchiveHandle, OwedReceipts, Vault};

    fn state(dir: &std::path::Path) -> Arc<ArchiverState> {
        let signer = vellum_tlog::NoteSigner::new("test.example/log", &[5; 32]).unwrap();
        let public = vellum_records::generate(3, 2, "records.test/vellum")
            .unwrap()
            .public;
        let vault = ArchiveHandle::spawn(
            Vault::sealed(
                Archive::open(dir, signer).unwrap(),
                public,
                OwedReceipts::in_memory(),
            )
            .unwrap(),
        )
        .unwrap();
        Arc::new(ArchiverState {
            vault,
            settings: Default::default(),
            console: Default::default(),
        })
    }

    /// Appends `n` leaves and checkpoints them: (size, note).
    async fn grow(state: &ArchiverState, n: i64) -> (u64, String) {
        state
            .vault
            .call(move |v| {
                for i in 0..n {
                    v.archive
                        .append(Leaf::Access {
                            time: i,
                            action: "test".into(),
                            detail: format!("{i}"),
                        })
                        .unwrap();
                }
                (v.archive.size(), v.archive.checkpoint().unwrap())
            })
            .await
            .unwrap()
    }

    async fn stored(state: &ArchiverState) -> String {
        let newest = state.vault.call(|v| v.archive.latest_checkpoint());
        newest.await.unwrap().unwrap().unwrap().1
    }

    #[tokio::test]
    async fn cosignatures_are_stored_a_conflict_is_resolved_once_and_a_down_witness_changes_nothing(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir.path().join("archive"));
        let log_key = state
            .vault
            .call(|v| v.archive.verifier_key())
            .await
            .unwrap();
        let witness = Arc::new(Witness::open(&dir.path().join("witness"), &[log_key]).unwrap());
        let verifier = witness.verifier();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(vellum_witness::serve(
            listener,
            witness,
            std::future::pending(),
        ));
        let http = reqwest::Client::new();
        let mut followed = Followed {
            target: WitnessTarget {
                url,
                verifier: verifier.clone(),
            },
            cosigned: 0,
        };

        let (size, note) = grow(&state, 3).await;
        submit(&state, &http, &mut followed, size, &note)
            .await
            .unwrap();
        assert_eq!(followed.cosigned, 3);
        let first = stored(&state).await;
        assert!(first.starts_with(&note) && first.len() > note.len());
        assert_eq!(verifier.verify(&first).unwrap().0.size, 3);

        // A restarted archiver starts from 0: the witness's 409 names 3, and the retry
        // from there with the consistency proof is cosigned.
        followed.cosigned = 0;
        let (size, note) = grow(&state, 4).await;
        submit(&state, &http, &mut followed, size, &note)
            .await
            .unwrap();
        assert_eq!(followed.cosigned, 7);
        assert_eq!(verifier.verify(&stored(&state).await).unwrap().0.size, 7);

        // A witness that is down: an error for the log line, and the checkpoint untouched.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (size, note) = grow(&state, 1).await;
        let mut down = Followed {
            target: WitnessTarget {
                url: closed_url,
                verifier: verifier.clone(),
            },
            cosigned: 7,
        };
        assert!(submit(&state, &http, &mut down, size, &note).await.is_err());
        assert_eq!(down.cosigned, 7);
        assert_eq!(stored(&state).await, note);
    }
}
