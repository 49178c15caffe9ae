use vellum_tlog::{leaf_hash, verify_inclusion, Checkpoint, NoteVerifier};
use vellum_wire::Receipt;

/// Checks a receipt as a sender's device does: the checkpoint is signed by the org's log key
/// (`log_key`, a note verifier key), the leaf is included in it, and the leaf is the record
/// of exactly the chat and log position the receipt names.
pub fn verify_receipt(receipt: &str, log_key: Option<&str>) -> Result<Receipt, String> {
    let r: Receipt = serde_json::from_str(receipt).map_err(|e| e.to_string())?;
    let key = log_key.ok_or("the org has published no log key")?;
    let verifier = NoteVerifier::parse(key).map_err(|e| e.to_string())?;
    let text = NoteVerifier::open(&r.checkpoint, &[verifier]).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(text).map_err(|e| e.to_string())?;
    let proof = r
        .proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("malformed proof")?;
    verify_inclusion(
        &leaf_hash(&r.leaf),
        r.leaf_index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    )
    .map_err(|e| e.to_string())?;
    let leaf: serde_json::Value = serde_json::from_slice(&r.leaf).map_err(|e| e.to_string())?;
    let expected = crate::reference(&r.chat_id, r.seq);
    if leaf["kind"] != "record" || leaf["reference"] != expected.as_str() {
        return Err("the leaf is not the record of this message".into());
    }
    Ok(r)
}
