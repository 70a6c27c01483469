//! The store conformance suite (from `volact-store`) run against [`SqliteStore`], plus what only the SQLite
//! backend has: a file that outlives the store, a read-only mode, bulk speed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tempfile::TempDir;
use volact_store::conformance::{TestResult, rec, refused};
use volact_store::{
    ActivationRecord, ClientFilter, EventFilter, Store, StoreError, StoreErrorKind,
};
use volact_store_sqlite::SqliteStore;

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("volact.db")
}

async fn open_sqlite() -> TestResult<(SqliteStore, TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&db_path(&dir)).await?;
    Ok((store, dir))
}

volact_store::conformance_tests!(open_sqlite);

fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[tokio::test]
async fn open_creates_the_file_in_wal_mode_and_is_repeatable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await?;
    assert!(path.is_file());
    store.record_batch(&[rec(1, "a")]).await?;
    // Committed data waits in the write-ahead log until a checkpoint.
    assert!(wal_of(&path).is_file());

    // A second opener (say, a CLI command while the host runs) finds the schema in place
    // and, the journal being owned by the first, writes straight to the database. It
    // sees what the first has applied from its journal, which a read on the first does.
    let second = SqliteStore::open(&path).await?;
    assert_eq!(store.client_total().await?, 1);
    assert_eq!(second.client_total().await?, 1);
    second.record_batch(&[rec(2, "b")]).await?;
    assert_eq!(store.client_total().await?, 2);
    second.close().await;
    store.close().await;
    Ok(())
}

/// The written bytes of the activation journal beside `path`: its segments hold no row
/// once applied (the current one is empty, or zeros when prepared ahead; the spare is
/// not a segment).
fn journal_rows(path: &Path) -> TestResult<u64> {
    let dir = path.with_file_name("volact-journal");
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".log") {
            let written = std::fs::read(entry.path())?
                .iter()
                .filter(|&&b| b != 0)
                .count();
            bytes += written as u64;
        }
    }
    Ok(bytes)
}

#[tokio::test]
async fn acknowledged_activations_still_in_the_journal_are_applied_at_the_next_open() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let path = db_path(&dir);
    {
        let store = SqliteStore::open(&path).await?;
        store.record_batch(&[rec(10, "a"), rec(11, "b")]).await?;
        store.record_batch(&[rec(12, "a")]).await?;
        // Dropped at once, as by a crash: durable in the journal, not yet applied.
    }
    assert!(journal_rows(&path)? > 0);
    let before = SqliteStore::open_read_only(&path).await?;
    assert_eq!(before.client_total().await?, 0);
    before.close().await;

    let store = SqliteStore::open(&path).await?;
    assert_eq!(journal_rows(&path)?, 0, "applied rows leave the journal");
    assert_eq!(store.client_total().await?, 2);
    let a = store.client("a").await?.ok_or("client a is missing")?;
    assert_eq!((a.requests, a.last_seen), (2, 12));
    assert_eq!(store.events(&EventFilter::default()).await?.len(), 3);
    // New activations continue the journal's numbering: nothing is applied twice.
    store.record_batch(&[rec(13, "c")]).await?;
    assert_eq!(store.events(&EventFilter::default()).await?.len(), 4);
    store.close().await;
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.events(&EventFilter::default()).await?.len(), 4);
    assert_eq!(store.result_totals().await?, vec![("activated".into(), 4)]);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn a_direct_store_applies_a_left_journal_and_writes_straight_through() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db_path(&dir);
    {
        let store = SqliteStore::open(&path).await?;
        store.record_batch(&[rec(10, "a")]).await?;
    }
    let direct = SqliteStore::open_direct(&path).await?;
    direct.record_batch(&[rec(20, "b")]).await?;
    assert_eq!(journal_rows(&path)?, 0);
    let reader = SqliteStore::open_read_only(&path).await?;
    assert_eq!(reader.client_total().await?, 2);
    reader.close().await;
    direct.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_applied_in_order_and_once() -> TestResult {
    let (store, dir) = open_sqlite().await?;
    let mut tasks = Vec::new();
    for t in 0..4_i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50_i64 {
                let id = format!("client-{t}-{}", i % 7);
                store.record_batch(&[rec(1_000 + i, &id)]).await?;
            }
            Ok::<(), StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    assert_eq!(store.client_total().await?, 28);
    let events = store.events(&EventFilter::default()).await?;
    assert_eq!(events.len(), 200);
    let total: u64 = store
        .clients(&ClientFilter::default())
        .await?
        .iter()
        .map(|c| c.requests)
        .sum();
    assert_eq!(total, 200);
    store.close().await;
    let reopened = SqliteStore::open(&db_path(&dir)).await?;
    assert_eq!(reopened.events(&EventFilter::default()).await?.len(), 200);
    reopened.close().await;
    Ok(())
}

