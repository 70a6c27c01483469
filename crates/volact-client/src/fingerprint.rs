//! The machine fingerprint sent with every activation request, so the host can flag
//! disks cloned from one image (same client id, different machines).

use std::sync::OnceLock;

/// Where systemd and D-Bus keep the machine's id; a cloned image that was prepared
/// properly gets a new one at first boot.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// This machine's fingerprint, or `None` where no machine id exists (the host then
/// compares machine names only). Read once per process.
pub(crate) fn machine_fingerprint() -> Option<String> {
    static FINGERPRINT: OnceLock<Option<String>> = OnceLock::new();
    FINGERPRINT
        .get_or_init(|| {
            MACHINE_ID_FILES
                .iter()
                .filter_map(|path| std::fs::read_to_string(path).ok())
                .find(|id| !id.trim().is_empty())
                .map(|id| volact_core::util::machine_fingerprint(&id))
        })
        .clone()
}
