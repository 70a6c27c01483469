//! The client state cannot be talked into a licence: edits, copies to another machine,
//! rearms past the limit and a clock set back are each caught, and never licensed.

use super::http_tests::{closed_port, good_host};
use super::*;
use crate::{
    Guard, MachineId, STATE_VERSION, activate, activate_and_save, expiry, install_key, rearm,
    set_host, status,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use volact_core::license::{CLOCK_ROLLBACK_TOLERANCE, LicenseState, Tamper};
use volact_proto::ErrorCode;

const HERE: &str = "0123456789abcdef0123456789abcdef";
const THERE: &str = "fedcba9876543210fedcba9876543210";
const NEW_ID: &str = "2b1f9d7e-4c3a-4e8b-9a6d-5f0e1c2b3a49";

fn here() -> MachineId {
    MachineId::new(HERE)
}

fn there() -> MachineId {
    MachineId::new(THERE)
}

/// `state` saved, sealed on `machine`, in a fresh directory.
fn saved(state: &ClientState, machine: &MachineId) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    state.save_on(&path, machine).unwrap();
    (dir, path)
}

/// Changes the state file as a user with a text editor would.
fn edit(path: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut json);
    std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

fn load(path: &Path, machine: &MachineId) -> ClientState {
    ClientState::load_on(path, machine).unwrap()
}

/// A client of `v` holding a ticket issued a day after install.
fn holding(v: &Vendor) -> (ClientState, volact_core::ticket::Ticket) {
    let mut state = v.installed(WORKSTATION, t0());
    let ticket = v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0() + days(1));
    state.ticket = Some(v.stored(&ticket));
    (state, ticket)
}

#[test]
fn editing_the_grace_days_changes_nothing() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let (_dir, path) = saved(&state, &here());
    edit(&path, |j| j["installed"]["grace_days"] = 36_500.into());
    let loaded = load(&path, &here());
    assert_eq!(loaded.installed.as_ref().unwrap().grace_days, 30);
    let s = status(&loaded, t0() + days(2));
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert_eq!(s.license.until, Some(t0() + days(30)), "the signed grace");
    assert_eq!(
        status(&loaded, t0() + days(40)).license.state,
        LicenseState::Notification
    );

    // The same edit in memory: the catalog is read, not the copy.
    let mut state = state;
    state.installed.as_mut().unwrap().grace_days = 36_500;
    assert_eq!(
        status(&state, t0() + days(40)).license.state,
        LicenseState::Notification
    );
}

#[test]
fn an_edited_install_time_or_seal_is_state_tampered_and_never_in_grace() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let later = (t0() + days(35)).to_string();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "installed_at in 2099",
            Box::new(|j| j["installed"]["installed_at"] = "2099-01-01T00:00:00Z".into()),
        ),
        (
            "installed_at a month later",
            Box::new(move |j| j["installed"]["installed_at"] = later.as_str().into()),
        ),
        (
            "the seal removed",
            Box::new(|j| {
                j.as_object_mut().unwrap().remove("seal");
            }),
        ),
        (
            "the seal garbled",
            Box::new(|j| j["seal"] = "nonsense".into()),
        ),
        (
            "the clock reading moved back",
            Box::new(|j| j["guard"]["clock_seen"] = "2020-01-01T00:00:00Z".into()),
        ),
        (
            "another client id",
            Box::new(|j| {
                j["installed"]["client_id"] = "11111111-2222-4333-8444-555555555555".into()
            }),
        ),
    ];
    for (what, change) in edits {
        let (_dir, path) = saved(&state, &here());
        edit(&path, change);
        let loaded = load(&path, &here());
        assert_eq!(loaded.tamper, Some(Tamper::Edited), "{what}");
        for now in [t0(), t0() + days(2), t0() + days(40), t0() + days(60)] {
            let s = status(&loaded, now);
            assert_eq!(
                s.license.state,
                LicenseState::StateTampered,
                "{what} at {now}"
            );
            assert_eq!(s.license.code, Some(ErrorCode::StateTampered));
            assert!(
                s.license.reason.contains("install-key"),
                "{}",
                s.license.reason
            );
        }
    }
}

