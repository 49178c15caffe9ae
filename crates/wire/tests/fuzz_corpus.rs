//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::run;

#[test]
fn app_payload() {
    run("app_payload", vellum_wire::fuzz_bodies::app_payload, |d| {
        vellum_wire::AppPayload::decode(d).is_ok()
    });
}

#[test]
fn sync_response() {
    run(
        "sync_response",
        vellum_wire::fuzz_bodies::sync_response,
        |d| {
            serde_json::from_slice::<vellum_wire::SyncResponse>(d).is_ok()
                || serde_json::from_slice::<vellum_wire::EnrollResponse>(d).is_ok()
        },
    );
}
