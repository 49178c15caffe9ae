use vellum_archive::Archive;
use vellum_record::{Member, RecordKind, FORMAT_VERSION};
use vellum_records::{Generated, UnsealProgress, Unsealer};

use super::*;
use crate::actor::ArchiveHandle;
use crate::sink::OwedReceipts;

/// Unix ms of an RFC 3339 time.
fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn keys() -> Generated {
    vellum_records::generate(3, 2, "records.test/vellum").unwrap()
}

/// A sealed vault over a new archive in `dir`, in New York's time zone.
fn vault(dir: &std::path::Path, keys: &Generated) -> Vault {
    let signer = vellum_tlog::NoteSigner::new("test.example/log", &[5; 32]).unwrap();
    let mut vault = Vault::sealed(
        Archive::open(dir, signer).unwrap(),
        keys.public.clone(),
        OwedReceipts::in_memory(),
    )
    .unwrap();
    vault.search.time_zone = TimeZone::get("America/New_York").unwrap();
    vault
}

fn unseal(v: &mut Vault, keys: &Generated) {
    let mut unsealer = Unsealer::new(keys.public.clone());
    unsealer.add(&keys.shares[0]).unwrap();
    let UnsealProgress::Unsealed(secret) = unsealer.add(&keys.shares[1]).unwrap() else {
        panic!("two shares unseal")
    };
    v.secret = Some(secret);
}

fn record(chat: &str, seq: u64, sender: &str, to: &[&str], received_at: i64, text: &str) -> Record {
    Record {
        version: FORMAT_VERSION,
        chat_id: chat.into(),
        chat_title: Some(format!("{chat} room")),
        seq,
        kind: RecordKind::Message,
        message_id: Some(format!("{chat}-{seq}")),
        sender_user: sender.into(),
        sender_device: format!("{sender}-1"),
        recipients: to
            .iter()
            .map(|u| Member {
                user: (*u).into(),
                device_id: format!("{u}-1"),
            })
            .collect(),
        sent_at: received_at,
        received_at,
        text: Some(text.into()),
        expire_secs: None,
        burn_secs: None,
        log_hash: Some(format!("{seq:064x}")),
        salt: None,
        reply_to: None,
        mentions: Vec::new(),
        target: None,
        remove: false,
    }
}

fn archive(v: &mut Vault, r: Record) {
    crate::sink::archive(v, r).unwrap();
}

/// Unseals and finishes catch-up, as the actor does between jobs.
fn unseal_and_index(v: &mut Vault, keys: &Generated) {
    unseal(v, keys);
    follow_seal(v);
    while catch_up(v) {}
}

fn leaves(v: &mut Vault, req: SearchRequest) -> Vec<u64> {
    run(v, &req)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.leaf)
        .collect()
}

fn query(q: &str) -> SearchRequest {
    SearchRequest {
        q: q.into(),
        ..SearchRequest::default()
    }
}

