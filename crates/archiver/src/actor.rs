//! The archive and the records key, owned by one thread (an actor). Everything that seals,
//! decrypts, reads or fsyncs the archive runs there, one command at a time, so that neither
//! the records API nor the ingest loop ever does that work on an async executor thread, and
//! no lock is held across it.

use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;
use vellum_archive::Archive;
use vellum_records::{RecordsSecret, Unsealer};

use crate::sink::OwedReceipts;
use crate::Error;

/// What the actor owns.
pub struct Vault {
    pub archive: Archive,
    /// `records.pub` (version 2 once the custodians upgraded a version 1 at an unseal).
    pub public: vellum_records::RecordsPublic,
    /// The records public key (HPKE), which every record is sealed to.
    pub public_key: Vec<u8>,
    pub unsealer: Unsealer,
    /// The records key, only while unsealed.
    pub secret: Option<RecordsSecret>,
    /// Last records-office request: the idle seal counts from it.
    pub last_activity: Instant,
    /// Archived messages whose senders still await a receipt.
    pub pending_receipts: OwedReceipts,
    /// Why ingest is paused (the last archive or device-store write failed), until one
    /// succeeds.
    pub paused: Option<String>,
    /// Why the last checkpoint could not be written, until one is.
    pub checkpoint_failure: Option<String>,
    /// Moves on whenever a hold is placed or released.
    pub holds_version: u64,
    /// The `holds_version` whose held users the delivery server has (none at start).
    pub holds_published: Option<u64>,
    /// What this archiver asks the custodians to bind (absent in the actor's own tests).
    pub binder: Option<crate::binding::Binder>,
    /// The records office's accounts (`DATA/office.db`; in memory in tests).
    pub office: crate::office::Office,
    /// The keyholder accounts that handed in a share since the archive was last unsealed:
    /// one share per keyholder.
    pub unseal_contributors: Vec<String>,
    /// The org's users, from the archiver's verified copy of the key directory (refreshed
    /// by the ingest loop): a hold on anyone else is refused.
    pub org_users: std::collections::BTreeSet<String>,
    /// The record chats the archiver is or was a member of: (id, title).
    pub known_chats: Vec<(String, Option<String>)>,
    /// The chats the archive does not hold (transitory), as the delivery server last listed
    /// them, and when (Unix ms).
    pub transitory: Option<(i64, vellum_wire::TransitoryChats)>,
    /// Retention schedules, and the file they are saved to (none in tests).
    pub schedules: crate::retention::Schedules,
    pub schedules_path: Option<std::path::PathBuf>,
    /// `DATA/lock`, held while the archiver runs (none in tests).
    pub data_lock: Option<std::fs::File>,
    /// FOIA production jobs and their zips, until downloaded or the archive seals.
    pub productions: crate::foia::jobs::Productions,
    /// The full-text index (in memory, while unsealed only) and the office's time zone.
    pub search: crate::search::SearchState,
}

impl Vault {
    /// A sealed vault over `archive`, sealing records to `public`, owing `pending_receipts`.
    pub fn sealed(
        archive: Archive,
        public: vellum_records::RecordsPublic,
        pending_receipts: OwedReceipts,
    ) -> Result<Self, vellum_records::Error> {
        Ok(Self {
            archive,
            public_key: public.key_bytes()?,
            unsealer: Unsealer::new(public.clone()),
            public,
            secret: None,
            last_activity: Instant::now(),
            pending_receipts,
            paused: None,
            checkpoint_failure: None,
            holds_version: 0,
            holds_published: None,
            binder: None,
            office: crate::office::Office::in_memory(),
            unseal_contributors: Vec::new(),
            org_users: Default::default(),
            known_chats: Vec::new(),
            transitory: None,
            schedules: Default::default(),
            schedules_path: None,
            data_lock: None,
            productions: Default::default(),
            search: crate::search::SearchState::default(),
        })
    }
}

