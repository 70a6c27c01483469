//! Nothing unsigned steers the client: refusals without a signature in the vendor's
//! chain, intervals a relay rewrote, tickets from an expired certificate or beyond what
//! the design allows, and terminal escape sequences in a host's words.

use super::http_tests::{activated, good_host, json, not_yet, pinned, stub};
use super::*;
use crate::activate::activate_hosts;
use crate::{activate, status};
use std::sync::Arc;
use volact_core::settings::Settings;
use volact_core::ticket::{Ticket, sign_ticket};
use volact_proto::{ActivationRequest, ActivationResponse, ApiError, ErrorCode, HostIntervals};

const HOUR: i64 = 3600;

/// Intervals no client should take from anyone: renew every second, retry in 29 days,
/// tickets for a century, 30 days of clock difference.
fn wild() -> HostIntervals {
    HostIntervals {
        renew_interval_secs: 1,
        retry_interval_secs: 29 * 86_400,
        ticket_validity_secs: 36_500 * 86_400,
        count_window_secs: 1,
        max_clock_skew_secs: 30 * 86_400,
    }
}

/// A host with no keys at all, refusing with `code`, a retry 29 days ahead and [`wild`]
/// intervals, as the old client would have taken them.
async fn keyless(code: ErrorCode) -> String {
    let (host, _) = stub(Arc::new(move |req| {
        let body = ApiError::with_details(
            code,
            "refused",
            serde_json::json!({ "retry_after": req.client_time + days(29), "intervals": wild() }),
        );
        json(code.http_status(), &body)
    }))
    .await;
    host
}

fn default_retry(now: Timestamp) -> Option<Timestamp> {
    Some(now + SignedDuration::from_hours(2))
}

#[tokio::test]
async fn an_unsigned_refusal_changes_neither_the_retry_nor_the_intervals() {
    let v = Vendor::new(1);
    let now = t0() + days(1);
    for code in [
        ErrorCode::ClientRevoked,
        ErrorCode::ClockSkew,
        ErrorCode::SeatLimitReached,
        ErrorCode::ProductNotInKeyGroup,
        ErrorCode::UnknownSetupKey,
    ] {
        let rogue = keyless(code).await;
        let mut state = pinned(&v, &rogue);
        let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost, "{code}: {}", e.message);
        assert!(e.message.contains(code.as_str()), "{}", e.message);
        assert_eq!(state.intervals, None, "{code}");
        let a = state.last_attempt.clone().unwrap();
        assert_eq!(a.retry_after, default_retry(now), "{code}");
        assert_eq!(status(&state, now).next_attempt, default_retry(now));
    }
    // A host-side refusal (rate-limited) keeps its code, but its figures are not used.
    let rogue = keyless(ErrorCode::RateLimited).await;
    let mut state = pinned(&v, &rogue);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(e.details.get("retry_after").is_none(), "{}", e.details);
    assert_eq!(state.intervals, None);
    assert_eq!(state.last_attempt.unwrap().retry_after, default_retry(now));
}

#[tokio::test]
async fn failover_goes_on_past_keyless_hosts_to_the_real_one() {
    let v = Arc::new(Vendor::new(1));
    let revoking = keyless(ErrorCode::ClientRevoked).await;
    let skewed = keyless(ErrorCode::ClockSkew).await;
    let (good, seen) = good_host(v.clone()).await;
    let mut state = v.installed(WORKSTATION, t0());
    let now = t0() + days(1);
    let out = activate_hosts(
        &mut state,
        &[revoking, skewed, good.clone()],
        now,
        "pc",
        "nonce-0001".into(),
    )
    .await
    .unwrap();
    assert_eq!(out.host, good);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(state.intervals, Some(Settings::default().intervals()));
    assert!(state.last_attempt.unwrap().succeeded());
}

#[tokio::test]
async fn a_signed_refusal_is_held_to_the_design_ranges() {
    let v = Arc::new(Vendor::new(1));
    let host_vendor = v.clone();
    let (host, _) = stub(Arc::new(move |req| {
        // The host's clock is two hours behind: the retry interval counts, not the time.
        let iat = req.client_time - SignedDuration::from_hours(2);
        let error = ApiError::new(ErrorCode::ClientRevoked, "revoked");
        json(
            403,
            &host_vendor.signed_refusal(req, error, iat, days(40), wild()),
        )
    }))
    .await;
    let mut state = pinned(&v, &host);
    let now = t0() + days(1);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ClientRevoked);
    assert_eq!(
        state.last_attempt.unwrap().retry_after,
        Some(now + days(30)),
        "40 days held to the retry interval's 30"
    );
    assert_eq!(
        state.intervals,
        Some(HostIntervals {
            renew_interval_secs: 15 * 60,
            retry_interval_secs: 29 * 86_400,
            ticket_validity_secs: 3650 * 86_400,
            count_window_secs: 86_400,
            max_clock_skew_secs: 48 * HOUR as u64,
        })
    );
}

