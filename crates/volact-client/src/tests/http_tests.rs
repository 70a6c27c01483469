//! Activation over HTTP against stub hosts that answer as a real host would, or as an
//! impostor, a broken host or nothing at all.

use super::*;
use crate::activate::{activate_hosts, merge_outcome};
use crate::{FoundBy, activate, activate_and_save, candidates, set_host, status};
use axum::Json;
use axum::http::StatusCode;
use std::sync::{Arc, Mutex};
use volact_core::license::LicenseState;
use volact_core::settings::Settings;
use volact_core::ticket::{NotYet, sign_not_yet, sign_ticket};
use volact_proto::{ActivationRequest, ActivationResponse, ActivationResult, ApiError, ErrorCode};

pub(super) type Handler = Arc<dyn Fn(&ActivationRequest) -> (u16, serde_json::Value) + Send + Sync>;

/// A stub host on 127.0.0.1; returns its `host:port` and the requests it received.
pub(super) async fn stub(handler: Handler) -> (String, Arc<Mutex<Vec<ActivationRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/activations",
        axum::routing::post(move |Json(req): Json<ActivationRequest>| {
            let handler = handler.clone();
            let log = log.clone();
            async move {
                let (code, body) = handler(&req);
                log.lock().unwrap().push(req);
                (StatusCode::from_u16(code).unwrap(), Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// An address where nothing listens.
pub(super) async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

pub(super) fn activated(
    v: &Vendor,
    req: &ActivationRequest,
    host_time: Timestamp,
) -> ActivationResponse {
    let t = v.ticket(&req.client_id, WORKSTATION, &req.nonce, host_time);
    ActivationResponse {
        result: ActivationResult::Activated,
        count: t.count,
        minimum: t.minimum,
        product: WORKSTATION.into(),
        application: t.application.clone(),
        host_id: v.host_id(),
        host_time,
        intervals: Settings::default().intervals(),
        retry_after: None,
        ticket: Some(sign_ticket(&v.host, &t).unwrap()),
        not_yet: None,
        host_certificate: v.certificate.clone(),
        revocation_list: None,
    }
}

pub(super) fn not_yet(v: &Vendor, req: &ActivationRequest, count: u32) -> ActivationResponse {
    let n = NotYet {
        sub: req.client_id.clone(),
        product: WORKSTATION.into(),
        application: "demo-os".into(),
        count,
        minimum: 25,
        iat: req.client_time,
        retry_after: req.client_time + SignedDuration::from_hours(2),
        iss: v.host_id(),
        nonce: req.nonce.clone(),
        intervals: Some(Settings::default().intervals()),
    };
    ActivationResponse {
        result: ActivationResult::CountInsufficient,
        count,
        minimum: 25,
        product: WORKSTATION.into(),
        application: "demo-os".into(),
        host_id: v.host_id(),
        host_time: req.client_time,
        intervals: Settings::default().intervals(),
        retry_after: Some(n.retry_after),
        ticket: None,
        not_yet: Some(sign_not_yet(&v.host, &n).unwrap()),
        host_certificate: v.certificate.clone(),
        revocation_list: None,
    }
}

pub(super) fn json<T: serde::Serialize>(code: u16, body: &T) -> (u16, serde_json::Value) {
    (code, serde_json::to_value(body).unwrap())
}

/// A host of vendor `v` that activates everyone, using the client's clock as its own.
pub(super) async fn good_host(v: Arc<Vendor>) -> (String, Arc<Mutex<Vec<ActivationRequest>>>) {
    stub(Arc::new(move |req| {
        json(200, &activated(&v, req, req.client_time))
    }))
    .await
}

pub(super) fn pinned(v: &Vendor, host: &str) -> ClientState {
    let mut state = v.installed(WORKSTATION, t0());
    set_host(&mut state, host).unwrap();
    state
}

#[tokio::test]
async fn a_good_host_activates_and_renews() {
    let v = Arc::new(Vendor::new(1));
    let (host, seen) = good_host(v.clone()).await;
    let mut state = pinned(&v, &host);
    let now = t0() + days(1);

    let out = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
    assert!(!out.renewed);
    assert_eq!(out.host, host);
    assert_eq!(state.ticket.as_ref(), Some(&out.ticket));
    assert_eq!(out.ticket.valid_until, now + days(180));
    assert_eq!(state.last_host.as_deref(), Some(host.as_str()));
    assert_eq!(state.intervals, Some(Settings::default().intervals()));
    let attempt = state.last_attempt.clone().unwrap();
    assert!(attempt.succeeded());
    assert_eq!(
        (attempt.count, attempt.minimum, attempt.retry_after),
        (Some(26), Some(25), None)
    );
    let s = status(&state, now);
    assert_eq!(s.license.state, LicenseState::Licensed);
    assert_eq!(s.next_attempt, Some(now + days(7)));

    let later = now + days(8);
    let again = activate(&mut state, later, "pc-1", "nonce-0002".into())
        .await
        .unwrap();
    assert!(again.renewed);
    assert_eq!(again.ticket.valid_until, later + days(180));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].client_id, CLIENT_ID);
    assert_eq!(seen[0].setup_key, v.key(WORKSTATION).to_string());
    assert_eq!(
        (seen[0].minimum_count, seen[0].machine_name.as_str()),
        (25, "pc-1")
    );
    assert_eq!(seen[0].client_time, now);
    assert_eq!(seen[0].ticket_id, None);
    assert_eq!(
        seen[1].ticket_id.as_deref(),
        Some(out.ticket.ticket_id.as_str())
    );
}

#[tokio::test]
async fn not_yet_keeps_the_ticket_and_is_count_insufficient() {
    let v = Arc::new(Vendor::new(1));
    let host_vendor = v.clone();
    let (host, _) = stub(Arc::new(move |req| {
        json(200, &not_yet(&host_vendor, req, 3))
    }))
    .await;
    let mut state = pinned(&v, &host);
    let held = v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0000", t0()));
    state.ticket = Some(held.clone());
    let now = t0() + days(8);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CountInsufficient);
    assert!(
        e.message.contains("3 of the 25 machines Demo OS needs"),
        "{}",
        e.message
    );
    assert_eq!(state.ticket, Some(held));
    let a = state.last_attempt.clone().unwrap();
    assert_eq!(a.result, "count-insufficient");
    assert_eq!((a.count, a.minimum), (Some(3), Some(25)));
    assert_eq!(a.retry_after, Some(now + SignedDuration::from_hours(2)));
    assert_eq!(state.last_host.as_deref(), Some(host.as_str()));
    assert_eq!(
        status(&state, now).next_attempt,
        Some(now + SignedDuration::from_hours(2))
    );
}

#[tokio::test]
async fn another_vendors_host_is_untrusted_and_nothing_is_stored() {
    let v = Vendor::new(1);
    let impostor = Arc::new(Vendor::new(10));
    let (host, _) = good_host(impostor).await;
    for held in [
        None,
        Some(v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0000", t0()))),
    ] {
        let mut state = pinned(&v, &host);
        state.ticket = held.clone();
        let e = activate(&mut state, t0() + days(1), "pc-1", "nonce-0001".into())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost, "{}", e.message);
        assert_eq!(state.ticket, held);
        assert_eq!(state.intervals, None);
        assert_eq!(state.last_host, None);
        assert_eq!(state.last_attempt.unwrap().result, "untrusted-host");
    }
}

#[tokio::test]
async fn a_replayed_answer_is_untrusted() {
    let v = Arc::new(Vendor::new(1));
    let host_vendor = v.clone();
    let (host, _) = stub(Arc::new(move |req| {
        let mut old = req.clone();
        old.nonce = "nonce-from-yesterday".into();
        json(200, &activated(&host_vendor, &old, req.client_time))
    }))
    .await;
    let mut state = pinned(&v, &host);
    let e = activate(&mut state, t0() + days(1), "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost);
    assert!(e.message.contains("replay"), "{}", e.message);
    assert!(state.ticket.is_none());
}

#[tokio::test]
async fn a_ticket_already_over_by_the_client_clock_is_clock_skew() {
    let v = Arc::new(Vendor::new(1));
    let host_vendor = v.clone();
    // The host's clock is stuck at t0 while the client is 200 days later.
    let (host, _) = stub(Arc::new(move |req| {
        json(200, &activated(&host_vendor, req, t0()))
    }))
    .await;
    let mut state = pinned(&v, &host);
    let now = t0() + days(200);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ClockSkew);
    assert!(e.message.contains("clock"), "{}", e.message);
    assert!(state.ticket.is_none());
}

#[tokio::test]
async fn a_signed_refusal_is_returned_and_recorded() {
    let v = Arc::new(Vendor::new(1));
    let refusal = ApiError::new(
        ErrorCode::ClientRevoked,
        "the host's administrator revoked this client",
    );
    let (host_vendor, body) = (v.clone(), refusal.clone());
    let (host, _) = stub(Arc::new(move |req| {
        let signed = host_vendor.signed_refusal(
            req,
            body.clone(),
            req.client_time,
            SignedDuration::from_hours(3),
            Settings::default().intervals(),
        );
        json(403, &signed)
    }))
    .await;
    let mut state = pinned(&v, &host);
    let now = t0() + days(1);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (refusal.code, refusal.message.as_str())
    );
    assert!(e.details.get("signature").is_none(), "{}", e.details);
    let a = state.last_attempt.unwrap();
    assert_eq!(a.result, "client-revoked");
    assert_eq!(a.retry_after, Some(now + SignedDuration::from_hours(3)));
    assert_eq!(state.intervals, Some(Settings::default().intervals()));
}

#[tokio::test]
async fn something_that_is_not_a_volact_host_is_unreachable() {
    let v = Vendor::new(1);
    let (host, _) = stub(Arc::new(|_| (200, serde_json::json!({ "hello": "world" })))).await;
    let mut state = pinned(&v, &host);
    let e = activate(&mut state, t0(), "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostUnreachable);
    assert!(e.message.contains("not a volact answer"), "{}", e.message);
}

#[tokio::test]
async fn a_closed_port_is_host_unreachable() {
    let v = Vendor::new(1);
    let host = closed_port().await;
    let mut state = pinned(&v, &host);
    let now = t0() + days(1);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostUnreachable);
    assert!(e.message.contains(&host), "{}", e.message);
    let a = state.last_attempt.clone().unwrap();
    assert_eq!(
        (a.host.as_str(), a.result.as_str()),
        (host.as_str(), "host-unreachable")
    );
    assert_eq!(a.retry_after, Some(now + SignedDuration::from_hours(2)));
    assert_eq!(status(&state, now).next_attempt, a.retry_after);
}

#[tokio::test]
async fn without_a_host_or_a_key_there_is_nothing_to_ask() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    // Discovery runs, but only against a local port where no DNS server listens.
    let options = super::discovery_tests::dead_dns().await;
    let e = crate::activate_with(&mut state, t0(), "pc-1", "nonce-0001".into(), &options)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoHostFound);
    assert!(e.message.contains("looked up"), "{}", e.message);
    assert!(e.message.contains("volact set-host"), "{}", e.message);
    assert_eq!(state.last_attempt.unwrap().host, "");

    let mut empty = ClientState::default();
    set_host(&mut empty, "kms").unwrap();
    let e = activate(&mut empty, t0(), "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert_eq!(
        e.message,
        "no setup key installed; run volact install-key KEY --vendor FILE"
    );
    assert!(empty.last_attempt.is_none());
}

