//! Signed refusals: a host's "no" that changes what a client does (it waits until a
//! retry time, learns it is revoked, takes new intervals) is a document the host signs,
//! in the chain to the vendor root, like a ticket. Without a signature a refusal is only
//! a failed host: anyone on the network could otherwise send one, far retry time and all,
//! and stop a whole site from activating.

use crate::keys::KeyPair;
use crate::settings::Settings;
use crate::token::{self, Document};
use crate::util;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use volact_proto::{ApiError, ErrorCode, HostIntervals, REFUSAL_SIGNATURE, RefusalSignature};

/// The claims of a signed refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The client id.
    pub sub: String,
    /// The product, when the host could tell which (not for an unknown setup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The request's nonce, so a refusal cannot be replayed to another request.
    pub nonce: String,
    /// Why the host refused.
    pub code: ErrorCode,
    /// Answered at (host clock).
    pub iat: Timestamp,
    /// Retry at this time (host clock): the client waits `retry_after - iat` by its own.
    pub retry_after: Timestamp,
    /// The host id.
    pub iss: String,
    /// The host's intervals.
    pub intervals: HostIntervals,
}

impl Document for Refusal {
    const TYPE: &'static str = "volact.refusal";
}

/// The refusals a host signs: those about the client itself, which every host of the
/// site would give alike, so they end a client's search for a host. The rest (host not
/// activated or expired, storage failure, rate limit, a malformed request) stay unsigned
/// and tell the client only to try another host, with its own retry time.
pub const SIGNED_CODES: [ErrorCode; 5] = [
    ErrorCode::ClientRevoked,
    ErrorCode::ClockSkew,
    ErrorCode::SeatLimitReached,
    ErrorCode::ProductNotInKeyGroup,
    ErrorCode::UnknownSetupKey,
];

/// Whether refusals with `code` are signed.
pub fn is_signed(code: ErrorCode) -> bool {
    SIGNED_CODES.contains(&code)
}

/// Who was refused: the request's identity as the host parsed it.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// The client id (canonical form).
    pub client_id: &'a str,
    /// The request's nonce.
    pub nonce: &'a str,
    /// The product, when known.
    pub product: Option<&'a str>,
}

/// The claims to sign for `error`, or `None` when such a refusal is not signed.
pub fn claims(
    error: &ApiError,
    who: Refused<'_>,
    host_id: &str,
    settings: &Settings,
    now: Timestamp,
) -> Option<Refusal> {
    is_signed(error.code).then(|| Refusal {
        sub: who.client_id.to_string(),
        product: who.product.map(str::to_string),
        nonce: who.nonce.to_string(),
        code: error.code,
        iat: now,
        retry_after: util::add(now, settings.retry_interval),
        iss: host_id.to_string(),
        intervals: settings.intervals(),
    })
}

/// Signs `refusal` with the host's key; [`attach`] puts it on the refusal sent.
pub fn sign(host: &KeyPair, refusal: &Refusal) -> Result<String, ApiError> {
    token::sign(host, refusal).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the refusal: {e}"),
        )
    })
}

/// `error` with a signed refusal and the host certificate in its details.
pub fn attach(
    mut error: ApiError,
    signed: String,
    host_certificate: &str,
    retry_after: Timestamp,
) -> ApiError {
    let signature = RefusalSignature {
        refusal: signed,
        host_certificate: host_certificate.to_string(),
    };
    if !error.details.is_object() {
        error.details = serde_json::Value::Object(serde_json::Map::new());
    }
    if let Some(map) = error.details.as_object_mut() {
        map.insert(
            "retry_after".into(),
            serde_json::Value::String(retry_after.to_string()),
        );
        if let Ok(v) = serde_json::to_value(signature) {
            map.insert(REFUSAL_SIGNATURE.into(), v);
        }
    }
    error
}

/// The signature attached to `error`, if any (not yet verified).
pub fn signature_of(error: &ApiError) -> Option<RefusalSignature> {
    let v = error.details.get(REFUSAL_SIGNATURE)?;
    serde_json::from_value(v.clone()).ok()
}

/// `error` without its signature, as a client shows and stores it.
pub fn without_signature(mut error: ApiError) -> ApiError {
    if let Some(map) = error.details.as_object_mut() {
        map.remove(REFUSAL_SIGNATURE);
    }
    error
}
