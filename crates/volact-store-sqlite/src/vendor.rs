//! The vendor service's store on SQLite: one database file (default `V/vendor.db`) with
//! its own migrations, on a single connection. The service answers a handful of requests
//! a minute, so one connection is plenty, and it makes every transaction (an admission's
//! check and write) run alone without SQLite's busy retries.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite};

use volact_store::vendor::{
    AdmitError, HostAdmission, HostKeyRecord, HostRecord, Revocations, RevokedEntry, RevokedKind,
    UsageFilter, UsageRecord, VendorStore,
};
use volact_store::{StoreError, StoreErrorKind};

use crate::DbError;

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "vendor service",
    include_str!("../vendor-migrations/0001_vendor.sql"),
)];

/// The vendor service's migrations, recorded apart from a host's.
const MIGRATIONS_TABLE: &str = "_volact_vendor_migrations";

fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// The vendor service's store in a SQLite file.
#[derive(Debug, Clone)]
pub struct VendorSqliteStore {
    pool: SqlitePool,
}

fn store_err(e: impl Into<DbError>) -> StoreError {
    StoreError::from(e.into())
}

fn int<T: TryFrom<i64>>(row: &sqlx::sqlite::SqliteRow, column: &str) -> Result<T, StoreError> {
    let v: i64 = row.try_get(column).map_err(store_err)?;
    T::try_from(v).map_err(|_| StoreError::corrupt(format!("{column} is out of range: {v}")))
}

fn map(text: &str) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("a usage map: {e}")))
}

fn host_key_row(row: &sqlx::sqlite::SqliteRow) -> Result<HostKeyRecord, StoreError> {
    Ok(HostKeyRecord {
        key_id: row.try_get("key_id").map_err(store_err)?,
        customer: row.try_get("customer").map_err(store_err)?,
        group: row.try_get("key_group").map_err(store_err)?,
        seats: row
            .try_get::<Option<i64>, _>("seats")
            .map_err(store_err)?
            .map(u32::try_from)
            .transpose()
            .map_err(|_| StoreError::corrupt("seats is out of range"))?,
        max_hosts: int(row, "max_hosts")?,
        max_activations: int(row, "max_activations")?,
        expires: row.try_get("expires").map_err(store_err)?,
        usage_reports: row.try_get("usage_reports").map_err(store_err)?,
        token: row.try_get("token").map_err(store_err)?,
        created: row.try_get("created").map_err(store_err)?,
        revoked_at: row.try_get("revoked_at").map_err(store_err)?,
    })
}

fn host_row(row: &sqlx::sqlite::SqliteRow) -> Result<HostRecord, StoreError> {
    Ok(HostRecord {
        key_id: row.try_get("key_id").map_err(store_err)?,
        host_id: row.try_get("host_id").map_err(store_err)?,
        host_public_key: row.try_get("host_public_key").map_err(store_err)?,
        activations: int(row, "activations")?,
        first_activated: row.try_get("first_activated").map_err(store_err)?,
        last_contact: row.try_get("last_contact").map_err(store_err)?,
        certificate_expires: row.try_get("certificate_expires").map_err(store_err)?,
        revoked_at: row.try_get("revoked_at").map_err(store_err)?,
    })
}

fn usage_row(row: &sqlx::sqlite::SqliteRow) -> Result<UsageRecord, StoreError> {
    Ok(UsageRecord {
        key_id: row.try_get("key_id").map_err(store_err)?,
        host_id: row.try_get("host_id").map_err(store_err)?,
        day: row.try_get("day").map_err(store_err)?,
        received: row.try_get("received").map_err(store_err)?,
        host_version: row.try_get("host_version").map_err(store_err)?,
        clients_known: int(row, "clients_known")?,
        products: map(&row.try_get::<String, _>("products").map_err(store_err)?)?,
        applications: map(&row
            .try_get::<String, _>("applications")
            .map_err(store_err)?)?,
        token: row.try_get("token").map_err(store_err)?,
    })
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl VendorSqliteStore {
    /// Opens (creating, mode 0600) the database at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path) -> Result<VendorSqliteStore, StoreError> {
        volact_store::private::prepare_database(path).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Unavailable,
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(store_err)?;
        migrator().run(&pool).await.map_err(store_err)?;
        Ok(VendorSqliteStore { pool })
    }
}

