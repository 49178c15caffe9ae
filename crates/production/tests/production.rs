//! Issue 11 productions, end to end over a real archive: records sealed and checkpointed by
//! `vellum-archive`, the log bound to `records.pub` by the custodians' key, a production
//! written, then read back with real tools (poppler's `pdftotext` and `pdfinfo`, `qpdf`),
//! the RSMF JSON schema, a MIME parser and the offline verifier.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};
use vellum_archive::Archive;
use vellum_production::{
    produce, verify_production, FieldRedaction, Formats, Manifest, ProducedItem, ProductionInput,
    RedactableField, TextRedaction, Treatment, Trust,
};
use vellum_record::api::foia::Exemption;
use vellum_record::{
    ArchiverBinding, AttachedFile, Member, Record, RecordKind, RecordsPublic, FORMAT_VERSION,
};
use vellum_records::UnsealProgress;

const ORIGIN: &str = "records.test/vellum";

fn marker(tag: &str) -> String {
    let mut raw = [0u8; 6];
    getrandom::fill(&mut raw).unwrap();
    format!("zq{tag}{}", hex::encode(raw))
}

/// Every marker of a scenario: what must be produced, and what must never appear.
struct Markers {
    produced: Vec<String>,
    redacted: Vec<String>,
}

struct Scenario {
    _dir: tempfile::TempDir,
    input: ProductionInput,
    public: RecordsPublic,
    markers: Markers,
}

fn base(chat: &str, seq: u64, sender: &str, kind: RecordKind) -> Record {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).unwrap();
    Record {
        version: FORMAT_VERSION,
        chat_id: chat.into(),
        chat_title: None,
        seq,
        kind,
        message_id: Some(format!("m{seq}")),
        sender_user: sender.into(),
        sender_device: format!("{sender}-phone"),
        recipients: vec![],
        sent_at: 1_764_000_000_000 + seq as i64 * 60_000,
        received_at: 1_764_000_000_500 + seq as i64 * 60_000,
        text: None,
        expire_secs: None,
        burn_secs: None,
        log_hash: None,
        salt: Some(hex::encode(salt)),
        reply_to: None,
        mentions: vec![],
        target: None,
        remove: false,
    }
}

fn release() -> Treatment {
    Treatment::Release {
        text: vec![],
        fields: vec![],
    }
}

