//! What a first-time administrator trips over (issue 15), through the `volact` binary:
//! a seat cap no product can reach, help that lists only what a command takes, colourless
//! logs in files, `dlv` as the verbose status, status that tells what is true now, a
//! "not yet" that reads as a state, `host activate` explaining its two steps, and ids
//! (not names) in JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, provision, run, s};

/// `volact vendor host-key` for `group` with `--seats seats`.
fn host_key_with_seats(vendor: &std::path::Path, group: &str, seats: &str) -> common::Output {
    run(&[
        "vendor",
        "host-key",
        "--dir",
        s(vendor),
        "--customer",
        "Small Customer",
        "--group",
        group,
        "--seats",
        seats,
        "--json",
    ])
}

#[test]
fn a_seat_cap_below_the_minimums_is_refused_or_warned_and_host_status_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let f = provision(tmp.path(), "office");

    // Below every product's minimum (office: 3, 5 and 1): refused, nothing issued.
    let refused = host_key_with_seats(&f.vendor_dir, "office", "0").fails();
    assert_eq!(refused.error_code(), "bad-request", "{refused}");
    assert_eq!(refused.json()["details"]["lowest_minimum"], 1, "{refused}");

    // Below some: issued, with a loud warning on stderr and the products in the JSON.
    let warned = host_key_with_seats(&f.vendor_dir, "office", "2").ok();
    let unreachable: Vec<String> = warned.json()["unreachable_products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["product"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(unreachable, ["suite-desktop", "suite-server"], "{warned}");
    let text = run(&[
        "vendor",
        "host-key",
        "--dir",
        s(&f.vendor_dir),
        "--customer",
        "Small Customer",
        "--group",
        "office",
        "--seats",
        "2",
    ])
    .ok();
    assert!(
        text.stderr.contains("warning:") && text.stderr.contains("suite-server"),
        "{text}"
    );
    assert!(text.stdout.starts_with("v4.public."), "{text}");

    // A host with that key: `host status` warns too, in text and JSON.
    let data = tmp.path().join("small-host");
    run(&["host", "init", "--data", s(&data)]).ok();
    let key = warned.json()["host_key"].as_str().unwrap().to_string();
    run(&[
        "host",
        "install-key",
        "--data",
        s(&data),
        "--vendor",
        s(&f.bundle),
        &key,
    ])
    .ok();
    let status = common::host_status(&data);
    assert_eq!(
        status["unreachable_products"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );
    let text = run(&["host", "status", "--data", s(&data)]).ok();
    assert!(text.stdout.contains("WARNING:"), "{text}");
    assert!(text.stdout.contains("never (above the seat cap)"), "{text}");
    // The provisioned host has no cap: no warning.
    let text = run(&["host", "status", "--data", s(&f.data)]).ok();
    assert!(!text.stdout.contains("WARNING:"), "{text}");
}

#[test]
fn help_lists_client_options_only_on_client_commands() {
    let client_only = [
        "--state",
        "--dns-server",
        "--no-host-cache",
        "--connect-timeout",
        "--log-format",
    ];
    for args in [
        &["host", "--help"][..],
        &["host", "status", "--help"],
        &["host", "serve", "--help"],
        &["vendor", "--help"],
        &["vendor", "host-key", "--help"],
    ] {
        let help = run(args).ok().stdout;
        for flag in client_only {
            assert!(!help.contains(flag), "{args:?} lists {flag}:\n{help}");
        }
        assert!(help.contains("--json"), "{args:?}:\n{help}");
    }
    let activate = run(&["activate", "--help"]).ok().stdout;
    for flag in &client_only[..4] {
        assert!(
            activate.contains(flag),
            "activate lacks {flag}:\n{activate}"
        );
    }
    let install = run(&["install-key", "--help"]).ok().stdout;
    assert!(install.contains("--state"), "{install}");
    assert!(!install.contains("--dns-server"), "{install}");
    // A client option given to a host command is refused, not silently ignored.
    let tmp = tempfile::tempdir().unwrap();
    let wrong = run(&[
        "--state",
        s(&tmp.path().join("c.json")),
        "host",
        "status",
        "--data",
        s(tmp.path()),
        "--json",
    ])
    .fails();
    assert_eq!(wrong.error_code(), "bad-request", "{wrong}");
}

#[test]
fn the_client_flow_reads_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let f = provision(tmp.path(), "office");
    let server = Server::start(&f.data, &[]);
    // Logs in a file carry no colour codes.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.is_empty(), "the host logged nothing");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log:?}"
    );

    let st = tmp.path().join("c1.json");
    run(&[
        "--state",
        s(&st),
        "install-key",
        f.key("suite-desktop"),
        "--vendor",
        s(&f.bundle),
    ])
    .ok();
    run(&["skms", &server.addr, "--state", s(&st)]).ok();

    // One client of the three suite-desktop needs: "not yet", a state, with its code.
    let not_yet = run(&["--state", s(&st), "activate"]).fails();
    assert!(
        not_yet.stderr.starts_with("not activated yet:"),
        "{not_yet}"
    );
    assert!(!not_yet.stderr.contains("error:"), "{not_yet}");
    assert!(!not_yet.stderr.contains("retries by itself"), "{not_yet}");
    assert!(not_yet.stderr.contains("volact agent"), "{not_yet}");
    assert!(not_yet.stderr.contains("[count-insufficient]"), "{not_yet}");
    let json = run(&["--state", s(&st), "activate", "--json"]).fails();
    assert_eq!(json.error_code(), "count-insufficient", "{json}");
    let details = &json.json()["details"];
    assert_eq!(details["application"], "acme-suite", "{json}");
    assert_eq!(details["application_name"], "Acme Suite", "{json}");

    // `dlv` is the verbose status; `dli` the short one.
    let dlv = run(&["dlv", "--state", s(&st)]).ok().stdout;
    let verbose = run(&["status", "--verbose", "--state", s(&st)]).ok().stdout;
    let dli = run(&["dli", "--state", s(&st)]).ok().stdout;
    assert!(dlv.contains("Host found by"), "{dlv}");
    assert!(!dli.contains("Host found by"), "{dli}");
    let lines = |t: &str| t.lines().filter(|l| !l.contains("Clock")).count();
    assert_eq!(
        lines(&dlv),
        lines(&verbose),
        "dlv:\n{dlv}\nstatus -v:\n{verbose}"
    );

    // After ckms the pin is gone from the verbose status; --dns-server shows as in force.
    run(&["ckms", "--state", s(&st)]).ok();
    let after = run(&[
        "status",
        "--verbose",
        "--state",
        s(&st),
        "--dns-server",
        "127.0.0.1:5353",
    ])
    .ok()
    .stdout;
    assert!(!after.contains("pinned with set-host"), "{after}");
    assert!(after.contains("127.0.0.1:5353"), "{after}");
    assert!(!after.contains("the system's"), "{after}");
    server.kill();
}

#[test]
fn host_activate_without_a_flag_explains_both_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("host");
    run(&["host", "init", "--data", s(&data)]).ok();
    let out = run(&["host", "activate", "--data", s(&data)]).fails();
    assert!(out.stderr.contains("--request-out"), "{out}");
    assert!(out.stderr.contains("--response"), "{out}");
    let json = run(&["host", "activate", "--data", s(&data), "--json"]).fails();
    assert_eq!(json.error_code(), "bad-request", "{json}");
}