#[tokio::test]
async fn a_relay_cannot_change_what_a_genuine_answer_tells_the_client() {
    let v = Arc::new(Vendor::new(1));
    let now = t0() + days(1);
    // The relay rewrites the unsigned intervals of a ticket...
    let host_vendor = v.clone();
    let (relay, _) = stub(Arc::new(move |req| {
        let mut answer = activated(&host_vendor, req, req.client_time);
        answer.intervals = wild();
        json(200, &answer)
    }))
    .await;
    let mut state = pinned(&v, &relay);
    activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
    assert_eq!(state.intervals, Some(Settings::default().intervals()));
    assert_eq!(
        status(&state, now).next_attempt,
        Some(now + days(7)),
        "renewal from the signed ticket"
    );
    // ...and the intervals and retry time of a "not yet".
    let host_vendor = v.clone();
    let (relay, _) = stub(Arc::new(move |req| {
        let mut answer = not_yet(&host_vendor, req, 3);
        answer.intervals = wild();
        answer.retry_after = Some(req.client_time + days(30));
        json(200, &answer)
    }))
    .await;
    let mut state = pinned(&v, &relay);
    activate(&mut state, now, "pc-1", "nonce-0002".into())
        .await
        .unwrap_err();
    assert_eq!(state.intervals, Some(Settings::default().intervals()));
    assert_eq!(state.last_attempt.unwrap().retry_after, default_retry(now));
    // A genuine signed refusal whose code the relay changed is ignored.
    let host_vendor = v.clone();
    let (relay, _) = stub(Arc::new(move |req| {
        let error = ApiError::new(ErrorCode::ClockSkew, "skew");
        let mut signed = host_vendor.signed_refusal(req, error, req.client_time, days(29), wild());
        signed.code = ErrorCode::ClientRevoked;
        json(403, &signed)
    }))
    .await;
    let mut state = pinned(&v, &relay);
    let e = activate(&mut state, now, "pc-1", "nonce-0003".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost, "{}", e.message);
    assert_eq!(state.intervals, None);
    assert_eq!(state.last_attempt.unwrap().retry_after, default_retry(now));
}

/// A stub host of `v` answering every request with the ticket `edit` makes of a genuine one.
async fn minting(
    v: Arc<Vendor>,
    product: &'static str,
    host_time: impl Fn(Timestamp) -> Timestamp + Send + Sync + 'static,
    edit: impl Fn(&mut Ticket) + Send + Sync + 'static,
) -> String {
    let (host, _) = stub(Arc::new(move |req: &ActivationRequest| {
        let mut ticket = v.ticket(
            &req.client_id,
            product,
            &req.nonce,
            host_time(req.client_time),
        );
        edit(&mut ticket);
        let answer = ActivationResponse {
            result: volact_proto::ActivationResult::Activated,
            count: ticket.count,
            minimum: ticket.minimum,
            product: product.into(),
            application: ticket.application.clone(),
            host_id: v.host_id(),
            host_time: ticket.iat,
            intervals: Settings::default().intervals(),
            retry_after: None,
            ticket: Some(sign_ticket(&v.host, &ticket).unwrap()),
            not_yet: None,
            host_certificate: v.certificate.clone(),
            revocation_list: None,
        };
        json(200, &answer)
    }))
    .await;
    host
}