/// A chat with a redacted span, a redacted sender (the same person a recipient elsewhere),
/// a redacted title and attachment name, an edit, a reaction, a deletion, a record withheld
/// whole, and a second chat whose membership text names the redacted person.
fn scenario(bates_start: u64) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let g = vellum_records::generate(3, 2, ORIGIN).unwrap();
    let signer = vellum_tlog::NoteSigner::new(ORIGIN, &[9; 32]).unwrap();
    let mut archive = Archive::open(&dir.path().join("archive"), signer).unwrap();

    let shown = |t: &str| marker(t);
    let (p1, p2, p3, p4) = (shown("pa"), shown("pb"), shown("pc"), shown("pd"));
    let (r_span, r_title, r_whole, r_file) =
        (marker("ra"), marker("rb"), marker("rc"), marker("rd"));
    // A person's name, withheld wherever it appears.
    let secret_user = marker("re");
    let alice = "alice";
    let members = |users: &[&str]| -> Vec<Member> {
        users
            .iter()
            .map(|u| Member {
                user: (*u).into(),
                device_id: format!("{u}-phone"),
            })
            .collect()
    };

    let mut items: Vec<(Record, Treatment)> = Vec::new();
    let title = format!("Gate {r_title}");
    let mut m1 = base("c1", 1, alice, RecordKind::Message);
    m1.chat_title = Some(title.clone());
    m1.text = Some(format!("hello {p1} and {r_span} end"));
    m1.recipients = members(&[&secret_user]);
    let start = m1.text.as_ref().unwrap().chars().count() - format!("{r_span} end").chars().count();
    items.push((
        m1,
        Treatment::Release {
            text: vec![TextRedaction {
                start,
                end: start + r_span.chars().count(),
                exemption: Exemption::B5,
            }],
            fields: vec![FieldRedaction {
                field: RedactableField::ChatTitle,
                exemption: Exemption::B6,
            }],
        },
    ));
    let mut m2 = base("c1", 2, &secret_user, RecordKind::Message);
    m2.chat_title = Some(title.clone());
    m2.text = Some(format!("{p2} for you, café ☃"));
    m2.recipients = members(&[alice]);
    items.push((
        m2,
        Treatment::Release {
            text: vec![],
            fields: vec![FieldRedaction {
                field: RedactableField::Sender,
                exemption: Exemption::B6,
            }],
        },
    ));
    let mut edit = base("c1", 3, alice, RecordKind::Edit);
    edit.target = Some("m1".into());
    edit.text = Some(format!("hello {p3}"));
    items.push((edit, release()));
    let mut reaction = base("c1", 4, &secret_user, RecordKind::Reaction);
    reaction.target = Some("m1".into());
    reaction.text = Some("👍".into());
    items.push((reaction, release()));
    let mut delete = base("c1", 5, &secret_user, RecordKind::Delete);
    delete.message_id = Some("m2".into());
    items.push((delete, release()));
    let content = b"%PDF-1.4 not really".to_vec();
    let mut file = base(
        "c1",
        1,
        alice,
        RecordKind::Attachment(Box::new(AttachedFile {
            blob: "blob1".into(),
            name: format!("{r_file}.pdf"),
            mime: "application/pdf".into(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(&content)),
            content: STANDARD.encode(&content),
            part: 0,
            parts: 1,
        })),
    );
    file.message_id = Some("m1".into());
    items.push((
        file,
        Treatment::Release {
            text: vec![],
            fields: vec![FieldRedaction {
                field: RedactableField::AttachmentName,
                exemption: Exemption::B6,
            }],
        },
    ));
    let mut whole = base("c1", 6, alice, RecordKind::Message);
    whole.text = Some(format!("deliberations {r_whole}"));
    items.push((
        whole,
        Treatment::Withhold {
            exemption: Exemption::B5,
        },
    ));
    let mut m4 = base("c2", 1, alice, RecordKind::Message);
    m4.chat_title = Some("Second".into());
    m4.text = Some(format!("{p4} in the second chat"));
    items.push((m4, release()));
    let mut joined = base("c2", 2, alice, RecordKind::Membership);
    joined.message_id = None;
    joined.text = Some(format!("alice added {secret_user}"));
    items.push((joined, release()));
    // A long message: the second chat's transcript runs over several pages.
    for seq in 3..60 {
        let mut filler = base("c2", seq, alice, RecordKind::Message);
        filler.text = Some(format!("line {seq} ").repeat(30));
        items.push((filler, release()));
    }

    // Sealed in the archive, each leaf committing to its content.
    let mut leaves = Vec::new();
    for (record, _) in &items {
        let reference = record.reference();
        let sealed = vellum_records::seal(
            &g.public.key_bytes().unwrap(),
            reference.as_bytes(),
            &record.encode(),
        )
        .unwrap();
        let appended = archive
            .append_record(
                &reference,
                record.received_at,
                &sealed,
                record.commitments(),
            )
            .unwrap();
        assert!(appended.new, "{reference}");
        leaves.push(appended.index);
    }
    let note = archive.checkpoint().unwrap();
    let size = archive.size();
    let mut unsealer = vellum_records::Unsealer::new(g.public.clone());
    unsealer.add(&g.shares[0]).unwrap();
    let UnsealProgress::Unsealed(secret) = unsealer.add(&g.shares[1]).unwrap() else {
        panic!("two shares unseal")
    };
    let binding = secret.sign_binding(&ArchiverBinding {
        version: vellum_record::BINDING_VERSION,
        serial: 1,
        origin: ORIGIN.into(),
        archiver_device: "archiver".into(),
        archiver_identity: STANDARD.encode([7u8; 32]),
        log_key: archive.verifier_key(),
        witnesses: vec![],
        witness_quorum: 0,
        issued_at: 0,
        previous: None,
    });
    let produced_items = items
        .into_iter()
        .zip(leaves)
        .map(|((record, treatment), leaf)| ProducedItem {
            leaf,
            leaf_data: STANDARD.encode(archive.leaf(leaf).unwrap().to_bytes()),
            inclusion_proof: archive
                .inclusion_proof(leaf, size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            record,
            treatment,
        })
        .collect();
    let input = ProductionInput {
        case_id: "FOIA-2026-0042".into(),
        requester: "CREW".into(),
        description: "messages about the gate".into(),
        produced_at: 1_764_100_000_000,
        time_zone: "America/New_York".into(),
        bates_prefix: "VELLUM".into(),
        bates_start,
        formats: Formats::default(),
        origin: ORIGIN.into(),
        verifier_key: archive.verifier_key(),
        checkpoint: note,
        checkpoint_size: size,
        binding: Some(binding.to_json()),
        items: produced_items,
    };
    Scenario {
        _dir: dir,
        input,
        public: g.public,
        markers: Markers {
            produced: vec![p1, p2, p3, p4],
            redacted: vec![r_span, r_title, r_whole, r_file, secret_user],
        },
    }
}

fn produced(bates_start: u64) -> (Scenario, tempfile::TempDir, PathBuf) {
    let s = scenario(bates_start);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    let mut reports = Vec::new();
    let summary = produce(&s.input, &dir, &mut |p| reports.push(p)).unwrap();
    // Progress rises to its total.
    let last = reports.last().unwrap();
    assert_eq!(last.done, last.total);
    assert!(reports.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(summary.records_withheld, 1);
    assert_eq!(summary.records_produced, s.input.items.len() as u64 - 1);
    (s, out, dir)
}

fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (install poppler-utils and qpdf)"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn pdfs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    files
}

