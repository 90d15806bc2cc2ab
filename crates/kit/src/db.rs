//! Databases: one sqlx `Any` pool per service, with runtime queries, so one
//! code path serves SQLite and PostgreSQL. The URL's scheme picks the backend.
//!
//! Portable SQL rules used across the services: `$1` placeholders, ids as
//! TEXT (UUID v7), times as BIGINT microseconds since the epoch (UTC), and
//! flags as BIGINT 0/1, because the `Any` driver reads no SQLite booleans.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, Migrator};
use sqlx::{AnyPool, Executor};

use crate::config::BadSetting;

mod statement;

pub use statement::{Param, Params, execute, exists, fetch_all, fetch_one, fetch_optional, scalar};

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
    /// Where write transactions run: on SQLite a pool of one connection,
    /// so writers queue for the one write lock in order, in the process,
    /// instead of in SQLite's busy handler, which sleeps 1, 2, 5, … 100 ms
    /// between tries and left the machine idle while writers waited; on
    /// PostgreSQL the pool itself.
    writer: AnyPool,
    /// Write transactions waiting for the writer's connection.
    waiting_writes: Arc<AtomicI64>,
}

/// A service's migrations, embedded with `sqlx::migrate!` from one
/// directory. Both backends run every file in `migrations/`; a version whose
/// SQL differs between them is left out of it and written once per backend,
/// in `migrations/sqlite/` and `migrations/postgres/`:
///
/// ```text
/// migrations/1000_agents.sql                                  both backends
/// migrations/sqlite/1001_versions_templates_default.sql       SQLite
/// migrations/postgres/1001_versions_templates_default.sql     PostgreSQL
/// ```
///
/// sqlx records each applied version's checksum and refuses a database
/// whose applied file has since changed a byte, so a file moves between
/// these directories only unchanged, and only from a backend's directory to
/// the shared one when both backends' files are identical.
pub struct Migrations {
    /// The files both backends run.
    pub shared: Migrator,
    /// The versions only SQLite runs, each also in `postgres_only`.
    pub sqlite_only: Migrator,
    /// The versions only PostgreSQL runs, each also in `sqlite_only`.
    pub postgres_only: Migrator,
}

impl Migrations {
    /// A service whose SQL is the same on both backends.
    pub const fn shared(shared: Migrator) -> Self {
        Self {
            shared,
            sqlite_only: Migrator::DEFAULT,
            postgres_only: Migrator::DEFAULT,
        }
    }

    /// What `backend` runs, kit's migrations first, in version order. Both
    /// backends must run the same steps (versions and descriptions): a
    /// version written for one backend alone would leave the other's schema
    /// a step behind.
    fn for_backend(&self, kit: &Migrations, backend: Backend) -> Result<Migrator, BadSetting> {
        let sqlite = self.merged(kit, Backend::Sqlite)?;
        let postgres = self.merged(kit, Backend::Postgres)?;
        let steps = |all: &[Migration]| -> Vec<(i64, String)> {
            all.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let (sqlite_steps, postgres_steps) = (steps(&sqlite), steps(&postgres));
        let unpaired = sqlite_steps
            .iter()
            .find(|step| !postgres_steps.contains(step))
            .or_else(|| {
                postgres_steps
                    .iter()
                    .find(|step| !sqlite_steps.contains(step))
            });
        if let Some((version, description)) = unpaired {
            return Err(BadSetting::new(
                "migrations",
                format!(
                    "migration {version} ({description}) is not the same step on both backends; \
                     write it in migrations/ or in both migrations/sqlite/ and migrations/postgres/"
                ),
            ));
        }
        let migrations = match backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        Ok(Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        })
    }

    /// kit's migrations and this service's shared and `backend` files, each
    /// version once, sorted.
    fn merged(&self, kit: &Migrations, backend: Backend) -> Result<Vec<Migration>, BadSetting> {
        let own = match backend {
            Backend::Sqlite => &self.sqlite_only,
            Backend::Postgres => &self.postgres_only,
        };
        let kit_only = match backend {
            Backend::Sqlite => &kit.sqlite_only,
            Backend::Postgres => &kit.postgres_only,
        };
        let mut all: Vec<Migration> = kit.shared.iter().chain(kit_only.iter()).cloned().collect();
        for migration in self.shared.iter().chain(own.iter()) {
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
        all.sort_by_key(|m| m.version);
        if let Some(twice) = all.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(BadSetting::new(
                "migrations",
                format!(
                    "migration {} is written twice; a version is either shared or written per backend",
                    twice[0].version
                ),
            ));
        }
        Ok(all)
    }
}

