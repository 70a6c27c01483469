//! `volact agent` (the SDK's background renewal behind the command): it activates by
//! itself against a host, and stops cleanly on Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ChildGuard, Server, command, provision, run, s};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn the_agent_activates_by_itself_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = provision(tmp.path(), "everything");
    let server = Server::start(&fx.data, &[]);
    let state = tmp.path().join("agent.json");
    run(&[
        "--state",
        s(&state),
        "install-key",
        fx.key("draw"),
        "--vendor",
        s(&fx.bundle),
    ])
    .ok();
    run(&["--state", s(&state), "set-host", &server.addr]).ok();

    let log = tmp.path().join("agent.log");
    let mut cmd = command(Path::new("."), &["--state", s(&state), "agent"]);
    cmd.env("VOLACT_MACHINE_NAME", "pc-agent")
        .env("VOLACT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut agent = ChildGuard {
        child: cmd.spawn().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let licensed = loop {
        let status = run(&["--state", s(&state), "status", "--json"]).ok().json();
        if status["state"] == "licensed" {
            break true;
        }
        if agent.exited() || Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(licensed, "the agent did not activate\n{}", text());

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.exited() {
        assert!(
            Instant::now() < deadline,
            "the agent did not stop on Ctrl-C\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let exit = agent.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", text());
    assert!(text().contains("activated"), "{}", text());
    // The host counted the machine once, under the name the agent gave.
    let clients = run(&["host", "clients", "--data", s(&fx.data), "--json"])
        .ok()
        .json();
    let rows = clients["clients"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{clients:#}");
    assert_eq!(rows[0]["machine_name"], "pc-agent", "{clients:#}");
    server.kill();
}
