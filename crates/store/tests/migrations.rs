//! Databases written by Vellum 0.1.0 (tests/fixtures/v0.1.0, before numbered migrations)
//! open with today's store with everything intact; newer or damaged files are refused.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;
use vellum_store::{Error, SchemaError, SqliteStore, Store};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

/// A copy of the fixture server database in a temporary directory.
fn copy_of_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    std::fs::copy(fixtures().join("server/server.db"), &path).unwrap();
    (dir, path)
}

/// Every row of every table 0.1.0 wrote, as text, in the columns 0.1.0 had.
#[path = "../../../tests/fixtures/table_rows.rs"]
mod table_rows;
use table_rows::rows;

#[tokio::test]
async fn a_v0_1_0_server_database_migrates_with_everything_intact() {
    let (_dir, path) = copy_of_fixture();
    let original = Connection::open(fixtures().join("server/server.db")).unwrap();
    let before = rows(&path, &original, &["nonces"]);
    assert!(before.iter().any(|(t, r)| t == "group_log" && r.len() == 8));

    let store = SqliteStore::open(&path).unwrap();
    let expected = expected();

    // Every row 0.1.0 wrote is there, byte for byte, in the columns 0.1.0 had.
    assert_eq!(rows(&path, &original, &["nonces"]), before);

    for user in expected["users"].as_array().unwrap() {
        assert!(
            store.user_exists(user.as_str().unwrap()).await.unwrap(),
            "{user}"
        );
    }
    for (user, device_id) in expected["devices"].as_object().unwrap() {
        let device = store
            .device(device_id.as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&device.user, user);
        assert_eq!(store.user_devices(user).await.unwrap(), vec![device]);
        let held: (u64, bool) = original
            .query_row(
                "SELECT SUM(last_resort = 0), MAX(last_resort) = 1 FROM key_packages WHERE device_id = ?1",
                [device_id.as_str().unwrap()],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .unwrap();
        assert!(held.0 >= 18, "the fixture holds key packages");
        assert_eq!(
            store
                .key_package_count(device_id.as_str().unwrap())
                .await
                .unwrap(),
            held,
            "{user}"
        );
    }
    let records = store.user_devices("records").await.unwrap();
    assert_eq!(
        store.org_policy().await.unwrap().archiver_device,
        Some(records[0].device_id.clone())
    );
    // Issue 9: the devices 0.1.0 enrolled are legacy, to be listed in the key directory
    // (oldest first); the archiver is not (the custodians bind it) and is approved.
    let legacy: Vec<String> = store
        .legacy_devices()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.device.device_id)
        .collect();
    let mut expected_legacy: Vec<String> = expected["devices"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    expected_legacy.sort();
    let mut sorted = legacy.clone();
    sorted.sort();
    assert_eq!(sorted, expected_legacy);
    let record = store.device_record(&records[0].device_id).await.unwrap();
    assert_eq!(record.unwrap().state, vellum_wire::DeviceState::Approved);
    assert_eq!(
        store.org_policy().await.unwrap().reset_wait_secs,
        vellum_wire::DEFAULT_RESET_WAIT_SECS
    );
    assert!(store.records_public().await.unwrap().is_some());
    // Issue 8: receipts were not tracked before; the record chats' old messages count as
    // receipted rather than all raising the alarm at once, and no checkpoint is on file.
    assert_eq!(store.unreceipted(i64::MAX).await.unwrap(), (0, None));
    assert_eq!(store.records_checkpoint_head().await.unwrap(), None);
    assert_eq!(
        store.org_policy().await.unwrap().receipt_alarm_secs,
        vellum_wire::DEFAULT_RECEIPT_ALARM_SECS
    );

    let alice = expected["devices"]["alice"].as_str().unwrap();
    for (name, chat) in expected["chats"].as_object().unwrap() {
        let id = chat["id"].as_str().unwrap();
        let group = store
            .group(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(group.epoch, 1, "{name}");
        assert!(store.is_member(id, alice).await.unwrap());
        let members = store.group_members(id).await.unwrap();
        assert_eq!(
            members.len(),
            if chat["class"] == "record" { 3 } else { 2 },
            "{name}"
        );
    }

    // Cursors are where 0.1.0 left them: everything acknowledged, nothing pending.
    assert!(store.pending(alice, 100).await.unwrap().groups.is_empty());
    // And the log carries on from there, hashed from its first entry.
    let ops = expected["chats"]["ops"]["id"].as_str().unwrap();
    let appended = store
        .append_message(vellum_store::MessageAppend {
            group_id: ops.into(),
            epoch: 1,
            sender_device: alice.into(),
            client_msg_id: "after-upgrade".into(),
            payload: b"ct".to_vec(),
            received_at: 0,
            expires_at: None,
        })
        .await
        .unwrap();
    assert_eq!(appended.seq, 5);
    let bob = expected["devices"]["bob"].as_str().unwrap();
    let p = store.pending(bob, 100).await.unwrap();
    assert_eq!(
        p.groups[0].1.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5]
    );

    let conn = Connection::open(&path).unwrap();
    let mut hash = vellum_wire::log_hash_start(ops);
    type Row = (i64, i64, String, String, Vec<u8>, Vec<u8>);
    let entries: Vec<Row> = conn
        .prepare("SELECT seq, epoch, kind, sender_device, payload, log_hash FROM group_log WHERE group_id = ?1 ORDER BY seq")
        .unwrap()
        .query_map([ops], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (seq, epoch, kind, sender, payload, stored) in entries {
        let kind = if kind == "commit" {
            vellum_wire::EntryKind::Commit
        } else {
            vellum_wire::EntryKind::Application
        };
        hash = vellum_wire::log_hash_next(&hash, seq as u64, epoch as u64, kind, &sender, &payload);
        assert_eq!(stored, hash.to_vec(), "entry {seq}");
    }
    assert_eq!(p.heads[0].1.log_hash, hash);
    assert_eq!(
        vellum_store::schema::schema_version(&conn).unwrap(),
        Some(SqliteStore::schema_version())
    );
}

#[tokio::test]
async fn reopening_keeps_the_instance_id_and_a_new_database_gets_another() {
    let (dir, path) = copy_of_fixture();
    let first = SqliteStore::open(&path)
        .unwrap()
        .instance_id()
        .await
        .unwrap();
    assert_eq!(
        SqliteStore::open(&path)
            .unwrap()
            .instance_id()
            .await
            .unwrap(),
        first
    );
    let other = SqliteStore::open(&dir.path().join("new.db")).unwrap();
    assert_ne!(other.instance_id().await.unwrap(), first);
}

#[test]
fn a_database_from_a_newer_version_is_refused_and_left_alone() {
    let (_dir, path) = copy_of_fixture();
    drop(SqliteStore::open(&path).unwrap());
    let ours = SqliteStore::schema_version();
    let newer = ours + 1;
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (?1, 'future', '2030-01-01T00:00:00Z', '1')",
            [newer],
        )
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(
        matches!(err, Error::Schema(SchemaError::TooNew { found, supported }) if found == newer && supported == ours),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("version {newer}"))
            && message.contains(&format!("version {ours}")),
        "{message}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing changed");
}

