//! A throwaway PostgreSQL cluster on loopback for tests, from Debian's `postgresql`
//! package (`initdb` and `pg_ctl` under `/usr/lib/postgresql/*/bin`).
//!
//! The cluster lives in a temporary directory: data, unix socket and log. It listens on
//! 127.0.0.1 only, on a port free when it started, and trusts connections from there
//! (there is nothing to protect in it) except for the role [`PASSWORD_ROLE`], which must
//! give its password, so the password paths can be tested. The server refuses to run as
//! root, so when the tests run as root the cluster belongs to `nobody` and every server
//! program is run through `runuser`.
//!
//! One cluster holds many databases ([`TestPostgres::create_database`]), so a test binary
//! can share one ([`TestPostgres::shared`]) and give each test a database of its own.
//! A guardian process (a shell waiting for its standard input to close) stops the
//! server and removes the directory when the value drops or the test process exits,
//! whatever the way it exits, so no server outlives its tests.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use volact_proto::{ApiError, ErrorCode};

/// The superuser of the test cluster (trusted from 127.0.0.1 and the socket).
pub const SUPERUSER: &str = "volact";
/// A role that must give its password ([`PASSWORD`]) over TCP, for the password paths.
pub const PASSWORD_ROLE: &str = "volact_pw";
/// The password of [`PASSWORD_ROLE`].
pub const PASSWORD: &str = "test-password-7f3a";
/// The unprivileged user the cluster runs as when the tests run as root.
const RUN_AS: &str = "nobody";
/// How long `pg_ctl` may wait for the server to start or stop, in seconds.
const PG_CTL_TIMEOUT_SECS: &str = "60";

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, format!("test PostgreSQL: {what}: {e}"))
}

/// The directory holding `initdb` and `pg_ctl`, the newest version installed, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> Result<u16, ApiError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| internal("port", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| internal("port", e))?
        .port())
}

/// A running (or stopped, see [`TestPostgres::stop`]) throwaway cluster.
pub struct TestPostgres {
    bin: PathBuf,
    /// The temporary directory (removed by the guardian).
    dir: PathBuf,
    /// Whether server programs run through `runuser -u nobody`.
    as_nobody: bool,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Closing it tells the guardian to stop the server and remove the directory.
    guardian_stdin: Mutex<Option<ChildStdin>>,
    guardian: Mutex<Option<Child>>,
    databases: AtomicU32,
}

static SHARED: Mutex<Option<Arc<TestPostgres>>> = Mutex::new(None);