#[test]
fn a_state_copied_to_another_machine_is_state_tampered_until_rearmed_there() {
    let v = Vendor::new(1);
    let (state, _) = holding(&v);
    let (_dir, path) = saved(&state, &here());
    let now = t0() + days(3);
    let original = load(&path, &here());
    assert_eq!(original.tamper, None);
    assert_eq!(status(&original, now).license.state, LicenseState::Licensed);

    let mut copy = load(&path, &there());
    assert_eq!(copy.tamper, Some(Tamper::OtherMachine));
    for at in [now, t0() + days(100), t0() + days(200)] {
        let s = status(&copy, at);
        assert_eq!(s.license.state, LicenseState::StateTampered, "{at}");
        assert!(s.license.reason.contains("rearm"), "{}", s.license.reason);
    }

    // Saving it there (after any command) does not make it sound.
    set_host(&mut copy, "kms.example.com").unwrap();
    copy.save_on(&path, &there()).unwrap();
    let mut copy = load(&path, &there());
    assert_eq!(copy.tamper, Some(Tamper::OtherMachine));

    // A rearm gives the copy its own id and seals it there, and only there.
    let r = rearm(&mut copy, now, || NEW_ID.into()).unwrap();
    assert_eq!((r.old_client_id.as_str(), r.rearms), (CLIENT_ID, 1));
    copy.save_on(&path, &there()).unwrap();
    let rearmed = load(&path, &there());
    assert_eq!(rearmed.tamper, None);
    assert_eq!(
        status(&rearmed, now).license.state,
        LicenseState::InitialGrace
    );
    assert_eq!(
        load(&path, &here()).tamper,
        Some(Tamper::OtherMachine),
        "the rearmed file now belongs to the other machine"
    );
}

#[test]
fn installing_over_a_copy_keeps_the_record_but_drops_the_ticket() {
    let v = Vendor::new(1);
    let (state, _) = holding(&v);
    let (_dir, path) = saved(&state, &here());
    let mut copy = load(&path, &there());
    let now = t0() + days(3);
    let r = install_key(&mut copy, v.key(WORKSTATION).as_str(), None, now, || {
        NEW_ID.into()
    })
    .unwrap();
    assert_eq!(r.resealed, Some(Tamper::OtherMachine));
    assert!(r.ticket_dropped && !r.new_client_id && !r.grace_forfeited);
    assert_eq!(
        r.installed_at,
        t0(),
        "the copy's grace runs on, it does not restart"
    );
    copy.save_on(&path, &there()).unwrap();
    let copy = load(&path, &there());
    assert_eq!(copy.tamper, None);
    assert!(copy.ticket.is_none());
    let s = status(&copy, now);
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert_eq!(s.license.until, Some(t0() + days(30)));
}

#[test]
fn an_edited_state_stays_tampered_until_reinstalled_and_then_has_no_grace() {
    let v = Vendor::new(1);
    let (state, _) = holding(&v);
    let (_dir, path) = saved(&state, &here());
    edit(&path, |j| j["guard"]["rearms"] = 0.into());
    edit(&path, |j| {
        j["installed"]["installed_at"] = "2027-02-01T00:00:00Z".into()
    });
    let mut edited = load(&path, &here());
    assert_eq!(edited.tamper, Some(Tamper::Edited));
    let now = t0() + days(20);

    // Other commands save it, but never launder it.
    set_host(&mut edited, "kms.example.com").unwrap();
    edited.save_on(&path, &here()).unwrap();
    let mut edited = load(&path, &here());
    assert_eq!(edited.tamper, Some(Tamper::Edited));
    assert_eq!(
        rearm(&mut edited, now, || NEW_ID.into()).unwrap_err().code,
        ErrorCode::StateTampered
    );

    let r = install_key(&mut edited, v.key(WORKSTATION).as_str(), None, now, || {
        NEW_ID.into()
    })
    .unwrap();
    assert_eq!(r.resealed, Some(Tamper::Edited));
    assert_eq!(r.client_id, CLIENT_ID, "the machine keeps its client id");
    assert!(r.grace_forfeited && r.ticket_dropped);
    edited.save_on(&path, &here()).unwrap();
    let mut resealed = load(&path, &here());
    assert_eq!(resealed.tamper, None);
    let s = status(&resealed, now);
    assert_eq!(
        s.license.state,
        LicenseState::Notification,
        "{}",
        s.license.reason
    );
    assert!(
        s.license.reason.contains("no initial grace"),
        "{}",
        s.license.reason
    );
    let e = rearm(&mut resealed, now, || NEW_ID.into()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "no rearms are left");
}

#[test]
fn rearm_is_limited_to_three_by_default() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let (_dir, path) = saved(&state, &here());
    for i in 1..=3u32 {
        let mut state = load(&path, &here());
        let r = rearm(&mut state, t0() + days(i.into()), || format!("id-{i}")).unwrap();
        assert_eq!((r.rearms, r.rearm_limit), (i, 3));
        state.save_on(&path, &here()).unwrap();
    }
    let mut state = load(&path, &here());
    let before = state.clone();
    let e = rearm(&mut state, t0() + days(5), || "id-4".into()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert_eq!(e.details["rearms"], 3);
    assert_eq!(e.details["rearm_limit"], 3);
    assert!(e.message.contains("volact activate"), "{}", e.message);
    assert_eq!(state, before, "a refused rearm changes nothing");
    assert_eq!(
        status(&state, t0() + days(5)).rearms,
        Some(3),
        "status shows the count"
    );

    // Writing the count back down is an edit.
    edit(&path, |j| j["guard"]["rearms"] = 0.into());
    let mut state = load(&path, &here());
    assert_eq!(
        rearm(&mut state, t0() + days(5), || "id-4".into())
            .unwrap_err()
            .code,
        ErrorCode::StateTampered
    );
}

