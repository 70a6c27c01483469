//! The activation engine: the pure rules of `volact-core`, applied to the host's state
//! (certificate, catalog, count index, revocations) and recorded through the store.

use crate::clock::Clock;
use crate::writer::{Ack, Writer};
use jiff::Timestamp;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use volact_core::catalog::{Catalog, Product};
use volact_core::certificate::HostCertificate;
use volact_core::count::{ClientKey, CountIndex};
use volact_core::decide::{self, Admission, Answer, Counted, Outcome, ParsedRequest};
use volact_core::keys::KeyPair;
use volact_core::refusal;
use volact_core::settings::Settings;
use volact_core::token;
use volact_proto::{
    ActivationRequest, ActivationResponse, ActivationResult, ApiError, ErrorCode, HostInfo,
};
use volact_store::{ActivationRecord, ClientFilter, Store};

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
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

/// A refusal, and the record to store for it when the client can be identified.
type Refusal = (ApiError, Option<ActivationRecord>);

/// The host's activation engine. Cheap to share behind an `Arc`.
pub struct Engine {
    identity: KeyPair,
    host_id: String,
    catalog: Catalog,
    certificate: Option<(String, HostCertificate)>,
    settings: Settings,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    count: Mutex<CountIndex>,
    revoked: RwLock<HashSet<ClientKey>>,
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

fn poisoned() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the host's count is unavailable after an internal failure; restart the host",
    )
}