impl TestPostgres {
    /// Starts a cluster, or returns `Ok(None)` after a loud SKIPPED line when PostgreSQL
    /// is not installed (an error under `VOLACT_REQUIRE_ALL=1`).
    pub fn start(test: &str) -> Result<Option<TestPostgres>, ApiError> {
        let Some(bin) = bin_dir() else {
            crate::skip_or_fail(
                test,
                "PostgreSQL not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)",
            )?;
            return Ok(None);
        };
        let mut last = None;
        // A port found free can be taken before the server binds it; try a few.
        for _ in 0..3 {
            match TestPostgres::start_in(&bin) {
                Ok(pg) => return Ok(Some(pg)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| internal("start", "failed")))
    }

    /// One cluster for the whole test process, started by the first caller; it stops
    /// when the process exits. `Ok(None)` as for [`TestPostgres::start`].
    pub fn shared(test: &str) -> Result<Option<Arc<TestPostgres>>, ApiError> {
        let mut shared = SHARED.lock().map_err(|e| internal("shared cluster", e))?;
        if let Some(pg) = shared.as_ref() {
            return Ok(Some(pg.clone()));
        }
        let Some(pg) = TestPostgres::start(test)? else {
            return Ok(None);
        };
        let pg = Arc::new(pg);
        *shared = Some(pg.clone());
        Ok(Some(pg))
    }

    fn start_in(bin: &Path) -> Result<TestPostgres, ApiError> {
        let temp = tempfile::Builder::new()
            .prefix("volact-pg-")
            .tempdir()
            .map_err(|e| internal("temporary directory", e))?;
        // The directory's owner is who we run as: root needs another user.
        let as_nobody = std::fs::metadata(temp.path())
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .map_err(|e| internal("temporary directory", e))?;
        // From now on the guardian removes it.
        let dir = temp.keep();
        if as_nobody {
            let status = Command::new("chown")
                .arg(format!("{RUN_AS}:"))
                .arg(&dir)
                .status()
                .map_err(|e| internal("chown", e))?;
            if !status.success() {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(internal("chown", status));
            }
        }
        let guardian = Self::guardian(bin, &dir, as_nobody);
        let (guardian, stdin) = match guardian {
            Ok(g) => g,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let pg = TestPostgres {
            bin: bin.to_path_buf(),
            dir,
            as_nobody,
            port: free_port()?,
            guardian_stdin: Mutex::new(Some(stdin)),
            guardian: Mutex::new(Some(guardian)),
            databases: AtomicU32::new(0),
        };
        pg.init()?;
        pg.start_again()?;
        pg.psql(&format!(
            "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'"
        ))?;
        Ok(pg)
    }

    /// A shell that waits for its standard input to close (this value dropped, or the
    /// test process gone), then stops the server at once and removes the directory.
    fn guardian(bin: &Path, dir: &Path, as_nobody: bool) -> Result<(Child, ChildStdin), ApiError> {
        let script = "read _ignored; \"$1/pg_ctl\" -D \"$2/data\" -m immediate -s stop >/dev/null 2>&1; rm -rf \"$2\"";
        let mut command = if as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", RUN_AS, "--", "sh", "-c", script, "guardian"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script, "guardian"]);
            c
        };
        let mut child = command
            .arg(bin)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| internal("guardian", e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| internal("guardian", "no standard input"))?;
        Ok((child, stdin))
    }

    /// A server program run as the cluster's owner.
    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", RUN_AS, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, what: &str, command: &mut Command) -> Result<String, ApiError> {
        let out = command.output().map_err(|e| internal(what, e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(internal(
            what,
            format!(
                "{}\n{}{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ),
        ))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) -> Result<(), ApiError> {
        let data = self.data_dir();
        self.run(
            "initdb",
            self.program("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
                .args(["--auth=trust", "--no-sync", "--no-instructions"]),
        )?;
        // Loopback only; the socket is in the cluster's own directory. Every other
        // setting is the packaged default, fsync included, so a killed server loses
        // nothing committed (the failure tests depend on it).
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             logging_collector = off\nmax_connections = 200\n",
            port = self.port,
            dir = self.dir.display(),
        );
        let hba = format!(
            "local all all trust\n\
             host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 trust\n"
        );
        // The files belong to the cluster's owner; root (the test) may still write them.
        let append = |name: &str, text: &str, replace: bool| -> Result<(), ApiError> {
            let mut f = std::fs::OpenOptions::new()
                .append(!replace)
                .write(true)
                .truncate(replace)
                .open(data.join(name))
                .map_err(|e| internal(name, e))?;
            f.write_all(text.as_bytes()).map_err(|e| internal(name, e))
        };
        append("postgresql.conf", &settings, false)?;
        append("pg_hba.conf", &hba, true)
    }

    /// Starts the server (again, after [`TestPostgres::stop`]) on the same port and data.
    pub fn start_again(&self) -> Result<(), ApiError> {
        self.run(
            "pg_ctl start",
            self.program("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-s", "start"])
                // pg_ctl leaves the server running in the background: it must not hold
                // the test's output open.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map(drop)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: as if it crashed; what was
    /// committed is kept), leaving its data for [`TestPostgres::start_again`].
    pub fn stop(&self) -> Result<(), ApiError> {
        self.run(
            "pg_ctl stop",
            self.program("pg_ctl").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "-s",
                "stop",
            ]),
        )
        .map(drop)
    }

    /// Runs SQL as the superuser in the `postgres` database.
    pub fn psql(&self, sql: &str) -> Result<(), ApiError> {
        self.query("postgres", sql).map(drop)
    }

    /// Runs SQL as the superuser in `database` over the unix socket, and returns what it
    /// printed, unaligned and without headers (`psql -At`).
    pub fn query(&self, database: &str, sql: &str) -> Result<String, ApiError> {
        let port = self.port.to_string();
        self.run(
            "psql",
            self.program("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.dir)
                .args(["-p", &port, "-U", SUPERUSER, "-d", database, "-c", sql]),
        )
    }

    /// Whether the server accepts connections over TCP now.
    pub fn accepts(&self) -> bool {
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
    }

    /// The cluster's temporary directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new, empty database owned by the superuser and returns its name;
    /// [`PASSWORD_ROLE`] may use it too.
    pub fn create_database(&self) -> Result<String, ApiError> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{n}");
        self.psql(&format!("CREATE DATABASE {name}"))?;
        self.psql(&format!(
            "GRANT ALL ON DATABASE {name} TO {PASSWORD_ROLE}; \
             ALTER DATABASE {name} OWNER TO {PASSWORD_ROLE}"
        ))?;
        Ok(name)
    }

    /// `postgres://volact@127.0.0.1:PORT/DATABASE`: the superuser, trusted, over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// `postgres://volact_pw@127.0.0.1:PORT/DATABASE`: a role that must give
    /// [`PASSWORD`].
    pub fn password_url(&self, database: &str) -> String {
        format!(
            "postgres://{PASSWORD_ROLE}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // The guardian stops the server and removes the directory; wait for it, so the
        // next test starts on a quiet machine.
        if let Ok(mut stdin) = self.guardian_stdin.lock() {
            stdin.take();
        }
        if let Ok(mut guardian) = self.guardian.lock()
            && let Some(mut child) = guardian.take()
        {
            let _ = child.wait();
        }
    }
}
