//! The shared conformance suite against PostgreSQL: each test in a fresh schema of the
//! database at `VELLUM_TEST_DATABASE_URL` (default: the local test database), dropped after.

use vellum_store::{Error, SchemaError};
use vellum_store_pg::{tokio_postgres, PgStore};

fn database_url() -> String {
    std::env::var("VELLUM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("the test database (VELLUM_TEST_DATABASE_URL) is reachable");
    tokio::spawn(connection);
    client
}

/// A schema of its own, dropped when this is.
struct Schema {
    name: String,
}

impl Schema {
    async fn new() -> Self {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!(
            "t_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        admin()
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Self { name }
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = database_url().parse().unwrap();
        config.options(format!("-c search_path={}", self.name));
        // Named after the schema, so that dropping it can end the store's sessions first.
        config.application_name(&self.name);
        config
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: a thread of its own may block.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = admin().await;
                // The test's runtime is blocked here, so its store cannot finish a
                // transaction it left open (an early error return): end its sessions.
                let _ = admin
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        &[&name],
                    )
                    .await;
                let _ = admin
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

async fn fresh() -> (PgStore, Schema) {
    let schema = Schema::new().await;
    let store = PgStore::connect_config(schema.config()).await.unwrap();
    (store, schema)
}

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
