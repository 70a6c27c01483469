#![no_main]
//! Fuzz target `host_config`: see `volact_fuzz::targets::host_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::host_config(data));
