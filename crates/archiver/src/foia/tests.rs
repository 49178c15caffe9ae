use vellum_archive::{Archive, Leaf};
use vellum_production::{RedactableField, TextRedaction, Treatment};
use vellum_record::api::foia::{
    CaseStatus, CreateCase, Exemption, Mark, MetadataField, RedactionTarget, UpdateCase,
};
use vellum_record::api::office::Role;
use vellum_record::{AttachedFile, Member, Record, RecordKind, FORMAT_VERSION};
use vellum_records::{UnsealProgress, Unsealer};

use super::*;
use crate::office::Office;
use crate::OwedReceipts;

const DESCRIPTION: &str = "every message about the zanzibar procurement";

fn record(chat: &str, seq: u64, sender: &str, to: &[&str], text: &str) -> Record {
    Record {
        version: FORMAT_VERSION,
        chat_id: chat.into(),
        chat_title: Some(format!("title of {chat}")),
        seq,
        kind: RecordKind::Message,
        message_id: Some(format!("m{seq}")),
        sender_user: sender.into(),
        sender_device: format!("{sender}-phone"),
        recipients: to
            .iter()
            .map(|u| Member {
                user: (*u).into(),
                device_id: format!("{u}-phone"),
            })
            .collect(),
        sent_at: 1_700_000_000_000 + seq as i64,
        received_at: 1_700_000_000_000 + seq as i64,
        text: Some(text.into()),
        expire_secs: None,
        burn_secs: None,
        log_hash: None,
        salt: Some("00".repeat(16)),
        reply_to: None,
        mentions: Vec::new(),
        target: None,
        remove: false,
    }
}

struct Fixture {
    vault: Vault,
    /// Leaves: 0 an access leaf, 1..=4 records.
    leaves: Vec<u64>,
    _dir: tempfile::TempDir,
}

fn append(vault: &mut Vault, event: &Record) -> u64 {
    let reference = event.reference();
    let sealed =
        vellum_records::seal(&vault.public_key, reference.as_bytes(), &event.encode()).unwrap();
    vault
        .archive
        .append_record(&reference, event.received_at, &sealed, event.commitments())
        .unwrap()
        .index
}

/// An unsealed vault with an office on disk and four records: two chats, text with
/// characters outside ASCII, an attachment.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let signer = vellum_tlog::NoteSigner::new("records.test/vellum", &[5; 32]).unwrap();
    let generated = vellum_records::generate(3, 2, "records.test/vellum").unwrap();
    let archive = Archive::open(&dir.path().join("archive"), signer).unwrap();
    let mut vault =
        Vault::sealed(archive, generated.public.clone(), OwedReceipts::in_memory()).unwrap();
    vault.office = Office::open(&dir.path().join("office.db")).unwrap();
    let mut unsealer = Unsealer::new(generated.public.clone());
    unsealer.add(&generated.shares[0]).unwrap();
    let UnsealProgress::Unsealed(secret) = unsealer.add(&generated.shares[1]).unwrap() else {
        panic!("two shares unseal");
    };
    vault.secret = Some(secret);
    vault
        .archive
        .append(Leaf::Access {
            time: 1,
            action: "test".into(),
            detail: "not a record".into(),
        })
        .unwrap();
    let mut attachment = record("c2", 3, "carol", &["alice"], "");
    attachment.kind = RecordKind::Attachment(Box::new(AttachedFile {
        blob: "b".into(),
        name: "budget.xlsx".into(),
        mime: "application/octet-stream".into(),
        size: 1,
        sha256: "00".into(),
        content: "AA==".into(),
        part: 0,
        parts: 1,
    }));
    attachment.text = None;
    let mut mention = record(
        "c1",
        2,
        "bob",
        &["alice"],
        "ask Bob or @carol — café ☕ gate",
    );
    mention.mentions = vec!["carol".into()];
    let leaves = vec![
        0,
        append(
            &mut vault,
            &record("c2", 1, "alice", &["carol"], "the gate code is 4412"),
        ),
        append(
            &mut vault,
            &record("c1", 1, "alice", &["bob"], "bob: north gate at noon"),
        ),
        append(&mut vault, &mention),
        append(&mut vault, &attachment),
    ];
    Fixture {
        vault,
        leaves,
        _dir: dir,
    }
}

fn analyst() -> Caller {
    Caller {
        name: "ana".into(),
        role: Role::Analyst,
    }
}

fn settings() -> OfficeSettings {
    OfficeSettings {
        time_zone: "UTC".into(),
        ..OfficeSettings::default()
    }
}

