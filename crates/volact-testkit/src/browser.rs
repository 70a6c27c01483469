//! Headless Chromium for dashboard tests: Debian's chromedriver on a loopback port, a
//! browser with a throwaway profile, and the small helpers every browser test needs.
//! Both the host's and the vendor service's dashboards are tested through it.

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for any one thing in the browser.
pub const WAIT: Duration = Duration::from_secs(20);
/// Longest wait for the browser to start: a first start on a fresh machine builds
/// Chromium's profile and font caches, and once took over 20 s on a busy machine.
pub const BROWSER_START: Duration = Duration::from_secs(60);
/// Longest a whole browser session of one test may take.
pub const WHOLE: Duration = Duration::from_secs(120);

/// What a step in the browser returns.
pub type Outcome<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// chromedriver on `PATH` or at Debian's `/usr/bin/chromedriver`.
pub fn chromedriver() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/chromedriver")))
        .find(|p| p.is_file())
}

/// chromedriver, shut down and killed when dropped, whatever happened.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ask it to end its sessions (and their browsers) first; then make sure it is gone.
        if let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether chromedriver answers `GET /status` with 200.
fn answers(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// Starts chromedriver at `path` on a free loopback port and waits until it answers.
pub async fn start_driver(path: &Path) -> Outcome<Driver> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut driver = Driver { child, port };
    let deadline = Instant::now() + WAIT;
    loop {
        if tokio::task::spawn_blocking(move || answers(port)).await? {
            return Ok(driver);
        }
        if let Some(exit) = driver.child.try_wait()? {
            return Err(format!("chromedriver exited before answering: {exit}").into());
        }
        if Instant::now() >= deadline {
            return Err(
                format!("chromedriver did not answer on port {port} within {WAIT:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium through `driver`, with its profile in `profile` and `extra`
/// command-line switches.
pub async fn connect(driver: &Driver, profile: &Path, extra: &[String]) -> Outcome<Client> {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend(extra.iter().cloned());
    let mut options = serde_json::json!({ "args": args });
    if Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = "/usr/bin/chromium".into();
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let started = tokio::time::timeout(
        BROWSER_START,
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port)),
    )
    .await
    .map_err(|_| format!("chromedriver did not start a browser within {BROWSER_START:?}"))?;
    Ok(started?)
}

/// `Ok` when `ok`, else an error saying `what`.
pub fn check(ok: bool, what: impl Into<String>) -> Outcome {
    if ok { Ok(()) } else { Err(what.into().into()) }
}

/// Clicks an element that navigates. Under load chromedriver may answer such a click with
/// "aborted by navigation" although the click happened and the page is loading; the
/// caller waits for the next page's element anyway, so that answer is not a failure.
pub trait Follow {
    /// Clicks, and takes "aborted by navigation" as done.
    fn follow(self) -> impl std::future::Future<Output = Outcome> + Send;
}

impl Follow for fantoccini::elements::Element {
    async fn follow(self) -> Outcome {
        match self.click().await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("aborted by navigation") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Saves a PNG of the page as `volact-<name>.png` in the temporary directory, for a
/// person to look at; prints where.
pub async fn screenshot(browser: &Client, name: &str) -> Outcome {
    let path = std::env::temp_dir().join(format!("volact-{name}.png"));
    std::fs::write(&path, browser.screenshot().await?)?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// Logs in to the dashboard at `base` as an administrator would: the page redirects to
/// the login form, a wrong token is refused with a message saying so (saved as
/// screenshot `wrong_token_shot`), then `token` logs in.
pub async fn log_in(browser: &Client, base: &str, token: &str, wrong_token_shot: &str) -> Outcome {
    browser.goto(&format!("{base}/")).await?;
    let at = browser.current_url().await?;
    check(
        at.path() == "/login",
        format!("redirected to /login, not {at}"),
    )?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("token"))
        .await?
        .send_keys("definitely-not-the-token")
        .await?;
    browser
        .find(Locator::Id("login-submit"))
        .await?
        .follow()
        .await?;
    let error = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("login-error"))
        .await?
        .text()
        .await?;
    check(
        error.contains("not the admin token"),
        format!("the login error says why: {error}"),
    )?;
    screenshot(browser, wrong_token_shot).await?;
    browser
        .find(Locator::Id("token"))
        .await?
        .send_keys(token)
        .await?;
    browser
        .find(Locator::Id("login-submit"))
        .await?
        .follow()
        .await
}
