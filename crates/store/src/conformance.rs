//! The behaviour every [`Store`] backend must show. Backends run it with
//! [`store_conformance_tests!`](crate::store_conformance_tests).

use crate::*;

/// Generates one `#[tokio::test]` per conformance check for a backend.
/// `$make` is an async expression producing `(store, guard)`: a fresh, empty store and
/// whatever must live as long as it (a temporary directory, say).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            users_codes_and_devices,
            nonces_detect_replays,
            log_entries_carry_a_running_hash,
            key_packages_single_use_then_last_resort,
            issue_7_a_key_package_is_filed_once,
            issue_9_a_revoked_device_is_known_as_revoked_and_never_claimed,
            commits_are_ordered_first_wins,
            messages_are_idempotent_and_members_only,
            delivery_respects_join_removal_and_acks,
            pending_is_paged,
            org_policy_defaults_and_updates,
            purge_drops_expired_and_stale_messages_only,
            delete_for_everyone_is_for_senders_only,
            purge_waits_for_the_archiver,
            receipts_are_queued_per_device,
            issue_13_a_sync_is_one_view_and_an_ack_one_transaction,
            issue8_chat_classes_are_kept_and_transitory_chats_counted,
            issue8_holds_suspend_purging_in_transitory_chats_of_held_users,
            issue8_a_user_named_records_before_records_init_never_becomes_the_archiver,
            issue8_one_archiver_device_its_bindings_and_its_replacement,
            issue8_the_checkpoint_chain_only_grows_from_its_head,
            issue8_record_messages_without_a_receipt_are_counted,
            issue_9_enrollment_decides_approved_or_pending,
            issue_9_directory_entries_append_with_their_device_changes,
            issue_9_approval_steps_only_in_order,
            issue_9_reset_wait_is_a_policy_and_last_seen_is_kept,
            issue_10_a_leave_proposal_stops_delivery_at_once,
            issue_13_a_state_write_from_a_stale_state_is_refused,
            issue_10_group_cursors_are_the_current_members_acks,
            issue_10_blobs_take_chunks_in_order_within_the_quota,
            issue_10_blobs_go_at_expiry_and_deletion_but_wait_for_the_archiver,
            issue_13_a_job_lease_is_taken_again_once_dropped,
            issue_13_concurrent_appends_commit_together_gapless_and_chained,
            issue_13_a_refused_append_in_a_burst_fails_alone,
            issue_13_a_retry_in_the_same_burst_is_the_first_append,
            issue_13_an_append_whose_caller_left_before_its_batch_is_not_made,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::conformance::$name(&store).await;
            }
        )*
    };
}

/// Polls `attempt` until it gives a value, for at most ten seconds (then fails, saying
/// `what` did not happen): for what another session or node does in its own time.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn device(id: &str, user: &str) -> Device {
    Device {
        device_id: id.into(),
        user: user.into(),
        signature_key: format!("key-{id}").into_bytes(),
    }
}

async fn enroll(store: &impl Store, id: &str, user: &str) {
    if !store.user_exists(user).await.unwrap() {
        store.create_user(user, 0).await.unwrap();
    }
    let hash = {
        let mut h = [0u8; 32];
        h[..id.len()].copy_from_slice(id.as_bytes());
        h
    };
    store.add_enrollment_code(user, hash, 1_000).await.unwrap();
    store
        .enroll_device(hash, 10, device(id, user), false)
        .await
        .unwrap();
}

async fn group_of(store: &impl Store, group: &str, creator: &str) {
    store
        .create_group(NewGroup {
            group_id: group.into(),
            epoch: 0,
            state: b"state-0".to_vec(),
            timers: ChatTimers::default(),
            record: false,
            creator_device: creator.into(),
            created_at: 0,
        })
        .await
        .unwrap();
}

fn commit(
    group: &str,
    epoch: u64,
    sender: &str,
    payload: &[u8],
    added: &[&str],
    removed: &[&str],
) -> CommitAppend {
    CommitAppend {
        group_id: group.into(),
        expected_epoch: epoch,
        // One state write per epoch, unless a test appends proposals too.
        expected_state_version: epoch,
        new_epoch: epoch + 1,
        state: format!("state-{}", epoch + 1).into_bytes(),
        timers: ChatTimers {
            expire_secs: Some(60),
            burn_secs: None,
        },
        record: false,
        sender_device: sender.into(),
        payload: payload.to_vec(),
        received_at: 0,
        added: added.iter().map(|s| s.to_string()).collect(),
        removed: removed.iter().map(|s| s.to_string()).collect(),
        welcome: Some(b"welcome".to_vec()),
    }
}

fn message(group: &str, epoch: u64, sender: &str, id: &str) -> MessageAppend {
    MessageAppend {
        group_id: group.into(),
        epoch,
        sender_device: sender.into(),
        client_msg_id: id.into(),
        payload: format!("ct-{id}").into_bytes(),
        received_at: 0,
        expires_at: None,
    }
}

fn seqs(p: &Pending, group: &str) -> Vec<u64> {
    p.groups
        .iter()
        .filter(|(g, _)| g == group)
        .flat_map(|(_, e)| e.iter().map(|e| e.seq))
        .collect()
}

pub async fn users_codes_and_devices(store: &impl Store) {
    store.create_user("alice", 1).await.unwrap();
    assert!(matches!(
        store.create_user("alice", 2).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.user_exists("alice").await.unwrap());
    assert!(!store.user_exists("bob").await.unwrap());

    let code = [7u8; 32];
    store.add_enrollment_code("alice", code, 100).await.unwrap();
    assert_eq!(store.enrollment_code_user(code, 50).await.unwrap(), "alice");
    assert!(matches!(
        store.enrollment_code_user(code, 100).await,
        Err(Error::InvalidCode)
    ));
    assert!(matches!(
        store.enrollment_code_user([8u8; 32], 50).await,
        Err(Error::InvalidCode)
    ));

    // A code for alice cannot enroll a device for someone else.
    assert!(matches!(
        store
            .enroll_device(code, 50, device("x", "mallory"), false)
            .await,
        Err(Error::InvalidCode)
    ));
    store
        .enroll_device(code, 50, device("d1", "alice"), false)
        .await
        .unwrap();
    // Used once, never again, and nothing changes on the second try.
    assert!(matches!(
        store
            .enroll_device(code, 51, device("d2", "alice"), false)
            .await,
        Err(Error::InvalidCode)
    ));
    assert_eq!(
        store.device("d1").await.unwrap(),
        Some(device("d1", "alice"))
    );
    assert_eq!(store.device("d2").await.unwrap(), None);
    assert_eq!(
        store.user_devices("alice").await.unwrap(),
        vec![device("d1", "alice")]
    );

    // An expired code enrolls nothing.
    let late = [9u8; 32];
    store.add_enrollment_code("alice", late, 60).await.unwrap();
    assert!(matches!(
        store
            .enroll_device(late, 60, device("d3", "alice"), false)
            .await,
        Err(Error::InvalidCode)
    ));
    assert_eq!(store.device("d3").await.unwrap(), None);
}

pub async fn nonces_detect_replays(store: &impl Store) {
    use NonceCheck::*;
    // Timestamps from before the store started are refused: their nonces may be forgotten.
    let NonceCheck::BeforeStart { started_at } =
        store.remember_nonce("d1", "n0", 0, -600).await.unwrap()
    else {
        panic!("a timestamp from 1970 is from before the store started");
    };
    assert!(started_at > 0);
    assert_eq!(
        store
            .remember_nonce("d1", "n0", started_at - 1, 0)
            .await
            .unwrap(),
        BeforeStart { started_at },
        "strictly before the start second is refused"
    );
    let t = started_at;
    // The start second itself is fine: a client is not refused for a restart within a second.
    assert_eq!(
        store.remember_nonce("d1", "n1", t, t - 600).await.unwrap(),
        Fresh
    );
    assert_eq!(
        store.remember_nonce("d1", "n1", t, t - 599).await.unwrap(),
        Replayed
    );
    // Distinct nonces, devices or timestamps (a new signature) are distinct requests.
    assert_eq!(
        store.remember_nonce("d1", "n2", t, t - 599).await.unwrap(),
        Fresh
    );
    assert_eq!(
        store.remember_nonce("d2", "n1", t, t - 599).await.unwrap(),
        Fresh
    );
    assert_eq!(
        store
            .remember_nonce("d1", "n1", t + 1, t - 599)
            .await
            .unwrap(),
        Fresh
    );
    assert_eq!(
        store
            .remember_nonce("d1", "n1", t + 1, t - 598)
            .await
            .unwrap(),
        Replayed
    );
    // Once the window has passed a timestamp, it is refused whatever its nonce: forgetting
    // old nonces can never let a replay in.
    assert_eq!(
        store.remember_nonce("d1", "n1", t, t + 1).await.unwrap(),
        Expired
    );
    assert_eq!(
        store.remember_nonce("d1", "n9", t, t + 1).await.unwrap(),
        Expired
    );
    assert_eq!(
        store
            .remember_nonce("d1", "n1", t + 700, t + 100)
            .await
            .unwrap(),
        Fresh
    );
    assert_eq!(
        store
            .remember_nonce("d1", "n1", t + 700, t + 100)
            .await
            .unwrap(),
        Replayed
    );
}

/// Every entry carries the running log hash, the same one a device recomputes from the
/// entries it receives; the head names the group's last seq and hash.
pub async fn log_entries_carry_a_running_hash(store: &impl Store) {
    use vellum_wire::{log_hash_next, log_hash_start};
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add", &["b1"], &[]))
        .await
        .unwrap(); // seq 1
    store
        .append_message(message("g", 1, "a1", "m1"))
        .await
        .unwrap(); // seq 2
    store
        .append_message(message("g", 1, "b1", "m2"))
        .await
        .unwrap(); // seq 3
    let p = store.pending("a1", 100).await.unwrap();
    let entries = &p.groups.iter().find(|(g, _)| g == "g").unwrap().1;
    let mut hash = log_hash_start("g");
    for e in entries {
        hash = log_hash_next(&hash, e.seq, e.epoch, e.kind, &e.sender_device, &e.payload);
        assert_eq!(e.log_hash, hash, "entry {}", e.seq);
    }
    assert_eq!(entries.len(), 3);
    let head = p.heads.iter().find(|(g, _)| g == "g").unwrap().1;
    assert_eq!(
        head,
        LogHead {
            seq: 3,
            log_hash: hash
        }
    );

    // A purged entry leaves the chain (and the head) as it was.
    let mut expiring = message("g", 1, "a1", "m3");
    expiring.expires_at = Some(10);
    store.append_message(expiring).await.unwrap(); // seq 4
    store
        .append_message(message("g", 1, "a1", "m4"))
        .await
        .unwrap(); // seq 5
    assert_eq!(store.purge_expired(100, 0).await.unwrap(), 1);
    store.ack("a1", &[], &[("g".into(), 3)], &[]).await.unwrap();
    let p = store.pending("a1", 100).await.unwrap();
    assert_eq!(seqs(&p, "g"), vec![5]);
    let head = p.heads.iter().find(|(g, _)| g == "g").unwrap().1;
    assert_eq!(head.seq, 5);
    assert_eq!(head.log_hash, p.groups[0].1[0].log_hash);

    let id = store.instance_id().await.unwrap();
    assert_eq!(id.len(), 32, "128 random bits, hex");
    assert_eq!(store.instance_id().await.unwrap(), id, "stable");
}

pub async fn key_packages_single_use_then_last_resort(store: &impl Store) {
    enroll(store, "d1", "alice").await;
    assert_eq!(store.claim_key_package("d1").await.unwrap(), None);
    store
        .add_key_packages(
            "d1",
            vec![b"kp1".to_vec(), b"kp2".to_vec()],
            Some(b"last".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(store.key_package_count("d1").await.unwrap(), (2, true));
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"kp1".to_vec())
    );
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"kp2".to_vec())
    );
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"last".to_vec())
    );
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"last".to_vec())
    );
    assert_eq!(store.key_package_count("d1").await.unwrap(), (0, true));
    // A new last-resort key package replaces the old one.
    store
        .add_key_packages("d1", vec![], Some(b"last2".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"last2".to_vec())
    );
}

