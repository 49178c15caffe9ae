use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn vellum() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vellum"));
    cmd.env_remove("VELLUM_HOME").env("RUST_LOG", "warn");
    cmd
}

/// A `vellum server` process on a free loopback port, with its own data directory.
/// Its stdout and stderr go to files in `logs`, so tests can scan them too.
pub struct Server {
    pub url: String,
    pub listen: String,
    pub data: PathBuf,
    pub logs: PathBuf,
    /// Added to `vellum server`'s arguments (a node's `--database-url`, `--nats-url`).
    pub extra: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl Server {
    /// Starts on a free loopback port below the ephemeral range; restarts reuse it.
    pub fn start(root: &Path) -> Self {
        Self::start_with(
            root.join("server-data"),
            root.join("server-logs"),
            Vec::new(),
        )
    }

    /// A node of a deployment (issue 13): `data` may be shared with other nodes, `extra`
    /// names the shared database and NATS.
    pub fn start_with(data: PathBuf, logs: PathBuf, extra: Vec<String>) -> Self {
        let mut server = Self {
            url: String::new(),
            listen: String::new(),
            data,
            logs,
            extra,
            child: None,
            starts: 0,
        };
        std::fs::create_dir_all(&server.logs).unwrap();
        // Another test may have probed the same port in the moment between our probe and
        // the server's bind: then the next port.
        for _ in 0..20 {
            server.listen = format!("127.0.0.1:{}", unused_fixed_port());
            match server.spawn() {
                Ok(()) => return server,
                Err(e) if e.contains(ADDRESS_IN_USE) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port for the server");
    }

    /// Every line the server wrote to stderr, all starts.
    pub fn stderr(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.logs.join(format!("stderr-{n}"))).unwrap_or_default()
            })
            .collect()
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.starts += 1;
        let stdout_path = self.logs.join(format!("stdout-{}", self.starts));
        let stdout = std::fs::File::create(&stdout_path).unwrap();
        let stderr =
            std::fs::File::create(self.logs.join(format!("stderr-{}", self.starts))).unwrap();
        let child = vellum()
            .args([
                "server",
                "--min-reset-wait",
                "1s",
                "--listen",
                &self.listen,
                "--data",
            ])
            .arg(&self.data)
            .args(&self.extra)
            // The most verbose level: even debug logs must not carry plaintext.
            .env("RUST_LOG", "debug")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // The first line of stdout names the bound address once the listener is up.
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let stderr =
                    std::fs::read_to_string(self.logs.join(format!("stderr-{}", self.starts)));
                return Err(format!(
                    "the server exited ({status}): {}",
                    stderr.unwrap_or_default()
                ));
            }
            let printed = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = printed.lines().next().filter(|_| printed.contains('\n')) {
                let url = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap_or_else(|| panic!("no address on the first line: {line:?}"));
                break url.to_owned();
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        self.listen = url.trim_start_matches("http://").to_owned();
        self.url = url;
        Ok(())
    }

    /// SIGKILL: no shutdown handler runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL, then a start on the same address (clients hold its URL).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn token_file(&self) -> PathBuf {
        self.data.join("admin-token")
    }

    /// `admin user add NAME`: the enrollment code (last stdout line).
    pub fn add_user(&self, name: &str) -> String {
        let out = run_ok(
            vellum()
                .args(["admin", "--server", &self.url, "--token-file"])
                .arg(self.token_file())
                .args(["user", "add", name]),
        );
        last_line(&out)
    }

    pub fn add_device(&self, user: &str) -> String {
        let out = run_ok(
            vellum()
                .args(["admin", "--server", &self.url, "--token-file"])
                .arg(self.token_file())
                .args(["device", "add", user]),
        );
        last_line(&out)
    }
}

const ADDRESS_IN_USE: &str = "Address already in use";

