use std::sync::Arc;

use vellum_client::{ChatEvent, RecordSink};

use crate::{ArchiverState, Error};

/// Seals each chat event to the records key and appends it, durably, before the event is
/// acknowledged. A re-delivered event (same chat and log position) is archived once.
pub struct ArchiveSink {
    state: Arc<ArchiverState>,
    public_key: Vec<u8>,
}

impl ArchiveSink {
    pub fn new(state: Arc<ArchiverState>) -> Result<Self, Error> {
        let public_key = state
            .public
            .key_bytes()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self { state, public_key })
    }
}

/// An archived message whose sender is owed a receipt.
pub struct PendingReceipt {
    pub leaf: u64,
    pub sender_device: String,
    pub chat_id: String,
    pub seq: u64,
    pub message_id: Option<String>,
}

/// The record's identity, also its AEAD associated data: a body cannot move to another leaf.
pub fn reference(chat_id: &str, seq: u64) -> String {
    format!("{chat_id}/{seq}")
}

impl RecordSink for ArchiveSink {
    fn record(&mut self, event: ChatEvent) -> Result<(), String> {
        let reference = reference(&event.chat_id, event.seq);
        let plaintext = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        let sealed = vellum_records::seal(&self.public_key, reference.as_bytes(), &plaintext)
            .map_err(|e| e.to_string())?;
        let appended = {
            let mut archive = self.state.archive.lock().unwrap_or_else(|p| p.into_inner());
            archive
                .append_record(&reference, event.received_at, &sealed)
                .map_err(|e| e.to_string())?
        };
        if appended.new && event.kind == "message" {
            let receipt = PendingReceipt {
                leaf: appended.index,
                sender_device: event.sender_device,
                chat_id: event.chat_id,
                seq: event.seq,
                message_id: event.message_id,
            };
            self.state
                .pending_receipts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(receipt);
        }
        Ok(())
    }
}
