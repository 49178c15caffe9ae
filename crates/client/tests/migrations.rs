//! Device profiles written by Vellum 0.1.0 (tests/fixtures/v0.1.0, before numbered
//! migrations) open with today's client with every chat, message, key, MLS state and cursor
//! intact; newer or damaged profiles are refused.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;
use vellum_client::{Client, LocalStore, MessageKind};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

/// A copy of a fixture profile (`alice`, `bob`, `archiver/device`) as a fresh home.
fn copy_of(profile: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join(profile).join("vellum.db"),
        home.path().join("vellum.db"),
    )
    .unwrap();
    home
}

/// Every row of every table 0.1.0 wrote, as text, in the columns 0.1.0 had.
#[path = "../../../tests/fixtures/table_rows.rs"]
mod table_rows;
use table_rows::rows;

fn chat_id(name: &str) -> String {
    expected()["chats"][name]["id"].as_str().unwrap().to_owned()
}

/// Opens a copy of `profile` and checks it against what 0.1.0 left in it.
fn migrates_intact(profile: &str, chats: &[&str], with_history: bool) {
    let home = copy_of(profile);
    let db = home.path().join("vellum.db");
    let reference = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&db, reference.path()).unwrap();
    let before = rows(&db, &Connection::open(reference.path()).unwrap(), &[]);
    assert!(before
        .iter()
        .any(|(t, r)| t == "mls_groups" && r.len() == chats.len()));
    let cursors: Vec<(String, i64)> = Connection::open(&db)
        .unwrap()
        .prepare("SELECT group_id, last_seq FROM chats ORDER BY group_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    let store = LocalStore::open(home.path()).unwrap();
    assert_eq!(
        rows(&db, &Connection::open(reference.path()).unwrap(), &[]),
        before,
        "{profile}: every row as 0.1.0 wrote it"
    );
    let mut names: Vec<String> = store
        .chats()
        .unwrap()
        .iter()
        .map(|c| c.title.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, chats, "{profile}");
    for (group_id, last_seq) in &cursors {
        assert!(*last_seq > 0);
        assert_eq!(
            store.chat(group_id).unwrap().unwrap().last_seq,
            *last_seq as u64
        );
    }
    for m in expected()["messages"].as_array().unwrap() {
        let chat = m["chat"].as_str().unwrap();
        if !chats.contains(&chat) {
            continue;
        }
        let group = chat_id(chat);
        let found = store.message(&group, m["id"].as_str().unwrap()).unwrap();
        if with_history {
            // Decrypted with its own key from message_keys, as every read path does.
            let found = found.unwrap_or_else(|| panic!("{profile}: {m}"));
            assert_eq!(found.text, m["text"].as_str().unwrap());
            assert_eq!(found.sender_user, m["sender"].as_str().unwrap());
            assert_eq!(found.kind, MessageKind::Text);
            assert!(store.history(&group).unwrap().contains(&found));
        } else {
            assert!(found.is_none(), "the archiver keeps no history");
        }
    }
    drop(store);

    // The MLS state loads and verifies: the roster comes out of each group's stored state.
    let client = Client::open(home.path()).unwrap();
    for name in chats {
        let members = client.members(&chat_id(name)).unwrap();
        let users: Vec<&str> = members.iter().map(|m| m.user.as_str()).collect();
        assert!(
            users.contains(&"alice") && users.contains(&"bob"),
            "{profile} {name}: {users:?}"
        );
    }
}

#[test]
fn alices_v0_1_0_profile_migrates_intact() {
    migrates_intact("alice", &["casefile", "ops"], true);
}

#[test]
fn bobs_v0_1_0_profile_migrates_intact() {
    migrates_intact("bob", &["casefile", "ops"], true);
}

#[test]
fn the_archivers_v0_1_0_device_profile_migrates_intact() {
    migrates_intact("archiver/device", &["casefile"], false);
}

#[test]
fn a_profile_from_a_newer_version_is_refused_and_left_alone() {
    let home = copy_of("alice");
    drop(LocalStore::open(home.path()).unwrap());
    let db = home.path().join("vellum.db");
    let ours: i64 = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT MAX(version) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .unwrap();
    Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (?1, 'future', '2030-01-01T00:00:00Z', '1')",
            [ours + 1],
        )
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let err = LocalStore::open(home.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains(&format!("version {}", ours + 1)) && err.contains(&format!("version {ours}")),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing changed");
}

#[test]
fn a_damaged_profile_is_refused() {
    let home = copy_of("bob");
    let db = home.path().join("vellum.db");
    let (page, root) = {
        let conn = Connection::open(&db).unwrap();
        let page = conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'messages'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        (page as usize, root as usize)
    };
    let mut bytes = std::fs::read(&db).unwrap();
    let at = (root - 1) * page;
    bytes[at..at + page]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    std::fs::write(&db, &bytes).unwrap();
    let err = LocalStore::open(home.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "nothing written");
}

/// Issue 9: the event rows 0.1.0 wrote (before typed events, V6) read back as notices of
/// their sentence, and text messages carry no event.
#[test]
fn issue_9_events_from_before_typed_events_read_as_notices() {
    let home = copy_of("alice");
    let store = LocalStore::open(home.path()).unwrap();
    let mut events = 0;
    for chat in store.chats().unwrap() {
        for m in store.history(&chat.group_id).unwrap() {
            match m.kind {
                MessageKind::Text => assert_eq!(m.event, None),
                MessageKind::Event => {
                    events += 1;
                    assert!(!m.text.is_empty());
                    assert_eq!(
                        m.event,
                        Some(vellum_client::ChatEvent::Notice {
                            text: m.text.clone()
                        })
                    );
                }
                other => panic!("history holds only messages and events, not {other:?}"),
            }
        }
    }
    assert_eq!(events, 3, "every event row 0.1.0 wrote");
}

/// Issue 13: a profile from before server lists holds the one URL it enrolled with; it
/// reads as a list of one, and the row as it was written stays.
#[test]
fn issue_13_a_profile_with_one_server_url_reads_it_as_a_list_of_one() {
    let home = copy_of("alice");
    let written: Vec<u8> = Connection::open(home.path().join("vellum.db"))
        .unwrap()
        .query_row("SELECT value FROM profile WHERE key = 'server'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let written = String::from_utf8(written).unwrap();
    assert!(written.starts_with("http://"), "{written}");
    let store = LocalStore::open(home.path()).unwrap();
    assert_eq!(store.servers().unwrap(), vec![written.clone()]);
    drop(store);
    let client = Client::open(home.path()).unwrap();
    assert_eq!(client.servers(), vec![written.clone()]);
    assert_eq!(client.server(), written);
}
