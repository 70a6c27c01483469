//! The examples of examples/c and examples/python, built and run against a real host on
//! loopback, as a vendor would run them: each installs a setup key, activates, checks,
//! and prints the state.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::Fixture;
use std::path::{Path, PathBuf};
use std::process::Command;
use volact_testkit::skip_or_fail;

/// The system libraries a Rust static library needs on Linux (`--print native-static-libs`).
const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where cargo put libvolact.{a,so} for this test: beside the test's binary, in
/// target/PROFILE/deps (`cargo build` also copies them one level up, but `cargo test`
/// does not, so the copies there can be stale).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .expect("the test binary lives in target/PROFILE/deps")
        .to_path_buf();
    assert!(
        dir.join("libvolact.a").exists() && dir.join("libvolact.so").exists(),
        "libvolact.a and libvolact.so are not in {}; cargo builds them with this crate",
        dir.display()
    );
    dir
}

fn found(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

#[test]
fn the_c_example_links_the_static_library_and_activates() {
    if !found("cc") {
        skip_or_fail(
            "the_c_example_links_the_static_library_and_activates",
            "a C compiler `cc` (apt-get install gcc)",
        )
        .unwrap();
        return;
    }
    let f = Fixture::new();
    let exe = f.dir.path().join("activate");
    let built = Command::new("cc")
        .arg("-std=c99")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-o")
        .arg(&exe)
        .arg(repo().join("examples/c/activate.c"))
        .arg("-I")
        .arg(repo().join("include"))
        .arg(library_dir().join("libvolact.a"))
        .args(NATIVE_LIBS)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&exe)
        .arg(f.state("c.json"))
        .arg(f.bundle_file())
        .arg(f.setup_key())
        .arg(f.host.address())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the C example failed:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("at start: state=unlicensed reason=no-setup-key"),
        "{out}"
    );
    assert!(
        out.contains("after activation: state=licensed reason=activated until="),
        "{out}"
    );
    let json_line = out.lines().find_map(|l| l.strip_prefix("json: ")).unwrap();
    let check: serde_json::Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(
        f.inventory(),
        vec![check["client_id"].as_str().unwrap().to_string()]
    );
    // The callback heard each change: nothing known → unlicensed → grace → licensed.
    assert!(out.contains("changes seen: 3"), "{out}");
}

#[test]
fn the_python_example_uses_the_shared_library_through_ctypes_and_activates() {
    if !found("python3") {
        skip_or_fail(
            "the_python_example_uses_the_shared_library_through_ctypes_and_activates",
            "python3 (apt-get install python3)",
        )
        .unwrap();
        return;
    }
    let f = Fixture::new();
    let run = Command::new("python3")
        .arg(repo().join("examples/python/activate.py"))
        .arg(library_dir().join("libvolact.so"))
        .arg(f.state("py.json"))
        .arg(f.bundle_file())
        .arg(f.setup_key())
        .arg(f.host.address())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the Python example failed:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("state=licensed reason=activated until=20"),
        "{out}"
    );
    let client_id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id="))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert_eq!(f.inventory(), vec![client_id.to_string()]);
    assert!(
        out.contains("changes=unlicensed,initial-grace,licensed"),
        "{out}"
    );
}
