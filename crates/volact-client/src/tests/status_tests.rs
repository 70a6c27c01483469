use super::*;
use crate::discovery::FoundBy;
use crate::state::Attempt;
use crate::{expiry, status};
use volact_core::license::LicenseState;

#[test]
fn an_empty_state_is_unlicensed() {
    let state = ClientState::default();
    let s = status(&state, t0());
    assert_eq!(s.license.state, LicenseState::Unlicensed);
    assert_eq!(s.next_attempt, None);
    assert!(s.client_id.is_none() && s.ticket.is_none());
    let text = s.render_text(false);
    assert!(text.starts_with("License state:"), "{text}");
    assert!(text.contains("unlicensed"));
    let x = expiry(&state, t0());
    assert_eq!(x.state, LicenseState::Unlicensed);
    assert!(x.text.contains("install-key"));
}

#[test]
fn installed_without_a_ticket_is_in_initial_grace_and_due_now() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let now = t0() + days(2);
    let s = status(&state, now);
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert_eq!(s.license.until, Some(t0() + days(30)));
    assert_eq!(s.next_attempt, Some(now));
    assert_eq!(s.client_id.as_deref(), Some(CLIENT_ID));
    let key = v.key(WORKSTATION).to_string();
    assert_eq!(s.partial_key.as_deref(), Some(&key[key.len() - 5..]));
    assert!(!s.intervals_from_host);
    assert_eq!(s.intervals.retry_interval_secs, 7200);
    let x = expiry(&state, now);
    assert_eq!(x.grace_ends, Some(t0() + days(30)));
    assert!(
        x.text.contains("initial grace ends 2027-02-14"),
        "{}",
        x.text
    );
    assert_eq!(
        status(&state, t0() + days(30)).license.state,
        LicenseState::Notification
    );
}

