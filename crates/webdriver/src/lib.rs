//! A minimal W3C WebDriver client (over reqwest, one call at a time) for Vellum's browser
//! tests and benchmarks: Debian's `chromedriver` driving headless `chromium`.
//!
//! Failures panic with what was asked and what the driver answered: this drives tests and
//! benchmark runs, where a panic with context is the report. Calls block; from inside a
//! multi-threaded tokio runtime wrap them in `tokio::task::block_in_place`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::Method;
use serde_json::{json, Value};

/// The W3C key of an element reference in WebDriver's JSON.
pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the `wait_*` helpers wait before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `done` until it holds; panics naming `what` after `within`.
pub fn wait_until_within(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// [`wait_until_within`] the usual [`WAIT`].
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_within(what, WAIT, done)
}

/// A `chromedriver` process on a free loopback port.
pub struct Driver {
    url: String,
    child: Child,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// How a browser starts: its profile directory and, optionally, where downloads go.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Chromium's `--user-data-dir`: one person at one machine.
    pub dir: PathBuf,
    /// Chromium's download directory (no prompt); `None`: Chromium's default.
    pub downloads: Option<PathBuf>,
    /// The window size, `WIDTH,HEIGHT`.
    pub window: String,
}

impl Profile {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            downloads: None,
            window: "1280,900".into(),
        }
    }

    /// Downloads go to `dir` without asking.
    pub fn downloads(mut self, dir: &Path) -> Self {
        self.downloads = Some(dir.to_owned());
        self
    }

    pub fn window(mut self, width: u32, height: u32) -> Self {
        self.window = format!("{width},{height}");
        self
    }
}

impl Driver {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free loopback port")
            .local_addr()
            .expect("a bound address")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is installed");
        let driver = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("an HTTP client"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        };
        wait_until("chromedriver ready", || {
            driver
                .send(driver.http.get(format!("{}/status", driver.url)))
                .is_ok_and(|v| v["value"]["ready"] == true)
        });
        driver
    }

    /// Sends `request` and reads its JSON answer.
    fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, reqwest::Error> {
        self.runtime
            .block_on(async { request.send().await?.json::<Value>().await })
    }

    /// A new browser with its own profile (cookies): one person at one machine.
    pub fn browser(&self, profile: &Path) -> Browser<'_> {
        self.browser_with(&Profile::new(profile))
    }

    /// A new browser as `profile` says.
    pub fn browser_with(&self, profile: &Profile) -> Browser<'_> {
        let mut options = json!({
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", format!("--window-size={}", profile.window),
                     "--no-first-run", "--no-default-browser-check", "--disable-sync",
                     "--disable-background-networking", "--disable-component-update",
                     "--password-store=basic",
                     format!("--user-data-dir={}", profile.dir.display())]
        });
        if let Some(downloads) = &profile.downloads {
            options["prefs"] = json!({
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            });
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
        }}});
        let answer = self
            .send(self.http.post(format!("{}/session", self.url)).json(&caps))
            .expect("chromedriver answers");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            driver: self,
            id,
            profile: profile.dir.clone(),
            closed: false,
        }
    }
}

/// Debian's Chromium binary.
pub fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is installed")
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (a WebDriver session over its own profile).
pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
    profile: PathBuf,
    closed: bool,
}

/// An error a WebDriver command answered (`error`, `message`).
#[derive(Debug, Clone)]
pub struct CommandError {
    pub error: String,
    pub message: String,
}

