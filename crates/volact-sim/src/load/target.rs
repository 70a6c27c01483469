//! Which hosts the load tool may load: loopback ones, and one other only when the caller
//! names it explicitly, so nobody loads a production host by mistake.

use super::refuse;
use std::net::{IpAddr, SocketAddr};
use volact_proto::ApiError;

/// Resolves the target and refuses anything that is not loopback (127.0.0.0/8, ::1,
/// `localhost`) unless `allow_host` names exactly that host or address.
pub async fn resolve_target(
    url: &str,
    allow_host: Option<&str>,
) -> Result<(SocketAddr, String), ApiError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| refuse(format!("`{url}` is not a URL: {e}")))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(refuse(format!(
            "`{url}`: only http:// and https:// are supported by the load tool"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refuse(format!("`{url}` names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .unwrap_or(volact_proto::DEFAULT_PORT);
    let allowed =
        allow_host.is_some_and(|a| a.trim_start_matches('[').trim_end_matches(']') == host);
    // A name other than localhost is refused before it is even looked up, so a mistyped
    // target causes no traffic at all, not even a DNS query.
    if !allowed && host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse(format!(
            "refusing to load {host}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed; \
             name it with --allow-host {host} to go ahead"
        )));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| refuse(format!("cannot resolve {host}: {e}")))?
        .collect();
    let loopback = |ip: IpAddr| ip.is_loopback();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| allowed || loopback(a.ip()))
        .ok_or_else(|| {
            refuse(format!(
                "refusing to load {host}: it is not a loopback address (127.0.0.0/8, ::1, localhost). \
                 Load only hosts you own; name it with --allow-host {host} to go ahead"
            ))
        })?;
    if !allowed && addrs.iter().any(|a| !loopback(a.ip())) {
        return Err(refuse(format!(
            "refusing to load {host}: it resolves to addresses outside loopback; name it with --allow-host {host}"
        )));
    }
    let base = format!("{}://{}", parsed.scheme(), parsed.authority());
    Ok((addr, base))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_unless_allowed() {
        assert!(resolve_target("http://127.0.0.1:7688", None).await.is_ok());
        assert!(resolve_target("http://127.3.2.1:7688", None).await.is_ok());
        assert!(resolve_target("http://[::1]:7688", None).await.is_ok());
        assert!(resolve_target("http://localhost:7688", None).await.is_ok());
        let e = resolve_target("http://10.1.2.3:7688", None)
            .await
            .unwrap_err();
        assert!(e.message.contains("--allow-host"), "{}", e.message);
        assert!(resolve_target("http://192.168.1.5", None).await.is_err());
        assert!(
            resolve_target("http://10.1.2.3:7688", Some("10.1.2.3"))
                .await
                .is_ok()
        );
        assert!(
            resolve_target("http://10.1.2.3:7688", Some("10.1.2.4"))
                .await
                .is_err()
        );
        assert!(resolve_target("ftp://127.0.0.1", None).await.is_err());
        assert!(resolve_target("https://127.0.0.1:7689", None).await.is_ok());
        let e = resolve_target("http://example.invalid:7688", None)
            .await
            .unwrap_err();
        assert!(e.message.contains("--allow-host"), "{}", e.message);
    }
}