fn new_case(vault: &mut Vault, received: Option<&str>) -> Case {
    create(
        vault,
        &analyst(),
        &settings(),
        CreateCase {
            requester: "CREW".into(),
            description: DESCRIPTION.into(),
            received: received.map(String::from),
        },
    )
    .unwrap()
}

/// The stored (sealed) bytes of every case, to compare before and after a refused call.
fn stored(vault: &Vault) -> Vec<Vec<u8>> {
    let mut stmt = vault
        .office
        .conn()
        .prepare("SELECT sealed FROM cases ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn issue_11_a_case_is_created_counted_on_the_calendar_assigned_and_noted() {
    let mut f = fixture();
    let v = &mut f.vault;
    let case = new_case(v, Some("2026-11-20"));
    let year = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .year();
    assert_eq!(case.id, format!("FOIA-{year}-0001"));
    assert_eq!(
        (case.received.as_str(), case.due.as_str()),
        ("2026-11-20", "2026-12-21")
    );
    assert_eq!(case.status, CaseStatus::Open);
    assert_eq!(new_case(v, None).id, format!("FOIA-{year}-0002"));

    v.office.create("ana", Role::Analyst, "officer", 1).unwrap();
    v.office.create("aud", Role::Auditor, "officer", 1).unwrap();
    let updated = update(
        v,
        &analyst(),
        &case.id,
        UpdateCase {
            analyst: Some("ana".into()),
            due: Some("2027-01-15".into()),
            ..UpdateCase::default()
        },
    )
    .unwrap();
    assert_eq!(updated.analyst.as_deref(), Some("ana"));
    assert!(updated.due_overridden);
    let before = stored(v);
    for bad in [
        UpdateCase {
            analyst: Some("aud".into()),
            ..UpdateCase::default()
        },
        UpdateCase {
            analyst: Some("nobody".into()),
            ..UpdateCase::default()
        },
        UpdateCase {
            due: Some("2026-11-01".into()),
            ..UpdateCase::default()
        },
        UpdateCase {
            due: Some("next week".into()),
            ..UpdateCase::default()
        },
        UpdateCase::default(),
    ] {
        let e = update(v, &analyst(), &case.id, bad).unwrap_err();
        assert!(matches!(e, FoiaError::Invalid(_)), "{e}");
    }
    assert_eq!(stored(v), before, "a refused update changes nothing");

    let note = add_note(v, &analyst(), &case.id, "called the requester").unwrap();
    assert_eq!(note.author, "ana");
    assert!(matches!(
        add_note(v, &analyst(), &case.id, "   "),
        Err(FoiaError::Invalid(_))
    ));
    for bad in [
        CreateCase {
            requester: "".into(),
            description: "d".into(),
            received: None,
        },
        CreateCase {
            requester: "r".into(),
            description: "x".repeat(MAX_DESCRIPTION + 1),
            received: None,
        },
        CreateCase {
            requester: "r".into(),
            description: "d".into(),
            received: Some("2026-13-01".into()),
        },
        CreateCase {
            requester: "r".into(),
            description: "d".into(),
            received: Some("9999-01-01".into()),
        },
    ] {
        assert!(matches!(
            create(v, &analyst(), &settings(), bad),
            Err(FoiaError::Invalid(_))
        ));
    }
    assert_eq!(list(v, &analyst()).unwrap().len(), 2);

    // Numbers past 9999 keep counting (they sort before it as text), never reuse an id.
    let mut last = new_case(v, None);
    last.id = format!("FOIA-{year}-9999");
    let key = case_key(v).unwrap();
    v.office
        .conn()
        .execute(
            "INSERT INTO cases (id, created_at, updated_at, sealed) VALUES (?1, 0, 0, ?2)",
            params![last.id, seal_case(&key, &last)],
        )
        .unwrap();
    assert_eq!(new_case(v, None).id, format!("FOIA-{year}-10000"));
    assert_eq!(new_case(v, None).id, format!("FOIA-{year}-10001"));

    // A finished production marks the case produced (a closed one stays closed).
    produced(v, &case.id, "job", 1, Some(7)).unwrap();
    assert_eq!(load(v, &case.id).unwrap().status, CaseStatus::Produced);
    // The next production of the case continues the Bates numbers after page 7.
    assert_eq!(load(v, &case.id).unwrap().bates_next, Some(8));
    produced(v, &case.id, "job2", 1, Some(3)).unwrap();
    assert_eq!(
        load(v, &case.id).unwrap().bates_next,
        Some(8),
        "never goes back"
    );
}

#[test]
fn issue_11_the_review_set_takes_records_only_and_marks_who_reviewed() {
    let mut f = fixture();
    let l = f.leaves.clone();
    let v = &mut f.vault;
    let case = new_case(v, None);
    let added = add_leaves(v, &analyst(), &case.id, &[l[1], l[2], l[2]]).unwrap();
    assert_eq!((added.added, added.already), (vec![l[1], l[2]], 1));
    let before = stored(v);
    // An access leaf, a leaf past the end, an unknown case: refused, nothing changed.
    assert!(matches!(
        add_leaves(v, &analyst(), &case.id, &[l[3], l[0]]),
        Err(FoiaError::NoSuchRecord(0))
    ));
    assert!(matches!(
        add_leaves(v, &analyst(), &case.id, &[999]),
        Err(FoiaError::NoSuchRecord(999))
    ));
    assert!(matches!(
        add_leaves(v, &analyst(), "FOIA-1999-0001", &[l[1]]),
        Err(FoiaError::NoSuchCase(_))
    ));
    assert!(matches!(
        add_leaves(v, &analyst(), &case.id, &[]),
        Err(FoiaError::Invalid(_))
    ));
    assert!(matches!(
        review(v, &analyst(), &case.id, l[3], Mark::Responsive),
        Err(FoiaError::NotInCase { .. })
    ));
    assert_eq!(stored(v), before);

    let item = review(v, &analyst(), &case.id, l[1], Mark::Responsive).unwrap();
    assert_eq!(
        (item.mark, item.marked_by.as_deref()),
        (Mark::Responsive, Some("ana"))
    );
    review(v, &analyst(), &case.id, l[2], Mark::NotResponsive).unwrap();
    let detail = show(v, &analyst(), &case.id).unwrap();
    assert_eq!(detail.case.status, CaseStatus::InReview);
    assert_eq!(detail.records.len(), 2);
    assert_eq!(
        detail.records[0].record.text.as_deref(),
        Some("the gate code is 4412")
    );

    // Added by search (the one entry point search offers), then one removed.
    let found = add_search(
        v,
        &analyst(),
        &case.id,
        SearchRequest {
            q: "gate".into(),
            ..SearchRequest::default()
        },
    )
    .unwrap();
    assert_eq!(found.added, vec![l[3]], "{found:?}");
    remove_leaf(v, &analyst(), &case.id, l[3]).unwrap();
    assert!(matches!(
        remove_leaf(v, &analyst(), &case.id, l[3]),
        Err(FoiaError::NotInCase { .. })
    ));

    // Closed: no more changes, until reopened; its records may be disposed again.
    assert_eq!(leaves_in_open_cases(v).unwrap().get(&l[1]), Some(&case.id));
    update(
        v,
        &analyst(),
        &case.id,
        UpdateCase {
            status: Some(CaseStatus::Closed),
            ..UpdateCase::default()
        },
    )
    .unwrap();
    assert!(leaves_in_open_cases(v).unwrap().is_empty());
    assert!(matches!(
        review(v, &analyst(), &case.id, l[1], Mark::NotResponsive),
        Err(FoiaError::Closed(_))
    ));
    update(
        v,
        &analyst(),
        &case.id,
        UpdateCase {
            status: Some(CaseStatus::Open),
            ..UpdateCase::default()
        },
    )
    .unwrap();
    review(v, &analyst(), &case.id, l[1], Mark::NotResponsive).unwrap();
}

#[test]
fn issue_11_spans_are_unicode_scalar_values_within_the_text_and_merge() {
    let mut f = fixture();
    let l = f.leaves.clone();
    let v = &mut f.vault;
    let case = new_case(v, None);
    add_leaves(v, &analyst(), &case.id, &[l[3], l[4]]).unwrap();
    // "ask Bob or @carol — café ☕ gate": 31 characters, more bytes.
    let text = "ask Bob or @carol — café ☕ gate";
    let len = text.chars().count();
    assert!(text.len() > len);
    let span = |start, end| RedactionTarget::Span { start, end };
    let before = stored(v);
    for (target, leaf) in [
        (span(3, 3), l[3]),
        (span(5, 2), l[3]),
        (span(0, len + 1), l[3]),
        (span(0, 1), l[4]), // an attachment has no text
        (
            RedactionTarget::Field {
                field: MetadataField::AttachmentName,
            },
            l[3],
        ),
        (
            RedactionTarget::Participant {
                user: "mallory".into(),
            },
            l[3],
        ),
    ] {
        let e = redact(v, &analyst(), &case.id, leaf, Exemption::B6, target.clone()).unwrap_err();
        assert!(matches!(e, FoiaError::Invalid(_)), "{target:?}: {e}");
    }
    assert_eq!(stored(v), before, "refused redactions change nothing");

    let cafe = redact(v, &analyst(), &case.id, l[3], Exemption::B5, span(20, 24)).unwrap();
    assert_eq!(cafe.target, span(20, 24));
    // Overlapping, same exemption: merged into one.
    let merged = redact(v, &analyst(), &case.id, l[3], Exemption::B5, span(22, len)).unwrap();
    assert_eq!(merged.target, span(20, len));
    // Overlapping under another exemption: refused.
    let e = redact(v, &analyst(), &case.id, l[3], Exemption::B6, span(0, 21)).unwrap_err();
    assert!(matches!(e, FoiaError::Conflict(_)), "{e}");
    let detail = show(v, &analyst(), &case.id).unwrap();
    let item = detail.case.items.iter().find(|i| i.leaf == l[3]).unwrap();
    assert_eq!(item.redactions.len(), 1);
    let record = open_record(v, l[3]).unwrap();
    let Treatment::Release { text: spans, .. } = treatment(&detail.case, item, &record) else {
        panic!("released");
    };
    let redacted: String = text.chars().skip(20).collect();
    assert_eq!(redacted, "café ☕ gate");
    assert_eq!(
        spans,
        vec![TextRedaction {
            start: 20,
            end: len,
            exemption: Exemption::B5
        }]
    );
    remove_redaction(v, &analyst(), &case.id, merged.id).unwrap();
    assert!(matches!(
        remove_redaction(v, &analyst(), &case.id, merged.id),
        Err(FoiaError::NoSuchRedaction { .. })
    ));
}

#[test]
fn issue_11_a_redacted_name_is_withheld_everywhere_it_appears() {
    let mut f = fixture();
    let l = f.leaves.clone();
    let v = &mut f.vault;
    let case = new_case(v, None);
    add_leaves(v, &analyst(), &case.id, &[l[1], l[2], l[3], l[4]]).unwrap();
    // bob, in one record: his name as recipient and in the text ("bob:"), not "bobcat".
    redact(
        v,
        &analyst(),
        &case.id,
        l[2],
        Exemption::B7C,
        RedactionTarget::Participant { user: "bob".into() },
    )
    .unwrap();
    // carol, throughout the case: sender, recipient, mention and "@carol".
    redact_name(v, &analyst(), &case.id, "carol", Exemption::B6).unwrap();
    assert!(matches!(
        redact_name(v, &analyst(), &case.id, "carol", Exemption::B6),
        Err(FoiaError::Conflict(_))
    ));
    // The title of one chat, and one record withheld whole.
    redact(
        v,
        &analyst(),
        &case.id,
        l[1],
        Exemption::B5,
        RedactionTarget::Field {
            field: MetadataField::ChatTitle,
        },
    )
    .unwrap();
    redact(
        v,
        &analyst(),
        &case.id,
        l[4],
        Exemption::B4,
        RedactionTarget::Whole,
    )
    .unwrap();
    for leaf in [l[1], l[2], l[3], l[4]] {
        review(v, &analyst(), &case.id, leaf, Mark::Responsive).unwrap();
    }
    let case = show(v, &analyst(), &case.id).unwrap().case;
    let of = |leaf: u64, v: &Vault| {
        let item = case.items.iter().find(|i| i.leaf == leaf).unwrap();
        treatment(&case, item, &open_record(v, leaf).unwrap())
    };
    let fields = |t: &Treatment| match t {
        Treatment::Release { fields, .. } => fields.iter().map(|f| f.field.clone()).collect(),
        Treatment::Withhold { .. } => Vec::new(),
    };
    let spans = |t: &Treatment| match t {
        Treatment::Release { text, .. } => text.iter().map(|s| (s.start, s.end)).collect(),
        Treatment::Withhold { .. } => Vec::new(),
    };
    // "bob: north gate at noon" (alice to bob).
    let bob = of(l[2], v);
    assert_eq!(
        fields(&bob),
        vec![RedactableField::Participant("bob".into())]
    );
    assert_eq!(spans(&bob), vec![(0, 3)]);
    // "ask Bob or @carol — café ☕ gate" (bob to alice, mentioning carol): the record-level
    // redaction of bob was on another record, so only carol's name goes here.
    let mention = of(l[3], v);
    assert_eq!(
        fields(&mention),
        vec![RedactableField::Participant("carol".into())]
    );
    assert_eq!(spans(&mention), vec![(12, 17)]);
    // "the gate code is 4412" (alice to carol, in c2): carol as recipient, and the title.
    let code = of(l[1], v);
    assert_eq!(
        fields(&code),
        vec![
            RedactableField::ChatTitle,
            RedactableField::Participant("carol".into())
        ]
    );
    assert_eq!(
        of(l[4], v),
        Treatment::Withhold {
            exemption: Exemption::B4
        }
    );
    // The production's selection: responsive only, by chat then log order.
    let (_, selection) = selection(v, &analyst(), &case.id).unwrap();
    let order: Vec<u64> = selection.iter().map(|s| s.leaf).collect();
    assert_eq!(order, vec![l[2], l[3], l[1], l[4]]);
    assert_eq!(
        selection[3].treatment,
        Treatment::Withhold {
            exemption: Exemption::B4
        }
    );
}

#[test]
fn issue_11_name_spans_are_whole_words_in_scalar_values() {
    assert_eq!(
        name_spans("Bob, bobcat and BOB.", "bob"),
        vec![(0, 3), (16, 19)]
    );
    assert_eq!(name_spans("☕bob☕", "bob"), vec![(1, 4)]);
    // `_` separates words: a file or handle named after the person holds the name.
    assert_eq!(name_spans("bob_smith", "bob"), vec![(0, 3)]);
    // A character whose lowercase is longer ('İ' is two) must not move the box off the name.
    assert_eq!(
        name_spans("İİİİİİİ carol knows the code", "carol"),
        vec![(8, 13)]
    );
    assert_eq!(name_spans("İstanbul CAROL", "carol"), vec![(9, 14)]);
    assert_eq!(name_spans("", "bob"), Vec::<(usize, usize)>::new());
}

#[test]
fn issue_11_case_documents_are_sealed_at_rest_and_closed_while_sealed() {
    let mut f = fixture();
    let v = &mut f.vault;
    let case = new_case(v, None);
    add_note(v, &analyst(), &case.id, "the zanzibar file is in room 12").unwrap();
    // What rests on disk: the office database and its WAL.
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(f._dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            on_disk.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!on_disk.is_empty());
    for word in ["zanzibar", "procurement", "CREW", "room 12"] {
        assert!(
            !on_disk.windows(word.len()).any(|w| w == word.as_bytes()),
            "{word:?} rests on disk in clear"
        );
    }
    let sealed = stored(v).remove(0);
    let key = case_key(v).unwrap();
    assert_eq!(
        open_case(&key, &case.id, &sealed).unwrap().requester,
        "CREW"
    );
    // Bound to its id; a flipped byte or another key does not open.
    assert!(matches!(
        open_case(&key, "FOIA-2026-9999", &sealed),
        Err(FoiaError::Corrupt(_))
    ));
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(open_case(&key, &case.id, &flipped).is_err());
    assert!(open_case(&[7; 32], &case.id, &sealed).is_err());

    // Sealed: no case can be read, listed or made.
    v.secret = None;
    assert!(matches!(
        show(v, &analyst(), &case.id),
        Err(FoiaError::Sealed)
    ));
    assert!(matches!(list(v, &analyst()), Err(FoiaError::Sealed)));
    assert!(matches!(
        create(
            v,
            &analyst(),
            &settings(),
            CreateCase {
                requester: "r".into(),
                description: "d".into(),
                received: None
            }
        ),
        Err(FoiaError::Sealed)
    ));
}

#[test]
fn issue_11_only_analysts_and_officers_work_on_cases() {
    let mut f = fixture();
    let v = &mut f.vault;
    let case = new_case(v, None);
    for role in [Role::Auditor, Role::Keyholder] {
        let caller = Caller {
            name: "someone".into(),
            role,
        };
        assert!(matches!(
            show(v, &caller, &case.id),
            Err(FoiaError::Forbidden(..))
        ));
        assert!(matches!(list(v, &caller), Err(FoiaError::Forbidden(..))));
        assert!(matches!(
            selection(v, &caller, &case.id),
            Err(FoiaError::Forbidden(..))
        ));
    }
    let officer = Caller {
        name: "officer".into(),
        role: Role::Officer,
    };
    assert_eq!(show(v, &officer, &case.id).unwrap().case.id, case.id);
}