#[test]
fn a_valid_ticket_is_licensed_and_renews_on_schedule() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    let ticket = v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0() + days(1));
    state.ticket = Some(v.stored(&ticket));
    state.pinned_host = Some("kms.example.com:7688".into());
    let now = t0() + days(3);
    let s = status(&state, now);
    assert_eq!(s.license.state, LicenseState::Licensed);
    assert_eq!(s.license.until, Some(ticket.exp));
    assert!(!s.license.expiry_warning);
    assert_eq!(s.next_attempt, Some(ticket.renew_after));
    let t = s.ticket.as_ref().unwrap();
    assert_eq!((t.count, t.minimum), (26, 25));
    assert_eq!(t.host_id, v.host_id());
    assert_eq!(t.customer, "Acme");
    assert_eq!(s.ticket_problem, None);

    let text = s.render_text(false);
    // Every value starts in the same column.
    let starts: Vec<usize> = text
        .lines()
        .map(|l| {
            let colon = l.find(':').unwrap();
            colon + 1 + l[colon + 1..].chars().take_while(|c| *c == ' ').count()
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
    for want in [
        "License state:",
        "licensed",
        "Product:",
        "Demo OS Workstation (demo-os-workstation)",
        "Partial setup key:",
        "kms.example.com:7688 (pinned)",
        "Count seen:",
        "26 of 25",
        "Valid until:",
        "Renew after:",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(!text.contains("Ticket id:"));
    let verbose = s.render_text(true);
    for want in [
        "Ticket id:",
        "Host id:",
        "Host certificate:",
        "Vendor:",
        "Demo Vendor",
        "Renewal",
        "7d",
    ] {
        assert!(verbose.contains(want), "missing {want} in\n{verbose}");
    }

    // Near the end the warning shows; after the end, out-of-tolerance grace; then nagging.
    assert!(status(&state, ticket.exp - days(10)).license.expiry_warning);
    let late = status(&state, ticket.exp + days(1));
    assert_eq!(late.license.state, LicenseState::OutOfToleranceGrace);
    assert_eq!(
        late.next_attempt,
        Some(ticket.exp + days(1)),
        "overdue means now"
    );
    let x = expiry(&state, ticket.exp + days(1));
    assert_eq!(x.grace_ends, Some(ticket.exp + days(30)));
    assert_eq!(
        status(&state, ticket.exp + days(31)).license.state,
        LicenseState::Notification
    );
    let x = expiry(&state, now);
    assert_eq!(x.valid_until, Some(ticket.exp));
    assert!(
        x.text.starts_with("Volume activation will expire"),
        "{}",
        x.text
    );
}

#[test]
fn a_failed_attempt_delays_the_next_one_to_its_retry_time() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    let retry = t0() + SignedDuration::from_hours(2);
    state.last_attempt = Some(Attempt {
        at: t0(),
        host: "kms:7688".into(),
        result: "count-insufficient".into(),
        count: Some(3),
        minimum: Some(25),
        message: "the host has counted 3 of the 25 machines".into(),
        retry_after: Some(retry),
    });
    let s = status(&state, t0() + SignedDuration::from_mins(5));
    assert_eq!(s.next_attempt, Some(retry));
    let text = s.render_text(false);
    assert!(text.contains("3 of 25"), "{text}");
    assert!(text.contains("count-insufficient"), "{text}");
    assert_eq!(
        status(&state, retry + days(1)).next_attempt,
        Some(retry + days(1))
    );
}

#[test]
fn a_ticket_that_does_not_verify_counts_for_nothing() {
    let v = Vendor::new(1);
    let stranger = Vendor::new(10);
    let now = t0() + days(3);

    // Signed by another vendor's host.
    let mut state = v.installed(WORKSTATION, t0());
    state.ticket =
        Some(stranger.stored(&stranger.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0())));
    let s = status(&state, now);
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert!(s.ticket.is_none());
    assert!(
        s.ticket_problem
            .as_deref()
            .unwrap()
            .contains("not accepted")
    );
    assert!(s.render_text(false).contains("Ticket problem:"));

    // Genuine, but for another client.
    state.ticket = Some(v.stored(&v.ticket(
        "11111111-2222-4333-8444-555555555555",
        WORKSTATION,
        "nonce-0001",
        t0(),
    )));
    let s = status(&state, now);
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert!(
        s.ticket_problem
            .as_deref()
            .unwrap()
            .contains("not this client")
    );

    // Genuine, with its copied dates edited: the signed dates are what count.
    let mut stored = v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0()));
    stored.valid_until = t0() + days(10_000);
    state.ticket = Some(stored);
    let s = status(&state, t0() + days(200));
    assert_eq!(s.license.state, LicenseState::OutOfToleranceGrace);
}

#[test]
fn clearing_the_pin_forgets_that_the_host_was_found_by_it() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    crate::set_host(&mut state, "kms.example.com").unwrap();
    state.last_host = Some("kms.example.com:7688".into());
    state.last_host_found_by = Some(FoundBy::Pinned);
    let pinned = FoundBy::Pinned.to_string();
    assert!(status(&state, t0()).render_text(true).contains(&pinned));
    crate::clear_host(&mut state);
    let s = status(&state, t0());
    assert_eq!(s.host_found_by, None);
    let text = s.render_text(true);
    assert!(!text.contains(&pinned), "{text}");
    // A host found by SRV stays as found: clearing a pin says nothing about it.
    let srv = FoundBy::Srv {
        record: "_volact._tcp.example.com".into(),
        priority: 0,
        weight: 0,
    };
    state.last_host_found_by = Some(srv.clone());
    crate::clear_host(&mut state);
    assert_eq!(status(&state, t0()).host_found_by, Some(srv));
}

#[test]
fn status_shows_the_dns_server_given_on_the_command() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let plain = status(&state, t0()).render_text(true);
    assert!(plain.contains("the system's"), "{plain}");
    let given = status(&state, t0())
        .with_dns_server("127.0.0.1:5353".parse().unwrap())
        .render_text(true);
    assert!(
        given.contains("127.0.0.1:5353 (given on this command)"),
        "{given}"
    );
    assert!(!given.contains("the system's"), "{given}");
}
