//! Issue 11, item 4: the records console in real headless Chromium (WebDriver), against a
//! real server, devices and archiver; and the `records user …` / `console` / `whoami`
//! commands that set its accounts up.

use std::path::Path;

use crate::harness::*;
use crate::records::{records_org, wait_for_records, Archiver};
use vellum_webdriver::{Browser, Driver};

const PASSWORD: &str = "correct horse battery staple";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code `offset` steps after now, as the person's authenticator app shows it.
fn totp(secret: &str, offset: u64) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    format!(
        "{:06}",
        vellum_archiver::console::auth::totp_code(&raw, now_s() / 30 + offset)
    )
}

/// `records user add NAME --role ROLE`: the setup link it prints.
fn add_user(archiver: &Archiver, name: &str, role: &str) -> String {
    let out = run_ok(&mut archiver.records(&["user", "add", name, "--role", role]));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no setup link in {text}"))
        .to_owned()
}

/// A person opens their setup link in their own browser, chooses a password, enrols the
/// authenticator and signs in.
fn person<'d>(driver: &'d Driver, root: &Path, link: &str, name: &str) -> Browser<'d> {
    let browser = driver.browser(&root.join(format!("browser-{name}")));
    browser.go(link);
    assert_eq!(browser.text("#setup-name"), name);
    let secret = browser.text("#totp-secret");
    assert!(browser.text("#otpauth").starts_with("otpauth://totp/"));
    // The QR code renders (a data: image, which the policy allows).
    assert!(
        browser
            .property("#totp-qr", "naturalWidth")
            .as_u64()
            .unwrap()
            > 0
    );
    browser.fill("#password", PASSWORD);
    browser.fill("#again", PASSWORD);
    browser.fill("#totp", &totp(&secret, 0));
    browser.click("#finish-setup");
    browser.wait_text("#setup-done", "are set");
    let base = link.split("/console/").next().unwrap();
    browser.go(&format!("{base}/console/sign-in"));
    browser.fill("#name", name);
    browser.fill("#password", PASSWORD);
    // The setup used this step's code, and a code never works twice: the next one.
    browser.fill("#code", &totp(&secret, 1));
    browser.click("#sign-in");
    browser.wait_text("#whoami", name);
    browser
}

