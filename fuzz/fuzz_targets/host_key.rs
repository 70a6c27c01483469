#![no_main]
//! Fuzz target `host_key`: see `volact_fuzz::targets::host_key`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::host_key(data));
