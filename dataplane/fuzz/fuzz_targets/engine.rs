//! The NAT engine fed arbitrary frame sequences from both sides: must not
//! panic (sessions, ports, fragments and ICMP errors all get exercised).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::testing::fuzzing::engine_any(data));
