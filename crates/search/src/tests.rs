use vellum_record::{AttachedFile, Member, Record, RecordKind, FORMAT_VERSION};

use super::*;

fn record(chat: &str, seq: u64, sender: &str, to: &[&str], text: &str) -> Record {
    Record {
        version: FORMAT_VERSION,
        chat_id: chat.into(),
        chat_title: Some(format!("{chat}-title")),
        seq,
        kind: RecordKind::Message,
        message_id: Some(format!("m{seq}")),
        sender_user: sender.into(),
        sender_device: format!("{sender}-1"),
        recipients: to
            .iter()
            .map(|u| Member {
                user: (*u).into(),
                device_id: format!("{u}-1"),
            })
            .collect(),
        sent_at: seq as i64 * 1000,
        received_at: seq as i64 * 1000,
        text: Some(text.into()),
        expire_secs: None,
        burn_secs: None,
        log_hash: None,
        salt: None,
        reply_to: None,
        mentions: Vec::new(),
        target: None,
        remove: false,
    }
}

/// Leaves 0..: alice, bob and carol in `ops`, alice and dave in `field`.
fn corpus() -> SearchIndex {
    let mut index = SearchIndex::new().unwrap();
    let records = [
        record(
            "ops",
            1,
            "alice",
            &["bob", "carol"],
            "The north gate is open",
        ),
        record(
            "ops",
            2,
            "bob",
            &["alice", "carol"],
            "gate north side closed",
        ),
        record(
            "field",
            3,
            "alice",
            &["dave"],
            "Gatekeeper reports at 10:30",
        ),
        record(
            "ops",
            4,
            "carol",
            &["alice", "bob"],
            "lunch? don't forget the GATE code",
        ),
        record("field", 5, "dave", &["alice"], "nothing to report"),
        record(
            "ops",
            6,
            "alice",
            &["bob", "carol"],
            "the south gate is open",
        ),
    ];
    for (leaf, r) in records.iter().enumerate() {
        index.add(leaf as u64, r).unwrap();
    }
    index
}

