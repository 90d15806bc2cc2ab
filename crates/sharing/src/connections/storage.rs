//! Users' connections, OAuth flows and agent setups: storage. Secrets are
//! stored sealed only (see `secrets.rs`); nothing here decides who may do
//! what.

use agentshare_kit::Result;
use agentshare_kit::db::{self, json_list, new_id};
use agentshare_kit::page::Page;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::connections::secrets::Sealed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ApiKey,
    OAuth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::OAuth => "oauth",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Live,
    Expired,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    fn parse(status: &str) -> Self {
        match status {
            "live" => Self::Live,
            "expired" => Self::Expired,
            _ => Self::Failed,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnectionRow {
    pub id: String,
    pub user_id: String,
    pub provider: String,
    pub kind: Kind,
    pub label: String,
    /// As stored; [`ConnectionRow::status_at`] adds what time decides.
    pub status: Status,
    pub status_message: String,
    pub secret: Sealed,
    pub refresh: Option<Sealed>,
    pub access_expires_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub last_tested_at: Option<i64>,
}

impl ConnectionRow {
    /// The status at `now`: a LIVE connection whose credential ended is
    /// EXPIRED, and so is an OAuth one whose access token ended with no
    /// refresh token to renew it.
    pub fn status_at(&self, now: i64) -> (Status, String) {
        if self.status != Status::Live {
            return (self.status, self.status_message.clone());
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return (
                Status::Expired,
                "the credential expired: reconnect it".into(),
            );
        }
        if self.kind == Kind::OAuth
            && self.refresh.is_none()
            && self.access_expires_at.is_some_and(|at| at <= now)
        {
            return (
                Status::Expired,
                "the access token expired and the provider gave no refresh token: reconnect it"
                    .into(),
            );
        }
        (Status::Live, String::new())
    }

    /// Where each sealed field of this row is bound, so it opens nowhere
    /// else.
    pub fn secret_context(id: &str) -> String {
        format!("connection/{id}/secret")
    }

    pub fn refresh_context(id: &str) -> String {
        format!("connection/{id}/refresh")
    }

    /// The connection's current material.
    fn material(&self) -> Material {
        Material {
            secret: self.secret.clone(),
            refresh: self.refresh.clone(),
            access_expires_at: self.access_expires_at,
            expires_at: self.expires_at,
            scopes: self.scopes.clone(),
        }
    }
}

const CONNECTION_COLUMNS: &str = "id, user_id, provider, kind, label, status, status_message, key_id, \
     sealed_secret, sealed_refresh, access_expires_at, expires_at, scopes, created_at, last_used_at, \
     last_tested_at";

/// A connection as stored: kind, status and scopes as text, and both
/// sealed values under one key.
#[derive(sqlx::FromRow)]
pub struct StoredConnection {
    id: String,
    user_id: String,
    provider: String,
    kind: String,
    label: String,
    status: String,
    status_message: String,
    key_id: String,
    sealed_secret: String,
    sealed_refresh: Option<String>,
    access_expires_at: Option<i64>,
    expires_at: Option<i64>,
    scopes: String,
    created_at: i64,
    last_used_at: Option<i64>,
    last_tested_at: Option<i64>,
}

impl From<StoredConnection> for ConnectionRow {
    fn from(row: StoredConnection) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            provider: row.provider,
            kind: if row.kind == "oauth" {
                Kind::OAuth
            } else {
                Kind::ApiKey
            },
            label: row.label,
            status: Status::parse(&row.status),
            status_message: row.status_message,
            refresh: row.sealed_refresh.map(|blob| Sealed {
                key_id: row.key_id.clone(),
                blob,
            }),
            secret: Sealed {
                key_id: row.key_id,
                blob: row.sealed_secret,
            },
            access_expires_at: row.access_expires_at,
            expires_at: row.expires_at,
            scopes: row.scopes.split_whitespace().map(str::to_string).collect(),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            last_tested_at: row.last_tested_at,
        }
    }
}

/// New material for a connection: what a key or a token exchange gave.
pub struct Material {
    pub secret: Sealed,
    /// Sealed under the same key as `secret`.
    pub refresh: Option<Sealed>,
    pub access_expires_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
}