#[tokio::test]
async fn candidates_prefer_the_pinned_host_then_the_cache() {
    let options = super::discovery_tests::dead_dns().await;
    let hosts = |state: ClientState, options: crate::ActivateOptions| async move {
        let (found, _) = candidates(&state, &options).await.unwrap();
        found
            .into_iter()
            .map(|c| (c.host, c.found_by))
            .collect::<Vec<_>>()
    };
    let mut state = ClientState {
        domain: Some("volact.test".into()),
        ..ClientState::default()
    };
    assert!(hosts(state.clone(), options.clone()).await.is_empty());
    state.last_host = Some("cached:7688".into());
    assert_eq!(
        hosts(state.clone(), options.clone()).await,
        vec![("cached:7688".to_string(), FoundBy::Cache)]
    );
    let no_cache = crate::ActivateOptions {
        no_host_cache: true,
        ..options.clone()
    };
    assert!(hosts(state.clone(), no_cache).await.is_empty());
    state.use_host_cache = false;
    assert!(hosts(state.clone(), options.clone()).await.is_empty());
    set_host(&mut state, "pinned").unwrap();
    state.use_host_cache = true;
    assert_eq!(
        hosts(state, options).await,
        vec![("pinned:7688".to_string(), FoundBy::Pinned)]
    );
}

