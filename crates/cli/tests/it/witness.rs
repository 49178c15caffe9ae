//! Issue 8, behaviour 3: `vellum witness` cosigns an archive's checkpoints over the C2SP
//! tlog-witness protocol; `witness latest` and `witness key` give an auditor what to compare.

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, ChildStdout};
use std::time::Duration;

use vellum_archive::{Archive, Leaf};
use vellum_tlog::cosignature::CosignatureVerifier;
use vellum_tlog::NoteSigner;
use vellum_witness::{AddCheckpoint, Submitted};

use crate::harness::{
    last_line, run_fails, run_ok, spawn_piped, vellum, wait_for_line, Device, Server,
};
use crate::records::{records_org, verify_cmd, wait_for_records, wait_until};

const ORIGIN: &str = "records.agency.example/vellum";

/// A running `vellum witness`, killed when dropped.
pub(crate) struct Running {
    child: Child,
    pub(crate) url: String,
    /// Kept open: the witness prints more lines after the address.
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(data: &Path, logs: &[&str]) -> Running {
    let mut cmd = vellum();
    cmd.args(["witness", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    for log in logs {
        cmd.args(["--log", log]);
    }
    let mut child = spawn_piped(&mut cmd);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The first line names the bound address once the listener is up.
    let line = wait_for_line(&mut stdout, |_| true, Duration::from_secs(20))
        .expect("the witness printed nothing");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address on the first line: {line:?}"))
        .to_owned();
    Running {
        child,
        url,
        _stdout: stdout,
    }
}

fn grow(archive: &mut Archive, n: usize) {
    for i in 0..n {
        archive
            .append(Leaf::Access {
                time: 1_700_000_000_000 + i as i64,
                action: "search".into(),
                detail: format!("query {i}"),
            })
            .unwrap();
    }
}

fn submit(url: &str, request: &AddCheckpoint) -> Submitted {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(vellum_witness::submit(
            &reqwest::Client::new(),
            url,
            request,
        ))
        .unwrap()
}

#[test]
fn issue_8_witness_cosigns_an_archive_and_auditors_read_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("witness");
    let mut archive = Archive::open(
        &tmp.path().join("archive"),
        NoteSigner::new(ORIGIN, &[9; 32]).unwrap(),
    )
    .unwrap();
    let log_key = archive.verifier_key();
    grow(&mut archive, 3);
    let first = archive.checkpoint().unwrap();

    let witness = start(&data, &[&log_key]);
    let key_out = run_ok(vellum().args(["witness", "key", "--data"]).arg(&data));
    let vkey = last_line(&key_out);
    let verifier = CosignatureVerifier::parse(&vkey).unwrap();

    // The first checkpoint: old size 0, no proof.
    let Submitted::Cosigned(line) = submit(
        &witness.url,
        &AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: first.clone(),
        },
    ) else {
        panic!("not cosigned")
    };
    assert_eq!(
        verifier.verify(&format!("{first}{line}")).unwrap().0.size,
        3
    );

    // The archive grows; the witness gets the consistency proof from 3.
    grow(&mut archive, 4);
    let second = archive.checkpoint().unwrap();
    let Submitted::Cosigned(line) = submit(
        &witness.url,
        &AddCheckpoint {
            old_size: 3,
            proof: archive.consistency_proof(3, 7).unwrap(),
            note: second.clone(),
        },
    ) else {
        panic!("not cosigned")
    };
    // A log that lost its place learns the witness's size.
    assert_eq!(
        submit(
            &witness.url,
            &AddCheckpoint {
                old_size: 0,
                proof: vec![],
                note: first.clone(),
            },
        ),
        Submitted::Conflict(7)
    );

    // What an auditor compares against the archive: the archive's note, cosigned.
    let latest = run_ok(
        vellum()
            .args(["witness", "latest", "--origin", ORIGIN, "--data"])
            .arg(&data),
    );
    let latest = String::from_utf8(latest.stdout).unwrap();
    assert_eq!(latest, format!("{second}{line}"));
    let (checkpoint, _) = verifier.verify(&latest).unwrap();
    assert_eq!((checkpoint.origin.as_str(), checkpoint.size), (ORIGIN, 7));

    // One witness per directory; an origin it never cosigned is a clear error.
    let busy = run_fails(
        vellum()
            .args(["witness", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data),
    );
    assert!(busy.contains("another witness is running"), "{busy}");
    let none = run_fails(
        vellum()
            .args([
                "witness",
                "latest",
                "--origin",
                "other.example/log",
                "--data",
            ])
            .arg(&data),
    );
    assert!(
        none.contains("no checkpoint of \"other.example/log\""),
        "{none}"
    );

    // A restart without --log remembers the log, the key and the state.
    drop(witness);
    let witness = start(&data, &[]);
    assert_eq!(
        submit(
            &witness.url,
            &AddCheckpoint {
                old_size: 0,
                proof: vec![],
                note: first,
            },
        ),
        Submitted::Conflict(7)
    );
    let key_again = run_ok(vellum().args(["witness", "key", "--data"]).arg(&data));
    assert_eq!(last_line(&key_again), vkey);
}

/// The note's text: everything before its signature lines.
fn body(note: &str) -> &str {
    &note[..note.rfind("\n\n").expect("a signed note") + 1]
}

/// The newest checkpoint file of the archiver in `data`: (size, note).
fn newest_checkpoint(data: &Path) -> Option<(u64, String)> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("archive/checkpoints"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    files.sort_by_key(|e| e.file_name());
    let newest = files.pop()?;
    let size = newest.file_name().to_string_lossy().parse().ok()?;
    Some((size, std::fs::read_to_string(newest.path()).ok()?))
}

#[test]
fn issue_8_the_archiver_keeps_its_witness_cosignatures_and_verify_requires_them() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start(root.path());
    let alice = Device::new_user(&server, root.path(), "alice");
    let bob = Device::new_user(&server, root.path(), "bob");
    // First start without witnesses: the log's key exists from then on.
    let mut archiver = records_org(&server, root.path());
    let log_vkey = std::fs::read_to_string(archiver.data.join("archive/log.vkey")).unwrap();
    let log_vkey = log_vkey.trim_end().to_owned();
    let origin = log_vkey.split('+').next().unwrap().to_owned();
    archiver.kill();

    let wdata = root.path().join("witness");
    let witness = start(&wdata, &[&log_vkey]);
    let vkey = last_line(&run_ok(
        vellum().args(["witness", "key", "--data"]).arg(&wdata),
    ));
    let verifier = CosignatureVerifier::parse(&vkey).unwrap();
    let witness_arg = format!("{}={vkey}", witness.url);

    // Bad witness flags are refused before anything starts.
    for (args, why) in [
        (vec!["--witness", "no-key-here"], "expected URL=VKEY"),
        (
            vec!["--witness", &format!("not a url={vkey}")],
            "is not an http(s) URL",
        ),
        (
            vec!["--witness", &format!("http://user:pw@127.0.0.1:1={vkey}")],
            "must not carry a user name or password",
        ),
        (
            vec!["--witness", &format!("{}=junk", witness.url)],
            "not a witness key",
        ),
        (
            vec!["--witness", &witness_arg, "--witness-quorum", "2"],
            "exceeds the number of witnesses (1)",
        ),
    ] {
        let err = run_fails(
            vellum()
                .args(["archiver", "--server", &server.url, "--data"])
                .arg(&archiver.data)
                .arg("--records-key")
                .arg(root.path().join("keys/records.pub"))
                .args(["--listen", "127.0.0.1:0"])
                .args(&args),
        );
        assert!(err.contains(why), "{args:?}: {err}");
    }

    archiver.extra_args = vec!["--witness".into(), witness_arg];
    archiver.spawn(None);
    alice.ok(&["chat", "create", "witnessed", "--with", "bob"]);
    bob.ok(&["sync"]);
    alice.ok(&["send", "witnessed", "seen by the inspector"]);
    wait_for_records(&archiver, 3);

    // The newest checkpoint covers the whole log and carries the witness's cosignature.
    wait_until("a cosigned checkpoint over the whole log", || {
        let size = archiver.status()["log_size"].as_u64().unwrap();
        newest_checkpoint(&archiver.data)
            .is_some_and(|(cp, note)| cp >= size && verifier.verify(&note).is_ok())
    });
    let (size, note) = newest_checkpoint(&archiver.data).unwrap();
    assert_eq!(verifier.verify(&note).unwrap().0.size, size);

    let verify = |witness: &str| {
        let mut cmd = verify_cmd(&archiver, root.path());
        cmd.args(["--witness", witness]);
        cmd
    };
    let out = run_ok(&mut verify(&vkey));
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("archive intact"), "{out}");
    assert!(
        out.contains(&format!("cosigned by witness {}", verifier.name())),
        "{out}"
    );

    // A witness that never saw this log: verify fails and names it.
    let fresh = root.path().join("fresh-witness");
    let fresh_key = last_line(&run_ok(
        vellum().args(["witness", "key", "--data"]).arg(&fresh),
    ));
    let fresh_name = fresh_key.split('+').next().unwrap().to_owned();
    let err = run_fails(&mut verify(&fresh_key));
    assert!(err.contains(&fresh_name), "{err}");
    assert!(!err.contains(verifier.name()), "{err}");

    // The witness's own record agrees with the archive's newest checkpoint.
    archiver.kill();
    let (_, note) = newest_checkpoint(&archiver.data).unwrap();
    let latest = run_ok(
        vellum()
            .args(["witness", "latest", "--origin", &origin, "--data"])
            .arg(&wdata),
    );
    let latest = String::from_utf8(latest.stdout).unwrap();
    assert_eq!(body(&latest), body(&note));
}
