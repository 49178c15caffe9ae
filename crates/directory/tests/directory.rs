//! The directory's rules, its verified copy, device approval codes and safety numbers.

use vellum_directory::*;
use vellum_mls::DeviceKey;
use vellum_tlog::{Checkpoint, RootBuilder};

/// Test devices' keys: device "a2" (or "b2") has key 2, "ghost" key 7.
fn key(byte: u8) -> DeviceKey {
    DeviceKey::from_seed(&[byte; 32]).unwrap()
}

fn key_of(device_id: &str) -> DeviceKey {
    match device_id.strip_prefix(|c: char| c.is_ascii_alphabetic()) {
        Some(digit) if digit.len() == 1 => key(digit.parse().unwrap()),
        _ => key(7),
    }
}

fn device(id: &str, byte: u8) -> DeviceRef {
    DeviceRef {
        device_id: id.into(),
        signature_key: key(byte).public_key(),
    }
}

/// A server's side: applies each change and keeps the leaves.
#[derive(Default)]
struct Log {
    state: DirectoryState,
    leaves: Vec<Vec<u8>>,
}

impl Log {
    fn new() -> Self {
        let mut log = Self::default();
        log.append("", 0, Change::UpgradeDone).unwrap();
        log
    }

    fn append(&mut self, user: &str, time: i64, change: Change) -> Result<(), Error> {
        let leaf = self.state.next_entry(user, time, change).to_bytes();
        self.state.apply(&leaf)?;
        self.leaves.push(leaf);
        Ok(())
    }

    fn checkpoint(&self, size: usize) -> Checkpoint {
        let mut builder = RootBuilder::new();
        for leaf in &self.leaves[..size] {
            builder.push(vellum_tlog::leaf_hash(leaf));
        }
        Checkpoint {
            origin: "test/directory".into(),
            size: size as u64,
            root: builder.root(),
            extensions: vec![],
        }
    }
}

#[test]
fn a_user_starts_an_identity_and_approves_and_revokes_devices() {
    let mut log = Log::new();
    let alice = IdentityKey::generate();
    log.append(
        "alice",
        1,
        alice.identity_change("alice", device("a1", 1), &key(1)),
    )
    .unwrap();
    log.append(
        "alice",
        2,
        alice.approve_change("alice", device("a2", 2), "a1", &key_of("a1")),
    )
    .unwrap();
    assert_eq!(
        log.state.vouch("alice", "a2", &key(2).public_key()),
        Vouch::Approved
    );
    assert_eq!(
        log.state.vouch("alice", "a2", &key(9).public_key()),
        Vouch::WrongKey
    );
    assert_eq!(
        log.state.vouch("alice", "a3", &key(3).public_key()),
        Vouch::Unknown
    );
    assert_eq!(
        log.state.vouch("bob", "a2", &key(2).public_key()),
        Vouch::Unknown
    );
    log.append(
        "alice",
        3,
        alice.revoke_change("alice", "a2", "a1", &key_of("a1")),
    )
    .unwrap();
    assert_eq!(
        log.state.vouch("alice", "a2", &key(2).public_key()),
        Vouch::Revoked
    );
    // A revoked device approves nothing and cannot come back.
    let again = log.append(
        "alice",
        4,
        alice.approve_change("alice", device("a2", 2), "a1", &key_of("a1")),
    );
    assert!(matches!(again, Err(Error::BrokenRule { .. })), "{again:?}");
    let by_revoked = log.append(
        "alice",
        4,
        alice.approve_change("alice", device("a3", 3), "a2", &key_of("a2")),
    );
    assert!(matches!(by_revoked, Err(Error::BrokenRule { .. })));
}