/// A loopback port that is free now, below the kernel's ephemeral range: a server killed
/// and restarted on it must find it free again, and an ephemeral port could meanwhile be
/// taken by any outgoing connection of the tests running beside it (PostgreSQL, NATS, CLI
/// requests), which once failed a restart in CI.
pub fn unused_fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Linux's default ephemeral range is 32768-60999; read it where the kernel says.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range.split_whitespace().map(|b| b.parse::<u32>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32768, 60999));
    // Below the range if there is room there, else above it.
    let (low, high) = if ephemeral.0 >= 1024 + 2000 {
        (ephemeral.0.saturating_sub(12_000).max(1024), ephemeral.0)
    } else if ephemeral.1 + 2000 <= 65_535 {
        (ephemeral.1 + 1, 65_536)
    } else {
        panic!("no loopback ports outside the ephemeral range {ephemeral:?}")
    };
    let span = high - low;
    // One walk per test process, starting where its process id points (spread, so that
    // processes started together start apart).
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A device profile directory driven through the CLI.
pub struct Device {
    pub home: PathBuf,
}

/// `vellum --home HOME enroll --server URL --user USER --code CODE`, not yet run.
pub fn enroll_command(home: &Path, server_url: &str, user: &str, code: &str) -> Command {
    let mut cmd = vellum();
    cmd.arg("--home").arg(home).args([
        "enroll", "--server", server_url, "--user", user, "--code", code,
    ]);
    cmd
}

impl Device {
    pub fn enroll(server: &Server, root: &Path, dir: &str, user: &str, code: &str) -> Self {
        let home = root.join(dir);
        run_ok(&mut enroll_command(&home, &server.url, user, code));
        Self { home }
    }

    /// Another device of `user`, enrolled with a fresh code and approved by `by` in the
    /// three steps of issue 9 (until then it is pending and receives nothing).
    pub fn approved(server: &Server, root: &Path, dir: &str, user: &str, by: &Device) -> Self {
        let home = root.join(dir);
        let out = run_ok(vellum().arg("--home").arg(&home).args([
            "enroll",
            "--server",
            &server.url,
            "--user",
            user,
            "--code",
            &server.add_device(user),
        ]));
        let (device, id) = (Self { home }, last_line(&out));
        by.ok(&["devices", "approve", &id]);
        let code = device
            .json(&["devices", "--json"])
            .into_iter()
            .find(|d| d["this_device"] == true)
            .and_then(|d| d["code"].as_str().map(str::to_owned))
            .expect("the new device shows its code");
        by.ok(&["devices", "approve", &id, "--code", &code]);
        // Step 4: the new device takes its user's identity key.
        device.ok(&["devices"]);
        device
    }

    pub fn new_user(server: &Server, root: &Path, user: &str) -> Self {
        let code = server.add_user(user);
        Self::enroll(server, root, user, user, &code)
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = vellum();
        cmd.arg("--home").arg(&self.home);
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        run_ok(self.cmd().args(args))
    }

    pub fn fails(&self, args: &[&str]) -> String {
        run_fails(self.cmd().args(args))
    }

    /// Runs a `--json` command and parses each stdout line; a list command's array (issue
    /// 10) gives its elements.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let out = self.ok(args);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .flat_map(|v: Value| match v {
                Value::Array(items) => items,
                other => vec![other],
            })
            .collect()
    }

    /// The texts members wrote (not events) in the chat's history.
    pub fn texts(&self, chat: &str) -> Vec<String> {
        self.json(&["history", chat, "--json"])
            .iter()
            .filter(|m| m["kind"] == "text")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn events(&self, chat: &str) -> Vec<String> {
        self.json(&["history", chat, "--json"])
            .iter()
            .filter(|m| m["kind"] == "event")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn members(&self, chat: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .json(&["chat", "members", chat, "--json"])
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect();
        users.sort();
        users.dedup();
        users
    }
}

/// Runs a command to completion, killing it (and failing the test) after a minute, so a
/// hang is a clear failure rather than a stuck CI run.
pub fn output(cmd: &mut Command) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{cmd:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Runs a command that must fail with one clear line on stderr; returns that line.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    lines[0].to_owned()
}

pub fn last_line(out: &Output) -> String {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

/// Reads lines from a child's stdout until `want` matches one, or the deadline passes.
pub fn wait_for_line(
    reader: &mut BufReader<std::process::ChildStdout>,
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if want(line.trim()) {
            return Some(line.trim().to_owned());
        }
    }
    None
}

pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A marker that appears nowhere by chance.
pub fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("MARKER-{tag}-{nanos:x}-{}", std::process::id())
}

/// A runtime for the few steps a test takes through the client library itself.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
