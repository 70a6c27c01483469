//! # volact-ffi: the C ABI of volact-sdk
//!
//! Built as `libvolact.so` / `libvolact.a` (and `.dll`/`.lib`, `.dylib` elsewhere), with
//! the header `include/volact.h`. The rules every function keeps:
//!
//! - A licence is an opaque handle ([`VolactLicense`]) from [`volact_open`], released
//!   with [`volact_close`]; a handle may be used from several threads at once.
//! - Every function that can fail returns a [`VolactStatus`]: `VOLACT_STATUS_OK`, or the
//!   stable error code of what went wrong (the same codes as the host's API and the
//!   `volact` command). [`volact_last_error_message`] says it in words, per thread.
//! - No panic ever crosses into C: one is caught and returned as
//!   `VOLACT_STATUS_INTERNAL`.
//! - Strings are UTF-8 and NUL-terminated. Strings the library returns are freed with
//!   [`volact_string_free`]; names (`volact_state_name`, …) are static and never freed.
//!
//! docs/EMBEDDING.md shows a product in C and in Python from nothing.

mod abi;
mod codes;
mod last_error;

pub use abi::*;
pub use codes::{VolactCheck, VolactReason, VolactState, VolactStatus};
