//! The audit trail: who changed what, with which credential, before and
//! after. Each record is written in the transaction of its change and also
//! emitted on the event log.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::new_id;
use agentshare_kit::events::{self, NewEvent};
use agentshare_kit::identity::Principal;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::TenancyStorage;

/// How the actor authenticated, as stored.
pub fn credential_kind(principal: &Principal) -> &'static str {
    if principal.api_key_id.is_some() {
        "api_key"
    } else if principal.grant_id.is_some() {
        "grant_token"
    } else {
        "session"
    }
}

/// One change to record.
pub struct Change<'a> {
    pub org_id: &'a str,
    pub actor: &'a Principal,
    /// `<subject>.<verb>`, e.g. `api_key.created`.
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: &'a str,
    /// The target's fields before; `None` for a creation. Never a secret.
    pub before: Option<serde_json::Value>,
    /// The target's fields after; `None` for a deletion. Never a secret.
    pub after: Option<serde_json::Value>,
}

pub struct AuditRow {
    pub id: String,
    pub org_id: String,
    pub actor_user_id: String,
    pub credential_kind: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_json: String,
    pub after_json: String,
    pub occurred_at: i64,
}

/// Records `change` in `tx`, with its event on the outbox.
pub async fn record(
    tx: &mut Transaction<'static, Any>,
    clock: &Clock,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    let json = |value: &Option<serde_json::Value>| {
        value.as_ref().map(ToString::to_string).unwrap_or_default()
    };
    let (before, after) = (json(&change.before), json(&change.after));
    let actor = change.actor.user_id.as_deref().unwrap_or_default();
    let kind = credential_kind(change.actor);
    sqlx::query(
        "INSERT INTO audit_events (id, org_id, actor_user_id, credential_kind, action, target_type, target_id, \
         before_json, after_json, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new_id())
    .bind(change.org_id)
    .bind(actor)
    .bind(kind)
    .bind(change.action)
    .bind(change.target_type)
    .bind(change.target_id)
    .bind(&before)
    .bind(&after)
    .bind(clock.now_micros())
    .execute(&mut **tx)
    .await?;
    events::append(
        tx,
        clock,
        &NewEvent {
            kind: change.action,
            subject_id: change.target_id.to_string(),
            org_id: change.org_id.to_string(),
            payload: serde_json::json!({
                "actor_user_id": actor,
                "credential_kind": kind,
                "target_type": change.target_type,
                "before": change.before,
                "after": change.after,
            }),
        },
    )
    .await?;
    Ok(())
}

/// Filters of a listing; empty strings and `None` mean "any".
pub struct Filter<'a> {
    pub org_id: &'a str,
    pub actor_user_id: &'a str,
    pub target_id: &'a str,
    pub from_micros: Option<i64>,
    pub until_micros: Option<i64>,
    pub before_id: Option<&'a str>,
    pub limit: i64,
}

fn from_row(row: &AnyRow) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        actor_user_id: row.try_get("actor_user_id")?,
        credential_kind: row.try_get("credential_kind")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        before_json: row.try_get("before_json")?,
        after_json: row.try_get("after_json")?,
        occurred_at: row.try_get("occurred_at")?,
    })
}

impl TenancyStorage {
    /// An org's audit events, newest first.
    pub async fn audit_events(&self, filter: Filter<'_>) -> Result<Vec<AuditRow>, sqlx::Error> {
        sqlx::query(
            "SELECT id, org_id, actor_user_id, credential_kind, action, target_type, target_id, before_json, \
             after_json, occurred_at FROM audit_events WHERE org_id = $1 \
             AND ($2 = '' OR actor_user_id = $2) AND ($3 = '' OR target_id = $3) \
             AND occurred_at >= $4 AND occurred_at < $5 AND ($6 = '' OR id < $6) \
             ORDER BY id DESC LIMIT $7",
        )
        .bind(filter.org_id)
        .bind(filter.actor_user_id)
        .bind(filter.target_id)
        .bind(filter.from_micros.unwrap_or(i64::MIN))
        .bind(filter.until_micros.unwrap_or(i64::MAX))
        .bind(filter.before_id.unwrap_or_default())
        .bind(filter.limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }
}