/// kit's own tables (the event outbox), which every service database holds.
static KIT: Migrations = Migrations::shared(sqlx::migrate!("./migrations"));

/// Versions below this belong to kit; services number theirs from here.
pub const SERVICE_MIGRATIONS_START: i64 = 1000;

impl Db {
    /// Connects, with `max_connections` at most. SQLite runs in WAL mode with
    /// a busy timeout, so readers never block the writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, BadSetting> {
        install_default_drivers();
        let backend = Backend::of_url(url)?;
        let pool = Self::pool(url, backend, max_connections).await?;
        // Every connection to an in-memory SQLite is a database of its own.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = match backend {
            Backend::Sqlite if !in_memory => Self::pool(url, backend, 1).await?,
            Backend::Sqlite | Backend::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            backend,
            writer,
            waiting_writes: Arc::default(),
        })
    }

    async fn pool(
        url: &str,
        backend: Backend,
        max_connections: u32,
    ) -> Result<AnyPool, BadSetting> {
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
        options
            .connect(url)
            .await
            .map_err(|e| BadSetting::new("database_url", format!("cannot connect: {e}")))
    }

    /// Runs kit's migrations and then the service's, for this backend.
    pub async fn migrate(&self, service: &Migrations) -> Result<(), BadSetting> {
        let migrator = service.for_backend(&KIT, self.backend)?;
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
        // SQLite's writer is a pool of its own: its connection counts too.
        let writer = (self.backend == Backend::Sqlite).then(|| self.writer.clone());
        let name = KeyValue::new("db.client.connection.pool.name", pool_name.to_string());
        let attributes = name.clone();
        let _count = meter
            .i64_observable_up_down_counter("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Connections of the pool, by state")
            .with_callback(move |observer| {
                let pools = std::iter::once(&pool).chain(writer.as_ref());
                let (mut idle, mut open) = (0_i64, 0_i64);
                for pool in pools {
                    idle += i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
                    open += i64::from(pool.size());
                }
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
        let waiting = self.waiting_writes.clone();
        let pending_name = name.clone();
        let _pending = meter
            .i64_observable_up_down_counter("db.client.connection.pending_requests")
            .with_unit("{request}")
            .with_description("Write transactions waiting for the connection that writes")
            .with_callback(move |observer| {
                observer.observe(
                    waiting.load(Ordering::Relaxed),
                    std::slice::from_ref(&pending_name),
                );
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

    /// Begins a transaction that will write. On SQLite it waits its turn for
    /// the writer's connection, then takes the write lock up front, so it
    /// waits on the busy timeout (for writers of other processes) instead of
    /// failing when it upgrades from reading.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        /// Counts one waiting write until dropped, even when the wait is
        /// given up.
        struct Waiting<'a>(&'a AtomicI64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting_writes.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting_writes);
        // The begin runs to the end on a task of its own. sqlx's SQLite
        // begin awaits once more after the BEGIN has run (to check that it
        // took), and a caller dropped there (its client went away) leaves
        // the connection back in the pool inside a transaction that no
        // guard rolls back: every later write on it then fails with
        // "non-zero transaction depth", and SQLite's writer is that one
        // connection. A transaction the task hands to a caller who has
        // gone is dropped, and rolls back as any does.
        let (backend, writer, pool) = (self.backend, self.writer.clone(), self.pool.clone());
        let begin = tokio::spawn(async move {
            match backend {
                Backend::Sqlite => writer.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => pool.begin().await,
            }
        });
        begin
            .await
            .map_err(|stopped| sqlx::Error::Io(std::io::Error::other(stopped)))?
    }

    /// Write transactions of this handle (and its clones) waiting to begin.
    pub fn waiting_writes(&self) -> usize {
        usize::try_from(self.waiting_writes.load(Ordering::Relaxed)).unwrap_or(0)
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

impl Backend {
    /// A subquery of the strings of the JSON array bound at `$n`
    /// ([`json_list`]), for `column IN (…)`: one parameter for any number of
    /// values. A list of one parameter per value caps out (SQLite takes at
    /// most 32,766) and binds slowly: sqlx finds each SQLite parameter by
    /// name, which costs the square of their count.
    pub fn listed(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Backend::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
        }
    }
}

/// Strings as the one parameter that [`Backend::listed`] reads.
pub fn json_list<S: AsRef<str>>(values: &[S]) -> String {
    let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
    // A list of strings always serialises.
    serde_json::to_string(&values).unwrap_or_else(|_| "[]".into())
}

impl Db {
    /// `select`, locking the rows it reads until the transaction ends.
    pub fn locking(&self, select: &str) -> String {
        format!("{select}{}", self.backend.for_update())
    }
}

/// A new time-ordered id.
pub use crate::ids::new_id;

/// Whether an error is a uniqueness violation, on either backend.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// A service's [`Migrations`] from its `migrations/` folder (both
/// backends), with `migrations/sqlite/` and `migrations/postgres/` for the
/// versions whose SQL differs.
#[macro_export]
macro_rules! migrations_per_backend {
    () => {
        $crate::db::Migrations {
            shared: ::sqlx::migrate!("./migrations"),
            sqlite_only: ::sqlx::migrate!("migrations/sqlite"),
            postgres_only: ::sqlx::migrate!("migrations/postgres"),
        }
    };
}

/// A column as both backends store it, for a field whose domain type the
/// `Any` driver does not decode: a flag is a BIGINT 0 or 1 (`bool` fields
/// read one with `#[sqlx(try_from = "Stored<i64>")]`), and a list is text in
/// the format its element type names ([`StoredList`]).
pub struct Stored<T>(pub T);

impl<T: sqlx::Type<sqlx::Any>> sqlx::Type<sqlx::Any> for Stored<T> {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        T::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        T::compatible(ty)
    }
}

impl<'r, T: sqlx::Decode<'r, sqlx::Any>> sqlx::Decode<'r, sqlx::Any> for Stored<T> {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        T::decode(value).map(Self)
    }
}

