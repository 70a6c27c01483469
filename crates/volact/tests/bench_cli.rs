//! `volact host seed-clients` and `volact bench` together, through the real binary: the
//! seed reported by seeding makes the load tool renew the seeded clients, and its
//! default seed sends new ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, app_count, host_status, provision, run, s};

#[test]
fn bench_renews_seeded_clients_with_the_reported_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let seeded = run(&[
        "--json",
        "host",
        "seed-clients",
        "--data",
        s(&fx.data),
        "--count",
        "40",
    ])
    .ok()
    .json();
    let bench_seed = seeded["bench_seed"].as_u64().unwrap().to_string();
    // Seeding writes clients of the catalog's first product.
    assert_eq!(seeded["product"], "suite-desktop");
    let server = Server::start(&fx.data, &[]);
    assert_eq!(app_count(&host_status(&fx.data), "acme-suite"), 40);

    let bench = |clients: &str, requests: &str, seed: &str| {
        run(&[
            "--json",
            "bench",
            "--url",
            &server.url,
            "--setup-key",
            fx.key("suite-desktop"),
            "--vendor",
            s(&fx.bundle),
            "--verify-sample",
            "1",
            "--clients",
            clients,
            "--requests",
            requests,
            "--concurrency",
            "4",
            "--seed",
            seed,
        ])
        .ok()
        .json()
    };
    let renewals = bench("40", "80", &bench_seed);
    assert_eq!(renewals["results"]["activated"], 80, "{renewals:#}");
    assert_eq!(renewals["verify_failures"], 0, "{renewals:#}");
    assert_eq!(
        app_count(&host_status(&fx.data), "acme-suite"),
        40,
        "every request renewed a seeded client"
    );

    let newcomers = bench("10", "10", "0");
    assert_eq!(newcomers["results"]["activated"], 10, "{newcomers:#}");
    assert_eq!(app_count(&host_status(&fx.data), "acme-suite"), 50);
}

/// Runs `cargo tree` on this package with `edges` and returns the features volact is
/// built with, as cargo prints them (`[a,b]`).
fn features_of_volact(edges: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            manifest,
            "-p",
            "volact",
        ])
        .args(["-e", edges, "--depth", "0", "-f", "{p} [{f}]"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("volact v")).unwrap();
    line[line.rfind('[').unwrap()..].to_string()
}

/// The seeding command writes counted clients straight into a store: a build without
/// dev-dependencies (`cargo build`, `cargo install`, a release) must not have it, while
/// the tests here (which build the dev-dependencies) do.
#[test]
fn only_test_and_bench_builds_can_seed_clients() {
    assert_eq!(
        features_of_volact("normal,build"),
        "[]",
        "a plain build of volact enables bench-seed"
    );
    // Positive control: the resolver run the tests use does enable it, so the command
    // the test above runs is the feature's.
    assert!(features_of_volact("normal,build,dev").contains("bench-seed"));
    run(&["host", "seed-clients", "--help"]).ok();
}
