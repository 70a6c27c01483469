#![no_main]
//! Fuzz target `vendor_bundle`: see `volact_fuzz::targets::vendor_bundle`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| volact_fuzz::targets::vendor_bundle(data));
