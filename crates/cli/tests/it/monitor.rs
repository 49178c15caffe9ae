//! Issue 8, behaviours 3 and 5: devices monitor the archive's log and everyone notices a
//! silent archiver. The server, the archiver, a witness and the devices run in this process,
//! so that the server's clock can be moved (no sleeps) and the server's store reached as a
//! compromised server would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use sha2::{Digest, Sha256};
use vellum_client::{Api, Client, RECORDS_LOG_CHANGED};
use vellum_server::{AppState, Clock, ManualClock, ServerConfig};
use vellum_store::{SqliteStore, StoredCheckpoint};
use vellum_tlog::{Checkpoint, NoteSigner};
use vellum_wire::{AdminStatus, CreateUserRequest, EnrollmentCode, OrgPolicyUpdate};

const ORIGIN: &str = "records.test/vellum";
const TOKEN: &str = "in-process-admin-token";
/// The archiver's log key seed, written before its first start (so a witness can follow it).
const LOG_SEED: [u8; 32] = [7; 32];
const ELEVEN_MINUTES: i64 = 11 * 60 * 1000;

struct Org {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    state: Arc<AppState>,
    url: String,
    admin: Api,
    /// The archiver's enrollment code.
    code: String,
}

/// Polls `done` until it holds; fails after 20 seconds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server on a manual clock with records configured (every chat a record chat).
async fn org() -> Org {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = Arc::new(ManualClock::at_system_time());
    let state = Arc::new(AppState::with_clock(
        ServerConfig::new(addr, dir.path().join("server")),
        Arc::new(SqliteStore::in_memory().unwrap()),
        vellum_mls::OrgSigner::generate(),
        Sha256::digest(TOKEN.as_bytes()).into(),
        clock.clone(),
    ));
    tokio::spawn(vellum_server::run(listener, state.clone()));
    let url = format!("http://{addr}");
    let admin = Api::new(&url).unwrap();
    let generated = vellum_records::generate(3, 2, ORIGIN).unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("records.pub"), generated.public.to_json()).unwrap();
    for (i, share) in generated.shares.iter().enumerate() {
        std::fs::write(keys.join(format!("share-{}", i + 1)), share).unwrap();
    }
    let code: EnrollmentCode = admin
        .call(
            Method::POST,
            "/v1/admin/records",
            Some(&vellum_wire::RecordsInit {
                records_public: generated.public.to_json(),
            }),
            None,
            Some(TOKEN),
        )
        .await
        .unwrap();
    let update = OrgPolicyUpdate {
        default_record: Some(true),
        ..Default::default()
    };
    let _: vellum_wire::OrgPolicy = admin
        .call(
            Method::PUT,
            "/v1/admin/policy",
            Some(&update),
            None,
            Some(TOKEN),
        )
        .await
        .unwrap();
    Org {
        dir,
        clock,
        state,
        url,
        admin,
        code: code.code,
    }
}

impl Org {
    async fn user(&self, name: &str) -> Client {
        let code: EnrollmentCode = self
            .admin
            .call(
                Method::POST,
                "/v1/admin/users",
                Some(&CreateUserRequest { name: name.into() }),
                None,
                Some(TOKEN),
            )
            .await
            .unwrap();
        Client::enroll(&self.dir.path().join(name), &self.url, name, &code.code)
            .await
            .unwrap()
    }

    async fn status(&self) -> AdminStatus {
        self.admin
            .call(
                Method::GET,
                "/v1/admin/status",
                None::<&()>,
                None,
                Some(TOKEN),
            )
            .await
            .unwrap()
    }

    fn archiver_data(&self) -> PathBuf {
        self.dir.path().join("archiver")
    }

