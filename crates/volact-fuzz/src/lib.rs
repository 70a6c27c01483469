//! The checks behind volact's fuzz targets (`fuzz/`), shared by the coverage-guided
//! fuzzers and by the workspace tests that replay the committed corpus in-process, so a
//! corpus file means the same thing to both.
//!
//! Every parser of outside input has one target in [`TARGETS`]: the activation request,
//! PASETO tokens, setup keys, host keys, the vendor bundle, the host's configuration, TSIG
//! key files, DNS answers, the client state file, and the host's activation answer as the
//! client checks it.

pub mod fixtures;
pub mod seeds;
pub mod targets;

/// A fuzz target: its name (the file in `fuzz/fuzz_targets/` and the corpus directory
/// `fuzz/corpus/NAME/`) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the bounded run takes them.
pub const TARGETS: [Target; 10] = [
    ("activation_request", targets::activation_request),
    ("token", targets::token),
    ("setup_key", targets::setup_key),
    ("host_key", targets::host_key),
    ("vendor_bundle", targets::vendor_bundle),
    ("host_config", targets::host_config),
    ("tsig_key", targets::tsig_key),
    ("dns_answer", targets::dns_answer),
    ("client_state", targets::client_state),
    ("activation_response", targets::activation_response),
];

/// The check of target `name`, if there is one.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