fn utf16be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn issue_11_the_pdf_shows_every_produced_marker_and_holds_no_redacted_one_anywhere() {
    let (s, _out, dir) = produced(1);
    let files = pdfs(&dir);
    assert_eq!(files.len(), 2, "one transcript per chat");
    let mut text = String::new();
    for pdf in &files {
        let path = pdf.to_str().unwrap();
        text.push_str(&String::from_utf8(run("pdftotext", &["-layout", path, "-"])).unwrap());
        let raw = std::fs::read(pdf).unwrap();
        let qdf = dir.parent().unwrap().join("qdf.pdf");
        run(
            "qpdf",
            &[
                "--qdf",
                "--object-streams=disable",
                path,
                qdf.to_str().unwrap(),
            ],
        );
        let expanded = std::fs::read(&qdf).unwrap();
        for secret in &s.markers.redacted {
            for bytes in [&raw, &expanded] {
                assert!(!contains(bytes, secret.as_bytes()), "{secret} in {path}");
                assert!(
                    !contains(bytes, &utf16be(secret)),
                    "{secret} (UTF-16) in {path}"
                );
            }
        }
    }
    for shown in &s.markers.produced {
        assert!(
            text.contains(shown.as_str()),
            "{shown} not in the text layer"
        );
    }
    for secret in &s.markers.redacted {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} in the text layer"
        );
    }
    // The boxes are labelled with their exemptions; the snowman and the emoji are noted.
    assert!(text.contains("(b)(5)") && text.contains("(b)(6)"), "{text}");
    assert!(text.contains("caf\u{e9}"), "Latin-1 is shown as itself");
    assert!(text.contains("cannot show are printed as ?"));
    let info = String::from_utf8(run("pdfinfo", &[files[0].to_str().unwrap()])).unwrap();
    assert!(info.contains("FOIA-2026-0042"), "{info}");
}

#[test]
fn issue_11_bates_numbers_are_on_every_page_and_contiguous_across_files() {
    let (s, _out, dir) = produced(41);
    let mut expected = 41;
    let mut pages_total = 0;
    for pdf in pdfs(&dir) {
        let path = pdf.to_str().unwrap();
        let info = String::from_utf8(run("pdfinfo", &[path])).unwrap();
        let pages: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        pages_total += pages;
        let text = String::from_utf8(run("pdftotext", &[path, "-"])).unwrap();
        let page_texts: Vec<&str> = text
            .split('\u{c}')
            .filter(|p| !p.trim().is_empty())
            .collect();
        assert_eq!(page_texts.len() as u64, pages, "{path}");
        for page in page_texts {
            let label = format!("VELLUM-{expected:06}");
            assert!(
                page.contains(&label),
                "{label} missing on its page of {path}"
            );
            expected += 1;
        }
    }
    assert!(pages_total >= 3, "the long chat spans pages: {pages_total}");
    // The load file's ranges lie within the pages produced, in order.
    let mut reader = csv::Reader::from_path(dir.join("loadfile.csv")).unwrap();
    let mut previous = 41;
    for row in reader.records() {
        let row = row.unwrap();
        let begin: u64 = row[0].trim_start_matches("VELLUM-").parse().unwrap();
        let end: u64 = row[1].trim_start_matches("VELLUM-").parse().unwrap();
        assert!(
            previous <= begin && begin <= end && end < 41 + pages_total,
            "{row:?}"
        );
        previous = begin;
    }
    let _ = s;
}

#[test]
fn issue_11_the_rsmf_validates_against_the_schema_and_carries_edits_deletions_reactions_files() {
    let (s, _out, dir) = produced(1);
    let rsmf = std::fs::read(dir.join("FOIA-2026-0042.rsmf")).unwrap();
    // An RFC 5322 message with the RSMF header and the rsmf.zip attachment.
    let mail = mailparse::parse_mail(&rsmf).unwrap();
    use mailparse::MailHeaderMap;
    assert_eq!(
        mail.headers.get_first_value("X-RSMF-Version").as_deref(),
        Some("2.0.0")
    );
    for h in ["From", "To", "Subject", "Date"] {
        assert!(mail.headers.get_first_value(h).is_some(), "{h}");
    }
    let zip_part = mail
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "application/zip")
        .expect("the rsmf.zip part");
    assert_eq!(
        zip_part
            .get_content_disposition()
            .params
            .get("filename")
            .map(String::as_str),
        Some("rsmf.zip")
    );
    let zip = zip_part.get_body_raw().unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_reader(archive.by_name("rsmf_manifest.json").unwrap()).unwrap();
    assert_eq!(
        manifest,
        vellum_production::read_rsmf_manifest(&rsmf).unwrap()
    );

    // Valid against RSMF 2.0.0's schema (draft-07), formats asserted.
    let schema_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsmf_schema_2_0_0.json"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    compiler.add_resource("rsmf.json", schema).unwrap();
    let index = compiler.compile("rsmf.json", &mut schemas).unwrap();
    if let Err(e) = schemas.validate(&manifest, index) {
        panic!("the RSMF manifest does not validate: {e:#}");
    }
    // A broken manifest is caught by the same validator (the check can fail).
    let mut broken = manifest.clone();
    broken["events"][0]["type"] = serde_json::json!("shout");
    assert!(schemas.validate(&broken, index).is_err());

    let json = manifest.to_string();
    for secret in &s.markers.redacted {
        assert!(!json.contains(secret.as_str()), "{secret} in the RSMF");
    }
    let events = manifest["events"].as_array().unwrap();
    let first = events.iter().find(|e| e["id"] == "c1/m1").unwrap();
    let edits = first["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 1);
    assert!(edits[0]["previous"]
        .as_str()
        .unwrap()
        .contains("[REDACTED (b)(5)]"));
    assert!(edits[0]["new"]
        .as_str()
        .unwrap()
        .contains(&s.markers.produced[2]));
    assert_eq!(first["reactions"][0]["value"], "👍");
    assert_eq!(first["attachments"][0]["id"], "blob1");
    assert_eq!(first["attachments"][0]["display"], "[REDACTED (b)(6)]");
    let second = events.iter().find(|e| e["id"] == "c1/m2").unwrap();
    assert_eq!(second["deleted"], true);
    // The redacted person: one opaque participant, named only by a placeholder.
    let people = manifest["participants"].as_array().unwrap();
    let hidden: Vec<_> = people
        .iter()
        .filter(|p| {
            p["display"]
                .as_str()
                .unwrap()
                .starts_with("[REDACTED (b)(6) #")
        })
        .collect();
    assert_eq!(hidden.len(), 1, "{people:?}");
    assert!(hidden[0].get("account_id").is_none());
    let conversation = &manifest["conversations"][0];
    assert_eq!(conversation["display"], "[REDACTED (b)(6)]");
    // The attachment's bytes are in rsmf.zip under its id.
    let mut file = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("blob1").unwrap(), &mut file).unwrap();
    assert_eq!(file, b"%PDF-1.4 not really");
}

