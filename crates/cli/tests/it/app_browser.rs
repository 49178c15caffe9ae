//! Issue 12: `vellum app` in real headless Chromium. Two `vellum app` processes (alice and
//! bob) against a real server, each driven in its own browser profile: a chat made with the
//! member picker, messages, a reply, a reaction, an edit, a delete for everyone, a file sent
//! and downloaded, and timers running out on both screens; then a scan of both browser
//! profiles (their Downloads included) and both device directories for every byte of what
//! expired. And the window's doors: no launch secret, a used one, another origin.
//!
//! `VELLUM_SCREENSHOT=path.png` also saves alice's conversation screen (e.g. to retake docs/app.png).

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vellum_webdriver::{wait_until, wait_until_within, Browser, Driver, Profile};

use crate::harness::*;

/// `phrase` made unique to this run (a short tag after it): text a person might write,
/// for the screenshot's sake, that appears nowhere by chance.
fn said(phrase: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Mixed so that the run (time, process) and the call (n) all move the short tag.
    let tag = (nanos ^ u64::from(std::process::id()).rotate_left(32))
        .wrapping_add(u64::from(n))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{phrase} ({:06x})", tag >> 40)
}

/// The per-message timer of what must vanish: long enough for bob to download the file on a
/// loaded two-core machine first, short enough to keep the test quick.
const TIMER_SECS: u64 = 12;

/// A `vellum app --no-open` process for one device; the URL its first line printed.
struct App {
    child: Child,
    launch: String,
    /// `http://127.0.0.1:PORT`
    origin: String,
    home: PathBuf,
    /// Its stderr (RUST_LOG=debug), scanned with the rest.
    stderr: PathBuf,
}

