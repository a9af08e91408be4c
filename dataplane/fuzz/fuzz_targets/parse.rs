//! Every packet view and both parsers over arbitrary bytes: must not panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::testing::fuzzing::parse_any(data));
