//! The shared conformance suite against PostgreSQL: each test in a fresh schema of the
//! database at `VELLUM_TEST_DATABASE_URL` (default: the local test database), dropped after.

mod common;

use common::{admin, fresh, Schema};
use vellum_store::{Error, SchemaError};
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
