//! End-to-end MLS flows between devices and the server's tracker, all in memory.

use mls_rs::{ExtensionList, MlsMessage};
use vellum_mls::{
    in_memory_device as device, last_resort_extensions, Error, GroupTracker, InMemoryDevice,
    OrgIdentityProvider, OrgSigner,
};

type Device = InMemoryDevice;

fn key_package(d: &Device) -> MlsMessage {
    d.generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
        .unwrap()
}

#[test]
fn server_follows_membership_and_members_exchange_messages() {
    let org = OrgSigner::generate();
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let alice = device(&org, "alice", "a1");
    let bob = device(&org, "bob", "b1");
    let carol = device(&org, "carol", "c1");

    let mut group = alice
        .create_group(ExtensionList::new(), Default::default(), None)
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    let mut tracked = tracker.observe(&info, "a1").unwrap();
    assert_eq!(tracked.epoch(), 0);
    // Only the creator's device may register a group.
    assert!(tracker.observe(&info, "b1").is_err());

    let commit = group
        .commit_builder()
        .add_member(key_package(&bob))
        .unwrap()
        .add_member(key_package(&carol))
        .unwrap()
        .build()
        .unwrap();
    // Bob is not the committer: the server refuses to attribute the commit to him.
    let mut wrong = tracker.load(&tracked.state().unwrap()).unwrap();
    assert!(matches!(
        wrong.apply_commit(commit.commit_message.clone(), "b1"),
        Err(Error::SenderMismatch { .. })
    ));
    let outcome = tracked
        .apply_commit(commit.commit_message.clone(), "a1")
        .unwrap();
    assert_eq!(outcome.added, vec!["b1".to_string(), "c1".to_string()]);
    assert!(outcome.removed.is_empty());
    group.apply_pending_commit().unwrap();

    let (mut bob_group, _) = bob
        .join_group(None, &commit.welcome_messages[0], None)
        .unwrap();
    let (mut carol_group, _) = carol
        .join_group(None, &commit.welcome_messages[0], None)
        .unwrap();

    // The same commit again is now for a past epoch.
    assert!(matches!(
        tracked.apply_commit(commit.commit_message, "a1"),
        Err(Error::WrongEpoch { current: 1, got: 0 })
    ));

    let secret = group
        .encrypt_application_message(b"hello bob", vec![])
        .unwrap();
    tracked.check_epoch(&secret).unwrap();
    let received = bob_group.process_incoming_message(secret.clone()).unwrap();
    match received {
        mls_rs::group::ReceivedMessage::ApplicationMessage(m) => assert_eq!(m.data(), b"hello bob"),
        other => panic!("expected an application message, got {other:?}"),
    }
    // Replaying the same ciphertext to a member fails: each generation key is used once.
    assert!(bob_group.process_incoming_message(secret).is_err());

    // Remove carol; the server sees her leave, and she cannot read what follows.
    let carol_index = carol_group.current_member_index();
    let removal = group
        .commit_builder()
        .remove_member(carol_index)
        .unwrap()
        .build()
        .unwrap();
    let outcome = tracked
        .apply_commit(removal.commit_message.clone(), "a1")
        .unwrap();
    assert_eq!(outcome.removed, vec!["c1".to_string()]);
    group.apply_pending_commit().unwrap();
    bob_group
        .process_incoming_message(removal.commit_message.clone())
        .unwrap();
    carol_group
        .process_incoming_message(removal.commit_message)
        .unwrap();
    let after = group
        .encrypt_application_message(b"carol must not see", vec![])
        .unwrap();
    assert!(carol_group.process_incoming_message(after.clone()).is_err());
    assert!(bob_group.process_incoming_message(after).is_ok());
}

#[test]
fn tracker_rejects_garbage_and_foreign_credentials() {
    let org = OrgSigner::generate();
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    assert!(matches!(
        tracker.observe(b"", "a1"),
        Err(Error::Malformed(_))
    ));
    assert!(matches!(
        tracker.observe(&[0xff; 64], "a1"),
        Err(Error::Malformed(_))
    ));
    assert!(tracker.load(b"not a snapshot").is_err());

    // A device certified by another org cannot even register a group here.
    let rogue_org = OrgSigner::generate();
    let mallory = device(&rogue_org, "mallory", "m1");
    let group = mallory
        .create_group(ExtensionList::new(), Default::default(), None)
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    assert!(tracker.observe(&info, "m1").is_err());

    // Truncated GroupInfo is malformed, not a panic.
    let alice = device(&org, "alice", "a1");
    let group = alice
        .create_group(ExtensionList::new(), Default::default(), None)
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    for cut in [1, info.len() / 2, info.len() - 1] {
        assert!(tracker.observe(&info[..cut], "a1").is_err());
    }
}