    /// Starts the archiver (with `witnesses`, quorum: all of them) and has two custodians
    /// unseal it once, which binds it; returns its ingest task.
    async fn archiver(
        &self,
        witnesses: Vec<vellum_archiver::WitnessTarget>,
    ) -> tokio::task::JoinHandle<Result<(), vellum_archiver::Error>> {
        let data = self.archiver_data();
        std::fs::create_dir_all(&data).unwrap();
        write_secret(&data.join("log.key"), &hex::encode(LOG_SEED));
        let keys = self.dir.path().join("keys");
        let config = vellum_archiver::ArchiverConfig {
            server: self.url.clone(),
            data: data.clone(),
            records_key: keys.join("records.pub"),
            code: Some(self.code.clone()),
            listen: ([127, 0, 0, 1], 0).into(),
            idle_seal: Duration::from_secs(900),
            checkpoint_interval: Duration::from_millis(100),
            witness_quorum: witnesses.len(),
            tls: None,
            witnesses,
            origin: None,
        };
        let (addr, ingest) = vellum_archiver::start(config).await.unwrap();
        let ingest = tokio::spawn(ingest);
        let records = Api::new(&format!("http://{addr}")).unwrap();
        let token = std::fs::read_to_string(data.join("records-token")).unwrap();
        for share in ["share-1", "share-2"] {
            let share = std::fs::read_to_string(keys.join(share)).unwrap();
            let _: serde_json::Value = records
                .call(
                    Method::POST,
                    "/v1/unseal",
                    Some(&serde_json::json!({ "share": share })),
                    None,
                    Some(token.trim()),
                )
                .await
                .unwrap();
        }
        until("the archiver's binding on the server", || async {
            let policy = self.state.store.org_policy().await.unwrap();
            vellum_record::bound_log(&policy).is_ok()
        })
        .await;
        ingest
    }
}

fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut file, contents.as_bytes()).unwrap();
}

