//! Issue 13: several `vellum server` nodes on one PostgreSQL database and one NATS server.
//! The database is the test's own schema of `VELLUM_TEST_DATABASE_URL`; NATS is a private
//! `nats-server` process of the test (`VELLUM_TEST_NATS_SERVER`, default Debian's), so a
//! test can stop it.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vellum_store_pg::tokio_postgres;

use crate::harness::*;
use crate::records::{records_org, wait_for_records};

fn database_url() -> String {
    std::env::var("VELLUM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn blocking<T>(work: impl std::future::Future<Output = T>) -> T {
    runtime().block_on(work)
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("the test database (VELLUM_TEST_DATABASE_URL) is reachable");
    tokio::spawn(connection);
    client
}

/// A schema of the test database of its own, dropped at the end.
struct SharedDatabase {
    schema: String,
}

impl SharedDatabase {
    fn new() -> Self {
        let mut raw = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
            .unwrap();
        let schema = format!(
            "t_{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        blocking(async {
            admin()
                .await
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap()
        });
        Self { schema }
    }

    /// The URL a node is given: the schema through the connection's options.
    fn url(&self) -> String {
        let base = database_url();
        let joiner = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{joiner}options=-c%20search_path%3D{0}&application_name={0}",
            self.schema
        )
    }

    fn execute(&self, sql: &str) {
        let sql = format!("SET search_path = {}; {sql}", self.schema);
        blocking(async { admin().await.batch_execute(&sql).await.unwrap() });
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        blocking(async {
            let admin = admin().await;
            let _ = admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&schema],
                )
                .await;
            let _ = admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await;
        });
    }
}

/// A private NATS server on a port below the ephemeral range (it is restarted on it).
struct Nats {
    child: Option<Child>,
    url: String,
    log: PathBuf,
    extra: Vec<String>,
}

impl Nats {
    fn start(root: &Path) -> Self {
        Self::start_with(root, &[])
    }