#[test]
fn last_resort_key_package_can_be_used_twice() {
    let org = OrgSigner::generate();
    let alice = device(&org, "alice", "a1");
    let bob = device(&org, "bob", "b1");
    let last_resort = bob
        .generate_key_package_message(last_resort_extensions(), ExtensionList::new(), None)
        .unwrap();
    for _ in 0..2 {
        let mut group = alice
            .create_group(ExtensionList::new(), Default::default(), None)
            .unwrap();
        let out = group
            .commit_builder()
            .add_member(last_resort.clone())
            .unwrap()
            .build()
            .unwrap();
        let (mut joined, _) = bob
            .join_group(None, &out.welcome_messages[0], None)
            .unwrap();
        joined.write_to_storage().unwrap();
    }
    // An ordinary key package is single-use.
    let once = key_package(&bob);
    let mut g1 = alice
        .create_group(ExtensionList::new(), Default::default(), None)
        .unwrap();
    let out = g1
        .commit_builder()
        .add_member(once.clone())
        .unwrap()
        .build()
        .unwrap();
    bob.join_group(None, &out.welcome_messages[0], None)
        .unwrap()
        .0
        .write_to_storage()
        .unwrap();
    let mut g2 = alice
        .create_group(ExtensionList::new(), Default::default(), None)
        .unwrap();
    let out = g2
        .commit_builder()
        .add_member(once)
        .unwrap()
        .build()
        .unwrap();
    assert!(bob
        .join_group(None, &out.welcome_messages[0], None)
        .is_err());
}

#[test]
fn chat_policy_travels_in_the_group_context_and_the_server_sees_changes() {
    use vellum_mls::ChatPolicy;
    let org = OrgSigner::generate();
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let alice = device(&org, "alice", "a1");
    let bob = device(&org, "bob", "b1");
    let day = ChatPolicy {
        expire_secs: Some(86_400),
        burn_secs: None,
    };
    let mut group = alice
        .create_group(
            day.to_extensions(ExtensionList::new()),
            Default::default(),
            None,
        )
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    let mut tracked = tracker.observe(&info, "a1").unwrap();
    assert_eq!(tracked.policy().unwrap(), day);

    let add = group
        .commit_builder()
        .add_member(key_package(&bob))
        .unwrap()
        .build()
        .unwrap();
    tracked.apply_commit(add.commit_message, "a1").unwrap();
    group.apply_pending_commit().unwrap();
    let (mut bob_group, _) = bob
        .join_group(None, &add.welcome_messages[0], None)
        .unwrap();
    assert_eq!(
        ChatPolicy::from_extensions(&bob_group.context().extensions).unwrap(),
        day
    );

    let hour = ChatPolicy {
        expire_secs: Some(3600),
        burn_secs: Some(60),
    };
    let extensions = hour.to_extensions(group.context().extensions.clone());
    let change = group
        .commit_builder()
        .set_group_context_ext(extensions)
        .unwrap()
        .build()
        .unwrap();
    tracked
        .apply_commit(change.commit_message.clone(), "a1")
        .unwrap();
    assert_eq!(
        tracked.policy().unwrap(),
        hour,
        "the server reads the new policy from the public commit"
    );
    bob_group
        .process_incoming_message(change.commit_message)
        .unwrap();
    assert_eq!(
        ChatPolicy::from_extensions(&bob_group.context().extensions).unwrap(),
        hour
    );
}

