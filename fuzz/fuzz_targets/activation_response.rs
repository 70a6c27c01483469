#![no_main]
//! Fuzz target `activation_response`: see `volact_fuzz::targets::activation_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::activation_response(data));
