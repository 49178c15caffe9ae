//! Issue 13: several nodes sharing one database. Each test opens two `PgStore`s on one
//! schema, as two `vellum server` processes would.

mod common;

use common::{admin, fresh, member_with_group, Schema};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vellum_store::backend::now_secs;
use vellum_store::conformance::eventually;
use vellum_store::*;
use vellum_wire::MAX_CLOCK_SKEW_SECS;

use vellum_store_pg::{tokio_postgres, PgStore};

async fn two_nodes() -> (PgStore, PgStore, Schema) {
    let (first, schema) = fresh().await;
    let second = PgStore::connect_config(schema.config()).await.unwrap();
    (first, second, schema)
}

#[tokio::test]
async fn issue_13_one_node_at_a_time_holds_a_job_lease() {
    let (first, second, _schema) = two_nodes().await;
    let lease = first.try_job_lease(Job::Purge).await.unwrap().unwrap();
    assert!(second.try_job_lease(Job::Purge).await.unwrap().is_none());
    assert!(
        first.try_job_lease(Job::Purge).await.unwrap().is_none(),
        "a node's second request is refused too"
    );
    assert!(lease.is_held());
    drop(lease);
    let taken = eventually(
        "the second node gets the lease the first dropped",
        || async { second.try_job_lease(Job::Purge).await.unwrap() },
    )
    .await;
    assert!(taken.is_held());
    assert!(first.try_job_lease(Job::Purge).await.unwrap().is_none());
}

#[tokio::test]
async fn issue_13_a_lease_whose_session_ends_is_lost_and_taken_over() {
    let (first, second, schema) = two_nodes().await;
    let lease = first
        .try_job_lease(Job::DirectoryWitness)
        .await
        .unwrap()
        .unwrap();
    let admin = admin().await;
    let pid: i32 = admin
        .query_one(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1",
            &[&schema.name],
        )
        .await
        .unwrap()
        .get(0);
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    eventually(
        "the lease of a terminated session reports it is lost",
        || async { (!lease.is_held()).then_some(()) },
    )
    .await;
    let taken = eventually("the second node takes the lost lease over", || async {
        second.try_job_lease(Job::DirectoryWitness).await.unwrap()
    })
    .await;
    assert!(taken.is_held());
}

#[tokio::test]
async fn issue_13_purges_on_several_nodes_at_once_remove_each_row_once() {
    let (first, second, _schema) = two_nodes().await;
    member_with_group(&first).await;
    const MESSAGES: u64 = 40;
    for i in 0..MESSAGES {
        first
            .append_message(MessageAppend {
                group_id: "g".into(),
                epoch: 0,
                sender_device: "a1".into(),
                client_msg_id: format!("m{i}"),
                payload: vec![7; 32],
                received_at: 100,
                expires_at: Some(1_000),
            })
            .await
            .unwrap();
        first
            .create_blob(NewBlob {
                blob_id: format!("b{i}"),
                group_id: "g".into(),
                uploader_device: "a1".into(),
                size: 4,
                chunk_size: 4,
                record: false,
                expires_at: Some(1_000),
                created_at: 100,
                user_quota: 1 << 20,
            })
            .await
            .unwrap();
    }
    // Whichever node runs first takes them all, the other none: no error, no double count.
    for expected in [MESSAGES, 0] {
        let (a, b) = tokio::join!(
            first.purge_expired(2_000, 0),
            second.purge_expired(2_000, 0)
        );
        let (c, d) = tokio::join!(first.purge_blobs(2_000, 0), second.purge_blobs(2_000, 0));
        let purged = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
        assert_eq!(purged[0] + purged[1], expected, "{purged:?}");
        assert_eq!(purged[2] + purged[3], expected, "{purged:?}");
    }
    assert_eq!(first.blob("b0").await.unwrap(), None);
}

