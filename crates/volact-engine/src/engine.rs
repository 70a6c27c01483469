//! The activation engine: the pure rules of `volact-core` (one decision,
//! `volact_core::decide::decide`), applied to the host's state (certificate, catalog, and
//! the count with its revocations behind `volact_store::count::Count`) and recorded
//! through the store.

use crate::clock::Clock;
use crate::writer::{Ack, Writer};
use jiff::Timestamp;
use std::sync::Arc;
use volact_core::catalog::{Catalog, Product};
use volact_core::certificate::HostCertificate;
use volact_core::count::ClientKey;
use volact_core::decide::{self, Answer, Counted, Decision, DecisionInput, Outcome, ParsedRequest};
use volact_core::keys::KeyPair;
use volact_core::refusal;
use volact_core::settings::Settings;
use volact_core::token;
use volact_proto::{
    ActivationRequest, ActivationResponse, ActivationResult, ApiError, ErrorCode, HostInfo,
};
use volact_store::count::{Count, CountError, CountQuery, Effect};
use volact_store::feed::SeatHold;
use volact_store::{ActivationRecord, Store};

/// Everything the engine needs to start.
pub struct EngineParts {
    /// The host's key pair.
    pub identity: KeyPair,
    /// The vendor's catalog.
    pub catalog: Catalog,
    /// The host certificate and its token, once the host is activated.
    pub certificate: Option<(String, HostCertificate)>,
    /// Intervals and limits.
    pub settings: Settings,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The count and the revoked clients: [`volact_store::count::MemoryCount`] loaded
    /// from `store`, unless the count is shared.
    pub count: Arc<dyn Count>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

/// A seat asked of a shared store before the decision (see `Engine::hold_seat`).
struct HeldSeat {
    /// The client holding it, when the store granted one (`None`: every seat was taken).
    client_id: Option<String>,
    /// Seats taken by other clients when it was asked.
    in_use: u64,
}

/// A refusal, and the record to store for it when the client can be identified.
type Refusal = (ApiError, Option<ActivationRecord>);

/// One request on its way through [`Engine::try_decide`].
struct Asking<'a> {
    parsed: &'a ParsedRequest,
    req: &'a ActivationRequest,
    address: &'a str,
    now: Timestamp,
}

/// What the decision left to do once the count is released. Large, but it lives on the
/// stack once per request; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Decided {
    /// Refused: sign and store the refusal.
    Refused(ApiError),
    /// Counted, and its record queued (or the queue failed).
    Queued(Result<(Counted, Answer, Ack), ApiError>),
}

#[path = "engine_installed.rs"]
mod installed;
use installed::covered;

/// The host's activation engine. Cheap to share behind an `Arc`.
pub struct Engine {
    identity: KeyPair,
    host_id: String,
    /// Swapped whole when a newer catalog is installed (see [`Engine::set_catalog`]).
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Swapped whole when a renewed certificate is installed: requests in flight keep
    /// the one they started with. Its claims are the certificate's with the products it
    /// covers under the catalog in force (see `installed::covered`); the token is the vendor's.
    certificate: std::sync::RwLock<Option<Arc<(String, HostCertificate)>>>,
    /// The vendor's newest revocation list the host has verified (see
    /// [`Engine::set_revocations`]).
    revocations: std::sync::RwLock<Option<Arc<(String, volact_core::revocation::RevocationList)>>>,
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    count: Arc<dyn Count>,
    writer: Writer,
    clones: crate::clones::CloneTracker,
    clone_flags: crate::clones::CloneFlags,
    metrics: crate::metrics::Metrics,
    storage_health: Arc<crate::health::StorageHealth>,
    /// Rate limits and revoked machines, for clients not counted (see `admission`).
    admission: crate::admission::Admission,
}

fn client_key(id: &str) -> Option<ClientKey> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

fn storage(e: volact_store::StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::StorageFailure,
        format!("the host's storage failed: {e}"),
    )
}

fn poisoned(_: CountError) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the host's count is unavailable after an internal failure; restart the host",
    )
}