fn find(index: &mut SearchIndex, query: &str) -> Vec<u64> {
    index
        .search(query, &Filters::default(), 0, 100)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .leaves
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn issue_11_words_are_all_required_and_case_insensitive_phrases_keep_order() {
    let mut index = corpus();
    assert_eq!(find(&mut index, "gate"), vec![0, 1, 3, 5]);
    assert_eq!(find(&mut index, "GATE Open"), vec![0, 5]);
    // Both words, any order; the phrase only in order.
    assert_eq!(find(&mut index, "north gate"), vec![0, 1]);
    assert_eq!(find(&mut index, "\"north gate\""), vec![0]);
    assert_eq!(find(&mut index, "\"gate north\""), vec![1]);
    // Punctuation a user types is part of the words, not of the syntax.
    assert_eq!(find(&mut index, "10:30"), vec![2]);
    assert_eq!(find(&mut index, "don't"), vec![3]);
    assert_eq!(find(&mut index, "lunch?"), vec![3]);
}

#[test]
fn issue_11_boolean_operators_and_must_and_must_not() {
    let mut index = corpus();
    assert_eq!(find(&mut index, "north OR report"), vec![0, 1, 4]);
    assert_eq!(find(&mut index, "gate AND open"), vec![0, 5]);
    assert_eq!(find(&mut index, "gate NOT north"), vec![3, 5]);
    assert_eq!(find(&mut index, "gate -open"), vec![1, 3]);
    assert_eq!(find(&mut index, "+gate +south"), vec![5]);
    assert_eq!(find(&mut index, "(north OR south) AND open"), vec![0, 5]);
    assert_eq!(find(&mut index, "-gate"), vec![2, 4]);
}

#[test]
fn issue_11_prefix_matches_word_starts_only() {
    let mut index = corpus();
    assert_eq!(find(&mut index, "gate*"), vec![0, 1, 2, 3, 5]);
    assert_eq!(find(&mut index, "Gatek*"), vec![2]);
    assert_eq!(find(&mut index, "repo*"), vec![2, 4]);
    // Not a substring search: "ate" starts no word.
    assert!(find(&mut index, "ate*").is_empty());
    // A phrase ending in a prefix.
    assert_eq!(find(&mut index, "\"north g\"*"), vec![0]);
    // No regex can be written: the slashes are text.
    assert!(find(&mut index, "/g.*/").is_empty());
}

#[test]
fn issue_11_malformed_queries_are_refused_without_echoing_them() {
    let mut index = corpus();
    for bad in ["\"north gate", "(north", "north AND", "\"secretword\"*"] {
        let err = index.search(bad, &Filters::default(), 0, 10).unwrap_err();
        assert!(matches!(err, Error::BadQuery(_)), "{bad}: {err}");
        assert!(!err.to_string().contains("secretword"), "{err}");
    }
    let long = "a ".repeat(MAX_QUERY_CHARS);
    assert!(matches!(
        index.search(&long, &Filters::default(), 0, 10),
        Err(Error::BadQuery(_))
    ));
}

#[test]
fn issue_11_participants_must_all_have_taken_part() {
    let mut index = corpus();
    let search = |index: &mut SearchIndex, q: &str, who: &[&str]| {
        let who = strings(who);
        let filters = Filters {
            participants: &who,
            ..Filters::default()
        };
        index.search(q, &filters, 0, 100).map(|f| f.leaves)
    };
    assert_eq!(search(&mut index, "", &["dave"]).unwrap(), vec![2, 4]);
    assert_eq!(
        search(&mut index, "", &["alice", "dave"]).unwrap(),
        vec![2, 4]
    );
    assert!(search(&mut index, "", &["bob", "dave"]).unwrap().is_empty());
    assert_eq!(
        search(&mut index, "gate", &["alice", "bob"]).unwrap(),
        vec![0, 1, 3, 5]
    );
    // A user no record names is refused, never an empty answer.
    match search(&mut index, "gate", &["alice", "mallory"]) {
        Err(Error::UnknownUser(u)) => assert_eq!(u, "mallory"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn issue_11_chats_by_id_or_title_any_of_them_unknown_refused() {
    let mut index = corpus();
    let search = |index: &mut SearchIndex, chats: &[&str]| {
        let chats = strings(chats);
        let filters = Filters {
            chats: &chats,
            ..Filters::default()
        };
        index.search("", &filters, 0, 100).map(|f| f.leaves)
    };
    assert_eq!(search(&mut index, &["field"]).unwrap(), vec![2, 4]);
    assert_eq!(search(&mut index, &["field-title"]).unwrap(), vec![2, 4]);
    assert_eq!(
        search(&mut index, &["field", "ops-title"]).unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );
    match search(&mut index, &["ops", "nowhere"]) {
        Err(Error::UnknownChat(c)) => assert_eq!(c, "nowhere"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn issue_11_kinds_and_receipt_time_bounds_filter() {
    let mut index = corpus();
    let mut title = record("ops", 7, "alice", &["bob"], "gate committee");
    title.kind = RecordKind::Title;
    index.add(6, &title).unwrap();
    let mut file = record("ops", 8, "bob", &["alice"], "");
    file.text = None;
    file.kind = RecordKind::Attachment(Box::new(AttachedFile {
        blob: "b".into(),
        name: "gate-plan.pdf".into(),
        mime: "application/pdf".into(),
        size: 3,
        sha256: "00".repeat(32),
        content: "AAAA".into(),
        part: 0,
        parts: 2,
    }));
    index.add(7, &file).unwrap();
    // The file's second part is a record too, but its name is found once.
    let RecordKind::Attachment(part) = &mut file.kind else {
        unreachable!()
    };
    part.part = 1;
    file.seq = 9;
    index.add(8, &file).unwrap();

    let kinds = strings(&["title", "attachment"]);
    let filters = Filters {
        kinds: &kinds,
        ..Filters::default()
    };
    assert_eq!(
        index.search("gate", &filters, 0, 10).unwrap().leaves,
        vec![6, 7]
    );
    assert_eq!(find(&mut index, "plan"), vec![7]);
    let bad = strings(&["email"]);
    let filters = Filters {
        kinds: &bad,
        ..Filters::default()
    };
    assert!(matches!(
        index.search("", &filters, 0, 10),
        Err(Error::BadQuery(m)) if m.contains("email")
    ));
    // Receipt times are seq * 1000: bounds are inclusive.
    let filters = Filters {
        from: Some(2000),
        to: Some(4000),
        ..Filters::default()
    };
    assert_eq!(
        index.search("gate", &filters, 0, 10).unwrap().leaves,
        vec![1, 3]
    );
    let filters = Filters {
        from: Some(4001),
        ..Filters::default()
    };
    assert_eq!(
        index.search("gate", &filters, 0, 10).unwrap().leaves,
        vec![5, 6, 7]
    );
}

#[test]
fn issue_11_pages_count_every_match_and_context_stays_in_the_chat() {
    let mut index = corpus();
    let found = index.search("gate", &Filters::default(), 1, 2).unwrap();
    assert_eq!(
        found,
        Found {
            total: 4,
            leaves: vec![1, 3]
        }
    );
    let counted = index.search("gate", &Filters::default(), 0, 0).unwrap();
    assert_eq!(
        counted,
        Found {
            total: 4,
            leaves: vec![]
        }
    );
    // ops holds leaves 0, 1, 3, 5; field 2, 4.
    assert_eq!(index.context(3, "ops", 1), vec![1, 5]);
    assert_eq!(index.context(3, "ops", 5), vec![0, 1, 5]);
    assert_eq!(index.context(2, "field", 2), vec![4]);
    assert!(index.context(3, "ops", 0).is_empty());
}

#[test]
fn issue_11_a_removed_record_is_gone_from_hits_and_context() {
    let mut index = corpus();
    assert_eq!(find(&mut index, "north"), vec![0, 1]);
    index.remove(1, "ops");
    assert_eq!(find(&mut index, "north"), vec![0]);
    assert_eq!(index.context(3, "ops", 1), vec![0, 5]);
    assert_eq!(index.len(), 5);
    // Added after a removal, searchable at once.
    index
        .add(9, &record("ops", 10, "bob", &["alice"], "north again"))
        .unwrap();
    assert_eq!(find(&mut index, "north"), vec![0, 9]);
}

#[test]
fn issue_11_catch_up_out_of_order_keeps_log_order() {
    let mut index = SearchIndex::new().unwrap();
    // Ingest adds leaf 10 while catch-up is still at the older leaves.
    index
        .add(10, &record("ops", 10, "a", &["b"], "gate ten"))
        .unwrap();
    index
        .add(2, &record("ops", 2, "a", &["b"], "gate two"))
        .unwrap();
    index
        .add(5, &record("ops", 5, "a", &["b"], "gate five"))
        .unwrap();
    assert_eq!(find(&mut index, "gate"), vec![2, 5, 10]);
    assert_eq!(index.context(5, "ops", 1), vec![2, 10]);
}

#[test]
fn rewrite_escapes_what_the_language_does_not_have() {
    assert_eq!(rewrite("gat*"), "text:/gat.*/");
    assert_eq!(rewrite("GAT*"), "text:/gat.*/");
    assert_eq!(rewrite("a:b"), "a\\:b");
    assert_eq!(rewrite("\"a:b\" -c"), "\"a:b\" -c");
    assert_eq!(rewrite("(x OR y)"), "(x OR y)");
    assert_eq!(rewrite("/re/"), "\\/re\\/");
}
