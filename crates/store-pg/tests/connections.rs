//! Issue 13: what a node's connections to the shared database carry: session settings,
//! errors, notices and TLS.

mod common;

use common::{admin, fresh, member_with_group, Schema};
use futures_util::future::join_all;
use std::sync::Mutex;
use tokio_postgres::config::SslMode;
use vellum_store::backend::now_secs;
use vellum_store::conformance::eventually;
use vellum_store::*;
use vellum_store_pg::{tokio_postgres, PgStore};

#[tokio::test]
async fn issue_13_a_cancelled_touch_or_ack_leaves_no_connection_committing_asynchronously() {
    let (store, schema) = fresh().await;
    member_with_group(&store).await;
    let s = &schema.name;
    let admin = admin().await;
    // Every user row inserted from now on records the commit mode of the session it came from.
    admin
        .batch_execute(&format!(
            "ALTER TABLE {s}.users ADD COLUMN commit_mode TEXT DEFAULT current_setting('synchronous_commit')"
        ))
        .await
        .unwrap();
    // Hold the rows a touch and a cursor-only ack update: both wait there, past any
    // setting they made, and are cancelled (as a timed-out request is).
    let mut holder = common::admin().await;
    let held = holder.transaction().await.unwrap();
    held.batch_execute(&format!(
        "SELECT 1 FROM {s}.devices WHERE device_id = 'a1' FOR UPDATE;
         SELECT 1 FROM {s}.memberships WHERE device_id = 'a1' FOR UPDATE;"
    ))
    .await
    .unwrap();
    let touch = tokio::spawn({
        let store = store.clone();
        async move { store.touch_device("a1", now_secs()).await }
    });
    let ack = tokio::spawn({
        let store = store.clone();
        async move { store.ack("a1", &[], &[("g".into(), 0)], &[]).await }
    });
    eventually("the touch and the ack wait for the held rows", || async {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[s],
            )
            .await
            .unwrap()
            .get(0);
        (waiting == 2).then_some(())
    })
    .await;
    touch.abort();
    ack.abort();
    assert!(touch.await.unwrap_err().is_cancelled());
    assert!(ack.await.unwrap_err().is_cancelled());
    held.rollback().await.unwrap();
    // More writes at once than the pool has connections: every connection takes one.
    let created = join_all((0..32).map(|i| {
        let store = store.clone();
        async move { store.create_user(&format!("u{i}"), 0).await }
    }))
    .await;
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let modes: Vec<String> = admin
        .query(
            &format!("SELECT DISTINCT commit_mode FROM {s}.users WHERE commit_mode IS NOT NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        modes,
        ["on"],
        "every pooled connection commits synchronously"
    );
}

