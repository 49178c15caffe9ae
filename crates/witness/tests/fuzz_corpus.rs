//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;

use vellum_witness::fuzz_bodies;

#[test]
fn witness_request() {
    seed_corpus::run("witness_request", fuzz_bodies::witness_request, |d| {
        fuzz_bodies::check_request(d).is_ok()
    });
}