impl Vault {
    /// The ids of the record chats `chat` names (an id, or a title any of them had).
    pub fn chat_ids_named(&self, chat: &str) -> Vec<String> {
        self.known_chats
            .iter()
            .filter(|(id, title)| id == chat || title.as_deref() == Some(chat))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// `Err` naming `user` unless the org's key directory has them: holds and schedules
    /// refuse a misspelt name rather than apply to nobody.
    pub fn known_user(&self, user: &str) -> Result<(), String> {
        match self.org_users.contains(user) {
            true => Ok(()),
            false => Err(format!("no user named {user:?} in the org's directory")),
        }
    }

    /// A record of chat `id` (titled `title`) arrived: holds and schedules may name it from
    /// now on, without waiting for the ingest loop's next look at the chat list.
    pub fn note_chat(&mut self, id: &str, title: Option<&str>) {
        match self.known_chats.iter_mut().find(|(known, _)| known == id) {
            Some((_, known_title)) => {
                if let Some(title) = title {
                    *known_title = Some(title.to_owned());
                }
            }
            None => self
                .known_chats
                .push((id.to_owned(), title.map(str::to_owned))),
        }
    }
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
            .spawn(move || loop {
                // Idle: the search index catches up one batch at a time, so that a job
                // waits at most one batch.
                let job = match queue.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::TryRecvError::Empty) if crate::search::catch_up(&mut vault) => {
                        continue
                    }
                    Err(mpsc::TryRecvError::Empty) => match queue.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                    Err(mpsc::TryRecvError::Disconnected) => return,
                };
                job(&mut vault);
                // Sealed: the index goes at once; unsealed: it starts.
                crate::search::follow_seal(&mut vault);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &std::path::Path) -> Vault {
        let signer = vellum_tlog::NoteSigner::new("test.example/log", &[5; 32]).unwrap();
        let public = vellum_records::generate(3, 2, "records.test/vellum")
            .unwrap()
            .public;
        Vault::sealed(
            Archive::open(dir, signer).unwrap(),
            public,
            OwedReceipts::in_memory(),
        )
        .unwrap()
    }

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[test]
    fn work_runs_on_the_actor_in_order_from_async_and_blocking_callers() {
        let dir = tempfile::tempdir().unwrap();
        let handle = ArchiveHandle::spawn(vault(dir.path())).unwrap();
        for flavor in ["multi", "current"] {
            let mut builder = match flavor {
                "multi" => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(1);
                    b
                }
                _ => tokio::runtime::Builder::new_current_thread(),
            };
            let runtime = builder.enable_all().build().unwrap();
            let handle = handle.clone();
            runtime.block_on(async move {
                // The archive's work never runs on the caller's (executor) thread.
                let name = handle.call(|_| thread_name()).await.unwrap();
                assert_eq!(name.as_deref(), Some("archive"));
                let before = handle.call(|v| v.archive.size()).await.unwrap();
                // The record sink's path: a blocking call from inside the runtime.
                let blocking = handle.clone();
                let appended = tokio::spawn(async move {
                    blocking.call_blocking(|v| {
                        v.archive.append(vellum_archive::Leaf::Access {
                            time: 1,
                            action: "test".into(),
                            detail: thread_name().unwrap_or_default(),
                        })
                    })
                })
                .await
                .unwrap()
                .unwrap()
                .unwrap();
                assert_eq!(appended, before);
                let leaf = handle.call(move |v| v.archive.leaf(appended)).await.unwrap();
                assert!(
                    matches!(leaf, Ok(vellum_archive::Leaf::Access { detail, .. }) if detail == "archive")
                );
            });
        }
    }

    #[test]
    fn a_stopped_actor_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let handle = ArchiveHandle::spawn(vault(dir.path())).unwrap();
        // A job that panics ends the actor (fail-stop: nothing is archived half-way).
        let crashed = handle.call_blocking(|_| -> () { panic!("injected") });
        assert!(matches!(crashed, Err(Error::Stopped)));
        assert!(matches!(
            handle.call_blocking(|v| v.archive.size()),
            Err(Error::Stopped)
        ));
    }
}
