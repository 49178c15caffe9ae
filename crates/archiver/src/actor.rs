//! The archive and the records key, owned by one thread (an actor). Everything that seals,
//! decrypts, reads or fsyncs the archive runs there, one command at a time, so that neither
//! the records API nor the ingest loop ever does that work on an async executor thread, and
//! no lock is held across it.

use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;
use vellum_archive::Archive;
use vellum_records::{RecordsSecret, Unsealer};

use crate::sink::PendingReceipt;
use crate::Error;

/// What the actor owns.
pub struct Vault {
    pub archive: Archive,
    /// The records public key (HPKE), which every record is sealed to.
    pub public_key: Vec<u8>,
    pub unsealer: Unsealer,
    /// The records key, only while unsealed.
    pub secret: Option<RecordsSecret>,
    /// Last records-office request: the idle seal counts from it.
    pub last_activity: Instant,
    /// Archived messages whose senders still await a receipt.
    pub pending_receipts: Vec<PendingReceipt>,
}

type Job = Box<dyn FnOnce(&mut Vault) + Send>;

/// A handle to the actor; cloning it is cheap. The actor stops when every handle is gone.
#[derive(Clone)]
pub struct ArchiveHandle {
    jobs: mpsc::Sender<Job>,
}

impl ArchiveHandle {
    /// Starts the actor on a thread of its own.
    pub fn spawn(mut vault: Vault) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("archive".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job(&mut vault);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the actor and awaits its answer without blocking the executor.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vault) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |vault| {
                let _ = reply.send(f(vault));
            }))
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Runs `f` on the actor from synchronous code (the record sink, called inside the
    /// client's sync) and waits for its answer.
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vault) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |vault| {
                let _ = reply.send(f(vault));
            }))
            .map_err(|_| Error::Stopped)?;
        let wait = || answer.recv().map_err(|_| Error::Stopped);
        // On a multi-threaded runtime, tell it this worker waits, so its other tasks move on.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }
}