impl Engine {
    /// Builds the engine on its parts (the count already loaded). Must be
    /// called inside a Tokio runtime (it starts the writer task).
    pub async fn start(parts: EngineParts) -> Result<Arc<Engine>, ApiError> {
        let revoked = parts
            .count
            .revoked()
            .map_err(poisoned)?
            .into_iter()
            .collect();
        let host_id = parts.identity.public().host_id();
        let storage_health = Arc::new(crate::health::StorageHealth::default());
        let metrics = crate::metrics::Metrics::new(&parts.catalog);
        metrics.set_certificate_expiry(parts.certificate.as_ref().map(|(_, c)| c.exp));
        let admission = crate::admission::Admission::new(&metrics, parts.store.clone());
        admission
            .load_revoked_machines(parts.store.as_ref(), &revoked)
            .await
            .map_err(storage)?;
        let certificate = parts
            .certificate
            .map(|(token, claims)| Arc::new((token, covered(claims, &parts.catalog))));
        Ok(Arc::new(Engine {
            admission,
            writer: Writer::start(
                parts.store.clone(),
                storage_health.clone(),
                parts.identity.clone(),
            ),
            clones: crate::clones::CloneTracker::default(),
            clone_flags: crate::clones::CloneFlags::start(parts.store.clone()),
            metrics,
            storage_health,
            identity: parts.identity,
            host_id,
            catalog: std::sync::RwLock::new(Arc::new(parts.catalog)),
            certificate: std::sync::RwLock::new(certificate),
            revocations: std::sync::RwLock::new(None),
            settings: parts.settings,
            store: parts.store,
            clock: parts.clock,
            count: parts.count,
        }))
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Admission of new clients: rate limits (set them with
    /// [`crate::admission::Admission::set_limits`]) and revoked machines.
    pub fn admission(&self) -> &crate::admission::Admission {
        &self.admission
    }

    /// The outcome of the latest write to storage.
    pub fn storage_health(&self) -> &crate::health::StorageHealth {
        &self.storage_health
    }

    /// The cloned-image tracker.
    pub fn clone_tracker(&self) -> &crate::clones::CloneTracker {
        &self.clones
    }

    pub(crate) fn clone_flags(&self) -> &crate::clones::CloneFlags {
        &self.clone_flags
    }

    /// The host id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time by the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Why the host cannot serve activations now, if it cannot (see
    /// [`decide::ready`]).
    pub fn not_ready(&self, now: Timestamp) -> Option<ApiError> {
        let current = self.current_certificate();
        decide::ready(current.as_ref().map(|c| &c.1), now)
            .and_then(|cert| self.check_revoked(cert))
            .err()
    }

    /// Current counts per application.
    pub fn counts(&self) -> Result<Vec<(String, u32)>, ApiError> {
        let now = self.clock.now().as_second();
        self.count.counts(now).map_err(poisoned)
    }

    /// How long ago the count last caught up with the other hosts sharing the store, when
    /// it is shared.
    pub fn count_feed_age(&self) -> Option<std::time::Duration> {
        self.count.feed_age()
    }

    /// Public facts about the host.
    pub fn info(&self) -> HostInfo {
        let current = self.current_certificate();
        HostInfo {
            host_id: self.host_id.clone(),
            host_public_key: self.identity.public().to_paserk(),
            activated: current.is_some(),
            host_certificate: current.as_ref().map(|c| c.0.clone()),
            certificate_expires: current.as_ref().map(|c| c.1.exp),
            catalog_version: self.catalog().version,
            intervals: self.settings.intervals(),
            host_time: self.clock.now(),
        }
    }

    /// Marks a client revoked or not: it leaves the count at once and its requests are
    /// refused. Returns false for an unknown client.
    pub async fn set_revoked(
        &self,
        client_id: &str,
        revoked: bool,
        reason: Option<&str>,
    ) -> Result<bool, ApiError> {
        let key = client_key(client_id)
            .ok_or_else(|| ApiError::bad_request("client_id", "must be a UUID"))?;
        let canonical = uuid::Uuid::from_u128(key).hyphenated().to_string();
        let known = self
            .store
            .set_revoked(&canonical, revoked, reason, self.clock.now().as_second())
            .await
            .map_err(storage)?;
        if known {
            if revoked {
                self.count.revoke(key).map_err(poisoned)?;
            } else {
                self.count.unrevoke(key).map_err(poisoned)?;
                self.admission.unrevoked(key)?;
            }
        }
        Ok(known)
    }

    /// Answers one activation request from `address`. The answer is returned only once
    /// the request is durably recorded.
    pub async fn activate(
        &self,
        req: &ActivationRequest,
        address: &str,
    ) -> Result<ActivationResponse, ApiError> {
        let now = self.clock.now();
        let held = match self.hold_seat(req, now).await {
            Ok(held) => held,
            Err(e) => {
                self.metrics.request(None, Err(e.code));
                return Err(e);
            }
        };
        let product;
        let (mut result, ack) = match self.try_decide(req, address, now, held.as_ref()) {
            Ok((response, ack)) => {
                product = self.product_index(&response.product);
                (Ok(response), Some(ack))
            }
            Err(refusal) => {
                if let Some(held) = held {
                    self.release_seat(held);
                }
                let (error, record) = *refusal;
                product = record.as_ref().and_then(|r| self.product_index(&r.product));
                let ack = match record {
                    Some(r) => Some(self.writer.enqueue(r, None)?),
                    None => None,
                };
                (Err(error), ack)
            }
        };
        let signed = match ack {
            Some(ack) => ack.wait().await?,
            None => None,
        };
        // The writer signed the answer with its batch (see `writer`).
        if let Ok(response) = &mut result {
            let Some(signed) = signed else {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    "the host stored this request but did not sign its answer; try again",
                ));
            };
            match response.result {
                ActivationResult::Activated => response.ticket = Some(signed),
                ActivationResult::CountInsufficient => response.not_yet = Some(signed),
            }
        }
        let outcome = match &result {
            Ok(r) if r.result == ActivationResult::Activated => Ok(()),
            Ok(_) => Err(ErrorCode::CountInsufficient),
            Err(e) => Err(e.code),
        };
        self.metrics.request(product, outcome);
        if let Err(e) = &result {
            tracing::debug!(code = %e.code, client_id = %req.client_id, address, "activation request refused: {}", e.message);
        }
        result
    }

