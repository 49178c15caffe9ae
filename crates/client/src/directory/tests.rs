//! The directory copy against a directory server that can misbehave in every way the real
//! one cannot be made to (fork, roll back, sign a broken entry, lose its witnesses), and the
//! checks that use the copy: claims, rosters, identities and account notices.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::events::ChatEvent;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use vellum_directory::{Change, DeviceRef, DirectoryState, IdentityKey, Vouch};
use vellum_mls::mls_rs::storage_provider::in_memory::{
    InMemoryGroupStateStorage, InMemoryKeyPackageStorage,
};
use vellum_mls::mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{device_client, DeviceKey, OrgIdentityProvider, OrgSigner};
use vellum_tlog::cosignature::CosignatureSigner;
use vellum_tlog::{Checkpoint, NoteSigner, RootBuilder};
use vellum_wire::{
    ClaimKeyPackages, ClaimedKeyPackage, ClaimedKeyPackages, DeviceInfo, DeviceList,
    DirectoryCheckpoint, DirectoryConfig, DirectoryEntries, DirectoryRange, B64,
};

use super::*;
use crate::{profile_keys, Client, Error, LocalStore, MessageKind};

fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    seed
}

/// The directory as an honest (or not) server keeps it: entries, and its log key.
#[derive(Clone)]
struct Log {
    origin: String,
    key: [u8; 32],
    state: DirectoryState,
    leaves: Vec<Vec<u8>>,
    time: i64,
}

impl Log {
    fn new() -> Self {
        let mut log = Self {
            origin: "test.example/directory".into(),
            key: seed(),
            state: DirectoryState::default(),
            leaves: Vec::new(),
            time: 1_000,
        };
        log.append("", Change::UpgradeDone);
        log
    }

    fn append(&mut self, user: &str, change: Change) {
        let leaf = self.state.next_entry(user, self.time, change).to_bytes();
        self.state
            .apply(&leaf)
            .expect("the test log keeps the rules");
        self.leaves.push(leaf);
    }

    fn size(&self) -> usize {
        self.leaves.len()
    }

    fn signer(&self) -> NoteSigner {
        NoteSigner::new(&self.origin, &self.key).unwrap()
    }

    fn checkpoint(&self, size: usize) -> Checkpoint {
        let mut builder = RootBuilder::new();
        for leaf in &self.leaves[..size] {
            builder.push(vellum_tlog::leaf_hash(leaf));
        }
        Checkpoint {
            origin: self.origin.clone(),
            size: size as u64,
            root: builder.root(),
            extensions: vec![],
        }
    }

    fn note(&self, size: usize) -> String {
        self.signer()
            .sign(&self.checkpoint(size).to_text())
            .unwrap()
    }

    fn config(&self, witnesses: &[&CosignatureSigner], quorum: usize) -> DirectoryConfig {
        DirectoryConfig {
            origin: self.origin.clone(),
            log_key: self.signer().verifier_key(),
            witnesses: witnesses.iter().map(|w| w.verifier_key()).collect(),
            quorum,
            min_reset_wait_secs: 0,
        }
    }
}

fn device(id: &str, key: &DeviceKey) -> DeviceRef {
    DeviceRef {
        device_id: id.into(),
        signature_key: key.public_key(),
    }
}

/// What the fake server answers.
#[derive(Default)]
struct Served {
    config: Option<DirectoryConfig>,
    note: String,
    leaves: Vec<Vec<u8>>,
    devices: Vec<DeviceInfo>,
    /// The server refuses this device as revoked (but for the directory's reads).
    refuse: bool,
    /// Posted changes: appended to this log as `poster`'s, or (none) answered 200 and
    /// withheld.
    log: Option<Log>,
    poster: String,
}

/// The server's 403 `device_revoked`.
fn revoked_answer() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::FORBIDDEN,
        Json(serde_json::json!({
            "code": vellum_wire::codes::DEVICE_REVOKED,
            "message": "this device was revoked",
        })),
    )
        .into_response()
}

type Shared = Arc<Mutex<Served>>;

