//! The C ABI, called as C calls it, against a real host: each protection a product
//! relies on reads the same through it as through the Rust API.

#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{Fixture, PRODUCT};
use std::ffi::{CStr, CString, c_void};
use std::ptr;
use volact::*;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Opens a handle on `state` with the fixture's bundle.
fn open(f: &Fixture, state: &str) -> *mut VolactLicense {
    let bundle = f.bundle();
    let mut handle = ptr::null_mut();
    let path = c(f.state(state).to_str().unwrap());
    let status = unsafe {
        volact_open(
            c("demo-office").as_ptr(),
            path.as_ptr(),
            bundle.as_ptr(),
            bundle.len(),
            ptr::null(),
            ptr::null(),
            &mut handle,
        )
    };
    assert_eq!(status, VolactStatus::Ok, "{}", last_error());
    assert!(!handle.is_null());
    handle
}

fn last_error() -> String {
    let p = volact_last_error_message();
    if p.is_null() {
        return String::new();
    }
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    unsafe { volact_string_free(p) };
    s
}

fn check(handle: *const VolactLicense) -> VolactCheck {
    let mut out = VolactCheck {
        state: VolactState::Unlicensed,
        reason: VolactReason::StateUnreadable,
        until: -1,
        renew_after: -1,
    };
    assert_eq!(unsafe { volact_check(handle, &mut out) }, VolactStatus::Ok);
    out
}

fn install_and_activate(f: &Fixture, handle: *const VolactLicense) {
    let key = c(&f.setup_key());
    assert_eq!(
        unsafe { volact_install_key(handle, key.as_ptr()) },
        VolactStatus::Ok
    );
    let host = c(&f.host.address());
    assert_eq!(
        unsafe { volact_set_host(handle, host.as_ptr()) },
        VolactStatus::Ok
    );
    assert_eq!(
        unsafe { volact_activate_now(handle) },
        VolactStatus::Ok,
        "{}",
        last_error()
    );
}

unsafe extern "C" fn count_changes(check: *const VolactCheck, user_data: *mut c_void) {
    let seen = unsafe { &*(user_data as *const std::sync::Mutex<Vec<VolactState>>) };
    seen.lock().unwrap().push(unsafe { (*check).state });
}

#[test]
fn through_the_c_abi_a_product_installs_activates_checks_and_hears_of_changes() {
    let f = Fixture::new();
    let handle = open(&f, "c.json");
    let seen = Box::new(std::sync::Mutex::new(Vec::<VolactState>::new()));
    let data = &*seen as *const _ as *mut c_void;
    assert_eq!(
        unsafe { volact_on_change(handle, Some(count_changes), data) },
        VolactStatus::Ok
    );
    assert_eq!(check(handle).reason, VolactReason::NoSetupKey);
    install_and_activate(&f, handle);
    let now = check(handle);
    assert_eq!(
        (now.state, now.reason),
        (VolactState::Licensed, VolactReason::Activated)
    );
    assert!(now.until > now.renew_after && now.renew_after > 0);

    let mut json = ptr::null_mut();
    assert_eq!(
        unsafe { volact_check_json(handle, &mut json) },
        VolactStatus::Ok
    );
    let text = unsafe { CStr::from_ptr(json) }
        .to_str()
        .unwrap()
        .to_string();
    unsafe { volact_string_free(json) };
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["state"], "licensed");
    assert_eq!(parsed["product"], PRODUCT);
    assert_eq!(
        f.inventory(),
        vec![parsed["client_id"].as_str().unwrap().to_string()]
    );
    // Renewal starts once and stops promptly.
    assert_eq!(unsafe { volact_start_renewal(handle) }, VolactStatus::Ok);
    assert_eq!(
        unsafe { volact_start_renewal(handle) },
        VolactStatus::InvalidState
    );
    assert_eq!(unsafe { volact_stop_renewal(handle) }, VolactStatus::Ok);
    unsafe { volact_close(handle) };
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            VolactState::Unlicensed,
            VolactState::InitialGrace,
            VolactState::Licensed
        ]
    );
}

#[test]
fn through_the_c_abi_bad_arguments_are_codes_not_crashes() {
    let f = Fixture::new();
    let mut handle = ptr::null_mut();
    let status = unsafe {
        volact_open(
            ptr::null(),
            ptr::null(),
            ptr::null(),
            0,
            ptr::null(),
            ptr::null(),
            &mut handle,
        )
    };
    assert_eq!(status, VolactStatus::NullArgument);
    assert!(last_error().contains("application"));
    assert!(handle.is_null());
    let bad = [0xffu8, 0xfe, 0];
    let path = c(f.state("x.json").to_str().unwrap());
    let status = unsafe {
        volact_open(
            bad.as_ptr().cast(),
            path.as_ptr(),
            b"{}".as_ptr(),
            2,
            ptr::null(),
            ptr::null(),
            &mut handle,
        )
    };
    assert_eq!(status, VolactStatus::InvalidUtf8);
    let status = unsafe {
        volact_open(
            c("demo-office").as_ptr(),
            path.as_ptr(),
            b"{}".as_ptr(),
            2,
            ptr::null(),
            ptr::null(),
            &mut handle,
        )
    };
    assert_eq!(status, VolactStatus::BadRequest);
    assert!(last_error().starts_with("bad-request: "));
    let handle = open(&f, "y.json");
    let key = c("NOT-A-KEY");
    assert_ne!(
        unsafe { volact_install_key(handle, key.as_ptr()) },
        VolactStatus::Ok
    );
    assert_eq!(
        unsafe { volact_check(ptr::null(), ptr::null_mut()) },
        VolactStatus::NullArgument
    );
    assert_eq!(
        unsafe { volact_activate_now(handle) },
        VolactStatus::InvalidState
    );
    let domain = c("not a domain!");
    assert_eq!(
        unsafe { volact_set_domain(handle, domain.as_ptr()) },
        VolactStatus::BadRequest
    );
    assert!(last_error().contains("not a domain name"));
    let domain = c("corp.example.com");
    assert_eq!(
        unsafe { volact_set_domain(handle, domain.as_ptr()) },
        VolactStatus::Ok
    );
    assert_eq!(
        unsafe { volact_set_domain(handle, ptr::null()) },
        VolactStatus::Ok
    );
    unsafe { volact_close(handle) };
    unsafe { volact_close(ptr::null_mut()) };
    // Names are static and stable; unknown numbers are named so, not read out of range.
    let name = |p: *const std::ffi::c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap();
    assert_eq!(name(volact_status_name(1)), "count-insufficient");
    assert_eq!(name(volact_status_name(9999)), "unknown");
    assert_eq!(name(volact_state_name(2)), "out-of-tolerance-grace");
    assert_eq!(name(volact_reason_name(6)), "state-from-another-machine");
    assert_eq!(name(volact_reason_name(-1)), "unknown");
    assert!(name(volact_version()).starts_with("0."));
}