/// Issue 10: the one authorization rule, as the tracker's outcome feeds it. The creator is
/// the admin; a member may not add others, but may commit another member's self-removal
/// proposal (leaving) and add its own user's devices.
#[test]
fn issue_10_roles_allow_admins_own_devices_and_leaving_only() {
    use vellum_mls::{authorize_commit, ChatSettings};
    let org = OrgSigner::generate();
    let tracker = GroupTracker::new(OrgIdentityProvider::new(org.public_key()));
    let alice = device(&org, "alice", "a1");
    let bob = device(&org, "bob", "b1");
    let bob2 = device(&org, "bob", "b2");
    let carol = device(&org, "carol", "c1");
    let dave = device(&org, "dave", "d1");
    let nobody = |_: &vellum_mls::DeviceCertificate| false;

    let settings = ChatSettings::new("alice").to_extensions(ExtensionList::new());
    let mut group = alice
        .create_group(settings, Default::default(), None)
        .unwrap();
    let info = group.group_info_message(true).unwrap().to_bytes().unwrap();
    let mut tracked = tracker.observe(&info, "a1").unwrap();
    let add = group
        .commit_builder()
        .add_member(key_package(&bob))
        .unwrap()
        .add_member(key_package(&carol))
        .unwrap()
        .build()
        .unwrap();
    let outcome = tracked.apply_commit(add.commit_message, "a1").unwrap();
    authorize_commit(&outcome.change, &nobody).expect("the admin adds members");
    group.apply_pending_commit().unwrap();
    let (mut bob_group, _) = bob
        .join_group(None, &add.welcome_messages[0], None)
        .unwrap();
    let (mut carol_group, _) = carol
        .join_group(None, &add.welcome_messages[0], None)
        .unwrap();

    // Bob (no admin) adding dave: the tracker follows it, the rule refuses it.
    let state = tracked.state().unwrap();
    let by_bob = bob_group
        .commit_builder()
        .add_member(key_package(&dave))
        .unwrap()
        .build()
        .unwrap();
    let mut trial = tracker.load(&state).unwrap();
    let outcome = trial.apply_commit(by_bob.commit_message, "b1").unwrap();
    let refused = authorize_commit(&outcome.change, &nobody).unwrap_err();
    assert!(matches!(refused, Error::Unauthorized(_)), "{refused}");
    assert!(
        refused.to_string().contains("bob may not add dave"),
        "{refused}"
    );
    bob_group.clear_pending_commit();

    // Bob removing carol: refused, unless the caller says her device may go (revoked).
    let carol_index = carol_group.current_member_index();
    let removal = bob_group
        .commit_builder()
        .remove_member(carol_index)
        .unwrap()
        .build()
        .unwrap();
    let mut trial = tracker.load(&state).unwrap();
    let outcome = trial.apply_commit(removal.commit_message, "b1").unwrap();
    assert!(authorize_commit(&outcome.change, &nobody).is_err());
    authorize_commit(&outcome.change, &|c| c.device_id == "c1").expect("a revoked device");
    bob_group.clear_pending_commit();

    // Bob changing the admins: refused.
    let mut grab = ChatSettings::new("alice");
    grab.admins.push(b"bob".to_vec());
    let grabbed = grab.to_extensions(bob_group.context().extensions.clone());
    let coup = bob_group
        .commit_builder()
        .set_group_context_ext(grabbed)
        .unwrap()
        .build()
        .unwrap();
    let mut trial = tracker.load(&state).unwrap();
    let outcome = trial.apply_commit(coup.commit_message, "b1").unwrap();
    assert!(authorize_commit(&outcome.change, &nobody).is_err());
    bob_group.clear_pending_commit();

    // Bob adding his own second device: allowed.
    let own = bob_group
        .commit_builder()
        .add_member(key_package(&bob2))
        .unwrap()
        .build()
        .unwrap();
    let mut trial = tracker.load(&state).unwrap();
    let outcome = trial.apply_commit(own.commit_message, "b1").unwrap();
    authorize_commit(&outcome.change, &nobody).expect("a member adds its own device");
    bob_group.clear_pending_commit();

    // Carol leaves: she proposes her own removal; the tracker sees the proposal, and bob
    // (no admin) commits it by reference.
    let proposal = carol_group.propose_remove(carol_index, vec![]).unwrap();
    assert!(
        matches!(
            tracker
                .load(&tracked.state().unwrap())
                .unwrap()
                .observe_leave(proposal.clone(), "b1"),
            Err(Error::SenderMismatch { .. })
        ),
        "a proposal is attributed to its signer only"
    );
    let leave = tracked.observe_leave(proposal.clone(), "c1").unwrap();
    assert_eq!(
        (leave.user.as_str(), leave.device_id.as_str()),
        ("carol", "c1")
    );
    bob_group
        .process_incoming_message(proposal.clone())
        .unwrap();
    group.process_incoming_message(proposal).unwrap();
    let leave = bob_group.commit_builder().build().unwrap();
    let outcome = tracked.apply_commit(leave.commit_message, "b1").unwrap();
    assert_eq!(outcome.removed, vec!["c1".to_string()]);
    assert!(outcome.change.removed[0].left);
    authorize_commit(&outcome.change, &nobody).expect("committing a member's leaving");
}