/// The directory endpoints, answering whatever `Served` holds (two entries a page, so that
/// paging is exercised). Requests are not authenticated: only the client is under test.
async fn serve(served: Shared) -> String {
    let app =
        Router::new()
            .route(
                "/v1/directory/config",
                get(|State(s): State<Shared>| async move {
                    Json(s.lock().unwrap().config.clone().unwrap())
                }),
            )
            .route(
                "/v1/directory/checkpoint",
                get(|State(s): State<Shared>| async move {
                    Json(DirectoryCheckpoint {
                        note: s.lock().unwrap().note.clone(),
                    })
                }),
            )
            .route(
                "/v1/directory/entries",
                get(
                    |State(s): State<Shared>, Query(range): Query<DirectoryRange>| async move {
                        let s = s.lock().unwrap();
                        let start = (range.start as usize).min(s.leaves.len());
                        let end = (start + 2).min(s.leaves.len());
                        Json(DirectoryEntries {
                            start: range.start,
                            entries: s.leaves[start..end]
                                .iter()
                                .map(|l| B64::from(l.clone()))
                                .collect(),
                        })
                    },
                ),
            )
            .route(
                "/v1/devices",
                get(|State(s): State<Shared>| async move {
                    use axum::response::IntoResponse;
                    let s = s.lock().unwrap();
                    if s.refuse {
                        return revoked_answer();
                    }
                    Json(DeviceList {
                        devices: s.devices.clone(),
                    })
                    .into_response()
                }),
            )
            .route(
                "/v1/directory/changes",
                axum::routing::post(
                    |State(s): State<Shared>,
                     Json(body): Json<vellum_wire::PostDirectoryChange>| async move {
                        let mut s = s.lock().unwrap();
                        let poster = s.poster.clone();
                        let index = match s.log.as_mut() {
                            Some(log) => {
                                log.append(&poster, serde_json::from_value(body.change).unwrap());
                                let (note, leaves) = (log.note(log.size()), log.leaves.clone());
                                s.note = note;
                                s.leaves = leaves;
                                s.leaves.len() - 1
                            }
                            None => s.leaves.len(),
                        };
                        Json(vellum_wire::DirectoryAppended {
                            index: index as u64,
                        })
                    },
                ),
            )
            // Every other endpoint: what a server that refuses the device answers.
            .fallback(|| async { revoked_answer() })
            .with_state(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Shows `log` up to `size` (its checkpoint signed by the log key, plus `cosignature`).
fn show(served: &Shared, log: &Log, size: usize, cosignature: Option<&CosignatureSigner>) {
    let mut note = log.note(size);
    if let Some(witness) = cosignature {
        note.push_str(&witness.sign(&log.checkpoint(size), 1_700_000_000).unwrap());
    }
    let mut s = served.lock().unwrap();
    s.note = note;
    s.leaves = log.leaves[..size].to_vec();
}

/// An enrolled device's profile, made without a server: its key, its org certificate.
fn profile(home: &Path, server: &str, org: &OrgSigner, user: &str, id: &str) -> DeviceKey {
    let key = DeviceKey::generate();
    let cert = org.issue(user, id, &key.public_key());
    let store = LocalStore::open(home).unwrap();
    use profile_keys::*;
    store.set_servers(&[server.to_owned()]).unwrap();
    store.profile_set(USER, user.as_bytes()).unwrap();
    store.profile_set(DEVICE_ID, id.as_bytes()).unwrap();
    store.profile_set(DEVICE_KEY, &key.seed()).unwrap();
    store.profile_set(CREDENTIAL, &cert.to_bytes()).unwrap();
    store
        .profile_set(ORG_KEY, org.public_key().as_bytes())
        .unwrap();
    DeviceKey::from_seed(&key.seed()).unwrap()
}

/// alice (this device, a1) and bob (b1) with identities; the server shows it all.
struct World {
    _dir: tempfile::TempDir,
    org: OrgSigner,
    log: Log,
    served: Shared,
    client: Client,
    alice: IdentityKey,
    bob: IdentityKey,
    alice_key: DeviceKey,
    bob_key: DeviceKey,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let org = OrgSigner::generate();
    let served = Shared::default();
    let url = serve(served.clone()).await;
    let alice_key = profile(dir.path(), &url, &org, "alice", "a1");
    let mut log = Log::new();
    let (alice, bob, bob_key) = (
        IdentityKey::generate(),
        IdentityKey::generate(),
        DeviceKey::generate(),
    );
    log.append(
        "alice",
        alice.identity_change("alice", device("a1", &alice_key), &alice_key),
    );
    log.append(
        "bob",
        bob.identity_change("bob", device("b1", &bob_key), &bob_key),
    );
    served.lock().unwrap().config = Some(log.config(&[], 0));
    show(&served, &log, log.size(), None);
    World {
        client: Client::open(dir.path()).unwrap(),
        _dir: dir,
        org,
        log,
        served,
        alice,
        bob,
        alice_key,
        bob_key,
    }
}

impl World {
    fn show_all(&self) {
        show(&self.served, &self.log, self.log.size(), None);
    }

    /// A device of `user` made with the org key, as its MLS client would be.
    fn mls_device(
        &self,
        user: &str,
        id: &str,
        key: &DeviceKey,
    ) -> vellum_mls::DeviceClient<InMemoryGroupStateStorage, InMemoryKeyPackageStorage> {
        device_client(
            &self.org.issue(user, id, &key.public_key()),
            key,
            OrgIdentityProvider::new(self.org.public_key()),
            InMemoryGroupStateStorage::default(),
            InMemoryKeyPackageStorage::default(),
        )
    }

    fn key_package(&self, user: &str, id: &str, key: &DeviceKey) -> MlsMessage {
        self.mls_device(user, id, key)
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .unwrap()
    }

    /// A chat of alice's with bob's device b1, stored as `sync` would have joined it.
    fn chat_with_bob(&self) -> String {
        let mut group = self
            .client
            .mls
            .create_group(ExtensionList::new(), Default::default(), None)
            .unwrap();
        group
            .commit_builder()
            .add_member(self.key_package("bob", "b1", &self.bob_key))
            .unwrap()
            .build()
            .unwrap();
        group.apply_pending_commit().unwrap();
        group.write_to_storage().unwrap();
        let id = vellum_mls::group_id_hex(group.group_id());
        self.client
            .store
            .add_chat(&id, Some("with bob"), 0)
            .unwrap();
        id
    }

    fn events(&self, chat: &str) -> Vec<String> {
        self.client
            .store
            .history(chat)
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == MessageKind::Event)
            .map(|m| m.text)
            .collect()
    }
}

fn texts(rows: &[MessageRow]) -> Vec<String> {
    rows.iter().map(|r| r.text.clone()).collect()
}

#[tokio::test]
async fn the_copy_pins_on_first_use_catches_up_in_pages_and_vouches() {
    let w = world().await;
    let mut client = w.client;
    assert!(client.pinned_directory().unwrap().is_none());
    let applied = client.refresh_directory().await.unwrap();
    assert_eq!(applied.len(), 3);
    assert_eq!(
        client.pinned_directory().unwrap(),
        w.served.lock().unwrap().config.clone(),
        "pinned on first use"
    );
    let mirror = client.directory().unwrap();
    assert_eq!(mirror.size(), 3);
    assert_eq!(
        mirror.state.vouch("bob", "b1", &w.bob_key.public_key()),
        Vouch::Approved
    );
    // Nothing new: nothing applied, nothing announced.
    assert!(client.refresh_directory().await.unwrap().is_empty());
    assert!(client.directory_alarms().unwrap().is_empty());
    assert!(client.account_notices().unwrap().is_empty());
}

#[tokio::test]
async fn issue_9_a_forked_directory_is_caught_and_the_copy_kept() {
    let w = world().await;
    let mut client = w.client;
    let chat_log = w.log.clone();
    client.refresh_directory().await.unwrap();
    let held = client.directory().unwrap();
    // The server shows this device another history: bob's identity is someone else's, with
    // a device of theirs, under the same log key.
    let mut forked = Log {
        state: DirectoryState::default(),
        leaves: Vec::new(),
        ..chat_log.clone()
    };
    for leaf in &chat_log.leaves[..2] {
        forked.state.apply(leaf).unwrap();
        forked.leaves.push(leaf.clone());
    }
    let operator = IdentityKey::generate();
    let ghost = DeviceKey::generate();
    forked.append(
        "bob",
        operator.identity_change("bob", device("ghost", &ghost), &ghost),
    );
    // Then an entry this copy could apply on top of what it holds.
    let c1 = DeviceKey::generate();
    forked.append(
        "carol",
        operator.identity_change("carol", device("c1", &c1), &c1),
    );
    show(&w.served, &forked, forked.size(), None);
    let err = client.refresh_directory().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.contains("forked")),
        "{err}"
    );
    let alarms = client.directory_alarms().unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert!(alarms[0].starts_with(DIRECTORY_ALARM) && alarms[0].contains("forked"));
    // The copy held is the one it was: the fork's entries are not in it.
    let after = client.directory().unwrap();
    assert_eq!(after.size(), held.size());
    assert_eq!(
        after.state.vouch("bob", "ghost", &ghost.public_key()),
        Vouch::Unknown
    );
    assert_eq!(
        after.state.user("bob").unwrap().identity,
        Some(w.bob.public())
    );
    assert!(after.state.user("carol").is_none());
    // The honest log again: the copy goes on, and the alarm stays (kept for good).
    show(&w.served, &chat_log, chat_log.size(), None);
    client.refresh_directory().await.unwrap();
    assert_eq!(client.directory_alarms().unwrap().len(), 1);
}