#[test]
fn issue_11_plain_dates_are_office_days_across_a_dst_change_and_offsets_are_any() {
    let ny = TimeZone::get("America/New_York").unwrap();
    let bounds = |from: &str, to: &str| {
        let req = SearchRequest {
            from: Some(from.into()),
            to: Some(to.into()),
            ..SearchRequest::default()
        };
        time_bounds(&req, &ny)
    };
    // 1 November 2026: clocks go back at 2:00, a day of 25 hours (EDT, then EST).
    assert_eq!(
        bounds("2026-11-01", "2026-11-01").unwrap(),
        (
            Some(ms("2026-11-01T04:00:00Z")),
            Some(ms("2026-11-02T05:00:00Z") - 1)
        )
    );
    // 8 March 2026: clocks go forward, a day of 23 hours.
    assert_eq!(
        bounds("2026-03-08", "2026-03-08").unwrap(),
        (
            Some(ms("2026-03-08T05:00:00Z")),
            Some(ms("2026-03-09T04:00:00Z") - 1)
        )
    );
    // Any offset, Z, or a local time of the office.
    assert_eq!(
        bounds("2026-11-03T09:00:00-05:00", "2026-11-03T19:00:00.250Z").unwrap(),
        (
            Some(ms("2026-11-03T14:00:00Z")),
            Some(ms("2026-11-03T19:00:00.250Z"))
        )
    );
    assert_eq!(
        bounds("2026-11-03T09:00:00", "2026-11-04").unwrap().0,
        Some(ms("2026-11-03T14:00:00Z"))
    );
    for (from, to, says) in [
        ("yesterday", "2026-11-01", "RFC 3339"),
        ("2026-11-31", "2026-12-01", "2026-11-31"),
        ("2026-11-02", "2026-11-01", "ends before it begins"),
        (
            "2026-11-01T10:00:00Z",
            "2026-11-01T09:59:59Z",
            "ends before it begins",
        ),
    ] {
        match bounds(from, to) {
            Err(SearchError::BadQuery(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{from}..{to}: {other:?}"),
        }
    }
}

#[test]
fn issue_11_date_filters_use_the_servers_receipt_in_the_office_day() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    // The 25th hour of 1 November (23:30 EST), and just after midnight on the 2nd.
    archive(
        &mut v,
        record(
            "ops",
            1,
            "alice",
            &["bob"],
            ms("2026-11-01T04:00:00Z"),
            "gate first",
        ),
    );
    archive(
        &mut v,
        record(
            "ops",
            2,
            "alice",
            &["bob"],
            ms("2026-11-02T04:30:00Z"),
            "gate late",
        ),
    );
    archive(
        &mut v,
        record(
            "ops",
            3,
            "alice",
            &["bob"],
            ms("2026-11-02T05:00:00Z"),
            "gate next",
        ),
    );
    // Issue 8: a sender who backdated a message does not hide it from a date search.
    let mut backdated = record(
        "ops",
        4,
        "bob",
        &["alice"],
        ms("2026-11-01T12:00:00Z"),
        "gate back",
    );
    backdated.sent_at = ms("2026-10-01T12:00:00Z");
    archive(&mut v, backdated);
    unseal_and_index(&mut v, &keys);
    let day = |v: &mut Vault, from: &str, to: &str| {
        leaves(
            v,
            SearchRequest {
                q: "gate".into(),
                from: Some(from.into()),
                to: Some(to.into()),
                ..SearchRequest::default()
            },
        )
    };
    assert_eq!(day(&mut v, "2026-11-01", "2026-11-01"), vec![0, 1, 3]);
    assert_eq!(day(&mut v, "2026-11-02", "2026-11-30"), vec![2]);
    assert!(day(&mut v, "2026-10-01", "2026-10-31").is_empty());
    assert_eq!(
        day(
            &mut v,
            "2026-11-01T23:30:00-05:00",
            "2026-11-02T00:00:00-05:00"
        ),
        vec![1, 2]
    );
}

#[test]
fn issue_11_between_two_people_context_pages_and_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    let t = ms("2026-11-05T15:00:00Z");
    archive(
        &mut v,
        record("ops", 1, "alice", &["bob"], t, "meet at the gate"),
    );
    archive(
        &mut v,
        record("ops", 2, "bob", &["alice"], t + 1, "which gate"),
    );
    archive(&mut v, record("ops", 3, "alice", &["bob"], t + 2, "north"));
    archive(
        &mut v,
        record("lobby", 1, "alice", &["carol"], t + 3, "gate closed"),
    );
    archive(&mut v, record("ops", 4, "bob", &["alice"], t + 4, "ok"));
    unseal_and_index(&mut v, &keys);
    let between = SearchRequest {
        q: "gate".into(),
        participants: vec!["alice".into(), "bob".into()],
        context: 1,
        ..SearchRequest::default()
    };
    let results = run(&mut v, &between).unwrap();
    assert_eq!(results.total, 2);
    let second = &results.hits[1];
    assert_eq!(second.record.text.as_deref(), Some("which gate"));
    // Its chat's records around it, never the other chat's leaf 3.
    let around: Vec<u64> = second.context.iter().map(|c| c.leaf).collect();
    assert_eq!(around, vec![0, 2]);
    let page = run(
        &mut v,
        &SearchRequest {
            limit: Some(1),
            offset: 1,
            ..between.clone()
        },
    )
    .unwrap();
    assert_eq!((page.total, page.hits[0].leaf), (2, 1));
    // By title, any of several chats.
    let by_title = SearchRequest {
        chats: vec!["lobby room".into()],
        ..query("gate")
    };
    assert_eq!(leaves(&mut v, by_title), vec![3]);
    for (req, refused) in [
        (
            SearchRequest {
                participants: vec!["alice".into(), "alice,bob".into()],
                ..query("gate")
            },
            "alice,bob",
        ),
        (
            SearchRequest {
                chats: vec!["ops".into(), "nowhere".into()],
                ..query("gate")
            },
            "nowhere",
        ),
    ] {
        let err = run(&mut v, &req).unwrap_err();
        assert!(
            matches!(
                err,
                SearchError::UnknownUser(_) | SearchError::UnknownChat(_)
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(refused), "{err}");
    }
    for req in [
        SearchRequest {
            limit: Some(MAX_LIMIT + 1),
            ..query("gate")
        },
        SearchRequest {
            context: MAX_CONTEXT + 1,
            ..query("gate")
        },
        // An offset the index would reserve a slot for each hit up to: refused, not an
        // allocation the archiver dies of (the attack review's 4,000,000,000).
        SearchRequest {
            offset: 4_000_000_000,
            limit: Some(MAX_LIMIT),
            ..query("gate")
        },
        query("\"gate"),
        SearchRequest {
            kinds: vec!["mail".into()],
            ..query("gate")
        },
    ] {
        assert!(
            matches!(run(&mut v, &req), Err(SearchError::BadQuery(_))),
            "{req:?}"
        );
    }
}

#[test]
fn issue_11_catch_up_then_each_new_record_is_searchable_as_archived() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    let t = ms("2026-11-05T15:00:00Z");
    for seq in 1..=3 {
        archive(
            &mut v,
            record("ops", seq, "alice", &["bob"], t, "archived while sealed"),
        );
    }
    unseal(&mut v, &keys);
    follow_seal(&mut v);
    assert_eq!(
        progress(&v),
        Some(IndexProgress {
            indexed: 0,
            total: 3
        })
    );
    assert!(catch_up(&mut v));
    assert_eq!(
        progress(&v),
        Some(IndexProgress {
            indexed: 3,
            total: 3
        })
    );
    assert!(!catch_up(&mut v));
    archive(
        &mut v,
        record("ops", 4, "bob", &["alice"], t, "archived while unsealed"),
    );
    assert_eq!(leaves(&mut v, query("sealed")), vec![0, 1, 2]);
    assert_eq!(leaves(&mut v, query("unsealed")), vec![3]);
    assert_eq!(
        progress(&v),
        Some(IndexProgress {
            indexed: 4,
            total: 4
        })
    );
}

