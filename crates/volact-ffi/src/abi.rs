//! The functions of the C ABI. Everything that reads a pointer from C is here, and
//! nothing else in the crate is `unsafe`.

#![allow(unsafe_code)]

use crate::codes::{VolactCheck, VolactStatus};
use crate::last_error;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};
use volact_proto::{ApiError, ErrorCode};
use volact_sdk::{License, Renewal, Settings};

/// A product's licence on this machine: opaque to C. Safe to use from several threads.
pub struct VolactLicense {
    license: License,
    renewal: Mutex<Option<Renewal>>,
}

/// Called with each changed check; `user_data` is what was given to
/// [`volact_on_change`]. It runs on the thread that made the check (the caller's, or the
/// renewal thread's); the check pointer is valid only during the call.
pub type VolactCallback =
    Option<unsafe extern "C" fn(check: *const VolactCheck, user_data: *mut c_void)>;

/// Runs `f`, turning an error into its status (and this thread's last message) and a
/// panic into `VOLACT_STATUS_INTERNAL`: nothing unwinds into C.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> VolactStatus {
    last_error::clear();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => VolactStatus::Ok,
        Ok(Err(Failure::Api(e))) => {
            last_error::set(&e);
            VolactStatus::from_code(e.code)
        }
        Ok(Err(Failure::Abi(status, text))) => {
            last_error::set_text(format!("{}: {text}", status.as_str()));
            status
        }
        Err(_) => {
            last_error::set_text(
                "internal: a bug in volact (a panic was caught); please report it".into(),
            );
            VolactStatus::Internal
        }
    }
}

/// Why a call failed: an SDK error, or a bad argument from C.
enum Failure {
    Api(ApiError),
    Abi(VolactStatus, String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        Failure::Api(e)
    }
}

fn null(what: &str) -> Failure {
    Failure::Abi(
        VolactStatus::NullArgument,
        format!("{what} must not be NULL"),
    )
}

/// Reads a NUL-terminated UTF-8 argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Failure::Abi(VolactStatus::InvalidUtf8, format!("{what} is not UTF-8")))
}

/// Reads an optional string argument: NULL is `None`.
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    unsafe { text(p, what) }.map(Some)
}

/// The handle behind `p`.
///
/// # Safety
/// `p` is NULL or a handle from [`volact_open`] not yet closed.
unsafe fn handle<'a>(p: *const VolactLicense) -> Result<&'a VolactLicense, Failure> {
    // SAFETY: the caller promises a live handle or NULL.
    unsafe { p.as_ref() }.ok_or_else(|| null("the licence handle"))
}

/// A string for C, freed with [`volact_string_free`]. Interior NULs (never in JSON or
/// in volact's messages) are replaced so the string is never cut short silently.
fn to_c(s: String) -> *mut c_char {
    let s = s.replace('\0', "\u{FFFD}");
    CString::new(s).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// The library's version, e.g. `0.1.0` (static; never freed).
#[unsafe(no_mangle)]
pub extern "C" fn volact_version() -> *const c_char {
    static VERSION: OnceLock<CString> = OnceLock::new();
    VERSION
        .get_or_init(|| CString::new(volact_sdk::VERSION).unwrap_or_default())
        .as_ptr()
}

/// Opens the licence of `application` kept in the file `state_path`, trusting only the
/// vendor whose public bundle (the bytes of `volact vendor export`) is
/// `bundle[0..bundle_len]`. For `https://` hosts, `tls_fingerprint` (may be NULL) pins
/// the SHA-256 fingerprint of their certificate and `ca_file` (may be NULL) names a PEM
/// file of the CAs that issue them; with neither, the system's roots are used. On
/// success `*out` is a handle to release with [`volact_close`].
///
/// # Safety
/// Strings are NUL-terminated (or NULL where allowed); `bundle` points to `bundle_len`
/// readable bytes; `out` points to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_open(
    application: *const c_char,
    state_path: *const c_char,
    bundle: *const u8,
    bundle_len: usize,
    tls_fingerprint: *const c_char,
    ca_file: *const c_char,
    out: *mut *mut VolactLicense,
) -> VolactStatus {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: the caller's promises, checked for NULL by `text`.
        let application = unsafe { text(application, "application") }?;
        let state_path = unsafe { text(state_path, "state_path") }?;
        let fingerprint = unsafe { optional_text(tls_fingerprint, "tls_fingerprint") }?;
        let ca_file = unsafe { optional_text(ca_file, "ca_file") }?;
        if bundle.is_null() {
            return Err(null("bundle"));
        }
        // SAFETY: not NULL, and the caller promises `bundle_len` readable bytes.
        let bundle = unsafe { std::slice::from_raw_parts(bundle, bundle_len) };
        let mut settings = Settings::new(application, state_path, bundle.to_vec());
        settings.activate.tls = volact_client::tls::TlsTrust::from_flags(
            fingerprint,
            ca_file.map(std::path::Path::new),
        )?;
        let license = License::open_with(settings)?;
        let boxed = Box::new(VolactLicense {
            license,
            renewal: Mutex::new(None),
        });
        // SAFETY: `out` is not NULL and the caller promises it is writable.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Releases a handle (stopping its background renewal first). NULL is ignored.
///
/// # Safety
/// `license` is NULL or a handle from [`volact_open`], not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_close(license: *mut VolactLicense) {
    if license.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a handle from `volact_open`, given back once.
        drop(unsafe { Box::from_raw(license) });
    }));
}