#[tokio::test]
async fn issue_9_a_split_view_lacks_the_witness_quorum() {
    // Two devices pin a witness. The server shows one the log and the other a fork; the
    // witness cosigned the log only (witnesses refuse forks), so the fork lacks the quorum.
    let w = world().await;
    let witness = CosignatureSigner::new("witness.example", &seed()).unwrap();
    let config = w.log.config(&[&witness], 1);
    w.served.lock().unwrap().config = Some(config);
    show(&w.served, &w.log, w.log.size(), Some(&witness));
    let mut alice = w.client;
    alice.refresh_directory().await.unwrap();
    let carol_dir = tempfile::tempdir().unwrap();
    let url = alice.api.base().to_owned();
    profile(carol_dir.path(), &url, &w.org, "carol", "c1");
    let mut carol = Client::open(carol_dir.path()).unwrap();
    carol.pin_directory().await.unwrap();
    let mut forked = w.log.clone();
    let operator = IdentityKey::generate();
    let c_ghost = DeviceKey::generate();
    forked.append(
        "carol",
        operator.identity_change("carol", device("c-ghost", &c_ghost), &c_ghost),
    );
    show(&w.served, &forked, forked.size(), None);
    let err = carol.refresh_directory().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.contains("0 of the 1 witness")),
        "{err}"
    );
    assert_eq!(carol.directory().unwrap().size(), 0, "nothing taken");
    assert_eq!(carol.directory_alarms().unwrap().len(), 1);
    // Once a cosigned checkpoint comes, a lacking quorum is no longer an alarm.
    show(&w.served, &w.log, w.log.size(), Some(&witness));
    carol.refresh_directory().await.unwrap();
    assert_eq!(carol.directory().unwrap().size(), 3);
    assert!(carol.directory_alarms().unwrap().is_empty());
}