/// A copy taken while a newer server ran holds its newest writes in the WAL: refusing it
/// must not checkpoint that WAL into the file (or touch either).
#[test]
fn issue_7_a_newer_database_with_a_wal_is_refused_untouched() {
    let (dir, path) = copy_of_fixture();
    let live = SqliteStore::open(&path).unwrap();
    let newer = SqliteStore::schema_version() + 1;
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (?1, 'future', '2030-01-01T00:00:00Z', '1')",
        [newer],
    )
    .unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", path.display());
        std::fs::copy(&from, copy.join(format!("server.db{suffix}"))).unwrap();
    }
    drop(conn);
    drop(live);
    let files = |dir: &std::path::Path| {
        ["server.db", "server.db-wal"].map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let before = files(&copy);
    assert!(!before[1].is_empty(), "the newest writes are in the WAL");
    let err = SqliteStore::open(&copy.join("server.db"))
        .err()
        .expect("refused");
    assert!(
        matches!(err, Error::Schema(SchemaError::TooNew { found, .. }) if found == newer),
        "{err}"
    );
    assert_eq!(files(&copy), before, "neither the file nor its WAL changed");
}

#[test]
fn a_damaged_database_is_refused() {
    let (_dir, path) = copy_of_fixture();
    let mut bytes = std::fs::read(&path).unwrap();
    let page = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize;
    // Scribble over the b-tree page of group_log (not the header: that would not even be a
    // database), as a torn write or a bad sector would.
    let root = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'group_log'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize;
    let at = (root - 1) * page;
    bytes[at..at + page]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 7 + 3) as u8);
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(
        matches!(err, Error::Schema(SchemaError::Damaged(_))),
        "{err}"
    );
    assert!(err.to_string().contains("damaged"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");
}

#[test]
fn a_database_from_before_0_1_0_gets_its_missing_columns() {
    // Columns added to CREATE TABLE in place before 0.1.0: a file without them used to
    // fail at run time with "no such column".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE org_policy (id INTEGER PRIMARY KEY CHECK (id = 1), max_expire_secs INTEGER,
             max_burn_secs INTEGER, allow_no_expiry INTEGER NOT NULL);
         INSERT INTO org_policy VALUES (1, 60, NULL, 0);",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let policy = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.org_policy())
        .unwrap();
    assert_eq!(policy.max_expire_secs, Some(60));
    assert!(!policy.allow_no_expiry);
    assert!(policy.allow_transitory, "the added column's default");
}

/// issue 7: key packages filed before their hashes were kept are hashed at the upgrade, so
/// a replay of their upload files nothing.
#[tokio::test]
async fn key_packages_from_0_1_0_are_filed_once_after_the_upgrade() {
    let (_dir, path) = copy_of_fixture();
    let (device, data): (String, Vec<u8>) = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT device_id, data FROM key_packages WHERE last_resort = 0 LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let (before, _) = store.key_package_count(&device).await.unwrap();
    store
        .add_key_packages(&device, vec![data], None)
        .await
        .unwrap();
    assert_eq!(store.key_package_count(&device).await.unwrap().0, before);
}
