//! The vendor service's store on PostgreSQL: its own tables (`vendor_…`) and migrations
//! (recorded in `_volact_vendor_migrations`), so it may share a database with hosts.
//! Several service processes may share it: an admission holds a transaction-scoped
//! advisory lock on its host key, so two processes never both take a key's last slot.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, SqlSafeStr};

use volact_store::vendor::{
    AdmitError, HostAdmission, HostKeyRecord, HostRecord, Revocations, RevokedEntry, RevokedKind,
    UsageFilter, UsageRecord, VendorStore,
};
use volact_store::{StoreError, StoreErrorKind};

use crate::{DbError, PgOptions, PgStore};

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

/// The vendor service's store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgVendorStore {
    pool: PgPool,
}

fn store_err(e: impl Into<DbError>) -> StoreError {
    StoreError::from(e.into())
}

fn int<T: TryFrom<i64>>(row: &PgRow, column: &str) -> Result<T, StoreError> {
    let v: i64 = row.try_get(column).map_err(store_err)?;
    T::try_from(v).map_err(|_| StoreError::corrupt(format!("{column} is out of range: {v}")))
}

fn map(text: &str) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("a usage map: {e}")))
}

fn host_key_row(row: &PgRow) -> Result<HostKeyRecord, StoreError> {
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

fn host_row(row: &PgRow) -> Result<HostRecord, StoreError> {
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

fn usage_row(row: &PgRow) -> Result<UsageRecord, StoreError> {
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

impl PgVendorStore {
    /// Connects to the database `url` names (as [`PgStore::open`] does: TLS, password,
    /// pool size) and brings the vendor schema up to date.
    pub async fn open(url: &str, options: &PgOptions) -> Result<PgVendorStore, StoreError> {
        let connect = PgStore::connect_options(url, options)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.unwrap_or(4).clamp(1, 64))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(connect)
            .await
            .map_err(store_err)?;
        migrator().run(&pool).await.map_err(store_err)?;
        Ok(PgVendorStore { pool })
    }
}

#[async_trait]
impl VendorStore for PgVendorStore {
    async fn put_host_key(&self, key: &HostKeyRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO vendor_host_keys (key_id, customer, key_group, seats, max_hosts, \
             max_activations, expires, usage_reports, token, created, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (key_id) DO NOTHING",
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
        sqlx::query("SELECT * FROM vendor_host_keys WHERE key_id = $1")
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
            "SELECT * FROM vendor_host_keys WHERE $1::text IS NULL OR customer = $1 \
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
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7688))")
            .bind(&a.key_id)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let answered: Option<i64> =
            sqlx::query_scalar("SELECT at FROM vendor_answered WHERE host_id = $1 AND nonce = $2")
                .bind(&a.host_id)
                .bind(&a.nonce)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        if let Some(answered_at) = answered {
            return Err(AdmitError::Replayed { answered_at });
        }
        let hosts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vendor_hosts WHERE key_id = $1")
            .bind(&a.key_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_err)?;
        let activations: Option<i64> = sqlx::query_scalar(
            "SELECT activations FROM vendor_hosts WHERE key_id = $1 AND host_id = $2",
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
        sqlx::query("INSERT INTO vendor_answered (host_id, nonce, at) VALUES ($1, $2, $3)")
            .bind(&a.host_id)
            .bind(&a.nonce)
            .bind(a.at)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        sqlx::query(
            "INSERT INTO vendor_hosts (key_id, host_id, host_public_key, activations, \
             first_activated, last_contact, certificate_expires) VALUES ($1, $2, $3, 1, $4, $4, $5) \
             ON CONFLICT (key_id, host_id) DO UPDATE SET activations = vendor_hosts.activations + 1, \
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
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        // The key's lock, as for an admission: two copies of one renewal arriving at
        // once then meet as a replay, not as a constraint violation.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7688))")
            .bind(key_id)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let answered: Option<i64> =
            sqlx::query_scalar("SELECT at FROM vendor_answered WHERE host_id = $1 AND nonce = $2")
                .bind(host_id)
                .bind(nonce)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        if let Some(answered_at) = answered {
            return Err(AdmitError::Replayed { answered_at });
        }
        let updated = sqlx::query(
            "UPDATE vendor_hosts SET last_contact = $1, certificate_expires = $2 \
             WHERE key_id = $3 AND host_id = $4",
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
        sqlx::query("INSERT INTO vendor_answered (host_id, nonce, at) VALUES ($1, $2, $3)")
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
            "SELECT * FROM vendor_hosts WHERE $1::text IS NULL OR key_id = $1 \
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
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        // Revocations commit one at a time, so their sequence numbers become visible in
        // order: a reader never publishes N+1 while N is still uncommitted.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('vendor_revocations', 7688))")
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO vendor_revocations (kind, id, at, reason) VALUES ($1, $2, $3, $4) RETURNING seq",
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
                "UPDATE vendor_host_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
            ),
            RevokedKind::Host => Some(
                "UPDATE vendor_hosts SET revoked_at = $1 WHERE host_id = $2 AND revoked_at IS NULL",
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
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        sqlx::query(
            "INSERT INTO vendor_usage (host_id, day, key_id, received, host_version, \
             clients_known, products, applications, token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
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
            "UPDATE vendor_hosts SET last_contact = GREATEST(last_contact, $1) \
             WHERE key_id = $2 AND host_id = $3",
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
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
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
