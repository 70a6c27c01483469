#![no_main]
//! Fuzz target `client_state`: see `volact_fuzz::targets::client_state`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::client_state(data));
