//! The configuration parser and validator over arbitrary text: must not
//! panic, whatever the YAML (errors are values, with lines).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = config::load(&text, 4);
});
