//! Receipts: what a sender's device checks when one arrives, and the self-contained proof of
//! one message it can export for a third party (`vellum receipts`, checked by `vellum
//! archive verify-receipt` with nothing but `records.pub`).

use serde::{Deserialize, Serialize};
use vellum_tlog::{leaf_hash, verify_inclusion, Checkpoint, NoteVerifier};
use vellum_wire::Receipt;

use crate::content::{Commitments, Disclosure, FIELDS};
use crate::{ArchiverBinding, RecordsPublic, SignedBinding};

/// The format version of an exported [`ReceiptProof`].
pub const RECEIPT_PROOF_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Trust(#[from] crate::TrustError),
    #[error("the checkpoint is not signed by the archiver's bound log key ({0})")]
    Checkpoint(String),
    #[error("the checkpoint carries {have} of the {need} witness cosignatures the binding requires (witnessed by: {names})")]
    Unwitnessed {
        have: usize,
        need: usize,
        names: String,
    },
    #[error("the inclusion proof does not put this leaf in the checkpoint's tree: {0}")]
    Inclusion(String),
    #[error("the leaf is not the record of this message: {0}")]
    Leaf(String),
    #[error("content: {0}")]
    Content(String),
}

/// A checkpoint as the binding requires it: signed by the bound log key and cosigned by at
/// least the binding's quorum of its witnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCheckpoint {
    pub checkpoint: Checkpoint,
    /// The witnesses (by name) whose cosignature of this checkpoint verifies.
    pub cosigners: Vec<String>,
}

/// The bound witnesses whose valid cosignature `note` carries, by name.
pub fn cosigners(note: &str, binding: &ArchiverBinding) -> Vec<String> {
    binding
        .witness_verifiers()
        .iter()
        .filter(|w| w.verify(note).is_ok())
        .map(|w| w.name().to_owned())
        .collect()
}

/// Checks a checkpoint note against the binding: log signature, origin, witness quorum.
pub fn check_checkpoint(
    note: &str,
    binding: &ArchiverBinding,
) -> Result<BoundCheckpoint, ReceiptError> {
    let text = NoteVerifier::open(note, &[binding.log_verifier()])
        .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if checkpoint.origin != binding.origin {
        return Err(ReceiptError::Checkpoint(format!(
            "it is a checkpoint of {:?}",
            checkpoint.origin
        )));
    }
    let cosigners = cosigners(note, binding);
    if cosigners.len() < binding.witness_quorum as usize {
        return Err(ReceiptError::Unwitnessed {
            have: cosigners.len(),
            need: binding.witness_quorum as usize,
            names: if cosigners.is_empty() {
                "none".into()
            } else {
                cosigners.join(", ")
            },
        });
    }
    Ok(BoundCheckpoint {
        checkpoint,
        cosigners,
    })
}

/// A receipt whose checkpoint, inclusion proof and leaf verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub receipt: Receipt,
    pub checkpoint: BoundCheckpoint,
    /// The leaf's content commitments; `None` for a leaf archived before they existed.
    pub commitments: Option<Commitments>,
}

/// Checks a receipt as a sender's device does when it arrives: the checkpoint is the bound
/// log's (with its witness quorum), the leaf is included in it, and the leaf is the record of
/// exactly the chat and log position the receipt names. Its content (which the device
/// compares with what it sent) is in `commitments`.
pub fn verify_receipt(
    receipt: &str,
    binding: &ArchiverBinding,
) -> Result<VerifiedReceipt, ReceiptError> {
    let r: Receipt =
        serde_json::from_str(receipt).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    check_receipt(r, binding)
}