impl From<Stored<i64>> for bool {
    fn from(flag: Stored<i64>) -> Self {
        flag.0 != 0
    }
}

/// A value stored as a list in one text column: `Vec<T>` fields read it
/// with `#[sqlx(try_from = "Stored<String>")]`.
pub trait StoredList: Sized {
    fn list(stored: &str) -> Result<Vec<Self>, String>;
}

impl<T: StoredList> TryFrom<Stored<String>> for Vec<T> {
    type Error = String;

    fn try_from(stored: Stored<String>) -> Result<Self, String> {
        T::list(&stored.0)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::migrate::MigrationType;

    use super::*;

    fn migrator(steps: &[(i64, &'static str, &'static str)]) -> Migrator {
        Migrator {
            migrations: Cow::Owned(
                steps
                    .iter()
                    .map(|&(version, description, sql)| {
                        Migration::new(
                            version,
                            Cow::Borrowed(description),
                            MigrationType::Simple,
                            Cow::Borrowed(sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        }
    }

    /// A write whose caller goes away at any point of its BEGIN leaves the
    /// writer's connection usable: the next write begins. The caller here
    /// gives up after a growing number of polls, so it goes away at each
    /// step of the BEGIN in turn, between the worker's BEGIN and sqlx's
    /// check that it took among them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_given_up_half_way_leaves_the_writer_usable() {
        let dir = tempfile::tempdir().expect("dir");
        let url = crate::config::sqlite_url(&dir.path().join("writes.db"));
        let db = Db::connect(&url, 2).await.expect("connect");
        for polls in 0..400 {
            let mut begin = Box::pin(db.begin_write());
            for _ in 0..polls % 40 {
                let polled =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(begin.as_mut().poll(cx)))
                        .await;
                if polled.is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            drop(begin);
            let next = tokio::time::timeout(Duration::from_secs(10), db.begin_write())
                .await
                .expect("the next write begins in time")
                .unwrap_or_else(|e| panic!("after giving up at poll {polls}: {e}"));
            next.rollback().await.expect("rollback");
        }
    }

    fn kit() -> Migrations {
        Migrations::shared(migrator(&[(1, "outbox", "CREATE TABLE outbox (id TEXT)")]))
    }

    fn planned(service: &Migrations, backend: Backend) -> Vec<(i64, String)> {
        service
            .for_backend(&kit(), backend)
            .map(|m| m.iter().map(|m| (m.version, m.sql.to_string())).collect())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn each_backend_runs_the_shared_files_and_its_own_in_version_order() {
        let service = Migrations {
            shared: migrator(&[
                (1000, "agents", "CREATE TABLE agents (id TEXT)"),
                (1002, "pins", "CREATE TABLE pins (id TEXT)"),
            ]),
            sqlite_only: migrator(&[(1001, "design", "ALTER TABLE agents ADD design BLOB")]),
            postgres_only: migrator(&[(1001, "design", "ALTER TABLE agents ADD design BYTEA")]),
        };
        let expected = |design: &str| {
            vec![
                (1, "CREATE TABLE outbox (id TEXT)".to_string()),
                (1000, "CREATE TABLE agents (id TEXT)".to_string()),
                (1001, format!("ALTER TABLE agents ADD design {design}")),
                (1002, "CREATE TABLE pins (id TEXT)".to_string()),
            ]
        };
        assert_eq!(planned(&service, Backend::Sqlite), expected("BLOB"));
        assert_eq!(planned(&service, Backend::Postgres), expected("BYTEA"));
    }

    #[test]
    fn a_step_written_for_one_backend_alone_is_refused() {
        let service = Migrations {
            shared: migrator(&[(1000, "agents", "CREATE TABLE agents (id TEXT)")]),
            sqlite_only: migrator(&[(1001, "design", "ALTER TABLE agents ADD design BLOB")]),
            postgres_only: Migrator::DEFAULT,
        };
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let refusal = refusal(&service, backend);
            assert!(
                refusal.contains("migration 1001 (design)"),
                "{backend:?}: {refusal}"
            );
        }
    }

    /// Why `service`'s migrations are refused on `backend`.
    fn refusal(service: &Migrations, backend: Backend) -> String {
        match service.for_backend(&kit(), backend) {
            Ok(_) => panic!("{backend:?}: the migrations were accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_step_described_differently_per_backend_is_refused() {
        let service = Migrations {
            shared: Migrator::DEFAULT,
            sqlite_only: migrator(&[(1000, "agents", "CREATE TABLE agents (id TEXT)")]),
            postgres_only: migrator(&[(1000, "agent", "CREATE TABLE agents (id TEXT)")]),
        };
        assert!(service.for_backend(&kit(), Backend::Sqlite).is_err());
    }

    #[test]
    fn a_version_both_shared_and_per_backend_is_refused() {
        let service = Migrations {
            shared: migrator(&[(1000, "agents", "CREATE TABLE agents (id TEXT)")]),
            sqlite_only: migrator(&[(1000, "agents", "CREATE TABLE agents (id TEXT)")]),
            postgres_only: migrator(&[(1000, "agents", "CREATE TABLE agents (id TEXT)")]),
        };
        let refusal = refusal(&service, Backend::Postgres);
        assert!(
            refusal.contains("migration 1000 is written twice"),
            "{refusal}"
        );
    }

    #[test]
    fn service_versions_start_above_kits() {
        let service = Migrations::shared(migrator(&[(2, "early", "SELECT 1")]));
        assert!(service.for_backend(&kit(), Backend::Sqlite).is_err());
    }

    #[test]
    fn kits_own_migrations_are_the_same_steps_on_both_backends() {
        let none = Migrations::shared(Migrator::DEFAULT);
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let steps: Vec<i64> = none
                .for_backend(&KIT, backend)
                .map(|m| m.iter().map(|m| m.version).collect())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(steps, [1, 2]);
        }
    }
}