#[test]
fn issue_11_the_console_in_a_browser_signs_in_unseals_searches_holds_by_role() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let server = Server::start(root);
    let alice = Device::new_user(&server, root, "alice");
    let bob = Device::new_user(&server, root, "bob");
    let archiver = records_org(&server, root);
    alice.ok(&["chat", "create", "ops", "--with", "bob"]);
    let word = marker("gate");
    // Markup in a message is shown as text, never run or rendered.
    let markup = "<b>bold</b><script>document.title='owned'</script>";
    alice.ok(&[
        "send",
        "ops",
        &format!("meet at the north {word} at noon {markup}"),
    ]);
    // the archiver joining, the title, the message
    wait_for_records(&archiver, 3);
    let base = &archiver.url;
    let console = format!("{base}/console/");
    let links: Vec<(String, &str)> = [
        ("kim", "keyholder"),
        ("lee", "keyholder"),
        ("ann", "analyst"),
        ("aud", "auditor"),
        ("olive", "officer"),
    ]
    .into_iter()
    .map(|(name, role)| (add_user(&archiver, name, role), name))
    .collect();
    assert!(links
        .iter()
        .all(|(link, _)| link.starts_with(&format!("{console}setup?code="))));

    let driver = Driver::start();
    // A signed-out browser reaches nothing but sign-in.
    let stranger = driver.browser(&root.join("browser-stranger"));
    for page in ["", "search", "unseal", "holds", "audit", "accounts"] {
        stranger.go(&format!("{console}{page}"));
        assert_eq!(stranger.url(), format!("{console}sign-in"), "{page}");
        assert!(stranger.has("#sign-in"), "{}", stranger.text("body"));
    }
    let mut people = links
        .iter()
        .map(|(link, name)| (*name, person(&driver, root, link, name)));
    let (kim, lee, ann, aud, olive) = (
        people.next().unwrap().1,
        people.next().unwrap().1,
        people.next().unwrap().1,
        people.next().unwrap().1,
        people.next().unwrap().1,
    );
    // The session cookie is out of the page's reach and never sent cross-site.
    let cookie = kim
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "vellum-session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");

    // Sealed: the analyst's search says so clearly.
    ann.go(&format!("{console}search"));
    ann.fill("#q", &word);
    ann.click("#run-search");
    ann.wait_text("#sealed", "The archive is sealed");
    // The analyst cannot unseal or manage accounts, and is not offered to.
    for page in ["unseal", "accounts"] {
        ann.go(&format!("{console}{page}"));
        ann.wait_text("main", "may not do this");
    }
    assert!(!ann.has("nav a[href='/console/unseal']"));
    assert!(!ann.has("nav a[href='/console/accounts']"));

    // Two keyholders unseal, each from their own account with their own share.
    let share = |n: u32| std::fs::read_to_string(root.join(format!("keys/share-{n}"))).unwrap();
    kim.go(&format!("{console}unseal"));
    kim.wait_text("#unseal-progress", "0 of 2");
    // Kim chooses her share file; the console's script reads it into the form.
    kim.upload("#share-file", &root.join("keys/share-1"));
    crate::records::wait_until("the share read from its file", || {
        kim.property("#share", "value").as_str() == Some(share(1).trim())
    });
    kim.click("#hand-in");
    kim.wait_text("#unseal-progress", "1 of 2");
    kim.wait_text("main", "Another keyholder must hand in the next one");
    lee.go(&format!("{console}unseal"));
    lee.wait_text("#unseal-progress", "1 of 2");
    lee.fill("#share", &share(2));
    lee.click("#hand-in");
    lee.wait_text("#archive-state", "Unsealed");
    assert_eq!(archiver.status()["sealed"], false);
    // A keyholder sees no content.
    kim.go(&format!("{console}search"));
    kim.wait_text("main", "may not do this");

    // The analyst finds the record, with its chat and sender.
    ann.go(&format!("{console}search"));
    ann.fill("#q", &word);
    ann.click("#run-search");
    ann.wait_text("#result-count", "1 matching record");
    let results = ann.text("#results");
    assert!(
        results.contains(&word) && results.contains("alice") && results.contains("ops"),
        "{results}"
    );
    assert!(results.contains(markup), "{results}");
    if let Ok(path) = std::env::var("VELLUM_CONSOLE_SCREENSHOT") {
        std::fs::write(path, ann.screenshot()).unwrap();
    }

    // The analyst opens a FOIA case, adds the search's records, marks the record
    // responsive, redacts a span of it under (b)(6), and downloads the production.
    ann.go(&format!("{console}cases"));
    ann.fill("#case-requester", "CREW");
    ann.fill(
        "#case-description",
        "All messages mentioning the north gate",
    );
    ann.click("#create-case");
    ann.wait_text("#case-status", "open");
    ann.fill("#add-q", &word);
    ann.click("#add-records");
    ann.wait_text("main", "1 records added");
    ann.click("button[id^='mark-'][id$='-responsive']");
    crate::records::wait_until("the record marked responsive", || {
        ann.has("#review-set .tag.active")
    });
    ann.click("a[id^='redact-']");
    ann.wait_text("#record-text", "meet at the north");
    // Selecting "meet" fills the span (the console's script counts the characters).
    ann.select_text("#record-text", 0, 4);
    crate::records::wait_until("the span filled from the selection", || {
        ann.property("#span-start", "value") == "0" && ann.property("#span-end", "value") == "4"
    });
    ann.click("#redact-span");
    let redactions = ann.wait_text("#redactions", "(b)(6)");
    assert!(redactions.contains("meet"), "{redactions}");
    ann.click("main a[href^='/console/cases/']");
    ann.click("#produce");
    // The progress page reloads itself until the job ends.
    let mut state = String::new();
    crate::records::wait_until("the production to end", || {
        // Empty until the progress page has replaced the case page.
        state = ann.text("#production-state");
        !state.is_empty() && !state.starts_with("Running")
    });
    assert!(state.starts_with("Done"), "{state}");
    let href = ann
        .property("#download", "href")
        .as_str()
        .unwrap()
        .to_owned();
    let session = ann
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "vellum-session")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let zip = runtime().block_on(async {
        reqwest::Client::new()
            .get(&href)
            .header("cookie", format!("vellum-session={session}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    let zip = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("a zip file");
    let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("manifest.json")),
        "{names:?}"
    );

    // The officer places a legal hold; the records API has it.
    olive.go(&format!("{console}holds"));
    olive.fill("#hold-name", "crew-request-7");
    olive.fill("#hold-reason", "CREW FOIA request 7");
    olive.fill("#hold-custodians", "bob");
    olive.fill("#hold-from", "2026-01-01");
    olive.click("#place-hold");
    olive.wait_text("#holds", "crew-request-7");
    let holds = run_ok(&mut archiver.records(&["hold", "list", "--json"]));
    let holds: serde_json::Value = serde_json::from_slice(&holds.stdout).unwrap();
    assert_eq!(holds[0]["name"], "crew-request-7");
    assert_eq!(holds[0]["custodians"][0], "bob");
    assert_eq!(holds[0]["author"], "olive");

    // The auditor reads the audit trail, which names who did what, but no content.
    aud.go(&format!("{console}audit"));
    let trail = aud.wait_text("#audit", "crew-request-7");
    for entry in [
        "olive placed hold \"crew-request-7\": CREW FOIA request 7",
        "kim handed in a share",
        "lee handed in the last share",
        "ann ran query hmac:",
    ] {
        assert!(trail.contains(entry), "{entry} in {trail}");
    }
    assert!(
        !trail.contains(&word),
        "a searched word is in the audit trail"
    );
    aud.go(&format!("{console}search"));
    aud.wait_text("main", "may not do this");
    assert!(!aud.has("nav a[href='/console/search']"));
    drop(bob);
}

#[test]
fn issue_11_records_user_commands_set_up_accounts_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let archiver = records_org(&server, root.path());
    let whoami = run_ok(&mut archiver.records(&["whoami"]));
    assert_eq!(last_line(&whoami), "officer (officer)");
    let console = run_ok(&mut archiver.records(&["console"]));
    assert_eq!(last_line(&console), format!("{}/console/", archiver.url));

    let added =
        run_ok(&mut archiver.records(&["user", "add", "kim", "--role", "keyholder", "--json"]));
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let code = added["setup_code"].as_str().unwrap();
    assert_eq!(
        added["setup_link"],
        format!("{}/console/setup?code={code}", archiver.url)
    );
    assert_eq!(added["role"], "keyholder");
    let again = run_fails(&mut archiver.records(&["user", "add", "kim", "--role", "analyst"]));
    assert!(again.contains("exists already"), "{again}");
    let bad = run_fails(&mut archiver.records(&["user", "add", "Kim Smith", "--role", "analyst"]));
    assert!(bad.contains("lowercase"), "{bad}");

    let list = run_ok(&mut archiver.records(&["user", "list", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    let kim = list.iter().find(|a| a["name"] == "kim").unwrap();
    assert_eq!(
        (kim["active"].clone(), kim["disabled"].clone()),
        (false.into(), false.into())
    );
    run_ok(&mut archiver.records(&["user", "disable", "kim"]));
    let list = run_ok(&mut archiver.records(&["user", "list"]));
    assert!(String::from_utf8(list.stdout)
        .unwrap()
        .contains("kim (keyholder): disabled"));
    // The disabled account's setup link no longer works.
    let page = runtime().block_on(async {
        reqwest::get(format!("{}/console/setup?code={code}", archiver.url))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(page, 410);
    let missing = run_fails(&mut archiver.records(&["user", "disable", "nobody"]));
    assert!(missing.contains("no account named"), "{missing}");
}

#[test]
fn issue_11_the_archiver_serves_tls_and_refuses_plain_http_beyond_loopback() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let server = Server::start(root);
    let refused = run_fails(
        vellum()
            .args(["archiver", "--server", &server.url, "--data"])
            .arg(root.join("refused"))
            .arg("--records-key")
            .arg(root.join("records.pub"))
            .args(["--listen", "0.0.0.0:0"]),
    );
    assert!(refused.contains("without TLS"), "{refused}");
    assert!(!root.join("refused").exists(), "nothing was set up");

    let write_cert = |name: &str| {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = root.join(format!("{name}-cert.pem"));
        let key = root.join(format!("{name}-key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    };
    let (cert, key) = write_cert("archiver");
    let (other_cert, _) = write_cert("other");
    let init = run_ok(
        vellum()
            .args(["admin", "--server", &server.url, "--token-file"])
            .arg(server.token_file())
            .args([
                "records",
                "init",
                "--custodians",
                "3",
                "--threshold",
                "2",
                "--out",
            ])
            .arg(root.join("keys")),
    );
    let archiver = Archiver::start_at(
        &server,
        &root.join("archiver"),
        &root.join("keys/records.pub"),
        &last_line(&init),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        archiver.url.starts_with("https://127.0.0.1:"),
        "{}",
        archiver.url
    );
    // The CLI trusts the archiver's certificate through the system's trust store (here
    // SSL_CERT_FILE), and nothing else.
    let trusted = run_ok(archiver.records(&["whoami"]).env("SSL_CERT_FILE", &cert));
    assert_eq!(last_line(&trusted), "officer (officer)");
    let untrusted = run_fails(
        archiver
            .records(&["whoami"])
            .env("SSL_CERT_FILE", &other_cert),
    );
    assert!(
        untrusted.contains("invalid peer certificate"),
        "{untrusted}"
    );
}