#[tokio::test]
async fn issue_9_a_rollback_a_foreign_signature_and_a_broken_rule_are_refused() {
    let mut w = world().await;
    let chat = w.chat_with_bob();
    w.client.refresh_directory().await.unwrap();
    let held = w.client.directory().unwrap().size();

    // 1. A smaller tree than the copy holds.
    show(&w.served, &w.log, 2, None);
    let err = w.client.refresh_directory().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.contains("went back")),
        "{err}"
    );

    // 2. A checkpoint signed by another key of the same name.
    let mut impostor = w.log.clone();
    impostor.key = seed();
    show(&w.served, &impostor, impostor.size(), None);
    let err = w.client.refresh_directory().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.contains("not signed by the pinned")),
        "{err}"
    );

    // 3. An entry that breaks the rules, under a checkpoint the log key did sign: a device
    // of bob's "approved" by a key that is not bob's identity.
    let mut broken = w.log.clone();
    let operator = IdentityKey::generate();
    let leaf = broken
        .state
        .next_entry(
            "bob",
            broken.time,
            operator.approve_change(
                "bob",
                device("ghost", &DeviceKey::generate()),
                "b1",
                &w.bob_key,
            ),
        )
        .to_bytes();
    broken.leaves.push(leaf);
    show(&w.served, &broken, broken.size(), None);
    let err = w.client.refresh_directory().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.contains("breaks the directory's rules")),
        "{err}"
    );

    assert_eq!(w.client.directory().unwrap().size(), held, "the copy stays");
    let alarms = w.client.directory_alarms().unwrap();
    assert_eq!(alarms.len(), 3, "{alarms:?}");
    // Each is one loud event in the chat.
    let events: Vec<String> = w
        .events(&chat)
        .into_iter()
        .filter(|e| e.starts_with(DIRECTORY_ALARM))
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    // The same failure again is not announced again.
    show(&w.served, &w.log, 2, None);
    w.client.refresh_directory().await.unwrap_err();
    assert_eq!(
        w.events(&chat)
            .iter()
            .filter(|e| e.starts_with(DIRECTORY_ALARM))
            .count(),
        3
    );
}

#[tokio::test]
async fn issue_9_a_changed_configuration_is_refused_and_the_pinned_one_kept() {
    let w = world().await;
    let mut client = w.client;
    client.refresh_directory().await.unwrap();
    let pinned = client.pinned_directory().unwrap();
    // The server now names another log key (and signs with it).
    let mut other = w.log.clone();
    other.key = seed();
    w.served.lock().unwrap().config = Some(other.config(&[], 0));
    show(&w.served, &other, other.size(), None);
    client.refresh_directory().await.unwrap_err();
    assert_eq!(client.pinned_directory().unwrap(), pinned);
    let alarms = client.directory_alarms().unwrap();
    assert!(
        alarms
            .iter()
            .any(|a| a.contains("another directory configuration")),
        "{alarms:?}"
    );
    assert!(alarms
        .iter()
        .any(|a| a.contains("not signed by the pinned")));
}

