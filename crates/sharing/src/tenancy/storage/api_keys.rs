//! API keys: storage of a user's long-lived credentials in one org.

use agentshare_kit::Result;
use agentshare_kit::db::{self, new_id};
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;

use super::TenancyStorage;
use crate::tenancy::storage::audit;

/// How much of the secret listings show.
pub const SHOWN_PREFIX_CHARS: usize = 12;

#[derive(Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub default_workspace_id: String,
    pub label: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRow {
    /// What the audit trail keeps of a key: never its secret or digest.
    fn audit_view(&self) -> serde_json::Value {
        serde_json::json!({
            "user_id": self.user_id,
            "label": self.label,
            "prefix": self.prefix,
            "default_workspace_id": self.default_workspace_id,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        })
    }
}

pub struct NewApiKey<'a> {
    pub user_id: &'a str,
    pub org_id: &'a str,
    pub default_workspace_id: &'a str,
    pub label: &'a str,
    pub prefix: &'a str,
    pub secret_digest: &'a str,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, org_id, default_workspace_id, label, prefix, created_at, last_used_at, expires_at, revoked_at";

impl TenancyStorage {
    /// Creates a key and records `api_key.created`, in one transaction.
    pub async fn create_api_key(&self, actor: &Principal, key: NewApiKey<'_>) -> Result<ApiKeyRow> {
        let row = ApiKeyRow {
            id: new_id(),
            user_id: key.user_id.into(),
            org_id: key.org_id.into(),
            default_workspace_id: key.default_workspace_id.into(),
            label: key.label.into(),
            prefix: key.prefix.into(),
            created_at: self.clock.now_micros(),
            last_used_at: None,
            expires_at: key.expires_at,
            revoked_at: None,
        };
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO api_keys (id, user_id, org_id, default_workspace_id, label, prefix, secret_sha256, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            (
                &row.id,
                &row.user_id,
                &row.org_id,
                &row.default_workspace_id,
                &row.label,
                &row.prefix,
                key.secret_digest,
                row.created_at,
                row.expires_at,
            ),
        )
        .await?;
        let change =
            audit::Change::new(actor, &row.org_id, "api_key.created", ("api_key", &row.id));
        self.commit_audited(tx, change.after(row.audit_view()))
            .await?;
        Ok(row)
    }

    /// The caller's keys in an org, newest first, after `before_id`.
    pub async fn api_keys_of(
        &self,
        user_id: &str,
        org_id: &str,
        page: &Page,
    ) -> Result<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 AND org_id = $2 AND ($3 = '' OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (user_id, org_id, page)).await?)
    }

    /// Revokes one of the user's keys, recording `api_key.revoked` the first
    /// time; `None` when the key is not theirs.
    pub async fn revoke_api_key(
        &self,
        actor: &Principal,
        org_id: &str,
        id: &str,
    ) -> Result<Option<ApiKeyRow>> {
        let user_id = actor.user_id.as_deref().unwrap_or_default();
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2 AND org_id = $3"
        );
        let before: Option<ApiKeyRow> =
            db::fetch_optional(&mut *tx, &sql, (id, user_id, org_id)).await?;
        let Some(before) = before else {
            return Ok(None);
        };
        if before.revoked_at.is_some() {
            return Ok(Some(before));
        }
        let now = self.clock.now_micros();
        db::execute(
            &mut *tx,
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2",
            (now, id),
        )
        .await?;
        let after = ApiKeyRow {
            revoked_at: Some(now),
            ..before.clone()
        };
        let change = audit::Change::new(actor, org_id, "api_key.revoked", ("api_key", id));
        self.commit_audited(
            tx,
            change.before(before.audit_view()).after(after.audit_view()),
        )
        .await?;
        Ok(Some(after))
    }

    /// The key with this secret digest, its last use recorded.
    pub async fn use_api_key(&self, secret_digest: &str) -> Result<Option<ApiKeyRow>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE secret_sha256 = $1");
        let key: Option<ApiKeyRow> =
            db::fetch_optional(&self.db.pool, &sql, (secret_digest,)).await?;
        let Some(key) = key else {
            return Ok(None);
        };
        db::execute(
            &self.db.pool,
            "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
            (self.clock.now_micros(), &key.id),
        )
        .await?;
        Ok(Some(key))
    }
}