fn check_receipt(r: Receipt, binding: &ArchiverBinding) -> Result<VerifiedReceipt, ReceiptError> {
    let checkpoint = check_checkpoint(&r.checkpoint, binding)?;
    let proof = r
        .proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ReceiptError::Malformed("the proof is not a list of hex hashes".into()))?;
    let tree = &checkpoint.checkpoint;
    verify_inclusion(
        &leaf_hash(&r.leaf),
        r.leaf_index,
        tree.size,
        &proof,
        &tree.root,
    )
    .map_err(|e| ReceiptError::Inclusion(e.to_string()))?;
    let leaf: serde_json::Value =
        serde_json::from_slice(&r.leaf).map_err(|e| ReceiptError::Leaf(e.to_string()))?;
    let named = leaf["reference"]
        .as_str()
        .and_then(crate::parse_reference)
        .map(|(chat, seq, _)| (chat.to_owned(), seq));
    if leaf["kind"] != "record" || named != Some((r.chat_id.clone(), r.seq)) {
        return Err(ReceiptError::Leaf(format!(
            "it does not name chat {} position {}",
            r.chat_id, r.seq
        )));
    }
    let commitments = match leaf.get("commitments") {
        None => None,
        Some(c) => Some(
            serde_json::from_value::<Commitments>(c.clone())
                .map_err(|e| ReceiptError::Leaf(format!("its commitments: {e}")))?,
        ),
    };
    Ok(VerifiedReceipt {
        receipt: r,
        checkpoint,
        commitments,
    })
}

/// One message's proof for a third party: the custodians' binding of the archiver, the
/// receipt (leaf, inclusion proof, cosigned checkpoint), and the disclosures that open the
/// leaf's commitments (a redacted production leaves some out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptProof {
    pub version: u32,
    pub binding: SignedBinding,
    pub receipt: Receipt,
    pub disclosures: Vec<Disclosure>,
}

/// What `verify-receipt` proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenReceipt {
    pub binding: ArchiverBinding,
    pub receipt: Receipt,
    pub checkpoint: BoundCheckpoint,
    /// Each disclosed field and its proven value, in [`FIELDS`] order.
    pub fields: Vec<(String, String)>,
    /// Committed fields the proof does not disclose.
    pub withheld: Vec<String>,
}

impl ReceiptProof {
    pub fn parse(json: &str) -> Result<Self, ReceiptError> {
        let proof: Self =
            serde_json::from_str(json).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if proof.version != RECEIPT_PROOF_VERSION {
            return Err(ReceiptError::Malformed(format!(
                "proof version {} is not {RECEIPT_PROOF_VERSION}",
                proof.version
            )));
        }
        Ok(proof)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("proofs serialise") + "\n"
    }

    /// Checks everything against `records.pub` alone: the binding is signed by its
    /// custodians, the checkpoint by the bound log key with the bound witnesses' quorum, the
    /// leaf is in the checkpoint's tree and names this message's chat and position, and every
    /// disclosure opens the leaf's commitment to that field (the message id and chat also
    /// equal the receipt's).
    pub fn verify(&self, public: &RecordsPublic) -> Result<ProvenReceipt, ReceiptError> {
        let binding = self.binding.verify(public)?;
        let verified = check_receipt(self.receipt.clone(), &binding)?;
        let commitments = verified.commitments.ok_or_else(|| {
            ReceiptError::Content(
                "the leaf was archived before content commitments: it proves no content".into(),
            )
        })?;
        let mut fields = Vec::new();
        for d in &self.disclosures {
            if !FIELDS.contains(&d.field.as_str()) {
                return Err(ReceiptError::Malformed(format!(
                    "unknown field {:?}",
                    d.field
                )));
            }
            if fields.iter().any(|(f, _)| *f == d.field) {
                return Err(ReceiptError::Malformed(format!(
                    "{} is disclosed twice",
                    d.field
                )));
            }
            d.check(&commitments)?;
            let named = match d.field.as_str() {
                "chat_id" => Some(self.receipt.chat_id.as_str()),
                "message_id" => self.receipt.message_id.as_deref(),
                _ => None,
            };
            if matches!(d.field.as_str(), "chat_id" | "message_id") && named != Some(&d.value) {
                return Err(ReceiptError::Content(format!(
                    "the receipt names another {} than the leaf",
                    d.field
                )));
            }
            fields.push((d.field.clone(), d.value.clone()));
        }
        fields.sort_by_key(|(f, _)| FIELDS.iter().position(|k| k == f));
        let withheld = commitments
            .keys()
            .filter(|k| !fields.iter().any(|(f, _)| f == *k))
            .cloned()
            .collect();
        Ok(ProvenReceipt {
            binding,
            receipt: self.receipt.clone(),
            checkpoint: verified.checkpoint,
            fields,
            withheld,
        })
    }
}