#[test]
fn the_catalogs_rearm_limit_is_honoured() {
    for limit in [0u32, 1, 5] {
        let mut source = volact_core::catalog::demo_source();
        let product = source
            .products
            .iter_mut()
            .find(|p| p.id == WORKSTATION)
            .unwrap();
        product.rearm_limit = Some(limit);
        let v = Vendor::from_source(1, t0(), &source);
        let mut state = v.installed(WORKSTATION, t0());
        for i in 0..limit {
            rearm(&mut state, t0(), || format!("id-{i}")).unwrap();
        }
        let e = rearm(&mut state, t0(), || "one-too-many".into()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidState, "limit {limit}");
        assert_eq!(e.details["rearm_limit"], limit);
    }
}

#[tokio::test]
async fn a_rearmed_client_sends_its_previous_client_id() {
    let v = Arc::new(Vendor::new(1));
    let (host, seen) = good_host(v.clone()).await;
    let mut state = v.installed(WORKSTATION, t0());
    set_host(&mut state, &host).unwrap();
    let now = t0() + days(1);
    activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
    rearm(&mut state, now, || NEW_ID.into()).unwrap();
    activate(&mut state, now, "pc-1", "nonce-0002".into())
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].previous_client_id, None, "never rearmed");
    assert_eq!(seen[1].client_id, NEW_ID);
    assert_eq!(seen[1].previous_client_id.as_deref(), Some(CLIENT_ID));
}

#[tokio::test]
async fn a_client_in_notification_whose_clock_goes_back_is_clock_rollback() {
    let v = Vendor::new(1);
    let (mut state, ticket) = holding(&v);
    set_host(&mut state, &closed_port().await).unwrap();
    // 40 days after the out-of-tolerance grace began, the agent still tries to renew;
    // the host is gone.
    let late = ticket.exp + days(70);
    let e = activate(&mut state, late, "pc-1", "nonce-0002".into())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::HostUnreachable);
    assert_eq!(
        status(&state, late).license.state,
        LicenseState::Notification
    );
    let (_dir, path) = saved(&state, &here());
    let state = load(&path, &here());

    // The clock set back into the old ticket's life.
    let back = t0() + days(100);
    let s = status(&state, back);
    assert_eq!(
        s.license.state,
        LicenseState::ClockRollback,
        "{}",
        s.license.reason
    );
    assert_eq!(s.license.code, Some(ErrorCode::ClockRollback));
    assert_eq!(s.license.until, Some(late - CLOCK_ROLLBACK_TOLERANCE));
    assert!(s.render_text(false).contains("clock-rollback"));
    assert!(expiry(&state, back).text.contains("set back"));
    // Right again: as before.
    assert_eq!(
        status(&state, late + SignedDuration::from_hours(1))
            .license
            .state,
        LicenseState::Notification
    );
}

#[test]
fn status_notes_the_clock_so_a_later_rollback_is_seen() {
    let v = Vendor::new(1);
    let (state, ticket) = holding(&v);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    state.save(&path).unwrap();
    let late = ticket.exp + days(70);
    crate::note_clock(&path, late).unwrap();
    // Earlier readings never move the mark back.
    crate::note_clock(&path, t0() + days(100)).unwrap();
    let state = ClientState::load(&path).unwrap();
    assert_eq!(state.guard.clock_seen, Some(late));
    assert_eq!(
        status(&state, t0() + days(100)).license.state,
        LicenseState::ClockRollback
    );
}

