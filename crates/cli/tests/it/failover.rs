//! Issue 13: a device given several nodes of one server (one database) uses the first that
//! answers and moves on when one dies.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vellum_mls::OrgSigner;
use vellum_server::{AppState, ServerConfig};
use vellum_store::{SqliteStore, Store};

use crate::harness::*;

/// A loopback URL nothing listens on: connections to it are refused.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Nodes of one server in this test process, over one shared `SqliteStore`, with one org
/// key, admin token and key directory key. (`vellum server --database-url` runs processes
/// so; these stand in for them.)
struct Cluster {
    data: PathBuf,
    store: Arc<dyn Store>,
    org_seed: [u8; 32],
    admin_token_hash: [u8; 32],
    directory_key: [u8; 32],
    _lock: Option<std::fs::File>,
}

/// One node on a runtime of its own: dropping the runtime ends every task and connection
/// of the node at once, as SIGKILL ends a process.
struct Node {
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Cluster {
    fn new(root: &Path) -> Self {
        let data = root.join("server-data");
        let dir = vellum_server::init_data_dir(&data).unwrap();
        let store = SqliteStore::open(&data.join("server.db")).unwrap();
        Self {
            data,
            store: Arc::new(store),
            org_seed: dir.org.seed(),
            admin_token_hash: dir.admin_token_hash,
            directory_key: dir.directory_key,
            _lock: dir.lock,
        }
    }

    /// Serves a node on `listener` (bound already, so its URL is known before it serves).
    fn start(&self, listener: TcpListener) -> Node {
        let address = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = AppState::new(
            ServerConfig::new(address, self.data.clone()),
            self.store.clone(),
            OrgSigner::from_seed(&self.org_seed).unwrap(),
            self.admin_token_hash,
        )
        .with_directory_key(self.directory_key);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            vellum_server::run(listener, state).await
        });
        Node {
            url: format!("http://{address}"),
            runtime: Some(runtime),
        }
    }

    fn add_user(&self, url: &str, name: &str) -> String {
        last_line(&run_ok(
            vellum()
                .args(["admin", "--server", url, "--token-file"])
                .arg(self.data.join("admin-token"))
                .args(["user", "add", name]),
        ))
    }
}

/// `vellum watch --json` of a device, its stdout and stderr lines read on threads of their
/// own so that a watch that prints nothing fails the test at the deadline instead of
/// blocking it; killed when dropped, also when the test fails.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    notices: std::sync::mpsc::Receiver<String>,
}

/// Sends each line of `from` to the returned receiver, from a thread.
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The first line of `lines` holding `text`, or `None` once `timeout` passed.
fn first_line_with(
    lines: &std::sync::mpsc::Receiver<String>,
    text: &str,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = lines.recv_timeout(left).ok()?;
        if line.contains(text) {
            return Some(line);
        }
    }
}

