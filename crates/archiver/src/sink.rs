use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vellum_client::RecordSink;
use vellum_record::{Record, RecordKind};

use crate::actor::{ArchiveHandle, Vault};

/// Seals each chat event to the records key and appends it, durably, before the event is
/// acknowledged. A re-delivered event (same chat and log position) is archived once. The
/// sealing and the fsyncs run on the archive's actor. A failed write pauses the archiver:
/// the event is refused, so the server keeps it and the next sync retries it.
pub struct ArchiveSink {
    vault: ArchiveHandle,
}

impl ArchiveSink {
    pub fn new(vault: ArchiveHandle) -> Self {
        Self { vault }
    }
}

/// An archived message whose sender is owed a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReceipt {
    pub leaf: u64,
    pub sender_device: String,
    pub chat_id: String,
    pub seq: u64,
    pub message_id: Option<String>,
}

/// The receipts owed to senders, kept in `DATA/owed-receipts.jsonl` so that a crash before
/// the next checkpoint (and delivery) does not lose them: one JSON line appended per owed
/// receipt, rewritten atomically without the delivered ones.
///
/// The append is not fsynced on its own, which would add a third fsync to every message: it
/// is in the page cache, so it survives the archiver's crash at once, and it is fsynced
/// before each checkpoint (so at least every checkpoint interval). A power loss can lose
/// the lines of the last interval: their records stay archived, only the receipt is missing.
pub struct OwedReceipts {
    path: Option<PathBuf>,
    pub pending: Vec<PendingReceipt>,
    unsynced: bool,
}

