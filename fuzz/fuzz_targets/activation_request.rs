#![no_main]
//! Fuzz target `activation_request`: see `volact_fuzz::targets::activation_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::activation_request(data));
