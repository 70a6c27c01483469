//! Admission of new clients: the checks a client id the host has not counted passes
//! before it may join the count, on top of the rules of `volact_core::decide`.
//!
//! - **Rate limits** per source address and network prefix
//!   ([`volact_core::ratelimit`]): one process making up client ids would otherwise
//!   lift an application past its minimum in a second. Refused `rate-limited` (HTTP 429,
//!   `Retry-After`), counted in `/metrics` (`volact_new_clients_refused_total`), and
//!   reported to the audit log at most once per ten minutes per address or prefix.
//! - **Revoked machines**: a request naming, as the id it had before a rearm, a revoked
//!   client, or carrying the machine fingerprint of a revoked client, is refused
//!   `client-revoked` until an administrator un-revokes that client, so a rearm does not
//!   launder a revocation.
//!
//! Renewals of counted clients never come here: the hot path is untouched.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use metrics::Counter;
use serde::Deserialize;
use volact_core::count::ClientKey;
use volact_core::ratelimit::{Decision, NewClientLimiter, NewClientLimits, Rate, Refused, Scope};
use volact_proto::{ActivationRequest, ApiError, ErrorCode};
use volact_store::Store;

/// `[rate_limits]` in `volact.toml`: every key optional, defaults from
/// [`volact_core::ratelimit::DEFAULT_LIMITS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// New clients a minute from one address (0: no limit).
    pub per_address_per_minute: Option<u32>,
    /// New clients at once from one address.
    pub per_address_burst: Option<u32>,
    /// New clients a minute from one /24 or /64 (0: no limit).
    pub per_prefix_per_minute: Option<u32>,
    /// New clients at once from one /24 or /64.
    pub per_prefix_burst: Option<u32>,
    /// Whether loopback clients are exempt (default true).
    pub exempt_loopback: Option<bool>,
    /// Addresses (and, apart, prefixes) remembered at most.
    pub max_tracked: Option<usize>,
}

/// Largest rate or burst accepted: far beyond any site, low enough that the arithmetic
/// of the limiter stays exact.
const MAX_RATE: u32 = 1_000_000;
/// Range of `max_tracked`.
const TRACKED_RANGE: (usize, usize) = (1_024, 10_000_000);

impl RateLimitSection {
    /// The limits, checked: rates 0 to 1,000,000 a minute, bursts 1 to 1,000,000,
    /// `max_tracked` 1,024 to 10,000,000. The error names the key and its range.
    pub fn resolve(&self) -> Result<NewClientLimits, String> {
        let d = volact_core::ratelimit::DEFAULT_LIMITS;
        let rate = |name: &str, v: Option<u32>, default: u32, min: u32| {
            let v = v.unwrap_or(default);
            if (min..=MAX_RATE).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "{name} is {v}; it must be from {min} to {MAX_RATE}"
                ))
            }
        };
        let max_tracked = self.max_tracked.unwrap_or(d.max_tracked);
        if !(TRACKED_RANGE.0..=TRACKED_RANGE.1).contains(&max_tracked) {
            return Err(format!(
                "max_tracked is {max_tracked}; it must be from {} to {}",
                TRACKED_RANGE.0, TRACKED_RANGE.1
            ));
        }
        Ok(NewClientLimits {
            per_address: Rate {
                per_minute: rate(
                    "per_address_per_minute",
                    self.per_address_per_minute,
                    d.per_address.per_minute,
                    0,
                )?,
                burst: rate(
                    "per_address_burst",
                    self.per_address_burst,
                    d.per_address.burst,
                    1,
                )?,
            },
            per_prefix: Rate {
                per_minute: rate(
                    "per_prefix_per_minute",
                    self.per_prefix_per_minute,
                    d.per_prefix.per_minute,
                    0,
                )?,
                burst: rate(
                    "per_prefix_burst",
                    self.per_prefix_burst,
                    d.per_prefix.burst,
                    1,
                )?,
            },
            exempt_loopback: self.exempt_loopback.unwrap_or(d.exempt_loopback),
            max_tracked,
        })
    }
}