    /// When the count is shared with other hosts and the certificate caps seats, holds a
    /// seat in the store for a client this host does not count yet, before the decision:
    /// other hosts fill the same seats, and only the store sees all of them at once. A
    /// store that cannot be reached answers `storage-failure`; nothing is held for
    /// clients this host already counts, for requests refused before the count (not
    /// parsed, an unknown setup key, a host not ready), or by a count of its own.
    async fn hold_seat(
        &self,
        req: &ActivationRequest,
        now: Timestamp,
    ) -> Result<Option<HeldSeat>, ApiError> {
        let Some(cap) = self.current_certificate().and_then(|c| c.1.seats) else {
            return Ok(None);
        };
        let Some(feed) = self.count.feed() else {
            return Ok(None);
        };
        // Requests refused before the count anyway take no seat.
        let Ok(parsed) = decide::parse_request(req) else {
            return Ok(None);
        };
        if self.not_ready(now).is_some()
            || self.catalog().product_for_key(&parsed.setup_key).is_err()
        {
            return Ok(None);
        }
        let at = now.as_second();
        if self
            .count
            .counts_anywhere(parsed.client, at)
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let since = volact_core::count::window_start(at, self.settings.count_window.as_secs());
        let hold = feed
            .hold_seat(&parsed.client_id, since, u64::from(cap))
            .await
            .map_err(storage)?;
        Ok(Some(match hold {
            SeatHold::Held { in_use } => HeldSeat {
                client_id: Some(parsed.client_id),
                in_use,
            },
            SeatHold::Full { in_use } => HeldSeat {
                client_id: None,
                in_use,
            },
        }))
    }