/// Lets the nonce window take timestamps from before the schema was created.
async fn remember_since_1970(schema: &Schema) {
    admin()
        .await
        .batch_execute(&format!(
            "UPDATE {}.request_nonce_window SET started_at = 0",
            schema.name
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn issue_13_a_request_seen_by_one_node_is_a_replay_on_another() {
    let (first, second, schema) = two_nodes().await;
    remember_since_1970(&schema).await;
    // Signed just outside the window of the database's clock, judged by nodes whose
    // clocks run 20 s behind it.
    let t = now_secs() - 310;
    assert_eq!(
        first.remember_nonce("d1", "n1", t, t - 280).await.unwrap(),
        NonceCheck::Fresh
    );
    assert_eq!(
        second.remember_nonce("d1", "n1", t, t - 280).await.unwrap(),
        NonceCheck::Replayed
    );
    assert_eq!(
        second.remember_nonce("d1", "n2", t, t - 280).await.unwrap(),
        NonceCheck::Fresh
    );
    // Once one node's window passed a timestamp (and may have dropped its nonces), every
    // node refuses it, whatever window its own clock gives.
    let now = now_secs();
    for _ in 0..256 {
        first
            .remember_nonce("d2", "sweep", now, now - MAX_CLOCK_SKEW_SECS)
            .await
            .unwrap();
    }
    assert_eq!(
        second.remember_nonce("d1", "n1", t, t - 280).await.unwrap(),
        NonceCheck::Expired
    );
    assert_eq!(
        second.remember_nonce("d1", "n3", t, t - 280).await.unwrap(),
        NonceCheck::Expired
    );
}

#[tokio::test]
async fn issue_13_a_node_whose_clock_runs_ahead_locks_no_client_out() {
    let (fast, correct, schema) = two_nodes().await;
    remember_since_1970(&schema).await;
    // The fast node's clock is 15 minutes ahead: its window starts 600 s in the future.
    let fast_now = now_secs() + 900;
    for i in 0..=256 {
        assert_eq!(
            fast.remember_nonce("d2", &format!("n{i}"), fast_now, fast_now - 300)
                .await
                .unwrap(),
            NonceCheck::Fresh
        );
    }
    let now = now_secs();
    assert_eq!(
        correct
            .remember_nonce("d1", "n1", now, now - MAX_CLOCK_SKEW_SECS)
            .await
            .unwrap(),
        NonceCheck::Fresh,
        "a correct node's fresh request stays fresh"
    );
    assert_eq!(
        correct
            .remember_nonce("d1", "n1", now, now - MAX_CLOCK_SKEW_SECS)
            .await
            .unwrap(),
        NonceCheck::Replayed
    );
    // The shared window still moved, up to the database's clock minus the window.
    let old = now - MAX_CLOCK_SKEW_SECS - 30;
    assert_eq!(
        correct
            .remember_nonce("d1", "old", old, old - 300)
            .await
            .unwrap(),
        NonceCheck::Expired
    );
    // A window lost with the unlogged tables is written again on the database's clock too.
    admin()
        .await
        .batch_execute(&format!(
            "TRUNCATE {0}.request_nonces, {0}.request_nonce_window",
            schema.name
        ))
        .await
        .unwrap();
    assert_eq!(
        fast.remember_nonce("d2", "again", fast_now, fast_now - 300)
            .await
            .unwrap(),
        NonceCheck::Fresh
    );
    let next = now_secs() + 2;
    assert_eq!(
        correct
            .remember_nonce("d1", "n2", next, next - MAX_CLOCK_SKEW_SECS)
            .await
            .unwrap(),
        NonceCheck::Fresh,
        "a correct node's request after the loss is fresh"
    );
}

#[tokio::test]
async fn issue_13_nonces_lost_with_the_unlogged_tables_refuse_earlier_timestamps() {
    let (first, second, schema) = two_nodes().await;
    let admin = admin().await;
    // A deployment remembering nonces for long: a request of a second ago is fresh.
    admin
        .batch_execute(&format!(
            "UPDATE {}.request_nonce_window SET started_at = 0",
            schema.name
        ))
        .await
        .unwrap();
    let t = now_secs() - 1;
    assert_eq!(
        first.remember_nonce("d1", "n1", t, t - 300).await.unwrap(),
        NonceCheck::Fresh
    );
    // What crash recovery, or a standby's promotion, does to unlogged tables.
    admin
        .batch_execute(&format!(
            "TRUNCATE {0}.request_nonces, {0}.request_nonce_window",
            schema.name
        ))
        .await
        .unwrap();
    let NonceCheck::BeforeStart { started_at } =
        second.remember_nonce("d1", "n1", t, t - 300).await.unwrap()
    else {
        panic!("a replay after the nonces were lost is refused");
    };
    assert!(
        started_at > t - 5,
        "remembering starts again now: {started_at}"
    );
    assert_eq!(
        first.remember_nonce("d1", "n1", t, t - 300).await.unwrap(),
        NonceCheck::BeforeStart { started_at },
        "every node sees the same new start"
    );
    assert_eq!(
        first
            .remember_nonce("d1", "n1", started_at, started_at - 300)
            .await
            .unwrap(),
        NonceCheck::Fresh
    );
}

/// Forwards TCP to the database until told to stall: then bytes are taken and never passed
/// on, both ways, as on a network that fails silently (no close ever arrives).
struct StallingProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(upstream.clone())
                    .await
                    .unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, flag.clone()));
                tokio::spawn(pump(server_read, client_write, flag.clone()));
            }
        });
        Self { port, stalled }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.load(Ordering::SeqCst) {
            // Hold both ends open, forwarding nothing.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn issue_13_a_lease_whose_network_goes_silent_is_given_up() {
    // A store on the schema first, so that it is migrated.
    let (_migrated, schema) = fresh().await;
    let direct = schema.config();
    let upstream = match &direct.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => (host.clone(), direct.get_ports()[0]),
        other => panic!("the test database is reached over TCP, not {other:?}"),
    };
    let proxy = StallingProxy::start(upstream).await;
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.port)
        .user(direct.get_user().unwrap())
        .dbname(direct.get_dbname().unwrap())
        .options(direct.get_options().unwrap())
        .application_name(&schema.name);
    if let Some(password) = direct.get_password() {
        config.password(password);
    }
    let store = PgStore::connect_config(config).await.unwrap();
    let lease = store.try_job_lease(Job::Purge).await.unwrap().unwrap();
    assert!(lease.is_held());
    proxy.stalled.store(true, Ordering::SeqCst);
    // The database still holds the lock for the silent session (no other node can take
    // it); the node stops trusting it once a heartbeat goes unanswered.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while lease.is_held() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lease whose pings go unanswered is given up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A schema dropped under running nodes (the demo's end): leases and purges answer "not
/// granted" or an error, never a panic in the node's background jobs.
#[tokio::test]
async fn issue_13_a_schema_dropped_under_a_node_does_not_panic_its_jobs() {
    let (store, schema) = fresh().await;
    admin()
        .await
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", schema.name))
        .await
        .unwrap();
    let lease = store.try_job_lease(Job::Purge).await;
    assert!(
        !matches!(lease, Ok(Some(_))),
        "no lease on a schema that is gone"
    );
    let purged = store.purge_expired(now_secs() * 1000, 0).await;
    assert!(matches!(purged, Ok(0) | Err(_)));
}
