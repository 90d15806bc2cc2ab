//! The audit trail: who changed what, with which credential, before and
//! after. Each record is written in the transaction of its change and also
//! emitted on the event log.

use agentshare_kit::Result;
use agentshare_kit::clock::Clock;
use agentshare_kit::db::{self, new_id};
use agentshare_kit::events::{self, NewEvent};
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use sqlx::{Any, Transaction};

use super::TenancyStorage;
use crate::common::Shared;

/// How the actor authenticated, as stored.
pub fn credential_kind(principal: &Principal) -> &'static str {
    if principal.api_key_id.is_some() {
        "api_key"
    } else if principal.grant.is_some() {
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

impl<'a> Change<'a> {
    /// `actor` did `action` to the `target_type` `target_id` in the org;
    /// [`Change::before`] and [`Change::after`] add what it looked like.
    pub fn new(
        actor: &'a Principal,
        org_id: &'a str,
        action: &'static str,
        (target_type, target_id): (&'static str, &'a str),
    ) -> Self {
        Self {
            org_id,
            actor,
            action,
            target_type,
            target_id,
            before: None,
            after: None,
        }
    }

    pub fn before(self, fields: serde_json::Value) -> Self {
        Self {
            before: Some(fields),
            ..self
        }
    }

    pub fn after(self, fields: serde_json::Value) -> Self {
        Self {
            after: Some(fields),
            ..self
        }
    }
}

#[derive(sqlx::FromRow)]
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
) -> Result<()> {
    let json = |value: &Option<serde_json::Value>| {
        value.as_ref().map(ToString::to_string).unwrap_or_default()
    };
    let (before, after) = (json(&change.before), json(&change.after));
    let actor = change.actor.user_id.as_deref().unwrap_or_default();
    let kind = credential_kind(change.actor);
    db::execute(
        &mut **tx,
        "INSERT INTO audit_events (id, org_id, actor_user_id, credential_kind, action, target_type, target_id, \
         before_json, after_json, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        (
            new_id(),
            change.org_id,
            actor,
            kind,
            change.action,
            change.target_type,
            change.target_id,
            &before,
            &after,
            clock.now_micros(),
        ),
    )
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

impl Shared {
    /// Records `change` in `tx` and commits: the audited end of every
    /// change to tenancy (and of the changes elsewhere the trail keeps).
    pub async fn commit_audited(
        &self,
        mut tx: Transaction<'static, Any>,
        change: Change<'_>,
    ) -> Result<()> {
        record(&mut tx, &self.clock, change).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Commits `tx`, recording `change` only if the change `happened`
    /// (a row was added or removed); answers whether it did.
    pub async fn commit_audited_if(
        &self,
        happened: bool,
        tx: Transaction<'static, Any>,
        change: Change<'_>,
    ) -> Result<bool> {
        if happened {
            self.commit_audited(tx, change).await?;
        } else {
            self.commit(tx).await?;
        }
        Ok(happened)
    }
}

/// Filters of a listing; empty strings and `None` mean "any".
pub struct Filter<'a> {
    pub org_id: &'a str,
    pub actor_user_id: &'a str,
    pub target_id: &'a str,
    pub from_micros: Option<i64>,
    pub until_micros: Option<i64>,
}

impl TenancyStorage {
    /// An org's audit events, newest first.
    pub async fn audit_events(&self, filter: Filter<'_>, page: &Page) -> Result<Vec<AuditRow>> {
        Ok(db::fetch_all(
            &self.db.pool,
            "SELECT id, org_id, actor_user_id, credential_kind, action, target_type, target_id, before_json, \
             after_json, occurred_at FROM audit_events WHERE org_id = $1 \
             AND ($2 = '' OR actor_user_id = $2) AND ($3 = '' OR target_id = $3) \
             AND occurred_at >= $4 AND occurred_at < $5 AND ($6 = '' OR id < $6) \
             ORDER BY id DESC LIMIT $7",
            (
                filter.org_id,
                filter.actor_user_id,
                filter.target_id,
                filter.from_micros.unwrap_or(i64::MIN),
                filter.until_micros.unwrap_or(i64::MAX),
                page,
            ),
        )
        .await?)
    }
}
