//! The shared conformance suite against PostgreSQL: each test in a fresh schema of the
//! database at `VELLUM_TEST_DATABASE_URL` (default: the local test database), dropped after.

mod common;

use common::{admin, fresh, member_with_group, Schema};
use vellum_store::{Error, MessageAppend, SchemaError, Store};
use vellum_store_pg::PgStore;

mod conformance {
    vellum_store::store_conformance_tests!(super::fresh());
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let schema = Schema::new().await;
    let store = PgStore::connect_config(schema.config()).await.unwrap();
    drop(store);
    let newer = PgStore::schema_version() + 1;
    admin()
        .await
        .execute(
            &format!(
                "INSERT INTO {}.vellum_schema_history (version, name) VALUES ($1, 'from the future')",
                schema.name
            ),
            &[&newer],
        )
        .await
        .unwrap();
    let err = PgStore::connect_config(schema.config())
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(
        matches!(err, Error::Schema(SchemaError::TooNew { found, supported }) if found == newer && supported == newer - 1),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this vellum supports"),
        "{err}"
    );
}

#[tokio::test]
async fn reconnecting_keeps_the_instance_and_migrates_nothing_twice() {
    let schema = Schema::new().await;
    let first = PgStore::connect_config(schema.config()).await.unwrap();
    let again = PgStore::connect_config(schema.config()).await.unwrap();
    use vellum_store::Store;
    assert_eq!(
        first.instance_id().await.unwrap(),
        again.instance_id().await.unwrap()
    );
    assert_eq!(first.instance_id().await.unwrap().len(), 32);
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    // Port 1 on localhost: nothing listens there.
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .err()
        .expect("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to the PostgreSQL database 127.0.0.1:1/test"),
        "{text}"
    );
    let err = PgStore::connect("not a url")
        .await
        .err()
        .expect("not a URL");
    assert!(err.to_string().contains("database URL"), "{err}");
}

/// Issue 13: appends made at once share commits. Here the first caller's batch is itself
/// alone, and everything queued while it commits goes in the next (up to 64 a batch).
#[tokio::test]
async fn issue_13_a_burst_of_appends_shares_commits() {
    let (store, _schema) = fresh().await;
    vellum_store::conformance::issue_13_concurrent_appends_commit_together_gapless_and_chained(
        &store,
    )
    .await;
    let commits = store.log_commits();
    assert!(commits < 8, "64 appends took {commits} commits");
}

/// Issue 13: when a batch's commit fails, every caller of that batch gets the error and
/// none of its messages is in the log; the store goes on appending.
#[tokio::test]
async fn issue_13_a_failed_commit_fails_every_append_of_its_batch() {
    let (store, schema) = fresh().await;
    member_with_group(&store).await;
    // A check PostgreSQL runs only at commit: a message whose payload is "poison" makes
    // its transaction's commit fail.
    admin()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION {s}.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.payload = 'poison'::bytea THEN RAISE EXCEPTION 'poisoned'; END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON {s}.group_log
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.refuse_poison();",
            s = schema.name
        ))
        .await
        .unwrap();
    let message = |i: usize| MessageAppend {
        group_id: "g".into(),
        epoch: 0,
        sender_device: "a1".into(),
        client_msg_id: format!("m{i}"),
        payload: if i == 5 {
            b"poison".to_vec()
        } else {
            format!("ct-m{i}").into_bytes()
        },
        received_at: 0,
        expires_at: None,
    };
    let appended =
        futures_util::future::join_all((0..8).map(|i| store.append_message(message(i)))).await;
    assert!(
        matches!(appended[5], Err(Error::Backend(_))),
        "{:?}",
        appended[5]
    );
    let failed = appended.iter().filter(|a| a.is_err()).count();
    assert!(
        failed > 1,
        "the poisoned batch had others in it: {appended:?}"
    );
    let logged: Vec<Vec<u8>> = store
        .pending("a1", 100)
        .await
        .unwrap()
        .groups
        .into_iter()
        .flat_map(|(_, entries)| entries.into_iter().map(|e| e.payload))
        .collect();
    for (i, a) in appended.iter().enumerate() {
        let payload = message(i).payload;
        assert_eq!(
            logged.contains(&payload),
            a.is_ok(),
            "message {i}: acknowledged if and only if committed ({a:?})"
        );
    }
    let after = store.append_message(message(8)).await.unwrap();
    assert_eq!(after.seq, logged.len() as u64 + 1);
}
