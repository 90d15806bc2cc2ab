//! Share grants, INVOKE and DELEGATE tokens for one agent (DESIGN.md, "Access
//! model (sharing)", Grants): storage, and the state a grant is in at a time.

use agentshare_kit::Result;
use agentshare_kit::db;
use agentshare_kit::events::{self, NewEvent};

use super::AccessStorage;
use crate::access::rules::budgets::GrantLimits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    Invoke,
    Delegate,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoke => "invoke",
            Self::Delegate => "delegate",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "invoke" => Some(Self::Invoke),
            "delegate" => Some(Self::Delegate),
            _ => None,
        }
    }
}

/// A stored kind; a kind this version does not know reads as INVOKE, the
/// narrower grant.
impl From<String> for GrantKind {
    fn from(kind: String) -> Self {
        Self::parse(&kind).unwrap_or(Self::Invoke)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantState {
    Active,
    Expired,
    Revoked,
    Ended,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GrantRow {
    pub id: String,
    pub agent_id: String,
    pub org_id: String,
    #[sqlx(try_from = "String")]
    pub kind: GrantKind,
    pub label: String,
    pub token_prefix: String,
    pub pinned_version: Option<i64>,
    pub creator_user_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub runs_per_minute: Option<i64>,
    pub runs_per_day: Option<i64>,
    pub concurrent_runs: Option<i64>,
    pub session_runs_per_minute: Option<i64>,
    pub runs_total: i64,
    pub refusals_total: i64,
    pub last_refusal_at: Option<i64>,
}

impl GrantRow {
    pub fn limits(&self) -> GrantLimits {
        GrantLimits {
            runs_per_minute: self.runs_per_minute,
            runs_per_day: self.runs_per_day,
            concurrent_runs: self.concurrent_runs,
            session_runs_per_minute: self.session_runs_per_minute,
        }
    }

    pub fn set_limits(&mut self, limits: GrantLimits) {
        self.runs_per_minute = limits.runs_per_minute;
        self.runs_per_day = limits.runs_per_day;
        self.concurrent_runs = limits.concurrent_runs;
        self.session_runs_per_minute = limits.session_runs_per_minute;
    }

    /// Revoked and ended outrank expired: they say what the owner did.
    pub fn state_at(&self, now: i64) -> GrantState {
        if self.revoked_at.is_some() {
            GrantState::Revoked
        } else if self.ended_at.is_some() {
            GrantState::Ended
        } else if self.expires_at.is_some_and(|at| at <= now) {
            GrantState::Expired
        } else {
            GrantState::Active
        }
    }
}

/// What a new grant is stored with; its usage starts at none.
const NEW_GRANT_COLUMNS: &str = "id, agent_id, org_id, kind, label, token_prefix, pinned_version, \
     creator_user_id, created_at, expires_at, last_used_at, revoked_at, ended_at, \
     runs_per_minute, runs_per_day, concurrent_runs, session_runs_per_minute";
const GRANT_COLUMNS: &str = "id, agent_id, org_id, kind, label, token_prefix, pinned_version, \
     creator_user_id, created_at, expires_at, last_used_at, revoked_at, ended_at, \
     runs_per_minute, runs_per_day, concurrent_runs, session_runs_per_minute, runs_total, \
     refusals_total, last_refusal_at";

impl AccessStorage {
    /// Stores a grant, recording `grant.created`.
    pub async fn insert_grant(&self, grant: &GrantRow, token_sha256: &str) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            &format!(
                "INSERT INTO share_grants ({NEW_GRANT_COLUMNS}, token_sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18)"
            ),
            (
                &grant.id,
                &grant.agent_id,
                &grant.org_id,
                grant.kind.as_str(),
                &grant.label,
                &grant.token_prefix,
                grant.pinned_version,
                &grant.creator_user_id,
                grant.created_at,
                grant.expires_at,
                grant.last_used_at,
                grant.revoked_at,
                grant.ended_at,
                grant.runs_per_minute,
                grant.runs_per_day,
                grant.concurrent_runs,
                grant.session_runs_per_minute,
                token_sha256,
            ),
        )
        .await?;
        let payload = serde_json::json!({
            "agent_id": grant.agent_id,
            "kind": grant.kind.as_str(),
            "label": grant.label,
            "limits": limits_json(grant.limits()),
        });
        self.record(&mut tx, "grant.created", grant, payload)
            .await?;
        self.commit(tx).await
    }

    /// Records an event about a grant.
    async fn record(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        kind: &'static str,
        grant: &GrantRow,
        payload: serde_json::Value,
    ) -> Result<()> {
        let event = NewEvent {
            kind,
            subject_id: grant.id.clone(),
            org_id: grant.org_id.clone(),
            payload,
        };
        events::append(tx, &self.clock, &event).await?;
        Ok(())
    }

    /// The grant whose `column` is `value`.
    async fn grant_by(&self, column: &str, value: &str) -> Result<Option<GrantRow>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM share_grants WHERE {column} = $1");
        Ok(db::fetch_optional(&self.db.pool, &sql, (value,)).await?)
    }

    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>> {
        self.grant_by("id", id).await
    }

