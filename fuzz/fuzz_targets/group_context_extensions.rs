#![no_main]
//! The chat-policy and record-chat GroupContext extensions (body: vellum_mls::fuzz_bodies).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vellum_mls::fuzz_bodies::group_context_extensions(data));
