//! The whole offline chain through the `volact` binary: vendor keys and catalog, host key
//! with activation limits, offline host activation, serving, and clients counting up to
//! a product's minimum, with the KMS-style aliases and `--json` / `--state` anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CATALOG_TOML, Server, app_count, host_status, run, s};
use serde_json::Value;
use std::path::Path;

/// `volact vendor activate-host` for a fresh request of the host in `data`.
fn host_activation(root: &Path, vendor: &Path, data: &Path, name: &str) -> common::Output {
    let request = root.join(format!("{name}.request.json"));
    run(&[
        "host",
        "activate",
        "--data",
        s(data),
        "--request-out",
        s(&request),
    ])
    .ok();
    assert!(
        request.exists(),
        "no request written to {}",
        request.display()
    );
    run(&[
        "--json",
        "vendor",
        "activate-host",
        "--dir",
        s(vendor),
        s(&request),
    ])
}

/// Changes one character of a setup key to another character of the key alphabet.
fn mistype(key: &str) -> String {
    let first = key.chars().next().unwrap();
    let other = if first == 'C' { 'D' } else { 'C' };
    format!("{other}{}", &key[1..])
}

#[test]
fn vendor_host_and_clients_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vendor = root.join("vendor");

    // --- vendor: root key, stored private to its owner.
    let init = run(&["vendor", "init", "--dir", s(&vendor), "--json"])
        .ok()
        .json();
    let root_public = init["root_public_key"].as_str().unwrap().to_string();
    assert!(root_public.starts_with("k4.public."), "{init:#}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(vendor.join("root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "root.key mode is {:o}", mode & 0o777);
    }
    // A second init must not replace the root key.
    let before = std::fs::read(vendor.join("root.key")).unwrap();
    let again = run(&["vendor", "init", "--dir", s(&vendor), "--json"]).fails();
    assert_eq!(again.error_code(), "invalid-state");
    assert_eq!(std::fs::read(vendor.join("root.key")).unwrap(), before);

    // --- catalog: setup keys generated; signing again keeps them and bumps the version.
    let source = root.join("catalog.toml");
    std::fs::write(&source, CATALOG_TOML).unwrap();
    let sign = |args_json_first: bool| {
        let mut args = vec![
            "vendor",
            "catalog",
            "--dir",
            s(&vendor),
            "--from",
            s(&source),
        ];
        if args_json_first {
            args.insert(0, "--json");
        } else {
            args.push("--json");
        }
        run(&args).ok().json()
    };
    let v1 = sign(false);
    assert_eq!(v1["version"], 1, "{v1:#}");
    let keys = v1["setup_keys"].as_object().unwrap().clone();
    assert_eq!(keys.len(), 4, "{v1:#}");
    for (product, key) in &keys {
        let key = key.as_str().unwrap();
        assert_eq!(key.len(), 29, "{product}: {key}");
        assert_eq!(key.matches('-').count(), 4, "{product}: {key}");
    }
    let product = |catalog: &Value, id: &str| -> Value {
        catalog["catalog"]["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no product {id}"))
    };
    assert_eq!(product(&v1, "suite-server")["kind"], "server");
    assert_eq!(
        product(&v1, "suite-server")["minimum_count"],
        5,
        "a server product defaults to minimum 5"
    );
    assert_eq!(
        product(&v1, "draw-server")["minimum_count"],
        5,
        "a server product defaults to minimum 5"
    );
    assert_eq!(product(&v1, "suite-desktop")["minimum_count"], 3);
    assert_eq!(product(&v1, "suite-desktop")["grace_days"], 30);
    assert_eq!(product(&v1, "draw")["grace_days"], 10);
    let v2 = sign(true);
    assert_eq!(v2["version"], 2, "{v2:#}");
    assert_eq!(
        v2["setup_keys"].as_object().unwrap(),
        &keys,
        "re-signing must keep setup keys"
    );
    let key = |id: &str| keys[id].as_str().unwrap().to_string();

    // A bad catalog is refused with bad-request and changes nothing.
    let broken = root.join("broken.toml");
    std::fs::write(&broken, "vendor = \"X\"\n[[product]]\nid = \"p\"\n").unwrap();
    let refused = run(&[
        "vendor",
        "catalog",
        "--dir",
        s(&vendor),
        "--from",
        s(&broken),
        "--json",
    ])
    .fails();
    assert_eq!(refused.error_code(), "bad-request");

    // --- export the public bundle.
    let bundle = root.join("vendor.pub");
    let export = run(&["vendor", "export", "--dir", s(&vendor)]).ok();
    let exported: Value = export.json();
    assert_eq!(exported["root_public_key"], root_public.as_str());
    assert!(
        exported["catalog"]
            .as_str()
            .unwrap()
            .starts_with("v4.public.")
    );
    std::fs::write(&bundle, &export.stdout).unwrap();

    // --- a host key for one host, twice at most.
    let issued = run(&[
        "vendor",
        "host-key",
        "--dir",
        s(&vendor),
        "--customer",
        "Example Corp",
        "--group",
        "office",
        "--max-hosts",
        "1",
        "--max-activations",
        "2",
        "--json",
    ])
    .ok()
    .json();
    let host_key = issued["host_key"].as_str().unwrap().to_string();
    assert!(host_key.starts_with("v4.public."), "{issued:#}");
    assert_eq!(issued["claims"]["max_hosts"], 1);
    assert_eq!(issued["claims"]["max_activations"], 2);
    assert_eq!(issued["claims"]["group"], "office");
    // An unknown key group is refused.
    let no_group = run(&[
        "vendor",
        "host-key",
        "--dir",
        s(&vendor),
        "--customer",
        "Example Corp",
        "--group",
        "nope",
        "--json",
    ])
    .fails();
    assert_eq!(no_group.error_code(), "bad-request");

    // --- host: init, install the key, activate offline.
    let data = root.join("host");
    let host = run(&["host", "init", "--data", s(&data), "--json"])
        .ok()
        .json();
    let host_id = host["host_id"].as_str().unwrap().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("identity.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "identity.key mode is {:o}",
            mode & 0o777
        );
    }
    let installed = run(&[
        "host",
        "install-key",
        "--data",
        s(&data),
        "--vendor",
        s(&bundle),
        &host_key,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(installed["customer"], "Example Corp");

    // Before activation the host is not activated.
    let status = host_status(&data);
    assert_eq!(status["state"], "not-activated", "{status:#}");

    let first = host_activation(root, &vendor, &data, "first").ok();
    let response = root.join("response.json");
    std::fs::write(&response, &first.stdout).unwrap();
    let cert = run(&[
        "host",
        "activate",
        "--data",
        s(&data),
        "--response",
        s(&response),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(cert["sub"], host_id.as_str(), "{cert:#}");
    let products: Vec<&str> = cert["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(products, ["suite-desktop", "suite-server", "draw"]);

    // The same request file carried to the vendor again is refused and spends nothing
    // (the fresh second request below still fits the limit of 2).
    let first_request = root.join("first.request.json");
    let replayed = run(&[
        "--json",
        "vendor",
        "activate-host",
        "--dir",
        s(&vendor),
        s(&first_request),
    ])
    .fails();
    assert_eq!(replayed.error_code(), "request-replayed", "{replayed}");
    assert_eq!(replayed.json()["details"]["host_id"], host_id.as_str());

    // The second activation of the same host is allowed, the third is over the limit.
    let second = host_activation(root, &vendor, &data, "second").ok();
    assert!(second.json()["host_certificate"].is_string(), "{second}");
    let third = host_activation(root, &vendor, &data, "third").fails();
    assert_eq!(third.error_code(), "host-key-activation-limit", "{third}");
    assert_eq!(third.json()["details"]["max_activations"], 2, "{third}");
    // Without --json the message goes to stderr with the code.
    let request = root.join("third.request.json");
    let text = run(&["vendor", "activate-host", "--dir", s(&vendor), s(&request)]).fails();
    assert!(
        text.stderr.contains("[host-key-activation-limit]"),
        "{text}"
    );

    // Another host with the same key: over the key's host limit (1).
    let data2 = root.join("host2");
    run(&["host", "init", "--data", s(&data2)]).ok();
    run(&[
        "host",
        "install-key",
        "--data",
        s(&data2),
        "--vendor",
        s(&bundle),
        &host_key,
    ])
    .ok();
    let other = host_activation(root, &vendor, &data2, "other-host").fails();
    assert_eq!(other.error_code(), "host-key-activation-limit", "{other}");
    assert_eq!(other.json()["details"]["max_hosts"], 1, "{other}");

    let status = host_status(&data);
    assert_eq!(status["state"], "activated", "{status:#}");
    assert_eq!(status["host_id"], host_id.as_str());
    assert_eq!(status["host_key"]["group"], "office");

    // --- serve, and clients.
    let server = Server::start(&data, &[]);
    let addr = server.addr.clone();
    let clients = root.join("clients");
    let state = |name: &str| clients.join(format!("{name}.json"));

    // A mistyped key: unknown-setup-key, the ApiError object with --json, no state written.
    let typo = state("typo");
    let wrong = mistype(&key("suite-desktop"));
    let out = run(&[
        "install-key",
        &wrong,
        "--vendor",
        s(&bundle),
        "--json",
        "--state",
        s(&typo),
    ])
    .fails();
    let err = out.json();
    assert_eq!(err["code"], "unknown-setup-key", "{out}");
    assert!(
        err["message"].as_str().unwrap().contains("mistyped"),
        "{out}"
    );
    assert!(!typo.exists(), "a refused install-key must not write state");
    // Without --json: the message and code on stderr, nothing on stdout.
    let out = run(&[
        "--state",
        s(&typo),
        "install-key",
        &wrong,
        "--vendor",
        s(&bundle),
    ])
    .fails();
    assert!(out.stderr.contains("[unknown-setup-key]"), "{out}");
    assert!(out.stdout.trim().is_empty(), "{out}");

    // A product outside the host key's group.
    let outside = state("outside");
    let out = run(&[
        "--state",
        s(&outside),
        "--json",
        "install-key",
        &key("draw-server"),
        "--vendor",
        s(&bundle),
    ])
    .ok()
    .json();
    assert_eq!(out["product"], "draw-server");
    assert_eq!(out["new_client_id"], true);
    run(&["--state", s(&outside), "set-host", &addr]).ok();
    let refused = run(&["--state", s(&outside), "activate", "--json"]).fails();
    assert_eq!(
        refused.error_code(),
        "product-not-in-key-group",
        "{refused}"
    );

    // suite-desktop needs 3 machines: clients 1 and 2 are told "not yet".
    const MINIMUM: u64 = 3;
    let mut client_ids = Vec::new();
    for i in 1..=MINIMUM {
        let st = state(&format!("c{i}"));
        // Alternate full names and KMS aliases, and flag positions.
        let installed = if i % 2 == 1 {
            run(&[
                "--state",
                s(&st),
                "ipk",
                &key("suite-desktop"),
                "--vendor",
                s(&bundle),
                "--json",
            ])
        } else {
            run(&[
                "--json",
                "install-key",
                &key("suite-desktop"),
                "--state",
                s(&st),
                "--vendor",
                s(&bundle),
            ])
        }
        .ok()
        .json();
        client_ids.push(installed["client_id"].as_str().unwrap().to_string());
        let pinned = if i % 2 == 1 {
            run(&["skms", &addr, "--state", s(&st), "--json"])
        } else {
            run(&["--state", s(&st), "--json", "set-host", &addr])
        }
        .ok()
        .json();
        assert_eq!(pinned["pinned_host"], addr.as_str());
        let ato = if i % 2 == 1 {
            run(&["--state", s(&st), "ato", "--json"])
        } else {
            run(&["--json", "activate", "--state", s(&st)])
        };
        if i < MINIMUM {
            assert_eq!(ato.code, 1, "{ato}");
            let err = ato.json();
            assert_eq!(err["code"], "count-insufficient", "{ato}");
            assert_eq!(err["details"]["count"], i, "{ato}");
            assert_eq!(err["details"]["minimum"], MINIMUM, "{ato}");
            assert!(err["details"]["retry_after"].is_string(), "{ato}");
            let st = run(&["--state", s(&st), "status", "--json"]).ok().json();
            assert_eq!(st["state"], "initial-grace", "{st:#}");
            assert_eq!(st["last_attempt"]["result"], "count-insufficient");
            assert_eq!(st["last_attempt"]["count"], i);
        } else {
            let ok = ato.ok().json();
            assert_eq!(ok["ticket"]["count"], MINIMUM, "{ok:#}");
            assert_eq!(ok["ticket"]["minimum"], MINIMUM, "{ok:#}");
            assert_eq!(ok["ticket"]["host_id"], host_id.as_str());
            assert_eq!(ok["renewed"], false);
        }
    }
    let distinct: std::collections::BTreeSet<_> = client_ids.iter().collect();
    assert_eq!(distinct.len(), client_ids.len(), "client ids must differ");

    // Client 1 asks again and is activated now; text output says so.
    let c1 = state("c1");
    let again = run(&["--state", s(&c1), "activate"]).ok();
    assert!(
        again.stdout.contains("activated") && again.stdout.contains("count 3 of 3"),
        "{again}"
    );

    // Status and expiry, by name and by alias, --json before and after.
    for args in [
        vec!["--state", s(&c1), "status", "--json"],
        vec!["--json", "dlv", "--state", s(&c1)],
        vec!["dli", "--state", s(&c1), "--json"],
    ] {
        let st = run(&args).ok().json();
        assert_eq!(st["state"], "licensed", "{args:?}: {st:#}");
        assert_eq!(st["client_id"], client_ids[0].as_str());
        assert_eq!(st["product"], "suite-desktop");
        assert_eq!(st["application"], "acme-suite");
        assert_eq!(st["host"], addr.as_str());
        assert_eq!(st["host_pinned"], true);
        assert_eq!(st["ticket"]["count"], MINIMUM);
        assert_eq!(st["ticket"]["host_id"], host_id.as_str());
        assert_eq!(st["ticket"]["customer"], "Example Corp");
        assert_eq!(st["vendor"]["name"], "Acme Test Vendor");
        assert_eq!(st["intervals_from_host"], true);
        assert!(st["until"].is_string(), "{st:#}");
        assert!(
            st["partial_key"].as_str().unwrap().len() == 5
                && key("suite-desktop").ends_with(st["partial_key"].as_str().unwrap()),
            "{st:#}"
        );
    }
    let verbose = run(&["--state", s(&c1), "status", "--verbose"]).ok();
    assert!(verbose.stdout.contains("licensed"), "{verbose}");
    for args in [
        vec!["--state", s(&c1), "expiry", "--json"],
        vec!["xpr", "--json", "--state", s(&c1)],
    ] {
        let e = run(&args).ok().json();
        assert_eq!(e["state"], "licensed", "{args:?}: {e:#}");
        assert!(e["valid_until"].is_string(), "{e:#}");
        assert!(e["grace_ends"].is_null(), "{e:#}");
    }
    let xpr = run(&["--state", s(&c1), "xpr"]).ok();
    assert!(xpr.stdout.contains("will expire"), "{xpr}");

    // A server product of the same application shares the count (3 + itself = 4 of 5).
    let srv = state("server1");
    run(&[
        "--state",
        s(&srv),
        "ipk",
        &key("suite-server"),
        "--vendor",
        s(&bundle),
    ])
    .ok();
    run(&["--state", s(&srv), "skms", &addr]).ok();
    let out = run(&["--state", s(&srv), "ato", "--json"]).fails();
    assert_eq!(out.code, 1, "{out}");
    let err = out.json();
    assert_eq!(err["code"], "count-insufficient", "{out}");
    assert_eq!(err["details"]["count"], 4, "{out}");
    assert_eq!(err["details"]["minimum"], 5, "{out}");

    // draw (minimum 1) activates at once; its count is separate.
    let d = state("draw1");
    run(&[
        "--state",
        s(&d),
        "ipk",
        &key("draw"),
        "--vendor",
        s(&bundle),
    ])
    .ok();
    run(&["--state", s(&d), "skms", &addr]).ok();
    let ok = run(&["--state", s(&d), "ato", "--json"]).ok().json();
    assert_eq!(ok["ticket"]["count"], 1, "{ok:#}");

    // --- host status: counts per application and requests by result.
    let status = host_status(&data);
    assert_eq!(app_count(&status, "acme-suite"), 4, "{status:#}");
    // The refused draw-server client is not counted; the draw client is.
    assert_eq!(app_count(&status, "acme-draw"), 1, "{status:#}");
    let by_result = &status["by_result"];
    assert_eq!(by_result["count-insufficient"], 3, "{status:#}");
    assert_eq!(by_result["activated"], 3, "{status:#}");
    assert_eq!(by_result["product-not-in-key-group"], 1, "{status:#}");
    assert_eq!(status["requests"], 7, "{status:#}");
    assert_eq!(status["activated"], 3, "{status:#}");
    assert_eq!(status["not_yet"], 3, "{status:#}");
    assert_eq!(status["refused"], 1, "{status:#}");
    // Every counted client is in the inventory (the refused one may be listed too).
    let known = status["clients_known"].as_u64().unwrap();
    assert!((5..=6).contains(&known), "{status:#}");
    assert_eq!(status["serving"]["url"], server.url.as_str(), "{status:#}");
    let suite = status["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "acme-suite")
        .unwrap();
    for p in suite["products"].as_array().unwrap() {
        let expect = p["id"] == "suite-desktop";
        assert_eq!(p["activating"], expect, "{p:#}");
    }
    let text = run(&["host", "status", "--data", s(&data)]).ok();
    assert!(text.stdout.contains(&host_id), "{text}");

    server.kill();
}