#[test]
fn issue_11_a_disposed_record_leaves_the_index_and_seal_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    let t = ms("2026-11-05T15:00:00Z");
    archive(
        &mut v,
        record("ops", 1, "alice", &["bob"], t, "disposed while sealed"),
    );
    archive(
        &mut v,
        record("ops", 2, "alice", &["bob"], t, "disposed while unsealed"),
    );
    archive(&mut v, record("ops", 3, "alice", &["bob"], t, "kept"));
    v.archive.dispose(0, "short", t).unwrap();
    unseal_and_index(&mut v, &keys);
    assert_eq!(leaves(&mut v, query("disposed")), vec![1]);
    v.archive.dispose(1, "short", t).unwrap();
    disposed(&mut v, 1, "ops");
    assert!(leaves(&mut v, query("disposed")).is_empty());
    assert_eq!(
        progress(&v),
        Some(IndexProgress {
            indexed: 1,
            total: 1
        })
    );
    // Sealed: the index is gone, not merely refused.
    v.secret = None;
    follow_seal(&mut v);
    assert!(!v.search.has_index());
    assert_eq!(progress(&v), None);
    assert!(matches!(
        run(&mut v, &query("kept")),
        Err(SearchError::Sealed)
    ));
    // A malformed request is refused as such even while sealed.
    let bad = SearchRequest {
        from: Some("last tuesday".into()),
        ..query("kept")
    };
    assert!(matches!(run(&mut v, &bad), Err(SearchError::BadQuery(_))));
}