impl VendorSqliteStore {
    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`): another
    /// process on the same file (the CLI beside a running service) then waits its turn
    /// within the busy timeout instead of failing when its read turns into a write.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_err)
    }
}

#[async_trait]
impl VendorStore for VendorSqliteStore {
    async fn put_host_key(&self, key: &HostKeyRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO vendor_host_keys (key_id, customer, key_group, seats, max_hosts, \
             max_activations, expires, usage_reports, token, created, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&key.key_id)
        .bind(&key.customer)
        .bind(&key.group)
        .bind(key.seats.map(i64::from))
        .bind(i64::from(key.max_hosts))
        .bind(i64::from(key.max_activations))
        .bind(key.expires)
        .bind(key.usage_reports)
        .bind(&key.token)
        .bind(key.created)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                format!("host key {} is already recorded", key.key_id),
            ));
        }
        Ok(())
    }

    async fn host_key(&self, key_id: &str) -> Result<Option<HostKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM vendor_host_keys WHERE key_id = ?")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?
            .as_ref()
            .map(host_key_row)
            .transpose()
    }

    async fn host_keys(&self, customer: Option<&str>) -> Result<Vec<HostKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM vendor_host_keys WHERE ?1 IS NULL OR customer = ?1 \
             ORDER BY created, key_id",
        )
        .bind(customer)
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?
        .iter()
        .map(host_key_row)
        .collect()
    }

    async fn admit(&self, a: &HostAdmission) -> Result<u32, AdmitError> {
        let mut tx = self.begin().await?;
        let answered: Option<i64> =
            sqlx::query_scalar("SELECT at FROM vendor_answered WHERE host_id = ? AND nonce = ?")
                .bind(&a.host_id)
                .bind(&a.nonce)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        if let Some(answered_at) = answered {
            return Err(AdmitError::Replayed { answered_at });
        }
        let hosts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vendor_hosts WHERE key_id = ?")
            .bind(&a.key_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_err)?;
        let activations: Option<i64> = sqlx::query_scalar(
            "SELECT activations FROM vendor_hosts WHERE key_id = ? AND host_id = ?",
        )
        .bind(&a.key_id)
        .bind(&a.host_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_err)?;
        let activations = activations.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        volact_core::certificate::check_limits(
            &a.key_id,
            &a.host_id,
            u64::try_from(hosts).unwrap_or(0),
            activations,
            a.max_hosts,
            a.max_activations,
        )
        .map_err(AdmitError::Refused)?;
        sqlx::query("INSERT INTO vendor_answered (host_id, nonce, at) VALUES (?, ?, ?)")
            .bind(&a.host_id)
            .bind(&a.nonce)
            .bind(a.at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO vendor_hosts (key_id, host_id, host_public_key, activations, \
             first_activated, last_contact, certificate_expires) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5) \
             ON CONFLICT (key_id, host_id) DO UPDATE SET activations = activations + 1, \
             host_public_key = excluded.host_public_key, last_contact = excluded.last_contact, \
             certificate_expires = excluded.certificate_expires",
        )
        .bind(&a.key_id)
        .bind(&a.host_id)
        .bind(&a.host_public_key)
        .bind(a.at)
        .bind(a.certificate_expires)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        Ok(activations.unwrap_or(0).saturating_add(1))
    }

    async fn renew(
        &self,
        key_id: &str,
        host_id: &str,
        nonce: &str,
        at: i64,
        certificate_expires: i64,
    ) -> Result<(), AdmitError> {
        let mut tx = self.begin().await?;
        let answered: Option<i64> =
            sqlx::query_scalar("SELECT at FROM vendor_answered WHERE host_id = ? AND nonce = ?")
                .bind(host_id)
                .bind(nonce)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        if let Some(answered_at) = answered {
            return Err(AdmitError::Replayed { answered_at });
        }
        let updated = sqlx::query(
            "UPDATE vendor_hosts SET last_contact = ?, certificate_expires = ? \
             WHERE key_id = ? AND host_id = ?",
        )
        .bind(at)
        .bind(certificate_expires)
        .bind(key_id)
        .bind(host_id)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        if updated.rows_affected() == 0 {
            return Err(AdmitError::Refused(volact_core::certificate::unknown_host(
                key_id, host_id,
            )));
        }
        sqlx::query("INSERT INTO vendor_answered (host_id, nonce, at) VALUES (?, ?, ?)")
            .bind(host_id)
            .bind(nonce)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        Ok(())
    }

    async fn hosts(&self, key_id: Option<&str>) -> Result<Vec<HostRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM vendor_hosts WHERE ?1 IS NULL OR key_id = ?1 \
             ORDER BY key_id, first_activated, host_id",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(store_err)?
        .iter()
        .map(host_row)
        .collect()
    }

    async fn revoke(
        &self,
        kind: RevokedKind,
        id: &str,
        at: i64,
        reason: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO vendor_revocations (kind, id, at, reason) VALUES (?, ?, ?, ?) RETURNING seq",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(at)
        .bind(reason)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_err)?;
        let mark = match kind {
            RevokedKind::HostKey => Some(
                "UPDATE vendor_host_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            ),
            RevokedKind::Host => Some(
                "UPDATE vendor_hosts SET revoked_at = ? WHERE host_id = ? AND revoked_at IS NULL",
            ),
            RevokedKind::Delegation => None,
        };
        if let Some(sql) = mark {
            sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    async fn revocations(&self) -> Result<Revocations, StoreError> {
        let rows = sqlx::query("SELECT * FROM vendor_revocations ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        let mut out = Revocations::default();
        for row in &rows {
            let kind: String = row.try_get("kind").map_err(store_err)?;
            out.sequence = int(row, "seq")?;
            out.entries.push(RevokedEntry {
                kind: RevokedKind::parse(&kind)
                    .ok_or_else(|| StoreError::corrupt(format!("revocation kind {kind:?}")))?,
                id: row.try_get("id").map_err(store_err)?,
                at: row.try_get("at").map_err(store_err)?,
                reason: row.try_get("reason").map_err(store_err)?,
            });
        }
        Ok(out)
    }

    async fn put_usage(&self, r: &UsageRecord) -> Result<(), StoreError> {
        let json = |m: &std::collections::BTreeMap<String, u64>| {
            serde_json::to_string(m)
                .map_err(|e| StoreError::new(StoreErrorKind::Internal, e.to_string()))
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO vendor_usage (host_id, day, key_id, received, host_version, \
             clients_known, products, applications, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (host_id, day) DO UPDATE SET key_id = excluded.key_id, \
             received = excluded.received, host_version = excluded.host_version, \
             clients_known = excluded.clients_known, products = excluded.products, \
             applications = excluded.applications, token = excluded.token",
        )
        .bind(&r.host_id)
        .bind(&r.day)
        .bind(&r.key_id)
        .bind(r.received)
        .bind(&r.host_version)
        .bind(i(r.clients_known))
        .bind(json(&r.products)?)
        .bind(json(&r.applications)?)
        .bind(&r.token)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        sqlx::query(
            "UPDATE vendor_hosts SET last_contact = MAX(last_contact, ?) \
             WHERE key_id = ? AND host_id = ?",
        )
        .bind(r.received)
        .bind(&r.key_id)
        .bind(&r.host_id)
        .execute(&mut *tx)
        .await
        .map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    async fn usage(&self, f: &UsageFilter) -> Result<Vec<UsageRecord>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT u.* FROM vendor_usage u LEFT JOIN vendor_host_keys k ON k.key_id = u.key_id WHERE 1 = 1",
        );
        if let Some(key) = &f.key_id {
            q.push(" AND u.key_id = ").push_bind(key);
        }
        if let Some(customer) = &f.customer {
            q.push(" AND k.customer = ").push_bind(customer);
        }
        if let Some(from) = &f.from_day {
            q.push(" AND u.day >= ").push_bind(from);
        }
        if let Some(to) = &f.to_day {
            q.push(" AND u.day <= ").push_bind(to);
        }
        q.push(" ORDER BY u.day, u.host_id");
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?
            .iter()
            .map(usage_row)
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
