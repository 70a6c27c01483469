//! The machine's id: hashed into the fingerprint sent with every activation request, so
//! the host can flag disks cloned from one image (same client id, different machines),
//! and mixed into the key of the client state's seal, so a state copied to another
//! machine is noticed.

use std::sync::OnceLock;

/// Where systemd and D-Bus keep the machine's id; a cloned image that was prepared
/// properly gets a new one at first boot.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// This machine's raw id (trimmed), or `None` where no machine id exists. Read once per
/// process. Never sent anywhere: other software may use it as a secret.
pub(crate) fn machine_id() -> Option<String> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        MACHINE_ID_FILES
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|id| id.trim().to_string())
            .find(|id| !id.is_empty())
    })
    .clone()
}

/// This machine's fingerprint, or `None` where no machine id exists (the host then
/// compares machine names only).
pub(crate) fn machine_fingerprint() -> Option<String> {
    machine_id().map(|id| volact_core::util::machine_fingerprint(&id))
}
