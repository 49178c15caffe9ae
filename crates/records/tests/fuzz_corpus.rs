//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::{corpus, run};

#[test]
fn records_share() {
    // The corpus's share belongs to the corpus's records.pub.
    let public = corpus("records_share")
        .into_iter()
        .find(|(n, _)| n == "records.pub")
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .unwrap();
    let public = vellum_records::RecordsPublic::parse(&public).unwrap();
    run(
        "records_share",
        vellum_records::fuzz_bodies::records_share,
        |d| {
            let text = std::str::from_utf8(d).unwrap_or_default();
            vellum_records::RecordsPublic::parse(text).is_ok()
                || vellum_records::Unsealer::new(public.clone())
                    .add(text)
                    .is_ok()
        },
    );
}