/// A retried or replayed upload files nothing twice, even once the first copy was claimed.
pub async fn issue_7_a_key_package_is_filed_once(store: &impl Store) {
    enroll(store, "d1", "alice").await;
    let upload = || {
        store.add_key_packages(
            "d1",
            vec![b"kp1".to_vec(), b"kp1".to_vec()],
            Some(b"last".to_vec()),
        )
    };
    upload().await.unwrap();
    upload().await.unwrap();
    assert_eq!(store.key_package_count("d1").await.unwrap(), (1, true));
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"kp1".to_vec())
    );
    upload().await.unwrap();
    assert_eq!(store.key_package_count("d1").await.unwrap(), (0, true));
    assert_eq!(
        store.claim_key_package("d1").await.unwrap(),
        Some(b"last".to_vec()),
        "the claimed one did not come back"
    );
}

/// A revoked device is neither live nor claimable, but its key stays on file (a request it
/// signs is told it was revoked); the first revocation's time is kept.
pub async fn issue_9_a_revoked_device_is_known_as_revoked_and_never_claimed(store: &impl Store) {
    enroll(store, "d1", "alice").await;
    enroll(store, "d2", "alice").await;
    store
        .add_key_packages("d1", vec![b"kp1".to_vec()], Some(b"last".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        store.device_status("d1").await.unwrap(),
        Some((device("d1", "alice"), None))
    );
    store.revoke_device("d1", 50).await.unwrap();
    assert_eq!(store.device("d1").await.unwrap(), None);
    assert_eq!(
        store.user_devices("alice").await.unwrap(),
        vec![device("d2", "alice")]
    );
    assert_eq!(
        store.device_status("d1").await.unwrap(),
        Some((device("d1", "alice"), Some(50)))
    );
    assert_eq!(store.key_package_count("d1").await.unwrap(), (0, false));
    assert_eq!(store.claim_key_package("d1").await.unwrap(), None);
    store.revoke_device("d1", 60).await.unwrap();
    assert_eq!(
        store.device_status("d1").await.unwrap().unwrap().1,
        Some(50),
        "revoking again keeps the first time"
    );
    assert!(matches!(
        store.revoke_device("nobody", 60).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.device_status("nobody").await.unwrap(), None);
    assert_eq!(
        store.device_status("d2").await.unwrap(),
        Some((device("d2", "alice"), None)),
        "the user's other device is untouched"
    );
}

pub async fn commits_are_ordered_first_wins(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g", "a1").await;
    assert!(matches!(
        store
            .create_group(NewGroup {
                group_id: "g".into(),
                epoch: 0,
                state: vec![],
                timers: ChatTimers::default(),
                record: false,
                creator_device: "b1".into(),
                created_at: 0,
            })
            .await,
        Err(Error::Conflict(_))
    ));

    // A non-member cannot commit.
    assert!(matches!(
        store
            .append_commit(commit("g", 0, "b1", b"c0", &[], &[]))
            .await,
        Err(Error::NotMember)
    ));
    let first = store
        .append_commit(commit("g", 0, "a1", b"c0", &["b1"], &[]))
        .await
        .unwrap();
    assert_eq!(
        first,
        Appended {
            seq: 1,
            epoch: 1,
            duplicate: false
        }
    );
    // A competing commit for the same epoch loses, and changes nothing.
    assert!(matches!(
        store
            .append_commit(commit("g", 0, "b1", b"other", &[], &[]))
            .await,
        Err(Error::StaleEpoch { current: 1 })
    ));
    assert!(matches!(
        store
            .append_commit(commit("g", 0, "a1", b"c0", &["b1"], &[]))
            .await,
        Err(Error::StaleEpoch { current: 1 })
    ));
    // The winner's retry is found, a different or someone else's commit is not.
    assert_eq!(
        store.find_commit("g", 0, "a1", b"c0").await.unwrap(),
        Some(1)
    );
    assert_eq!(store.find_commit("g", 0, "a1", b"c1").await.unwrap(), None);
    assert_eq!(store.find_commit("g", 0, "b1", b"c0").await.unwrap(), None);
    assert_eq!(store.find_commit("g", 1, "a1", b"c0").await.unwrap(), None);
    let g = store.group("g").await.unwrap().unwrap();
    assert_eq!((g.epoch, g.state), (1, b"state-1".to_vec()));
    assert_eq!(
        g.timers,
        ChatTimers {
            expire_secs: Some(60),
            burn_secs: None
        },
        "the commit's timers are the chat's now"
    );
    assert_eq!(
        store.group_members("g").await.unwrap(),
        vec!["a1".to_string(), "b1".to_string()]
    );
    assert!(store.group("nope").await.unwrap().is_none());
    assert!(matches!(
        store
            .append_commit(commit("nope", 0, "a1", b"x", &[], &[]))
            .await,
        Err(Error::NotFound(_))
    ));
}

pub async fn messages_are_idempotent_and_members_only(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g", "a1").await;
    let m = store
        .append_message(message("g", 0, "a1", "m1"))
        .await
        .unwrap();
    assert_eq!(
        m,
        Appended {
            seq: 1,
            epoch: 0,
            duplicate: false
        }
    );
    let retry = store
        .append_message(message("g", 0, "a1", "m1"))
        .await
        .unwrap();
    assert_eq!(
        retry,
        Appended {
            seq: 1,
            epoch: 0,
            duplicate: true
        }
    );
    assert!(matches!(
        store.append_message(message("g", 0, "b1", "m2")).await,
        Err(Error::NotMember)
    ));
    assert!(matches!(
        store.append_message(message("g", 3, "a1", "m3")).await,
        Err(Error::StaleEpoch { current: 0 })
    ));
    store
        .append_commit(commit("g", 0, "a1", b"c", &[], &[]))
        .await
        .unwrap();
    assert!(matches!(
        store.append_message(message("g", 0, "a1", "m4")).await,
        Err(Error::StaleEpoch { current: 1 })
    ));
    let p = store.pending("a1", 100).await.unwrap();
    assert_eq!(seqs(&p, "g"), vec![1, 2]);
}

pub async fn issue_10_group_cursors_are_the_current_members_acks(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    enroll(store, "c1", "carol").await;
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add", &["b1", "c1"], &[]))
        .await
        .unwrap(); // seq 1
    for id in ["m1", "m2"] {
        store
            .append_message(message("g", 1, "a1", id))
            .await
            .unwrap(); // seq 2, 3
    }
    let cursor = |cursors: &[vellum_wire::DeviceCursor], device: &str| {
        cursors
            .iter()
            .find(|c| c.device_id == device)
            .map(|c| (c.user.clone(), c.acked_seq))
    };
    let before = store.group_cursors("g").await.unwrap();
    assert_eq!(before.len(), 3);
    let (user, joined) = cursor(&before, "b1").unwrap();
    assert_eq!(user, "bob");
    assert!(
        joined < 2,
        "nothing of the messages delivered yet: {joined}"
    );
    store.ack("b1", &[], &[("g".into(), 3)], &[]).await.unwrap();
    store.ack("c1", &[], &[("g".into(), 2)], &[]).await.unwrap();
    let after = store.group_cursors("g").await.unwrap();
    assert_eq!(cursor(&after, "b1"), Some(("bob".into(), 3)));
    assert_eq!(cursor(&after, "c1"), Some(("carol".into(), 2)));
    // A removed device is no longer a member with a cursor.
    store
        .append_commit(commit("g", 1, "a1", b"remove-c", &[], &["c1"]))
        .await
        .unwrap();
    let removed = store.group_cursors("g").await.unwrap();
    assert_eq!(cursor(&removed, "c1"), None);
    assert_eq!(removed.len(), 2);
    assert!(store.group_cursors("nope").await.unwrap().is_empty());
}

pub async fn delivery_respects_join_removal_and_acks(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    enroll(store, "c1", "carol").await;
    group_of(store, "g", "a1").await;
    store
        .append_message(message("g", 0, "a1", "before-bob"))
        .await
        .unwrap(); // seq 1
    store
        .append_commit(commit("g", 0, "a1", b"add", &["b1", "c1"], &[]))
        .await
        .unwrap(); // seq 2
    store
        .append_message(message("g", 1, "a1", "hello"))
        .await
        .unwrap(); // seq 3
    store
        .append_commit(commit("g", 1, "a1", b"remove-c", &[], &["c1"]))
        .await
        .unwrap(); // seq 4
    store
        .append_message(message("g", 2, "a1", "secret"))
        .await
        .unwrap(); // seq 5

    let bob = store.pending("b1", 100).await.unwrap();
    assert_eq!(bob.welcomes.len(), 1);
    assert_eq!(bob.welcomes[0].payload, b"welcome".to_vec());
    assert_eq!(
        seqs(&bob, "g"),
        vec![3, 4, 5],
        "joiners start after their own add"
    );
    let carol = store.pending("c1", 100).await.unwrap();
    assert_eq!(
        seqs(&carol, "g"),
        vec![3, 4],
        "removed devices get up to their removal, nothing after"
    );
    assert!(!store.is_member("g", "c1").await.unwrap());
    assert!(matches!(
        store.append_message(message("g", 2, "c1", "x")).await,
        Err(Error::NotMember)
    ));

    // Acks move the cursor forward only, and only within the log.
    store
        .ack("b1", &[bob.welcomes[0].id], &[("g".into(), 4)], &[])
        .await
        .unwrap();
    store.ack("b1", &[], &[("g".into(), 3)], &[]).await.unwrap();
    let bob = store.pending("b1", 100).await.unwrap();
    assert!(bob.welcomes.is_empty());
    assert_eq!(seqs(&bob, "g"), vec![5]);
    assert!(matches!(
        store.ack("b1", &[], &[("g".into(), 99)], &[]).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.ack("b1", &[], &[("other".into(), 1)], &[]).await,
        Err(Error::NotMember)
    ));
    assert_eq!(seqs(&store.pending("b1", 100).await.unwrap(), "g"), vec![5]);

    // Once carol acks her removal, nothing more is pending for her.
    store.ack("c1", &[], &[("g".into(), 4)], &[]).await.unwrap();
    let carol = store.pending("c1", 100).await.unwrap();
    assert!(carol.groups.is_empty());
    // Someone else's welcome id cannot be acked away.
    let a = store.pending("c1", 100).await.unwrap();
    store
        .ack(
            "a1",
            &a.welcomes.iter().map(|w| w.id).collect::<Vec<_>>(),
            &[],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.pending("c1", 100).await.unwrap().welcomes, a.welcomes);
}

/// Issue 13: two leaves in one epoch through two nodes. Each node computed the new tracked
/// state from the version it read; the second must not overwrite the first's proposals.
pub async fn issue_13_a_state_write_from_a_stale_state_is_refused(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    enroll(store, "c1", "carol").await;
    group_of(store, "g", "a1").await;
    assert_eq!(store.group("g").await.unwrap().unwrap().state_version, 0);
    store
        .append_commit(commit("g", 0, "a1", b"add", &["b1", "c1"], &[]))
        .await
        .unwrap(); // seq 1, version 1
    let leave = |sender: &str, version: u64, state: &[u8]| ProposalAppend {
        group_id: "g".into(),
        epoch: 1,
        expected_state_version: version,
        state: state.to_vec(),
        sender_device: sender.into(),
        payloads: vec![format!("leave-{sender}").into_bytes()],
        received_at: 1,
        leaving: vec![sender.into()],
    };
    store
        .append_proposals(leave("b1", 1, b"with-b"))
        .await
        .unwrap(); // seq 2, version 2
    assert!(matches!(
        store.append_proposals(leave("c1", 1, b"with-c-only")).await,
        Err(Error::StaleState { epoch: 1 })
    ));
    let group = store.group("g").await.unwrap().unwrap();
    assert_eq!((group.state_version, &group.state[..]), (2, &b"with-b"[..]));
    assert!(
        store.is_member("g", "c1").await.unwrap(),
        "the refused leave changed nothing"
    );
    assert_eq!(
        seqs(&store.pending("a1", 100).await.unwrap(), "g"),
        vec![1, 2]
    );
    let appended = store
        .append_proposals(leave("c1", 2, b"with-b-and-c"))
        .await
        .unwrap();
    assert_eq!((appended.seq, appended.epoch), (3, 1));
    // A commit computed before the second leave is refused as well.
    assert!(matches!(
        store
            .append_commit(CommitAppend {
                expected_state_version: 2,
                ..commit("g", 1, "a1", b"commit-b", &[], &["b1"])
            })
            .await,
        Err(Error::StaleState { epoch: 1 })
    ));
    assert_eq!(store.group("g").await.unwrap().unwrap().epoch, 1);
    store
        .append_commit(CommitAppend {
            expected_state_version: 3,
            ..commit("g", 1, "a1", b"commit-b-c", &[], &["b1", "c1"])
        })
        .await
        .unwrap();
    let group = store.group("g").await.unwrap().unwrap();
    assert_eq!((group.epoch, group.state_version), (2, 4));
}

pub async fn issue_10_a_leave_proposal_stops_delivery_at_once(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "c1", "carol").await;
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add", &["c1"], &[]))
        .await
        .unwrap(); // seq 1
    let leave = |epoch: u64, sender: &str| ProposalAppend {
        group_id: "g".into(),
        epoch,
        expected_state_version: 1,
        state: b"with-proposal".to_vec(),
        sender_device: sender.into(),
        payloads: vec![b"p1".to_vec(), b"p2".to_vec()],
        received_at: 1,
        leaving: vec!["c1".into()],
    };
    assert!(matches!(
        store.append_proposals(leave(0, "c1")).await,
        Err(Error::StaleEpoch { current: 1 })
    ));
    let appended = store.append_proposals(leave(1, "c1")).await.unwrap(); // seq 2, 3
    assert_eq!((appended.seq, appended.epoch), (3, 1));
    assert!(
        !store.is_member("g", "c1").await.unwrap(),
        "cut off at once"
    );
    assert!(matches!(
        store.append_proposals(leave(1, "c1")).await,
        Err(Error::NotMember)
    ));
    store
        .append_message(message("g", 1, "a1", "after-leave"))
        .await
        .unwrap(); // seq 4
    store
        .append_commit(CommitAppend {
            expected_state_version: 2,
            ..commit("g", 1, "a1", b"commit-leave", &[], &["c1"])
        })
        .await
        .unwrap(); // seq 5
    let carol = store.pending("c1", 100).await.unwrap();
    assert_eq!(
        seqs(&carol, "g"),
        vec![2, 3],
        "the leaver gets its proposals and nothing after, not even the commit"
    );
    let alice = store.pending("a1", 100).await.unwrap();
    let kinds: Vec<EntryKind> = alice.groups[0].1.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::Commit,
            EntryKind::Proposal,
            EntryKind::Proposal,
            EntryKind::Application,
            EntryKind::Commit
        ]
    );
    let group = store.group("g").await.unwrap().unwrap();
    assert_eq!(group.epoch, 2);
}