#[test]
fn issue_11_the_actor_catches_up_in_batches_between_jobs_and_drops_the_index_at_seal() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    let t = ms("2026-11-05T15:00:00Z");
    let backlog = BATCH as u64 * 2 + 10;
    for seq in 1..=backlog {
        let text = if seq % 2 == 0 {
            "even gate"
        } else {
            "odd gate"
        };
        archive(&mut v, record("ops", seq, "alice", &["bob"], t, text));
    }
    let handle = ArchiveHandle::spawn(v).unwrap();
    let secret = {
        let mut unsealer = Unsealer::new(keys.public.clone());
        unsealer.add(&keys.shares[0]).unwrap();
        match unsealer.add(&keys.shares[2]).unwrap() {
            UnsealProgress::Unsealed(secret) => secret,
            UnsealProgress::NeedMore { .. } => panic!("two shares unseal"),
        }
    };
    handle
        .call_blocking(move |v| v.secret = Some(secret))
        .unwrap();
    // The index exists from the job after the unseal on, with the whole backlog to do.
    let started = handle
        .call_blocking(|v| progress(v).map(|p| p.total))
        .unwrap();
    assert_eq!(started, Some(backlog));
    let found = handle
        .call_blocking(|v| run(v, &query("even")).map(|r| r.total))
        .unwrap()
        .unwrap();
    assert_eq!(found, backlog / 2);
    handle.call_blocking(|v| v.secret = None).unwrap();
    assert!(!handle.call_blocking(|v| v.search.has_index()).unwrap());
}

#[test]
fn issue_11_a_search_during_a_long_catch_up_answers_with_the_progress() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let mut v = vault(dir.path(), &keys);
    let t = ms("2026-11-05T15:00:00Z");
    let backlog = BATCH as u64 + 44;
    for seq in 1..=backlog {
        archive(&mut v, record("ops", seq, "alice", &["bob"], t, "gate"));
    }
    unseal(&mut v, &keys);
    // No time to wait: one batch is done, and the answer says how far the index is.
    match run_waiting(&mut v, &query("gate"), Duration::ZERO) {
        Err(e @ SearchError::Indexing { .. }) => {
            assert!(
                matches!(e, SearchError::Indexing { indexed, total } if indexed == BATCH as u64 && total == backlog),
                "{e:?}"
            );
            let api: ApiError = e.into();
            assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    // Time enough: it finishes the catch-up and answers.
    let found = run_waiting(&mut v, &query("gate"), SEARCH_WAITS).unwrap();
    assert_eq!(found.total, backlog);
}

#[test]
fn issue_11_the_audit_digest_of_a_search_needs_the_records_key() {
    // The attack review recovered every query from unsalted SHA-256 digests in the public
    // log by trying a dictionary; the digest is now keyed by the records key.
    let dir = tempfile::tempdir().unwrap();
    let generated = keys();
    let mut v = vault(dir.path(), &generated);
    assert_eq!(
        query_digest(&v, &query("gate")),
        None,
        "no search runs sealed"
    );
    unseal(&mut v, &generated);
    let gate = query_digest(&v, &query("gate")).unwrap();
    assert_eq!(gate.len(), 32);
    assert_eq!(
        query_digest(&v, &query("gate")).unwrap(),
        gate,
        "equal searches match"
    );
    assert_ne!(query_digest(&v, &query("zulu")).unwrap(), gate);
    let unkeyed = hex::encode(
        &<sha2::Sha256 as sha2::Digest>::digest(serde_json::to_vec(&query("gate")).unwrap())[..16],
    );
    assert_ne!(gate, unkeyed, "a dictionary of words does not find it");
    let other = keys();
    let other_dir = tempfile::tempdir().unwrap();
    let mut w = vault(other_dir.path(), &other);
    unseal(&mut w, &other);
    assert_ne!(query_digest(&w, &query("gate")).unwrap(), gate);
}
