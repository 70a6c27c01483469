//! Request and answer bodies of the HTTP protocol and of the offline host-activation
//! file exchange.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /v1/activations`: a client asks to be activated or renewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    /// The client's random 128-bit id, as a hyphenated UUID.
    pub client_id: String,
    /// The installed setup key, `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
    pub setup_key: String,
    /// The minimum count the client needs (from its catalog); the host uses the larger of
    /// this and its own catalog's minimum.
    pub minimum_count: u32,
    /// The client's clock when it sent the request.
    pub client_time: Timestamp,
    /// A fresh random value the answer must echo, so answers cannot be replayed.
    pub nonce: String,
    /// The machine's name, for the inventory.
    pub machine_name: String,
    /// The id of the ticket the client holds now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    /// A stable, opaque fingerprint of the machine (a hash, never the raw machine id),
    /// so a host can tell two machines apart that share a client id and a name: disks
    /// cloned from one image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_fingerprint: Option<String>,
    /// The client id this machine had before its last `rearm`, so a host can keep a
    /// revoked machine refused under its new id until an administrator acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_client_id: Option<String>,
}

/// The outcome of an activation request that reached the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationResult {
    /// Count reached: the answer carries a ticket.
    Activated,
    /// Count not reached yet: the answer carries a signed "not yet" with a retry time.
    CountInsufficient,
}

/// The intervals a host tells its clients to use. Seconds, so any language reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIntervals {
    /// Renew this long after a ticket is issued.
    pub renew_interval_secs: u64,
    /// Retry this long after a refusal while not activated.
    pub retry_interval_secs: u64,
    /// A ticket is valid this long from issue.
    pub ticket_validity_secs: u64,
    /// A client counts this long after its last request.
    pub count_window_secs: u64,
    /// Largest accepted difference between client and host clocks.
    pub max_clock_skew_secs: u64,
}

/// The answer to an activation request that reached the count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationResponse {
    /// Activated, or not yet.
    pub result: ActivationResult,
    /// Distinct machines counted for the product's application, this one included.
    pub count: u32,
    /// The minimum count this product needs.
    pub minimum: u32,
    /// The product the setup key names.
    pub product: String,
    /// The application (count group) of the product.
    pub application: String,
    /// The answering host's id.
    pub host_id: String,
    /// The host's clock when it answered.
    pub host_time: Timestamp,
    /// The host's intervals, for display only: this field is not signed, so clients use
    /// the copy inside the signed ticket or "not yet" instead.
    pub intervals: HostIntervals,
    /// When to ask again if not activated (for display; the signed "not yet" says it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Timestamp>,
    /// The activation ticket (PASETO v4.public, signed by the host), when activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The signed "not yet" (PASETO v4.public, signed by the host), when not activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_yet: Option<String>,
    /// The host certificate (PASETO v4.public, signed by the vendor root) that lets the
    /// client check the host's signature.
    pub host_certificate: String,
    /// The vendor's newest revocation list the host holds (signed by the vendor), which
    /// clients keep so that they refuse a revoked host that does not know it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_list: Option<String>,
}

/// `GET /v1/host`: public facts about a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host id, derived from the host's public key.
    pub host_id: String,
    /// The host's public key (PASERK `k4.public.…`).
    pub host_public_key: String,
    /// Whether the host holds a valid certificate and serves activations.
    pub activated: bool,
    /// The host certificate, once activated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_certificate: Option<String>,
    /// When the host certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<Timestamp>,
    /// Version of the vendor catalog the host uses.
    pub catalog_version: u64,
    /// The host's intervals.
    pub intervals: HostIntervals,
    /// The host's clock.
    pub host_time: Timestamp,
}

/// A host's offline activation request, written to a file and taken to the vendor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostActivationRequest {
    /// The host's public key (PASERK `k4.public.…`).
    pub host_public_key: String,
    /// A PASETO v4.public token signed by the host's own key, proving it holds the key;
    /// it carries the host key, the host id and a nonce.
    pub proof: String,
}

/// The vendor's answer to a host activation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostActivationResponse {
    /// The host certificate (PASETO v4.public signed by the vendor root).
    pub host_certificate: String,
}

/// A serving host's request to renew its host certificate online
/// (`POST /v1/host-renewals`): no activation is spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRenewalRequest {
    /// A PASETO v4.public token signed by the host's identity key: its current host
    /// certificate, its host key, a fresh nonce and the host's time.
    pub proof: String,
}

/// The vendor's answer to a host renewal request: a fresh certificate with the same
/// claims and a new validity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRenewalResponse {
    /// The renewed host certificate.
    pub host_certificate: String,
}

/// The vendor service's current signed catalog (`GET /v1/catalog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogResponse {
    /// The catalog token, signed by the vendor root or a key delegated for catalogs.
    pub catalog: String,
}

/// The vendor's current signed revocation list (`GET /v1/revocations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevocationsResponse {
    /// The signed `volact.revocation-list`.
    pub revocation_list: String,
}

/// A host's daily usage report (`POST /v1/usage-reports`): its certificate, which tells
/// the service whose report it is, and the report signed by the host's identity key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReportUpload {
    /// The host's current certificate.
    pub host_certificate: String,
    /// The report token (`volact.usage-report`).
    pub report: String,
}

/// The service's receipt for a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageReportReceipt {
    /// The day the report covers (`YYYY-MM-DD`); a later report of the same day
    /// replaces it.
    pub day: String,
}

/// The key of an [`crate::ApiError`]'s `details` under which a host puts its
/// [`RefusalSignature`].
pub const REFUSAL_SIGNATURE: &str = "signature";

/// A host's proof that a refusal about a client (revoked, clock skew, seat limit, product
/// or setup key not served) is its own: a signed `volact.refusal` document naming the
/// client, the request's nonce, the code, the retry time and the host's intervals, and
/// the host certificate that chains the signing key to the vendor root. Carried in the
/// refusal's `details` under [`REFUSAL_SIGNATURE`]; a client acts on nothing in a refusal
/// without it (a refusal without one only tells it to try another host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalSignature {
    /// The `volact.refusal` document (PASETO v4.public, signed by the host).
    pub refusal: String,
    /// The host certificate (PASETO v4.public, signed by the vendor root).
    pub host_certificate: String,
}
