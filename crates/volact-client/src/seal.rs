//! The seal written next to a client state: two HMAC-SHA256 tags over the fields that
//! decide its licence (client id, setup key, install time, vendor bundle, rearm count,
//! the latest time its clock was seen, the last attempt's time).
//!
//! - The **content** tag is keyed from the vendor's root public key alone: it breaks when
//!   the file is edited by hand.
//! - The **machine** tag is keyed from the root key and this machine's id
//!   (`/etc/machine-id`): it breaks when an intact file is copied to another machine
//!   (or a disk image is cloned after the setup key was installed).
//!
//! Neither key is secret: the root key is public and the machine id is readable by the
//! machine's users. The seal stops hand edits and copies, not a user who reads this code
//! and recomputes it; against that user only the host-signed ticket holds (a licence is
//! never more than a verified ticket), and the grace is what a fresh install gives.
//! Everything here is pure: the machine id is passed in, so tests can play another
//! machine without any switch a real machine could use to launder a copied file.

use crate::state::{ClientState, Guard};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use volact_core::license::{CLOCK_ROLLBACK_TOLERANCE, Tamper};
use volact_core::util::add;

type HmacSha256 = Hmac<Sha256>;

/// This machine, as far as the seal is concerned: its id, or empty where it has none
/// (then copies between such machines are not told apart; edits still are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId(String);

impl MachineId {
    /// This machine's id, from `/etc/machine-id` (or D-Bus's copy); read once per process.
    pub fn this() -> MachineId {
        MachineId(crate::fingerprint::machine_id().unwrap_or_default())
    }

    /// A given machine id, for tests and for embedders that know the machine better.
    pub fn new(id: &str) -> MachineId {
        MachineId(id.trim().to_string())
    }
}

/// The two tags, as written in the state file's `seal` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seal {
    /// HMAC over the protected fields, keyed from the vendor root key.
    pub content: String,
    /// HMAC over the same fields, keyed from the root key and the machine id.
    pub machine: String,
}

const CONTENT_LABEL: &[u8] = b"volact client state seal v2: content";
const MACHINE_LABEL: &[u8] = b"volact client state seal v2: machine";
/// What a tag that must never verify again is written as: the tags of a state known to
/// be tampered, so that saving it (after `set-host`, say) never makes it sound.
const BROKEN: &str = "broken";

/// The fields the seal covers, in a fixed order.
#[derive(Serialize)]
struct Protected<'a> {
    format: &'static str,
    client_id: &'a str,
    setup_key: &'a str,
    installed_at: Timestamp,
    root_public_key: &'a str,
    catalog: &'a str,
    guard: &'a Guard,
    last_attempt_at: Option<Timestamp>,
}

/// The MAC key for `label` and `parts` (length-prefixed, so no two inputs collide).
fn key(label: &[u8], parts: &[&[u8]]) -> Option<HmacSha256> {
    let mut kdf = HmacSha256::new_from_slice(label).ok()?;
    for part in parts {
        kdf.update(&(part.len() as u64).to_be_bytes());
        kdf.update(part);
    }
    HmacSha256::new_from_slice(&kdf.finalize().into_bytes()).ok()
}

/// The two MACs, ready to finalize or verify; `None` when nothing is installed.
fn macs(state: &ClientState, machine: &MachineId) -> Option<(HmacSha256, HmacSha256)> {
    let installed = state.installed.as_ref()?;
    let protected = Protected {
        format: "volact-client-state/2",
        client_id: &installed.client_id,
        setup_key: installed.setup_key.as_str(),
        installed_at: installed.installed_at,
        root_public_key: &installed.vendor.root_public_key,
        catalog: &installed.vendor.catalog,
        guard: &state.guard,
        last_attempt_at: state.last_attempt.as_ref().map(|a| a.at),
    };
    let bytes = serde_json::to_vec(&protected).ok()?;
    let root = installed.vendor.root_public_key.as_bytes();
    let mut content = key(CONTENT_LABEL, &[root])?;
    let mut bound = key(MACHINE_LABEL, &[root, machine.0.as_bytes()])?;
    content.update(&bytes);
    bound.update(&bytes);
    Some((content, bound))
}

fn tag(mac: HmacSha256) -> String {
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn matches(mac: HmacSha256, tag: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(tag)
        .is_ok_and(|bytes| mac.verify_slice(&bytes).is_ok())
}

/// The seal to write for `state` on `machine`. A state read as tampered keeps its
/// verdict: edited, both tags broken; from another machine, the content tag is renewed
/// (volact's own changes) but the machine tag stays broken until `rearm` or
/// `install-key` reseals it here.
pub(crate) fn seal(state: &ClientState, machine: &MachineId) -> Option<Seal> {
    let (content, bound) = macs(state, machine)?;
    Some(match state.tamper {
        None => Seal {
            content: tag(content),
            machine: tag(bound),
        },
        Some(Tamper::OtherMachine) => Seal {
            content: tag(content),
            machine: BROKEN.into(),
        },
        Some(Tamper::Edited) => Seal {
            content: BROKEN.into(),
            machine: BROKEN.into(),
        },
    })
}

/// Why `state`, read with `seal` on `machine`, is not to be believed, if it is not.
/// A state with no setup key has nothing to protect.
pub(crate) fn verify(
    state: &ClientState,
    seal: Option<&Seal>,
    machine: &MachineId,
) -> Option<Tamper> {
    let (content, bound) = macs(state, machine)?;
    let Some(seal) = seal else {
        return Some(Tamper::Edited);
    };
    if !matches(content, &seal.content) || impossible(state) {
        return Some(Tamper::Edited);
    }
    if !matches(bound, &seal.machine) {
        return Some(Tamper::OtherMachine);
    }
    None
}

/// Values volact never writes, whatever the seal says: a setup key its own bundle does
/// not list, or a key installed later than the clock was ever seen. (With no clock
/// reading at all, the license rule compares the install time with `now` instead.)
pub(crate) fn impossible(state: &ClientState) -> bool {
    let Some(installed) = &state.installed else {
        return false;
    };
    let listed = installed
        .vendor
        .open()
        .is_ok_and(|(_, catalog)| catalog.product_for_key(&installed.setup_key).is_ok());
    let late = |t: Timestamp| {
        state
            .guard
            .clock_seen
            .is_some_and(|seen| t > add(seen, CLOCK_ROLLBACK_TOLERANCE))
    };
    !listed
        || late(installed.installed_at)
        || state.guard.earlier_products.values().any(|t| late(*t))
}
