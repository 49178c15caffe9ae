//! What the archiver publishes through the delivery server (the custodians' binding goes
//! through `binding`): each new checkpoint with its consistency proof from the
//! one before (so that devices can monitor the log and `admin status` can tell a silent
//! archiver), and the senders' receipts, only ever against a published checkpoint that
//! carries the binding's witness quorum.

use std::time::{Duration, Instant};

use vellum_client::{Client, Method};
use vellum_record::ArchiverBinding;
use vellum_wire::{codes, CheckpointChain, CheckpointPush, PostReceipts, ReceiptFor};

use crate::actor::Vault;
use crate::{ArchiverState, Error};

/// How often an unchanged checkpoint is published again: the server's and the devices'
/// evidence that the archiver is alive when nothing new was archived.
const RENEW: Duration = Duration::from_secs(60);

/// The checkpoint publishing state of the ingest loop.
#[derive(Default)]
pub(crate) struct Publisher {
    /// The newest checkpoint the server accepted from this archiver: (size, note).
    pub(crate) published: Option<(u64, String)>,
    published_at: Option<Instant>,
    /// The size of the newest checkpoint the server holds, once asked.
    server_size: Option<u64>,
    /// The last refusal logged, so that one is not logged every poll.
    reported: Option<String>,
}

impl Publisher {
    /// Publishes the newest checkpoint (when it changed, or to renew it), then sends the receipts it makes deliverable.
    pub(crate) async fn step(
        &mut self,
        client: &Client,
        state: &ArchiverState,
    ) -> Result<(), Error> {
        let newest = state
            .vault
            .call(|v| {
                // Devices verify receipts with the bound log key only: nothing is published
                // until the server holds the binding of the key that signs the checkpoints.
                let binding = crate::binding::current_key_on_server(v)
                    .then(|| crate::binding::local_bindings(v).pop().map(|(_, b)| b))
                    .flatten();
                v.archive.latest_checkpoint().map(|c| (binding, c))
            })
            .await??;
        let (Some(binding), Some((size, note))) = newest else {
            return Ok(()); // nothing bound or nothing signed yet: nothing to publish
        };
        let renew = self.published_at.is_none_or(|t| t.elapsed() >= RENEW);
        if self.published.as_ref() != Some(&(size, note.clone())) || renew {
            match self.push(client, state, size, &note).await {
                Ok(()) => {
                    self.published = Some((size, note));
                    self.published_at = Some(Instant::now());
                    self.server_size = Some(size);
                    self.reported = None;
                }
                Err(e) => {
                    let why = e.to_string();
                    if self.reported.as_ref() != Some(&why) {
                        tracing::warn!(error = %why, size, "the server did not take the checkpoint");
                        self.reported = Some(why);
                    }
                }
            }
        }
        if let Some((size, note)) = self.published.clone() {
            send_receipts(client, state, &binding, size, note).await?;
        }
        Ok(())
    }

    async fn push(
        &mut self,
        client: &Client,
        state: &ArchiverState,
        size: u64,
        note: &str,
    ) -> Result<(), Error> {
        let old = match self.server_size {
            Some(old) => old,
            None => {
                let path = format!("/v1/records/checkpoints?from={size}&limit=1");
                let chain: CheckpointChain =
                    client.request(Method::GET, &path, None::<&()>).await?;
                chain.head_size.unwrap_or(0)
            }
        };
        if old > size {
            return Err(Error::Publish(format!(
                "the server holds a checkpoint of {old} leaves, newer than this archive's {size}: was the archive restored from an older copy?"
            )));
        }
        let proof = state
            .vault
            .call(move |v| v.archive.consistency_proof(old, size))
            .await??;
        let push = CheckpointPush {
            old_size: old,
            proof: proof.iter().map(hex::encode).collect(),
            note: note.to_owned(),
        };
        match client
            .request::<()>(Method::PUT, "/v1/records/checkpoint", Some(&push))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                // Another size than we thought: ask again next time.
                if matches!(&e, vellum_client::Error::Api { code, .. } if code == codes::CHECKPOINT_CONFLICT)
                {
                    self.server_size = None;
                }
                Err(e.into())
            }
        }
    }
}

/// Up to 100 receipts owed for records the published checkpoint `(size, note)` covers, and
/// their leaves; none unless it carries the binding's witness quorum (a receipt must stand
/// on its own before an auditor).
pub(crate) fn receipt_batch(
    v: &mut Vault,
    binding: &ArchiverBinding,
    size: u64,
    note: &str,
) -> Result<(PostReceipts, Vec<u64>), Error> {
    let mut batch = PostReceipts::default();
    let mut sent = Vec::new();
    if v.pending_receipts.pending.is_empty()
        || vellum_record::check_checkpoint(note, binding).is_err()
    {
        return Ok((batch, sent));
    }
    for p in v
        .pending_receipts
        .pending
        .iter()
        .filter(|p| p.leaf < size)
        .take(100)
    {
        let proof = v.archive.inclusion_proof(p.leaf, size)?;
        let receipt = vellum_wire::Receipt {
            chat_id: p.chat_id.clone(),
            seq: p.seq,
            message_id: p.message_id.clone(),
            leaf_index: p.leaf,
            leaf: v.archive.leaf(p.leaf)?.to_bytes().into(),
            proof: proof.iter().map(hex::encode).collect(),
            checkpoint: note.to_owned(),
        };
        batch.receipts.push(ReceiptFor {
            device_id: p.sender_device.clone(),
            receipt: serde_json::to_string(&receipt).expect("receipts serialise"),
        });
        sent.push(p.leaf);
    }
    Ok((batch, sent))
}

/// Receipts for every archived message the published checkpoint covers.
async fn send_receipts(
    client: &Client,
    state: &ArchiverState,
    binding: &ArchiverBinding,
    size: u64,
    note: String,
) -> Result<(), Error> {
    let binding = binding.clone();
    let (batch, sent) = state
        .vault
        .call(move |v| receipt_batch(v, &binding, size, &note))
        .await??;
    if batch.receipts.is_empty() {
        return Ok(());
    }
    let _: () = client
        .request(Method::POST, "/v1/receipts", Some(&batch))
        .await?;
    state
        .vault
        .call(move |v| v.pending_receipts.delivered(&sent))
        .await?
        .map_err(Error::Publish)
}
