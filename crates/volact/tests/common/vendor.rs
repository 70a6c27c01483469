//! The vendor service in tests: `volact vendor serve` on an ephemeral loopback port, and
//! hosts that activate against it.

use super::{ChildGuard, Fixture, command, run, s};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// `volact vendor serve` on an ephemeral loopback port; its URL from its first line.
pub fn vendor_serve(fx: &Fixture, extra: &[&str]) -> (ChildGuard, String) {
    let (guard, ready) = vendor_serve_ready(fx, extra);
    (guard, ready["url"].as_str().unwrap().to_string())
}

/// `volact vendor serve`, and what it printed once it listened.
pub fn vendor_serve_ready(fx: &Fixture, extra: &[&str]) -> (ChildGuard, Value) {
    let mut args = vec![
        "--json",
        "vendor",
        "serve",
        "--dir",
        s(&fx.vendor_dir),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut cmd = command(Path::new("."), &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard { child };
    // `--json` prints the ready object (over several lines) once it listens.
    let mut reader = BufReader::new(stdout);
    let mut text = String::new();
    let ready: Value = loop {
        let before = text.len();
        reader.read_line(&mut text).unwrap();
        if let Ok(v) = serde_json::from_str(&text) {
            break v;
        }
        assert!(
            text.len() > before && text.len() < 4096,
            "vendor serve printed {text:?}"
        );
    };
    (guard, ready)
}

/// A new host in `root/name` with the fixture's host key installed, not activated.
pub fn new_host(fx: &Fixture, root: &Path, name: &str) -> std::path::PathBuf {
    host_with_key(fx, root, name, &fx.host_key)
}

/// A new host in `root/name` with `host_key` (and the fixture's vendor) installed, not
/// activated.
pub fn host_with_key(fx: &Fixture, root: &Path, name: &str, host_key: &str) -> std::path::PathBuf {
    let data = root.join(name);
    run(&["host", "init", "--data", s(&data)]).ok();
    run(&[
        "host",
        "install-key",
        "--data",
        s(&data),
        "--vendor",
        s(&fx.bundle),
        host_key,
    ])
    .ok();
    data
}

/// Has the host in `data` send its usage report every second instead of hourly.
pub fn report_every_second(data: &Path) {
    std::fs::write(
        data.join("volact.toml"),
        "[vendor]\nusage_report_every = \"1s\"\n",
    )
    .unwrap();
}

pub fn activate_online(data: &Path, url: &str) -> super::Output {
    run(&[
        "--json",
        "host",
        "activate",
        "--data",
        s(data),
        "--online",
        "--vendor-url",
        url,
    ])
}

/// Issues a host key with usage reports on through the service's admin API; returns
/// what the service answered (`host_key`, `claims`).
pub fn issue_key(fx: &Fixture, url: &str, customer: &str, group: &str) -> Value {
    let token_file = fx.vendor_dir.join("admin.token");
    serde_json::from_str(
        &run(&[
            "--json",
            "vendor",
            "host-key",
            "--url",
            url,
            "--token-file",
            s(&token_file),
            "--customer",
            customer,
            "--group",
            group,
            "--usage-reports",
        ])
        .ok()
        .stdout,
    )
    .unwrap()
}

/// An HTML form's body (`application/x-www-form-urlencoded`).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |v: &str| {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POSTs `pairs` as a form to `url`, with the session `cookie` if any.
pub async fn post_form(
    http: &reqwest::Client,
    url: String,
    cookie: Option<&str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

pub fn no_redirects() -> reqwest::Client {
    volact_client::tls::install_default_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The session cookie (`volact_session=…`) a login answer sets.
pub fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

/// Logs in to the vendor dashboard at `url` with the service's admin token; returns a
/// client that follows no redirect and the session cookie.
pub async fn dashboard_login(fx: &Fixture, url: &str) -> (reqwest::Client, String) {
    let http = no_redirects();
    let token = std::fs::read_to_string(fx.vendor_dir.join("admin.token")).unwrap();
    let r = post_form(
        &http,
        format!("{url}/login"),
        None,
        &[("token", token.trim())],
    )
    .await;
    assert_eq!(r.status(), 303);
    let cookie = session_cookie(&r);
    (http, cookie)
}

/// A dashboard page's HTML, with the session cookie.
pub async fn dashboard_page(http: &reqwest::Client, cookie: &str, url: String) -> String {
    let r = http.get(url).header("cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}
