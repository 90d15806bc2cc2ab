//! One database per service per suite: SQLite files in the suite's temp dir,
//! or PostgreSQL schemas when `AGENTSHARE_TEST_POSTGRES_URL` is set.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use agentshare_kit::clock::Clock;
use agentshare_kit::config::sqlite_url;
use agentshare_kit::identity::ServiceName;
use sqlx::{Connection, Executor, Row};

pub const POSTGRES_URL_VAR: &str = "AGENTSHARE_TEST_POSTGRES_URL";
const SCHEMA_PREFIX: &str = "e2e_";
/// Schemas older than this are leftovers of a crashed run.
const LEFTOVER_AFTER_SECS: i64 = 3600;

pub enum Databases {
    Sqlite(HashMap<ServiceName, String>),
    Postgres {
        admin_url: String,
        urls: HashMap<ServiceName, String>,
        schemas: Vec<String>,
    },
}

fn with_query(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

impl Databases {
    pub async fn create(dir: &Path) -> Self {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            let urls = ServiceName::ALL
                .into_iter()
                .map(|s| (s, sqlite_url(&dir.join(format!("{s}.db")))))
                .collect();
            return Self::Sqlite(urls);
        };
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unreachable: {e}")
            });
        sweep_leftovers(&mut admin).await;
        let now = Clock::system().now_secs();
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let mut urls = HashMap::new();
        let mut schemas = Vec::new();
        for service in ServiceName::ALL {
            let schema = format!("{SCHEMA_PREFIX}{now}_{}_{service}", &tag[tag.len() - 12..]);
            admin
                .execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("create schema");
            urls.insert(
                service,
                with_query(&admin_url, &format!("options=-c%20search_path%3D{schema}")),
            );
            schemas.push(schema);
        }
        let _ = admin.close().await;
        Self::Postgres {
            admin_url,
            urls,
            schemas,
        }
    }

    pub fn url(&self, service: ServiceName) -> String {
        match self {
            Self::Sqlite(urls) | Self::Postgres { urls, .. } => urls[&service].clone(),
        }
    }

    /// Every byte the services stored: each SQLite file of `dir` (the
    /// `-wal` and `-shm` files included), or a `pg_dump` of every schema.
    pub async fn stored_bytes(&self, dir: &Path) -> Vec<u8> {
        match self {
            Self::Sqlite(_) => {
                let mut bytes = Vec::new();
                let mut pending = vec![dir.to_path_buf()];
                while let Some(next) = pending.pop() {
                    for entry in std::fs::read_dir(&next).expect("read dir").flatten() {
                        let path = entry.path();
                        if path.is_dir() {
                            pending.push(path);
                        } else if path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains(".db"))
                        {
                            bytes.extend(std::fs::read(&path).expect("read database file"));
                        }
                    }
                }
                bytes
            }
            Self::Postgres {
                admin_url, schemas, ..
            } => {
                let mut bytes = Vec::new();
                for schema in schemas {
                    let dump = tokio::process::Command::new("pg_dump")
                        .args(["--schema", schema, "--dbname", admin_url])
                        .output()
                        .await
                        .expect("run pg_dump");
                    assert!(
                        dump.status.success(),
                        "pg_dump failed: {}",
                        String::from_utf8_lossy(&dump.stderr)
                    );
                    bytes.extend(dump.stdout);
                }
                bytes
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    pub async fn drop_all(&self) {
        let Self::Postgres {
            admin_url, schemas, ..
        } = self
        else {
            return;
        };
        if let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await {
            for schema in schemas {
                let _ = admin
                    .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                    .await;
            }
            let _ = admin.close().await;
        }
    }
}

/// Drops schemas of earlier runs that never stopped, once per test binary.
async fn sweep_leftovers(admin: &mut sqlx::AnyConnection) {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_err() {
        return;
    }
    let rows = admin
        .fetch_all(
            format!("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE '{SCHEMA_PREFIX}%'")
                .as_str(),
        )
        .await
        .expect("list schemas");
    let cutoff = Clock::system().now_secs() - LEFTOVER_AFTER_SECS;
    for row in rows {
        let schema: String = row.try_get(0).expect("name");
        let created = schema
            .trim_start_matches(SCHEMA_PREFIX)
            .split('_')
            .next()
            .and_then(|s| s.parse::<i64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ = admin
                .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                .await;
        }
    }
}