#[test]
fn issue_9_only_the_users_identity_key_can_add_a_device() {
    let mut log = Log::new();
    let bob = IdentityKey::generate();
    log.append(
        "bob",
        1,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
    let before = log.state.clone();
    // The operator (or anyone without bob's identity key) signs with a key of its own.
    let operator = IdentityKey::generate();
    for change in [
        operator.approve_change("bob", device("ghost", 7), "b1", &key_of("b1")),
        operator.identity_change("bob", device("ghost", 7), &key(7)),
        operator.revoke_change("bob", "b1", "b1", &key_of("b1")),
        operator.veto_change("bob", "r1", "b1", &key_of("b1")),
    ] {
        assert!(log.append("bob", 2, change).is_err());
    }
    // Bob's signature over another user, device or key does not transfer.
    let Change::Approved {
        signature,
        device_signature,
        ..
    } = bob.approve_change("bob", device("b2", 2), "b1", &key_of("b1"))
    else {
        unreachable!()
    };
    for forged in [
        Change::Approved {
            device: device("ghost", 2),
            by_device: "b1".into(),
            signature,
            device_signature,
        },
        Change::Approved {
            device: device("b2", 7),
            by_device: "b1".into(),
            signature,
            device_signature,
        },
    ] {
        assert!(log.append("bob", 2, forged).is_err());
    }
    assert_eq!(log.state, before, "a refused entry changes nothing");
}

#[test]
fn issue_9_a_revoked_device_keeping_the_identity_key_approves_nothing() {
    // A lost phone kept bob's identity key; bob revoked it. Whoever holds the phone (and
    // the server) still cannot approve a ghost: every approval is also signed by the
    // approving device's own key, and the phone's is revoked while bob's laptop's is his.
    let mut log = Log::new();
    let bob = IdentityKey::generate();
    log.append(
        "bob",
        1,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
    log.append(
        "bob",
        2,
        bob.approve_change("bob", device("b2", 2), "b1", &key(1)),
    )
    .unwrap();
    log.append("bob", 3, bob.revoke_change("bob", "b2", "b1", &key(1)))
        .unwrap();
    let stolen = IdentityKey::from_seed(bob.seed().as_slice()).unwrap();
    for (by_device, by_key) in [("b2", key(2)), ("b1", key(2)), ("b1", key(7))] {
        let ghost = stolen.approve_change("bob", device("ghost", 7), by_device, &by_key);
        assert!(
            log.append("bob", 4, ghost).is_err(),
            "approved by {by_device}"
        );
        let revoke = stolen.revoke_change("bob", "b1", by_device, &by_key);
        assert!(log.append("bob", 4, revoke).is_err());
    }
    assert_eq!(
        log.state.vouch("bob", "ghost", &key(7).public_key()),
        Vouch::Unknown
    );
}

#[test]
fn issue_9_a_reset_shorter_than_the_pinned_wait_is_refused() {
    let mut log = Log::new();
    log.state.min_reset_wait_secs = 3600;
    let bob = IdentityKey::generate();
    log.append(
        "bob",
        1,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
    let short = Change::ResetRequested {
        request_id: "r1".into(),
        effective_at: 10 + 3599,
    };
    assert!(log.append("bob", 10, short).is_err());
    let long = Change::ResetRequested {
        request_id: "r1".into(),
        effective_at: 10 + 3600,
    };
    log.append("bob", 10, long).unwrap();
}

#[test]
fn issue_9_an_upgraded_users_identity_names_their_earliest_device() {
    let mut log = Log::default();
    log.append(
        "bob",
        0,
        Change::Legacy {
            device: device("b1", 1),
        },
    )
    .unwrap();
    log.append(
        "bob",
        0,
        Change::Legacy {
            device: device("b2", 2),
        },
    )
    .unwrap();
    log.append("", 0, Change::UpgradeDone).unwrap();
    let bob = IdentityKey::generate();
    // Neither a later legacy device nor a brand-new one takes the identity.
    assert!(log
        .append(
            "bob",
            1,
            bob.identity_change("bob", device("b2", 2), &key(2))
        )
        .is_err());
    assert!(log
        .append(
            "bob",
            1,
            bob.identity_change("bob", device("b9", 9), &key(9))
        )
        .is_err());
    // A device must sign its own identity entry.
    assert!(log
        .append(
            "bob",
            1,
            bob.identity_change("bob", device("b1", 1), &key(2))
        )
        .is_err());
    log.append(
        "bob",
        1,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
}

#[test]
fn entries_must_follow_the_users_chain_and_ids_are_never_reused() {
    let mut log = Log::new();
    let alice = IdentityKey::generate();
    log.append(
        "alice",
        1,
        alice.identity_change("alice", device("a1", 1), &key(1)),
    )
    .unwrap();
    // An entry that skips or repeats a position of alice's chain.
    let mut entry = log.state.next_entry(
        "alice",
        2,
        alice.approve_change("alice", device("a2", 2), "a1", &key_of("a1")),
    );
    entry.user_seq += 1;
    assert!(log.state.clone().apply(&entry.to_bytes()).is_err());
    let mut entry = log.state.next_entry(
        "alice",
        2,
        alice.approve_change("alice", device("a2", 2), "a1", &key_of("a1")),
    );
    entry.prev = None;
    assert!(log.state.clone().apply(&entry.to_bytes()).is_err());
    // Bob cannot take a device id alice holds.
    let bob = IdentityKey::generate();
    assert!(log
        .append(
            "bob",
            2,
            bob.identity_change("bob", device("a1", 5), &key(5))
        )
        .is_err());
    // A second identity while one stands.
    let other = IdentityKey::generate();
    assert!(log
        .append(
            "alice",
            2,
            other.identity_change("alice", device("a9", 9), &key(9))
        )
        .is_err());
    // Unknown fields, versions and oversized entries are refused.
    let mut value: serde_json::Value = serde_json::from_slice(
        &log.state
            .next_entry(
                "alice",
                2,
                Change::RevokedByAdmin {
                    device_id: "a1".into(),
                },
            )
            .to_bytes(),
    )
    .unwrap();
    value["extra"] = 1.into();
    assert!(log
        .state
        .clone()
        .apply(value.to_string().as_bytes())
        .is_err());
    value.as_object_mut().unwrap().remove("extra");
    value["version"] = 2.into();
    assert!(matches!(
        DirectoryEntry::parse(value.to_string().as_bytes()),
        Err(Error::UnsupportedVersion(2))
    ));
    assert!(log
        .state
        .clone()
        .apply(&vec![b' '; MAX_ENTRY_BYTES + 1])
        .is_err());
}

#[test]
fn legacy_devices_only_in_the_opening_listing() {
    let mut log = Log::default();
    log.append(
        "bob",
        0,
        Change::Legacy {
            device: device("b1", 1),
        },
    )
    .unwrap();
    log.append(
        "bob",
        0,
        Change::Legacy {
            device: device("b2", 2),
        },
    )
    .unwrap();
    // Nothing but listing before the listing ends.
    let bob = IdentityKey::generate();
    assert!(log
        .append(
            "bob",
            0,
            bob.identity_change("bob", device("b1", 1), &key(1))
        )
        .is_err());
    log.append("", 0, Change::UpgradeDone).unwrap();
    assert_eq!(
        log.state.vouch("bob", "b2", &key(2).public_key()),
        Vouch::Legacy
    );
    // A "device that existed before" cannot be planted later.
    assert!(log
        .append(
            "bob",
            5,
            Change::Legacy {
                device: device("ghost", 7)
            }
        )
        .is_err());
    assert!(log.append("", 5, Change::UpgradeDone).is_err());
    // The earliest device takes the identity; it then confirms the other.
    log.append(
        "bob",
        5,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
    assert_eq!(
        log.state.vouch("bob", "b1", &key(1).public_key()),
        Vouch::Approved
    );
    assert_eq!(
        log.state.vouch("bob", "b2", &key(2).public_key()),
        Vouch::Legacy
    );
    log.append(
        "bob",
        6,
        bob.approve_change("bob", device("b2", 2), "b1", &key_of("b1")),
    )
    .unwrap();
    assert_eq!(
        log.state.vouch("bob", "b2", &key(2).public_key()),
        Vouch::Approved
    );
}

#[test]
fn issue_9_a_reset_waits_and_a_surviving_device_vetoes_it() {
    let mut log = Log::new();
    let bob = IdentityKey::generate();
    log.append(
        "bob",
        1,
        bob.identity_change("bob", device("b1", 1), &key(1)),
    )
    .unwrap();
    log.append(
        "bob",
        10,
        Change::ResetRequested {
            request_id: "r1".into(),
            effective_at: 100,
        },
    )
    .unwrap();
    // Not before the waiting period ends.
    assert!(log
        .append(
            "bob",
            99,
            Change::Reset {
                request_id: "r1".into()
            }
        )
        .is_err());
    // A veto needs bob's identity.
    let operator = IdentityKey::generate();
    assert!(log
        .append(
            "bob",
            50,
            operator.veto_change("bob", "r1", "b1", &key_of("b1"))
        )
        .is_err());
    log.append("bob", 50, bob.veto_change("bob", "r1", "b1", &key_of("b1")))
        .unwrap();
    assert!(log
        .append(
            "bob",
            150,
            Change::Reset {
                request_id: "r1".into()
            }
        )
        .is_err());
    assert_eq!(
        log.state.vouch("bob", "b1", &key(1).public_key()),
        Vouch::Approved
    );
    // A request id is used once.
    assert!(log
        .append(
            "bob",
            160,
            Change::ResetRequested {
                request_id: "r1".into(),
                effective_at: 200
            }
        )
        .is_err());
    // Unvetoed, the reset revokes every device and allows a new identity.
    log.append(
        "bob",
        160,
        Change::ResetRequested {
            request_id: "r2".into(),
            effective_at: 200,
        },
    )
    .unwrap();
    log.append(
        "bob",
        200,
        Change::Reset {
            request_id: "r2".into(),
        },
    )
    .unwrap();
    assert_eq!(
        log.state.vouch("bob", "b1", &key(1).public_key()),
        Vouch::Revoked
    );
    let user = log.state.user("bob").unwrap();
    assert_eq!((user.identity, user.generation), (None, 1));
    let new = IdentityKey::generate();
    log.append(
        "bob",
        201,
        new.identity_change("bob", device("b3", 3), &key(3)),
    )
    .unwrap();
    assert_eq!(log.state.user("bob").unwrap().identity, Some(new.public()));
}

#[test]
fn a_mirror_follows_the_log_and_catches_forks_and_rollbacks() {
    let mut log = Log::new();
    let alice = IdentityKey::generate();
    log.append(
        "alice",
        1,
        alice.identity_change("alice", device("a1", 1), &key(1)),
    )
    .unwrap();
    let mut mirror = Mirror::default();
    mirror.extend(&log.leaves[..2], &log.checkpoint(2)).unwrap();
    assert_eq!(mirror.size(), 2);
    log.append(
        "alice",
        2,
        alice.approve_change("alice", device("a2", 2), "a1", &key_of("a1")),
    )
    .unwrap();
    // A checkpoint over other leaves at the same sizes: a fork.
    let mut forked = Log::new();
    let other = IdentityKey::generate();
    forked
        .append(
            "alice",
            1,
            other.identity_change("alice", device("a1", 1), &key(1)),
        )
        .unwrap();
    // Entries that keep the rules but are not the ones the checkpoint covers.
    let mut split = Log::new();
    split.leaves = log.leaves[..2].to_vec();
    split.state = mirror.state.clone();
    split
        .append(
            "alice",
            2,
            alice.approve_change("alice", device("a9", 9), "a1", &key_of("a1")),
        )
        .unwrap();
    let held = mirror.clone();
    assert!(matches!(
        mirror.extend(&split.leaves[2..], &log.checkpoint(3)),
        Err(Error::Fork { size: 3 })
    ));
    assert!(matches!(
        mirror.extend(&[], &forked.checkpoint(2)),
        Err(Error::Fork { size: 2 })
    ));
    // Entries that break the rules are refused whatever the checkpoint says, even when the
    // checkpoint covers them; the entries before the bad one are undone.
    let mut ghost = Log::new();
    ghost
        .append(
            "alice",
            1,
            other.identity_change("alice", device("a1", 1), &key(1)),
        )
        .unwrap();
    ghost
        .append(
            "alice",
            2,
            other.approve_change("alice", device("ghost", 7), "a1", &key_of("a1")),
        )
        .unwrap();
    let mut planted = Log::new();
    planted.leaves = log.leaves[..2].to_vec();
    planted.state = mirror.state.clone();
    planted
        .append(
            "bob",
            2,
            IdentityKey::generate().identity_change("bob", device("b1", 3), &key(3)),
        )
        .unwrap();
    planted.leaves.push(ghost.leaves[2].clone());
    assert!(matches!(
        mirror.extend(&planted.leaves[2..], &planted.checkpoint(4)),
        Err(Error::BrokenRule { index: 3, .. })
    ));
    assert_eq!(mirror.state, held.state);
    assert!(matches!(
        mirror.extend(&[], &log.checkpoint(1)),
        Err(Error::Rollback { held: 2, shown: 1 })
    ));
    assert_eq!(
        mirror.state, held.state,
        "a refused extension changes nothing"
    );
    // The honest extension, also after a round trip through storage.
    let mut mirror: Mirror =
        serde_json::from_str(&serde_json::to_string(&mirror).unwrap()).unwrap();
    let applied = mirror.extend(&log.leaves[2..], &log.checkpoint(3)).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        mirror.state.vouch("alice", "a2", &key(2).public_key()),
        Vouch::Approved
    );
    mirror.extend(&[], &log.checkpoint(3)).unwrap();
}

fn exchange() -> (IdentityKey, OfferSecret, HelloSecret, Key32) {
    let identity = IdentityKey::generate();
    let offer = OfferSecret::new(device("new", 2));
    let committed = offer.commitment("bob");
    let hello = HelloSecret::new(device("old", 1), identity.public());
    (identity, offer, hello, committed)
}

#[test]
fn issue_9_an_approval_with_the_right_code_hands_over_the_identity() {
    let (identity, offer, hello, committed) = exchange();
    let shown = verification_code("bob", &offer.offer, &hello.hello);
    assert_eq!(shown.len(), 14);
    let typed = shown.replace('-', " ");
    let sealed = hello
        .complete("bob", &committed, &offer.offer, &typed, &identity)
        .unwrap();
    let opened = offer.open_identity("bob", &hello.hello, &sealed).unwrap();
    assert_eq!(opened.public(), identity.public());
    // Sealed to this exchange only.
    let other = OfferSecret::new(device("new", 2));
    assert!(other.open_identity("bob", &hello.hello, &sealed).is_err());
    let mut flipped = sealed.clone();
    flipped[40] ^= 1;
    assert!(offer.open_identity("bob", &hello.hello, &flipped).is_err());
}

#[test]
fn issue_9_a_wrong_code_or_a_changed_offer_approves_nothing() {
    let (identity, offer, hello, committed) = exchange();
    let shown = verification_code("bob", &offer.offer, &hello.hello);
    let mut wrong = shown.clone().into_bytes();
    wrong[0] = if wrong[0] == b'9' { b'1' } else { wrong[0] + 1 };
    assert!(matches!(
        hello.complete(
            "bob",
            &committed,
            &offer.offer,
            std::str::from_utf8(&wrong).unwrap(),
            &identity
        ),
        Err(Error::WrongCode)
    ));
    assert!(hello
        .complete("bob", &committed, &offer.offer, "", &identity)
        .is_err());
    // A revealed offer other than the committed one is caught before any code.
    let swapped = OfferSecret::new(device("new", 2));
    assert!(matches!(
        hello.complete("bob", &committed, &swapped.offer, &shown, &identity),
        Err(Error::Approval(_))
    ));
}

#[test]
fn issue_9_a_server_grinding_keys_cannot_match_the_code() {
    // The server stands between the devices: it commits to an offer with its own keys
    // before it sees the approver's nonce (it must: the approver answers a commitment), and
    // it must show the new device some hello before the new device reveals its nonce. Each
    // side's code is then a hash of values the server did not control when it chose its
    // own; over many tries the two codes never agree.
    let identity = IdentityKey::generate();
    let mut agreed = 0;
    for _ in 0..2000 {
        let real = OfferSecret::new(device("new", 2));
        let ghost = OfferSecret::new(device("new", 66));
        let ghost_commitment = ghost.commitment("bob");
        let hello = HelloSecret::new(device("old", 1), identity.public());
        // What the new device shows: its real offer against a hello the server made up.
        let fake_hello = HelloSecret::new(device("old", 1), IdentityKey::generate().public());
        let shown_to_user = verification_code("bob", &real.offer, &fake_hello.hello);
        if hello
            .complete(
                "bob",
                &ghost_commitment,
                &ghost.offer,
                &shown_to_user,
                &identity,
            )
            .is_ok()
        {
            agreed += 1;
        }
    }
    assert_eq!(agreed, 0);
}

#[test]
fn safety_numbers_are_symmetric_stable_and_change_with_the_identity() {
    let (alice, bob) = (IdentityKey::generate(), IdentityKey::generate());
    let n = safety_number(("alice", &alice.public()), ("bob", &bob.public()));
    assert_eq!(
        n,
        safety_number(("bob", &bob.public()), ("alice", &alice.public()))
    );
    assert_eq!(n.split(' ').count(), 12);
    assert!(n
        .split(' ')
        .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    let reset = IdentityKey::generate();
    assert_ne!(
        n,
        safety_number(("alice", &alice.public()), ("bob", &reset.public()))
    );
    // The name is bound too.
    assert_ne!(
        user_digits("bob", &bob.public()),
        user_digits("bobby", &bob.public())
    );
}
