#![no_main]
//! Fuzz target `token`: see `volact_fuzz::targets::token`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::token(data));
