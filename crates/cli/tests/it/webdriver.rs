//! A minimal W3C WebDriver client (over reqwest, one call at a time) for the console's browser tests:
//! Debian's `chromedriver` driving headless `chromium`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` process on a free loopback port.
pub struct Driver {
    url: String,
    child: Child,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Driver {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
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
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            runtime: crate::harness::runtime(),
        };
        crate::records::wait_until("chromedriver ready", || {
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
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let answer = self
            .send(self.http.post(format!("{}/session", self.url)).json(&caps))
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser { driver: self, id }
    }
}

fn chromium() -> &'static str {
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

pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

impl Browser<'_> {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver.url, self.id);
        let mut request = self.driver.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = self.driver.send(request).unwrap();
        answer["value"].clone()
    }

    pub fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The element `css`, waiting for it to appear (a page loading after a click).
    fn element(&self, css: &str) -> String {
        let mut found = None;
        crate::records::wait_until(&format!("element {css}"), || {
            found = self.find(css);
            found.is_some()
        });
        found.unwrap()
    }

    pub fn has(&self, css: &str) -> bool {
        self.find(css).is_some()
    }

    pub fn fill(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        );
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses `file` in the file input `css`.
    pub fn upload(&self, css: &str, file: &Path) {
        let id = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": file.display().to_string() })),
        );
    }

    /// The DOM property `name` of `css` (an input's `value`, an image's `naturalWidth`).
    pub fn property(&self, css: &str, name: &str) -> Value {
        let id = self.element(css);
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/property/{name}"),
            None,
        )
    }

    /// Selects characters `start..end` (UTF-16 units) of the first text node of `css`, as a
    /// person dragging the mouse over them would.
    pub fn select_text(&self, css: &str, start: u32, end: u32) {
        let script = "var n = document.querySelector(arguments[0]).firstChild; \
            var r = document.createRange(); r.setStart(n, arguments[1]); r.setEnd(n, arguments[2]); \
            var s = document.getSelection(); s.removeAllRanges(); s.addRange(r);";
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [css, start, end] })),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        );
    }

    /// The visible text of `css`, once it appears.
    pub fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the text of `css` contains `want`; returns it.
    pub fn wait_text(&self, css: &str, want: &str) -> String {
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = self.find(css) {
                last = self
                    .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if last.contains(want) {
                    return last;
                }
            }
            if Instant::now() > deadline {
                let page = self.find("body").map(|id| {
                    self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                });
                panic!("{css} never said {want:?}; last: {last:?}; the page: {page:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self.driver.send(
            self.driver
                .http
                .delete(format!("{}/session/{}", self.driver.url, self.id)),
        );
    }
}