#[tokio::test]
async fn data_survives_reopening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db_path(&dir);
    let clients;
    let events;
    {
        let store = SqliteStore::open(&path).await?;
        store
            .record_batch(&[rec(10, "a"), refused(20, "b", "clock-skew")])
            .await?;
        store.record_batch(&[rec(30, "a")]).await?;
        store.set_revoked("b", true, Some("lost"), 40).await?;
        clients = store.clients(&ClientFilter::default()).await?;
        events = store.events(&EventFilter::default()).await?;
        // Dropped without close(): only what record_batch made durable may be relied on.
    }
    let store = SqliteStore::open(&path).await?;
    assert_eq!(store.clients(&ClientFilter::default()).await?, clients);
    assert_eq!(store.events(&EventFilter::default()).await?, events);
    assert_eq!(
        store.result_totals().await?,
        vec![("activated".into(), 2), ("clock-skew".into(), 1)]
    );
    assert_eq!(store.counted_clients(0).await?.len(), 1);
    let b = store.client("b").await?.ok_or("client b is missing")?;
    assert!(b.revoked);
    assert_eq!(b.revoked_reason.as_deref(), Some("lost"));

    // After a clean close the main file alone holds everything.
    store.close().await;
    assert!(!wal_of(&path).exists() || std::fs::metadata(wal_of(&path))?.len() == 0);
    let store = SqliteStore::open_read_only(&path).await?;
    assert_eq!(store.clients(&ClientFilter::default()).await?, clients);
    assert_eq!(store.events(&EventFilter::default()).await?, events);
    Ok(())
}

#[tokio::test]
async fn read_only_opens_only_an_existing_volact_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db_path(&dir);

    let missing = SqliteStore::open_read_only(&path).await;
    assert!(
        matches!(&missing, Err(e) if e.kind() == StoreErrorKind::Unavailable
            && e.message().contains("start the host once")),
        "{missing:?}"
    );
    assert!(!path.exists(), "a read-only open must not create the file");

    std::fs::write(&path, b"")?;
    let empty = SqliteStore::open_read_only(&path).await;
    assert!(
        matches!(&empty, Err(e) if e.kind() == StoreErrorKind::Corrupt),
        "{empty:?}"
    );
    std::fs::remove_file(&path)?;

    let writer = SqliteStore::open(&path).await?;
    writer.record_batch(&[rec(5, "a")]).await?;
    assert_eq!(writer.client_total().await?, 1);

    // Reads see the writer's data while it runs; writes are refused.
    let reader = SqliteStore::open_read_only(&path).await?;
    assert_eq!(reader.client_total().await?, 1);
    let refused_write = reader.record_batch(&[rec(6, "b")]).await;
    assert!(
        matches!(&refused_write, Err(e) if e.kind() == StoreErrorKind::Invalid),
        "a write to a read-only store cannot succeed later: {refused_write:?}"
    );
    assert!(reader.set_revoked("a", true, None, 7).await.is_err());
    assert!(reader.prune_events(i64::MAX).await.is_err());

    // A reader sees what the writer has applied from its journal: at once after a read
    // on the writer, else within about a second.
    writer.record_batch(&[rec(8, "c")]).await?;
    assert_eq!(writer.client_total().await?, 2);
    assert_eq!(reader.client_total().await?, 2);
    reader.close().await;
    writer.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_clients() -> TestResult {
    let (store, _dir) = open_sqlite().await?;
    let clients: i64 = 100_000;
    let applications = ["office", "cad", "erp"];
    let records: Vec<ActivationRecord> = (0..clients)
        .map(|i| {
            let mut r = rec(1_000 + i, &format!("{i:032x}"));
            let app = applications[usize::try_from(i % 3).unwrap_or(0)];
            r.application = app.to_owned();
            r.product = format!("{app}-pro");
            // One in ten is refused before counting, so it is listed but not counted.
            if i % 10 == 9 {
                r.counted = false;
            }
            r
        })
        .collect();

    let started = Instant::now();
    for batch in records.chunks(500) {
        store.record_batch(batch).await?;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "recorded {clients} activations in {elapsed:?} ({:.0}/s)",
        clients as f64 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let counts = store.count_by_application(0).await?;
    eprintln!("count_by_application took {:?}", started.elapsed());
    let expected = |app: usize| {
        let app = i64::try_from(app).unwrap_or(0);
        (0..clients).filter(|i| i % 3 == app && i % 10 != 9).count() as u64
    };
    assert_eq!(
        counts,
        vec![
            ("cad".to_owned(), expected(1)),
            ("erp".to_owned(), expected(2)),
            ("office".to_owned(), expected(0)),
        ]
    );
    // Half the window: only the newer half counts.
    let half = store.count_by_application(1_000 + clients / 2).await?;
    let total_half: u64 = half.iter().map(|(_, n)| n).sum();
    assert_eq!(total_half, 45_000);

    let started = Instant::now();
    let counted = store.counted_clients(0).await?;
    eprintln!("counted_clients took {:?}", started.elapsed());
    assert_eq!(counted.len(), 90_000);
    assert_eq!(store.client_total().await?, 100_000);

    let started = Instant::now();
    let page = store
        .clients(&ClientFilter {
            application: Some("cad".into()),
            limit: Some(50),
            ..Default::default()
        })
        .await?;
    eprintln!("a page of the inventory took {:?}", started.elapsed());
    assert_eq!(page.len(), 50);
    assert_eq!(page[0].last_seen, 1_000 + clients - 3);
    Ok(())
}

/// A fresh vendor store in a temporary directory.
async fn open_vendor() -> TestResult<(volact_store_sqlite::VendorSqliteStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = volact_store_sqlite::VendorSqliteStore::open(&dir.path().join("vendor.db")).await?;
    Ok((store, dir))
}

mod vendor {
    use super::open_vendor;
    volact_store::vendor_conformance_tests!(open_vendor);
}