    /// The grant behind a token, read fresh on every call (no cache may
    /// serve a revoked grant), recording its use.
    pub async fn use_grant(&self, token_sha256: &str) -> Result<Option<GrantRow>> {
        let grant = self.grant_by("token_sha256", token_sha256).await?;
        if let Some(grant) = &grant {
            db::execute(
                &self.db.pool,
                "UPDATE share_grants SET last_used_at = $2 WHERE id = $1",
                (&grant.id, self.clock.now_micros()),
            )
            .await?;
        }
        Ok(grant)
    }

    /// An agent's grants, newest first, after `before_id`: a batch of a
    /// listing that filters what it reads, so it reads on from the last.
    pub async fn grants_of(
        &self,
        agent_id: &str,
        before_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<GrantRow>> {
        Ok(db::fetch_all(
            &self.db.pool,
            &format!(
                "SELECT {GRANT_COLUMNS} FROM share_grants WHERE agent_id = $1 AND ($2 = '' OR id < $2) \
                 ORDER BY id DESC LIMIT $3"
            ),
            (agent_id, before_id.unwrap_or_default(), limit),
        )
        .await?)
    }

    pub async fn active_grant_count(&self, agent_id: &str) -> Result<i64> {
        Ok(db::scalar::fetch_one(
            &self.db.pool,
            "SELECT COUNT(*) FROM share_grants WHERE agent_id = $1 AND revoked_at IS NULL \
             AND ended_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
            (agent_id, self.clock.now_micros()),
        )
        .await?)
    }

    /// Sets a grant's limits, recording `grant.updated`.
    pub async fn update_grant_limits(&self, grant: &GrantRow, limits: GrantLimits) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "UPDATE share_grants SET runs_per_minute = $2, runs_per_day = $3, concurrent_runs = $4, \
             session_runs_per_minute = $5 WHERE id = $1",
            (
                &grant.id,
                limits.runs_per_minute,
                limits.runs_per_day,
                limits.concurrent_runs,
                limits.session_runs_per_minute,
            ),
        )
        .await?;
        let payload = serde_json::json!({
            "agent_id": grant.agent_id,
            "before": limits_json(grant.limits()),
            "after": limits_json(limits),
        });
        self.record(&mut tx, "grant.updated", grant, payload)
            .await?;
        self.commit(tx).await
    }

    /// Revokes a grant, recording `grant.revoked`; false when it already
    /// was.
    pub async fn revoke_grant(&self, grant: &GrantRow) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let done = db::execute(
            &mut *tx,
            "UPDATE share_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            (&grant.id, self.clock.now_micros()),
        )
        .await?
        .rows_affected()
            > 0;
        if done {
            let payload = serde_json::json!({ "agent_id": grant.agent_id });
            self.record(&mut tx, "grant.revoked", grant, payload)
                .await?;
        }
        self.commit(tx).await?;
        Ok(done)
    }
}

/// Limits as events carry them: `null` for no limit.
fn limits_json(limits: GrantLimits) -> serde_json::Value {
    serde_json::json!({
        "runs_per_minute": limits.runs_per_minute,
        "runs_per_day": limits.runs_per_day,
        "concurrent_runs": limits.concurrent_runs,
        "session_runs_per_minute": limits.session_runs_per_minute,
    })
}