impl Engine {
    /// Builds the engine, loading the count and revocations from the store. Must be
    /// called inside a Tokio runtime (it starts the writer task).
    pub async fn start(parts: EngineParts) -> Result<Arc<Engine>, ApiError> {
        let now = parts.clock.now();
        let window = parts.settings.count_window.as_secs();
        let mut count = CountIndex::new(window);
        let since = now.as_second().saturating_sub(window);
        // Streamed and bulk-loaded: a million stored clients must not become a million
        // Strings, nor a million tree insertions, before the host serves.
        let mut loaded: std::collections::HashMap<String, Vec<(ClientKey, i64)>> =
            std::collections::HashMap::new();
        parts
            .store
            .visit_counted_clients(since, &mut |id, application, last_counted| {
                if let Some(key) = client_key(id) {
                    match loaded.get_mut(application) {
                        Some(v) => v.push((key, last_counted)),
                        None => {
                            loaded.insert(application.to_string(), vec![(key, last_counted)]);
                        }
                    }
                }
            })
            .await
            .map_err(storage)?;
        for (application, clients) in loaded {
            count.load_many(&application, clients);
        }
        let filter = ClientFilter {
            revoked: Some(true),
            ..ClientFilter::default()
        };
        let revoked = parts
            .store
            .clients(&filter)
            .await
            .map_err(storage)?
            .iter()
            .filter_map(|c| client_key(&c.client_id))
            .collect();
        let host_id = parts.identity.public().host_id();
        let storage_health = Arc::new(crate::health::StorageHealth::default());
        let metrics = crate::metrics::Metrics::new(&parts.catalog);
        let admission = crate::admission::Admission::new(&metrics, parts.store.clone());
        admission
            .load_revoked_machines(parts.store.as_ref(), &revoked)
            .await
            .map_err(storage)?;
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
            catalog: parts.catalog,
            certificate: parts.certificate,
            settings: parts.settings,
            store: parts.store,
            clock: parts.clock,
            count: Mutex::new(count),
            revoked: RwLock::new(revoked),
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

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time by the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The certificate, if the host is activated.
    pub fn certificate(&self) -> Option<&HostCertificate> {
        self.certificate.as_ref().map(|(_, c)| c)
    }

    /// Why the host cannot serve activations now, if it cannot.
    pub fn not_ready(&self, now: Timestamp) -> Option<ApiError> {
        match &self.certificate {
            None => Some(ApiError::new(
                ErrorCode::HostNotActivated,
                "this host is not activated, so it cannot activate clients; its administrator must run `volact host activate --data DIR --request-out request.json`, have the vendor sign it, then `volact host activate --data DIR --response response.json`",
            )),
            Some((_, c)) if now >= c.exp => Some(ApiError::with_details(
                ErrorCode::HostCertificateExpired,
                format!(
                    "this host's certificate expired at {}; its administrator must activate the host again",
                    c.exp
                ),
                serde_json::json!({ "expired": c.exp }),
            )),
            Some(_) => None,
        }
    }

    /// Current counts per application.
    pub fn counts(&self) -> Result<Vec<(String, u32)>, ApiError> {
        let now = self.clock.now().as_second();
        Ok(self.count.lock().map_err(|_| poisoned())?.counts(now))
    }

    /// Public facts about the host.
    pub fn info(&self) -> HostInfo {
        HostInfo {
            host_id: self.host_id.clone(),
            host_public_key: self.identity.public().to_paserk(),
            activated: self.certificate.is_some(),
            host_certificate: self.certificate.as_ref().map(|(t, _)| t.clone()),
            certificate_expires: self.certificate.as_ref().map(|(_, c)| c.exp),
            catalog_version: self.catalog.version,
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
            let mut set = self.revoked.write().map_err(|_| poisoned())?;
            if revoked {
                set.insert(key);
                self.count.lock().map_err(|_| poisoned())?.remove(key);
            } else {
                set.remove(&key);
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
        let product;
        let (mut result, ack) = match self.try_decide(req, address, now) {
            Ok((response, ack)) => {
                product = self.product_index(&response.product);
                (Ok(response), Some(ack))
            }
            Err(refusal) => {
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

    fn try_decide(
        &self,
        req: &ActivationRequest,
        address: &str,
        now: Timestamp,
    ) -> Result<(ActivationResponse, Ack), Box<Refusal>> {
        // Requests without a usable client id cannot be tied to a client: answered, never stored.
        let parsed = decide::parse_request(req).map_err(|e| Box::new((e, None)))?;
        self.watch_machine(&parsed, req, address, now);
        let record =
            |product: Option<&Product>, count: u32, result: &str, counted: bool| ActivationRecord {
                at: now.as_second(),
                client_id: parsed.client_id.clone(),
                machine_name: req.machine_name.clone(),
                address: address.to_string(),
                product: product.map(|p| p.id.clone()).unwrap_or_default(),
                application: product.map(|p| p.application.clone()).unwrap_or_default(),
                minimum_asked: req.minimum_count,
                count,
                result: result.to_string(),
                counted,
                ticket_id: None,
                ticket_valid_until: None,
            };
        // A rate-limited request is not stored: that is the limit's point.
        let refuse = |e: ApiError, product: Option<&Product>| {
            let r = (e.code != ErrorCode::RateLimited)
                .then(|| record(product, 0, e.code.as_str(), false));
            let e = self.sign_refusal(e, &parsed, req, product, now);
            Box::new((e, r))
        };
        // Refused before admission: stored only for a client the count knows, or
        // within the new-client budget, so made-up ids cannot grow the inventory.
        let refuse_early = |e: ApiError| {
            let keep = self.may_store_early_refusal(parsed.client, address, now);
            let r = keep.then(|| record(None, 0, e.code.as_str(), false));
            let e = self.sign_refusal(e, &parsed, req, None, now);
            Box::new((e, r))
        };
        if let Some(e) = self.not_ready(now) {
            return Err(refuse_early(e));
        }
        let Some((cert_token, cert)) = &self.certificate else {
            return Err(Box::new((
                ApiError::new(ErrorCode::HostNotActivated, "not activated"),
                None,
            )));
        };
        let product = self
            .catalog
            .product_for_key(&parsed.setup_key)
            .map_err(refuse_early)?;
        let (count, index) = self
            .admit_and_count(&parsed, product, req, address, cert, now)
            .map_err(|e| refuse(e, Some(product)))?;
        let minimum = decide::minimum(product, req.minimum_count);
        let outcome = decide::outcome(count, minimum, cert, &self.settings, now);
        let counted = Counted {
            count,
            minimum,
            outcome,
        };
        let answer = decide::answer(
            &parsed,
            req,
            product,
            counted,
            &self.host_id,
            &self.settings,
            now,
        );
        let mut rec = record(Some(product), count, "", true);
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
        // Queued before the count lock is released: see the writer's module comment.
        let ack = self
            .writer
            .enqueue(rec, document)
            .map_err(|e| Box::new((e, None)))?;
        drop(index);
        if let Some(e) = unsigned {
            return Err(Box::new((
                ApiError::new(
                    ErrorCode::Internal,
                    format!("could not sign the answer: {e}"),
                ),
                None,
            )));
        }
        let mut response = ActivationResponse {
            result: ActivationResult::CountInsufficient,
            count,
            minimum,
            product: product.id.clone(),
            application: product.application.clone(),
            host_id: self.host_id.clone(),
            host_time: now,
            intervals: self.settings.intervals(),
            retry_after: None,
            ticket: None,
            not_yet: None,
            host_certificate: cert_token.clone(),
        };
        match answer {
            Answer::Ticket(_) => response.result = ActivationResult::Activated,
            Answer::NotYet(_) => {
                if let Outcome::NotYet { retry_after } = outcome {
                    response.retry_after = Some(retry_after);
                }
            }
        }
        Ok((response, ack))
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
        let Some((cert_token, cert)) = &self.certificate else {
            return error;
        };
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

    /// Admits and counts the client under one lock, so two requests cannot both take the
    /// last seat. The lock is returned held, so the caller queues the record before any
    /// other request is counted.
    fn admit_and_count(
        &self,
        parsed: &ParsedRequest,
        product: &Product,
        req: &ActivationRequest,
        address: &str,
        cert: &HostCertificate,
        now: Timestamp,
    ) -> Result<(u32, MutexGuard<'_, CountIndex>), ApiError> {
        // Read before the count lock: `set_revoked` takes them in the other order.
        let (revoked, previous) = {
            let set = self.revoked.read().map_err(|_| poisoned())?;
            let previous = crate::admission::revoked_previous(req, &set);
            (set.contains(&parsed.client), previous)
        };
        let mut index = self.count.lock().map_err(|_| poisoned())?;
        let at = now.as_second();
        let counted = index.contains_anywhere(parsed.client, at);
        if !counted {
            self.admission
                .admit_new(parsed.client, revoked, previous, req, address, now)?;
        }
        let seats_used = if cert.seats.is_some() {
            index.total(at)
        } else {
            0
        };
        let admission = Admission {
            certificate: cert,
            product,
            client_time: req.client_time,
            revoked,
            counted,
            seats_used,
        };
        decide::admit(&admission, &self.settings, now)?;
        let count = index.observe(&product.application, parsed.client, at);
        Ok((count, index))
    }

    /// Whether a refusal decided before admission may be stored (see `try_decide`).
    fn may_store_early_refusal(&self, client: ClientKey, address: &str, now: Timestamp) -> bool {
        let counted = self
            .count
            .lock()
            .is_ok_and(|index| index.contains_anywhere(client, now.as_second()));
        counted || self.admission.may_store_refusal(address, now)
    }
}