/// Installs the product's setup key.
///
/// # Safety
/// `license` is a live handle; `key` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_install_key(
    license: *const VolactLicense,
    key: *const c_char,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        let key = unsafe { text(key, "key") }?;
        l.license.install_key(key)?;
        Ok(())
    })
}

/// Pins the host to activate against (`HOST`, `HOST:PORT`, `https://HOST[:PORT]`);
/// NULL clears the pin, so hosts are found through DNS (`_volact._tcp`).
///
/// # Safety
/// `license` is a live handle; `host` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_set_host(
    license: *const VolactLicense,
    host: *const c_char,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        match unsafe { optional_text(host, "host") }? {
            Some(host) => {
                l.license.set_host(host)?;
            }
            None => l.license.clear_host()?,
        }
        Ok(())
    })
}

/// Sets the DNS domain hosts are looked up in (`_volact._tcp.DOMAIN`, and
/// `_volact-tls._tcp.DOMAIN` with a TLS trust); NULL goes back to the system's search
/// domains.
///
/// # Safety
/// `license` is a live handle; `domain` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_set_domain(
    license: *const VolactLicense,
    domain: *const c_char,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        match unsafe { optional_text(domain, "domain") }? {
            Some(domain) => {
                l.license.set_domain(domain)?;
            }
            None => l.license.clear_domain()?,
        }
        Ok(())
    })
}

/// Checks the licence offline (no network): fills `*out`. Always `VOLACT_STATUS_OK`
/// with a valid handle: a state that cannot be read is `VOLACT_STATE_UNLICENSED` with
/// `VOLACT_REASON_STATE_UNREADABLE`.
///
/// # Safety
/// `license` is a live handle; `out` points to a writable `VolactCheck`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_check(
    license: *const VolactLicense,
    out: *mut VolactCheck,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        if out.is_null() {
            return Err(null("out"));
        }
        let check = l.license.check();
        // SAFETY: not NULL, and the caller promises it is writable.
        unsafe { *out = VolactCheck::from(&check) };
        Ok(())
    })
}

/// Checks the licence offline and returns everything as JSON (state, reason, until,
/// renew_after, message, client_id, product) in `*out_json`, to free with
/// [`volact_string_free`].
///
/// # Safety
/// `license` is a live handle; `out_json` points to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_check_json(
    license: *const VolactLicense,
    out_json: *mut *mut c_char,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        if out_json.is_null() {
            return Err(null("out_json"));
        }
        let check = l.license.check();
        let json = serde_json::to_string(&check)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        // SAFETY: not NULL, and the caller promises it is writable.
        unsafe { *out_json = to_c(json) };
        Ok(())
    })
}

/// Activates (or renews) now, blocking until a host answered or every host was tried.
/// `VOLACT_STATUS_COUNT_INSUFFICIENT` means the host has not counted enough machines
/// yet: the background renewal tries again by itself.
///
/// # Safety
/// `license` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_activate_now(license: *const VolactLicense) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        l.license.activate_now()?;
        Ok(())
    })
}

/// Gives this machine a new client id and a new initial grace (like `slmgr /rearm`),
/// within the vendor's rearm limit (past it, `VOLACT_STATUS_INVALID_STATE`).
///
/// # Safety
/// `license` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_rearm(license: *const VolactLicense) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        l.license.rearm()?;
        Ok(())
    })
}

/// Starts renewing in the background (a thread of the library's own). Starting it twice
/// is `VOLACT_STATUS_INVALID_STATE`.
///
/// # Safety
/// `license` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_start_renewal(license: *const VolactLicense) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        let mut renewal = l
            .renewal
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the renewal lock is poisoned"))?;
        if renewal.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                "the background renewal is already running for this licence",
            )
            .into());
        }
        *renewal = Some(l.license.start_renewal()?);
        Ok(())
    })
}