#[tokio::test]
async fn an_expired_certificate_with_a_back_dated_ticket_is_refused_and_the_next_host_asked() {
    // The host certificate ends 30 days after t0; the client's clock is an hour past it,
    // and the host back-dates its ticket to the certificate's last second.
    let expired = Arc::new(Vendor::certified_for(1, t0(), 30));
    let end = t0() + days(30);
    let now = end + SignedDuration::from_hours(1);
    let back_dated = minting(
        expired.clone(),
        WORKSTATION,
        move |_| end - SignedDuration::from_secs(1),
        |_| {},
    )
    .await;
    let mut state = pinned(&expired, &back_dated);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostCertificateExpired, "{}", e.message);
    assert!(e.message.contains("volact host activate"), "{}", e.message);
    assert!(state.ticket.is_none());
    assert_eq!(state.last_attempt.unwrap().retry_after, default_retry(now));

    // A genuine host answers `host-certificate-expired` itself, unsigned: also a failed
    // host, and the same host with its renewed certificate serves next.
    let refusing = stub(Arc::new(|_| {
        json(
            503,
            &ApiError::new(
                ErrorCode::HostCertificateExpired,
                "this host's certificate expired",
            ),
        )
    }))
    .await
    .0;
    let renewed = Arc::new(Vendor::issued_at(1, t0() + days(29)));
    let (good, _) = good_host(renewed.clone()).await;
    let mut state = expired.installed(WORKSTATION, t0());
    let out = activate_hosts(
        &mut state,
        &[back_dated, refusing, good.clone()],
        now,
        "pc",
        "nonce-0002".into(),
    )
    .await
    .unwrap();
    assert_eq!(out.host, good);
}

#[tokio::test]
async fn a_certified_host_cannot_grant_a_century_or_skip_the_minimum() {
    let now = t0() + days(1);
    // A certificate of two hundred years, a ticket of one hundred.
    let v = Arc::new(Vendor::certified_for(1, t0(), 200 * 365));
    let century = minting(
        v.clone(),
        WORKSTATION,
        |t| t,
        |t| t.exp = t.iat + days(36_500),
    )
    .await;
    let mut state = pinned(&v, &century);
    let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UntrustedHost, "{}", e.message);
    assert!(e.message.contains("3650d"), "{}", e.message);
    assert!(state.ticket.is_none());

    // Count 1 for a server product whose catalog minimum is 5, with the ticket's own
    // minimum lowered to match; then a ticket claiming the minimum without reaching it.
    let v = Arc::new(Vendor::new(1));
    assert_eq!(v.catalog.product(SERVER).unwrap().minimum_count, 5);
    for (count, minimum) in [(1, 1), (4, 5)] {
        let cheap = minting(
            v.clone(),
            SERVER,
            |t| t,
            move |t| {
                t.count = count;
                t.minimum = minimum;
            },
        )
        .await;
        let mut state = v.installed(SERVER, t0());
        crate::set_host(&mut state, &cheap).unwrap();
        let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UntrustedHost, "{}", e.message);
        assert!(e.message.contains("at least 5"), "{}", e.message);
        assert!(state.ticket.is_none());
    }
    // The positive control: five of five activates.
    let fair = minting(
        v.clone(),
        SERVER,
        |t| t,
        |t| {
            t.count = 5;
            t.minimum = 5;
        },
    )
    .await;
    let mut state = v.installed(SERVER, t0());
    crate::set_host(&mut state, &fair).unwrap();
    activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
}

/// No control character but line breaks.
fn plain(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && c != '\n')
}

#[tokio::test]
async fn escape_sequences_from_a_host_reach_neither_the_state_nor_the_output() {
    const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}revoked\r\n\u{9b}31mcall 555\u{0}";
    let v = Arc::new(Vendor::new(1));
    let now = t0() + days(1);
    let host_vendor = v.clone();
    let (signed, _) = stub(Arc::new(move |req| {
        let error = ApiError::new(ErrorCode::ClientRevoked, HOSTILE);
        json(
            403,
            &host_vendor.signed_refusal(
                req,
                error,
                req.client_time,
                days(1),
                Settings::default().intervals(),
            ),
        )
    }))
    .await;
    let (unsigned, _) = stub(Arc::new(|_| {
        let error = ApiError::with_details(
            ErrorCode::RateLimited,
            HOSTILE,
            serde_json::json!({ HOSTILE: HOSTILE, "list": [HOSTILE] }),
        );
        json(429, &error)
    }))
    .await;
    for host in [signed, unsigned] {
        let mut state = pinned(&v, &host);
        let e = activate(&mut state, now, "pc-1", "nonce-0001".into())
            .await
            .unwrap_err();
        assert!(plain(&e.message), "{:?}", e.message);
        assert!(
            e.message.contains("revoked  31mcall 555"),
            "{:?}",
            e.message
        );
        let details = e.details.to_string();
        assert!(!details.contains("\\u001b") && plain(&details), "{details}");
        let attempt = state.last_attempt.clone().unwrap();
        assert!(plain(&attempt.message), "{:?}", attempt.message);
        let text = status(&state, now).render_text(true);
        assert!(plain(&text), "{text:?}");
        let saved = serde_json::to_string(&state).unwrap();
        assert!(
            !saved.contains("\\u001b") && !saved.contains('\u{9b}'),
            "{saved}"
        );
    }
}