/// Metric of new clients refused by a rate limit.
const REFUSED: &str = "volact_new_clients_refused_total";
/// Metric of new client ids refused because their machine belongs to a revoked client.
const REVOKED_MACHINES: &str = "volact_revoked_machine_refusals_total";

/// Audit-log result of a machine learnt to belong to a revoked client.
const REVOKED_MACHINE_EVENT: &str = "revoked-machine";
/// Machines of revoked clients remembered at most.
const MAX_REVOKED_MACHINES: usize = 100_000;

/// The request's `previous_client_id` (the id before a rearm) as a client key; a
/// malformed one is a `bad-request` naming the field. Cheap when the field is absent, as
/// it is on every request but the first after a rearm. Whether it names a revoked client
/// is the count's to say (`volact_store::count::ClientView::previous_revoked`).
pub(crate) fn previous_client(req: &ActivationRequest) -> Result<Option<ClientKey>, ApiError> {
    let Some(previous) = req.previous_client_id.as_deref() else {
        return Ok(None);
    };
    let key = uuid::Uuid::parse_str(previous.trim())
        .map_err(|_| {
            ApiError::bad_request(
                "previous_client_id",
                "must be a UUID (the client id before a rearm)",
            )
        })?
        .as_u128();
    Ok(Some(key))
}

/// The admission state of one engine.
pub struct Admission {
    limiter: Mutex<NewClientLimiter>,
    /// Hashes of the fingerprints of machines whose client is revoked, with that client.
    revoked_machines: RwLock<HashMap<u64, ClientKey>>,
    hasher: RandomState,
    refused_address: Counter,
    refused_prefix: Counter,
    revoked_machine: Counter,
    store: Arc<dyn Store>,
}

fn poisoned() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the host's admission state is unavailable after an internal failure; restart the host",
    )
}

impl Admission {
    /// Admission with the default limits, its series in `metrics`, its audit events in
    /// `store`.
    pub fn new(metrics: &crate::metrics::Metrics, store: Arc<dyn Store>) -> Admission {
        let refused_help = "New client ids refused by a rate limit (per address or per /24 or /64 prefix); renewals are never limited.";
        Admission {
            limiter: Mutex::new(NewClientLimiter::new(NewClientLimits::default())),
            revoked_machines: RwLock::new(HashMap::new()),
            hasher: RandomState::new(),
            refused_address: metrics.counter(REFUSED, refused_help, &[("limit", "address")]),
            refused_prefix: metrics.counter(REFUSED, refused_help, &[("limit", "prefix")]),
            revoked_machine: metrics.counter(
                REVOKED_MACHINES,
                "New client ids refused because the machine (its previous client id or its fingerprint) belongs to a revoked client.",
                &[],
            ),
            store,
        }
    }

    /// Replaces the limits (and forgets what the old ones had counted).
    pub fn set_limits(&self, limits: NewClientLimits) -> Result<(), ApiError> {
        *self.limiter.lock().map_err(|_| poisoned())? = NewClientLimiter::new(limits);
        Ok(())
    }

    /// The limits in force.
    pub fn limits(&self) -> Result<NewClientLimits, ApiError> {
        Ok(*self.limiter.lock().map_err(|_| poisoned())?.limits())
    }

    fn fingerprint(&self, req: &ActivationRequest) -> Option<u64> {
        req.machine_fingerprint
            .as_deref()
            .map(|f| self.hasher.hash_one(f.as_bytes()))
    }

