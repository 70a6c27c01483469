//! Shared helpers of the `volact` binary's integration tests: running commands with a
//! bounded wait, provisioning a vendor and an activated host through the CLI, serving a
//! host in the background (killed when its guard drops) and tiny HTTP calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

pub mod vendor;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest any single (non-serving) command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a host may take to answer `GET /healthz` with 200 after it starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_volact")
}

/// A command for the binary with no `VOLACT_*` settings inherited from the environment,
/// quiet logs, and the given working directory.
pub fn command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(cwd);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VOLACT_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("VOLACT_LOG", "warn");
    cmd
}

/// What a finished command printed and returned.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with everything the command printed unless it succeeded.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command failed.
    #[track_caller]
    pub fn fails(self) -> Output {
        assert!(!self.success(), "command should have failed: {self}");
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// The `code` of a JSON error printed by `--json`.
    #[track_caller]
    pub fn error_code(&self) -> String {
        self.json()["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no `code` in the JSON output: {self}"))
            .to_string()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`volact {}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

fn drain(mut from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Kills a child process when dropped, so no test leaves one behind, even on failure.
pub struct ChildGuard {
    /// The child.
    pub child: Child,
}

impl ChildGuard {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child (SIGKILL on Unix) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the child has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the binary in `cwd` and waits at most [`COMMAND_TIMEOUT`].
#[track_caller]
pub fn run_in(cwd: &Path, args: &[&str]) -> Output {
    run_with(command(cwd, args), args)
}

/// Runs a prepared command (see [`command`]) and waits at most [`COMMAND_TIMEOUT`].
#[track_caller]
pub fn run_with(mut cmd: Command, args: &[&str]) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin()));
    let mut guard = ChildGuard { child };
    let out = drain(guard.child.stdout.take().unwrap());
    let err = drain(guard.child.stderr.take().unwrap());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match guard.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                guard.kill();
                panic!(
                    "`volact {}` ran longer than {COMMAND_TIMEOUT:?}",
                    args.join(" ")
                );
            }
            Err(e) => panic!("cannot wait for `volact {}`: {e}", args.join(" ")),
        }
    };
    let stdout = out
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    let stderr = err
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    Output {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Runs the binary in the current directory.
#[track_caller]
pub fn run(args: &[&str]) -> Output {
    run_in(Path::new("."), args)
}

/// A path as a `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A minimal HTTP/1.1 request to `addr` (`host:port`); returns the status and body, or
/// `None` when the host does not answer in time.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `addr` (`host:port`) of an `http://host:port` URL.
pub fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Waits (bounded) until `GET /healthz` on `addr` answers 200; panics with `context()`
/// otherwise, or as soon as `child` exits.
#[track_caller]
pub fn wait_healthy(addr: &str, child: &mut ChildGuard, context: impl Fn() -> String) {
    wait_health(addr, child, 200, context);
}

/// Waits (bounded) until `GET /healthz` on `addr` answers `status`.
fn wait_health(addr: &str, child: &mut ChildGuard, status: u16, context: impl Fn() -> String) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if http(addr, "GET", "/healthz", None).is_some_and(|(s, _)| s == status) {
            return;
        }
        if child.exited() {
            panic!("the host exited before it was healthy\n{}", context());
        }
        if Instant::now() >= deadline {
            panic!(
                "the host did not answer /healthz with {status} within {READY_TIMEOUT:?}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `volact host serve` running in the background; killed (SIGKILL) when dropped.
pub struct Server {
    /// The process.
    pub guard: ChildGuard,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `volact host serve --data DATA --listen 127.0.0.1:0 EXTRA…` and waits until
    /// it is healthy. The real port is read from `DATA/serving.json`, which the serving
    /// process writes once it listens, so no port is guessed.
    #[track_caller]
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_answering(data, extra, 200)
    }

    /// [`Server::start`] for a host whose `/healthz` answers `status` once it serves (503
    /// for a host that must refuse activations).
    pub fn start_answering(data: &Path, extra: &[&str], status: u16) -> Server {
        let log = data.with_extension(format!("serve-{}.log", unique()));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut args = vec![
            "host",
            "serve",
            "--data",
            s(data),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut cmd = command(Path::new("."), &args);
        cmd.env("VOLACT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = cmd.spawn().unwrap();
        let mut guard = ChildGuard { child };
        let pid = guard.id();
        let logs = || {
            format!(
                "--- serve log {}\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = loop {
            if let Ok(bytes) = std::fs::read(data.join("serving.json"))
                && let Ok(info) = serde_json::from_slice::<Value>(&bytes)
                && info["pid"].as_u64() == Some(u64::from(pid))
                && let Some(url) = info["url"].as_str()
            {
                break url.to_string();
            }
            if guard.exited() {
                panic!("`volact host serve` exited at start\n{}", logs());
            }
            if Instant::now() >= deadline {
                panic!(
                    "`volact host serve` wrote no serving.json in time\n{}",
                    logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr = addr_of(&url);
        wait_health(&addr, &mut guard, status, logs);
        Server {
            guard,
            url,
            addr,
            log,
        }
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill(mut self) {
        self.guard.kill();
    }
}

/// A number that differs between calls in one process.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The test catalog: two applications; `suite-desktop` (minimum 3) and `suite-server`
/// (server, default minimum 5) share the `acme-suite` count; `draw` (minimum 1) and
/// `draw-server` count in `acme-draw`; key group `office` leaves out `draw-server`.
pub const CATALOG_TOML: &str = r#"
vendor = "Acme Test Vendor"

[[application]]
id = "acme-suite"
name = "Acme Suite"

[[application]]
id = "acme-draw"
name = "Acme Draw"

[[product]]
id = "suite-desktop"
name = "Acme Suite Desktop"
application = "acme-suite"
kind = "workstation"
minimum_count = 3

[[product]]
id = "suite-server"
name = "Acme Suite Server"
application = "acme-suite"
kind = "server"

[[product]]
id = "draw"
name = "Acme Draw"
application = "acme-draw"
kind = "workstation"
minimum_count = 1
grace_days = 10

[[product]]
id = "draw-server"
name = "Acme Draw Server"
application = "acme-draw"
kind = "server"

[[key_group]]
id = "office"
name = "Office products"
products = ["suite-desktop", "suite-server", "draw"]

[[key_group]]
id = "everything"
name = "Every product"
products = ["suite-desktop", "suite-server", "draw", "draw-server"]
"#;

/// A vendor and an activated host, provisioned through the CLI.
#[derive(Clone)]
pub struct Fixture {
    /// The vendor directory.
    pub vendor_dir: PathBuf,
    /// The vendor's public bundle (`vendor export`).
    pub bundle: PathBuf,
    /// The host's data directory.
    pub data: PathBuf,
    /// Product id → setup key.
    pub keys: std::collections::BTreeMap<String, String>,
    /// The host key token.
    pub host_key: String,
}

impl Fixture {
    /// The setup key of `product`.
    #[track_caller]
    pub fn key(&self, product: &str) -> &str {
        self.keys
            .get(product)
            .unwrap_or_else(|| panic!("no setup key for {product}"))
    }
}

/// Provisions a vendor (with [`CATALOG_TOML`]), a host key for `group` and an activated
/// host in `root`, all through the CLI.
#[track_caller]
pub fn provision(root: &Path, group: &str) -> Fixture {
    provision_with(root, group, CATALOG_TOML, None)
}

/// [`provision`] with another catalog and a seat cap on the host key.
#[track_caller]
pub fn provision_with(root: &Path, group: &str, catalog: &str, seats: Option<u32>) -> Fixture {
    let vendor_dir = root.join("vendor");
    let data = root.join("host");
    run(&["vendor", "init", "--dir", s(&vendor_dir)]).ok();
    let source = root.join("catalog.toml");
    std::fs::write(&source, catalog).unwrap();
    let report = run(&[
        "vendor",
        "catalog",
        "--dir",
        s(&vendor_dir),
        "--from",
        s(&source),
        "--json",
    ])
    .ok()
    .json();
    let keys = report["setup_keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let bundle = root.join("vendor.pub");
    let export = run(&["vendor", "export", "--dir", s(&vendor_dir)]).ok();
    std::fs::write(&bundle, &export.stdout).unwrap();
    let seats = seats.map(|n| n.to_string());
    let mut args = vec![
        "vendor",
        "host-key",
        "--dir",
        s(&vendor_dir),
        "--customer",
        "Test Customer",
        "--group",
        group,
        "--json",
    ];
    if let Some(seats) = &seats {
        args.extend(["--seats", seats.as_str()]);
    }
    let host_key = run(&args).ok().json()["host_key"]
        .as_str()
        .unwrap()
        .to_string();
    let fixture = Fixture {
        vendor_dir,
        bundle,
        data: data.clone(),
        keys,
        host_key,
    };
    fixture.activate_host(&data);
    fixture
}

impl Fixture {
    /// Initialises a host in `data` with this fixture's host key and activates it with
    /// the vendor (offline exchange): another host of the same customer.
    #[track_caller]
    pub fn activate_host(&self, data: &Path) {
        run(&["host", "init", "--data", s(data)]).ok();
        run(&[
            "host",
            "install-key",
            "--data",
            s(data),
            "--vendor",
            s(&self.bundle),
            &self.host_key,
        ])
        .ok();
        let request = data.with_extension("request.json");
        let response = data.with_extension("response.json");
        run(&[
            "host",
            "activate",
            "--data",
            s(data),
            "--request-out",
            s(&request),
        ])
        .ok();
        let answer = run(&[
            "vendor",
            "activate-host",
            "--dir",
            s(&self.vendor_dir),
            s(&request),
        ])
        .ok();
        std::fs::write(&response, &answer.stdout).unwrap();
        run(&[
            "host",
            "activate",
            "--data",
            s(data),
            "--response",
            s(&response),
        ])
        .ok();
    }
}

/// `volact host status --data DATA --json`.
#[track_caller]
pub fn host_status(data: &Path) -> Value {
    run(&["host", "status", "--data", s(data), "--json"])
        .ok()
        .json()
}

/// The count of `application` in a host status.
#[track_caller]
pub fn app_count(status: &Value, application: &str) -> u64 {
    status["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == application)
        .unwrap_or_else(|| panic!("no application {application} in {status:#}"))["count"]
        .as_u64()
        .unwrap()
}

/// An activation request body for `POST /v1/activations`, with a fresh nonce and the
/// current time; returns the body and the nonce.
pub fn activation_request(client_id: &str, setup_key: &str, minimum: u32) -> (Value, String) {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap();
    let body = serde_json::json!({
        "client_id": client_id,
        "setup_key": setup_key,
        "minimum_count": minimum,
        "client_time": now.to_string(),
        "nonce": nonce,
        "machine_name": format!("machine-{}", &client_id[..8]),
    });
    (body, nonce)
}