/// Syncs `client` until message `id` of `chat` has a verified receipt.
async fn until_archived(client: &mut Client, chat: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        client.sync().await.unwrap();
        if archived(client, chat, id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a verified receipt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn archived(client: &Client, chat: &str, id: &str) -> bool {
    client
        .history(chat)
        .unwrap()
        .iter()
        .any(|m| m.id == id && m.archived_leaf.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_a_silent_archiver_or_witness_raises_alarms_in_admin_status_and_on_the_sender() {
    let org = org().await;
    // A witness following the archiver's log; the custodians bind it with quorum 1.
    let log_key = NoteSigner::new(ORIGIN, &LOG_SEED).unwrap().verifier_key();
    let witness = Arc::new(
        vellum_witness::Witness::open(&org.dir.path().join("witness"), &[log_key]).unwrap(),
    );
    let verifier = witness.verifier();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let witness_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_witness, stopped) = tokio::sync::oneshot::channel::<()>();
    let witness_task = tokio::spawn(vellum_witness::serve(listener, witness, async {
        let _ = stopped.await;
    }));
    let ingest = org
        .archiver(vec![vellum_archiver::WitnessTarget {
            url: witness_url,
            verifier,
        }])
        .await;
    let mut alice = org.user("alice").await;
    let mut bob = org.user("bob").await;
    let chat = alice
        .create_chat("ops", &["bob".into()], Default::default(), None)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let first = alice.send(&chat, "all present").await.unwrap();
    until_archived(&mut alice, &chat, &first.id).await;
    let now = vellum_client::now_millis();
    assert_eq!(org.status().await.warnings, Vec::<String>::new());
    assert_eq!(alice.records_alarms(now).unwrap(), Vec::<String>::new());
    let log = alice.records_log().unwrap().unwrap();
    assert_eq!((log.cosigners, log.quorum), (1, 1));

    // The witness goes down: the archiver still checkpoints and publishes, but no
    // checkpoint reaches the quorum, so no receipt goes out.
    // (Shut down, not aborted: that also closes the archiver's open connection.)
    stop_witness.send(()).unwrap();
    witness_task.await.unwrap().unwrap();
    let second = alice.send(&chat, "one more thing").await.unwrap();
    let covered = org.status().await.checkpoint_size.unwrap();
    until(
        "an unwitnessed checkpoint past the second message",
        || async {
            let s = org.status().await;
            s.checkpoint_size.unwrap() > covered && s.checkpoint_cosigners == Some(0)
        },
    )
    .await;
    // Then the archiver falls silent too.
    ingest.abort();
    let _ = ingest.await;
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert!(!archived(&alice, &chat, &second.id));
    // Within the alarm time, nobody is alarmed.
    let now = vellum_client::now_millis();
    assert_eq!(org.status().await.warnings, Vec::<String>::new());
    assert_eq!(alice.records_alarms(now).unwrap(), Vec::<String>::new());

    // Eleven minutes on (the default alarm time is ten), everyone is.
    org.clock.advance(ELEVEN_MINUTES);
    let status = org.status().await;
    assert_eq!(status.unreceipted_messages, 1, "{status:?}");
    let warnings = status.warnings.join("\n");
    for expected in [
        "1 record message(s) have had no archive receipt for more than 10 minutes",
        "was last published",
        "0 of the 1 witness cosignatures",
    ] {
        assert!(warnings.contains(expected), "{expected:?} in {warnings}");
    }
    let alarms = alice
        .records_alarms(now + ELEVEN_MINUTES)
        .unwrap()
        .join("\n");
    for expected in [
        "1 of your messages in ops have had no archive receipt for more than 10 minutes",
        "was last published",
        "0 of the 1 witness cosignatures",
    ] {
        assert!(alarms.contains(expected), "{expected:?} in {alarms}");
    }
    // Bob sent nothing without a receipt: only the log's alarms are his.
    let bobs = bob.records_alarms(now + ELEVEN_MINUTES).unwrap().join("\n");
    assert!(
        bobs.contains("was last published") && !bobs.contains("your messages"),
        "{bobs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_a_forked_log_is_refused_by_the_server_and_shown_to_every_member() {
    let org = org().await;
    let ingest = org.archiver(Vec::new()).await;
    let mut alice = org.user("alice").await;
    let mut bob = org.user("bob").await;
    let chat = alice
        .create_chat("ops", &["bob".into()], Default::default(), None)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let sent = alice.send(&chat, "before the fork").await.unwrap();
    until_archived(&mut alice, &chat, &sent.id).await;
    bob.sync().await.unwrap();
    ingest.abort();
    let _ = ingest.await;

    // Whoever holds the log key signs another tree: the server refuses it from the
    // archiver, as a fork at the size it holds and as a rollback below it.
    let head = org
        .state
        .store
        .records_checkpoint_head()
        .await
        .unwrap()
        .unwrap();
    let signer = NoteSigner::new(ORIGIN, &LOG_SEED).unwrap();
    let forged = |size: u64, fill: u8| {
        let text = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: [fill; 32],
            extensions: vec![],
        }
        .to_text();
        signer.sign(&text).unwrap()
    };
    let archiver = Client::open(&org.archiver_data().join("device")).unwrap();
    for (size, code) in [
        (head.size, "checkpoint_fork"),
        (head.size - 1, "checkpoint_rollback"),
    ] {
        let push = vellum_wire::CheckpointPush {
            old_size: head.size,
            proof: vec![],
            note: forged(size, 9),
        };
        let refused = archiver
            .request::<()>(Method::PUT, "/v1/records/checkpoint", Some(&push))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, vellum_client::Error::Api { code: c, .. } if c == code),
            "{refused}"
        );
    }
    assert_eq!(
        org.state.store.records_checkpoint_head().await.unwrap(),
        Some(head.clone())
    );

    // A compromised server shows the members that other tree anyway (behind its own API's
    // back): each member checks the step and raises the alarm in every record chat, once.
    let now = org.clock.now_millis();
    org.state
        .store
        .append_records_checkpoint(StoredCheckpoint {
            size: head.size + 5,
            note: forged(head.size + 5, 8),
            previous_size: head.size,
            proof: vec!["00".repeat(32)],
            received_at: now,
            renewed_at: now,
            witnessed_at: Some(now),
        })
        .await
        .unwrap();
    for member in [&mut alice, &mut bob] {
        let shown = member.sync().await.unwrap();
        assert!(
            shown
                .iter()
                .any(|m| m.text.starts_with(RECORDS_LOG_CHANGED)),
            "{shown:?}"
        );
        member.sync().await.unwrap();
        let events: Vec<String> = member
            .history(&chat)
            .unwrap()
            .into_iter()
            .filter(|m| m.text.starts_with(RECORDS_LOG_CHANGED))
            .map(|m| m.text)
            .collect();
        assert_eq!(events.len(), 1, "once: {events:?}");
        assert!(
            events[0].contains("not a consistent extension"),
            "{events:?}"
        );
        let alarms = member.records_alarms(vellum_client::now_millis()).unwrap();
        assert!(
            alarms.iter().any(|a| a.starts_with(RECORDS_LOG_CHANGED)),
            "{alarms:?}"
        );
        // The newest checkpoint a member holds is still the last one that checked.
        assert_eq!(member.records_log().unwrap().unwrap().size, head.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_a_receipt_whose_leaf_commits_to_other_words_is_refused_by_the_sender() {
    let org = org().await;
    let ingest = org.archiver(Vec::new()).await;
    let mut alice = org.user("alice").await;
    let mut bob = org.user("bob").await;
    let chat = alice
        .create_chat("ops", &["bob".into()], Default::default(), None)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let first = alice.send(&chat, "on the record").await.unwrap();
    until_archived(&mut alice, &chat, &first.id).await;
    ingest.abort();
    let _ = ingest.await;
    let sent = alice.send(&chat, "the real words").await.unwrap();

    // An archiver (or whoever holds its log key) logs other words for alice's message: a
    // leaf that extends the published log consistently, so the server takes the
    // checkpoint and the receipt, and everything about it verifies but its content.
    let signer = NoteSigner::new(ORIGIN, &LOG_SEED).unwrap();
    let archive =
        vellum_archive::Archive::open(&org.archiver_data().join("archive"), signer).unwrap();
    let mut hashes: Vec<vellum_tlog::Hash> = (0..archive.size())
        .map(|i| archive.leaf_hash(i).unwrap())
        .collect();
    let forged_content = vellum_record::content::Content {
        kind: "message".into(),
        chat_id: chat.clone(),
        message_id: Some(sent.id.clone()),
        sender_user: "alice".into(),
        sender_device: alice.device_id().into(),
        sent_at: sent.sent_at,
        text: Some("other words".into()),
    };
    let leaf = serde_json::json!({
        "kind": "record",
        "time": sent.sent_at,
        "reference": format!("{chat}/{}/{}", sent.seq.unwrap(), "0c".repeat(32)),
        "key_hash": "ab".repeat(32),
        "body": "c2VhbGVk",
        "commitments": forged_content.commit(&[3; 32]),
    })
    .to_string()
    .into_bytes();
    hashes.push(vellum_tlog::leaf_hash(&leaf));
    let size = hashes.len() as u64;
    let note = NoteSigner::new(ORIGIN, &LOG_SEED)
        .unwrap()
        .sign(
            &Checkpoint {
                origin: ORIGIN.into(),
                size,
                root: vellum_tlog::root(&hashes),
                extensions: vec![],
            }
            .to_text(),
        )
        .unwrap();
    let held = org
        .state
        .store
        .records_checkpoint_head()
        .await
        .unwrap()
        .unwrap();
    let hex_all = |h: Vec<vellum_tlog::Hash>| h.iter().map(hex::encode).collect::<Vec<_>>();
    let archiver = Client::open(&org.archiver_data().join("device")).unwrap();
    let push = vellum_wire::CheckpointPush {
        old_size: held.size,
        proof: hex_all(vellum_tlog::consistency_proof(&hashes, held.size, size).unwrap()),
        note: note.clone(),
    };
    let _: () = archiver
        .request(Method::PUT, "/v1/records/checkpoint", Some(&push))
        .await
        .unwrap();
    let receipt = vellum_wire::Receipt {
        chat_id: chat.clone(),
        seq: sent.seq.unwrap(),
        message_id: Some(sent.id.clone()),
        leaf_index: size - 1,
        leaf: leaf.into(),
        proof: hex_all(vellum_tlog::inclusion_proof(&hashes, size - 1, size).unwrap()),
        checkpoint: note,
    };
    let post = vellum_wire::PostReceipts {
        receipts: vec![vellum_wire::ReceiptFor {
            device_id: alice.device_id().into(),
            receipt: serde_json::to_string(&receipt).unwrap(),
        }],
    };
    let _: () = archiver
        .request(Method::POST, "/v1/receipts", Some(&post))
        .await
        .unwrap();

    let shown = alice.sync().await.unwrap();
    assert!(
        shown.iter().any(|m| m.text.contains(&format!(
            "the archive's receipt for your message {} does not commit to what you sent",
            sent.id
        ))),
        "{shown:?}"
    );
    assert!(!archived(&alice, &chat, &sent.id));
    assert!(alice.receipts(&chat, Some(&sent.id)).is_err());
    // The log itself is consistent: no fork alarm, only the missing receipt, in time.
    let alarms = alice.records_alarms(vellum_client::now_millis()).unwrap();
    assert_eq!(alarms, Vec::<String>::new());
    let later = alice
        .records_alarms(vellum_client::now_millis() + ELEVEN_MINUTES)
        .unwrap();
    assert!(
        later
            .iter()
            .any(|a| a.contains("1 of your messages in ops")),
        "{later:?}"
    );
}