impl Watcher {
    fn start(device: &Device) -> Self {
        let mut child = device
            .cmd()
            .args(["watch", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let notices = lines_of(child.stderr.take().unwrap());
        Self {
            child,
            lines,
            notices,
        }
    }

    /// The first line holding `text`, as JSON, or `None` once `timeout` passed.
    fn wait_for(&self, text: &str, timeout: Duration) -> Option<Value> {
        first_line_with(&self.lines, text, timeout)
            .map(|line| serde_json::from_str(&line).expect("a JSON line"))
    }

    /// The first stderr line holding `text`, or `None` once `timeout` passed.
    fn notice(&self, text: &str, timeout: Duration) -> Option<String> {
        first_line_with(&self.notices, text, timeout)
    }

    /// Every stderr line printed so far.
    fn notices_so_far(&self) -> Vec<String> {
        self.notices.try_iter().collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enroll(root: &Path, user: &str, code: &str, servers: &str) -> Device {
    let home = root.join(user);
    run_ok(vellum().arg("--home").arg(&home).args([
        "enroll", "--server", servers, "--user", user, "--code", code,
    ]));
    Device { home }
}

fn servers_of(device: &Device) -> Vec<String> {
    device
        .json(&["servers", "--json"])
        .into_iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn issue_13_a_client_given_a_dead_and_a_live_url_works_through_the_live_one() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let dead = dead_url();
    // --server repeated...
    let alice_home = root.path().join("alice");
    let enrolled = run_ok(vellum().arg("--home").arg(&alice_home).args([
        "enroll",
        "--server",
        &dead,
        "--server",
        &server.url,
        "--user",
        "alice",
        "--code",
        &server.add_user("alice"),
    ]));
    let warned = String::from_utf8(enrolled.stderr).unwrap();
    assert!(
        warned.contains(&format!("warning: {dead} did not answer")),
        "{warned}"
    );
    let alice = Device { home: alice_home };
    // ...or a comma-separated list, here from VELLUM_SERVER.
    let bob_home = root.path().join("bob");
    run_ok(
        vellum()
            .arg("--home")
            .arg(&bob_home)
            .env("VELLUM_SERVER", format!("{dead},{}", server.url))
            .args(["enroll", "--user", "bob", "--code", &server.add_user("bob")]),
    );
    let bob = Device { home: bob_home };
    // The node that answered first, so that no process waits on the dead one first.
    for device in [&alice, &bob] {
        assert_eq!(servers_of(device), vec![server.url.clone(), dead.clone()]);
    }
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    alice.ok(&["send", "ops", "through the live node"]);
    let synced = bob.json(&["sync", "--json"]);
    assert!(
        synced.iter().any(|m| m["text"] == "through the live node"),
        "{synced:?}"
    );
    assert_eq!(bob.texts("ops"), vec!["through the live node"]);
}

#[test]
fn issue_13_a_client_whose_server_dies_moves_to_the_next_node_with_the_same_data() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(root.path());
    let mut first = cluster.start(TcpListener::bind("127.0.0.1:0").unwrap());
    // The second node's address is taken now; it serves once the first is gone, so that
    // the requests it answers can only have come by failover.
    let second_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let second_url = format!("http://{}", second_listener.local_addr().unwrap());
    let servers = format!("{},{second_url}", first.url);
    let alice = enroll(
        root.path(),
        "alice",
        &cluster.add_user(&first.url, "alice"),
        &servers,
    );
    let bob = enroll(
        root.path(),
        "bob",
        &cluster.add_user(&first.url, "bob"),
        &servers,
    );
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    bob.ok(&["sync"]);
    alice.ok(&["send", "ops", "before the node died"]);

    let watcher = Watcher::start(&bob);
    assert!(
        watcher
            .wait_for("before the node died", Duration::from_secs(30))
            .is_some(),
        "watch showed the first message"
    );

    first.kill();
    let _second = cluster.start(second_listener);
    alice.ok(&["send", "ops", "after the node died"]);
    let after = watcher
        .wait_for("after the node died", Duration::from_secs(60))
        .expect("the watch moved to the second node");
    assert_eq!(after["sender"], "alice");
    // It said so, once, naming the node and no message content.
    let moved = format!("moved to {second_url}");
    assert!(
        watcher.notice(&moved, Duration::from_secs(10)).is_some(),
        "watch said where it moved"
    );
    let rest = watcher.notices_so_far();
    assert!(!rest.iter().any(|l| l.contains("moved to")), "{rest:?}");
    drop(watcher);
    // A watch started now opens the dead node's socket first, with no request before it
    // that could have found the second node for it.
    let late_watcher = Watcher::start(&bob);
    alice.ok(&["send", "ops", "to a watch started late"]);
    assert!(
        late_watcher
            .wait_for("to a watch started late", Duration::from_secs(60))
            .is_some(),
        "a new watch found the second node"
    );
    assert!(
        late_watcher
            .notice(&moved, Duration::from_secs(10))
            .is_some(),
        "the late watch said where it moved"
    );
    drop(late_watcher);

    // The second node serves the same log: every message once, in order, on both devices.
    let expected = vec![
        "before the node died",
        "after the node died",
        "to a watch started late",
    ];
    assert_eq!(bob.texts("ops"), expected);
    assert_eq!(alice.texts("ops"), expected);
    bob.ok(&["send", "ops", "bob through the second node"]);
    alice.ok(&["sync"]);
    assert_eq!(alice.texts("ops").len(), 4);
    // The list stays as given: the first node is tried first again by the next process.
    assert_eq!(servers_of(&alice), vec![first.url.clone(), second_url]);
}

#[test]
fn issue_13_servers_add_and_remove_refuse_bad_input_and_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let only = vec![server.url.clone()];
    assert_eq!(servers_of(&alice), only);
    for (bad, said) in [
        ("not a url", "is not a server URL"),
        ("ftp://node.example", "must start with http:// or https://"),
        ("127.0.0.1:7480", "must start with http:// or https://"),
        ("http://", "is not a server URL"),
        (
            "https://u:hunter2@node.example",
            "must not carry a user name or password",
        ),
        (server.url.as_str(), "already one of this device's servers"),
    ] {
        let err = alice.fails(&["servers", "add", bad]);
        assert!(err.contains(said), "{bad}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(servers_of(&alice), only, "{bad}: nothing changed");
    }
    let dead = dead_url();
    let err = alice.fails(&["servers", "add", &dead]);
    assert!(err.contains("cannot be reached"), "{err}");
    assert_eq!(servers_of(&alice), only);
    let err = alice.fails(&["servers", "remove", &dead]);
    assert!(err.contains("is not one of this device's servers"), "{err}");
    let err = alice.fails(&["servers", "remove", &server.url]);
    assert!(err.contains("only server"), "{err}");
    assert_eq!(servers_of(&alice), only);

    // The same node under another name answers this device: it may be added, and then the
    // first removed.
    let other_name = server.url.replace("127.0.0.1", "localhost");
    let added = alice.json(&["servers", "add", &other_name, "--json"]);
    assert_eq!(added[0]["added"], other_name.as_str());
    assert_eq!(
        servers_of(&alice),
        vec![server.url.clone(), other_name.clone()]
    );
    let listed = String::from_utf8(alice.ok(&["servers"]).stdout).unwrap();
    assert_eq!(listed, format!("{}\n{other_name}\n", server.url));
    alice.ok(&["servers", "remove", &format!("{}/", server.url)]);
    assert_eq!(servers_of(&alice), vec![other_name]);
    alice.ok(&["chat", "create", "notes"]);
    alice.ok(&["send", "notes", "through the node's other name"]);
    assert_eq!(alice.texts("notes"), vec!["through the node's other name"]);
}

/// A profile from before server lists (tests/fixtures/v0.1.0) keeps working with its one
/// URL, listed as the only node.
#[test]
fn issue_13_a_profile_with_one_server_url_still_works() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/v0.1.0");
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture.join("server/server.db"), data.join("server.db")).unwrap();
    std::fs::write(data.join("org.key"), [7u8; 32]).unwrap();
    std::fs::write(data.join("admin-token"), "fixture-admin-token\n").unwrap();
    let server = Server::start(root.path());
    let home = root.path().join("alice");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(fixture.join("alice/vellum.db"), home.join("vellum.db")).unwrap();
    // The fixture's server ran on another port.
    rusqlite::Connection::open(home.join("vellum.db"))
        .unwrap()
        .execute(
            "UPDATE profile SET value = ?1 WHERE key = 'server'",
            [server.url.as_bytes()],
        )
        .unwrap();
    let alice = Device { home };
    assert_eq!(servers_of(&alice), vec![server.url.clone()]);
    alice.ok(&["devices"]);
    alice.ok(&["send", "ops", "after the upgrade"]);
    assert!(alice.texts("ops").contains(&"after the upgrade".to_owned()));
}

/// Issue 13: `enroll` checks every URL before it spends the code: a malformed one, or a
/// node of another server (first or not), refuses the enrollment with an error naming it,
/// leaves the home as it was, and the code still works afterwards.
#[test]
fn issue_13_enroll_refuses_a_bad_or_foreign_node_before_spending_the_code() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let foreign = Server::start(&root.path().join("other-org"));
    let code = server.add_user("alice");
    let home = root.path().join("alice");
    let attempts = [
        (
            vec![server.url.clone(), "ftp://node.example".into()],
            "ftp://node.example".to_owned(),
        ),
        (
            vec![server.url.clone(), foreign.url.clone()],
            foreign.url.clone(),
        ),
        (
            vec![foreign.url.clone(), server.url.clone()],
            foreign.url.clone(),
        ),
    ];
    for (servers, named) in attempts {
        let err = run_fails(vellum().arg("--home").arg(&home).args([
            "enroll",
            "--server",
            &servers.join(","),
            "--user",
            "alice",
            "--code",
            &code,
        ]));
        assert!(err.contains(&named), "{servers:?}: {err}");
        assert!(!err.contains("unknown, expired"), "{servers:?}: {err}");
        assert!(!home.exists(), "{servers:?}: the home was left as it was");
    }
    let alice = enroll(root.path(), "alice", &code, &server.url);
    assert_eq!(servers_of(&alice), vec![server.url.clone()]);
}

