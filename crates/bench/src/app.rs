//! `vellum app` (issue 12): the window's figures in real headless Chromium, against a real
//! `vellum server` process and a real `vellum app` process (bob), with alice sending through
//! the client library in this process.
//!
//! - Receive to screen: for each of N messages, the page's own clock (`performance.timeOrigin
//!   + performance.now()`, Unix ms with a fraction) when a
//!   MutationObserver sees the message's node, against (1) when the page got the app's
//!   `message` event (the app has stored the row by then: the window's own part), (2) the
//!   row's `received_at` (the delivery server's append: adds the WebSocket wake and sync), and
//!   (3) alice's call to `send` (end to end). One machine, one clock.
//! - Opening a chat of M messages: from the click on it in the chat list until its first
//!   screen of messages is in the DOM and a frame has been painted.
//! - The tab's memory after it: the renderer's resident memory (/proc) and the JS heap
//!   (CDP `Performance.getMetrics` through chromedriver).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use tokio::runtime::Handle;
use vellum_webdriver::{renderer_pids, rss_kib, wait_until_within, Browser, Driver, Profile};

use crate::load::{start_server, vellum_binary};

/// Runs before the page's own script: notes when each `message` event reaches the page.
const EVENT_CLOCK: &str = r#"(function () {
  var Real = window.EventSource;
  window.__sse = {};
  function Wrapped(url, options) {
    var source = new Real(url, options);
    source.addEventListener('message', function (e) {
      try {
        var d = JSON.parse(e.data);
        if (d.type === 'message' && d.message && !(d.message.id in window.__sse)) window.__sse[d.message.id] = performance.timeOrigin + performance.now();
      } catch (_) {}
    });
    return source;
  }
  Wrapped.prototype = Real.prototype;
  window.EventSource = Wrapped;
})();"#;

/// Notes when each message node first appears in the DOM.
const DOM_CLOCK: &str = r#"
  window.__dom = window.__dom || {};
  if (!window.__observer) {
    window.__observer = new MutationObserver(function (records) {
      var now = performance.timeOrigin + performance.now();
      records.forEach(function (r) {
        r.addedNodes.forEach(function (n) {
          if (n.nodeType !== 1) return;
          var found = n.matches('[data-test=message]') ? [n] : Array.from(n.querySelectorAll('[data-test=message]'));
          found.forEach(function (m) { var id = m.getAttribute('data-id'); if (!(id in window.__dom)) window.__dom[id] = now; });
        });
      });
    });
    window.__observer.observe(document.body, {childList: true, subtree: true});
  }
"#;

/// A `vellum app --no-open` process over `home`.
struct AppProcess {
    child: Child,
    launch: String,
}

