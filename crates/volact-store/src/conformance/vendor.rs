//! The behaviour every [`VendorStore`] backend must have. A backend's test file runs them
//! with `volact_store::vendor_conformance_tests!(open_fn)` (or `optional open_fn`), as
//! [`crate::conformance_tests`] does for the host's store.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::TestResult;
use crate::StoreErrorKind;
use crate::vendor::{
    AdmitError, HostAdmission, HostKeyRecord, RevokedKind, UsageFilter, UsageRecord, VendorStore,
};
use volact_proto::ErrorCode;

/// Runs every vendor conformance check, each as a test on a fresh store from `$open`.
#[macro_export]
macro_rules! vendor_conformance_tests {
    ($open:path) => {
        $crate::vendor_conformance_tests!(@names @each $open);
    };
    (optional $open:path) => {
        $crate::vendor_conformance_tests!(@names @optional $open);
    };
    (@names @ $how:ident $open:path) => {
        $crate::vendor_conformance_tests!(@ $how $open;
            vendor_host_keys_are_records_and_a_duplicate_is_refused,
            vendor_admission_counts_hosts_and_activations_with_the_numbers,
            vendor_a_replayed_request_is_refused_and_spends_nothing,
            vendor_renewal_spends_no_activation_and_refuses_replays_and_strangers,
            vendor_revocations_raise_the_sequence_and_mark_records,
            vendor_usage_reports_replace_per_day_and_filter,
            vendor_concurrent_admissions_never_exceed_the_host_limit,
        );
    };
    (@each $open:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::conformance::TestResult {
                let (store, _guard) = $open().await?;
                $crate::conformance::vendor::$name(std::sync::Arc::new(store)).await
            }
        )*
    };
    (@optional $open:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> $crate::conformance::TestResult {
                let Some((store, _guard)) = $open(stringify!($name)).await? else {
                    return Ok(());
                };
                $crate::conformance::vendor::$name(std::sync::Arc::new(store)).await
            }
        )*
    };
}

/// A host key record of `customer`.
pub fn key(key_id: &str, customer: &str) -> HostKeyRecord {
    HostKeyRecord {
        key_id: key_id.to_owned(),
        customer: customer.to_owned(),
        group: "office".to_owned(),
        seats: Some(50),
        max_hosts: 2,
        max_activations: 3,
        expires: Some(9_000),
        usage_reports: true,
        token: format!("v4.public.{key_id}"),
        created: 100,
        revoked_at: None,
    }
}

/// An admission of `host` on `key` with `nonce` at `at`, limits 2 hosts × 3 activations.
pub fn admission(key: &str, host: &str, nonce: &str, at: i64) -> HostAdmission {
    HostAdmission {
        key_id: key.to_owned(),
        host_id: host.to_owned(),
        host_public_key: format!("k4.public.{host}"),
        nonce: nonce.to_owned(),
        at,
        certificate_expires: at + 1000,
        max_hosts: 2,
        max_activations: 3,
    }
}

