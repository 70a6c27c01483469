#![no_main]
//! Fuzz target `setup_key`: see `volact_fuzz::targets::setup_key`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::setup_key(data));
