//! The transport: one `POST /v1/activations` to one host. It only translates between
//! HTTP and the wire types; deciding what an answer means is the caller's job.

use crate::discovery::Candidate;
use std::time::Duration;
use volact_core::util::{printable, printable_json};
use volact_proto::{ActivationRequest, ActivationResponse, ApiError, ErrorCode};

/// How long to wait for a TCP connection before trying the next host (the default of
/// [`crate::ActivateOptions::connect_timeout`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a host. Real answers are a few kilobytes; a host sending
/// more is broken or hostile, and must not exhaust the client's memory.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// What a host said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostReply {
    /// An activation answer (ticket or "not yet"), still to be verified.
    Answer(Box<ActivationResponse>),
    /// A refusal with a stable code.
    Refusal(ApiError),
}

/// The HTTP client for one host. A host found in DNS comes with its addresses, resolved
/// through the DNS server discovery used, so the system resolver is not asked again.
pub(crate) fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
    host: &Candidate,
    trust: &crate::tls::TlsTrust,
) -> Result<reqwest::Client, ApiError> {
    crate::tls::install_default_provider();
    let mut builder = reqwest::Client::builder();
    let (tls, host_port) = host_port(&host.host);
    if !host.addrs.is_empty()
        && let Some((name, _)) = host_port.rsplit_once(':')
    {
        builder = builder.resolve_to_addrs(name, &host.addrs);
    }
    if tls {
        builder = crate::tls::configure(builder, trust)?;
    }
    builder
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        // Hosts sit on the organisation's own network; a proxy from the environment would
        // only send requests somewhere they cannot arrive.
        .no_proxy()
        // A host closes a keep-alive connection after its idle timeout (30 s by default,
        // less where configured); a pooled one reused just then would fail the request,
        // so let go well before.
        .pool_idle_timeout(Duration::from_secs(5))
        .user_agent(concat!("volact-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot set up the HTTP client: {}", cause(&e)),
            )
        })
}

/// Whether `host` (as remembered: `host:port`, or `https://host:port` for a TLS host) is
/// spoken to over TLS, and its `host:port`.
pub(crate) fn host_port(host: &str) -> (bool, &str) {
    match host.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, host),
    }
}

fn unreachable(host: &str, why: String) -> ApiError {
    ApiError::with_details(
        ErrorCode::HostUnreachable,
        format!(
            "host {host} did not answer ({why}); check that the host is running and reachable on that port, or pin another with `volact set-host HOST[:PORT]`"
        ),
        serde_json::json!({ "host": host, "cause": why }),
    )
}

/// Sends an activation request to `host` (`host:port`). A connection failure, a timeout
/// or an answer that is not volact's is `host-unreachable` naming the host and cause.
pub(crate) async fn post_activation(
    client: &reqwest::Client,
    host: &str,
    request: &ActivationRequest,
) -> Result<HostReply, ApiError> {
    let url = match host_port(host) {
        (true, host_port) => format!("https://{host_port}/v1/activations"),
        (false, _) => format!("http://{host}/v1/activations"),
    };
    let response = client
        .post(&url)
        .json(request)
        .send()
        .await
        .map_err(|e| unreachable(host, cause(&e)))?;
    let status = response.status();
    let body = read_capped(response)
        .await
        .map_err(|why| unreachable(host, why))?;
    if status.is_success()
        && let Ok(answer) = serde_json::from_slice::<ActivationResponse>(&body)
    {
        return Ok(HostReply::Answer(Box::new(answer)));
    }
    if let Ok(mut refusal) = serde_json::from_slice::<ApiError>(&body) {
        // The host's words go to the terminal and the state file: plain text only.
        refusal.message = printable(&refusal.message);
        refusal.details = printable_json(&refusal.details);
        return Ok(HostReply::Refusal(refusal));
    }
    Err(unreachable(
        host,
        format!(
            "it answered HTTP {status} with something that is not a volact answer, so it is probably not a volact host"
        ),
    ))
}

/// The body of `response`, refused past 256 KiB: whatever answers volact requests is
/// read without trusting it to be small.
pub async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the answer broke off: {}", cause(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "its answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error with its chain of causes, since reqwest's top-level message alone ("error
/// sending request") does not say what went wrong.
fn cause(e: &reqwest::Error) -> String {
    let first = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    crate::tls::chain_after(first, e)
}
