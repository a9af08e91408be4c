//! The HA sync link's record batches over arbitrary bytes: must not panic,
//! and what decodes encodes back to the same bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::testing::fuzzing::ha_records_any(data));