impl OwedReceipts {
    /// Owed receipts kept in memory only (tests of the actor alone).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            pending: Vec::new(),
            unsynced: false,
        }
    }

    /// Loads what a previous run still owed. A line cut short by a crash is ignored: its
    /// message was not acknowledged, so its event is delivered again and owed again.
    pub fn load(path: &Path) -> Result<Self, crate::Error> {
        let mut pending: Vec<PendingReceipt> = Vec::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Ok(p) = serde_json::from_str::<PendingReceipt>(line) {
                        if !pending.iter().any(|q| q.leaf == p.leaf) {
                            pending.push(p);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self {
            path: Some(path.to_owned()),
            pending,
            unsynced: false,
        })
    }

    /// Owes `receipt`, unless it is owed already (see the type for when it is durable).
    pub fn owe(&mut self, receipt: PendingReceipt) -> Result<(), String> {
        if self.pending.iter().any(|p| p.leaf == receipt.leaf) {
            return Ok(());
        }
        if let Some(path) = &self.path {
            // Each line also starts with a newline: a line torn by a full disk or a crash then
            // stays a line of its own (skipped at load) instead of swallowing the next one.
            let mut line = vec![b'\n'];
            line.extend(serde_json::to_vec(&receipt).expect("receipts serialise"));
            line.push(b'\n');
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(&line))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            self.unsynced = true;
        }
        self.pending.push(receipt);
        Ok(())
    }

    /// Makes every owed receipt durable (one fsync, before a checkpoint).
    pub fn sync(&mut self) -> Result<(), String> {
        if let (Some(path), true) = (&self.path, self.unsynced) {
            fs::File::open(path)
                .and_then(|f| f.sync_data())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Forgets the delivered receipts (on disk too).
    pub fn delivered(&mut self, leaves: &[u64]) -> Result<(), String> {
        self.pending.retain(|p| !leaves.contains(&p.leaf));
        if let Some(path) = &self.path {
            let mut text = Vec::new();
            for p in &self.pending {
                text.extend(serde_json::to_vec(p).expect("receipts serialise"));
                text.push(b'\n');
            }
            vellum_archive::write_atomic(path, &text, 0o600).map_err(|e| e.to_string())?;
            self.unsynced = false;
        }
        Ok(())
    }
}

/// Why the archiver pauses after a failed archive write, as `records status` shows it.
pub fn pause_reason(e: &vellum_archive::Error) -> String {
    match e {
        vellum_archive::Error::Io { path, source }
            if source.kind() == std::io::ErrorKind::StorageFull =>
        {
            format!("the archive's disk is full: {path}")
        }
        vellum_archive::Error::Io { path, source } => {
            format!("cannot write the archive: {path}: {source}")
        }
        e => e.to_string(),
    }
}

/// Whether the archiver owes the sender a receipt for `event`: every event of an application
/// message (a message, a delete, a title, a kind this version cannot read), so that `admin
/// status` can tell any such entry without a receipt from one still on its way.
fn receipted(event: &Record) -> bool {
    event.seq > 0
        && matches!(
            event.kind,
            RecordKind::Message
                | RecordKind::Delete
                | RecordKind::Title
                | RecordKind::Unknown { .. }
        )
}

/// Archives one event on the actor; sets or clears the pause reason.
pub(crate) fn archive(v: &mut Vault, mut event: Record) -> Result<(), String> {
    // Every record commits to its content; one without the sender's salt (an event that is
    // not a message, or an older sender's) gets the archiver's, sealed inside it, so that
    // the archive can still prove its fields one by one.
    if event.salt.is_none() {
        let mut salt = [0u8; vellum_record::content::SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| format!("operating system RNG: {e}"))?;
        event.salt = Some(hex::encode(salt));
    }
    let title = match event.kind {
        RecordKind::Title => event.text.as_deref(),
        _ => event.chat_title.as_deref(),
    };
    v.note_chat(&event.chat_id, title);
    let reference = event.reference();
    let sealed = vellum_records::seal(&v.public_key, reference.as_bytes(), &event.encode())
        .map_err(|e| e.to_string())?;
    let appended =
        match v
            .archive
            .append_record(&reference, event.received_at, &sealed, event.commitments())
        {
            Ok(appended) => appended,
            Err(e) => {
                let reason = pause_reason(&e);
                if v.paused.is_none() {
                    tracing::error!(reason, "archiver paused; events stay on the server");
                }
                v.paused = Some(reason);
                return Err(e.to_string());
            }
        };
    if receipted(&event) {
        // Owed again when re-delivered: a crash may have come between the append and this.
        // A receipt sent twice is harmless; one never sent is not.
        let owed = v.pending_receipts.owe(PendingReceipt {
            leaf: appended.index,
            sender_device: event.sender_device,
            chat_id: event.chat_id,
            seq: event.seq,
            message_id: event.message_id,
        });
        if let Err(e) = owed {
            v.paused = Some(format!("cannot write the owed receipts: {e}"));
            return Err(e);
        }
    }
    if v.paused.take().is_some() {
        tracing::info!("archiver resumed");
    }
    Ok(())
}

impl RecordSink for ArchiveSink {
    fn record(&mut self, event: Record) -> Result<(), String> {
        self.vault
            .call_blocking(move |v| archive(v, event))
            .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {

    use vellum_archive::Archive;
    use vellum_record::Member;

    use super::*;

    fn signer() -> vellum_tlog::NoteSigner {
        vellum_tlog::NoteSigner::new("test.example/log", &[5; 32]).unwrap()
    }

    /// The archiver's actor on `dir`, as `prepare` starts it.
    fn start(dir: &Path, public: &vellum_records::RecordsPublic) -> ArchiveHandle {
        let vault = Vault::sealed(
            Archive::open(&dir.join("archive"), signer()).unwrap(),
            public.clone(),
            OwedReceipts::load(&dir.join("owed-receipts.jsonl")).unwrap(),
        )
        .unwrap();
        ArchiveHandle::spawn(vault).unwrap()
    }

    /// A binding of the test log, without witnesses.
    fn binding() -> vellum_record::ArchiverBinding {
        vellum_record::ArchiverBinding {
            version: vellum_record::BINDING_VERSION,
            serial: 1,
            origin: "test.example/log".into(),
            archiver_device: "records-1".into(),
            archiver_identity: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
            log_key: signer().verifier_key(),
            witnesses: vec![],
            witness_quorum: 0,
            issued_at: 0,
            previous: None,
        }
    }

    fn message(seq: u64) -> Record {
        Record {
            version: vellum_record::FORMAT_VERSION,
            chat_id: "chat".into(),
            chat_title: None,
            seq,
            kind: RecordKind::Message,
            message_id: Some(format!("m{seq}")),
            sender_user: "alice".into(),
            sender_device: "alice-1".into(),
            recipients: vec![Member {
                user: "bob".into(),
                device_id: "bob-1".into(),
            }],
            sent_at: 1,
            received_at: 1,
            text: Some(format!("hello {seq}")),
            expire_secs: None,
            burn_secs: None,
            log_hash: Some(format!("{seq:064x}")),
            salt: Some(format!("{:064x}", seq + 100)),
            reply_to: None,
            mentions: Vec::new(),
            target: None,
            remove: false,
        }
    }

    fn paused(handle: &ArchiveHandle) -> Option<String> {
        handle
            .call_blocking(|v| crate::api::current_status(v).paused)
            .unwrap()
    }

    #[test]
    fn a_full_disk_pauses_and_says_why_then_every_record_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let public = vellum_records::generate(3, 2, "records.test/vellum")
            .unwrap()
            .public;
        let handle = start(dir.path(), &public);
        let mut sink = ArchiveSink::new(handle.clone());
        sink.record(message(1)).unwrap();
        let faults = handle.call_blocking(|v| v.archive.faults()).unwrap();
        faults.fail_next(3);
        // Each sync's retry fails while the disk is full: refused (so never acknowledged),
        // and the status says why, naming the file.
        for _ in 0..3 {
            assert!(sink.record(message(2)).is_err());
            let why = paused(&handle).expect("paused");
            assert!(
                why.starts_with("paused: the archive's disk is full: ") && why.contains("archive"),
                "{why}"
            );
        }
        // Room again: the retry lands, the pause clears, and the redelivered first event
        // (its acknowledgement may have been lost) is not archived twice.
        sink.record(message(2)).unwrap();
        sink.record(message(1)).unwrap();
        assert_eq!(paused(&handle), None);
        let (records, owed) = handle
            .call_blocking(|v| {
                v.archive.checkpoint().unwrap();
                (
                    v.archive.records().count(),
                    v.pending_receipts.pending.len(),
                )
            })
            .unwrap();
        assert_eq!((records, owed), (2, 2));
        let report = vellum_archive::verify(&dir.path().join("archive"), None);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.leaves, report.records), (2, 2));

        // A failed checkpoint pauses too, and the next one resumes.
        sink.record(message(3)).unwrap();
        faults.fail_next(1);
        handle
            .call_blocking(|v| crate::checkpoint(v).map(|_| ()))
            .unwrap()
            .expect_err("the checkpoint write fails");
        let why = paused(&handle).expect("paused");
        assert!(why.contains("checkpoints"), "{why}");
        handle
            .call_blocking(|v| crate::checkpoint(v).map(|_| ()))
            .unwrap()
            .unwrap();
        assert_eq!(paused(&handle), None);
        let report = vellum_archive::verify(&dir.path().join("archive"), None);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.records, report.attested), (3, 3));
    }

    #[test]
    fn owed_receipts_survive_a_stop_before_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let public = vellum_records::generate(3, 2, "records.test/vellum")
            .unwrap()
            .public;
        let handle = start(dir.path(), &public);
        let mut sink = ArchiveSink::new(handle.clone());
        sink.record(message(1)).unwrap();
        sink.record(message(2)).unwrap();
        // A crash between an append and owing its receipt: the event is delivered again.
        let third = message(3);
        handle
            .call_blocking(move |v| {
                let sealed = vellum_records::seal(
                    &v.public_key,
                    third.reference().as_bytes(),
                    &third.encode(),
                )
                .unwrap();
                v.archive
                    .append_record(&third.reference(), 1, &sealed, third.commitments())
                    .unwrap()
            })
            .unwrap();
        // Stopped before any checkpoint or delivery.
        drop((sink, handle));
        let handle = start(dir.path(), &public);
        let mut sink = ArchiveSink::new(handle.clone());
        sink.record(message(3)).unwrap();
        let (batch, sent) = handle
            .call_blocking(|v| {
                let note = v.archive.checkpoint().unwrap();
                crate::publish::receipt_batch(v, &binding(), 3, &note).unwrap()
            })
            .unwrap();
        assert_eq!(sent, vec![0, 1, 2]);
        for (item, seq) in batch.receipts.iter().zip(1..) {
            assert_eq!(item.device_id, "alice-1");
            let verified = vellum_record::verify_receipt(&item.receipt, &binding()).unwrap();
            let receipt = &verified.receipt;
            assert_eq!(
                (receipt.seq, receipt.message_id.as_deref()),
                (seq, Some(format!("m{seq}").as_str()))
            );
            // The leaf commits to the message as its sender sent it.
            assert_eq!(verified.commitments, message(seq).commitments());
        }
        // Delivered: forgotten on disk too, so a restart does not send them again.
        handle
            .call_blocking(move |v| v.pending_receipts.delivered(&sent[..2]))
            .unwrap()
            .unwrap();
        drop((sink, handle));
        let owed = OwedReceipts::load(&dir.path().join("owed-receipts.jsonl")).unwrap();
        assert_eq!(
            owed.pending.iter().map(|p| p.leaf).collect::<Vec<_>>(),
            vec![2]
        );
    }

    /// Issue 8: a server restored from a backup hands out a log position again; the new
    /// entry there (another log hash) is a record of its own, while the same entry delivered
    /// twice is archived once. Every record commits to its content, with the sender's salt
    /// or, without one, a salt of the archiver's sealed inside it.
    #[test]
    fn issue8_a_reused_position_is_a_new_record_and_a_redelivery_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
        let handle = start(dir.path(), &generated.public);
        let mut sink = ArchiveSink::new(handle.clone());
        sink.record(message(4)).unwrap();
        sink.record(message(4)).unwrap();
        let restored = Record {
            text: Some("said after the restore".into()),
            message_id: Some("m4-after".into()),
            log_hash: Some("ee".repeat(32)),
            ..message(4)
        };
        sink.record(restored.clone()).unwrap();
        sink.record(restored.clone()).unwrap();
        let title = Record {
            kind: RecordKind::Title,
            message_id: None,
            salt: None,
            ..message(5)
        };
        sink.record(title).unwrap();
        let leaves = handle
            .call_blocking(|v| {
                (0..v.archive.size())
                    .map(|i| v.archive.leaf(i).unwrap())
                    .collect::<Vec<_>>()
            })
            .unwrap();
        assert_eq!(leaves.len(), 3, "{leaves:?}");
        let references: Vec<String> = leaves
            .iter()
            .map(|l| match l {
                vellum_archive::Leaf::Record { reference, .. } => reference.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(references[0], message(4).reference());
        assert_eq!(references[1], restored.reference());
        assert_ne!(references[0], references[1]);
        let vellum_archive::Leaf::Record {
            commitments: Some(commitments),
            ..
        } = &leaves[1]
        else {
            panic!("the record leaf commits to its content")
        };
        assert_eq!(Some(commitments.clone()), restored.commitments());
        // The title had no salt: the archiver's, sealed in the record, opens its commitments.
        let mut unsealer = vellum_records::Unsealer::new(generated.public.clone());
        unsealer.add(&generated.shares[0]).unwrap();
        let vellum_records::UnsealProgress::Unsealed(secret) =
            unsealer.add(&generated.shares[1]).unwrap()
        else {
            panic!("two shares unseal")
        };
        let sealed = handle
            .call_blocking(|v| v.archive.record(2).unwrap().unwrap())
            .unwrap();
        let plain = vellum_records::open(&secret, references[2].as_bytes(), &sealed).unwrap();
        let title = Record::decode(&plain).unwrap();
        assert!(title.salt.is_some());
        let vellum_archive::Leaf::Record { commitments, .. } = &leaves[2] else {
            panic!()
        };
        assert_eq!(commitments, &title.commitments());
        // Three receipts owed: both messages and the title (every application entry).
        let owed = handle
            .call_blocking(|v| v.pending_receipts.pending.len())
            .unwrap();
        assert_eq!(owed, 3);
    }
}