#[test]
fn issue_11_the_csv_files_have_their_columns_and_reveal_nothing_withheld() {
    let (s, _out, dir) = produced(1);
    let mut load = csv::Reader::from_path(dir.join("loadfile.csv")).unwrap();
    let headers: Vec<String> = load.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(
        headers,
        [
            "BEGBATES",
            "ENDBATES",
            "RECORD_ID",
            "CHAT_ID",
            "CHAT",
            "KIND",
            "SENDER",
            "PARTICIPANTS",
            "SENT",
            "RECEIVED",
            "MESSAGE_ID",
            "REDACTED",
            "HASH_OF",
            "SHA256"
        ]
    );
    let rows: Vec<csv::StringRecord> = load.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        s.input.items.len() - 1,
        "every released record, none withheld"
    );
    let withheld_leaf = s
        .input
        .items
        .iter()
        .find(|i| matches!(i.treatment, Treatment::Withhold { .. }))
        .unwrap()
        .leaf
        .to_string();
    assert!(rows.iter().all(|r| r[2] != withheld_leaf));
    // Dates in the office's zone (New York, November: -05:00).
    assert!(rows[0][9].ends_with("-05:00"), "{:?}", &rows[0]);
    let mut log = csv::Reader::from_path(dir.join("withholding_log.csv")).unwrap();
    let log_rows: Vec<csv::StringRecord> = log.records().map(Result::unwrap).collect();
    let whole = log_rows
        .iter()
        .find(|r| &r[1] == withheld_leaf.as_str())
        .unwrap();
    assert_eq!(
        (&whole[2], &whole[3], &whole[4]),
        ("record", "b5", "(b)(5)")
    );
    let kinds: BTreeSet<&str> = log_rows.iter().map(|r| r.get(2).unwrap()).collect();
    for kind in [
        "record",
        "text",
        "sender",
        "chat_title",
        "attachment_name",
        "name",
    ] {
        assert!(
            kinds.contains(kind),
            "{kind} missing from the log: {kinds:?}"
        );
    }
    for file in ["loadfile.csv", "withholding_log.csv"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for secret in &s.markers.redacted {
            assert!(!text.contains(secret.as_str()), "{secret} in {file}");
        }
    }
}

#[test]
fn issue_11_the_manifest_proves_every_record_and_opens_only_unredacted_fields() {
    let (s, _out, dir) = produced(1);
    let verified = verify_production(&dir, &Trust::RecordsPublic(s.public.clone())).unwrap();
    assert!(verified.ok(), "{:?}", verified.failures);
    assert_eq!(verified.records_withheld, 1);
    assert_eq!(verified.records_released, s.input.items.len() - 1);
    assert!(verified.openings > 0);
    // The log key alone verifies it too.
    let by_key = verify_production(&dir, &Trust::LogKey(s.input.verifier_key.clone())).unwrap();
    assert!(by_key.ok(), "{:?}", by_key.failures);

    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    for secret in &s.markers.redacted {
        assert!(!text.contains(secret.as_str()), "{secret} in the manifest");
    }
    let opened = |leaf: u64| -> Vec<String> {
        manifest
            .records
            .iter()
            .find(|r| r.leaf == leaf)
            .unwrap()
            .openings
            .iter()
            .map(|d| d.field.clone())
            .collect()
    };
    let leaf = |i: usize| s.input.items[i].leaf;
    // The message with a redacted span opens all but its text; the redacted sender's opens
    // all but the sender; the edit opens everything.
    assert!(!opened(leaf(0)).contains(&"text".into()));
    assert!(opened(leaf(0)).contains(&"sender_user".into()));
    assert!(opened(leaf(1)).contains(&"text".into()));
    assert!(!opened(leaf(1)).contains(&"sender_user".into()));
    assert_eq!(opened(leaf(2)).len(), 7);
    let whole = manifest
        .records
        .iter()
        .find(|r| r.treatment == "withheld")
        .unwrap();
    assert!(whole.openings.is_empty() && whole.leaf_data.is_none());
    assert_eq!(whole.exemption.as_deref(), Some("b5"));
    // Every file but the manifest is listed with its hash.
    let names: BTreeSet<_> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains("loadfile.csv") && names.contains("FOIA-2026-0042.rsmf"));
}

