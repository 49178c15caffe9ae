//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::run;

#[test]
fn record() {
    run("record", vellum_record::fuzz_bodies::record, |d| {
        vellum_record::Record::decode(d).is_ok()
    });
}

#[test]
fn receipt() {
    run("receipt", vellum_record::fuzz_bodies::receipt, |d| {
        let text = String::from_utf8_lossy(d);
        text.split_once('\n').is_some_and(|(key, r)| {
            vellum_record::fuzz_bodies::binding_of(key)
                .is_some_and(|b| vellum_record::verify_receipt(r, &b).is_ok())
        })
    });
}