/// An OAuth flow waiting for its code.
#[derive(sqlx::FromRow)]
pub struct Flow {
    pub user_id: String,
    pub provider: String,
    pub label: String,
    pub connection_id: Option<String>,
    #[sqlx(flatten)]
    pub verifier: Sealed,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl Flow {
    pub fn verifier_context(state_sha256: &str) -> String {
        format!("oauth_flow/{state_sha256}/verifier")
    }
}

/// The caller's binding of one integration, with its connection.
#[derive(sqlx::FromRow)]
pub struct Binding {
    #[sqlx(rename = "bound_agent_id")]
    pub agent_id: String,
    pub integration_key: String,
    #[sqlx(flatten, try_from = "StoredConnection")]
    pub connection: ConnectionRow,
}

/// One integration of one version, as sharing keeps it.
#[derive(Clone, Debug)]
pub struct IntegrationRow {
    pub agent_id: String,
    pub version: i64,
    pub key: String,
    pub provider: String,
    pub shared: bool,
    pub builder_connection_id: String,
}

/// An integration as stored: its scope by name.
#[derive(sqlx::FromRow)]
struct StoredIntegration {
    agent_id: String,
    version: i64,
    key: String,
    provider: String,
    scope: String,
    builder_connection_id: String,
}

impl From<StoredIntegration> for IntegrationRow {
    fn from(row: StoredIntegration) -> Self {
        Self {
            agent_id: row.agent_id,
            version: row.version,
            key: row.key,
            provider: row.provider,
            shared: row.scope == "shared",
            builder_connection_id: row.builder_connection_id,
        }
    }
}

/// A flow's verifier to re-seal, by the digest of its state.
#[derive(sqlx::FromRow)]
pub struct SealedVerifier {
    pub state_sha256: String,
    #[sqlx(flatten)]
    pub verifier: Sealed,
}

crate::common::part_storage!(
    /// Connections' SQL: connections, OAuth flows and agent setups.
    ConnectionStorage
);

/// Binds a connection's material as stored: key id, sealed secret, sealed
/// refresh token, when the access token and the credential end, scopes.
fn bind_material<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    material: &'q Material,
) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(&material.secret.key_id)
        .bind(&material.secret.blob)
        .bind(material.refresh.as_ref().map(|r| r.blob.clone()))
        .bind(material.access_expires_at)
        .bind(material.expires_at)
        .bind(material.scopes.join(" "))
}

/// Selects connections `c` by a condition on them.
fn connections_where(condition: &str) -> String {
    format!(
        "SELECT {} FROM connections c WHERE {condition}",
        qualified_columns()
    )
}