/// Stops the background renewal and waits for its thread; nothing if none runs.
///
/// # Safety
/// `license` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_stop_renewal(license: *const VolactLicense) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        let running = l
            .renewal
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal, "the renewal lock is poisoned"))?
            .take();
        if let Some(renewal) = running {
            renewal.stop();
        }
        Ok(())
    })
}

/// The pointer C gave with its callback, carried to whichever thread makes a check.
struct UserData(*mut c_void);

// SAFETY: the library never reads through the pointer; it only hands it back to the
// caller's callback, which the caller wrote to be called from any thread (documented at
// `volact_on_change`).
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// Registers `callback`, called with each check whose state, reason or until-time
/// differs from the one before (from `volact_check`, an activation or the background
/// renewal), on the thread that made it, with `user_data` as given. It must not call
/// `volact_close` on this licence.
///
/// # Safety
/// `license` is a live handle; `callback` stays callable, and `user_data` valid for it,
/// from any thread until the handle is closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_on_change(
    license: *const VolactLicense,
    callback: VolactCallback,
    user_data: *mut c_void,
) -> VolactStatus {
    guard(|| {
        // SAFETY: the caller's promises.
        let l = unsafe { handle(license) }?;
        let Some(callback) = callback else {
            return Err(null("callback"));
        };
        let data = UserData(user_data);
        l.license.on_change(move |check| {
            let plain = VolactCheck::from(check);
            let data = &data;
            // SAFETY: the caller promised the callback is callable from any thread with
            // its user data; the check lives for the call.
            unsafe { callback(&plain, data.0) };
        });
        Ok(())
    })
}

/// The message of this thread's last failed call (`code: what happened and what to
/// do`), or NULL when the last call succeeded. Free it with [`volact_string_free`].
#[unsafe(no_mangle)]
pub extern "C" fn volact_last_error_message() -> *mut c_char {
    catch_unwind(|| last_error::get().map_or(std::ptr::null_mut(), to_c))
        .unwrap_or(std::ptr::null_mut())
}

/// Frees a string the library returned. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string from this library, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn volact_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: a string from `to_c`, given back once.
    drop(unsafe { CString::from_raw(s) });
}

/// The stable code of a status number (`ok`, `count-insufficient`, …), or `unknown`.
/// Static; never freed. Takes an `int` so that any number from C is safe to pass.
#[unsafe(no_mangle)]
pub extern "C" fn volact_status_name(status: i32) -> *const c_char {
    static NAMES: OnceLock<Vec<(i32, CString)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let mut all: Vec<VolactStatus> = ErrorCode::ALL
            .iter()
            .map(|c| VolactStatus::from_code(*c))
            .collect();
        all.extend([
            VolactStatus::Ok,
            VolactStatus::NullArgument,
            VolactStatus::InvalidUtf8,
        ]);
        all.into_iter()
            .filter_map(|s| CString::new(s.as_str()).ok().map(|c| (s as i32, c)))
            .collect()
    });
    names
        .iter()
        .find(|(n, _)| *n == status)
        .map_or(c"unknown".as_ptr(), |(_, c)| c.as_ptr())
}

/// The name of a state number (`licensed`, `initial-grace`, …), or `unknown`. Static.
#[unsafe(no_mangle)]
pub extern "C" fn volact_state_name(state: i32) -> *const c_char {
    match state {
        0 => c"licensed".as_ptr(),
        1 => c"initial-grace".as_ptr(),
        2 => c"out-of-tolerance-grace".as_ptr(),
        3 => c"notification".as_ptr(),
        4 => c"unlicensed".as_ptr(),
        _ => c"unknown".as_ptr(),
    }
}

/// The stable code of a reason number (`activated`, `clock-rollback`, …), or `unknown`.
/// Static; never freed.
#[unsafe(no_mangle)]
pub extern "C" fn volact_reason_name(reason: i32) -> *const c_char {
    match reason {
        0 => c"activated".as_ptr(),
        1 => c"not-activated-yet".as_ptr(),
        2 => c"activation-expired".as_ptr(),
        3 => c"grace-over".as_ptr(),
        4 => c"no-setup-key".as_ptr(),
        5 => c"state-edited".as_ptr(),
        6 => c"state-from-another-machine".as_ptr(),
        7 => c"clock-rollback".as_ptr(),
        8 => c"wrong-vendor".as_ptr(),
        9 => c"wrong-application".as_ptr(),
        10 => c"state-unreadable".as_ptr(),
        _ => c"unknown".as_ptr(),
    }
}