    /// Gives back a seat held for a request that was refused, in the background: a
    /// seat not given back is freed by the store a minute later, so a failure here only
    /// keeps the seat a little longer.
    fn release_seat(&self, held: HeldSeat) {
        let (Some(client_id), Some(feed)) = (held.client_id, self.count.feed()) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = feed.release_seat(&client_id).await {
                tracing::debug!("could not give back the seat held for {client_id}: {e}");
            }
        });
    }

    /// Parses the request, looks its product up, checks the host is ready, then hands the
    /// count's view of the client to the one decision ([`decide::decide`]) through the
    /// count, which applies its effect; the record is queued while the count is held.
    fn try_decide(
        &self,
        req: &ActivationRequest,
        address: &str,
        now: Timestamp,
        held: Option<&HeldSeat>,
    ) -> Result<(ActivationResponse, Ack), Box<Refusal>> {
        // Requests without a usable client id cannot be tied to a client: answered, never stored.
        let parsed = decide::parse_request(req).map_err(|e| Box::new((e, None)))?;
        self.watch_machine(&parsed, req, address, now);
        let asking = Asking {
            parsed: &parsed,
            req,
            address,
            now,
        };
        // One certificate for the whole request, even if a renewal swaps it meanwhile.
        let current = self.current_certificate();
        let cert = decide::ready(current.as_ref().map(|c| &c.1), now)
            .and_then(|cert| self.check_revoked(cert))
            .map_err(|e| self.refuse_early(&asking, e))?;
        let catalog = self.catalog();
        let product = catalog
            .product_for_key(&parsed.setup_key)
            .map_err(|e| self.refuse_early(&asking, e))?;
        let mut previous = Some(crate::admission::previous_client(req));
        let query = CountQuery {
            client: parsed.client,
            application: &product.application,
            previous: previous
                .as_ref()
                .and_then(|p| p.as_ref().ok().copied().flatten()),
            seats: cert.seats.is_some(),
            seats_held: held.map(|h| h.in_use),
            at: now.as_second(),
        };
        let mut decided = None;
        self.count
            .decide(&query, &mut |held| {
                // Only clients the host does not count pay for admission.
                let new_client = if held.view.counted {
                    Ok(())
                } else {
                    let previous = previous.take().unwrap_or(Ok(None));
                    let previous = previous.map(|p| p.filter(|_| held.previous_revoked));
                    self.admission.admit_new(
                        parsed.client,
                        held.view.revoked,
                        previous,
                        req,
                        address,
                        now,
                    )
                };
                let decision = decide::decide(DecisionInput {
                    request: req,
                    product,
                    certificate: cert,
                    view: held.view,
                    new_client,
                    settings: &self.settings,
                    now,
                });
                match decision {
                    Decision::Refuse(e) => {
                        decided = Some(Decided::Refused(e));
                        Effect::Leave
                    }
                    Decision::Count(counted) => {
                        // Queued while the count is held: see the writer's module comment.
                        decided = Some(Decided::Queued(self.queue(&asking, product, counted)));
                        Effect::Count
                    }
                }
            })
            .map_err(|e| self.refuse(&asking, poisoned(e), Some(product)))?;
        match decided {
            Some(Decided::Queued(Ok((counted, answer, ack)))) => Ok((
                self.response(product, counted, &answer, now, current.as_deref()),
                ack,
            )),
            // The record could not be queued: nothing to store, nothing to sign.
            Some(Decided::Queued(Err(e))) => Err(Box::new((e, None))),
            Some(Decided::Refused(e)) => Err(self.refuse(&asking, e, Some(product))),
            None => Err(self.refuse(
                &asking,
                poisoned(CountError("the count returned without a decision".into())),
                Some(product),
            )),
        }
    }

    /// The record of a request, with its product (if known) and the count it was answered with.
    fn record(
        &self,
        asking: &Asking<'_>,
        product: Option<&Product>,
        count: u32,
        result: &str,
        counted: bool,
    ) -> ActivationRecord {
        ActivationRecord {
            at: asking.now.as_second(),
            client_id: asking.parsed.client_id.clone(),
            machine_name: asking.req.machine_name.clone(),
            address: asking.address.to_string(),
            product: product.map(|p| p.id.clone()).unwrap_or_default(),
            application: product.map(|p| p.application.clone()).unwrap_or_default(),
            minimum_asked: asking.req.minimum_count,
            count,
            result: result.to_string(),
            counted,
            ticket_id: None,
            ticket_valid_until: None,
        }
    }

    /// A refusal decided once the product is known, with its record; a rate-limited
    /// request is not stored: that is the limit's point.
    fn refuse(&self, asking: &Asking<'_>, e: ApiError, product: Option<&Product>) -> Box<Refusal> {
        let r = (e.code != ErrorCode::RateLimited)
            .then(|| self.record(asking, product, 0, e.code.as_str(), false));
        let e = self.sign_refusal(e, asking.parsed, asking.req, product, asking.now);
        Box::new((e, r))
    }

    /// A refusal decided before admission: stored only for a client the count knows, or
    /// within the new-client budget, so made-up ids cannot grow the inventory.
    fn refuse_early(&self, asking: &Asking<'_>, e: ApiError) -> Box<Refusal> {
        let keep = self.may_store_early_refusal(asking.parsed.client, asking.address, asking.now);
        let r = keep.then(|| self.record(asking, None, 0, e.code.as_str(), false));
        let e = self.sign_refusal(e, asking.parsed, asking.req, None, asking.now);
        Box::new((e, r))
    }

    /// The answer to a counted request, before the writer signs its document.
    fn response(
        &self,
        product: &Product,
        counted: Counted,
        answer: &Answer,
        now: Timestamp,
        certificate: Option<&(String, HostCertificate)>,
    ) -> ActivationResponse {
        let (result, retry_after) = match (answer, counted.outcome) {
            (Answer::Ticket(_), _) => (ActivationResult::Activated, None),
            (Answer::NotYet(_), Outcome::NotYet { retry_after }) => {
                (ActivationResult::CountInsufficient, Some(retry_after))
            }
            (Answer::NotYet(_), Outcome::Activate { .. }) => {
                (ActivationResult::CountInsufficient, None)
            }
        };
        ActivationResponse {
            result,
            count: counted.count,
            minimum: counted.minimum,
            product: product.id.clone(),
            application: product.application.clone(),
            host_id: self.host_id.clone(),
            host_time: now,
            intervals: self.settings.intervals(),
            retry_after,
            ticket: None,
            not_yet: None,
            host_certificate: certificate.map(|(t, _)| t.clone()).unwrap_or_default(),
            revocation_list: self.revocations_token(),
        }
    }

    /// A refusal about the client, signed so the client may act on it (its retry time,
    /// its intervals, the end of its search for a host); any other refusal, or one this
    /// host cannot sign in the chain (no certificate in force), goes unsigned and tells
    /// the client only to try another host. Refusals are rare, so each is signed here
    /// rather than in the writer's batches.
    fn sign_refusal(
        &self,
        error: ApiError,
        parsed: &ParsedRequest,
        req: &ActivationRequest,
        product: Option<&Product>,
        now: Timestamp,
    ) -> ApiError {
        let Some(current) = self.current_certificate() else {
            return error;
        };
        let (cert_token, cert) = &*current;
        let who = refusal::Refused {
            client_id: &parsed.client_id,
            nonce: &req.nonce,
            product: product.map(|p| p.id.as_str()),
        };
        let claims = match refusal::claims(&error, who, &self.host_id, &self.settings, now) {
            Some(c) if now < cert.exp => c,
            _ => return error,
        };
        match refusal::sign(&self.identity, &claims) {
            Ok(signed) => refusal::attach(error, signed, cert_token, claims.retry_after),
            Err(e) => {
                tracing::warn!(code = %error.code, "{}", e.message);
                error
            }
        }
    }

    /// Builds the answer of a counted request and queues its record (with the document
    /// to sign) to the writer. Called while the count is held, so records reach storage
    /// in the order their counts were decided.
    fn queue(
        &self,
        asking: &Asking<'_>,
        product: &Product,
        counted: Counted,
    ) -> Result<(Counted, Answer, Ack), ApiError> {
        let mut rec = self.record(asking, Some(product), counted.count, "", true);
        let answer = decide::answer(
            asking.parsed,
            asking.req,
            product,
            counted,
            &self.host_id,
            &self.settings,
            asking.now,
        );
        let document = match &answer {
            Answer::Ticket(t) => {
                rec.result = "activated".into();
                rec.ticket_id = Some(t.jti.clone());
                rec.ticket_valid_until = Some(t.exp.as_second());
                token::prepare(t)
            }
            Answer::NotYet(n) => {
                rec.result = ErrorCode::CountInsufficient.as_str().into();
                token::prepare(n)
            }
        };
        // A document that cannot be encoded still leaves its record: the count has
        // counted the client, and the inventory must agree after a restart.
        let (document, unsigned) = match document {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        let ack = self.writer.enqueue(rec, document)?;
        if let Some(e) = unsigned {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("could not sign the answer: {e}"),
            ));
        }
        Ok((counted, answer, ack))
    }

    /// Whether a refusal decided before admission may be stored (see `try_decide`).
    fn may_store_early_refusal(&self, client: ClientKey, address: &str, now: Timestamp) -> bool {
        let counted = self
            .count
            .counts_anywhere(client, now.as_second())
            .unwrap_or(false);
        counted || self.admission.may_store_refusal(address, now)
    }
}