pub async fn pending_is_paged(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    group_of(store, "g", "a1").await;
    for i in 0..7 {
        store
            .append_message(message("g", 0, "a1", &format!("m{i}")))
            .await
            .unwrap();
    }
    let page = store.pending("a1", 5).await.unwrap();
    assert!(page.more);
    assert_eq!(seqs(&page, "g"), vec![1, 2, 3, 4, 5]);
    store.ack("a1", &[], &[("g".into(), 5)], &[]).await.unwrap();
    let rest = store.pending("a1", 5).await.unwrap();
    assert!(!rest.more);
    assert_eq!(seqs(&rest, "g"), vec![6, 7]);
}

pub async fn org_policy_defaults_and_updates(store: &impl Store) {
    assert_eq!(
        store.org_policy().await.unwrap(),
        vellum_wire::OrgPolicy::default()
    );
    let strict = vellum_wire::OrgPolicy {
        max_expire_secs: Some(86_400),
        max_burn_secs: Some(60),
        allow_no_expiry: false,
        default_record: true,
        allow_transitory: false,
        archiver_device: None,
        records_public: None,
        records_binding: None,
        on_hold: vellum_wire::HoldAction::Convert,
        receipt_alarm_secs: 90,
        reset_wait_secs: vellum_wire::DEFAULT_RESET_WAIT_SECS,
        allow_read_receipts: false,
        max_file_bytes: 5 << 20,
        user_quota_bytes: 50 << 20,
        files_in_transitory: true,
        files_in_record: false,
    };
    store.set_org_policy(strict.clone()).await.unwrap();
    assert_eq!(store.org_policy().await.unwrap(), strict);
    store
        .set_org_policy(vellum_wire::OrgPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        store.org_policy().await.unwrap(),
        vellum_wire::OrgPolicy::default()
    );
}

