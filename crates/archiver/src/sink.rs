use vellum_client::RecordSink;
use vellum_record::{Record, RecordKind};

use crate::actor::ArchiveHandle;

/// Seals each chat event to the records key and appends it, durably, before the event is
/// acknowledged. A re-delivered event (same chat and log position) is archived once. The
/// sealing and the fsyncs run on the archive's actor.
pub struct ArchiveSink {
    vault: ArchiveHandle,
}

impl ArchiveSink {
    pub fn new(vault: ArchiveHandle) -> Self {
        Self { vault }
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

impl RecordSink for ArchiveSink {
    fn record(&mut self, event: Record) -> Result<(), String> {
        self.vault
            .call_blocking(move |v| {
                let reference = event.reference();
                let sealed =
                    vellum_records::seal(&v.public_key, reference.as_bytes(), &event.encode())
                        .map_err(|e| e.to_string())?;
                let appended = v
                    .archive
                    .append_record(&reference, event.received_at, &sealed)
                    .map_err(|e| e.to_string())?;
                if appended.new && event.kind == RecordKind::Message {
                    v.pending_receipts.push(PendingReceipt {
                        leaf: appended.index,
                        sender_device: event.sender_device,
                        chat_id: event.chat_id,
                        seq: event.seq,
                        message_id: event.message_id,
                    });
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?
    }
}