/// [`CONNECTION_COLUMNS`] of the connections `c`.
fn qualified_columns() -> String {
    CONNECTION_COLUMNS
        .split(", ")
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConnectionStorage {
    /// A new id for a connection about to be sealed: the id is part of
    /// where its secret is bound.
    pub fn new_connection_id(&self) -> String {
        new_id()
    }

    pub async fn insert_connection(&self, row: &ConnectionRow) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO connections (id, user_id, provider, kind, label, status, status_message, key_id, \
             sealed_secret, sealed_refresh, access_expires_at, expires_at, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.provider)
        .bind(row.kind.as_str())
        .bind(&row.label)
        .bind(row.status.as_str())
        .bind(&row.status_message);
        let material = row.material();
        bind_material(query, &material)
            .bind(row.created_at)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// One of the user's connections; another user's is `None`, exactly
    /// like one that never existed.
    pub async fn connection(&self, user_id: &str, id: &str) -> Result<Option<ConnectionRow>> {
        let row: Option<StoredConnection> = db::fetch_optional(
            &self.db.pool,
            &connections_where("c.id = $1 AND c.user_id = $2"),
            (id, user_id),
        )
        .await?;
        Ok(row.map(ConnectionRow::from))
    }

    /// Connections by id whoever owns them: builders' connections behind
    /// SHARED integrations. Only their status may leave sharing.
    pub async fn connections_by_id(&self, ids: &[String]) -> Result<Vec<ConnectionRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = connections_where(&format!("c.id IN ({})", self.db.backend.listed(1)));
        let rows: Vec<StoredConnection> =
            db::fetch_all(&self.db.pool, &sql, (json_list(ids),)).await?;
        Ok(rows.into_iter().map(ConnectionRow::from).collect())
    }

    /// A page of the user's connections (of one provider, unless
    /// `provider` is empty), newest first.
    pub async fn connections_of(
        &self,
        user_id: &str,
        provider: &str,
        page: &Page,
    ) -> Result<Vec<ConnectionRow>> {
        let rows: Vec<StoredConnection> = db::fetch_all(
            &self.db.pool,
            &connections_where(
                "c.user_id = $1 AND ($2 = '' OR c.provider = $2) AND ($3 = '' OR c.id < $3) \
                 ORDER BY c.id DESC LIMIT $4",
            ),
            (user_id, provider, page),
        )
        .await?;
        Ok(rows.into_iter().map(ConnectionRow::from).collect())
    }

    /// Deletes the connection and its secret, with every binding to it;
    /// `None` when the user has no such connection.
    pub async fn delete_connection(&self, user_id: &str, id: &str) -> Result<Option<u64>> {
        let mut tx = self.db.begin_write().await?;
        let owned = db::exists(
            &mut *tx,
            "SELECT 1 FROM connections WHERE id = $1 AND user_id = $2",
            (id, user_id),
        )
        .await?;
        if !owned {
            return Ok(None);
        }
        let bindings = db::execute(
            &mut *tx,
            "DELETE FROM agent_setups WHERE connection_id = $1",
            (id,),
        )
        .await?
        .rows_affected();
        db::execute(&mut *tx, "DELETE FROM connections WHERE id = $1", (id,)).await?;
        tx.commit().await?;
        Ok(Some(bindings))
    }

    /// Replaces a connection's material and makes it LIVE again.
    pub async fn replace_material(&self, id: &str, material: &Material) -> Result<()> {
        let query = sqlx::query(
            "UPDATE connections SET key_id = $2, sealed_secret = $3, sealed_refresh = $4, \
             access_expires_at = $5, expires_at = $6, scopes = $7, status = 'live', status_message = '' \
             WHERE id = $1",
        )
        .bind(id);
        bind_material(query, material)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Records that a run used the connection.
    pub async fn touch_connection(&self, id: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE connections SET last_used_at = $2 WHERE id = $1",
            (id, self.clock.now_micros()),
        )
        .await?;
        Ok(())
    }

    /// Records a check's outcome.
    pub async fn record_check(&self, id: &str, status: Status, message: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE connections SET status = $2, status_message = $3, last_tested_at = $4 WHERE id = $1",
            (id, status.as_str(), message, self.clock.now_micros()),
        )
        .await?;
        Ok(())
    }

    /// Marks a connection FAILED, saying what to do.
    pub async fn fail_connection(&self, id: &str, message: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE connections SET status = 'failed', status_message = $2 WHERE id = $1",
            (id, message),
        )
        .await?;
        Ok(())
    }

    pub async fn insert_flow(&self, state_sha256: &str, flow: &Flow) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO oauth_flows (state_sha256, user_id, provider, label, connection_id, key_id, \
             sealed_verifier, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            (
                state_sha256,
                &flow.user_id,
                &flow.provider,
                &flow.label,
                &flow.connection_id,
                &flow.verifier.key_id,
                &flow.verifier.blob,
                flow.expires_at,
            ),
        )
        .await?;
        Ok(())
    }

    /// The user's pending flows, to cap them.
    pub async fn pending_flows(&self, user_id: &str) -> Result<i64> {
        Ok(db::scalar::fetch_one(
            &self.db.pool,
            "SELECT COUNT(*) FROM oauth_flows WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
            (user_id, self.clock.now_micros()),
        )
        .await?)
    }

    /// Takes the flow of a state once: the first taker marks it used, so a
    /// replayed redirect finds it spent.
    pub async fn take_flow(&self, state_sha256: &str) -> Result<Option<Flow>> {
        let mut tx = self.db.begin_write().await?;
        let flow: Option<Flow> = db::fetch_optional(
            &mut *tx,
            &self.db.locking(
                "SELECT user_id, provider, label, connection_id, key_id, sealed_verifier AS blob, expires_at, \
                 used_at FROM oauth_flows WHERE state_sha256 = $1",
            ),
            (state_sha256,),
        )
        .await?;
        let Some(flow) = flow else {
            return Ok(None);
        };
        if flow.used_at.is_none() {
            db::execute(
                &mut *tx,
                "UPDATE oauth_flows SET used_at = $2 WHERE state_sha256 = $1",
                (state_sha256, self.clock.now_micros()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(flow))
    }

    /// The integrations of several (agent, version) pairs at once: the
    /// agents' rows by the agent index, narrowed to the wanted versions.
    pub async fn integrations_of(&self, pairs: &[(String, i64)]) -> Result<Vec<IntegrationRow>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let agents: Vec<&str> = pairs.iter().map(|(agent, _)| agent.as_str()).collect();
        let wanted: Vec<String> = pairs
            .iter()
            .map(|(agent, version)| format!("{agent}:{version}"))
            .collect();
        let sql = format!(
            "SELECT agent_id, version, key, provider, scope, builder_connection_id FROM agent_integrations \
             WHERE agent_id IN ({}) AND agent_id || ':' || version IN ({}) \
             ORDER BY agent_id, version, position",
            self.db.backend.listed(1),
            self.db.backend.listed(2)
        );
        let stored: Vec<StoredIntegration> = db::fetch_all(
            &self.db.pool,
            &sql,
            (json_list(&agents), json_list(&wanted)),
        )
        .await?;
        Ok(stored.into_iter().map(IntegrationRow::from).collect())
    }

    /// The user's bindings of these agents, with their connections.
    pub async fn bindings(&self, user_id: &str, agent_ids: &[String]) -> Result<Vec<Binding>> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT s.agent_id AS bound_agent_id, s.integration_key, {} FROM agent_setups s \
             JOIN connections c ON c.id = s.connection_id \
             WHERE s.user_id = $1 AND s.agent_id IN ({})",
            qualified_columns(),
            self.db.backend.listed(2)
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (user_id, json_list(agent_ids))).await?)
    }

    pub async fn bind(
        &self,
        agent_id: &str,
        user_id: &str,
        integration_key: &str,
        connection_id: &str,
    ) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO agent_setups (agent_id, user_id, integration_key, connection_id, bound_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id, user_id, integration_key) \
             DO UPDATE SET connection_id = excluded.connection_id, bound_at = excluded.bound_at",
            (
                agent_id,
                user_id,
                integration_key,
                connection_id,
                self.clock.now_micros(),
            ),
        )
        .await?;
        Ok(())
    }

    pub async fn unbind(&self, agent_id: &str, user_id: &str, integration_key: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "DELETE FROM agent_setups WHERE agent_id = $1 AND user_id = $2 AND integration_key = $3",
            (agent_id, user_id, integration_key),
        )
        .await?;
        Ok(())
    }

    pub async fn complete_setup(&self, agent_id: &str, user_id: &str) -> Result<i64> {
        let now = self.clock.now_micros();
        db::execute(
            &self.db.pool,
            "INSERT INTO agent_setup_completions (agent_id, user_id, completed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (agent_id, user_id) DO UPDATE SET completed_at = excluded.completed_at",
            (agent_id, user_id, now),
        )
        .await?;
        Ok(now)
    }

    pub async fn setup_completed_at(&self, agent_id: &str, user_id: &str) -> Result<Option<i64>> {
        Ok(db::scalar::fetch_optional(
            &self.db.pool,
            "SELECT completed_at FROM agent_setup_completions WHERE agent_id = $1 AND user_id = $2",
            (agent_id, user_id),
        )
        .await?)
    }

    /// Every sealed value not under `active`, for rotation.
    pub async fn sealed_elsewhere(
        &self,
        active: &str,
    ) -> Result<(Vec<ConnectionRow>, Vec<SealedVerifier>)> {
        let connections: Vec<StoredConnection> = db::fetch_all(
            &self.db.pool,
            &connections_where("c.key_id <> $1"),
            (active,),
        )
        .await?;
        let flows = db::fetch_all(
            &self.db.pool,
            "SELECT state_sha256, key_id, sealed_verifier AS blob FROM oauth_flows WHERE key_id <> $1",
            (active,),
        )
        .await?;
        Ok((
            connections.into_iter().map(ConnectionRow::from).collect(),
            flows,
        ))
    }

    /// Stores a re-sealed secret, unless the row changed meanwhile.
    pub async fn reseal_connection(
        &self,
        before: &ConnectionRow,
        secret: &Sealed,
        refresh: Option<&Sealed>,
    ) -> Result<bool> {
        let done = db::execute(
            &self.db.pool,
            "UPDATE connections SET key_id = $2, sealed_secret = $3, sealed_refresh = $4 \
             WHERE id = $1 AND key_id = $5 AND sealed_secret = $6",
            (
                &before.id,
                &secret.key_id,
                &secret.blob,
                refresh.map(|r| r.blob.clone()),
                &before.secret.key_id,
                &before.secret.blob,
            ),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn reseal_flow(&self, state_sha256: &str, verifier: &Sealed) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE oauth_flows SET key_id = $2, sealed_verifier = $3 WHERE state_sha256 = $1",
            (state_sha256, &verifier.key_id, &verifier.blob),
        )
        .await?;
        Ok(())
    }
}