    fn start_with(root: &Path, extra: &[&str]) -> Self {
        let log = root.join("nats.log");
        let mut nats = Self {
            child: None,
            url: String::new(),
            log,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        nats.spawn(&unused_fixed_port().to_string());
        nats
    }

    fn spawn(&mut self, port: &str) {
        let binary = std::env::var("VELLUM_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let _ = std::fs::remove_file(&self.log);
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", port, "-l"])
            .arg(&self.log)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} (VELLUM_TEST_NATS_SERVER): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        self.url = loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(address) = text
                .lines()
                .find_map(|l| l.split("Listening for client connections on ").nth(1))
            {
                break format!("nats://{}", address.trim());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts again on the same port.
    fn restart(&mut self) {
        self.stop();
        let port = self.url.rsplit(':').next().unwrap().to_owned();
        self.spawn(&port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node(root: &Path, name: &str, database: &SharedDatabase, nats: Option<&Nats>) -> Server {
    node_polling(root, name, database, nats, "200ms")
}

fn node_polling(
    root: &Path,
    name: &str,
    database: &SharedDatabase,
    nats: Option<&Nats>,
    poll_interval: &str,
) -> Server {
    let mut extra = vec!["--database-url".to_owned(), database.url()];
    if let Some(nats) = nats {
        extra.extend(["--nats-url".to_owned(), nats.url.clone()]);
    }
    extra.extend(["--poll-interval".to_owned(), poll_interval.to_owned()]);
    // Nodes on one host share one directory of keys.
    Server::start_with(
        root.join("node-keys"),
        root.join(format!("{name}-logs")),
        extra,
    )
}

/// Messages sent through one node reach a device of another, in order, exactly once, live
/// over the WebSocket (NATS wakes the other node); the archiver-free chat stays on the
/// shared database only.
#[test]
fn issue_13_two_nodes_deliver_across_each_other_live_in_order() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start(root.path());
    let a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    let alice = Device::new_user(&a, root.path(), "alice");
    let bob = Device::new_user(&b, root.path(), "bob");
    alice.ok(&["chat", "create", "across", "--with", "bob"]);
    bob.ok(&["sync"]);

    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut reader = BufReader::new(watcher.stdout.take().unwrap());
    let sent: Vec<String> = (0..5).map(|i| marker(&format!("across-{i}"))).collect();
    for (i, text) in sent.iter().enumerate() {
        alice.ok(&["send", "across", text]);
        // Each arrives while bob's watch is connected to the other node: woken through NATS.
        let line = wait_for_line(&mut reader, |l| l.contains(text), Duration::from_secs(20));
        assert!(line.is_some(), "message {i} reached bob's watch on node b");
    }
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    assert_eq!(bob.texts("across"), sent, "in order, once each");
    // Bob answers through his node; alice reads it through hers.
    bob.ok(&["send", "across", "reply through b"]);
    alice.ok(&["sync"]);
    assert_eq!(alice.texts("across").last().unwrap(), "reply through b");
    // Both nodes served; the admin token works on either.
    assert!(b.stderr().contains("wakeups between nodes through NATS"));
    b.add_user("carol");
}

/// A node SIGKILLed while a sender streams through it: every send it acknowledged reaches a
/// reader on the other node exactly once and in order; a send cut off is sent again from
/// the outbox, and still appears once.
#[test]
fn issue_13_a_node_killed_mid_stream_loses_and_duplicates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start(root.path());
    let mut a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    // Alice knows both nodes (a first): when a dies her sends move to b.
    let code = a.add_user("alice");
    let alice = Device::enroll(&a, root.path(), "alice", "alice", &code);
    alice.ok(&["servers", "add", &b.url]);
    let bob = Device::new_user(&b, root.path(), "bob");
    alice.ok(&["chat", "create", "stream", "--with", "bob"]);
    bob.ok(&["sync"]);

    // A sender streaming through node a; node a is killed while it sends.
    let count = 60;
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let sender = {
        let home = alice.home.clone();
        std::thread::spawn(move || {
            for i in 0..count {
                let text = format!("stream {i:04}");
                let out = output(
                    vellum()
                        .arg("--home")
                        .arg(&home)
                        .args(["send", "stream", &text]),
                );
                if out.status.success() {
                    acked_tx.send(text).unwrap();
                }
            }
        })
    };
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 20 {
        acknowledged.push(
            acked_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("sends acknowledged"),
        );
    }
    a.kill();
    sender.join().unwrap();
    acknowledged.extend(acked_rx.try_iter());
    // The sends that failed stay in alice's outbox; once a node is back they go, once.
    a.restart();
    alice.ok(&["sync"]);

    bob.ok(&["sync"]);
    let texts = bob.texts("stream");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &texts {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "nothing twice: {texts:?}");
    for text in &acknowledged {
        assert_eq!(
            counts.get(text.as_str()),
            Some(&1),
            "{text} acknowledged, so delivered"
        );
    }
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(texts, sorted, "in the order sent");
    assert!(texts.len() >= acknowledged.len());
    // Node a serves what was appended through it before it died.
    alice.ok(&["send", "stream", "after the restart"]);
    bob.ok(&["sync"]);
    assert_eq!(bob.texts("stream").last().unwrap(), "after the restart");
}

/// NATS going down degrades to polling, never to loss: a message sent through one node
/// still reaches the other node's WebSocket, and live wakeups resume when NATS is back.
#[test]
fn issue_13_nats_down_degrades_to_polling() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let mut nats = Nats::start(root.path());
    let a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    let alice = Device::new_user(&a, root.path(), "alice");
    let bob = Device::new_user(&b, root.path(), "bob");
    alice.ok(&["chat", "create", "degraded", "--with", "bob"]);
    bob.ok(&["sync"]);
    let mut watcher = spawn_piped(bob.cmd().args(["watch", "--json"]));
    let mut reader = BufReader::new(watcher.stdout.take().unwrap());

    nats.stop();
    let down = marker("nats-down");
    alice.ok(&["send", "degraded", &down]);
    let line = wait_for_line(&mut reader, |l| l.contains(&down), Duration::from_secs(30));
    assert!(line.is_some(), "delivered by polling while NATS is down");

    nats.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.stderr().contains("the NATS connection is back") {
        assert!(Instant::now() < deadline, "node b reconnected to NATS");
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = marker("nats-back");
    alice.ok(&["send", "degraded", &back]);
    let line = wait_for_line(&mut reader, |l| l.contains(&back), Duration::from_secs(30));
    assert!(line.is_some(), "delivered once NATS is back");

    // A blip shorter than a poll interval: the hint published while the nodes reconnect is
    // lost, and the wake at reconnect makes up for it.
    nats.restart();
    let blip = marker("nats-blip");
    alice.ok(&["send", "degraded", &blip]);
    let line = wait_for_line(&mut reader, |l| l.contains(&blip), Duration::from_secs(30));
    assert!(line.is_some(), "delivered across a short NATS drop");
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    assert_eq!(bob.texts("degraded"), vec![down, back, blip]);
}

fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["org.key", "directory.key", "admin-token.sha256"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fn start_fails(args: &[&str], data: &Path) -> String {
    let out = output(
        vellum()
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args),
    );
    assert!(!out.status.success(), "refused: {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bad configuration is a clear error at start-up, and says nothing secret.
#[test]
fn issue_13_bad_configuration_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("node-keys");

    let err = start_fails(
        &[
            "--database-url",
            "postgres://vellum:hunter2@127.0.0.1:1/nowhere",
        ],
        &data,
    );
    assert!(
        err.contains("cannot connect to the PostgreSQL database 127.0.0.1:1/nowhere"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "no password in errors: {err}");
    assert!(
        !data.join("org.key").exists(),
        "nothing made for an unreachable database"
    );

    let database = SharedDatabase::new();
    let err = start_fails(
        &[
            "--database-url",
            &database.url(),
            "--nats-url",
            "nats://ops:hunter2@127.0.0.1:1",
        ],
        &data,
    );
    assert!(
        err.contains("cannot connect to NATS at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "no password in errors: {err}");

    let err = start_fails(&["--nats-url", "nats://127.0.0.1:4222"], &data);
    assert!(err.contains("--database-url"), "{err}");

    let err = start_fails(&["--database-url", "not a url"], &data);
    assert!(err.contains("database URL is not valid"), "{err}");

    // A node with another org's keys cannot join the deployment.
    let first = node(root.path(), "first", &database, None);
    drop(first);
    let stranger = root.path().join("stranger-keys");
    copy_keys(&data, &stranger);
    std::fs::write(stranger.join("org.key"), [7u8; 32]).unwrap();
    let err = start_fails(&["--database-url", &database.url()], &stranger);
    assert!(err.contains("belongs to another org key"), "{err}");
    // Nor one that lost the keys of a deployment that exists.
    let empty = root.path().join("empty-keys");
    std::fs::create_dir_all(&empty).unwrap();
    let err = start_fails(&["--database-url", &database.url()], &empty);
    assert!(err.contains("org.key is missing"), "{err}");
    assert!(!empty.join("org.key").exists(), "no new org made up");

    // A copy without directory.key: refused before it listens or makes a key.
    let partial = root.path().join("partial-keys");
    std::fs::create_dir_all(&partial).unwrap();
    for name in ["org.key", "admin-token.sha256"] {
        std::fs::copy(data.join(name), partial.join(name)).unwrap();
    }
    let err = start_fails(&["--database-url", &database.url()], &partial);
    assert!(err.contains("directory.key is missing"), "{err}");
    assert!(
        !partial.join("directory.key").exists(),
        "no new key made up"
    );

    let err = start_fails(&["--poll-interval", "2s"], &data);
    assert!(err.contains("--database-url"), "{err}");

    // A database migrated by a newer vellum.
    database.execute("INSERT INTO vellum_schema_history (version, name) VALUES (999, 'future')");
    let err = start_fails(&["--database-url", &database.url()], &data);
    assert!(err.contains("newer than this vellum supports"), "{err}");
}

/// The archiver works unchanged against a multi-node deployment: it follows one node while
/// the members of a record chat send through the other, and every message is archived once.
#[test]
fn issue_13_the_archiver_archives_what_any_node_took() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start(root.path());
    let a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    let alice = Device::new_user(&a, root.path(), "alice");
    let bob = Device::new_user(&a, root.path(), "bob");
    let archiver = records_org(&b, root.path());
    alice.ok(&["chat", "create", "minutes", "--with", "bob"]);
    bob.ok(&["sync"]);
    for i in 0..3 {
        alice.ok(&["send", "minutes", &format!("decision {i} through node a")]);
    }
    // joined, title, three messages
    wait_for_records(&archiver, 5);
    for share in ["share-1", "share-2"] {
        run_ok(
            archiver
                .records(&["unseal", "--share"])
                .arg(root.path().join("keys").join(share)),
        );
    }
    let mut texts: Vec<String> = archiver
        .search("decision")
        .iter()
        .map(|h| h["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    let want: Vec<String> = (0..3)
        .map(|i| format!("decision {i} through node a"))
        .collect();
    assert_eq!(texts, want, "every message archived exactly once");
    // Receipts reach the sender through her node.
    wait_until_receipted(&alice, "minutes");
}

fn wait_until_receipted(device: &Device, chat: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        device.ok(&["sync"]);
        let archived = device
            .json(&["history", chat, "--json"])
            .iter()
            .filter(|m| m["archived"] == true)
            .count();
        if archived > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "a receipt reached the sender");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Leaves in one epoch through two nodes (issue 13): each node's cached group state and lock
/// are its own, so the second leave used to overwrite the first's proposal in the stored
/// state (every later commit then failed), or a node's stale cache refused the commit of a
/// leave taken through the other. Now both leaves are kept and one commit removes both.
#[test]
fn issue_13_leaves_through_two_nodes_in_one_epoch_are_both_committed() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start(root.path());
    let a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    let dave = Device::new_user(&a, root.path(), "dave");
    let dx7 = Device::new_user(&b, root.path(), "dx7");
    let dx8 = Device::new_user(&a, root.path(), "dx8");
    let erin = Device::new_user(&b, root.path(), "erin");
    let finn = Device::new_user(&b, root.path(), "finn");
    // Created through node a: a caches the group at its new state.
    dave.ok(&["chat", "create", "leavers", "--with", "dx7,dx8,erin,finn"]);
    for member in [&dx7, &dx8, &erin, &finn] {
        member.ok(&["sync"]);
    }
    // dx7 leaves through b; dave's sync through a commits it from a's stale cache.
    dx7.ok(&["chat", "leave", "leavers"]);
    let synced = String::from_utf8(dave.ok(&["sync"]).stderr).unwrap();
    assert!(
        !synced.contains("could not commit"),
        "dave committed dx7's leave through node a: {synced}"
    );
    let first = marker("after-one-leave");
    dave.ok(&["send", "leavers", &first]);

    // Two leaves in the next epoch, through two nodes, one after the other: the second is
    // computed from node a's cache, which does not know of the first.
    erin.ok(&["sync"]);
    dx8.ok(&["sync"]);
    erin.ok(&["chat", "leave", "leavers"]);
    dx8.ok(&["chat", "leave", "leavers"]);
    let synced = String::from_utf8(dave.ok(&["sync"]).stderr).unwrap();
    assert!(
        !synced.contains("could not commit"),
        "dave committed both leaves: {synced}"
    );
    let second = marker("after-two-leaves");
    dave.ok(&["send", "leavers", &second]);
    finn.ok(&["sync"]);
    assert_eq!(
        finn.texts("leavers"),
        vec![first, second],
        "the chat goes on through both nodes"
    );
    let members = String::from_utf8(dave.ok(&["chat", "members", "leavers"]).stdout).unwrap();
    assert!(members.contains("finn"), "{members}");
    for gone in ["dx7", "dx8", "erin"] {
        assert!(!members.contains(gone), "{gone} removed: {members}");
    }
}

/// A device enrolled through one node is vouched for by the other at once (issue 13): a
/// node's in-memory key directory catches up with the store before it serves from it, not
/// only on a NATS hint or its next poll (here: no NATS, and an hour between polls).
#[test]
fn issue_13_a_device_enrolled_through_another_node_is_vouched_for_at_once() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let a = node_polling(root.path(), "a", &database, None, "1h");
    let b = node_polling(root.path(), "b", &database, None, "1h");
    let alice = Device::new_user(&a, root.path(), "alice");
    alice.ok(&["sync"]);
    let up1 = Device::new_user(&b, root.path(), "up1");
    alice.ok(&["chat", "create", "fresh", "--with", "up1"]);
    let text = marker("vouched");
    alice.ok(&["send", "fresh", &text]);
    up1.ok(&["sync"]);
    assert_eq!(up1.texts("fresh"), vec![text]);
}

/// Enrollments in a burst through two nodes (issue 13): each first device posts its user's
/// identity to the key directory, and the nodes' appends race for the same index. Every
/// enrollment succeeds whole (the loser catches up and appends again), and every new device
/// is vouched for.
#[test]
fn issue_13_parallel_enrollments_through_two_nodes_all_succeed() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start(root.path());
    let a = node(root.path(), "a", &database, Some(&nats));
    let b = node(root.path(), "b", &database, Some(&nats));
    let users: Vec<String> = (0..16).map(|i| format!("burst{i}")).collect();
    let enrollments: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let server = if i % 2 == 0 { &a } else { &b };
            let code = server.add_user(user);
            let mut cmd = enroll_command(&root.path().join(user), &server.url, user, &code);
            std::thread::spawn(move || output(&mut cmd))
        })
        .collect();
    for (user, enrollment) in users.iter().zip(enrollments) {
        let out = enrollment.join().unwrap();
        assert!(
            out.status.success(),
            "{user} enrolled: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let alice = Device::new_user(&a, root.path(), "alice");
    alice.ok(&["chat", "create", "burst", "--with", &users.join(",")]);
    let text = marker("burst");
    alice.ok(&["send", "burst", &text]);
    for user in &users {
        let device = Device {
            home: root.path().join(user),
        };
        device.ok(&["sync"]);
        assert_eq!(device.texts("burst"), vec![text.clone()], "{user}");
    }
}

/// A NATS server that wants a password gets it from the URL; a wrong one is a clear start-up
/// error that does not print it.
#[test]
fn issue_13_nats_credentials_come_from_the_url() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let nats = Nats::start_with(root.path(), &["--user", "ops", "--pass", "n4ts-pw"]);
    let address = nats.url.trim_start_matches("nats://").to_owned();
    let wrong = format!("nats://ops:wrong-pw@{address}");
    let err = start_fails(
        &["--database-url", &database.url(), "--nats-url", &wrong],
        &root.path().join("node-keys"),
    );
    assert!(err.contains("authorization violation"), "{err}");
    assert!(!err.contains("wrong-pw"), "no password in errors: {err}");
    let with_password = format!("nats://ops:n4ts-pw@{address}");
    let a = Server::start_with(
        root.path().join("node-keys"),
        root.path().join("a-logs"),
        vec![
            "--database-url".into(),
            database.url(),
            "--nats-url".into(),
            with_password,
        ],
    );
    assert!(a.stderr().contains("wakeups between nodes through NATS"));
    assert!(
        !a.stderr().contains("n4ts-pw"),
        "the password is never logged"
    );
}

/// `vellum bench load --nodes 2 --database-url` on a database that already holds a
/// deployment (and again, on the same database): its nodes run in a schema of their own,
/// dropped afterwards, and the deployment is left as it was.
#[test]
fn issue_13_bench_nodes_run_in_a_schema_of_their_own_and_leave_the_database_as_it_was() {
    let root = tempfile::tempdir().unwrap();
    let database = SharedDatabase::new();
    let deployment = node(root.path(), "a", &database, None);
    deployment.add_user("alice");
    for run in 1..=2 {
        let out = run_ok(vellum().args([
            "bench",
            "load",
            "--devices",
            "6",
            "--chats",
            "2",
            "--members",
            "3",
            "--rate",
            "10",
            "--duration",
            "1",
            "--nodes",
            "2",
            "--database-url",
            &database.url(),
        ]));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["store"], "postgres", "run {run}: {summary}");
        assert!(
            summary["sent"].as_u64().unwrap() > 0,
            "run {run}: {summary}"
        );
        assert_eq!(
            summary["deliveries"], summary["expected_deliveries"],
            "run {run}: {summary}"
        );
    }
    let left: i64 = blocking(async {
        admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'vellum\\_bench\\_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0, "the benchmark's schemas are dropped");
    // The deployment still serves its org, alice included.
    let refused = run_fails(
        vellum()
            .args(["admin", "--server", &deployment.url, "--token-file"])
            .arg(deployment.token_file())
            .args(["user", "add", "alice"]),
    );
    assert!(
        refused.contains("already exists"),
        "alice is still there: {refused}"
    );
    deployment.add_user("bob");
}
