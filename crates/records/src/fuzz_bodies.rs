//! Bodies of the fuzz targets (`fuzz/fuzz_targets`) that exercise this crate's parsers. An
//! ordinary test runs each over the committed seed corpus (`fuzz/corpus/<target>`), so the
//! targets build and hold without a nightly toolchain. None may panic on any input.

use crate::{generate, RecordsPublic, Unsealer};

/// `records_share`: custodians hand in share files, and the archiver reads `records.pub`;
/// a bad file is refused without a panic, and a share of another key is never accepted.
pub fn records_share(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(public) = RecordsPublic::parse(text) {
        let again = RecordsPublic::parse(&public.to_json()).expect("records.pub re-parses");
        assert_eq!(again.to_json(), public.to_json());
    }
    let public = generate(3, 2, "records.test/vellum")
        .expect("3 of 2 is valid")
        .public;
    let mut unsealer = Unsealer::new(public);
    assert!(
        unsealer.add(text).is_err(),
        "a share from nowhere was accepted"
    );
}
