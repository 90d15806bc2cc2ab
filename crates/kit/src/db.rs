//! Databases: one sqlx `Any` pool per service, with runtime queries, so one
//! code path serves SQLite and PostgreSQL. The URL's scheme picks the backend.
//!
//! Portable SQL rules used across the services: `$1` placeholders, ids as
//! TEXT (UUID v7), times as BIGINT microseconds since the epoch (UTC), and
//! flags as BIGINT 0/1, because the `Any` driver reads no SQLite booleans.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, Migrator};
use sqlx::{AnyPool, Executor};

use crate::config::BadSetting;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, BadSetting> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            other => Err(BadSetting::new(
                "database_url",
                format!("unknown scheme {other:?}; use sqlite://PATH or postgres://HOST/DB"),
            )),
        }
    }
}

/// A service's database: its pool and which backend it speaks.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// A service's migrations for both backends, embedded with `sqlx::migrate!`.
pub struct Migrations {
    pub sqlite: Migrator,
    pub postgres: Migrator,
}

/// kit's own tables (the event outbox), which every service database holds.
static KIT_SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static KIT_POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Versions below this belong to kit; services number theirs from here.
pub const SERVICE_MIGRATIONS_START: i64 = 1000;

impl Db {
    /// Connects, with `max_connections` at most. SQLite runs in WAL mode with
    /// a busy timeout, so readers never block the writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, BadSetting> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let pool = options
            .connect(url)
            .await
            .map_err(|e| BadSetting::new("database_url", format!("cannot connect: {e}")))?;
        Ok(Self { pool, backend })
    }

    /// Runs kit's migrations and then the service's, for this backend.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), BadSetting> {
        let (kit, own) = match self.backend {
            Backend::Sqlite => (&KIT_SQLITE, &service.sqlite),
            Backend::Postgres => (&KIT_POSTGRES, &service.postgres),
        };
        let mut all: Vec<Migration> = kit.iter().cloned().collect();
        for migration in own.iter() {
            if migration.version < SERVICE_MIGRATIONS_START {
                return Err(BadSetting::new(
                    "migrations",
                    format!(
                        "service migration {} must be numbered from {SERVICE_MIGRATIONS_START}",
                        migration.version
                    ),
                ));
            }
            all.push(migration.clone());
        }
        let migrator = Migrator {
            migrations: Cow::Owned(all),
            ..Migrator::DEFAULT
        };
        // PostgreSQL serialises concurrent migrators with an advisory lock.
        // SQLite has none, so a replica that loses the race to apply a
        // migration runs again and finds it applied.
        let attempts = if self.backend == Backend::Sqlite {
            5
        } else {
            1
        };
        let mut last_error = None;
        for _ in 0..attempts {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        let error = last_error.map(|e| e.to_string()).unwrap_or_default();
        Err(BadSetting::new(
            "database_url",
            format!("migration failed: {error}"),
        ))
    }

    /// Reports the pool's connections as OpenTelemetry's database client
    /// metrics, read at each export: `db.client.connection.count` by
    /// `db.client.connection.state` (`idle`, `used`) and
    /// `db.client.connection.max`, both per `db.client.connection.pool.name`
    /// (the service), so a pool that runs dry shows before calls time out.
    pub fn observe_pool(&self, pool_name: &str) {
        use opentelemetry::KeyValue;
        let meter = crate::telemetry::meter();
        let pool = self.pool.clone();
        let name = KeyValue::new("db.client.connection.pool.name", pool_name.to_string());
        let attributes = name.clone();
        let _count = meter
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Connections of the pool, by state")
            .with_callback(move |observer| {
                let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
                let open = i64::from(pool.size());
                for (state, value) in [("idle", idle), ("used", (open - idle).max(0))] {
                    observer.observe(
                        value,
                        &[
                            attributes.clone(),
                            KeyValue::new("db.client.connection.state", state),
                        ],
                    );
                }
            })
            .build();
        let max = i64::from(self.pool.options().get_max_connections());
        let _max = meter
            .i64_observable_up_down_counter("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("The most connections the pool may open")
            .with_callback(move |observer| observer.observe(max, std::slice::from_ref(&name)))
            .build();
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock up front, so it waits on the busy timeout instead of failing
    /// when it upgrades from reading.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

impl Backend {
    /// The clause that locks the rows a SELECT reads until the transaction
    /// ends. SQLite needs none: `begin_write` already holds the one write lock.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

/// A new time-ordered id.
/// `$first, $first+1, …` for `count` values: the bind markers both
/// backends accept, for an `IN (…)` of a given length.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use crate::ids::new_id;

/// Whether an error is a uniqueness violation, on either backend.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
