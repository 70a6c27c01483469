//! A throwaway BIND 9 (`named`) on 127.0.0.1 for tests: a temporary directory with a
//! `named.conf`, one primary zone that accepts RFC 2136 updates signed with a TSIG key,
//! no recursion and no control channel. It runs in the foreground as a child process and
//! is killed when the value drops. Only ever listens on loopback.

use base64::Engine as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use volact_proto::{ApiError, ErrorCode};

/// The test zone.
pub const ZONE: &str = "volact.test";
/// The TSIG key name the zone accepts.
pub const KEY_NAME: &str = "volact-test";
/// How long `named` may take to answer after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `named`.
pub struct TestBind {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    secret: String,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("test BIND: {what}: {e}"))
}

/// Where `named` is installed, if it is.
pub fn named_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec!["/usr/sbin".into(), "/usr/local/sbin".into()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("named"))
        .find(|p| p.is_file())
}

/// A key file in BIND's format.
pub fn key_file_text(name: &str, secret_b64: &str) -> String {
    format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret_b64}\";\n}};\n")
}

/// A port free on 127.0.0.1 for both TCP and UDP right now.
fn free_port() -> Result<u16, ApiError> {
    for _ in 0..20 {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| internal("no free port", e))?;
        let port = tcp.local_addr().map_err(|e| internal("no port", e))?.port();
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(internal("no free port", "none free for TCP and UDP"))
}

impl TestBind {
    /// Starts `named`, or returns `Ok(None)` after printing a loud SKIPPED line when it is
    /// not installed, unless `VOLACT_REQUIRE_ALL=1`, which makes that an error.
    pub fn start_or_skip(test: &str) -> Result<Option<TestBind>, ApiError> {
        let Some(named) = named_path() else {
            crate::skip_or_fail(test, "BIND 9 (named) not found (apt-get install bind9)")?;
            return Ok(None);
        };
        let mut last = None;
        // A port found free can be taken before named binds it; try a few.
        for _ in 0..3 {
            match TestBind::start(&named) {
                Ok(bind) => return Ok(Some(bind)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| internal("start", "failed")))
    }

    fn start(named: &Path) -> Result<TestBind, ApiError> {
        let dir = tempfile::tempdir().map_err(|e| internal("temporary directory", e))?;
        let d = dir.path();
        let port = free_port()?;
        let secret_bytes: [u8; 32] = volact_engine::random_bytes()?;
        let secret = base64::engine::general_purpose::STANDARD.encode(secret_bytes);
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    dnssec-validation no;
}};
controls {{ }};
{key}
zone "{ZONE}" {{
    type primary;
    file "{d}/{ZONE}.zone";
    allow-update {{ key "{KEY_NAME}"; }};
}};
"#,
            d = d.display(),
            key = key_file_text(KEY_NAME, &secret),
        );
        let zone = format!(
            "$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. ( 1 60 60 600 60 )\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
        );
        std::fs::write(d.join("named.conf"), conf).map_err(|e| internal("named.conf", e))?;
        std::fs::write(d.join(format!("{ZONE}.zone")), zone).map_err(|e| internal("zone", e))?;
        let log = std::fs::File::create(d.join("named.log")).map_err(|e| internal("log", e))?;
        let log2 = log.try_clone().map_err(|e| internal("log", e))?;
        // -g: foreground, log to stderr; -n 1: one worker (a shared 2-core machine);
        // -4: IPv4 only. As root it stays root (no -u), so it can write the temp dir.
        let child = Command::new(named)
            .arg("-g")
            .args(["-n", "1", "-4", "-c"])
            .arg(d.join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| internal(&format!("cannot run {}", named.display()), e))?;
        let mut bind = TestBind {
            child,
            dir,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            secret,
        };
        bind.wait_ready()?;
        Ok(bind)
    }

    /// Waits (bounded) until `named` answers a SOA query for the zone.
    fn wait_ready(&mut self) -> Result<(), ApiError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(internal(
                    "named exited at start",
                    format!("\n{}", self.log()),
                ));
            }
            if self.answers_soa() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(internal(
            "named did not answer in time",
            format!("\n{}", self.log()),
        ))
    }

    fn answers_soa(&self) -> bool {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RecordType};
        let Ok(name) = Name::from_ascii(format!("{ZONE}.")) else {
            return false;
        };
        let mut m = Message::query();
        m.add_query(Query::query(name, RecordType::SOA));
        let Ok(bytes) = m.to_vec() else {
            return false;
        };
        let Ok(socket) = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        if socket.send_to(&bytes, self.addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 4096];
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => Message::from_vec(&buf[..n])
                .map(|a| a.metadata.id == m.metadata.id && !a.answers.is_empty())
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// What `named` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// The zone's TSIG key in BIND's key-file format.
    pub fn key_file(&self) -> String {
        key_file_text(KEY_NAME, &self.secret)
    }

    /// The right key name with a wrong secret.
    pub fn wrong_key_file(&self) -> String {
        let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        key_file_text(KEY_NAME, &wrong)
    }

    /// Writes the key file to `path`.
    pub fn write_key_file(&self, path: &Path, right: bool) -> Result<(), ApiError> {
        let text = if right {
            self.key_file()
        } else {
            self.wrong_key_file()
        };
        let mut f = std::fs::File::create(path).map_err(|e| internal("key file", e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| internal("key file", e))
    }

    /// The SRV records of `_volact._tcp.DOMAIN` now: `(priority, weight, port, target)`.
    pub async fn srv_records(
        &self,
        domain: &str,
    ) -> Result<Vec<(u16, u16, u16, String)>, ApiError> {
        self.srv_records_of("_volact._tcp", domain).await
    }

    /// The SRV records of `SERVICE.DOMAIN` now (`_volact-tls._tcp` for TLS hosts).
    pub async fn srv_records_of(
        &self,
        service: &str,
        domain: &str,
    ) -> Result<Vec<(u16, u16, u16, String)>, ApiError> {
        use hickory_proto::rr::{RData, RecordType};
        use volact_engine::dns::wire::{WireError, exchange, fqdn, query};
        let owner =
            fqdn(&format!("{service}.{domain}")).map_err(|e| internal("name", format!("{e:?}")))?;
        match exchange(self.addr, query(&owner, RecordType::SRV), None).await {
            Ok(answer) => Ok(answer
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some((
                        s.priority,
                        s.weight,
                        s.port,
                        s.target.to_ascii().trim_end_matches('.').to_string(),
                    )),
                    _ => None,
                })
                .collect()),
            Err(WireError::Rcode { rcode, .. }) if rcode == "NXDOMAIN" => Ok(Vec::new()),
            Err(e) => Err(internal("query", format!("{e:?}"))),
        }
    }
}

impl Drop for TestBind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