#[tokio::test]
async fn a_licensed_client_whose_clock_goes_before_its_ticket_is_not_licensed() {
    let v = Arc::new(Vendor::new(1));
    let (host, _) = good_host(v.clone()).await;
    let mut state = v.installed(WORKSTATION, t0());
    set_host(&mut state, &host).unwrap();
    let now = t0() + days(10);
    let out = activate(&mut state, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
    assert_eq!(out.ticket.issued_at, now);
    assert_eq!(status(&state, now).license.state, LicenseState::Licensed);
    let minutes = now - SignedDuration::from_mins(5);
    assert_eq!(
        status(&state, minutes).license.state,
        LicenseState::Licensed
    );
    let back = now - days(2);
    let s = status(&state, back);
    assert_eq!(s.license.state, LicenseState::ClockRollback);
    assert_eq!(
        s.next_attempt,
        Some(back),
        "a host's confirmation is what clears it: ask now, not at the renewal"
    );
    // Without any reading of the clock kept, the ticket's signed issue time still
    // gives it away.
    state.guard = Guard::default();
    state.last_attempt = None;
    let s = status(&state, back);
    assert_eq!(s.license.state, LicenseState::ClockRollback);
    assert!(
        s.license.reason.contains("signed the ticket"),
        "{}",
        s.license.reason
    );
}

#[tokio::test]
async fn a_host_that_confirms_the_clock_clears_a_rollback() {
    let v = Arc::new(Vendor::new(1));
    let (host, _) = good_host(v.clone()).await;
    // Installed while the clock ran a year ahead; then NTP put it right.
    let mut state = v.installed(WORKSTATION, t0() + days(365));
    set_host(&mut state, &host).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    state.save(&path).unwrap();
    let now = t0();
    assert_eq!(
        status(&ClientState::load(&path).unwrap(), now)
            .license
            .state,
        LicenseState::ClockRollback
    );
    activate_and_save(&path, now, "pc-1", "nonce-0001".into())
        .await
        .unwrap();
    let state = ClientState::load(&path).unwrap();
    assert_eq!(state.tamper, None);
    assert_eq!(state.installed.as_ref().unwrap().installed_at, now);
    assert_eq!(status(&state, now).license.state, LicenseState::Licensed);
}

#[test]
fn an_edited_ticket_never_reads_licensed() {
    let v = Vendor::new(1);
    let (state, ticket) = holding(&v);
    // Its copied end moved to 2099, and its signature changed.
    let (_dir, path) = saved(&state, &here());
    edit(&path, |j| {
        j["ticket"]["valid_until"] = "2099-01-01T00:00:00Z".into();
    });
    let loaded = load(&path, &here());
    let after = ticket.exp + days(1);
    assert_eq!(
        status(&loaded, after).license.state,
        LicenseState::OutOfToleranceGrace
    );
    edit(&path, |j| {
        let token = j["ticket"]["token"].as_str().unwrap().to_string();
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 3;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        j["ticket"]["token"] = chars.into_iter().collect::<String>().into();
    });
    let loaded = load(&path, &here());
    for now in [t0() + days(2), t0() + days(100), after] {
        let s = status(&loaded, now);
        assert_ne!(s.license.state, LicenseState::Licensed, "{now}");
        assert!(s.ticket_problem.is_some());
    }
}

#[test]
fn a_format_1_state_is_read_once_without_gaining_anything() {
    let v = Vendor::new(1);
    let state = v.installed(WORKSTATION, t0());
    let old = |installed_at: &str| {
        let mut json = serde_json::to_value(&state).unwrap();
        let o = json.as_object_mut().unwrap();
        o.remove("guard");
        o.insert("version".into(), 1.into());
        json["installed"]["grace_days"] = 36_500.into();
        json["installed"]["installed_at"] = installed_at.into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.json");
        std::fs::write(&path, json.to_string()).unwrap();
        (dir, path)
    };
    let (_dir, path) = old(&t0().to_string());
    let upgraded = load(&path, &here());
    assert_eq!((upgraded.version, upgraded.tamper), (STATE_VERSION, None));
    let s = status(&upgraded, t0() + days(2));
    assert_eq!(s.license.state, LicenseState::InitialGrace);
    assert_eq!(s.license.until, Some(t0() + days(30)), "the signed grace");
    // Sealed at its next save; from then on an edit shows.
    upgraded.save_on(&path, &here()).unwrap();
    assert_eq!(load(&path, &here()).tamper, None);
    edit(&path, |j| {
        j["installed"]["installed_at"] = (t0() + days(20)).to_string().into()
    });
    assert_eq!(load(&path, &here()).tamper, Some(Tamper::Edited));

    // An old file installed "in 2099" gains nothing either.
    let (_dir, path) = old("2099-01-01T00:00:00Z");
    let s = status(&load(&path, &here()), t0() + days(2));
    assert_eq!(
        s.license.state,
        LicenseState::StateTampered,
        "{}",
        s.license.reason
    );
}

#[test]
fn switching_products_back_and_forth_never_restarts_a_grace() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    let key = |p| v.key(p).to_string();
    install_key(&mut state, &key(SERVER), None, t0() + days(10), || {
        "x".into()
    })
    .unwrap();
    let r = install_key(&mut state, &key(WORKSTATION), None, t0() + days(20), || {
        "x".into()
    })
    .unwrap();
    assert_eq!(r.installed_at, t0());
    assert_eq!(
        status(&state, t0() + days(31)).license.state,
        LicenseState::Notification
    );
    let r = install_key(&mut state, &key(SERVER), None, t0() + days(40), || {
        "x".into()
    })
    .unwrap();
    assert_eq!(r.installed_at, t0() + days(10));
    let (_dir, path) = saved(&state, &here());
    assert_eq!(load(&path, &here()).tamper, None);
}