impl Browser<'_> {
    /// A command; `Err` with the driver's error when it answers one.
    pub fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CommandError> {
        let url = format!("{}/session/{}{path}", self.driver.url, self.id);
        let mut request = self.driver.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = self.driver.send(request).map_err(|e| CommandError {
            error: "transport".into(),
            message: e.to_string(),
        })?;
        let value = answer["value"].clone();
        match value["error"].as_str() {
            Some(error) => Err(CommandError {
                error: error.to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            }),
            None => Ok(value),
        }
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method.clone(), path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {}: {}", e.error, e.message))
    }

    /// The profile directory this browser runs in.
    pub fn profile(&self) -> &Path {
        &self.profile
    }

    pub fn go(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call(Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, now.
    pub fn find(&self, css: &str) -> Option<String> {
        self.try_call(
            Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .and_then(|found| found[ELEMENT].as_str().map(str::to_owned))
    }

    /// Every element matching `css`, now.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        self.call(
            Method::POST,
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    }

    /// How many elements match `css`, now.
    pub fn count(&self, css: &str) -> usize {
        self.execute(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The element `css`, waiting for it to appear (a page loading after a click).
    pub fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.find(css) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for element {css} at {}; the page: {:?}",
                    self.url(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn has(&self, css: &str) -> bool {
        self.find(css).is_some()
    }

    /// Waits until `css` matches something.
    pub fn wait_for(&self, css: &str) {
        self.element(css);
    }

    /// Waits until nothing matches `css` (within `within`).
    pub fn wait_gone(&self, css: &str, within: Duration) {
        wait_until_within(&format!("{css} to leave the page"), within, || {
            self.count(css) == 0
        });
    }

    pub fn fill(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        );
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Types `text` into `css` without clearing it first (`\u{E007}` is Enter, `\u{E008}`
    /// Shift).
    pub fn type_keys(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses `file` in the file input `css`.
    pub fn upload(&self, css: &str, file: &Path) {
        let id = self.element(css);
        self.call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": file.display().to_string() })),
        );
    }

    /// The DOM property `name` of `css` (an input's `value`, an image's `naturalWidth`).
    pub fn property(&self, css: &str, name: &str) -> Value {
        let id = self.element(css);
        self.call(Method::GET, &format!("/element/{id}/property/{name}"), None)
    }

    /// The attribute `name` of `css`.
    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let id = self.element(css);
        self.call(
            Method::GET,
            &format!("/element/{id}/attribute/{name}"),
            None,
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Selects characters `start..end` (UTF-16 units) of the first text node of `css`, as a
    /// person dragging the mouse over them would.
    pub fn select_text(&self, css: &str, start: u32, end: u32) {
        let script = "var n = document.querySelector(arguments[0]).firstChild; \
            var r = document.createRange(); r.setStart(n, arguments[1]); r.setEnd(n, arguments[2]); \
            var s = document.getSelection(); s.removeAllRanges(); s.addRange(r);";
        self.execute(script, json!([css, start, end]));
    }

    /// A real click (the element must be visible and not covered).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        );
    }

    /// A click dispatched by script: for controls shown only on hover or focus (a
    /// message's actions), which WebDriver's real click refuses while they are hidden.
    pub fn js_click(&self, css: &str) {
        self.element(css);
        self.execute(
            "document.querySelector(arguments[0]).click();",
            json!([css]),
        );
    }

    /// The visible text of `css`, once it appears.
    pub fn text(&self, css: &str) -> String {
        // A page that re-renders or navigates between the find and the read leaves a stale
        // reference (or, mid-navigation, no context to read it in): find it again (a few
        // times) rather than fail on the page's timing.
        let mut attempts = 0;
        loop {
            let id = self.element(css);
            match self.try_call(Method::GET, &format!("/element/{id}/text"), None) {
                Ok(value) => return value.as_str().unwrap_or_default().to_owned(),
                Err(e) if attempts < 5 => {
                    attempts += 1;
                    eprintln!("reading {css} again after: {}: {}", e.error, e.message);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "WebDriver GET /element/{id}/text: {}: {}",
                    e.error, e.message
                ),
            }
        }
    }

    /// The `textContent` of every element matching `css`, now (hidden ones included).
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);",
            json!([css]),
        )
        .as_array()
        .map(|all| {
            all.iter()
                .map(|t| t.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
    }

    /// The whole page's `textContent` (hidden text included).
    pub fn page_text(&self) -> String {
        self.execute(
            "return document.documentElement ? document.documentElement.textContent : '';",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text of `css` contains `want`; returns it.
    pub fn wait_text(&self, css: &str, want: &str) -> String {
        let mut last = String::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(id) = self.find(css) {
                if let Ok(text) = self.try_call(Method::GET, &format!("/element/{id}/text"), None) {
                    last = text.as_str().unwrap_or_default().to_owned();
                    if last.contains(want) {
                        return last;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{css} never said {want:?}; last: {last:?}; the page: {:?}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` whose last argument is the callback that ends it; the value it is
    /// called with. The script timeout is the session's (see [`Browser::script_timeout`]).
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// How long [`Browser::execute_async`] may run.
    pub fn script_timeout(&self, timeout: Duration) {
        self.call(
            Method::POST,
            "/timeouts",
            Some(json!({ "script": timeout.as_millis() as u64 })),
        );
    }

    /// A Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// Accepts the page's `alert`/`confirm` dialog if one is open; whether one was.
    pub fn accept_dialog(&self) -> bool {
        self.try_call(Method::POST, "/alert/accept", Some(json!({})))
            .is_ok()
    }

    pub fn cookies(&self) -> Vec<Value> {
        self.call(Method::GET, "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call(Method::GET, "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("a base64 screenshot")
    }

    /// Ends the session: Chromium quits and writes what it keeps to its profile.
    pub fn quit(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.driver.send(
                self.driver
                    .http
                    .delete(format!("{}/session/{}", self.driver.url, self.id)),
            );
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The process ids of the Chromium renderers running over `profile` (its pages' processes):
/// the `--type=renderer` descendants of the processes started with its `--user-data-dir`.
pub fn renderer_pids(profile: &Path) -> Vec<u32> {
    let flag = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent, command line) of every process. Chromium's children rewrite their
    // command line into one space-separated string (setproctitle), so it is read as text,
    // NULs made spaces.
    let all: Vec<(u32, u32, String)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&cmd).replace('\0', " ");
            Some((pid, parent, format!("{} ", line.trim_end())))
        })
        .collect();
    let mut ours: Vec<u32> = all
        .iter()
        .filter(|(_, _, line)| line.contains(&format!("{flag} ")))
        .map(|(pid, _, _)| *pid)
        .collect();
    // Renderers are forked by a zygote: follow the process tree down from the browser.
    loop {
        let more: Vec<u32> = all
            .iter()
            .filter(|(pid, parent, _)| ours.contains(parent) && !ours.contains(pid))
            .map(|(pid, _, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        ours.extend(more);
    }
    all.iter()
        .filter(|(pid, _, line)| ours.contains(pid) && line.contains(" --type=renderer "))
        .map(|(pid, _, _)| *pid)
        .collect()
}

/// A process's resident memory in KiB (`VmRSS`), if it still runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