fn refused_code(r: Result<u32, AdmitError>) -> (ErrorCode, serde_json::Value) {
    match r {
        Err(AdmitError::Refused(e)) => (e.code, e.details),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Host keys are kept whole, listed by customer, and an id is recorded once.
pub async fn vendor_host_keys_are_records_and_a_duplicate_is_refused<S: VendorStore>(
    store: Arc<S>,
) -> TestResult {
    store.put_host_key(&key("hk-1", "Acme")).await?;
    store.put_host_key(&key("hk-2", "Globex")).await?;
    let mut third = key("hk-3", "Acme");
    third.seats = None;
    third.expires = None;
    third.usage_reports = false;
    store.put_host_key(&third).await?;
    assert_eq!(store.host_key("hk-1").await?, Some(key("hk-1", "Acme")));
    assert_eq!(store.host_key("hk-3").await?, Some(third));
    assert_eq!(store.host_key("nope").await?, None);
    let acme: Vec<String> = store
        .host_keys(Some("Acme"))
        .await?
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(acme, ["hk-1", "hk-3"]);
    assert_eq!(store.host_keys(None).await?.len(), 3);
    let e = store.put_host_key(&key("hk-1", "Other")).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict);
    assert_eq!(
        store.host_key("hk-1").await?.map(|k| k.customer),
        Some("Acme".into())
    );
    Ok(())
}

/// A new host takes a slot, a known one does not; past either limit the refusal has the
/// numbers, and nothing is recorded.
pub async fn vendor_admission_counts_hosts_and_activations_with_the_numbers<S: VendorStore>(
    store: Arc<S>,
) -> TestResult {
    assert_eq!(
        store.admit(&admission("hk", "h1", "n1", 10)).await.ok(),
        Some(1)
    );
    assert_eq!(
        store.admit(&admission("hk", "h1", "n2", 20)).await.ok(),
        Some(2)
    );
    assert_eq!(
        store.admit(&admission("hk", "h2", "n3", 30)).await.ok(),
        Some(1)
    );
    let (code, details) = refused_code(store.admit(&admission("hk", "h3", "n4", 40)).await);
    assert_eq!(code, ErrorCode::HostKeyActivationLimit);
    assert_eq!(details["hosts"], 2);
    assert_eq!(details["max_hosts"], 2);
    assert_eq!(
        store.admit(&admission("hk", "h1", "n5", 50)).await.ok(),
        Some(3)
    );
    let (code, details) = refused_code(store.admit(&admission("hk", "h1", "n6", 60)).await);
    assert_eq!(code, ErrorCode::HostKeyActivationLimit);
    assert_eq!(details["activations"], 3);
    assert_eq!(details["max_activations"], 3);
    // Another key has its own slots.
    assert_eq!(
        store.admit(&admission("other", "h3", "n7", 70)).await.ok(),
        Some(1)
    );

    let hosts = store.hosts(Some("hk")).await?;
    let summary: Vec<(String, u32, i64, i64)> = hosts
        .iter()
        .map(|h| {
            (
                h.host_id.clone(),
                h.activations,
                h.first_activated,
                h.last_contact,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("h1".into(), 3, 10, 50), ("h2".into(), 1, 30, 30)]
    );
    assert_eq!(hosts[0].host_public_key, "k4.public.h1");
    assert_eq!(hosts[0].certificate_expires, 1050);
    assert_eq!(store.hosts(None).await?.len(), 3);
    Ok(())
}

/// The same (host, nonce) is answered once, whatever else changed.
pub async fn vendor_a_replayed_request_is_refused_and_spends_nothing<S: VendorStore>(
    store: Arc<S>,
) -> TestResult {
    store.admit(&admission("hk", "h1", "n1", 10)).await.ok();
    match store.admit(&admission("hk", "h1", "n1", 99)).await {
        Err(AdmitError::Replayed { answered_at }) => assert_eq!(answered_at, 10),
        other => panic!("expected a replay refusal, got {other:?}"),
    }
    assert_eq!(store.hosts(Some("hk")).await?[0].activations, 1);
    // The nonce is the host's: another host may use the same one.
    assert_eq!(
        store.admit(&admission("hk", "h2", "n1", 20)).await.ok(),
        Some(1)
    );
    Ok(())
}

/// A renewal updates the host and spends nothing; a replay, or a host the key never
/// activated, is refused.
pub async fn vendor_renewal_spends_no_activation_and_refuses_replays_and_strangers<
    S: VendorStore,
>(
    store: Arc<S>,
) -> TestResult {
    store.admit(&admission("hk", "h1", "n1", 10)).await.ok();
    store.renew("hk", "h1", "r1", 500, 5000).await.ok();
    let h = &store.hosts(Some("hk")).await?[0];
    assert_eq!(
        (h.activations, h.last_contact, h.certificate_expires),
        (1, 500, 5000)
    );
    assert!(matches!(
        store.renew("hk", "h1", "r1", 600, 6000).await,
        Err(AdmitError::Replayed { answered_at: 500 })
    ));
    assert!(matches!(
        store.renew("hk", "h1", "n1", 600, 6000).await,
        Err(AdmitError::Replayed { answered_at: 10 })
    ));
    match store.renew("other", "h1", "r2", 600, 6000).await {
        Err(AdmitError::Refused(e)) => assert_eq!(e.code, ErrorCode::UntrustedHost),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.hosts(Some("hk")).await?[0].certificate_expires, 5000);
    Ok(())
}

/// Every revocation raises the list's sequence and marks what it names.
pub async fn vendor_revocations_raise_the_sequence_and_mark_records<S: VendorStore>(
    store: Arc<S>,
) -> TestResult {
    assert_eq!(store.revocations().await?.sequence, 0);
    store.put_host_key(&key("hk-1", "Acme")).await?;
    store.admit(&admission("hk-2", "h1", "n1", 10)).await.ok();
    let s1 = store
        .revoke(RevokedKind::HostKey, "hk-1", 100, Some("contract ended"))
        .await?;
    let s2 = store.revoke(RevokedKind::Host, "h1", 200, None).await?;
    let s3 = store
        .revoke(RevokedKind::Delegation, "sk-1", 300, Some("key lost"))
        .await?;
    assert!(s1 < s2 && s2 < s3, "{s1} {s2} {s3}");
    let r = store.revocations().await?;
    assert_eq!(r.sequence, s3);
    let entries: Vec<(RevokedKind, &str, i64, Option<&str>)> = r
        .entries
        .iter()
        .map(|e| (e.kind, e.id.as_str(), e.at, e.reason.as_deref()))
        .collect();
    assert_eq!(
        entries,
        [
            (RevokedKind::HostKey, "hk-1", 100, Some("contract ended")),
            (RevokedKind::Host, "h1", 200, None),
            (RevokedKind::Delegation, "sk-1", 300, Some("key lost")),
        ]
    );
    assert_eq!(
        store.host_key("hk-1").await?.and_then(|k| k.revoked_at),
        Some(100)
    );
    assert_eq!(store.hosts(Some("hk-2")).await?[0].revoked_at, Some(200));
    Ok(())
}

fn report(key: &str, host: &str, day: &str, received: i64, clients: u64) -> UsageRecord {
    UsageRecord {
        key_id: key.to_owned(),
        host_id: host.to_owned(),
        day: day.to_owned(),
        received,
        host_version: "0.1.0".to_owned(),
        clients_known: clients,
        products: BTreeMap::from([("demo-os-workstation".to_owned(), clients)]),
        applications: BTreeMap::from([("demo-os".to_owned(), clients)]),
        token: format!("v4.public.{host}.{day}.{received}"),
    }
}

/// A later report of the same host and day replaces the earlier; reports are read by
/// key, customer and days, and note the host's contact.
pub async fn vendor_usage_reports_replace_per_day_and_filter<S: VendorStore>(
    store: Arc<S>,
) -> TestResult {
    store.put_host_key(&key("hk-1", "Acme")).await?;
    store.put_host_key(&key("hk-2", "Globex")).await?;
    store.admit(&admission("hk-1", "h1", "n1", 10)).await.ok();
    store
        .put_usage(&report("hk-1", "h1", "2026-12-01", 1000, 5))
        .await?;
    store
        .put_usage(&report("hk-1", "h1", "2026-12-02", 2000, 7))
        .await?;
    store
        .put_usage(&report("hk-1", "h1", "2026-12-02", 2500, 8))
        .await?;
    store
        .put_usage(&report("hk-2", "h9", "2026-12-02", 2600, 30))
        .await?;

    let all = store.usage(&UsageFilter::default()).await?;
    let seen: Vec<(&str, &str, u64)> = all
        .iter()
        .map(|r| (r.day.as_str(), r.host_id.as_str(), r.clients_known))
        .collect();
    assert_eq!(
        seen,
        [
            ("2026-12-01", "h1", 5),
            ("2026-12-02", "h1", 8),
            ("2026-12-02", "h9", 30)
        ]
    );
    assert_eq!(all[1], report("hk-1", "h1", "2026-12-02", 2500, 8));
    let acme = store
        .usage(&UsageFilter {
            customer: Some("Acme".into()),
            ..UsageFilter::default()
        })
        .await?;
    assert_eq!(acme.len(), 2);
    let days = store
        .usage(&UsageFilter {
            key_id: Some("hk-1".into()),
            from_day: Some("2026-12-02".into()),
            to_day: Some("2026-12-31".into()),
            ..UsageFilter::default()
        })
        .await?;
    assert_eq!(days.len(), 1);
    assert_eq!(store.hosts(Some("hk-1")).await?[0].last_contact, 2500);
    Ok(())
}

/// Twenty hosts asking at once on a key for 6 hosts: exactly 6 are admitted.
pub async fn vendor_concurrent_admissions_never_exceed_the_host_limit<S: VendorStore + 'static>(
    store: Arc<S>,
) -> TestResult {
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = admission("hk", &format!("h{n}"), "n", 10);
            a.max_hosts = 6;
            store.admit(&a).await
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => admitted += 1,
            Err(AdmitError::Refused(e)) => assert_eq!(e.code, ErrorCode::HostKeyActivationLimit),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 6);
    assert_eq!(store.hosts(Some("hk")).await?.len(), 6);
    Ok(())
}