#[tokio::test]
async fn issue_9_own_account_changes_and_ghost_devices_become_notices() {
    let mut w = world().await;
    w.client.refresh_directory().await.unwrap();
    assert!(
        w.client.take_directory_shown().is_empty(),
        "the first copy is no news"
    );
    let a2 = DeviceKey::generate();
    w.log.append(
        "alice",
        w.alice
            .approve_change("alice", device("a2", &a2), "a1", &w.alice_key),
    );
    w.log.append(
        "alice",
        Change::RevokedByAdmin {
            device_id: "a2".into(),
        },
    );
    w.log.append(
        "alice",
        Change::ResetRequested {
            request_id: "r1".into(),
            effective_at: 1_700_000_000,
        },
    );
    w.log.append(
        "alice",
        w.alice.veto_change("alice", "r1", "a1", &w.alice_key),
    );
    w.show_all();
    // A device the server lists as approved for alice that no device of hers approved.
    let ghost = DeviceKey::generate();
    w.served.lock().unwrap().devices = vec![DeviceInfo {
        device_id: "ghost".into(),
        user: "alice".into(),
        state: vellum_wire::DeviceState::Approved,
        signature_key: ghost.public_key().to_vec().into(),
        enrolled_at: 0,
        last_seen: None,
    }];
    w.client.refresh_directory().await.unwrap();
    let expected = vec![
        "device a2 was approved by your device a1".to_owned(),
        "your device a2 was revoked by the administrator".to_owned(),
        "the administrator asked to reset your identity; it takes effect at 2023-11-14T22:13:20Z unless a device of yours vetoes it (`vellum devices veto-reset`)".to_owned(),
        "the reset of your identity was vetoed by your device a1".to_owned(),
        "a device you did not approve was added to your account: ghost".to_owned(),
    ];
    let shown = w.client.take_directory_shown();
    assert_eq!(texts(&shown), expected);
    assert!(shown.iter().all(|r| r.group_id.is_empty()));
    assert_eq!(texts(&w.client.account_notices().unwrap()), expected);
    // Each is told once.
    w.client.refresh_directory().await.unwrap();
    assert!(w.client.take_directory_shown().is_empty());
    assert_eq!(w.client.account_notices().unwrap().len(), expected.len());
}

