//! The fuzz targets' bodies over the committed seed corpus (no nightly toolchain needed).

#[path = "../../../fuzz/seed_corpus.rs"]
mod seed_corpus;
use seed_corpus::run;

use vellum_mls::fuzz_bodies::{self, FUZZ_ORG_SEED};
use vellum_mls::mls_rs::{Extension, ExtensionList};
use vellum_mls::{ChatPolicy, OrgIdentityProvider, OrgSigner, RecordChat};

#[test]
fn device_certificate() {
    let org = OrgSigner::from_seed(&FUZZ_ORG_SEED).unwrap().public_key();
    run("device_certificate", fuzz_bodies::device_certificate, |d| {
        vellum_mls::DeviceCertificate::verify(d, &org).is_ok()
    });
}

#[test]
fn mls_message() {
    let org = OrgSigner::from_seed(&FUZZ_ORG_SEED).unwrap().public_key();
    let tracker = vellum_mls::GroupTracker::new(OrgIdentityProvider::new(org));
    run("mls_message", fuzz_bodies::mls_message, |d| {
        vellum_mls::parse_message(d).is_ok() || tracker.load(d).is_ok()
    });
}

#[test]
fn group_context_extensions() {
    run(
        "group_context_extensions",
        fuzz_bodies::group_context_extensions,
        |d| {
            let with = |ext| {
                let mut list = ExtensionList::new();
                list.set(Extension::new(ext, d.to_vec()));
                list
            };
            let policy = ChatPolicy::from_extensions(&with(vellum_mls::CHAT_POLICY_EXTENSION));
            let record = RecordChat::archiver(&with(vellum_mls::RECORD_CHAT_EXTENSION));
            let mut reader = d;
            let list = <ExtensionList as mls_rs_codec::MlsDecode>::mls_decode(&mut reader)
                .ok()
                .filter(|l| {
                    ChatPolicy::from_extensions(l).is_ok_and(|p| p != ChatPolicy::default())
                        && RecordChat::archiver(l).is_ok_and(|a| a.is_some())
                });
            policy.is_ok() || record.is_ok() || list.is_some()
        },
    );
}