/// host:port of the test database's URL.
fn test_server() -> String {
    let config: tokio_postgres::Config = common::database_url().parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the test database is reached over TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

#[tokio::test]
async fn issue_13_a_missing_database_is_named_as_postgresql_says_it() {
    let mut config: tokio_postgres::Config = common::database_url().parse().unwrap();
    config
        .dbname("nonexistent_db_xyz")
        .password("secret-password-xyz");
    let message = PgStore::connect_config(config)
        .await
        .err()
        .expect("a database that does not exist is refused")
        .to_string();
    let server = test_server();
    assert!(
        message.ends_with(&format!(
            "cannot connect to the PostgreSQL database {server}/nonexistent_db_xyz: \
             database \"nonexistent_db_xyz\" does not exist"
        )),
        "{message}"
    );
    assert_eq!(message.matches("cannot connect").count(), 1, "{message}");
    assert!(!message.contains("secret-password-xyz"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn issue_13_a_refused_connection_is_named_without_the_user_or_password() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("someone_xyz")
        .password("secret-password-xyz")
        .dbname("test");
    let message = PgStore::connect_config(config)
        .await
        .err()
        .expect("nothing listens on the port")
        .to_string();
    assert!(
        message.ends_with(&format!(
            "cannot connect to the PostgreSQL database 127.0.0.1:{port}/test: connection refused"
        )),
        "{message}"
    );
    assert!(!message.contains("someone_xyz"), "{message}");
    assert!(!message.contains("secret-password-xyz"), "{message}");
}

/// What tokio-postgres logs (it logs a session's notices), kept for the test to read.
struct Notices(Mutex<Vec<String>>);

impl log::Log for Notices {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

static NOTICES: Notices = Notices(Mutex::new(Vec::new()));

#[tokio::test]
async fn issue_13_a_node_starting_on_a_migrated_database_logs_no_notice() {
    log::set_logger(&NOTICES).expect("only this test logs");
    log::set_max_level(log::LevelFilter::Info);
    let (_first, schema) = fresh().await;
    let _second = PgStore::connect_config(schema.config()).await.unwrap();
    let _third = PgStore::connect_config(schema.config()).await.unwrap();
    // Other tests of this binary run meanwhile: no node of any may log it.
    let notices = NOTICES.0.lock().unwrap().clone();
    assert!(
        !notices
            .iter()
            .any(|notice| notice.contains("vellum_schema_history")),
        "{notices:?}"
    );
}

/// Whether every session of the schema's store is encrypted, as PostgreSQL sees them.
async fn sessions_encrypted(schema: &Schema) -> Vec<bool> {
    admin()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn server_offers_tls() -> bool {
    let ssl: String = admin()
        .await
        .query_one("SHOW ssl", &[])
        .await
        .unwrap()
        .get(0);
    ssl == "on"
}

#[tokio::test]
async fn issue_13_sslmode_disable_connects_in_plain_and_prefer_encrypts_when_offered() {
    let schema = Schema::new().await;
    let mut config = schema.config();
    config.ssl_mode(SslMode::Disable);
    let store = PgStore::connect_config(config).await.unwrap();
    store.create_user("alice", 0).await.unwrap();
    assert_eq!(sessions_encrypted(&schema).await, [false]);
    drop(store);

    let schema = Schema::new().await;
    // The URL's default, prefer.
    assert_eq!(schema.config().get_ssl_mode(), SslMode::Prefer);
    let store = PgStore::connect_config(schema.config()).await.unwrap();
    store.create_user("alice", 0).await.unwrap();
    let offered = server_offers_tls().await;
    assert_eq!(sessions_encrypted(&schema).await, [offered]);
}

#[tokio::test]
async fn issue_13_sslmode_require_verifies_the_certificate_against_the_system_roots() {
    let schema = Schema::new().await;
    let mut config = schema.config();
    config
        .ssl_mode(SslMode::Require)
        .password("secret-password-xyz");
    match PgStore::connect_config(config).await {
        // A server whose certificate this system trusts.
        Ok(store) => {
            store.create_user("alice", 0).await.unwrap();
            assert_eq!(sessions_encrypted(&schema).await, [true]);
        }
        Err(e) => {
            let message = e.to_string();
            let expected = if server_offers_tls().await {
                // As a packaged PostgreSQL's self-signed certificate is.
                "error performing TLS handshake: invalid peer certificate"
            } else {
                "error performing TLS handshake: server does not support TLS"
            };
            assert!(
                message.contains(&format!(
                    "cannot connect to the PostgreSQL database {}/test: {expected}",
                    test_server()
                )),
                "{message}"
            );
            assert!(!message.contains("secret-password-xyz"), "{message}");
        }
    }
}

#[tokio::test]
async fn issue_13_sslmode_require_on_a_server_without_tls_says_so() {
    // A server that answers every TLS request "no", as one without ssl = on does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut ssl_request = [0u8; 8];
            if socket.read_exact(&mut ssl_request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let message = PgStore::connect(&format!(
        "postgres://someone_xyz:secret-password-xyz@127.0.0.1:{port}/test?sslmode=require"
    ))
    .await
    .err()
    .expect("no TLS, no connection")
    .to_string();
    assert!(
        message.ends_with(&format!(
            "cannot connect to the PostgreSQL database 127.0.0.1:{port}/test: \
             error performing TLS handshake: server does not support TLS"
        )),
        "{message}"
    );
    assert!(!message.contains("someone_xyz"), "{message}");
    assert!(!message.contains("secret-password-xyz"), "{message}");
}
