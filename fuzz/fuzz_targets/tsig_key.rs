#![no_main]
//! Fuzz target `tsig_key`: see `volact_fuzz::targets::tsig_key`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::tsig_key(data));
