//! `vellum bench load` (issue 13): one JSON summary of a real run against a `vellum server`
//! child; bad shapes refused before anything starts.

use serde_json::Value;

use crate::harness::{run_fails, run_ok, vellum};

#[test]
fn issue_13_bench_load_delivers_every_message_to_every_member_and_summarises_in_json() {
    let out = run_ok(vellum().args([
        "bench",
        "load",
        "--devices",
        "6",
        "--chats",
        "2",
        "--members",
        "3",
        "--rate",
        "20",
        "--duration",
        "2",
    ]));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for field in [
        "sent_per_s",
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "server_rss_kib",
        "payload_bytes",
    ] {
        assert!(summary[field].is_number(), "{field} missing: {summary}");
    }
    for quantile in ["p50_ms", "p99_ms", "p999_ms"] {
        assert!(
            summary["send_to_deliver"][quantile].is_number(),
            "{quantile} missing: {summary}"
        );
    }
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent > 0, "{summary}");
    assert_eq!(
        summary["deliveries"].as_u64().unwrap(),
        sent * 2,
        "{summary}"
    );
    assert_eq!(summary["expected_deliveries"].as_u64().unwrap(), sent * 2);
    for kind in ["send", "receive", "missing"] {
        assert_eq!(summary["errors"][kind], 0, "{kind} errors: {summary}");
    }
    assert!(summary["server_rss_kib"].as_u64().unwrap() > 0);
    assert_eq!(summary["per_node"].as_array().unwrap().len(), 1);
}

#[test]
fn issue_13_bench_load_refuses_shapes_that_cannot_run() {
    let refused = |extra: &[&str], expected: &str| {
        let mut args = vec!["bench", "load", "--duration", "1"];
        args.extend_from_slice(extra);
        let line = run_fails(vellum().args(&args));
        assert!(line.contains(expected), "{extra:?}: {line}");
    };
    refused(&["--members", "0"], "--members must be at least 2");
    refused(
        &["--devices", "3", "--members", "5"],
        "--members 5 is more than --devices 3",
    );
    refused(&["--rate", "0"], "--rate must be a positive number");
    refused(
        &["--devices", "10", "--chats", "5", "--members", "8"],
        "--devices 10 is too few",
    );
    refused(&["--nodes", "2"], "--nodes above 1 needs --database-url");
}
