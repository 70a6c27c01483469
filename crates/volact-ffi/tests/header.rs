//! include/volact.h is what cbindgen makes of this crate: the test fails when the
//! committed header is stale. `VOLACT_BLESS=1` rewrites it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut builder = cbindgen::Builder::new().with_config(config);
    for file in ["lib.rs", "abi.rs", "codes.rs"] {
        builder = builder.with_src(crate_dir.join("src").join(file));
    }
    let mut generated = Vec::new();
    builder.generate().unwrap().write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let header = crate_dir.join("../../include/volact.h");
    if std::env::var_os("VOLACT_BLESS").is_some() {
        std::fs::write(&header, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/volact.h is stale: regenerate it with `VOLACT_BLESS=1 cargo test -p volact-ffi --test header` and commit it"
    );
}
