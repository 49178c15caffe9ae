//! What the archiver publishes through the delivery server: the custodians' binding of it
//! (signed at the first unseal), each new checkpoint with its consistency proof from the
//! one before (so that devices can monitor the log and `admin status` can tell a silent
//! archiver), and the senders' receipts, only ever against a published checkpoint that
//! carries the binding's witness quorum.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vellum_client::{Client, Method};
use vellum_record::{ArchiverBinding, RecordsPublic, SignedBinding};
use vellum_wire::{
    codes, CheckpointChain, CheckpointPush, PostReceipts, ReceiptFor, RecordsBinding,
};

use crate::actor::Vault;
use crate::{ArchiverState, Error};

/// The custodians' binding of this archiver, and what one would say now.
#[derive(Default)]
pub struct BindingState {
    /// `DATA/binding.json`.
    path: Option<PathBuf>,
    public: Option<RecordsPublic>,
    /// The statement this archiver would have signed now (serial and time aside); `None`
    /// while records.pub has no binding key (version 1).
    template: Option<ArchiverBinding>,
    /// The binding on file, verified against records.pub.
    pub signed: Option<(SignedBinding, ArchiverBinding)>,
    /// Whether the server has `signed`.
    pub published: bool,
}

impl BindingState {
    /// The binding on file in `path` (if it verifies against `public`), and the statement
    /// this archiver would sign.
    pub fn load(path: &Path, public: RecordsPublic, template: Option<ArchiverBinding>) -> Self {
        let signed = std::fs::read_to_string(path).ok().and_then(|json| {
            let verified = SignedBinding::parse(&json)
                .and_then(|signed| Ok((signed.clone(), signed.verify(&public)?)));
            match verified {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring binding.json: the next unseal signs another");
                    None
                }
            }
        });
        Self {
            path: Some(path.to_owned()),
            public: Some(public),
            template,
            signed,
            published: false,
        }
    }

    /// Whether the binding on file still says what this archiver is (device, keys,
    /// witnesses): if not, the custodians must sign another at the next unseal.
    fn current(&self) -> bool {
        let same = |a: &ArchiverBinding, b: &ArchiverBinding| {
            ArchiverBinding {
                serial: 0,
                issued_at: 0,
                ..a.clone()
            } == ArchiverBinding {
                serial: 0,
                issued_at: 0,
                ..b.clone()
            }
        };
        match (&self.signed, &self.template) {
            (Some((_, signed)), Some(template)) => same(signed, template),
            (_, None) => true,
            (None, Some(_)) => false,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// At an unseal: while the custodians' key is assembled, signs the binding of this archiver
/// if there is none yet (or the one on file no longer describes it), and keeps it.
pub(crate) fn bind_on_unseal(v: &mut Vault) {
    if v.binding.current() {
        return;
    }
    let (Some(secret), Some(template), Some(public)) = (
        v.secret.as_ref(),
        v.binding.template.clone(),
        v.binding.public.clone(),
    ) else {
        return;
    };
    let statement = ArchiverBinding {
        serial: v.binding.signed.as_ref().map_or(1, |(_, b)| b.serial + 1),
        issued_at: now_ms(),
        ..template
    };
    let signed = secret.sign_binding(&statement);
    if let Err(e) = signed.verify(&public) {
        tracing::error!(error = %e, "the binding just signed does not verify");
        return;
    }
    if let Some(path) = &v.binding.path {
        if let Err(e) = vellum_archive::write_atomic(path, signed.to_json().as_bytes(), 0o644) {
            tracing::error!(error = %e, "cannot keep the binding; the next unseal signs it again");
            return;
        }
    }
    tracing::info!(
        serial = statement.serial,
        "the custodians bound this archiver"
    );
    v.binding.signed = Some((signed, statement));
    v.binding.published = false;
}

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
    /// Publishes the binding (once) and the newest checkpoint (when it changed, or to renew
    /// it), then sends the receipts it makes deliverable.
    pub(crate) async fn step(
        &mut self,
        client: &Client,
        state: &ArchiverState,
    ) -> Result<(), Error> {
        let unpublished = state
            .vault
            .call(|v| match (&v.binding.signed, v.binding.published) {
                (Some((signed, _)), false) => Some(signed.to_json()),
                _ => None,
            })
            .await?;
        if let Some(binding) = unpublished {
            let _: () = client
                .request(
                    Method::PUT,
                    "/v1/records/binding",
                    Some(&RecordsBinding { binding }),
                )
                .await?;
            state.vault.call(|v| v.binding.published = true).await?;
        }
        let newest = state
            .vault
            .call(|v| {
                let binding = v.binding.signed.as_ref().map(|(_, b)| b.clone());
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