    /// Checks a client the host has not counted (`client`, revoked or not) asking from
    /// `address` at `now`: the rate limits first (so a flood of refusals stays within
    /// them too), then whether its machine belongs to a revoked client. `previous` is
    /// the request's previous client id when it names a revoked client (see
    /// [`previous_client`]). Called with the count held, so it takes no lock of the
    /// engine's.
    pub(crate) fn admit_new(
        &self,
        client: ClientKey,
        client_revoked: bool,
        previous: Result<Option<ClientKey>, ApiError>,
        req: &ActivationRequest,
        address: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        self.rate_limit(address, now)?;
        if client_revoked {
            // The revoked client itself: remember its machine, so a new id from it
            // (a rearm that dropped the old id) is refused too.
            self.learn(req, client, address, now)?;
            return Ok(());
        }
        if let Some(key) = previous? {
            self.learn(req, key, address, now)?;
            return Err(self.revoked_machine_refusal(key, "previous client id"));
        }
        if let Some(f) = self.fingerprint(req) {
            let owner = self
                .revoked_machines
                .read()
                .map_err(|_| poisoned())?
                .get(&f)
                .copied();
            if let Some(owner) = owner {
                return Err(self.revoked_machine_refusal(owner, "machine fingerprint"));
            }
        }
        Ok(())
    }

