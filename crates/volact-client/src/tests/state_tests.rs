use super::*;
use crate::state::{Attempt, state_path_from};
use std::ffi::OsString;
use std::path::PathBuf;
use volact_proto::ErrorCode;

#[test]
fn a_missing_file_is_an_unlicensed_machine() {
    let dir = tempfile::tempdir().unwrap();
    let state = ClientState::load(&dir.path().join("nope.json")).unwrap();
    assert_eq!(state, ClientState::default());
    assert!(state.installed.is_none());
    assert!(state.use_host_cache);
}

#[test]
fn a_full_state_round_trips_and_is_private() {
    let v = Vendor::new(1);
    let mut state = v.installed(WORKSTATION, t0());
    state.ticket = Some(v.stored(&v.ticket(CLIENT_ID, WORKSTATION, "nonce-0001", t0())));
    state.pinned_host = Some("kms.example.com:7688".into());
    state.domain = Some("example.com".into());
    state.intervals = Some(volact_core::settings::Settings::default().intervals());
    state.last_host = Some("kms.example.com:7688".into());
    state.last_attempt = Some(Attempt {
        at: t0(),
        host: "kms.example.com:7688".into(),
        result: "count-insufficient".into(),
        count: Some(3),
        minimum: Some(25),
        message: "not yet".into(),
        retry_after: Some(t0() + SignedDuration::from_hours(2)),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep").join("er").join("client.json");
    state.save(&path).unwrap();
    assert_eq!(ClientState::load(&path).unwrap(), state);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![OsString::from("client.json")],
        "no temporary file is left behind"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn save_replaces_the_old_file_and_a_stale_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    let tmp = dir.path().join("client.json.tmp");
    std::fs::write(&tmp, "half a state from a crash").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut state = ClientState::default();
    state.save(&path).unwrap();
    state.pinned_host = Some("a:7688".into());
    state.save(&path).unwrap();
    assert_eq!(
        ClientState::load(&path).unwrap().pinned_host.as_deref(),
        Some("a:7688")
    );
    assert!(!tmp.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn a_state_with_only_a_pinned_host_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    std::fs::write(&path, r#"{"version":1,"pinned_host":"kms:7688"}"#).unwrap();
    let state = ClientState::load(&path).unwrap();
    assert_eq!(state.pinned_host.as_deref(), Some("kms:7688"));
    assert!(state.installed.is_none());
    assert!(
        state.use_host_cache,
        "the host cache is on unless turned off"
    );
}

#[test]
fn a_corrupt_file_is_invalid_state_naming_the_file_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    std::fs::write(&path, "{ not json").unwrap();
    let e = ClientState::load(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(
        e.message.contains(&path.display().to_string()),
        "{}",
        e.message
    );
    assert!(e.message.contains("install-key"), "{}", e.message);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.json");
    std::fs::write(&path, r#"{"version":3}"#).unwrap();
    let e = ClientState::load(&path).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(e.message.contains("version 3"), "{}", e.message);
}

#[test]
fn the_default_path_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let p = |pairs| state_path_from(env(pairs)).unwrap();
    assert_eq!(
        p(&[
            ("VOLACT_STATE", "/s/c.json"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h")
        ]),
        PathBuf::from("/s/c.json")
    );
    assert_eq!(
        p(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")]),
        PathBuf::from("/x/volact/client.json")
    );
    assert_eq!(
        p(&[("VOLACT_STATE", ""), ("HOME", "/h")]),
        PathBuf::from("/h/.local/share/volact/client.json")
    );
    assert_eq!(
        p(&[("XDG_DATA_HOME", "relative"), ("HOME", "/h")]),
        PathBuf::from("/h/.local/share/volact/client.json")
    );
    let e = state_path_from(env(&[])).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    assert!(e.message.contains("--state"));
}