/// Copies the production to a fresh directory for tampering.
fn copy(dir: &Path, to: &Path) -> PathBuf {
    let target = to.join(format!("copy-{}", marker("x")));
    std::fs::create_dir(&target).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), target.join(e.file_name())).unwrap();
    }
    target
}

fn rewrite_manifest(dir: &Path, f: impl FnOnce(&mut Manifest)) {
    let path = dir.join("manifest.json");
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn issue_11_the_verifier_catches_an_altered_file_a_swapped_leaf_and_a_tampered_text() {
    let (s, out, dir) = produced(1);
    let trust = Trust::RecordsPublic(s.public.clone());
    let failures = |d: &Path| verify_production(d, &trust).unwrap().failures;

    // A file altered after production.
    let altered = copy(&dir, out.path());
    let pdf = pdfs(&altered)[0].clone();
    let mut bytes = std::fs::read(&pdf).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&pdf, bytes).unwrap();
    let f = failures(&altered);
    let name = pdf.file_name().unwrap().to_str().unwrap();
    assert!(
        f.iter().any(|m| m.contains(name) && m.contains("altered")),
        "{f:?}"
    );

    // Two records' leaves swapped: neither proof holds.
    let swapped = copy(&dir, out.path());
    let (a, b) = (s.input.items[0].leaf, s.input.items[2].leaf);
    rewrite_manifest(&swapped, |m| {
        let ia = m.records.iter().position(|r| r.leaf == a).unwrap();
        let ib = m.records.iter().position(|r| r.leaf == b).unwrap();
        let data = m.records[ia].leaf_data.clone();
        m.records[ia].leaf_data = m.records[ib].leaf_data.clone();
        m.records[ib].leaf_data = data;
    });
    let f = failures(&swapped);
    for leaf in [a, b] {
        assert!(
            f.iter().any(|m| m.starts_with(&format!("record {leaf}:")) && m.contains("inclusion proof")),
            "{f:?}"
        );
    }

    // A produced text changed: in the opening, its commitment refuses it.
    let tampered = copy(&dir, out.path());
    let edit = s.input.items[2].leaf;
    rewrite_manifest(&tampered, |m| {
        let r = m.records.iter_mut().find(|r| r.leaf == edit).unwrap();
        let text = r.openings.iter_mut().find(|d| d.field == "text").unwrap();
        text.value = text.value.replace("hello", "goodbye");
    });
    let f = failures(&tampered);
    assert!(
        f.iter()
            .any(|m| m.starts_with(&format!("record {edit}: text"))),
        "{f:?}"
    );

    // In the load file, even with the manifest's file hash made to match.
    let relisted = copy(&dir, out.path());
    let load = relisted.join("loadfile.csv");
    let original = std::fs::read_to_string(&load).unwrap();
    let edited_text = format!("hello {}", s.markers.produced[2]);
    let good = hex::encode(Sha256::digest(edited_text.as_bytes()));
    let bad = hex::encode(Sha256::digest(b"hello forged"));
    assert!(original.contains(&good));
    std::fs::write(&load, original.replace(&good, &bad)).unwrap();
    let new_hash = hex::encode(Sha256::digest(std::fs::read(&load).unwrap()));
    rewrite_manifest(&relisted, |m| {
        m.files
            .iter_mut()
            .find(|f| f.name == "loadfile.csv")
            .unwrap()
            .sha256 = new_hash;
    });
    let f = failures(&relisted);
    assert!(
        f.iter().any(|m| m.starts_with(&format!("record {edit}:"))
            && m.contains("produced text was altered")),
        "{f:?}"
    );

    // In the RSMF, its file hash in the manifest made to match.
    let rewritten = copy(&dir, out.path());
    let rsmf_path = rewritten.join("FOIA-2026-0042.rsmf");
    let rsmf = std::fs::read_to_string(&rsmf_path).unwrap();
    let mut json = vellum_production::read_rsmf_manifest(rsmf.as_bytes()).unwrap();
    let event = json["events"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["id"] == "c2/m1")
        .unwrap();
    let forged = event["body"].as_str().unwrap().replace("second", "third");
    event["body"] = serde_json::json!(forged);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "rsmf_manifest.json",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    std::io::Write::write_all(&mut zip, json.to_string().as_bytes()).unwrap();
    // The attachment kept, so that only the text is wrong.
    zip.start_file("blob1", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"%PDF-1.4 not really").unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let at =
        rsmf.find("filename=\"rsmf.zip\"\r\n\r\n").unwrap() + "filename=\"rsmf.zip\"\r\n\r\n".len();
    let end = at + rsmf[at..].find("--").unwrap();
    let forged_rsmf = format!(
        "{}{}\r\n{}",
        &rsmf[..at],
        STANDARD.encode(&zip),
        &rsmf[end..]
    );
    std::fs::write(&rsmf_path, &forged_rsmf).unwrap();
    let new_hash = hex::encode(Sha256::digest(forged_rsmf.as_bytes()));
    rewrite_manifest(&rewritten, |m| {
        m.files
            .iter_mut()
            .find(|f| f.name.ends_with(".rsmf"))
            .unwrap()
            .sha256 = new_hash;
    });
    let second_chat = s
        .input
        .items
        .iter()
        .find(|i| i.record.chat_id == "c2")
        .unwrap()
        .leaf;
    let f = failures(&rewritten);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(&format!("record {second_chat}: the RSMF's text")),
        "{f:?}"
    );

    // Another records.pub does not vouch for the checkpoint.
    let other = vellum_records::generate(3, 2, ORIGIN).unwrap().public;
    let f = verify_production(&dir, &Trust::RecordsPublic(other))
        .unwrap()
        .failures;
    assert!(f.iter().any(|m| m.starts_with("checkpoint:")), "{f:?}");
}

