//! The C2SP tlog-witness protocol end to end over `oneshot`: every answer the specification
//! names, and on every refusal, a data directory byte for byte unchanged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vellum_tlog::cosignature::CosignatureLine;
use vellum_tlog::{consistency_proof, leaf_hash, root, Checkpoint, Hash, NoteSigner};
use vellum_witness::{origin_hash, AddCheckpoint, Witness};

const ORIGIN: &str = "records.agency.example/vellum";
const NOW: u64 = 1_800_000_000;

/// A log, built with vellum-tlog: its leaves and its signing key.
struct Log {
    signer: NoteSigner,
    leaves: Vec<Hash>,
}

impl Log {
    fn new(seed: u8, size: usize, salt: &str) -> Self {
        let signer = NoteSigner::new(ORIGIN, &[seed; 32]).unwrap();
        let leaves = (0..size)
            .map(|i| leaf_hash(format!("{salt} leaf {i}").as_bytes()))
            .collect();
        Self { signer, leaves }
    }

    fn text(&self, size: u64) -> String {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: root(&self.leaves[..size as usize]),
            extensions: vec![],
        }
        .to_text()
    }

    fn note(&self, size: u64) -> String {
        self.signer.sign(&self.text(size)).unwrap()
    }

    fn body(&self, old: u64, size: u64) -> String {
        AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&self.leaves, old, size).unwrap(),
            note: self.note(size),
        }
        .to_body()
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    witness: Arc<Witness>,
    log: Log,
}

