#![no_main]
//! Fuzz target `dns_answer`: see `volact_fuzz::targets::dns_answer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::dns_answer(data));
