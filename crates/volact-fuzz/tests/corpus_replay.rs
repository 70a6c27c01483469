//! Replays the committed fuzz corpus (and the seeds as this code makes them) through the
//! same checks the fuzzers run, in-process and without instrumentation, so the corpus
//! and its regression inputs stay meaningful even where the fuzz build cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use volact_fuzz::{TARGETS, fixtures, seeds, target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn corpus_files(name: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_binary_and_a_small_corpus() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(
            text.contains(&format!("volact_fuzz::targets::{name}(")),
            "{} does not call its check",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} not in fuzz/Cargo.toml"
        );
        let files = corpus_files(name);
        assert!(!files.is_empty(), "no seed for {name}");
        let size: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(
            size <= 16 * 1024,
            "the {name} corpus is {size} bytes; keep it small"
        );
    }
}

#[test]
fn committed_corpus_replays_clean() {
    let mut n = 0;
    for (name, check) in TARGETS {
        for file in corpus_files(name) {
            let bytes = std::fs::read(&file).unwrap();
            check(&bytes);
            n += 1;
        }
    }
    assert!(n >= TARGETS.len());
    println!("replayed {n} corpus files");
}

#[test]
fn fresh_seeds_replay_clean() {
    let seeds = seeds::seeds();
    for (name, file, bytes) in &seeds {
        let check = target(name).unwrap_or_else(|| panic!("seed {file} for unknown target {name}"));
        check(bytes);
    }
    for (name, _) in TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == name),
            "no fresh seed for {name}"
        );
    }
}

/// Positive controls: the valid seeds really pass the parsers they feed, so the fuzzers
/// start past the first check and the "never verifies" properties are not vacuous.
#[test]
fn valid_seeds_are_accepted_by_their_parsers() {
    use volact_core::ticket::{Expected, VerifiedAnswer, verify_answer};
    let w = fixtures::world();
    let req: volact_proto::ActivationRequest = serde_json::from_slice(
        &std::fs::read(fuzz_dir().join("corpus/activation_request/valid.json")).unwrap(),
    )
    .unwrap();
    volact_core::decide::parse_request(&req).unwrap();
    let answer: volact_proto::ActivationResponse = serde_json::from_slice(
        &std::fs::read(fuzz_dir().join("corpus/activation_response/activated.json")).unwrap(),
    )
    .unwrap();
    let expected = Expected {
        client_id: fixtures::CLIENT_ID,
        product: fixtures::PRODUCT,
        nonce: fixtures::NONCE,
        minimum: w.ticket.minimum,
        now: fixtures::now(),
        max_skew: volact_core::settings::Settings::default().max_clock_skew,
        catalog: None,
    };
    assert!(matches!(
        verify_answer(w.root.public(), &answer, expected).unwrap(),
        VerifiedAnswer::Ticket { .. }
    ));
    let bundle: volact_core::catalog::VendorBundle = serde_json::from_slice(
        &std::fs::read(fuzz_dir().join("corpus/vendor_bundle/vendor.pub")).unwrap(),
    )
    .unwrap();
    bundle.open().unwrap();
    let host_req: volact_proto::HostActivationRequest = serde_json::from_slice(
        &std::fs::read(fuzz_dir().join("corpus/host_key/request.json")).unwrap(),
    )
    .unwrap();
    volact_core::certificate::activate_host(
        &w.root,
        &w.catalog,
        &mut Default::default(),
        &host_req,
        fixtures::now(),
        365,
    )
    .unwrap();
    let text = std::fs::read_to_string(fuzz_dir().join("corpus/host_config/full.toml")).unwrap();
    let raw = volact_engine::config::RawConfig::from_toml(&text, Path::new("volact.toml")).unwrap();
    raw.resolve().unwrap();
    let publish = raw.dns.unwrap().publish.unwrap();
    publish
        .resolve(Path::new("/nonexistent-volact-data"), 7688)
        .unwrap();
    let text =
        std::fs::read_to_string(fuzz_dir().join("corpus/client_state/activated.json")).unwrap();
    let state = volact_client::ClientState::parse(&text, Path::new("client.json")).unwrap();
    assert!(state.ticket.is_some());
    let key = std::fs::read_to_string(fuzz_dir().join("corpus/tsig_key/update.key")).unwrap();
    volact_engine::dns::tsig::TsigKey::parse(&key, Path::new("update.key"))
        .unwrap()
        .signer()
        .unwrap();
    for p in &w.catalog.products {
        let typed =
            std::fs::read_to_string(fuzz_dir().join("corpus/setup_key").join(&p.id)).unwrap();
        assert_eq!(
            volact_core::setup_key::SetupKey::parse(&typed).unwrap(),
            p.setup_key
        );
    }
}