pub async fn purge_drops_expired_and_stale_messages_only(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    group_of(store, "g", "a1").await;
    let at = |id: &str, received_at: i64, expires_at: Option<i64>| MessageAppend {
        received_at,
        expires_at,
        ..message("g", 0, "a1", id)
    };
    store
        .append_message(at("expires-soon", 1_000, Some(5_000)))
        .await
        .unwrap(); // seq 1
    store
        .append_message(at("expires-later", 1_000, Some(50_000)))
        .await
        .unwrap(); // seq 2
    store
        .append_message(at("never", 1_000, None))
        .await
        .unwrap(); // seq 3
    store
        .append_message(at("old-undelivered", 10, None))
        .await
        .unwrap(); // seq 4
    let mut c = commit("g", 0, "a1", b"c", &[], &[]);
    c.received_at = 0;
    store.append_commit(c).await.unwrap(); // seq 5: commits are never purged

    assert_eq!(store.purge_expired(4_999, 0).await.unwrap(), 0);
    assert_eq!(
        store.purge_expired(5_000, 100).await.unwrap(),
        2,
        "the expired one and the one past retention"
    );
    assert_eq!(
        seqs(&store.pending("a1", 100).await.unwrap(), "g"),
        vec![2, 3, 5]
    );
    assert_eq!(
        store.purge_expired(5_000, 100).await.unwrap(),
        0,
        "purging twice changes nothing"
    );
    assert_eq!(store.purge_expired(60_000, 100).await.unwrap(), 1);
    assert_eq!(
        seqs(&store.pending("a1", 100).await.unwrap(), "g"),
        vec![3, 5]
    );
}

pub async fn delete_for_everyone_is_for_senders_only(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "a2", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add", &["b1", "a2"], &[]))
        .await
        .unwrap(); // seq 1
    store
        .append_message(message("g", 1, "a1", "m"))
        .await
        .unwrap(); // seq 2
    store
        .append_message(message("g", 1, "b1", "n"))
        .await
        .unwrap(); // seq 3

    assert!(matches!(
        store.delete_message("g", 2, "b1").await,
        Err(Error::Forbidden(_))
    ));
    assert!(
        matches!(
            store.delete_message("g", 1, "a1").await,
            Err(Error::Forbidden(_))
        ),
        "commits stay"
    );
    assert!(matches!(
        store.delete_message("g", 9, "a1").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        seqs(&store.pending("b1", 100).await.unwrap(), "g"),
        vec![2, 3],
        "refusals changed nothing"
    );
    // Another device of the same user may delete it.
    store.delete_message("g", 2, "a2").await.unwrap();
    assert_eq!(seqs(&store.pending("b1", 100).await.unwrap(), "g"), vec![3]);
    assert!(matches!(
        store.delete_message("g", 2, "a1").await,
        Err(Error::NotFound(_))
    ));
}

/// `records init` and the enrollment of its archiver, `r1`.
async fn records_with_archiver(store: &impl Store) {
    store
        .init_records("{\"v\":1}", [0xAA; 32], 1_000, 0)
        .await
        .unwrap();
    store
        .enroll_device(
            [0xAA; 32],
            10,
            device("r1", vellum_wire::RECORDS_USER),
            false,
        )
        .await
        .unwrap();
}

pub async fn purge_waits_for_the_archiver(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    records_with_archiver(store).await;
    assert_eq!(
        store.org_policy().await.unwrap().archiver_device.as_deref(),
        Some("r1")
    );
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add", &["r1"], &[]))
        .await
        .unwrap(); // seq 1
    let expiring = MessageAppend {
        expires_at: Some(10),
        ..message("g", 1, "a1", "m")
    };
    store.append_message(expiring).await.unwrap(); // seq 2
    assert_eq!(
        store.purge_expired(100, 0).await.unwrap(),
        0,
        "kept until the archiver has it"
    );
    store.ack("r1", &[], &[("g".into(), 2)], &[]).await.unwrap();
    assert_eq!(store.purge_expired(100, 0).await.unwrap(), 1);

    // Deleted for everyone before the archiver has it: hidden from members, kept for the
    // archiver, purged once it acknowledges.
    store
        .append_message(message("g", 1, "a1", "regret"))
        .await
        .unwrap(); // seq 3
    store.delete_message("g", 3, "a1").await.unwrap();
    assert!(seqs(&store.pending("a1", 100).await.unwrap(), "g")
        .iter()
        .all(|s| *s != 3));
    assert_eq!(seqs(&store.pending("r1", 100).await.unwrap(), "g"), vec![3]);
    assert_eq!(store.purge_expired(100, 0).await.unwrap(), 0);
    store.ack("r1", &[], &[("g".into(), 3)], &[]).await.unwrap();
    assert_eq!(store.purge_expired(100, 0).await.unwrap(), 1);
    assert!(store.pending("r1", 100).await.unwrap().groups.is_empty());
}

pub async fn receipts_are_queued_per_device(store: &impl Store) {
    store
        .queue_receipts(vec![
            ("a1".into(), "r1".into()),
            ("b1".into(), "r2".into()),
            ("a1".into(), "r3".into()),
        ])
        .await
        .unwrap();
    let receipts = |device: &'static str, limit| async move {
        store.sync_view(device, limit).await.unwrap().receipts
    };
    let a = receipts("a1", 10).await;
    assert_eq!(
        a.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        vec!["r1", "r3"]
    );
    assert_eq!(
        receipts("a1", 1).await,
        a[..1],
        "at most `limit`, oldest first"
    );
    // Another device cannot ack them away.
    store.ack("b1", &[], &[], &[a[0].0]).await.unwrap();
    assert_eq!(receipts("a1", 10).await.len(), 2);
    store.ack("a1", &[], &[], &[a[0].0]).await.unwrap();
    assert_eq!(receipts("a1", 10).await.len(), 1);
    assert_eq!(receipts("b1", 10).await.len(), 1);
}