#[tokio::test]
async fn issue_9_an_identity_reset_is_shown_and_confirmed_before_re_adding() {
    let mut w = world().await;
    let chat = w.chat_with_bob();
    w.client.refresh_directory().await.unwrap();
    let first = w.client.safety("bob").unwrap();
    assert_eq!(first.number.len(), 12 * 5 + 11);
    assert!(!first.confirmed && !first.reset_seen);
    assert!(w.client.check_identities(&["bob".into()]).is_ok());
    // Same number from bob's side.
    assert_eq!(
        first.number,
        vellum_directory::safety_number(("bob", &w.bob.public()), ("alice", &w.alice.public()))
    );

    // A second device of bob's leaves the number as it was.
    let b2 = DeviceKey::generate();
    w.log.append(
        "bob",
        w.bob
            .approve_change("bob", device("b2", &b2), "b1", &w.bob_key),
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    assert_eq!(w.client.safety("bob").unwrap().number, first.number);

    // The administrator resets bob's identity; a new device of "bob" starts another.
    w.log.append(
        "bob",
        Change::ResetRequested {
            request_id: "r1".into(),
            effective_at: 2_000,
        },
    );
    w.log.time = 2_000;
    w.log.append(
        "bob",
        Change::Reset {
            request_id: "r1".into(),
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    assert!(w
        .events(&chat)
        .contains(&"bob's identity was reset by the administrator".to_owned()));
    // bob's devices are revoked: the chat's copy of b1 must go, and says why.
    let mirror = w.client.directory().unwrap();
    let group = w.client.load_group(&chat).unwrap();
    assert_eq!(
        w.client.unvouched_members(&group, &mirror).unwrap(),
        vec![("bob".to_owned(), "b1".to_owned(), Vouch::Revoked)]
    );
    let err = w.client.safety("bob").unwrap_err();
    assert!(err.to_string().contains("no identity key"), "{err}");

    let new_bob = IdentityKey::generate();
    let b3 = DeviceKey::generate();
    w.log.append(
        "bob",
        new_bob.identity_change("bob", device("b3", &b3), &b3),
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    let after = w.client.safety("bob").unwrap();
    assert_ne!(after.number, first.number, "a reset changes the number");
    assert!(after.reset_seen && !after.confirmed);
    let err = w.client.check_identities(&["bob".into()]).unwrap_err();
    assert!(
        err.to_string().contains("`vellum safety bob`")
            && err.to_string().contains("`vellum safety bob --confirm`"),
        "{err}"
    );
    let confirmed = w.client.confirm_identity("bob").unwrap();
    assert!(confirmed.confirmed && !confirmed.reset_seen);
    assert_eq!(confirmed.number, after.number);
    assert!(w.client.check_identities(&["bob".into()]).is_ok());
    assert!(w.client.safety("bob").unwrap().confirmed);
    // Own digits: 30 of them.
    assert_eq!(w.client.safety("alice").unwrap().number.len(), 6 * 5 + 5);
}

#[tokio::test]
async fn issue_9_a_key_package_of_a_device_the_directory_does_not_vouch_for_is_refused() {
    let mut w = world().await;
    let b2 = DeviceKey::generate();
    w.log.append(
        "bob",
        w.bob
            .approve_change("bob", device("b2", &b2), "b1", &w.bob_key),
    );
    w.log.append(
        "bob",
        Change::RevokedByAdmin {
            device_id: "b2".into(),
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    let request = ClaimKeyPackages {
        users: vec!["bob".into()],
        devices: vec![],
    };
    let answer = |kps: Vec<(&str, &str, MlsMessage)>| ClaimedKeyPackages {
        key_packages: kps
            .into_iter()
            .map(|(user, id, kp)| ClaimedKeyPackage {
                user: user.into(),
                device_id: id.into(),
                key_package: kp.to_bytes().unwrap().into(),
            })
            .collect(),
    };
    let honest = || ("bob", "b1", w.key_package("bob", "b1", &w.bob_key));
    let taken = w
        .client
        .check_claimed(&request, answer(vec![honest()]), None)
        .unwrap();
    assert_eq!(taken.len(), 1);

    // A device with an org certificate that bob's identity never approved (a ghost the
    // server planted), one revoked, one under another key: each refuses the whole answer.
    let ghost = DeviceKey::generate();
    let other_key = DeviceKey::generate();
    for (extra, reason) in [
        (
            ("bob", "ghost", w.key_package("bob", "ghost", &ghost)),
            "not in the key directory",
        ),
        (("bob", "b2", w.key_package("bob", "b2", &b2)), "revoked"),
        (
            ("bob", "b1", w.key_package("bob", "b1", &other_key)),
            "its key differs",
        ),
    ] {
        let device = extra.1;
        let mut kps = vec![extra];
        if device != "b1" {
            kps.insert(0, honest());
        }
        let err = w
            .client
            .check_claimed(&request, answer(kps), None)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("bob's device {device}"))
                && text.contains(reason)
                && text.contains("nothing was committed"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn issue_9_a_removed_devices_reason_is_shown_from_the_members_own_copy() {
    let mut w = world().await;
    let chat = w.chat_with_bob();
    w.log.append(
        "bob",
        Change::RevokedByAdmin {
            device_id: "b1".into(),
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    let mut group = w.client.load_group(&chat).unwrap();
    let before = vellum_mls::roster(&group, &w.client.identity).unwrap();
    let index = vellum_mls::roster(&group, &w.client.identity)
        .unwrap()
        .into_iter()
        .find(|(_, c)| c.device_id == "b1")
        .unwrap()
        .0;
    group
        .commit_builder()
        .remove_member(index)
        .unwrap()
        .build()
        .unwrap();
    group.apply_pending_commit().unwrap();
    let after = vellum_mls::roster(&group, &w.client.identity).unwrap();
    let removed = ChatEvent::MemberRemoved {
        by: "carol".into(),
        user: "bob".into(),
    };
    let mut events = vec![removed.clone()];
    w.client
        .explain_removals(&before, &after, &mut events)
        .unwrap();
    assert_eq!(
        events,
        vec![
            removed,
            ChatEvent::UnvouchedDeviceRemoved {
                by: "carol".into(),
                user: "bob".into(),
                device_id: "b1".into(),
                reason: "revoked".into()
            }
        ]
    );
    assert!(w
        .client
        .unvouched_members(&group, &w.client.directory().unwrap())
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn issue_9_with_witnesses_a_ghost_is_reported_once_the_directory_grew_past_it() {
    // The checkpoint served carries the witness quorum, so it may lag the server's newest
    // approval: a device listed but not in it is reported only once the directory grew
    // past the checkpoint it was first seen at.
    let mut w = world().await;
    let witness = CosignatureSigner::new("witness.example", &seed()).unwrap();
    w.served.lock().unwrap().config = Some(w.log.config(&[&witness], 1));
    show(&w.served, &w.log, w.log.size(), Some(&witness));
    let listed = |id: &str, key: &DeviceKey| DeviceInfo {
        device_id: id.into(),
        user: "alice".into(),
        state: vellum_wire::DeviceState::Approved,
        signature_key: key.public_key().to_vec().into(),
        enrolled_at: 0,
        last_seen: None,
    };
    let (a2, ghost) = (DeviceKey::generate(), DeviceKey::generate());
    w.served.lock().unwrap().devices = vec![listed("a2", &a2), listed("ghost", &ghost)];
    w.client.refresh_directory().await.unwrap();
    w.client.refresh_directory().await.unwrap();
    assert!(w.client.account_notices().unwrap().is_empty());
    // a2's approval reaches a cosigned checkpoint; the ghost's never does.
    w.log.append(
        "alice",
        w.alice
            .approve_change("alice", device("a2", &a2), "a1", &w.alice_key),
    );
    show(&w.served, &w.log, w.log.size(), Some(&witness));
    w.client.refresh_directory().await.unwrap();
    assert_eq!(
        texts(&w.client.account_notices().unwrap()),
        vec![
            "device a2 was approved by your device a1".to_owned(),
            "a device you did not approve was added to your account: ghost".to_owned(),
        ]
    );
}

#[tokio::test]
async fn issue_9_nothing_is_sent_while_a_device_the_directory_does_not_vouch_for_stays() {
    let mut w = world().await;
    let chat = w.chat_with_bob();
    w.log.append(
        "bob",
        Change::RevokedByAdmin {
            device_id: "b1".into(),
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    // This fake server takes no commit: the removal cannot be committed, so the send is
    // refused, saying why, and nothing is kept or encrypted.
    let err = w.client.send(&chat, "not for b1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bob's device b1 (revoked) must leave this chat")
            && text.contains("its removal could not be committed"),
        "{text}"
    );
    assert!(w
        .client
        .store
        .history(&chat)
        .unwrap()
        .iter()
        .all(|m| m.kind != MessageKind::Text));

    // Once this device itself is revoked, it sends nothing at all.
    w.log.append(
        "alice",
        Change::RevokedByAdmin {
            device_id: "a1".into(),
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    let err = w.client.send(&chat, "hello").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the key directory does not vouch for this device (revoked)"),
        "{err}"
    );
}

/// The server's word alone (`devices.state = 'revoked'` set by an operator) wipes nothing:
/// the device reads the directory, keeps its profile, raises a permanent alarm and says so.
/// Once the directory says the device was revoked, the same answer wipes the profile's
/// files (HOME and anything else in it stay).
#[tokio::test]
async fn issue_9_only_the_directory_can_wipe_a_device() {
    let mut w = world().await;
    w.client.refresh_directory().await.unwrap();
    let chat = w.chat_with_bob();
    let home = w.client.home.clone();
    std::fs::write(home.join("notes.txt"), "not vellum's").unwrap();
    w.served.lock().unwrap().refuse = true;
    let sync = || {
        w.client
            .request::<serde_json::Value>(Method::GET, "/v1/sync", None::<&()>)
    };
    let err = sync().await.unwrap_err();
    assert!(
        matches!(&err, Error::Directory(why) if why.starts_with(crate::devices::REFUSED_NOT_REVOKED)),
        "{err}"
    );
    assert!(home.join("vellum.db").exists(), "nothing was wiped");
    assert!(w.client.holds_identity().is_ok());
    let alarms = w.client.directory_alarms().unwrap();
    assert!(
        alarms.len() == 1 && alarms[0].contains(crate::devices::REFUSED_NOT_REVOKED),
        "{alarms:?}"
    );
    assert!(w
        .events(&chat)
        .iter()
        .any(|e| e.contains(crate::devices::REFUSED_NOT_REVOKED)));
    // A revocation signed into a log the device does not pin wipes nothing either.
    let mut forged = w.log.clone();
    forged.key = seed();
    forged.append(
        "alice",
        Change::RevokedByAdmin {
            device_id: "a1".into(),
        },
    );
    show(&w.served, &forged, forged.size(), None);
    assert!(matches!(sync().await.unwrap_err(), Error::Directory(_)));
    assert!(home.join("vellum.db").exists(), "nothing was wiped");

    // The revocation in the directory: wiped.
    w.log.append(
        "alice",
        Change::RevokedByAdmin {
            device_id: "a1".into(),
        },
    );
    w.show_all();
    let err = sync().await.unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err}");
    assert_eq!(
        err.to_string(),
        "this device was revoked: its profile has been wiped"
    );
    let mut left: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["notes.txt"], "only the profile's files go");
    assert!(w.client.store.profile_get("device_key").unwrap().is_none());
    assert!(w.client.store.history(&chat).unwrap().is_empty());
    assert!(Client::open(&home).is_err(), "nothing left to open");
}

/// A pending reset of one's own identity is an alarm (`status` fails) until it is vetoed.
#[tokio::test]
async fn issue_9_a_pending_reset_of_ones_identity_is_an_alarm() {
    let mut w = world().await;
    w.log.append(
        "alice",
        Change::ResetRequested {
            request_id: "r1".into(),
            effective_at: 1_700_000_000,
        },
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    assert_eq!(
        w.client.directory_alarms().unwrap(),
        vec!["the administrator asked to reset alice's identity; it takes effect at 2023-11-14T22:13:20Z unless a device of yours vetoes it: `vellum devices veto-reset`"]
    );
    w.log.append(
        "alice",
        w.alice.veto_change("alice", "r1", "a1", &w.alice_key),
    );
    w.show_all();
    w.client.refresh_directory().await.unwrap();
    assert!(w.client.directory_alarms().unwrap().is_empty());
}

fn hold_identity(client: &Client, identity: &IdentityKey) {
    client
        .store
        .profile_set(crate::devices::IDENTITY_KEY, identity.seed().as_slice())
        .unwrap();
}

/// `devices veto-reset` checks the directory: a veto the server answers 200 to but does
/// not publish is an error and an alarm; a published one ends the reset.
#[tokio::test]
async fn issue_9_a_veto_must_land_in_the_directory() {
    for honest in [true, false] {
        let mut w = world().await;
        hold_identity(&w.client, &w.alice);
        w.log.append(
            "alice",
            Change::ResetRequested {
                request_id: "r1".into(),
                effective_at: 1_700_000_000,
            },
        );
        w.show_all();
        {
            let mut s = w.served.lock().unwrap();
            s.poster = "alice".into();
            s.log = honest.then(|| w.log.clone());
        }
        let vetoed = w.client.veto_reset().await;
        let alarms = w.client.directory_alarms().unwrap();
        if honest {
            assert_eq!(vetoed.unwrap().request_id, "r1");
            assert!(alarms.is_empty(), "{alarms:?}");
        } else {
            assert_eq!(
                vetoed.unwrap_err().to_string(),
                "key directory: the veto was not published: the server may be withholding it"
            );
            assert!(
                alarms
                    .iter()
                    .any(|a| a
                        .ends_with("the veto was not published: the server may be withholding it")),
                "{alarms:?}"
            );
            assert!(
                alarms.iter().any(|a| a.contains("veto-reset")),
                "the reset is still pending"
            );
        }
    }
}

/// A first device checks that the identity it published is in the directory; one withheld
/// is an alarm and an error, and the profile stays to publish it again.
#[tokio::test]
async fn issue_9_enrollment_confirms_its_identity_landed() {
    let w = world().await;
    let url = w.client.api.base().to_owned();
    for honest in [true, false] {
        let home = tempfile::tempdir().unwrap();
        profile(
            home.path(),
            &url,
            &w.org,
            "carol",
            if honest { "c1" } else { "c2" },
        );
        let mut carol = Client::open(home.path()).unwrap();
        hold_identity(&carol, &IdentityKey::generate());
        carol.refresh_directory().await.unwrap();
        {
            let mut s = w.served.lock().unwrap();
            s.poster = "carol".into();
            s.log = honest.then(|| w.log.clone());
        }
        let published = carol.publish_enrollment().await;
        let alarms = carol.directory_alarms().unwrap();
        if honest {
            published.unwrap();
            assert!(alarms.is_empty(), "{alarms:?}");
        } else {
            let err = published.unwrap_err().to_string();
            assert!(err.contains("the server may be withholding it"), "{err}");
            assert!(
                alarms.len() == 1 && alarms[0].contains("is not in the key directory"),
                "{alarms:?}"
            );
            assert!(carol.holds_identity().unwrap(), "the profile stays");
        }
    }
}

/// A holder whose copy shows another identity for its user raises a permanent alarm, told
/// once in every chat.
#[tokio::test]
async fn issue_9_another_identity_for_ones_user_is_an_alarm() {
    let mut w = world().await;
    hold_identity(&w.client, &IdentityKey::generate());
    let chat = w.chat_with_bob();
    w.client.refresh_directory().await.unwrap();
    w.client.refresh_directory().await.unwrap();
    let wanted =
        "the key directory holds another identity for alice than the one this device holds";
    let alarms = w.client.directory_alarms().unwrap();
    assert!(
        alarms.len() == 1 && alarms[0].ends_with(wanted),
        "{alarms:?}"
    );
    let told: Vec<String> = w
        .events(&chat)
        .into_iter()
        .filter(|e| e.contains(wanted))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
}