impl AppProcess {
    fn start(home: &Path) -> Result<Self> {
        let mut child = Command::new(vellum_binary()?)
            .arg("--home")
            .arg(home)
            .args(["app", "--no-open", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting vellum app")?;
        let mut stdout = BufReader::new(child.stdout.take().context("app stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let Some(launch) = first.split_whitespace().find(|w| w.starts_with("http://")) else {
            bail!("the app's first line names no URL: {first:?}");
        };
        let launch = launch.to_owned();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Ok(Self { child, launch })
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `fetch(path)` from the page (its session cookie): the JSON answer.
fn page_get(browser: &Browser, path: &str) -> Result<Value> {
    let answer = browser.execute_async(
        "var done = arguments[arguments.length - 1]; \
         fetch(arguments[0]).then(function (r) { return r.json(); }) \
           .then(function (j) { done({ok: j}); }).catch(function (e) { done({error: String(e)}); });",
        json!([path]),
    );
    match answer.get("ok") {
        Some(ok) => Ok(ok.clone()),
        None => bail!("GET {path}: {answer}"),
    }
}

/// The newest message text of `chat` as the app has it.
fn newest_text(browser: &Browser, chat: &str) -> Result<Option<String>> {
    let page = page_get(browser, &format!("/api/chats/{chat}/messages?limit=1"))?;
    Ok(page["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["text"].as_str())
        .map(str::to_owned))
}

fn chat_item(chat: &str) -> String {
    format!("[data-test=chat-item][data-chat-id=\"{chat}\"]")
}

/// Clicks `chat` in the list and waits until its conversation shows a message saying
/// `last`, then for a painted frame; the milliseconds from the click (page clock) and how
/// many messages the DOM holds.
fn open_chat(browser: &Browser, chat: &str, last: &str) -> Result<(f64, u64)> {
    let answer = browser.execute_async(
        r#"var done = arguments[arguments.length - 1];
        var chat = arguments[0], last = arguments[1];
        var item = document.querySelector('[data-test=chat-item][data-chat-id="' + chat + '"]');
        if (!item) { done({error: 'no chat item'}); return; }
        function ready() {
          var conv = document.querySelector('[data-test=conversation][data-chat-id="' + chat + '"]');
          if (!conv) return null;
          var msgs = conv.querySelectorAll('[data-test=message]');
          for (var i = msgs.length - 1; i >= 0 && i >= msgs.length - 5; i--) {
            var t = msgs[i].querySelector('[data-test=message-text]');
            if (t && t.textContent.indexOf(last) >= 0) return msgs.length;
          }
          return null;
        }
        var t0 = performance.now();
        var finished = false;
        function finish(count) {
          if (finished) return; finished = true; observer.disconnect();
          requestAnimationFrame(function () { setTimeout(function () { done({ms: performance.now() - t0, count: count}); }, 0); });
        }
        var observer = new MutationObserver(function () { var n = ready(); if (n) finish(n); });
        observer.observe(document.body, {childList: true, subtree: true, characterData: true});
        item.click();
        var n = ready(); if (n) finish(n);"#,
        json!([chat, last]),
    );
    let (Some(ms), Some(count)) = (answer["ms"].as_f64(), answer["count"].as_u64()) else {
        bail!("opening {chat}: {answer}");
    };
    Ok((ms, count))
}

/// The tab's renderer resident memory (MiB, the largest renderer of the profile) and the JS
/// heap in use (MiB) after a garbage collection, and the DOM's node count.
fn tab_memory(browser: &Browser, profile: &Path) -> Result<(f64, f64, f64)> {
    browser.cdp("HeapProfiler.collectGarbage", json!({}));
    browser.cdp("Performance.enable", json!({}));
    let metrics = browser.cdp("Performance.getMetrics", json!({}));
    let metric = |name: &str| {
        metrics["metrics"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["name"] == name))
            .and_then(|m| m["value"].as_f64())
    };
    let heap = metric("JSHeapUsedSize").context("no JSHeapUsedSize")? / 1_048_576.0;
    let nodes = metric("Nodes").unwrap_or(f64::NAN);
    let rss = renderer_pids(profile)
        .into_iter()
        .filter_map(rss_kib)
        .max()
        .context("no renderer process found")? as f64
        / 1024.0;
    Ok((rss, heap, nodes))
}

/// Scrolls the conversation to its start until `want` messages are in the DOM (or no more
/// come for 5 s, or a minute has gone: under the WebDriver client's HTTP timeout); how many
/// are, and how long it took.
fn load_all(browser: &Browser, want: u64) -> (u64, f64) {
    let answer = browser.execute_async(
        r#"var done = arguments[arguments.length - 1]; var want = arguments[0];
        var box = document.querySelector('[data-test=messages]');
        var t0 = performance.now(), last = -1, still = performance.now();
        function step() {
          var n = box.querySelectorAll('[data-test=message]').length;
          if (n !== last) { last = n; still = performance.now(); }
          if (n >= want || performance.now() - still > 5000 || performance.now() - t0 > 60000) { done({count: n, ms: performance.now() - t0}); return; }
          box.scrollTop = 0;
          box.dispatchEvent(new Event('scroll'));
          setTimeout(step, 20);
        }
        step();"#,
        json!([want]),
    );
    (
        answer["count"].as_u64().unwrap_or(0),
        answer["ms"].as_f64().unwrap_or(f64::NAN),
    )
}

/// The `app` scenario: `samples` live messages, then a chat of `fill` messages.
pub fn app_figures(handle: Handle, samples: usize, fill: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let (_server, org) = start_server(root)?;
    let mut alice = handle.block_on(org.client("alice"))?;
    drop(handle.block_on(org.client("bob"))?);
    let bob_home = root.join("bob");
    let bob = ["bob".to_owned()];
    let live = handle.block_on(alice.create_chat("live", &bob, Default::default(), None))?;
    let big = handle.block_on(alice.create_chat("big", &bob, Default::default(), None))?;
    let app = AppProcess::start(&bob_home)?;

    let driver = Driver::start();
    let profile_dir = root.join("chromium");
    let browser = driver.browser_with(&Profile::new(&profile_dir).window(1280, 900));
    browser.script_timeout(Duration::from_secs(300));
    browser.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": EVENT_CLOCK }),
    );
    browser.go(&app.launch);
    for chat in [&live, &big] {
        wait_until_within("the chats in bob's window", Duration::from_secs(60), || {
            browser.has(&chat_item(chat))
        });
    }
    browser.click(&chat_item(&live));
    browser.wait_for("[data-test=compose]");
    browser.execute(DOM_CLOCK, json!([]));

    // (a) receive to screen.
    for i in 0..5 {
        handle.block_on(alice.send(&live, &format!("warm-up {i}")))?;
    }
    let mut sent = Vec::new();
    for i in 0..samples {
        let text = format!("live {i}");
        let at = now_ms();
        let row = handle.block_on(alice.send(&live, &text))?;
        let seen = browser.execute_async(
            "var done = arguments[arguments.length - 1]; var id = arguments[0]; \
             var t0 = Date.now(); \
             (function poll() { \
               if (id in window.__dom) done({dom: window.__dom[id], sse: window.__sse[id]}); \
               else if (Date.now() - t0 > 30000) done({error: 'not shown in 30 s'}); \
               else setTimeout(poll, 2); })();",
            json!([row.id]),
        );
        ensure!(seen.get("error").is_none(), "message {i}: {seen}");
        sent.push((row.id, at, seen));
    }
    let listed = page_get(&browser, &format!("/api/chats/{live}/messages?limit=200"))?;
    let received: std::collections::HashMap<String, i64> = listed["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_str()?.to_owned(), m["received_at"].as_i64()?)))
        .collect();
    let (mut render, mut from_server, mut end_to_end) = (Vec::new(), Vec::new(), Vec::new());
    for (id, at, seen) in &sent {
        let dom = seen["dom"].as_f64().context("no DOM time")?;
        if let Some(sse) = seen["sse"].as_f64() {
            render.push(dom - sse);
        }
        if let Some(r) = received.get(id) {
            from_server.push(dom - *r as f64);
        }
        end_to_end.push(dom - at);
    }
    println!("\n`vellum app` in headless Chromium (bob's window; alice sends one message at a time through the client library): {samples} messages");
    println!("| measure | p50 ms | p99 ms | max ms | samples |");
    println!("|---|---|---|---|---|");
    for (name, v) in [
        (
            "app event reaches the page → message node in the DOM",
            render,
        ),
        (
            "delivery server's append (`received_at`) → DOM (adds WebSocket wake, sync, decrypt, store)",
            from_server,
        ),
        ("alice's `send` call → DOM (end to end)", end_to_end),
    ] {
        let v = sorted(v);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} |",
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        );
    }

    // (b) a chat of `fill` messages, filled while the window shows the other chat.
    let start = Instant::now();
    let mut last = String::new();
    for i in 0..fill {
        last = format!("fill {i} of {fill}: the quick brown fox jumps over the lazy dog");
        handle.block_on(alice.send(&big, &last))?;
    }
    let filled = start.elapsed();
    let caught_up = Instant::now();
    wait_until_within(
        "bob's app holds every message",
        Duration::from_secs(600),
        || newest_text(&browser, &big).is_ok_and(|t| t.as_deref() == Some(last.as_str())),
    );
    let behind = caught_up.elapsed();
    // The API's page from a chat this size, as the page asks for it.
    let mut api = Vec::new();
    for _ in 0..10 {
        let t = browser.execute_async(
            "var done = arguments[arguments.length - 1]; var t0 = performance.now(); \
             fetch(arguments[0]).then(function (r) { return r.json(); }) \
               .then(function () { done(performance.now() - t0); });",
            json!([format!("/api/chats/{big}/messages?limit=50")]),
        );
        api.push(t.as_f64().unwrap_or(f64::NAN));
    }
    let mut opens = Vec::new();
    let mut shown = 0;
    for run in 0..5 {
        if run > 0 {
            open_chat(&browser, &live, &format!("live {}", samples - 1))?;
        }
        let (ms, count) = open_chat(&browser, &big, &last)?;
        opens.push(ms);
        shown = count;
    }
    let first_open = opens[0];
    let opens = sorted(opens);
    let api = sorted(api);
    let (rss, heap, nodes) = tab_memory(&browser, &profile_dir)?;
    println!("\nopening a chat of {fill} messages (filled by alice: {fill} sends in {:.1} s, {:.0} msg/s; bob's app caught up {:.1} s after the last send)",
        filled.as_secs_f64(),
        fill as f64 / filled.as_secs_f64(),
        behind.as_secs_f64());
    println!("| measure | value |");
    println!("|---|---|");
    println!("| click → first screen rendered, first open | {first_open:.1} ms |");
    println!(
        "| click → first screen rendered, median of 5 (p100) | {:.1} ms ({:.1} ms) |",
        percentile(&opens, 0.5),
        opens.last().copied().unwrap_or(f64::NAN)
    );
    println!("| messages in the DOM on the first screen | {shown} |");
    println!(
        "| `GET /api/chats/{{id}}/messages?limit=50` from the page, median of 10 | {:.1} ms |",
        percentile(&api, 0.5)
    );
    println!("| tab after opening it: renderer RSS / JS heap used / DOM nodes | {rss:.1} MiB / {heap:.1} MiB / {nodes:.0} |");
    let (loaded, load_ms) = load_all(&browser, fill as u64);
    let (rss_all, heap_all, nodes_all) = tab_memory(&browser, &profile_dir)?;
    println!("| scrolled back towards the start (a minute at most): messages in the DOM, time | {loaded} / {:.1} s |", load_ms / 1000.0);
    println!("| tab after that: renderer RSS / JS heap used / DOM nodes | {rss_all:.1} MiB / {heap_all:.1} MiB / {nodes_all:.0} |");
    drop(browser);
    drop(driver);
    drop(app);
    Ok(())
}
