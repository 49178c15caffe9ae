//! What the PostgreSQL tests share: a schema of their own in the test database.

use vellum_store::{ChatTimers, Device, NewGroup, Store};
use vellum_store_pg::{tokio_postgres, PgStore};

pub fn database_url() -> String {
    std::env::var("VELLUM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("the test database (VELLUM_TEST_DATABASE_URL) is reachable");
    tokio::spawn(connection);
    client
}

/// A schema of its own, dropped when this is.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub async fn new() -> Self {
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

    pub fn config(&self) -> tokio_postgres::Config {
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

pub async fn fresh() -> (PgStore, Schema) {
    let schema = Schema::new().await;
    let store = PgStore::connect_config(schema.config()).await.unwrap();
    (store, schema)
}

/// Device `a1` of user alice, the creator (and only member) of group `g` at epoch 0.
pub async fn member_with_group(store: &PgStore) {
    store.create_user("alice", 0).await.unwrap();
    store
        .add_enrollment_code("alice", [1; 32], 1_000)
        .await
        .unwrap();
    store
        .enroll_device(
            [1; 32],
            10,
            Device {
                device_id: "a1".into(),
                user: "alice".into(),
                signature_key: b"key-a1".to_vec(),
            },
            false,
        )
        .await
        .unwrap();
    store
        .create_group(NewGroup {
            group_id: "g".into(),
            epoch: 0,
            state: b"state-0".to_vec(),
            timers: ChatTimers::default(),
            record: false,
            creator_device: "a1".into(),
            created_at: 0,
        })
        .await
        .unwrap();
}