/// Issue 13: a sync reads everything in one view, and an ack is one transaction: a bad
/// cursor leaves the Welcomes and receipts it named queued.
pub async fn issue_13_a_sync_is_one_view_and_an_ack_one_transaction(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g", "a1").await;
    store
        .append_commit(commit("g", 0, "a1", b"add-b", &["b1"], &[]))
        .await
        .unwrap();
    store
        .append_message(message("g", 1, "a1", "m"))
        .await
        .unwrap();
    store
        .queue_receipts(vec![("b1".into(), "receipt".into())])
        .await
        .unwrap();
    let view = store.sync_view("b1", 100).await.unwrap();
    assert_eq!(view.pending.welcomes.len(), 1);
    assert_eq!(seqs(&view.pending, "g"), vec![2]);
    assert_eq!(view.receipts.len(), 1);
    assert!(view.held_chats.is_empty());

    // The good cursor is written before the bad one is found: all of it rolls back.
    let (welcome, receipt) = (view.pending.welcomes[0].id, view.receipts[0].0);
    // A NUL in a group id is a refused request on every backend, never a storage failure.
    let nul = store
        .ack(
            "b1",
            &[welcome],
            &[("g".into(), 2), ("g\0".into(), 1)],
            &[receipt],
        )
        .await;
    assert!(
        matches!(nul, Err(Error::NotMember | Error::InvalidText(_))),
        "{nul:?}"
    );
    assert!(matches!(
        store
            .ack(
                "b1",
                &[welcome],
                &[("g".into(), 2), ("g".into(), 99)],
                &[receipt]
            )
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        store.sync_view("b1", 100).await.unwrap(),
        view,
        "a refused ack changes nothing"
    );
    store
        .ack("b1", &[welcome], &[("g".into(), 2)], &[receipt])
        .await
        .unwrap();
    let after = store.sync_view("b1", 100).await.unwrap();
    assert!(after.pending.welcomes.is_empty() && after.pending.groups.is_empty());
    assert!(after.receipts.is_empty());

    // The device list keeps a minute's precision: a touch within it writes nothing.
    let last_seen = |device| async move {
        store
            .device_record(device)
            .await
            .unwrap()
            .unwrap()
            .last_seen
    };
    assert_eq!(last_seen("b1").await, None, "never synced");
    assert!(last_seen_is_stale(None, 0));
    store.touch_device("b1", 5_000).await.unwrap();
    store
        .touch_device("b1", 5_000 + LAST_SEEN_PRECISION_SECS - 1)
        .await
        .unwrap();
    assert_eq!(last_seen("b1").await, Some(5_000));
    assert!(!last_seen_is_stale(
        Some(5_000),
        5_000 + LAST_SEEN_PRECISION_SECS - 1
    ));
    assert!(last_seen_is_stale(
        Some(5_000),
        5_000 + LAST_SEEN_PRECISION_SECS
    ));
    store
        .touch_device("b1", 5_000 + LAST_SEEN_PRECISION_SECS)
        .await
        .unwrap();
    assert_eq!(
        last_seen("b1").await,
        Some(5_000 + LAST_SEEN_PRECISION_SECS)
    );
    // A device the store does not know has an empty view.
    assert_eq!(
        store.sync_view("ghost", 100).await.unwrap(),
        SyncView::default()
    );
}

pub async fn issue8_chat_classes_are_kept_and_transitory_chats_counted(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    records_with_archiver(store).await;
    group_of(store, "t1", "a1").await;
    group_of(store, "t2", "a1").await;
    store
        .create_group(NewGroup {
            record: true,
            group_id: "r".into(),
            epoch: 0,
            state: vec![],
            timers: ChatTimers::default(),
            creator_device: "a1".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    assert!(store.group("r").await.unwrap().unwrap().record);
    assert!(!store.group("t1").await.unwrap().unwrap().record);
    assert_eq!(
        store.transitory_chats(1).await.unwrap(),
        (2, vec!["t1".to_string()]),
        "two in all, one listed"
    );
    // A commit carries the class after it: t1 converts.
    let convert = CommitAppend {
        record: true,
        ..commit("t1", 0, "a1", b"convert", &["r1"], &[])
    };
    store.append_commit(convert).await.unwrap();
    assert!(store.group("t1").await.unwrap().unwrap().record);
    assert_eq!(
        store.transitory_chats(10).await.unwrap(),
        (1, vec!["t2".to_string()])
    );
    // A chat nobody is in any more is not counted.
    store
        .append_commit(commit("t2", 0, "a1", b"leave", &[], &["a1"]))
        .await
        .unwrap();
    assert_eq!(store.transitory_chats(10).await.unwrap(), (0, vec![]));
    // Every group a backend creates has a class: nothing is left to classify.
    assert!(store.unclassified_groups().await.unwrap().is_empty());
    store.set_group_class("t2", true).await.unwrap();
    assert!(store.group("t2").await.unwrap().unwrap().record);
    assert!(matches!(
        store.set_group_class("nope", true).await,
        Err(Error::NotFound(_))
    ));
}

pub async fn issue8_holds_suspend_purging_in_transitory_chats_of_held_users(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    enroll(store, "c1", "carol").await;
    group_of(store, "ab", "a1").await;
    store
        .append_commit(commit("ab", 0, "a1", b"add", &["b1"], &[]))
        .await
        .unwrap(); // seq 1
    group_of(store, "ac", "a1").await;
    store
        .append_commit(commit("ac", 0, "a1", b"add", &["c1"], &[]))
        .await
        .unwrap(); // seq 1
    let expiring = |group: &str, id: &str| MessageAppend {
        expires_at: Some(10),
        ..message(group, 1, "a1", id)
    };
    store.append_message(expiring("ab", "m")).await.unwrap(); // ab seq 2
    store.append_message(expiring("ac", "n")).await.unwrap(); // ac seq 2

    assert!(store.held_users().await.unwrap().is_empty());
    store
        .set_held_users(vec!["bob".into(), "bob".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(
        store.held_users().await.unwrap(),
        vec!["bob".to_string(), "nobody".to_string()]
    );
    // bob is in "ab": both its members see it held; "ac" is not.
    for device in ["a1", "b1"] {
        assert_eq!(
            store.sync_view(device, 100).await.unwrap().held_chats,
            vec!["ab".to_string()],
            "{device}"
        );
    }
    assert!(store
        .sync_view("c1", 100)
        .await
        .unwrap()
        .held_chats
        .is_empty());
    assert!(store.group("ab").await.unwrap().unwrap().held);
    assert!(!store.group("ac").await.unwrap().unwrap().held);
    assert_eq!(
        store.purge_expired(100, 0).await.unwrap(),
        1,
        "only the message of the chat without a held member"
    );
    assert_eq!(
        seqs(&store.pending("b1", 100).await.unwrap(), "ab"),
        vec![2]
    );

    // Released (the archiver's list replaced): the timer runs out at once.
    store.set_held_users(vec![]).await.unwrap();
    assert!(store
        .sync_view("a1", 100)
        .await
        .unwrap()
        .held_chats
        .is_empty());
    assert_eq!(store.purge_expired(100, 0).await.unwrap(), 1);
    assert!(seqs(&store.pending("b1", 100).await.unwrap(), "ab").is_empty());

    // A record chat is never "held": the archive keeps it anyway.
    store.set_held_users(vec!["bob".into()]).await.unwrap();
    store
        .append_commit(CommitAppend {
            record: true,
            ..commit("ab", 1, "a1", b"convert", &[], &[])
        })
        .await
        .unwrap();
    assert!(store
        .sync_view("b1", 100)
        .await
        .unwrap()
        .held_chats
        .is_empty());
    assert!(!store.group("ab").await.unwrap().unwrap().held);
}

pub async fn issue8_a_user_named_records_before_records_init_never_becomes_the_archiver(
    store: &impl Store,
) {
    // An older version let an admin create the user; its code enrolls nothing now.
    store
        .create_user(vellum_wire::RECORDS_USER, 0)
        .await
        .unwrap();
    store
        .add_enrollment_code(vellum_wire::RECORDS_USER, [1; 32], 1_000)
        .await
        .unwrap();
    assert!(matches!(
        store
            .enroll_device([1; 32], 10, device("imp", vellum_wire::RECORDS_USER), false)
            .await,
        Err(Error::Forbidden(_))
    ));
    // And records init refuses to adopt a user it did not create, changing nothing.
    assert!(matches!(
        store.init_records("{}", [2; 32], 1_000, 0).await,
        Err(Error::Refused(_))
    ));
    assert!(store.records_config().await.unwrap().is_none());
    assert!(matches!(
        store.enrollment_code_user([2; 32], 10).await,
        Err(Error::InvalidCode)
    ));
    let policy = store.org_policy().await.unwrap();
    assert_eq!(
        (policy.archiver_device, policy.records_public),
        (None, None)
    );
    assert!(store.user_devices("records").await.unwrap().is_empty());
}

pub async fn issue8_one_archiver_device_its_bindings_and_its_replacement(store: &impl Store) {
    let binding = |serial: u64, device: &str, public: &str| NewBinding {
        serial,
        binding: format!("binding {serial} of {device}"),
        archiver_device: device.into(),
        expected_public: public.into(),
        new_public: None,
        new_log: false,
    };
    assert!(matches!(
        store.set_records_binding(binding(1, "r1", "{}")).await,
        Err(Error::NotFound(_))
    ));
    records_with_archiver(store).await;
    let public = "{\"v\":1}";
    assert!(matches!(
        store.init_records(public, [3; 32], 1_000, 0).await,
        Err(Error::Refused(_))
    ));
    // A second device of the archiver, whoever issued its code: refused.
    store
        .add_enrollment_code(vellum_wire::RECORDS_USER, [4; 32], 1_000)
        .await
        .unwrap();
    assert!(matches!(
        store
            .enroll_device([4; 32], 10, device("r2", vellum_wire::RECORDS_USER), false)
            .await,
        Err(Error::Refused(_))
    ));
    assert!(store.device("r2").await.unwrap().is_none());
    let config = store.records_config().await.unwrap().unwrap();
    assert_eq!(
        (config.archiver_device.as_deref(), config.binding),
        (Some("r1"), None)
    );

    // Bindings: another device, a changed records.pub, then the first; again is a no-op.
    assert!(matches!(
        store.set_records_binding(binding(1, "a1", public)).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        store.set_records_binding(binding(1, "r1", "{}")).await,
        Err(Error::Refused(_))
    ));
    store
        .set_records_binding(binding(1, "r1", public))
        .await
        .unwrap();
    store
        .set_records_binding(binding(1, "r1", public))
        .await
        .unwrap();
    let mut changed = binding(1, "r1", public);
    changed.binding.push('!');
    assert!(matches!(
        store.set_records_binding(changed).await,
        Err(Error::Refused(_))
    ));
    let upgraded = NewBinding {
        new_public: Some("{\"v\":2}".into()),
        ..binding(2, "r1", public)
    };
    store.set_records_binding(upgraded).await.unwrap();
    let policy = store.org_policy().await.unwrap();
    assert_eq!(policy.archiver_device.as_deref(), Some("r1"));
    assert_eq!(policy.records_public.as_deref(), Some("{\"v\":2}"));
    assert_eq!(policy.records_binding.as_deref(), Some("binding 2 of r1"));
    let public = "{\"v\":2}";

    // Replacing it: the old device is gone for good, its codes with it; the next enrolls.
    store
        .add_enrollment_code(vellum_wire::RECORDS_USER, [5; 32], 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.replace_archiver([6; 32], 1_000, 20).await.unwrap(),
        Some("r1".into())
    );
    assert!(store.device("r1").await.unwrap().is_none());
    assert!(store.user_devices("records").await.unwrap().is_empty());
    assert_eq!(store.org_policy().await.unwrap().archiver_device, None);
    assert!(matches!(
        store.enrollment_code_user([5; 32], 30).await,
        Err(Error::InvalidCode)
    ));
    store
        .enroll_device([6; 32], 30, device("r3", vellum_wire::RECORDS_USER), false)
        .await
        .unwrap();
    assert_eq!(
        store.org_policy().await.unwrap().archiver_device.as_deref(),
        Some("r3")
    );
    assert!(matches!(
        store.set_records_binding(binding(2, "r3", public)).await,
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store.set_records_binding(binding(3, "r1", public)).await,
        Err(Error::Forbidden(_))
    ));
    // The new archiver's binding names another log key: the old log's chain is closed.
    store
        .append_records_checkpoint(checkpoint(4, 0, 1))
        .await
        .unwrap();
    store
        .set_records_binding(NewBinding {
            new_log: true,
            ..binding(3, "r3", public)
        })
        .await
        .unwrap();
    assert_eq!(store.records_checkpoint_head().await.unwrap(), None);
    assert_eq!(
        store.records_config().await.unwrap().unwrap().binding,
        Some((3, "binding 3 of r3".into()))
    );
}

fn checkpoint(size: u64, previous_size: u64, at: i64) -> StoredCheckpoint {
    StoredCheckpoint {
        size,
        note: format!("note {size}"),
        previous_size,
        proof: (0..size.min(2)).map(|i| format!("{i:064x}")).collect(),
        received_at: at,
        renewed_at: at,
        witnessed_at: None,
    }
}

pub async fn issue8_the_checkpoint_chain_only_grows_from_its_head(store: &impl Store) {
    assert_eq!(store.records_checkpoint_head().await.unwrap(), None);
    // The first needs an empty chain; each next one the head's size.
    assert!(matches!(
        store.append_records_checkpoint(checkpoint(5, 3, 1)).await,
        Err(Error::Conflict(_))
    ));
    store
        .append_records_checkpoint(checkpoint(5, 0, 1))
        .await
        .unwrap();
    for stale in [
        checkpoint(9, 0, 2),
        checkpoint(9, 4, 2),
        checkpoint(5, 5, 2),
        checkpoint(4, 5, 2),
    ] {
        assert!(
            matches!(
                store.append_records_checkpoint(stale.clone()).await,
                Err(Error::Conflict(_))
            ),
            "{stale:?}"
        );
    }
    store
        .append_records_checkpoint(checkpoint(9, 5, 2))
        .await
        .unwrap();
    store
        .append_records_checkpoint(checkpoint(12, 9, 3))
        .await
        .unwrap();
    let chain = store.records_checkpoints(9, 10).await.unwrap();
    assert_eq!(chain, vec![checkpoint(9, 5, 2), checkpoint(12, 9, 3)]);
    assert_eq!(
        store.records_checkpoints(0, 1).await.unwrap(),
        vec![checkpoint(5, 0, 1)]
    );
    assert_eq!(store.records_checkpoints(6, 10).await.unwrap()[0].size, 9);
    assert_eq!(
        store.records_checkpoints(u64::MAX, 10).await.unwrap(),
        vec![]
    );
    // Renewing: only the head; a new note and the first witnessed time stick.
    assert!(matches!(
        store.renew_records_checkpoint(9, None, false, 4).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(store.records_checkpoint_witnessed().await.unwrap(), None);
    store
        .renew_records_checkpoint(12, Some("note 12 cosigned".into()), true, 5)
        .await
        .unwrap();
    store
        .renew_records_checkpoint(12, None, true, 6)
        .await
        .unwrap();
    let head = store.records_checkpoint_head().await.unwrap().unwrap();
    assert_eq!(
        (
            head.note.as_str(),
            head.received_at,
            head.renewed_at,
            head.witnessed_at
        ),
        ("note 12 cosigned", 3, 6, Some(5))
    );
    assert_eq!(head.proof.len(), 2);
    assert_eq!(
        store.records_checkpoint_witnessed().await.unwrap(),
        Some(head)
    );
}

pub async fn issue8_record_messages_without_a_receipt_are_counted(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    records_with_archiver(store).await;
    group_of(store, "g", "a1").await;
    group_of(store, "t", "a1").await; // transitory: the archiver is not a member
    store
        .append_commit(commit("g", 0, "a1", b"add archiver", &["r1"], &[]))
        .await
        .unwrap(); // seq 1
    for (group, id, at) in [("g", "m1", 100), ("g", "m2", 200), ("t", "m3", 50)] {
        store
            .append_message(MessageAppend {
                received_at: at,
                ..message(group, if group == "g" { 1 } else { 0 }, "a1", id)
            })
            .await
            .unwrap();
    }
    assert_eq!(store.unreceipted(150).await.unwrap(), (1, Some(100)));
    assert_eq!(store.unreceipted(1_000).await.unwrap(), (2, Some(100)));
    store
        .mark_receipted(
            vec![("g".into(), 2), ("g".into(), 99), ("t".into(), 1)],
            300,
        )
        .await
        .unwrap();
    assert_eq!(store.unreceipted(1_000).await.unwrap(), (1, Some(200)));
    store
        .mark_receipted(vec![("g".into(), 3)], 300)
        .await
        .unwrap();
    assert_eq!(store.unreceipted(1_000).await.unwrap(), (0, None));
}

/// Enrolls `id` for `user` (created if needed) with a fresh code; returns its state.
async fn enroll_as(store: &impl Store, id: &str, user: &str, has_identity: bool) -> DeviceState {
    if !store.user_exists(user).await.unwrap() {
        store.create_user(user, 0).await.unwrap();
    }
    let mut hash = [0x99u8; 32];
    hash[..id.len()].copy_from_slice(id.as_bytes());
    store.add_enrollment_code(user, hash, 1_000).await.unwrap();
    store
        .enroll_device(hash, 10, device(id, user), has_identity)
        .await
        .unwrap()
}

async fn state_of(store: &impl Store, id: &str) -> DeviceState {
    store.device_record(id).await.unwrap().unwrap().state
}

pub async fn issue_9_enrollment_decides_approved_or_pending(store: &impl Store) {
    use DeviceState::*;
    // A user's first device is approved; any later one waits for approval.
    assert_eq!(enroll_as(store, "a1", "alice", false).await, Approved);
    assert_eq!(enroll_as(store, "a2", "alice", false).await, Pending);
    // Without any live device but with an identity in the directory: pending too.
    assert_eq!(enroll_as(store, "b1", "bob", true).await, Pending);
    let record = store.device_record("a2").await.unwrap().unwrap();
    assert_eq!(
        (
            record.device,
            record.state,
            record.enrolled_at,
            record.last_seen
        ),
        (device("a2", "alice"), Pending, 10, None)
    );
    // Pending devices are registered devices: they sign requests, and are listed.
    assert_eq!(
        store.device("a2").await.unwrap(),
        Some(device("a2", "alice"))
    );
    let listed: Vec<_> = store
        .user_device_records("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.device.device_id, r.state))
        .collect();
    assert_eq!(listed, [("a1".into(), Approved), ("a2".into(), Pending)]);
    assert!(store
        .user_device_records("nobody")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.device_record("nope").await.unwrap(), None);
    // Devices enrolled now are never legacy: only the migration makes those.
    assert!(store.legacy_devices().await.unwrap().is_empty());
    // The archiver is bound by the custodians, not the directory: approved.
    records_with_archiver(store).await;
    assert_eq!(state_of(store, "r1").await, Approved);
}

fn leaf(index: u64, user: &str, change: Option<DeviceChange>) -> NewDirectoryEntry {
    NewDirectoryEntry {
        index,
        user: user.into(),
        body: format!("leaf {index}").into_bytes(),
        change,
    }
}

pub async fn issue_9_directory_entries_append_with_their_device_changes(store: &impl Store) {
    use DeviceState::*;
    assert_eq!(store.directory_checkpoint().await.unwrap(), None);
    assert!(store.directory_entries(0, 10).await.unwrap().is_empty());
    enroll_as(store, "a1", "alice", false).await;
    enroll_as(store, "a2", "alice", false).await;
    enroll_as(store, "a3", "alice", false).await;
    enroll_as(store, "b1", "bob", false).await;
    store
        .add_key_packages("a3", vec![b"kp-a3".to_vec()], None)
        .await
        .unwrap();
    store
        .append_directory_entries(
            vec![leaf(0, "", None), leaf(1, "alice", None)],
            "cp 2".into(),
            20,
        )
        .await
        .unwrap();
    assert_eq!(
        store.directory_entries(0, 10).await.unwrap(),
        vec![b"leaf 0".to_vec(), b"leaf 1".to_vec()]
    );
    assert_eq!(
        store.directory_entries(1, 10).await.unwrap(),
        vec![b"leaf 1".to_vec()]
    );
    assert_eq!(store.directory_entries(0, 1).await.unwrap().len(), 1);
    assert!(store.directory_entries(5, 10).await.unwrap().is_empty());
    assert_eq!(
        store.directory_checkpoint().await.unwrap().as_deref(),
        Some("cp 2")
    );

    // Out of order: nothing appended, the checkpoint unchanged.
    for index in [1, 3] {
        assert!(matches!(
            store
                .append_directory_entries(vec![leaf(index, "alice", None)], "bad".into(), 21)
                .await,
            Err(Error::Conflict(_))
        ));
    }
    // A change that cannot be made takes its entry (and the whole batch) with it.
    assert!(matches!(
        store
            .append_directory_entries(
                vec![
                    leaf(2, "alice", None),
                    leaf(
                        3,
                        "alice",
                        Some(DeviceChange::Revoke {
                            device_id: "ghost".into()
                        })
                    ),
                ],
                "bad".into(),
                21,
            )
            .await,
        Err(Error::NotFound(_))
    ));
    // Approving with a sealed identity needs the device's revealed offer.
    assert!(matches!(
        store
            .append_directory_entries(
                vec![leaf(
                    2,
                    "alice",
                    Some(DeviceChange::Approve {
                        device_id: "a2".into(),
                        sealed_identity: Some(vec![7; 80]),
                    }),
                )],
                "bad".into(),
                21,
            )
            .await,
        Err(Error::Refused(_))
    ));
    assert_eq!(store.directory_entries(0, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.directory_checkpoint().await.unwrap().as_deref(),
        Some("cp 2")
    );
    assert_eq!(state_of(store, "a2").await, Pending);

    // The exchange done, the approval seals the identity and approves, in one transaction.
    store.set_approval_commitment("a2", "c0", 21).await.unwrap();
    store.set_approval_hello("a2", "{}", 22).await.unwrap();
    store.set_approval_offer("a2", "{}", 23).await.unwrap();
    store
        .append_directory_entries(
            vec![leaf(
                2,
                "alice",
                Some(DeviceChange::Approve {
                    device_id: "a2".into(),
                    sealed_identity: Some(vec![7; 80]),
                }),
            )],
            "cp 3".into(),
            24,
        )
        .await
        .unwrap();
    assert_eq!(state_of(store, "a2").await, Approved);
    let approval = store.approval("a2").await.unwrap().unwrap();
    assert_eq!(approval.sealed_identity, Some(vec![7; 80]));
    assert_eq!(approval.updated_at, 24);

    // A revocation: no more authentication, claims or key packages.
    store
        .append_directory_entries(
            vec![leaf(
                3,
                "alice",
                Some(DeviceChange::Revoke {
                    device_id: "a3".into(),
                }),
            )],
            "cp 4".into(),
            25,
        )
        .await
        .unwrap();
    assert_eq!(state_of(store, "a3").await, Revoked);
    assert_eq!(store.device("a3").await.unwrap(), None);
    assert_eq!(store.key_package_count("a3").await.unwrap(), (0, false));
    assert_eq!(store.user_devices("alice").await.unwrap().len(), 2);

    // A reset revokes every device of the user, and nobody else's.
    store
        .append_directory_entries(
            vec![leaf(
                4,
                "alice",
                Some(DeviceChange::RevokeUser {
                    user: "alice".into(),
                }),
            )],
            "cp 5".into(),
            26,
        )
        .await
        .unwrap();
    for id in ["a1", "a2", "a3"] {
        assert_eq!(state_of(store, id).await, Revoked, "{id}");
    }
    assert_eq!(store.approval("a2").await.unwrap(), None);
    assert_eq!(state_of(store, "b1").await, Approved);
    assert_eq!(store.directory_entries(0, 100).await.unwrap().len(), 5);
    // Cosignatures replace the note, only the one they were added to (issue 13: another
    // node may have stored a newer checkpoint meanwhile).
    assert!(store
        .set_directory_checkpoint("cp 5".into(), "cp 5 cosigned".into())
        .await
        .unwrap());
    assert_eq!(
        store.directory_checkpoint().await.unwrap().as_deref(),
        Some("cp 5 cosigned")
    );
    assert!(!store
        .set_directory_checkpoint("cp 4".into(), "cp 4 cosigned".into())
        .await
        .unwrap());
    assert_eq!(
        store.directory_checkpoint().await.unwrap().as_deref(),
        Some("cp 5 cosigned")
    );
    // A device the directory does not list is revoked without an entry; twice is fine.
    enroll_as(store, "b2", "bob", false).await;
    store.set_approval_commitment("b2", "c", 27).await.unwrap();
    store.revoke_device("b2", 27).await.unwrap();
    store.revoke_device("b2", 28).await.unwrap();
    assert_eq!(state_of(store, "b2").await, Revoked);
    assert_eq!(store.approval("b2").await.unwrap(), None);
    assert!(matches!(
        store.revoke_device("ghost", 28).await,
        Err(Error::NotFound(_))
    ));
    // After a reset the user starts again with an approved first device.
    assert_eq!(enroll_as(store, "a4", "alice", false).await, Approved);
}

pub async fn issue_9_approval_steps_only_in_order(store: &impl Store) {
    enroll_as(store, "a1", "alice", false).await;
    enroll_as(store, "a2", "alice", false).await;
    assert_eq!(store.approval("a2").await.unwrap(), None);
    // No hello before a commitment, no offer before a hello.
    assert!(matches!(
        store.set_approval_hello("a2", "h", 1).await,
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store.set_approval_offer("a2", "o", 1).await,
        Err(Error::Refused(_))
    ));
    store.set_approval_commitment("a2", "c1", 2).await.unwrap();
    assert!(matches!(
        store.set_approval_offer("a2", "o", 3).await,
        Err(Error::Refused(_))
    ));
    store.set_approval_hello("a2", "h1", 3).await.unwrap();
    // Until the offer, the approver may answer again.
    store.set_approval_hello("a2", "h2", 4).await.unwrap();
    store.set_approval_offer("a2", "o1", 5).await.unwrap();
    assert!(matches!(
        store.set_approval_offer("a2", "o2", 6).await,
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store.set_approval_hello("a2", "h3", 6).await,
        Err(Error::Refused(_))
    ));
    assert_eq!(
        store.approval("a2").await.unwrap(),
        Some(Approval {
            device_id: "a2".into(),
            commitment: Some("c1".into()),
            hello: Some("h2".into()),
            offer: Some("o1".into()),
            sealed_identity: None,
            updated_at: 5,
        })
    );
    // A fresh commitment starts over.
    store.set_approval_commitment("a2", "c2", 7).await.unwrap();
    let restarted = store.approval("a2").await.unwrap().unwrap();
    assert_eq!(
        (
            restarted.commitment.as_deref(),
            restarted.hello,
            restarted.offer
        ),
        (Some("c2"), None, None)
    );
    // The approver's cancel ends an exchange that sealed nothing; deleting twice is fine.
    store.delete_approval("a2", true).await.unwrap();
    store.delete_approval("a2", true).await.unwrap();
    assert_eq!(store.approval("a2").await.unwrap(), None);
    // Once the identity is sealed, only the new device itself ends the exchange.
    store.set_approval_commitment("a2", "c3", 8).await.unwrap();
    store.set_approval_hello("a2", "h", 8).await.unwrap();
    store.set_approval_offer("a2", "o", 8).await.unwrap();
    store
        .append_directory_entries(
            vec![leaf(
                0,
                "alice",
                Some(DeviceChange::Approve {
                    device_id: "a2".into(),
                    sealed_identity: Some(vec![1; 80]),
                }),
            )],
            "cp".into(),
            9,
        )
        .await
        .unwrap();
    assert!(matches!(
        store.delete_approval("a2", true).await,
        Err(Error::Refused(_))
    ));
    assert!(store.approval("a2").await.unwrap().is_some());
    store.delete_approval("a2", false).await.unwrap();
    assert_eq!(store.approval("a2").await.unwrap(), None);
}

pub async fn issue_9_reset_wait_is_a_policy_and_last_seen_is_kept(store: &impl Store) {
    assert_eq!(
        store.org_policy().await.unwrap().reset_wait_secs,
        vellum_wire::DEFAULT_RESET_WAIT_SECS
    );
    let mut policy = store.org_policy().await.unwrap();
    policy.reset_wait_secs = 60;
    store.set_org_policy(policy).await.unwrap();
    assert_eq!(store.org_policy().await.unwrap().reset_wait_secs, 60);

    enroll_as(store, "a1", "alice", false).await;
    store.touch_device("a1", 1_000).await.unwrap();
    assert_eq!(store_last_seen(store, "a1").await, Some(1_000));
    // Within the minute nothing is written; then it moves on, never back.
    store.touch_device("a1", 1_030).await.unwrap();
    assert_eq!(store_last_seen(store, "a1").await, Some(1_000));
    store.touch_device("a1", 1_061).await.unwrap();
    assert_eq!(store_last_seen(store, "a1").await, Some(1_061));
    store.touch_device("a1", 500).await.unwrap();
    assert_eq!(store_last_seen(store, "a1").await, Some(1_061));
    store.touch_device("ghost", 2_000).await.unwrap();
}

async fn store_last_seen(store: &impl Store, id: &str) -> Option<i64> {
    store.device_record(id).await.unwrap().unwrap().last_seen
}

fn new_blob(id: &str, device: &str, size: u64, record: bool, expires_at: Option<i64>) -> NewBlob {
    NewBlob {
        blob_id: id.into(),
        group_id: "g1".into(),
        uploader_device: device.into(),
        size,
        chunk_size: 4096,
        record,
        expires_at,
        created_at: 1_000,
        user_quota: 10_000,
    }
}

pub async fn issue_10_blobs_take_chunks_in_order_within_the_quota(store: &impl Store) {
    enroll(store, "a1", "alice").await;
    enroll(store, "a2", "alice").await;
    enroll(store, "b1", "bob").await;
    store
        .create_blob(new_blob("x", "a1", 5_000, false, None))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_blob(new_blob("x", "b1", 10, false, None))
            .await,
        Err(Error::Conflict(_))
    ));
    // The quota counts every blob of the user, whichever device uploaded it.
    assert!(matches!(
        store
            .create_blob(new_blob("y", "a2", 5_001, false, None))
            .await,
        Err(Error::QuotaExceeded {
            used: 5_000,
            size: 5_001,
            quota: 10_000
        })
    ));
    assert_eq!(store.blob("y").await.unwrap(), None);
    store
        .create_blob(new_blob("z", "b1", 10_000, false, None))
        .await
        .unwrap();

    let info = store.blob("x").await.unwrap().unwrap();
    assert_eq!((info.chunks, info.present, info.finished), (2, 0, false));
    assert_eq!(info.uploader_user, "alice");
    assert_eq!(info.chunk_len(0), Some(4096 + BLOB_TAG_BYTES));
    assert_eq!(info.chunk_len(1), Some(904 + BLOB_TAG_BYTES));
    assert_eq!(info.chunk_len(2), None);
    assert!(matches!(
        store.put_blob_chunks("x", 1, vec![vec![1; 920]]).await,
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store.finish_blob("x").await,
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store
            .put_blob_chunks("x", 0, vec![vec![0; 4112], vec![1; 920], vec![2; 16]])
            .await,
        Err(Error::Refused(_))
    ));
    store
        .put_blob_chunks("x", 0, vec![vec![0; 4112]])
        .await
        .unwrap();
    assert!(matches!(
        store.put_blob_chunks("x", 0, vec![vec![9; 4112]]).await,
        Err(Error::Conflict(_))
    ));
    store
        .put_blob_chunks("x", 1, vec![vec![1; 920]])
        .await
        .unwrap();
    assert!(matches!(
        store.put_blob_chunks("x", 2, vec![vec![2; 16]]).await,
        Err(Error::Refused(_))
    ));
    store.finish_blob("x").await.unwrap();
    assert!(matches!(
        store.put_blob_chunks("x", 2, vec![vec![2; 16]]).await,
        Err(Error::Refused(_))
    ));
    let info = store.blob("x").await.unwrap().unwrap();
    assert_eq!((info.present, info.finished), (2, true));
    assert_eq!(store.blob_chunk("x", 0).await.unwrap(), Some(vec![0; 4112]));
    assert_eq!(store.blob_chunk("x", 1).await.unwrap(), Some(vec![1; 920]));
    assert_eq!(store.blob_chunk("x", 2).await.unwrap(), None);
    assert!(matches!(
        store.put_blob_chunks("nope", 0, vec![vec![]]).await,
        Err(Error::NotFound(_))
    ));
    // An empty file is one empty chunk.
    assert_eq!(NewBlob::chunk_count(0, 4096), 1);
}

pub async fn issue_10_blobs_go_at_expiry_and_deletion_but_wait_for_the_archiver(
    store: &impl Store,
) {
    enroll(store, "a1", "alice").await;
    enroll(store, "b1", "bob").await;
    group_of(store, "g1", "a1").await;
    async fn complete(store: &impl Store, blob: NewBlob) {
        let id = blob.blob_id.clone();
        store.create_blob(blob).await.unwrap();
        store
            .put_blob_chunks(&id, 0, vec![vec![7; 116]])
            .await
            .unwrap();
        store.finish_blob(&id).await.unwrap();
    }
    complete(store, new_blob("expiring", "a1", 100, false, Some(5_000))).await;
    complete(store, new_blob("record", "a1", 100, true, Some(5_000))).await;
    complete(store, new_blob("kept", "a1", 100, false, None)).await;
    store
        .create_blob(new_blob("abandoned", "a1", 100, false, None))
        .await
        .unwrap();

    // Before expiry, and for an upload younger than the limit, nothing goes.
    assert_eq!(store.purge_blobs(4_999, 1_000).await.unwrap(), 0);
    assert_eq!(store.purge_blobs(5_000, 1_001).await.unwrap(), 2);
    assert_eq!(store.blob("expiring").await.unwrap(), None);
    assert_eq!(store.blob_chunk("expiring", 0).await.unwrap(), None);
    assert_eq!(store.blob("abandoned").await.unwrap(), None);
    // The record blob waits for the archiver, then goes.
    assert!(store.blob("record").await.unwrap().is_some());
    store.mark_blob_archived("record").await.unwrap();
    assert_eq!(store.purge_blobs(5_000, 0).await.unwrap(), 1);
    assert_eq!(store.blob("record").await.unwrap(), None);

    // Delete for everyone: the uploader's user only.
    assert!(matches!(
        store.delete_blob("kept", "b1").await,
        Err(Error::Forbidden(_))
    ));
    store.delete_blob("kept", "a1").await.unwrap();
    assert_eq!(store.blob("kept").await.unwrap(), None);
    assert_eq!(store.blob_chunk("kept", 0).await.unwrap(), None);
    // A record blob deleted before the archiver fetched it is hidden, then goes once it has.
    complete(store, new_blob("said", "a1", 100, true, None)).await;
    store.delete_blob("said", "a1").await.unwrap();
    assert!(store.blob("said").await.unwrap().unwrap().deleted);
    assert_eq!(store.purge_blobs(9_000, 0).await.unwrap(), 0);
    store.mark_blob_archived("said").await.unwrap();
    assert_eq!(store.purge_blobs(9_000, 0).await.unwrap(), 1);
    assert_eq!(store.blob("said").await.unwrap(), None);
    assert!(matches!(
        store.delete_blob("said", "a1").await,
        Err(Error::NotFound(_))
    ));
}

/// Issue 13: a job's lease is granted while no other node holds it, and again once the
/// holder dropped it; leases of different jobs are independent.
pub async fn issue_13_a_job_lease_is_taken_again_once_dropped(store: &impl Store) {
    let purge = store
        .try_job_lease(Job::Purge)
        .await
        .unwrap()
        .expect("no node holds the purge lease");
    assert!(purge.is_held());
    let witness = store
        .try_job_lease(Job::DirectoryWitness)
        .await
        .unwrap()
        .expect("another job's lease is independent");
    assert!(witness.is_held());
    drop(purge);
    // The database may take a moment to see the dropped lease's session end.
    let again = eventually("the dropped purge lease is granted again", || async {
        store.try_job_lease(Job::Purge).await.unwrap()
    })
    .await;
    assert!(again.is_held());
    assert!(witness.is_held());
}

/// Checks every entry's running hash from the group's start, and that seqs run from 1
/// without a gap; returns the application messages' (seq, sender).
fn check_chain(group: &str, entries: &[StoredEntry]) -> Vec<(u64, String)> {
    use vellum_wire::{log_hash_next, log_hash_start};
    let mut hash = log_hash_start(group);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{group}: seqs without a gap");
        hash = log_hash_next(&hash, e.seq, e.epoch, e.kind, &e.sender_device, &e.payload);
        assert_eq!(e.log_hash, hash, "{group}: the hash of entry {}", e.seq);
    }
    entries
        .iter()
        .filter(|e| e.kind == vellum_wire::EntryKind::Application)
        .map(|e| (e.seq, e.sender_device.clone()))
        .collect()
}

/// Two groups of four members at epoch 1; each group's creator (`d00`, `d10`) receives its
/// whole log.
async fn two_groups_of_four(store: &impl Store) {
    for g in 0..2 {
        let members: Vec<String> = (0..4).map(|i| format!("d{g}{i}")).collect();
        for device in &members {
            enroll(store, device, &format!("user-{device}")).await;
        }
        let group = format!("g{g}");
        group_of(store, &group, &members[0]).await;
        let added: Vec<&str> = members[1..].iter().map(String::as_str).collect();
        store
            .append_commit(commit(&group, 0, &members[0], b"add", &added, &[]))
            .await
            .unwrap();
    }
}

/// Issue 13 (group commit): 64 appends at once from 8 senders in 2 groups all succeed, with
/// distinct seqs, each group's log gapless and its hash chain right.
pub async fn issue_13_concurrent_appends_commit_together_gapless_and_chained(store: &impl Store) {
    two_groups_of_four(store).await;
    let burst = (0..64).map(|i| {
        let (g, d) = (i % 2, (i / 2) % 4);
        store.append_message(message(
            &format!("g{g}"),
            1,
            &format!("d{g}{d}"),
            &format!("m{i}"),
        ))
    });
    let appended = futures_util::future::join_all(burst).await;
    for g in 0..2 {
        let mut seqs: Vec<u64> = appended
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == g)
            .map(|(_, a)| {
                let a = a.as_ref().expect("every member's append succeeds");
                assert!(!a.duplicate);
                assert_eq!(a.epoch, 1);
                a.seq
            })
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=33).collect::<Vec<u64>>(), "group g{g}");
        let group = format!("g{g}");
        let pending = store.pending(&format!("d{g}0"), 1_000).await.unwrap();
        let entries = &pending
            .groups
            .iter()
            .find(|(id, _)| *id == group)
            .unwrap()
            .1;
        let messages = check_chain(&group, entries);
        assert_eq!(messages.len(), 32);
        // What each caller was told is where its message is.
        for (i, a) in appended.iter().enumerate().filter(|(i, _)| i % 2 == g) {
            let seq = a.as_ref().unwrap().seq;
            let entry = &entries[seq as usize - 1];
            assert_eq!(entry.payload, format!("ct-m{i}").into_bytes());
        }
    }
}

/// Issue 13 (group commit): in one burst, a non-member's append and one at a stale epoch are
/// refused, alone: the others commit, and the log has no hole where they were.
pub async fn issue_13_a_refused_append_in_a_burst_fails_alone(store: &impl Store) {
    two_groups_of_four(store).await;
    let burst = (0..16).map(|i| {
        let m = match i {
            // d10 is a member of g1, not g0.
            5 => message("g0", 1, "d10", "intruder"),
            9 => message("g0", 0, "d01", "stale"),
            _ => message("g0", 1, &format!("d0{}", i % 4), &format!("m{i}")),
        };
        store.append_message(m)
    });
    let appended = futures_util::future::join_all(burst).await;
    assert!(
        matches!(appended[5], Err(Error::NotMember)),
        "{:?}",
        appended[5]
    );
    assert!(
        matches!(appended[9], Err(Error::StaleEpoch { current: 1 })),
        "{:?}",
        appended[9]
    );
    let mut seqs: Vec<u64> = appended
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5 && *i != 9)
        .map(|(_, a)| a.as_ref().expect("the others commit").seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=15).collect::<Vec<u64>>());
    let pending = store.pending("d00", 1_000).await.unwrap();
    let entries = &pending.groups.iter().find(|(id, _)| id == "g0").unwrap().1;
    let messages = check_chain("g0", entries);
    assert_eq!(messages.len(), 14);
    assert!(messages.iter().all(|(_, sender)| sender != "d10"));
}

/// Issue 13 (group commit): a message retried within the same burst (same sender and
/// client_msg_id) is appended once; the retry is told the first append's seq.
pub async fn issue_13_a_retry_in_the_same_burst_is_the_first_append(store: &impl Store) {
    two_groups_of_four(store).await;
    let burst = (0..12).map(|i| {
        let id = if i == 3 || i == 7 {
            "again".to_string()
        } else {
            format!("m{i}")
        };
        store.append_message(message("g0", 1, "d02", &id))
    });
    let appended: Vec<Appended> = futures_util::future::join_all(burst)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (first, retry) = (appended[3], appended[7]);
    assert_eq!(first.seq, retry.seq);
    assert_eq!(first.epoch, retry.epoch);
    assert!(!first.duplicate);
    assert!(retry.duplicate);
    let pending = store.pending("d00", 1_000).await.unwrap();
    let entries = &pending.groups.iter().find(|(id, _)| id == "g0").unwrap().1;
    assert_eq!(check_chain("g0", entries).len(), 11);
}

/// Issue 13 (group commit): a caller that stops waiting (a dropped request) before any
/// batch took its message leaves nothing in the log: it was never acknowledged.
pub async fn issue_13_an_append_whose_caller_left_before_its_batch_is_not_made(store: &impl Store) {
    use futures_util::FutureExt;
    two_groups_of_four(store).await;
    // The first call takes the writer for its batch (polled once, it has not run yet)...
    let mut first = Box::pin(store.append_message(message("g0", 1, "d01", "first")));
    assert!((&mut first).now_or_never().is_none());
    // ... so the next one queues behind it, and its caller leaves.
    assert!(store
        .append_message(message("g0", 1, "d01", "left"))
        .now_or_never()
        .is_none());
    assert_eq!(first.await.unwrap().seq, 2);
    assert_eq!(
        store
            .append_message(message("g0", 1, "d01", "next"))
            .await
            .unwrap()
            .seq,
        3
    );
    let pending = store.pending("d00", 1_000).await.unwrap();
    let entries = &pending.groups.iter().find(|(id, _)| id == "g0").unwrap().1;
    check_chain("g0", entries);
    let payloads: Vec<&[u8]> = entries.iter().map(|e| e.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"add"[..], b"ct-first", b"ct-next"]);
}
