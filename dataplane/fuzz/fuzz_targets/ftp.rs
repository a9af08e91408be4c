//! The FTP ALG's line parser and rewriter over arbitrary payloads: must not panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::testing::fuzzing::ftp_any(data));