#[test]
fn through_the_c_abi_an_edited_state_is_unlicensed_and_refused() {
    let f = Fixture::new();
    let handle = open(&f, "edited.json");
    install_and_activate(&f, handle);
    let path = f.state("edited.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["guard"]["rearms"] = serde_json::json!(0);
    json["installed"]["installed_at"] = serde_json::json!("2031-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let now = check(handle);
    assert_eq!(
        (now.state, now.reason),
        (VolactState::Unlicensed, VolactReason::StateEdited)
    );
    assert_eq!(
        unsafe { volact_activate_now(handle) },
        VolactStatus::StateTampered
    );
    unsafe { volact_close(handle) };
}

#[test]
fn through_the_c_abi_a_copied_state_is_unlicensed_and_activates_as_itself() {
    let f = Fixture::new();
    // Written and activated on another machine through the Rust API...
    let there = volact_sdk::License::open("demo-office", f.state("copy.json"), f.bundle())
        .unwrap()
        .on_machine("fedcba9876543210fedcba9876543210");
    there.install_key(&f.setup_key()).unwrap();
    there.set_host(&f.host.address()).unwrap();
    there.activate_now().unwrap();
    let original = there.check_at(jiff::Timestamp::now()).client_id.unwrap();
    // ...and read here through the C ABI.
    let handle = open(&f, "copy.json");
    let now = check(handle);
    assert_eq!(
        (now.state, now.reason),
        (
            VolactState::Unlicensed,
            VolactReason::StateFromAnotherMachine
        )
    );
    assert_eq!(
        unsafe { volact_activate_now(handle) },
        VolactStatus::Ok,
        "{}",
        last_error()
    );
    assert_eq!(check(handle).state, VolactState::Licensed);
    let inventory = f.inventory();
    assert_eq!(inventory.len(), 2, "{inventory:?}");
    assert!(inventory.contains(&original));
    unsafe { volact_close(handle) };
}

#[test]
fn through_the_c_abi_a_clock_set_back_a_foreign_vendor_and_a_forged_ticket_are_not_licences() {
    let f = Fixture::new();
    // The clock was seen three days ahead of what it reads now.
    let handle = open(&f, "clock.json");
    install_and_activate(&f, handle);
    let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(72);
    volact_client::note_clock(&f.state("clock.json"), ahead).unwrap();
    let now = check(handle);
    assert_eq!(
        (now.state, now.reason),
        (VolactState::Unlicensed, VolactReason::ClockRollback)
    );
    assert!(now.until >= ahead.as_second() - 3600);
    unsafe { volact_close(handle) };

    // A key installed from an impostor's bundle.
    let impostor = f.host.vendor.impostor(77).unwrap();
    volact_sdk::License::for_state_file(f.state("impostor.json"), None, Default::default())
        .install_key_with(&impostor.setup_key(PRODUCT), Some(impostor.bundle.clone()))
        .unwrap();
    let handle = open(&f, "impostor.json");
    assert_eq!(check(handle).reason, VolactReason::WrongVendor);
    unsafe { volact_close(handle) };

    // A ticket whose signature was changed.
    let handle = open(&f, "forged.json");
    install_and_activate(&f, handle);
    let path = f.state("forged.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut token = json["ticket"]["token"].as_str().unwrap().to_string();
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    json["ticket"]["token"] = serde_json::json!(token);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert_ne!(check(handle).state, VolactState::Licensed);
    unsafe { volact_close(handle) };
}

#[test]
fn through_the_c_abi_rearm_is_limited() {
    let f = Fixture::new();
    let handle = open(&f, "rearm.json");
    let key = c(&f.setup_key());
    assert_eq!(
        unsafe { volact_install_key(handle, key.as_ptr()) },
        VolactStatus::Ok
    );
    for _ in 0..3 {
        assert_eq!(
            unsafe { volact_rearm(handle) },
            VolactStatus::Ok,
            "{}",
            last_error()
        );
    }
    assert_eq!(unsafe { volact_rearm(handle) }, VolactStatus::InvalidState);
    assert!(last_error().contains("rearm"));
    unsafe { volact_close(handle) };
}