fn open(dir: &Path, logs: &[String]) -> Arc<Witness> {
    Arc::new(Witness::open(dir, logs).unwrap().with_clock(|| NOW))
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("witness");
    let log = Log::new(1, 20, "a");
    let witness = open(&dir, &[log.signer.verifier_key()]);
    Fixture {
        _tmp: tmp,
        dir,
        witness,
        log,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

async fn post(witness: &Arc<Witness>, body: impl Into<Body>) -> Answer {
    let request = Request::post("/add-checkpoint").body(body.into()).unwrap();
    send(witness, request).await
}

async fn send(witness: &Arc<Witness>, request: Request<Body>) -> Answer {
    let response = vellum_witness::app(witness.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Every file of the data directory but the lock.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "lock" {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Asserts a refusal with `status` that names `reason`, and that nothing changed.
async fn refused(f: &Fixture, body: impl Into<Body>, status: StatusCode, reason: &str) {
    let before = snapshot(&f.dir);
    let answer = post(&f.witness, body).await;
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer.body.contains(reason),
        "{:?} should say {reason:?}",
        answer.body
    );
    assert_eq!(snapshot(&f.dir), before, "a refusal changed the state");
}

/// tlog-witness add-checkpoint: old size 0, an empty proof, a 200 whose body is one
/// cosignature line (tlog-cosignature, Ed25519) that the witness's vkey verifies, with a
/// non-zero timestamp; the state is persisted and served to monitors.
#[tokio::test]
async fn first_checkpoint_then_consistent_extensions() {
    let f = fixture();
    let answer = post(&f.witness, f.log.body(0, 5)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let line = CosignatureLine::parse(&answer.body).unwrap();
    assert!(answer.body.starts_with('\u{2014}') && answer.body.ends_with('\n'));
    assert_eq!(answer.body.lines().count(), 1);
    assert_eq!(line.timestamp, NOW);
    let cosigned = format!("{}{}", f.log.note(5), answer.body);
    let (checkpoint, time) = f.witness.verifier().verify(&cosigned).unwrap();
    assert_eq!((checkpoint.size, time), (5, NOW));

    // The stored note is the log's note with the cosignature appended, for auditors and
    // monitors alike.
    assert_eq!(
        vellum_witness::latest(&f.dir, ORIGIN).unwrap().unwrap(),
        cosigned
    );
    let monitor = send(
        &f.witness,
        Request::get(format!("/{}/checkpoint", origin_hash(ORIGIN)))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(monitor.status, StatusCode::OK);
    assert_eq!(monitor.body, cosigned);

    // A consistent extension, with its RFC 6962 proof.
    let answer = post(&f.witness, f.log.body(5, 13)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let cosigned = format!("{}{}", f.log.note(13), answer.body);
    assert_eq!(f.witness.verifier().verify(&cosigned).unwrap().0.size, 13);
    assert_eq!(
        vellum_witness::latest(&f.dir, ORIGIN).unwrap().unwrap(),
        cosigned
    );
    // The same checkpoint again: same size, same root, no proof; cosigned again.
    let answer = post(&f.witness, f.log.body(13, 13)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// tlog-witness: an old size other than the witness's is 409 with its size, as
/// `text/x.tlog.size`; a client without state may probe with old size 0.
#[tokio::test]
async fn stale_old_size_is_a_conflict_with_the_current_size() {
    let f = fixture();
    assert_eq!(
        post(&f.witness, f.log.body(0, 8)).await.status,
        StatusCode::OK
    );
    let before = snapshot(&f.dir);
    for body in [f.log.body(0, 10), f.log.body(4, 10)] {
        let answer = post(&f.witness, body).await;
        assert_eq!(answer.status, StatusCode::CONFLICT);
        assert_eq!(answer.content_type, "text/x.tlog.size");
        assert_eq!(answer.body, "8\n");
    }
    assert_eq!(snapshot(&f.dir), before);
    // With the size it learned, the client succeeds.
    assert_eq!(
        post(&f.witness, f.log.body(8, 10)).await.status,
        StatusCode::OK
    );
}

/// tlog-witness: a consistency proof that does not verify is 422; so is a proof sent with
/// old size 0.
#[tokio::test]
async fn bad_proofs_are_unprocessable() {
    let f = fixture();
    refused(
        &f,
        AddCheckpoint {
            old_size: 0,
            proof: vec![[7; 32]],
            note: f.log.note(5),
        }
        .to_body(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "must be empty",
    )
    .await;
    assert_eq!(
        post(&f.witness, f.log.body(0, 5)).await.status,
        StatusCode::OK
    );
    let mut request = AddCheckpoint::parse(f.log.body(5, 13).as_bytes()).unwrap();
    request.proof[0][0] ^= 1;
    refused(
        &f,
        request.to_body(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "does not verify",
    )
    .await;
    request.proof.clear();
    refused(
        &f,
        request.to_body(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "does not verify",
    )
    .await;
}

/// tlog-witness / signed-note: no signature by a trusted key, or a trusted key's signature
/// that fails, is 403; signatures by unknown keys are ignored (and not kept).
#[tokio::test]
async fn forged_signatures_are_forbidden() {
    let f = fixture();
    // The right name, another key: its key ID differs, so nothing trusted signed.
    let impostor = Log::new(2, 20, "a");
    refused(
        &f,
        impostor.body(0, 5),
        StatusCode::FORBIDDEN,
        "no signature by a trusted key",
    )
    .await;
    // The trusted key's name and ID over another signature.
    let note = f.log.note(5);
    let (text, line) = note.rsplit_once("\n\n").unwrap();
    let (head, sig) = line.rsplit_once(' ').unwrap();
    let forged_sig = impostor.note(5);
    let forged_blob = forged_sig.trim_end().rsplit(' ').next().unwrap();
    let forged = format!("{text}\n\n{head} {}{}\n", &sig[..6], &forged_blob[6..]);
    refused(
        &f,
        AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: forged,
        }
        .to_body(),
        StatusCode::FORBIDDEN,
        "does not verify",
    )
    .await;
    // Altered text under a genuine signature.
    let altered = note.replacen("\n5\n", "\n6\n", 1);
    refused(
        &f,
        AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: altered,
        }
        .to_body(),
        StatusCode::FORBIDDEN,
        "does not verify",
    )
    .await;
    // An extra signature by an unknown key is ignored, and not stored.
    let other = NoteSigner::new("someone.example/else", &[3; 32]).unwrap();
    let extra = other.sign(&f.log.text(5)).unwrap();
    let extra_line = extra.rsplit_once("\n\n").unwrap().1;
    let with_extra = format!("{note}{extra_line}");
    let answer = post(
        &f.witness,
        AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: with_extra,
        }
        .to_body(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        vellum_witness::latest(&f.dir, ORIGIN).unwrap().unwrap(),
        format!("{note}{}", answer.body)
    );
}

/// tlog-witness: an origin the witness does not follow is 404 (also for monitoring).
#[tokio::test]
async fn unknown_origin_is_not_found() {
    let f = fixture();
    let stranger = NoteSigner::new("other.example/log", &[1; 32]).unwrap();
    let text = Checkpoint {
        origin: "other.example/log".into(),
        size: 0,
        root: root(&[]),
        extensions: vec![],
    }
    .to_text();
    let body = format!("old 0\n\n{}", stranger.sign(&text).unwrap());
    refused(&f, body, StatusCode::NOT_FOUND, "does not follow").await;
    let monitor = send(
        &f.witness,
        Request::get(format!("/{}/checkpoint", origin_hash("other.example/log")))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(monitor.status, StatusCode::NOT_FOUND);
    // A followed log it never cosigned: 404 as well.
    let monitor = send(
        &f.witness,
        Request::get(format!("/{}/checkpoint", origin_hash(ORIGIN)))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(monitor.status, StatusCode::NOT_FOUND);
}

/// A rolled-back log: claiming the witness's size for a smaller checkpoint is 400 (old size
/// above the checkpoint's); claiming the smaller size is 409 with the witness's.
#[tokio::test]
async fn rollbacks_are_refused() {
    let f = fixture();
    assert_eq!(
        post(&f.witness, f.log.body(0, 9)).await.status,
        StatusCode::OK
    );
    let body = AddCheckpoint {
        old_size: 9,
        proof: vec![],
        note: f.log.note(5),
    }
    .to_body();
    refused(
        &f,
        body,
        StatusCode::BAD_REQUEST,
        "larger than the checkpoint",
    )
    .await;
    let before = snapshot(&f.dir);
    let answer = post(&f.witness, f.log.body(0, 5)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::CONFLICT, "9\n")
    );
    assert_eq!(snapshot(&f.dir), before);
}

/// Forks: the same size with another root, and a larger tree that does not extend the one
/// the witness holds, are both 422, even though the log's key signed them.
#[tokio::test]
async fn forks_are_refused() {
    let f = fixture();
    assert_eq!(
        post(&f.witness, f.log.body(0, 9)).await.status,
        StatusCode::OK
    );
    let fork = Log::new(1, 20, "b");
    let same_size = AddCheckpoint {
        old_size: 9,
        proof: vec![],
        note: fork.note(9),
    }
    .to_body();
    refused(&f, same_size, StatusCode::UNPROCESSABLE_ENTITY, "a fork").await;
    refused(
        &f,
        fork.body(9, 15),
        StatusCode::UNPROCESSABLE_ENTITY,
        "does not verify",
    )
    .await;
}

/// tlog-witness: a size-0 checkpoint must carry the empty tree's root (422 otherwise).
#[tokio::test]
async fn empty_tree_needs_the_empty_root() {
    let f = fixture();
    let text = format!("{ORIGIN}\n0\n{}\n", "A".repeat(43) + "=");
    let body = format!("old 0\n\n{}", f.log.signer.sign(&text).unwrap());
    refused(&f, body, StatusCode::UNPROCESSABLE_ENTITY, "empty tree").await;
    assert_eq!(
        post(&f.witness, f.log.body(0, 0)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(&f.witness, f.log.body(0, 3)).await.status,
        StatusCode::OK
    );
}

/// Bodies that are not the specification's format are 400, and too large ones 413.
#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let f = fixture();
    assert_eq!(
        post(&f.witness, f.log.body(0, 4)).await.status,
        StatusCode::OK
    );
    let note = f.log.note(6);
    let bad_checkpoint = f
        .log
        .signer
        .sign(&format!("{ORIGIN}\n06\n{}\n", "A".repeat(43) + "="))
        .unwrap();
    for (body, reason) in [
        (vec![0xff, 0xfe, b'\n', b'\n'], "not UTF-8"),
        (format!("old 4\n{note}").into_bytes(), "base64"),
        (b"old 4\n".to_vec(), "no empty line"),
        (format!("old 04\n\n{note}").into_bytes(), "leading zeros"),
        (format!("4\n\n{note}").into_bytes(), "`old <size>`"),
        (
            format!("old 4\n\n{}", f.log.text(6)).into_bytes(),
            "no signatures",
        ),
        (
            format!("old 4\n\n{bad_checkpoint}").into_bytes(),
            "tree size",
        ),
    ] {
        refused(&f, body, StatusCode::BAD_REQUEST, reason).await;
    }
    let mut huge = f.log.body(4, 6);
    huge.push_str(&"x".repeat(vellum_witness::MAX_BODY_BYTES));
    let before = snapshot(&f.dir);
    let answer = post(&f.witness, huge).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(snapshot(&f.dir), before);
    // Other methods and paths.
    let answer = send(
        &f.witness,
        Request::get("/add-checkpoint").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// The key file is 0600 in a 0700 directory; a restart keeps the key, the followed logs and
/// the state; a second process on the same directory is refused.
#[tokio::test]
async fn key_permissions_and_restart() {
    let f = fixture();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.dir.join("witness.key")), 0o600);
    assert_eq!(mode(&f.dir), 0o700);
    assert!(matches!(
        Witness::open(&f.dir, &[]),
        Err(vellum_witness::Error::InUse(_))
    ));
    assert_eq!(
        post(&f.witness, f.log.body(0, 7)).await.status,
        StatusCode::OK
    );
    let vkey = f.witness.verifier_key();
    assert_eq!(vellum_witness::verifier_key(&f.dir).unwrap(), vkey);
    let Fixture {
        _tmp,
        dir,
        witness,
        log,
    } = f;
    drop(witness);

    // No --log this time: the log is remembered.
    let witness = open(&dir, &[]);
    assert_eq!(witness.verifier_key(), vkey);
    assert_eq!(witness.origins(), vec![ORIGIN]);
    let answer = post(&witness, log.body(0, 9)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::CONFLICT, "7\n")
    );
    assert_eq!(post(&witness, log.body(7, 9)).await.status, StatusCode::OK);
}

/// A `--log` that is not a note verifier key is refused before anything is written.
#[test]
fn bad_log_keys_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("witness");
    assert!(matches!(
        Witness::open(&dir, &["bogus".into()]),
        Err(vellum_witness::Error::BadLogKey(_))
    ));
    assert!(!dir.exists());
    let log = Log::new(1, 1, "a");
    let witness = Witness::open(&dir, &[log.signer.verifier_key()]).unwrap();
    drop(witness);
    let before = snapshot(&dir);
    // A cosignature key (type 0x04) is not a log key either.
    let cosigner = vellum_tlog::cosignature::CosignatureSigner::new(ORIGIN, &[1; 32]).unwrap();
    assert!(Witness::open(&dir, &[cosigner.verifier_key()]).is_err());
    assert_eq!(snapshot(&dir), before);
}

/// A state file the witness's own cosignature does not verify is an error (500), never
/// taken as "nothing seen", which would let a rolled-back log start again from zero.
#[tokio::test]
async fn damaged_state_is_not_taken_for_no_state() {
    let f = fixture();
    assert_eq!(
        post(&f.witness, f.log.body(0, 7)).await.status,
        StatusCode::OK
    );
    let path = f.dir.join("checkpoints").join(origin_hash(ORIGIN));
    let stored = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, stored.replacen("\n7\n", "\n3\n", 1)).unwrap();
    refused(
        &f,
        f.log.body(3, 9),
        StatusCode::INTERNAL_SERVER_ERROR,
        "damaged",
    )
    .await;
    assert!(vellum_witness::latest(&f.dir, ORIGIN).is_err());
}

/// tlog-witness: checking the old size and storing the new checkpoint are one step, so of
/// concurrent submissions from old size 0 exactly one is cosigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_cannot_roll_back() {
    let f = fixture();
    let answers = futures_join(
        (1..=8)
            .map(|size| {
                let witness = f.witness.clone();
                let body = f.log.body(0, size);
                tokio::spawn(async move { post(&witness, body).await.status })
            })
            .collect(),
    )
    .await;
    let ok = answers.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT));
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<StatusCode>>) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
