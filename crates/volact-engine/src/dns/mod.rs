//! DNS for discovery: the SRV record clients look up (`_volact._tcp.DOMAIN`), printed
//! for an administrator to add by hand, or published by RFC 2136 dynamic update with an
//! optional TSIG key, as a KMS host publishes `_vlmcs._tcp`.

pub mod config;
pub mod publish;
pub mod tsig;
pub mod wire;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

pub use config::{DnsSection, PublishConfig, PublishRaw, SrvRecord};
pub use publish::{PublishLog, PublishResult, Publisher, publish, read_log, unpublish};

use crate::config::RawConfig;
use crate::data::HostData;
use volact_proto::ApiError;

/// `[dns.publish]` of the data directory's `volact.toml`, as written (`None` when absent).
pub fn publish_section(data: &HostData) -> Result<Option<PublishRaw>, ApiError> {
    Ok(RawConfig::from_file(&data.config_path())?
        .dns
        .and_then(|d| d.publish))
}

/// The checked publishing configuration of `data`, with `listen_port` as the default
/// port and the TLS listener's port, if any, published beside it; `None` when
/// `volact.toml` has no `[dns.publish]`.
pub fn publish_config(
    data: &HostData,
    listen_port: u16,
    tls_port: Option<u16>,
) -> Result<Option<PublishConfig>, ApiError> {
    let Some(raw) = publish_section(data)? else {
        return Ok(None);
    };
    let mut config = raw.resolve(data.dir(), listen_port)?;
    config.record.tls_port = tls_port.filter(|p| *p != 0);
    Ok(Some(config))
}