    /// Remembers the machine of `req` as revoked client `owner`'s, and records it in
    /// the audit log (once per machine) so a restarted host still knows it.
    fn learn(
        &self,
        req: &ActivationRequest,
        owner: ClientKey,
        address: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let (Some(text), Some(f)) = (req.machine_fingerprint.as_deref(), self.fingerprint(req))
        else {
            return Ok(());
        };
        {
            let mut machines = self.revoked_machines.write().map_err(|_| poisoned())?;
            // Bounded: a revoked client sending made-up fingerprints (within the rate
            // limits) cannot fill memory.
            if machines.contains_key(&f) || machines.len() >= MAX_REVOKED_MACHINES {
                return Ok(());
            }
            machines.insert(f, owner);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let store = self.store.clone();
        let detail = format!(
            "client {} machine {text}",
            uuid::Uuid::from_u128(owner).hyphenated()
        );
        let address = address.to_string();
        let at = now.as_second();
        runtime.spawn(async move {
            if let Err(e) = store
                .record_host_event(at, REVOKED_MACHINE_EVENT, &address, &detail)
                .await
            {
                tracing::warn!(error = %e, "could not store a revoked client's machine");
            }
        });
        Ok(())
    }

    /// Loads the machines of clients in `revoked` from the audit log (see
    /// [`Admission::learn`]), when the host starts.
    pub(crate) async fn load_revoked_machines(
        &self,
        store: &dyn Store,
        revoked: &std::collections::HashSet<ClientKey>,
    ) -> Result<(), volact_store::StoreError> {
        let filter = volact_store::EventFilter {
            result: Some(REVOKED_MACHINE_EVENT.into()),
            limit: Some(MAX_REVOKED_MACHINES as u32),
            ..volact_store::EventFilter::default()
        };
        let events = store.events(&filter).await?;
        let Ok(mut machines) = self.revoked_machines.write() else {
            return Ok(());
        };
        for e in events {
            let mut words = e.machine_name.split(' ');
            let (Some("client"), Some(id), Some("machine"), Some(text)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(owner) = uuid::Uuid::parse_str(id).map(|u| u.as_u128()) else {
                continue;
            };
            if revoked.contains(&owner) {
                machines.insert(self.hasher.hash_one(text.as_bytes()), owner);
            }
        }
        Ok(())
    }

    fn revoked_machine_refusal(&self, owner: ClientKey, by: &str) -> ApiError {
        self.revoked_machine.increment(1);
        let owner = uuid::Uuid::from_u128(owner).hyphenated().to_string();
        ApiError::with_details(
            ErrorCode::ClientRevoked,
            format!(
                "this machine belongs to revoked client {owner} (by its {by}); a new client id does not lift a revocation. Ask the host's administrator to run `volact host unrevoke {owner}` if the revocation was a mistake"
            ),
            serde_json::json!({ "revoked_client_id": owner, "matched_by": by }),
        )
    }

    /// An administrator un-revoked `client`: its machine may ask again.
    pub(crate) fn unrevoked(&self, client: ClientKey) -> Result<(), ApiError> {
        self.revoked_machines
            .write()
            .map_err(|_| poisoned())?
            .retain(|_, owner| *owner != client);
        Ok(())
    }

    /// Whether a refusal of a client the host has not counted, decided before the rate
    /// limits were consulted (host not activated, unknown setup key), may be stored: only
    /// within the new-client budget, so made-up ids cannot grow the inventory faster
    /// than new clients can.
    pub(crate) fn may_store_refusal(&self, address: &str, now: Timestamp) -> bool {
        self.rate_limit(address, now).is_ok()
    }

    /// Takes one new client from `address`'s budget, or refuses `rate-limited`. Addresses
    /// that are not IP addresses come from in-process callers (the simulator), which
    /// are not limited.
    fn rate_limit(&self, address: &str, now: Timestamp) -> Result<(), ApiError> {
        let Ok(ip) = address.parse::<IpAddr>() else {
            return Ok(());
        };
        let (decision, limits) = {
            let mut limiter = self.limiter.lock().map_err(|_| poisoned())?;
            let decision = limiter.check(ip, now.as_microsecond());
            (decision, *limiter.limits())
        };
        let refused = match decision {
            Decision::Exempt | Decision::Admitted => return Ok(()),
            Decision::Refused(r) => r,
        };
        let rate = match refused.scope {
            Scope::Address => {
                self.refused_address.increment(1);
                limits.per_address
            }
            Scope::Prefix => {
                self.refused_prefix.increment(1);
                limits.per_prefix
            }
        };
        if let Some(n) = refused.report {
            self.report(&refused, rate, n, now);
        }
        let scope = refused.scope.as_str();
        let secs = refused.retry_after_secs();
        Err(ApiError::with_details(
            ErrorCode::RateLimited,
            format!(
                "too many new clients from {} ({} at once, then {} a minute, per {scope}); this client was not counted and may retry in {secs} s. If a site really starts more machines at once, raise [rate_limits] in the host's volact.toml",
                refused.subject, rate.burst, rate.per_minute
            ),
            serde_json::json!({
                "retry_after_secs": secs,
                "limit": scope,
                "subject": refused.subject,
                "per_minute": rate.per_minute,
                "burst": rate.burst,
            }),
        ))
    }

    /// Logs and audits a subject over its limit (at most once per ten minutes each).
    fn report(&self, refused: &Refused, rate: Rate, n: u64, now: Timestamp) {
        let detail = format!(
            "{n} new client(s) refused from {} by the per-{} limit ({} at once, then {} a minute) since the last report",
            refused.subject,
            refused.scope.as_str(),
            rate.burst,
            rate.per_minute
        );
        tracing::warn!(subject = %refused.subject, limit = refused.scope.as_str(), refused = n, "new clients rate-limited: {detail}");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let subject = refused.subject.clone();
        let at = now.as_second();
        runtime.spawn(async move {
            if let Err(e) = store
                .record_host_event(at, ErrorCode::RateLimited.as_str(), &subject, &detail)
                .await
            {
                tracing::warn!(error = %e, "could not store the rate-limit audit event");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_section_resolves_with_defaults_and_refuses_out_of_range() {
        let d = RateLimitSection::default().resolve().unwrap();
        assert_eq!(d, volact_core::ratelimit::DEFAULT_LIMITS);
        let s: RateLimitSection =
            toml::from_str("per_address_per_minute = 5\nexempt_loopback = false\n").unwrap();
        let l = s.resolve().unwrap();
        assert_eq!((l.per_address.per_minute, l.exempt_loopback), (5, false));
        let e = RateLimitSection {
            per_prefix_burst: Some(0),
            ..RateLimitSection::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.contains("per_prefix_burst"), "{e}");
        assert!(toml::from_str::<RateLimitSection>("per_adress_burst = 1").is_err());
    }
}