#[test]
fn issue_11_bad_input_is_refused_and_writes_nothing() {
    let s = scenario(1);
    let out = tempfile::tempdir().unwrap();
    // A directory that is not empty.
    std::fs::write(out.path().join("existing"), b"x").unwrap();
    let err = produce(&s.input, out.path(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    // A span beyond the text, naming its leaf.
    let mut input = s.input.clone();
    input.items[0].treatment = Treatment::Release {
        text: vec![TextRedaction {
            start: 0,
            end: 10_000,
            exemption: Exemption::B6,
        }],
        fields: vec![],
    };
    let fresh = out.path().join("fresh");
    let err = produce(&input, &fresh, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("leaf {}", input.items[0].leaf)),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
    // An unknown time zone.
    let mut input = s.input.clone();
    input.time_zone = "Mars/Olympus".into();
    let err = produce(&input, &out.path().join("tz"), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");
}

fn rsmf_json(dir: &Path) -> serde_json::Value {
    let rsmf = std::fs::read(dir.join("FOIA-2026-0042.rsmf")).unwrap();
    vellum_production::read_rsmf_manifest(&rsmf).unwrap()
}

/// The body of the RSMF event made from `leaf`.
fn body_of(rsmf: &serde_json::Value, leaf: u64) -> String {
    let leaf = leaf.to_string();
    rsmf["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["custom"][0]["value"].as_str() == Some(leaf.as_str()))
        .unwrap_or_else(|| panic!("no event of leaf {leaf}"))["body"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every PDF's text layer, after checking that no raw or expanded PDF holds any `secret`.
fn pdf_text_without(dir: &Path, secrets: &[&str]) -> String {
    let mut text = String::new();
    for pdf in pdfs(dir) {
        let path = pdf.to_str().unwrap();
        text.push_str(&String::from_utf8(run("pdftotext", &[path, "-"])).unwrap());
        let qdf = dir.parent().unwrap().join("qdf.pdf");
        run(
            "qpdf",
            &[
                "--qdf",
                "--object-streams=disable",
                path,
                qdf.to_str().unwrap(),
            ],
        );
        for bytes in [std::fs::read(&pdf).unwrap(), std::fs::read(&qdf).unwrap()] {
            for secret in secrets {
                assert!(!contains(&bytes, secret.as_bytes()), "{secret} in {path}");
                assert!(!contains(&bytes, &utf16be(secret)), "{secret} in {path}");
            }
        }
    }
    text
}

/// The scenario with "carol" withheld as a participant of the first message, and texts, a
/// title and a file name that name carol or the withheld sender or their devices.
fn naming_scenario() -> (Scenario, String) {
    let mut s = scenario(1);
    let secret = s.markers.redacted[4].clone();
    let items = &mut s.input.items;
    let Treatment::Release { fields, .. } = &mut items[0].treatment else {
        unreachable!()
    };
    fields.push(FieldRedaction {
        field: RedactableField::Participant("carol".into()),
        exemption: Exemption::B6,
    });
    // The withheld sender's devices: one they received on, one they sent from.
    items[0].record.recipients[0].device_id = "97b3aa01ff22".into();
    items[1].record.sender_device = "d00dfeed".into();
    items[7].record.chat_title = Some("carol_notes".into());
    items[8].record.text = Some(format!(
        "members: alice (alice-phone), {secret} (97b3aa01ff22), {secret} (D00DFEED); \
         {secret} added a device (97b3aa01…)"
    ));
    items[9].record.text = Some("İİİİ carol knows zqsecret".into());
    items[9].treatment = Treatment::Release {
        text: vec![TextRedaction {
            start: 17,
            end: 25,
            exemption: Exemption::B5,
        }],
        fields: vec![],
    };
    items[10].record.text = Some(format!(
        "ask Carol and {} about carol_zulu",
        secret.to_uppercase()
    ));
    let RecordKind::Attachment(file) = &mut items[5].record.kind else {
        unreachable!()
    };
    file.name = "notes for Carol.pdf".into();
    items[5].treatment = release();
    (s, secret)
}

#[test]
fn issue_11_a_withheld_participant_is_withheld_in_every_released_text() {
    let (s, secret) = naming_scenario();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    produce(&s.input, &dir, &mut |_| {}).unwrap();
    let leaf = |i: usize| s.input.items[i].leaf;
    let rsmf = rsmf_json(&dir);
    // carol is withheld first (#1), the secret sender next (#2).
    assert_eq!(
        body_of(&rsmf, leaf(9)),
        "İİİİ [REDACTED (b)(6) #1] knows [REDACTED (b)(5)]"
    );
    assert_eq!(
        body_of(&rsmf, leaf(10)),
        "ask [REDACTED (b)(6) #1] and [REDACTED (b)(6) #2] about [REDACTED (b)(6) #1]_zulu"
    );
    let json = rsmf.to_string();
    assert!(!json.to_lowercase().contains("carol"), "{json}");
    assert!(!json.to_lowercase().contains(&secret), "{json}");
    let text = pdf_text_without(&dir, &["carol", "Carol", &secret]);
    assert!(!text.to_lowercase().contains("carol"), "{text}");
    assert!(text.contains("knows"), "{text}");
    // Text that names a withheld person is not opened in the manifest as sealed.
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let opened = manifest
        .records
        .iter()
        .find(|r| r.leaf == leaf(10))
        .unwrap();
    assert!(opened.openings.iter().all(|o| o.field != "text"));
}

#[test]
fn issue_11_titles_and_file_names_naming_a_withheld_participant_are_scrubbed() {
    let (s, _) = naming_scenario();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    produce(&s.input, &dir, &mut |_| {}).unwrap();
    let rsmf = rsmf_json(&dir);
    let second = rsmf["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "c2")
        .unwrap();
    assert_eq!(second["display"], "[REDACTED (b)(6) #1]_notes");
    let first = rsmf["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "c1/m1")
        .unwrap();
    assert_eq!(
        first["attachments"][0]["display"],
        "notes for [REDACTED (b)(6) #1].pdf"
    );
    let mut load = csv::Reader::from_path(dir.join("loadfile.csv")).unwrap();
    let chats: BTreeSet<String> = load.records().map(|r| r.unwrap()[4].to_owned()).collect();
    assert!(chats.contains("[REDACTED (b)(6) #1]_notes"), "{chats:?}");
    let log = std::fs::read_to_string(dir.join("withholding_log.csv")).unwrap();
    assert!(
        log.contains("attachment_name") && log.contains("chat_title"),
        "{log}"
    );
    let text = pdf_text_without(&dir, &["carol", "Carol"]);
    assert!(text.contains("_notes"), "{text}");
    for file in ["loadfile.csv", "withholding_log.csv", "manifest.json"] {
        let content = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!content.to_lowercase().contains("carol"), "carol in {file}");
    }
}

#[test]
fn issue_11_a_withheld_users_device_ids_are_withheld_with_them() {
    let (s, secret) = naming_scenario();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    produce(&s.input, &dir, &mut |_| {}).unwrap();
    let rsmf = rsmf_json(&dir);
    assert_eq!(
        body_of(&rsmf, s.input.items[8].leaf),
        "members: alice (alice-phone), [REDACTED (b)(6) #2] ([REDACTED (b)(6) #2]), \
         [REDACTED (b)(6) #2] ([REDACTED (b)(6) #2]); [REDACTED (b)(6) #2] added a device \
         ([REDACTED (b)(6) #2])"
    );
    pdf_text_without(&dir, &["97b3aa01", "d00dfeed", "D00DFEED", &secret]);
    for file in std::fs::read_dir(&dir).unwrap() {
        let content = std::fs::read(file.unwrap().path()).unwrap();
        for device in ["97b3aa01", "d00dfeed", "D00DFEED"] {
            assert!(!contains(&content, device.as_bytes()), "{device}");
        }
    }
}

#[test]
fn issue_11_the_withholding_log_and_manifest_are_written_whatever_the_formats() {
    let mut s = scenario(1);
    s.input.formats = Formats {
        rsmf: false,
        pdf: true,
        csv: false,
    };
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    let summary = produce(&s.input, &dir, &mut |_| {}).unwrap();
    assert!(
        summary.files.contains(&"withholding_log.csv".to_owned()),
        "{:?}",
        summary.files
    );
    assert!(summary.files.contains(&"manifest.json".to_owned()));
    assert!(!dir.join("loadfile.csv").exists());
    assert!(!dir.join("FOIA-2026-0042.rsmf").exists());
    let mut log = csv::Reader::from_path(dir.join("withholding_log.csv")).unwrap();
    assert!(log.records().map(Result::unwrap).any(|r| &r[2] == "record"));
    // The manifest lists the log with its hash, and the production verifies.
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest
        .files
        .iter()
        .any(|f| f.name == "withholding_log.csv"));
    let verified = verify_production(&dir, &Trust::RecordsPublic(s.public.clone())).unwrap();
    assert!(verified.ok(), "{:?}", verified.failures);
}

#[test]
fn issue_11_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted() {
    let mut s = scenario(1);
    let formula = r#"=HYPERLINK("http://evil.example","x")"#;
    for item in s
        .input
        .items
        .iter_mut()
        .filter(|i| i.record.chat_id == "c2")
    {
        item.record.chat_title = Some(formula.into());
        item.record.sender_user = "+alice".into();
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    produce(&s.input, &dir, &mut |_| {}).unwrap();
    let mut load = csv::Reader::from_path(dir.join("loadfile.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = load.records().map(Result::unwrap).collect();
    let second: Vec<_> = rows.iter().filter(|r| &r[3] == "c2").collect();
    assert!(!second.is_empty());
    for row in second {
        assert_eq!(&row[4], format!("'{formula}"), "{row:?}");
        assert_eq!(&row[6], "'+alice", "{row:?}");
        assert!(row[7].starts_with("'+alice"), "{row:?}");
    }
    for file in ["loadfile.csv", "withholding_log.csv"] {
        let mut reader = csv::Reader::from_path(dir.join(file)).unwrap();
        for row in reader.records() {
            for cell in row.unwrap().iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{cell:?} in {file}"
                );
            }
        }
    }
}

/// Makes the manifest's SHA-256 of `name` match the file again (a forger would).
fn rehash(dir: &Path, name: &str) {
    let hash = hex::encode(Sha256::digest(std::fs::read(dir.join(name)).unwrap()));
    rewrite_manifest(dir, |m| {
        m.files.iter_mut().find(|f| f.name == name).unwrap().sha256 = hash;
    });
}

/// Replaces the RSMF's rsmf.zip with the same manifest and `files`, re-hashed.
fn rewrite_rsmf_files(dir: &Path, files: &[(&str, &[u8])]) {
    let name = "FOIA-2026-0042.rsmf";
    let rsmf = std::fs::read_to_string(dir.join(name)).unwrap();
    let json = vellum_production::read_rsmf_manifest(rsmf.as_bytes()).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("rsmf_manifest.json", options).unwrap();
    std::io::Write::write_all(&mut zip, json.to_string().as_bytes()).unwrap();
    for (file, bytes) in files {
        zip.start_file(*file, options).unwrap();
        std::io::Write::write_all(&mut zip, bytes).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    let marker = "filename=\"rsmf.zip\"\r\n\r\n";
    let at = rsmf.find(marker).unwrap() + marker.len();
    let end = at + rsmf[at..].find("--").unwrap();
    let forged = format!(
        "{}{}\r\n{}",
        &rsmf[..at],
        STANDARD.encode(&zip),
        &rsmf[end..]
    );
    std::fs::write(dir.join(name), forged).unwrap();
    rehash(dir, name);
}

#[test]
fn issue_11_the_verifier_catches_a_missing_or_resized_rsmf_attachment() {
    let (s, out, dir) = produced(1);
    let trust = Trust::RecordsPublic(s.public.clone());
    let failures = |d: &Path| verify_production(d, &trust).unwrap().failures;
    // Rewritten with the file as it was: still verifies (the rewrite itself is sound).
    let same = copy(&dir, out.path());
    rewrite_rsmf_files(&same, &[("blob1", b"%PDF-1.4 not really")]);
    assert_eq!(failures(&same), Vec::<String>::new());

    let missing = copy(&dir, out.path());
    rewrite_rsmf_files(&missing, &[]);
    let f = failures(&missing);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("\"blob1\" is not in rsmf.zip"), "{f:?}");

    let resized = copy(&dir, out.path());
    rewrite_rsmf_files(&resized, &[("blob1", b"%PDF-1.4 not")]);
    let f = failures(&resized);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("\"blob1\" is 12 bytes"), "{f:?}");
}

#[test]
fn issue_11_the_verifier_catches_a_load_file_sender_or_time_that_is_not_the_leafs() {
    let (s, out, dir) = produced(1);
    let trust = Trust::RecordsPublic(s.public.clone());
    let failures = |d: &Path| verify_production(d, &trust).unwrap().failures;
    let edit = s.input.items[2].leaf;
    let forge = |column: usize, value: &str| {
        let forged = copy(&dir, out.path());
        let path = forged.join("loadfile.csv");
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(reader.headers().unwrap()).unwrap();
        for row in reader.records() {
            let mut row: Vec<String> = row.unwrap().iter().map(str::to_owned).collect();
            if row[2] == edit.to_string() {
                row[column] = value.to_owned();
            }
            writer.write_record(row).unwrap();
        }
        std::fs::write(&path, writer.into_inner().unwrap()).unwrap();
        rehash(&forged, "loadfile.csv");
        forged
    };
    let f = failures(&forge(6, "mallory"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(&format!(
            "record {edit}: loadfile.csv names its sender \"mallory\""
        )),
        "{f:?}"
    );
    let f = failures(&forge(8, "2020-01-01T00:00:00-05:00"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with(&format!("record {edit}: loadfile.csv says it was sent")),
        "{f:?}"
    );
}

#[test]
fn issue_11_a_file_not_all_of_whose_parts_are_produced_is_not_listed_in_the_rsmf() {
    let mut s = scenario(1);
    let RecordKind::Attachment(file) = &mut s.input.items[5].record.kind else {
        unreachable!()
    };
    // Part 1 of 2 produced; part 2 is not among the records.
    file.parts = 2;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("production");
    produce(&s.input, &dir, &mut |_| {}).unwrap();
    let rsmf = rsmf_json(&dir);
    let listed = rsmf["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("attachments").is_some())
        .count();
    assert_eq!(listed, 0, "a file missing a part is listed");
    let verified = verify_production(&dir, &Trust::RecordsPublic(s.public.clone())).unwrap();
    assert!(verified.ok(), "{:?}", verified.failures);
}