/// Issue 13: a failed enrollment (here a spent code) leaves no profile behind in a home
/// that had none, and an error from a node names it.
#[test]
fn issue_13_a_failed_enroll_leaves_no_half_made_profile() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let home = root.path().join("alice");
    std::fs::create_dir(&home).unwrap();
    let err = run_fails(vellum().arg("--home").arg(&home).args([
        "enroll",
        "--server",
        &server.url,
        "--user",
        "alice",
        "--code",
        "spent-code",
    ]));
    assert!(err.contains(&server.url), "{err}");
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        0,
        "no lock or vellum.db left"
    );
}

/// Issue 13: a watch whose node goes away and comes back at the same URL says once, on
/// stderr, that it reconnected there (and not that it moved).
#[test]
fn issue_13_watch_says_when_it_reconnected() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(root.path());
    // Below the ephemeral range, so no outgoing connection takes the port while it is down.
    let listener = TcpListener::bind(("127.0.0.1", unused_fixed_port())).unwrap();
    let address = listener.local_addr().unwrap();
    let mut node = cluster.start(listener);
    let url = node.url.clone();
    let bob = enroll(root.path(), "bob", &cluster.add_user(&url, "bob"), &url);
    let watcher = Watcher::start(&bob);
    node.kill();
    // The dead node's socket may linger for a moment: bind again until the port is free.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listener = loop {
        match TcpListener::bind(address) {
            Ok(listener) => break listener,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("{address} stayed taken: {e}"),
        }
    };
    let _back = cluster.start(listener);
    let reconnected = format!("reconnected to {url}");
    assert!(
        watcher
            .notice(&reconnected, Duration::from_secs(60))
            .is_some(),
        "watch said it reconnected"
    );
    let rest = watcher.notices_so_far();
    assert!(!rest.iter().any(|l| l.contains("moved to")), "{rest:?}");
}