#[tokio::test]
async fn hosts_are_tried_in_order_until_one_can_answer() {
    let v = Arc::new(Vendor::new(1));
    let (good, _) = good_host(v.clone()).await;
    let (impostor, _) = good_host(Arc::new(Vendor::new(10))).await;
    let closed = closed_port().await;
    let revoked = ApiError::new(ErrorCode::ClientRevoked, "revoked");
    let (host_vendor, body) = (v.clone(), revoked.clone());
    let (revoking, _) = stub(Arc::new(move |req| {
        let signed = host_vendor.signed_refusal(
            req,
            body.clone(),
            req.client_time,
            SignedDuration::from_hours(2),
            Settings::default().intervals(),
        );
        json(403, &signed)
    }))
    .await;
    let now = t0() + days(1);

    let mut state = v.installed(WORKSTATION, t0());
    let out = activate_hosts(
        &mut state,
        &[closed.clone(), impostor.clone(), good.clone()],
        now,
        "pc",
        "nonce-0001".into(),
    )
    .await
    .unwrap();
    assert_eq!(out.host, good);

    // A signed refusal about the client itself ends the search.
    let mut state = v.installed(WORKSTATION, t0());
    let e = activate_hosts(
        &mut state,
        &[revoking, good],
        now,
        "pc",
        "nonce-0001".into(),
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (revoked.code, "revoked"));

    // When every host fails, the error lists them all.
    let mut state = v.installed(WORKSTATION, t0());
    let e = activate_hosts(
        &mut state,
        &[closed.clone(), impostor.clone()],
        now,
        "pc",
        "nonce-0001".into(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoHostFound);
    assert!(
        e.message.contains(&closed) && e.message.contains(&impostor),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("host-unreachable") && e.message.contains("untrusted-host"),
        "{}",
        e.message
    );
    assert_eq!(state.last_attempt.unwrap().result, "no-host-found");
}

#[tokio::test]
async fn activate_and_save_keeps_the_outcome_either_way() {
    let v = Arc::new(Vendor::new(1));
    let (good, _) = good_host(v.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    let now = t0() + days(1);

    pinned(&v, &closed_port().await).save(&path).unwrap();
    let e = activate_and_save(&path, now, "pc", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostUnreachable);
    assert_eq!(
        ClientState::load(&path)
            .unwrap()
            .last_attempt
            .unwrap()
            .result,
        "host-unreachable"
    );

    let mut state = ClientState::load(&path).unwrap();
    set_host(&mut state, &good).unwrap();
    state.save(&path).unwrap();
    let out = activate_and_save(&path, now, "pc", "nonce-0002".into())
        .await
        .unwrap();
    let saved = ClientState::load(&path).unwrap();
    assert_eq!(saved.ticket, Some(out.ticket));
    assert_eq!(status(&saved, now).license.state, LicenseState::Licensed);
}

#[test]
fn a_ticket_is_not_merged_into_a_state_whose_product_changed_meanwhile() {
    let v = Vendor::new(1);
    let mut done = v.installed(WORKSTATION, t0());
    done.ticket = Some(v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0())));
    done.last_host = Some("kms:7688".into());
    let mut fresh = v.installed(SERVER, t0());
    fresh.pinned_host = Some("other:7688".into());
    merge_outcome(&mut fresh, &done);
    assert!(fresh.ticket.is_none());
    assert_eq!(fresh.last_host.as_deref(), Some("kms:7688"));
    assert_eq!(
        fresh.pinned_host.as_deref(),
        Some("other:7688"),
        "settings made meanwhile survive"
    );

    let mut same = v.installed(WORKSTATION, t0());
    merge_outcome(&mut same, &done);
    assert_eq!(same.ticket, done.ticket);
}
