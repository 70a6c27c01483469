//! Nothing to use: this library exists only so the package can name itself as a
//! dev-dependency with the `bench-seed` feature (Cargo wants a library to depend on),
//! which gives tests a binary with `volact host seed-clients` while `cargo build` and
//! `cargo install` build one without it.

/// Whether this build has `volact host seed-clients` (the `bench-seed` feature).
pub const BENCH_SEED: bool = cfg!(feature = "bench-seed");