impl App {
    fn start(device: &Device, logs: &Path, name: &str) -> Self {
        let stderr_path = logs.join(format!("app-{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = device
            .cmd()
            .args(["app", "--no-open", "--listen", "127.0.0.1:0"])
            // The most verbose level: even debug logs must not carry plaintext (scanned below).
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let line = wait_for_line(&mut stdout, |_| true, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("`vellum app` for {name} printed no first line"));
        let launch = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL on the first line: {line:?}"))
            .to_owned();
        assert!(
            launch.starts_with("http://127.0.0.1:") && launch.contains("secret="),
            "{launch}"
        );
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        let rest = launch.trim_start_matches("http://");
        let origin = format!("http://{}", &rest[..rest.find('/').unwrap_or(rest.len())]);
        Self {
            child,
            launch,
            origin,
            home: device.home.clone(),
            stderr: stderr_path,
        }
    }

    /// The app's browser profile (`HOME/browser`) and its tracked download folder.
    fn profile(&self) -> Profile {
        let dir = self.home.join("browser");
        let downloads = dir.join("Downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        Profile::new(&dir).downloads(&downloads).window(1100, 760)
    }

    fn downloads(&self) -> PathBuf {
        self.home.join("browser").join("Downloads")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sel(test: &str) -> String {
    format!("[data-test={test}]")
}

fn message_sel(id: &str) -> String {
    format!("[data-test=message][data-id=\"{id}\"]")
}

/// Waits for the message whose text contains `text` on `browser`'s screen; its id.
fn message_id(browser: &Browser, text: &str) -> String {
    let script = "var want = arguments[0]; \
        var m = Array.from(document.querySelectorAll('[data-test=message]')).find(function (m) { \
          var t = m.querySelector('[data-test=message-text]'); \
          return t && t.textContent.indexOf(want) >= 0; }); \
        return m ? m.getAttribute('data-id') : null;";
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(id) = browser.execute(script, json!([text])).as_str() {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no message saying {text:?}; the page: {:?}; its toasts: {}",
            browser.page_text(),
            browser.execute("return window.__toasts || [];", json!([]))
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

const WAIT: Duration = Duration::from_secs(30);

/// Types `text` in the composer and presses Enter (which sends).
fn send(browser: &Browser, text: &str) {
    browser.type_keys(&sel("compose"), &format!("{text}\u{E007}"));
}

/// Chooses `secs` in the composer's per-message timer, adding the option if the page offers
/// no such short one (the page sends what the select holds).
fn message_timer(browser: &Browser, secs: u64) {
    let script = "var s = document.querySelector('[data-test=compose-timer]'); \
        var v = String(arguments[0]); \
        if (!Array.from(s.options).some(function (o) { return o.value === v; })) { \
          var o = document.createElement('option'); o.value = v; o.textContent = v + ' s'; s.appendChild(o); } \
        s.value = v; s.dispatchEvent(new Event('input', {bubbles: true})); \
        s.dispatchEvent(new Event('change', {bubbles: true}));";
    browser.element(&sel("compose-timer"));
    browser.execute(script, json!([secs]));
}

/// Clicks the message action `action` of message `id` (shown on hover; dispatched by script).
fn action(browser: &Browser, id: &str, action: &str) {
    browser.js_click(&format!("{} {}", message_sel(id), sel(action)));
}

/// The encodings a byte string may take on disk: raw (UTF-8), UTF-16LE/BE, hex (both cases)
/// and base64 (standard and URL-safe, at each of the three alignments a longer encoded
/// buffer may put it at: the part of the encoding that does not depend on its neighbours).
fn encodings(secret: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let bytes = secret.as_bytes();
    let mut out = vec![
        ("utf-8".to_owned(), bytes.to_vec()),
        (
            "utf-16le".to_owned(),
            secret.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "utf-16be".to_owned(),
            secret.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
        ("hex".to_owned(), hex::encode(bytes).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(bytes).into_bytes()),
    ];
    for (name, engine) in [
        ("base64", &base64::engine::general_purpose::STANDARD),
        ("base64url", &base64::engine::general_purpose::URL_SAFE),
    ] {
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            // Drop the first group (mixed with the neighbour before) and the last (mixed with
            // the one after, or padding).
            let skip = if shift == 0 { 0 } else { 4 };
            let stable = &encoded[skip..encoded.len() - 4];
            out.push((format!("{name}+{shift}"), stable.as_bytes().to_vec()));
        }
    }
    out
}

/// `secret` written inside other bytes, in each encoding a scan must see through: the
/// scanner's own check.
fn disguised(secret: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let around = |inner: &[u8], before: usize| {
        let mut v = vec![b'q'; before];
        v.extend_from_slice(inner);
        v.extend_from_slice(b"~tail~");
        v
    };
    let utf16 = |be: bool| -> Vec<u8> {
        format!("<{secret}>")
            .encode_utf16()
            .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() })
            .collect()
    };
    let mut out = vec![
        ("utf-8".to_owned(), around(secret.as_bytes(), 5)),
        ("utf-16le".to_owned(), utf16(false)),
        ("utf-16be".to_owned(), utf16(true)),
        (
            "hex".to_owned(),
            hex::encode(around(secret.as_bytes(), 3)).into_bytes(),
        ),
        (
            "HEX".to_owned(),
            hex::encode_upper(around(secret.as_bytes(), 3)).into_bytes(),
        ),
    ];
    for before in 0..3 {
        let inner = around(secret.as_bytes(), before);
        out.push((
            format!("base64 at offset {before}"),
            base64::engine::general_purpose::STANDARD
                .encode(&inner)
                .into_bytes(),
        ));
        out.push((
            format!("base64url at offset {before}"),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&inner)
                .into_bytes(),
        ));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every (file, secret's label, encoding) under `dirs` holding any encoding of `secrets`.
fn scan(dirs: &[&Path], secrets: &[(&str, &str)]) -> Vec<String> {
    let needles: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .flat_map(|(label, secret)| {
            encodings(secret)
                .into_iter()
                .map(move |(enc, n)| (format!("{label} as {enc}"), n))
        })
        .collect();
    let mut found = Vec::new();
    for file in dirs
        .iter()
        .filter(|d| d.exists())
        .flat_map(|d| files_under(d))
    {
        // A socket or a file removed meanwhile reads as nothing.
        let bytes = std::fs::read(&file).unwrap_or_default();
        for (what, needle) in &needles {
            if contains(&bytes, needle) {
                found.push(format!("{}: {what}", file.display()));
            }
        }
    }
    found
}

/// A page on another loopback port ("another site"): answers every request with an empty page.
fn other_site() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = "<!doctype html><html><head><title>elsewhere</title></head><body><p>elsewhere</p></body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A raw HTTP request to the app (headers as given); the status and body.
fn raw_get(origin: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let authority = origin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Waits until `text` is nowhere in the page (hidden elements included); on failure names
/// the elements still holding it.
fn wait_text_leaves(browser: &Browser, text: &str) {
    let deadline = Instant::now() + WAIT;
    while browser.page_text().contains(text) {
        if Instant::now() > deadline {
            let holders = browser.execute(
                "var want = arguments[0]; \
                 return Array.from(document.querySelectorAll('*')) \
                   .filter(function (e) { return Array.from(e.childNodes).some(function (n) { \
                     return n.nodeType === 3 && n.textContent.indexOf(want) >= 0; }); }) \
                   .map(function (e) { var p = e.closest('[data-test]'); \
                     return e.tagName + ' in ' + (p ? p.getAttribute('data-test') : '-'); });",
                json!([text]),
            );
            panic!("{text:?} stays on the page, in {holders}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Opens the app's launch URL in `browser` and waits for the signed-in window.
fn open(browser: &Browser, app: &App) {
    browser.go(&app.launch);
    let deadline = Instant::now() + WAIT;
    while !browser.has(&sel("nav-new-chat")) {
        assert!(
            Instant::now() < deadline,
            "the window did not come up at {}: {}; the app said: {}",
            browser.url(),
            browser.execute(
                "return [document.readyState, document.documentElement.outerHTML.slice(0, 400)];",
                json!([])
            ),
            std::fs::read_to_string(&app.stderr)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // Every toast the page shows, kept for a failure's message (they fade).
    browser.execute(
        "window.__toasts = []; new MutationObserver(function (rs) { rs.forEach(function (r) { \
           r.addedNodes.forEach(function (n) { if (n.nodeType === 1 && n.matches('[data-test=toast]')) \
             window.__toasts.push(n.textContent); }); }); }) \
           .observe(document.body, {childList: true, subtree: true});",
        json!([]),
    );
    assert!(
        browser.url().starts_with(&app.origin) && !browser.url().contains("secret"),
        "the secret leaves the address bar: {}",
        browser.url()
    );
}

#[test]
fn issue_12_the_app_in_two_browsers_chats_and_leaves_nothing_once_timers_run_out() {
    let started = Instant::now();
    let mut dir = tempfile::tempdir().unwrap();
    // VELLUM_KEEP=1 keeps the directories (profiles, logs) of a run for a look.
    dir.disable_cleanup(std::env::var_os("VELLUM_KEEP").is_some());
    let root = dir.path();
    eprintln!("issue_12 browser test in {}", root.display());
    let server = Server::start(root);
    let alice = Device::new_user(&server, root, "alice");
    let bob = Device::new_user(&server, root, "bob");
    let logs = root.join("app-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let alice_app = App::start(&alice, &logs, "alice");
    let bob_app = App::start(&bob, &logs, "bob");
    assert_ne!(alice_app.origin, bob_app.origin);

    // The scanner finds what it looks for, in every encoding (else a clean scan means nothing).
    let probe_dir = root.join("probe");
    std::fs::create_dir_all(&probe_dir).unwrap();
    let probe = marker("probe");
    for (i, (what, bytes)) in disguised(&probe).into_iter().enumerate() {
        let file = probe_dir.join(format!("{i}"));
        std::fs::write(&file, bytes).unwrap();
        assert!(
            !scan(&[&probe_dir], &[("probe", &probe)]).is_empty(),
            "the scan misses {what}"
        );
        std::fs::remove_file(&file).unwrap();
    }

    let driver = Driver::start();
    let a = driver.browser_with(&alice_app.profile());
    let b = driver.browser_with(&bob_app.profile());
    open(&a, &alice_app);
    open(&b, &bob_app);
    // The session cookie: out of the page's reach, never sent cross-site.
    let cookie = a
        .cookies()
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("vellum")))
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");

    // Alice makes a chat with bob through the member picker.
    let title = said("Site visit");
    a.click(&sel("nav-new-chat"));
    a.fill(&sel("new-chat-title"), &title);
    a.fill(&sel("member-filter"), "bo");
    a.wait_for(&format!("{}[data-user=bob]", sel("member-option")));
    assert!(
        !a.has(&format!("{}[data-user=alice]", sel("member-option"))),
        "the picker offers the user herself"
    );
    a.js_click(&format!("{}[data-user=bob]", sel("member-option")));
    a.click(&sel("new-chat-create"));
    a.wait_text(&sel("chat-header-title"), &title);
    let chat = a
        .attribute(&sel("conversation"), "data-chat-id")
        .expect("the conversation names its chat");
    assert!(a.has(&sel("transitory-banner")) || a.has(&sel("records-banner")));

    // Bob sees it in his list and opens it.
    let item = format!("{}[data-chat-id=\"{chat}\"]", sel("chat-item"));
    b.wait_for(&item);
    b.wait_text(&item, &title);
    b.click(&item);
    b.wait_text(&sel("chat-header-title"), &title);

    // Messages both ways, live.
    let hello = said("Can we move the site visit to Thursday?");
    send(&a, &hello);
    let hello_id = message_id(&b, &hello);
    assert_eq!(
        b.attribute(&message_sel(&hello_id), "data-mine").as_deref(),
        Some("false")
    );
    assert_eq!(
        b.attribute(&message_sel(&hello_id), "data-sender")
            .as_deref(),
        Some("alice")
    );
    assert!(a.has(&message_sel(&hello_id)), "alice's own message shows");
    assert_eq!(
        a.attribute(&message_sel(&hello_id), "data-mine").as_deref(),
        Some("true")
    );

    // Bob replies to it.
    action(&b, &hello_id, "action-reply");
    b.wait_for(&sel("reply-preview"));
    let answer = said("Thursday works, 10:00 at the depot.");
    send(&b, &answer);
    let answer_id = message_id(&a, &answer);
    let quote = a.text(&format!(
        "{} {}",
        message_sel(&answer_id),
        sel("reply-quote")
    ));
    assert!(
        quote.contains(&hello),
        "the reply quotes {hello}: {quote:?}"
    );

    // Bob reacts to alice's message; alice sees the count.
    action(&b, &hello_id, "action-react");
    b.js_click(&format!("{}[data-emoji=\"👍\"]", sel("emoji")));
    let reaction = format!(
        "{} {}[data-emoji=\"👍\"]",
        message_sel(&hello_id),
        sel("reaction")
    );
    a.wait_text(&reaction, "1");

    // Alice edits it; bob sees the new text, marked edited.
    action(&a, &hello_id, "action-edit");
    a.wait_text(&sel("compose-mode"), "Editing");
    assert_eq!(a.property(&sel("compose"), "value"), json!(hello));
    let edited = said("Can we move the site visit to Thursday morning?");
    a.fill(&sel("compose"), &edited);
    a.type_keys(&sel("compose"), "\u{E007}");
    b.wait_text(
        &format!("{} {}", message_sel(&hello_id), sel("message-text")),
        &edited,
    );
    b.wait_for(&format!("{} {}", message_sel(&hello_id), sel("edited")));

    // Delete for everyone: gone from both screens.
    let regret = said("Sent to the wrong chat, sorry");
    send(&a, &regret);
    let regret_id = message_id(&b, &regret);
    message_id(&a, &regret);
    assert!(
        !b.has(&format!(
            "{} {}",
            message_sel(&regret_id),
            sel("action-delete")
        )),
        "bob may not delete alice's message"
    );
    action(&a, &regret_id, "action-delete");
    // The page asks "delete for everyone?"; alice says yes.
    a.click(&sel("confirm-ok"));
    a.wait_gone(&message_sel(&regret_id), WAIT);
    b.wait_gone(&message_sel(&regret_id), WAIT);
    for browser in [&a, &b] {
        // The chat list's preview too, once the page has caught up with the deletion.
        wait_text_leaves(browser, &regret);
    }

    // What must vanish: a file and a text, each on a short per-message timer.
    let fleeting = said("Gate code for Thursday: 4471");
    let content = format!(
        "{}\n{}\n",
        said("Visit plan: depot, north gate"),
        said("Contacts: R. Okafor, site lead")
    );
    let upload_dir = root.join("outside");
    std::fs::create_dir_all(&upload_dir).unwrap();
    let source = upload_dir.join("visit-plan.txt");
    std::fs::write(&source, &content).unwrap();
    // After the modal confirmation closes, headless Chromium takes keys into the composer
    // it refocused only once it is clicked (as a person would); without the click the keys
    // reach it but insert nothing.
    a.click(&sel("compose"));
    message_timer(&a, TIMER_SECS);
    let caption = said("The plan for the visit");
    a.type_keys(&sel("compose"), &caption);
    a.upload(&sel("attach"), &source);
    // Staged on the device once its progress bar is full (Enter before that only warns).
    wait_until_within("the upload staged", WAIT, || {
        a.execute(
            "var bars = document.querySelectorAll('[data-test=upload-progress]'); \
             return bars.length > 0 && Array.from(bars).every(function (b) { return b.value >= 1; });",
            json!([]),
        ) == json!(true)
    });
    a.type_keys(&sel("compose"), "\u{E007}");
    let file_id = message_id(&a, &caption);
    assert_eq!(message_id(&b, &caption), file_id);
    a.wait_for(&format!("{} {}", message_sel(&file_id), sel("attachment")));
    message_timer(&a, TIMER_SECS);
    send(&a, &fleeting);
    let fleeting_id = message_id(&b, &fleeting);
    message_id(&a, &fleeting);
    for (who, browser) in [("alice", &a), ("bob", &b)] {
        for id in [&file_id, &fleeting_id] {
            browser.wait_for(&format!("{} {}", message_sel(id), sel("countdown")));
            assert!(browser.has(&message_sel(id)), "{who}: {id} is still there");
        }
    }
    // A survivor with no timer: still on both screens after the others go.
    let survivor = said("See you there.");
    send(&b, &survivor);
    message_id(&a, &survivor);

    // Bob downloads the file; the browser saves it into the tracked Downloads folder.
    let attachment = format!("{} {}", message_sel(&file_id), sel("attachment"));
    b.wait_for(&attachment);
    b.click(&attachment);
    // A `--no-open` window is not the app's own browser: the page first says that a copy of
    // an expiring message's file leaves Vellum's reach (this test's browser does save into
    // the tracked folder, as the app's own would).
    b.wait_for(&sel("confirm-ok"));
    b.click(&sel("confirm-ok"));
    let saved = bob_app.downloads().join("visit-plan.txt");
    wait_until_within("the download in bob's Downloads", WAIT, || {
        std::fs::read_to_string(&saved).is_ok_and(|s| s == content)
    });
    // It got there before the timer ran out (so its shredding below is what removes it).
    assert!(
        b.has(&message_sel(&file_id)),
        "the file's message expired before the download finished: raise TIMER_SECS"
    );

    if let Some(path) = std::env::var_os("VELLUM_SCREENSHOT") {
        std::fs::write(path, a.screenshot()).unwrap();
    }

    // The timers run out: gone from both screens, the download shredded too.
    let gone_within = Duration::from_secs(TIMER_SECS + 20);
    for browser in [&a, &b] {
        browser.wait_gone(&message_sel(&file_id), gone_within);
        browser.wait_gone(&message_sel(&fleeting_id), gone_within);
    }
    for browser in [&a, &b] {
        let text = browser.page_text();
        for secret in [&fleeting, &caption] {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} is still on a screen"
            );
        }
        assert!(text.contains(&survivor), "the survivor stays");
    }
    wait_until_within("the downloaded copy shredded", WAIT, || !saved.exists());
    assert!(
        !files_under(&bob_app.downloads())
            .iter()
            .any(|f| std::fs::read(f).is_ok_and(|b| contains(&b, content.as_bytes()))),
        "a copy of the file survives in Downloads"
    );

    // The window's doors, while the apps still run.
    doors(&driver, root, &alice_app, &a, &chat, &title, &survivor);

    // Chromium writes what it keeps when it quits: scan after both have.
    a.quit();
    b.quit();
    let file_lines: Vec<String> = content.lines().map(str::to_owned).collect();
    let secrets: Vec<(&str, &str)> = vec![
        ("the expired text", &fleeting),
        ("the expired file's caption", &caption),
        ("the expired file's content", &content),
        ("the expired file's first line", &file_lines[0]),
        ("the expired file's second line", &file_lines[1]),
        ("the text deleted for everyone", &regret),
    ];
    let dirs = [
        alice_app.home.as_path(),
        bob_app.home.as_path(),
        logs.as_path(),
        server.data.as_path(),
        server.logs.as_path(),
    ];
    let found = scan(&dirs, &secrets);
    assert!(found.is_empty(), "left on disk after expiry: {found:#?}");
    eprintln!(
        "issue_12 browser test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Nothing for a browser without the launch secret, with a used one, or on another site.
fn doors(
    driver: &Driver,
    root: &Path,
    app: &App,
    alice: &Browser,
    chat: &str,
    title: &str,
    survivor: &str,
) {
    let private = |text: &str| text.contains(title) || text.contains(survivor);

    // A fresh profile opening the window's address: no chat content, and its API says no.
    let stranger = driver.browser(&root.join("browser-stranger"));
    stranger.go(&format!("{}/", app.origin));
    let page = stranger.page_text();
    assert!(!private(&page), "{page}");
    assert!(!stranger.has(&sel("chat-item")) && !stranger.has(&sel("conversation")));
    for path in [
        "/api/chats".to_owned(),
        format!("/api/chats/{chat}/messages"),
        "/api/session".to_owned(),
    ] {
        let answer = fetch_text(&stranger, &path, json!({}));
        assert!(
            answer["status"] == 401 || answer["status"] == 403,
            "{path}: {answer}"
        );
        assert!(!private(&answer.to_string()), "{path}: {answer}");
    }
    // The launch URL alice used: worth nothing now.
    stranger.go(&app.launch);
    let page = stranger.page_text();
    assert!(!private(&page), "{page}");
    assert!(!stranger.has(&sel("nav-new-chat")));
    stranger.go(&format!("{}/", app.origin));
    assert!(!private(&stranger.page_text()));
    assert!(
        stranger.cookies().is_empty(),
        "a used secret gave a cookie: {:?}",
        stranger.cookies()
    );
    stranger.quit();

    // DNS rebinding: alice's own cookie under another Host name gets nothing.
    let cookie = alice
        .cookies()
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("vellum")))
        .unwrap();
    let cookie = format!(
        "{}={}",
        cookie["name"].as_str().unwrap(),
        cookie["value"].as_str().unwrap()
    );
    let port = app.origin.rsplit(':').next().unwrap();
    let (status, body) = raw_get(
        &app.origin,
        "/api/chats",
        &[
            ("Host", &format!("rebound.example:{port}")),
            ("Cookie", &cookie),
        ],
    );
    assert!(status == 421 || status == 403, "{status}: {body}");
    assert!(!private(&body), "{body}");
    // The same request with the right Host works, so the refusal above is the Host's doing.
    let authority = app.origin.trim_start_matches("http://");
    let (status, body) = raw_get(
        &app.origin,
        "/api/chats",
        &[("Host", authority), ("Cookie", &cookie)],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(title), "{body}");

    // Another site, in alice's own browser (her session cookie in it): reads nothing,
    // changes nothing, neither by fetch nor by a form.
    let elsewhere = other_site();
    alice.go(&format!("{elsewhere}/"));
    let intruder = said("intruder");
    let read = alice.execute_async(
        "var done = arguments[arguments.length - 1]; \
         fetch(arguments[0] + '/api/chats', {credentials: 'include'}) \
           .then(function (r) { return r.text().then(function (t) { done({status: r.status, body: t}); }); }) \
           .catch(function (e) { done({blocked: String(e)}); });",
        json!([app.origin]),
    );
    assert!(
        read.get("blocked").is_some() || read["status"] != 200,
        "another site read the chat list: {read}"
    );
    assert!(!private(&read.to_string()), "{read}");
    let posted = alice.execute_async(
        "var done = arguments[arguments.length - 1]; var app = arguments[0]; \
         var body = JSON.stringify({title: arguments[1], members: ['bob']}); \
         Promise.all([ \
           fetch(app + '/api/chats', {method: 'POST', mode: 'no-cors', credentials: 'include', \
             headers: {'Content-Type': 'text/plain'}, body: body}), \
           fetch(app + '/api/chats/' + arguments[2] + '/messages', {method: 'POST', mode: 'no-cors', \
             credentials: 'include', headers: {'Content-Type': 'text/plain'}, \
             body: JSON.stringify({text: arguments[1]})}) \
         ]).then(function () { done('sent'); }).catch(function (e) { done(String(e)); });",
        json!([app.origin, intruder, chat]),
    );
    assert!(posted.is_string(), "{posted}");
    // A form POST navigates this tab to the app's answer: it must say no and show nothing.
    alice.execute(
        "var f = document.createElement('form'); f.method = 'POST'; \
         f.action = arguments[0] + '/api/chats/' + arguments[2] + '/messages'; \
         f.enctype = 'text/plain'; \
         var i = document.createElement('input'); i.name = '{\"text\":\"' + arguments[1] + '\",\"x\":\"'; \
         i.value = '\"}'; f.appendChild(i); document.body.appendChild(f); f.submit();",
        json!([app.origin, intruder, chat]),
    );
    wait_until("the form's answer", || alice.url().starts_with(&app.origin));
    let answer = alice.page_text();
    assert!(!private(&answer), "{answer}");

    // Back in the window: no intruder chat, no intruder message.
    alice.go(&format!("{}/", app.origin));
    alice.wait_for(&sel("nav-new-chat"));
    let item = format!("{}[data-chat-id=\"{chat}\"]", sel("chat-item"));
    alice.wait_for(&item);
    alice.click(&item);
    message_id(alice, survivor);
    let page = alice.page_text();
    assert!(!page.contains(&intruder), "another site changed something");
    let (_, chats) = raw_get(
        &app.origin,
        "/api/chats",
        &[("Host", authority), ("Cookie", &cookie)],
    );
    assert!(!chats.contains(&intruder), "{chats}");
}

/// `fetch(path)` from `browser`'s page (same origin as the page): status and body text.
fn fetch_text(browser: &Browser, path: &str, init: Value) -> Value {
    browser.execute_async(
        "var done = arguments[arguments.length - 1]; \
         fetch(arguments[0], arguments[1]) \
           .then(function (r) { return r.text().then(function (t) { done({status: r.status, body: t}); }); }) \
           .catch(function (e) { done({error: String(e)}); });",
        json!([path, init]),
    )
}
