//! Agent access facts (DESIGN.md, "Who owns what"): what sharing keeps of
//! each agent so that checks, setup status and plans never call registry.
//! Registry writes them through `AccessInternal.SyncAgent`; its events repair
//! a missed write through the same path.

use agentshare_kit::Error;
use agentshare_proto::events::v1::Event;
use agentshare_proto::sharing::v1 as pb;
use sqlx::Row;

use crate::domain;
use crate::storage::Storage;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessState {
    Draft,
    Active,
    Deleted,
}

impl AccessState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Shared,
    UserConfigured,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::UserConfigured => "user_configured",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Integration {
    pub key: String,
    pub provider: String,
    pub scope: Scope,
    /// Empty when the builder has not pointed it at a connection.
    pub builder_connection_id: String,
}

/// One agent's facts at one revision, validated.
#[derive(Clone, Debug)]
pub struct Facts {
    pub agent_id: String,
    pub org_id: String,
    pub owner_user_id: String,
    /// Empty only for the org default agent.
    pub home_workspace_id: String,
    pub state: AccessState,
    pub is_default: bool,
    pub is_managed: bool,
    pub latest_version: i64,
    pub revision: i64,
    pub name: String,
    pub description: String,
    pub versions: Vec<(i64, Vec<Integration>)>,
    pub draft: Vec<Integration>,
}

/// The facts registry sent, or INVALID_ARGUMENT naming what is wrong.
pub fn facts_of(facts: pb::AgentAccessFacts) -> Result<Facts, Error> {
    let state = match pb::AgentAccessState::try_from(facts.state) {
        Ok(pb::AgentAccessState::Draft) => AccessState::Draft,
        Ok(pb::AgentAccessState::Active) => AccessState::Active,
        Ok(pb::AgentAccessState::Deleted) => AccessState::Deleted,
        _ => {
            return Err(Error::invalid(
                "agent.state",
                "must be DRAFT, ACTIVE or DELETED",
            ));
        }
    };
    let home_workspace_id = match (facts.is_default, facts.home_workspace_id.as_str()) {
        (true, "") => String::new(),
        (true, _) => {
            return Err(Error::invalid(
                "agent.home_workspace_id",
                "the org default agent lives in no workspace",
            ));
        }
        (false, home) => domain::uuid("agent.home_workspace_id", home)?,
    };
    if facts.revision < 1 {
        return Err(Error::invalid("agent.revision", "must be 1 or more"));
    }
    if facts.latest_version < 0 || (state == AccessState::Active && facts.latest_version < 1) {
        return Err(Error::invalid(
            "agent.latest_version",
            "must be 1 or more for an ACTIVE agent, and never negative",
        ));
    }
    let mut versions = Vec::with_capacity(facts.versions.len());
    for version in facts.versions {
        if version.version < 1 || version.version > facts.latest_version {
            return Err(Error::invalid(
                "agent.versions.version",
                format!(
                    "version {} is outside 1..={}",
                    version.version, facts.latest_version
                ),
            ));
        }
        versions.push((
            version.version,
            integrations_of("agent.versions.integrations", version.integrations)?,
        ));
    }
    Ok(Facts {
        agent_id: domain::uuid("agent.agent_id", &facts.agent_id)?,
        org_id: domain::uuid("agent.org_id", &facts.org_id)?,
        owner_user_id: domain::uuid("agent.owner_user_id", &facts.owner_user_id)?,
        home_workspace_id,
        state,
        is_default: facts.is_default,
        is_managed: facts.is_managed,
        latest_version: facts.latest_version,
        revision: facts.revision,
        name: facts.name,
        description: facts.description,
        versions,
        draft: integrations_of("agent.draft_integrations", facts.draft_integrations)?,
    })
}

fn integrations_of(
    field: &str,
    integrations: Vec<pb::SyncedIntegration>,
) -> Result<Vec<Integration>, Error> {
    let mut seen = std::collections::HashSet::new();
    integrations
        .into_iter()
        .map(|integration| {
            if integration.key.is_empty() {
                return Err(Error::invalid(format!("{field}.key"), "must not be empty"));
            }
            if !seen.insert(integration.key.clone()) {
                return Err(Error::invalid(
                    format!("{field}.key"),
                    format!("integration key {:?} appears twice", integration.key),
                ));
            }
            let scope = match pb::IntegrationScope::try_from(integration.scope) {
                Ok(pb::IntegrationScope::Shared) => Scope::Shared,
                Ok(pb::IntegrationScope::UserConfigured) => Scope::UserConfigured,
                _ => {
                    return Err(Error::invalid(
                        format!("{field}.scope"),
                        "must be SHARED or USER_CONFIGURED",
                    ));
                }
            };
            Ok(Integration {
                key: integration.key,
                provider: integration.provider,
                scope,
                builder_connection_id: integration.builder_connection_id,
            })
        })
        .collect()
}

/// What a sync did.
pub struct Synced {
    pub applied: bool,
    pub stored_revision: i64,
}

impl Storage {
    /// Writes `facts` unless sharing already holds this revision or a later
    /// one. Deployed versions are immutable: one already stored is kept as
    /// it is. The home workspace is locked, so a concurrent DeleteWorkspace
    /// either sees this agent or deletes the workspace first.
    pub async fn sync_agent(&self, facts: &Facts) -> Result<Synced, Error> {
        let mut tx = self.db.begin_write().await.map_err(Error::from)?;
        let stored: Option<i64> = sqlx::query(&format!(
            "SELECT revision FROM agent_access WHERE agent_id = $1{}",
            self.db.backend.for_update()
        ))
        .bind(&facts.agent_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::from)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(Error::from)?;
        if let Some(stored) = stored.filter(|stored| *stored >= facts.revision) {
            return Ok(Synced {
                applied: false,
                stored_revision: stored,
            });
        }
        let org_known = sqlx::query("SELECT 1 FROM orgs WHERE id = $1")
            .bind(&facts.org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)?
            .is_some();
        if !org_known {
            return Err(Error::not_found(format!("org {}", facts.org_id)));
        }
        if facts.state != AccessState::Deleted && !facts.home_workspace_id.is_empty() {
            let home = sqlx::query(&format!(
                "SELECT 1 FROM workspaces WHERE id = $1 AND org_id = $2{}",
                self.db.backend.for_update()
            ))
            .bind(&facts.home_workspace_id)
            .bind(&facts.org_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::from)?;
            if home.is_none() {
                return Err(Error::not_found(format!(
                    "workspace {}",
                    facts.home_workspace_id
                )));
            }
        }
        let now = self.clock.now_micros();
        let written = if stored.is_some() {
            sqlx::query(
                "UPDATE agent_access SET org_id = $2, owner_user_id = $3, home_workspace_id = $4, \
                 state = $5, is_default = $6, is_managed = $7, latest_version = $8, revision = $9, \
                 name = $10, description = $11, synced_at = $12 WHERE agent_id = $1",
            )
        } else {
            // Two first syncs may race; the loser's insert fails on the key
            // and the caller's retry (or the event backstop) applies it.
            sqlx::query(
                "INSERT INTO agent_access (agent_id, org_id, owner_user_id, home_workspace_id, \
                 state, is_default, is_managed, latest_version, revision, name, description, synced_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
        };
        written
            .bind(&facts.agent_id)
            .bind(&facts.org_id)
            .bind(&facts.owner_user_id)
            .bind(&facts.home_workspace_id)
            .bind(facts.state.as_str())
            .bind(i64::from(facts.is_default))
            .bind(i64::from(facts.is_managed))
            .bind(facts.latest_version)
            .bind(facts.revision)
            .bind(&facts.name)
            .bind(&facts.description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|error| {
                if agentshare_kit::db::is_unique_violation(&error) {
                    Error::Aborted(format!(
                        "agent {} was synced concurrently; retry",
                        facts.agent_id
                    ))
                } else {
                    Error::from(error)
                }
            })?;
        for (version, integrations) in &facts.versions {
            insert_integrations(&mut tx, &facts.agent_id, *version, integrations, true).await?;
        }
        sqlx::query("DELETE FROM agent_integrations WHERE agent_id = $1 AND version = 0")
            .bind(&facts.agent_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        insert_integrations(&mut tx, &facts.agent_id, 0, &facts.draft, false).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Synced {
            applied: true,
            stored_revision: facts.revision,
        })
    }

    /// The non-deleted agents whose home is `workspace_id`, up to `limit`,
    /// for the message that says what to move or delete first.
    pub async fn agents_homed_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        workspace_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(
            "SELECT name, agent_id FROM agent_access WHERE home_workspace_id = $1 \
             AND state <> 'deleted' ORDER BY agent_id LIMIT $2",
        )
        .bind(workspace_id)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|row| {
            let name: String = row.try_get("name")?;
            let id: String = row.try_get("agent_id")?;
            Ok(format!("agent {name:?} ({id})"))
        })
        .collect()
    }
}

/// Writes one version's integrations; `keep_stored` leaves a version that
/// is already there untouched, because versions never change.
async fn insert_integrations(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    agent_id: &str,
    version: i64,
    integrations: &[Integration],
    keep_stored: bool,
) -> Result<(), Error> {
    let conflict = if keep_stored {
        " ON CONFLICT (agent_id, version, key) DO NOTHING"
    } else {
        ""
    };
    for (position, integration) in (0_i64..).zip(integrations) {
        sqlx::query(&format!(
            "INSERT INTO agent_integrations (agent_id, version, key, position, provider, scope, \
             builder_connection_id) VALUES ($1, $2, $3, $4, $5, $6, $7){conflict}"
        ))
        .bind(agent_id)
        .bind(version)
        .bind(&integration.key)
        .bind(position)
        .bind(&integration.provider)
        .bind(integration.scope.as_str())
        .bind(&integration.builder_connection_id)
        .execute(&mut **tx)
        .await
        .map_err(Error::from)?;
    }
    Ok(())
}

/// Applies one agent's facts. The first two syncs of a new agent may race to
/// insert it; the loser tries once more and finds the row.
pub async fn sync(storage: &Storage, facts: pb::AgentAccessFacts) -> Result<Synced, Error> {
    let facts = facts_of(facts)?;
    match storage.sync_agent(&facts).await {
        Err(Error::Aborted(_)) => storage.sync_agent(&facts).await,
        other => other,
    }
}

/// The backstop: registry's agent events carry the agent's facts, so a sync
/// that never reached sharing is applied when its event arrives. Facts that
/// can never apply (an org sharing does not know) are logged and passed
/// over, so they do not hold back the events behind them.
pub async fn repair(storage: &Storage, event: &Event) -> Result<(), Error> {
    let payload: serde_json::Value = match serde_json::from_str(&event.payload_json) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::warn!(seq = event.seq, kind = %event.kind, %error, "registry event payload is not JSON; skipped");
            return Ok(());
        }
    };
    let Some(facts) = payload.get("facts") else {
        return Ok(());
    };
    let facts = match agentshare_proto::access_facts::from_json(facts) {
        Ok(facts) => facts,
        Err(error) => {
            tracing::warn!(seq = event.seq, kind = %event.kind, %error, "registry event carries unreadable facts; skipped");
            return Ok(());
        }
    };
    match sync(storage, facts).await {
        Ok(_) => Ok(()),
        Err(error @ (Error::InvalidArgument(_) | Error::NotFound(_))) => {
            tracing::warn!(seq = event.seq, kind = %event.kind, %error, "registry event facts cannot apply; skipped");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// One agent as sharing knows it.
#[derive(Clone, Debug)]
pub struct AgentRow {
    pub agent_id: String,
    pub org_id: String,
    pub owner_user_id: String,
    pub state: AccessState,
    pub is_default: bool,
    pub latest_version: i64,
}

impl Storage {
    /// The agent's facts, if registry has synced it.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, sqlx::Error> {
        let Some(row) = sqlx::query(
            "SELECT agent_id, org_id, owner_user_id, state, is_default, latest_version \
             FROM agent_access WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&self.db.pool)
        .await?
        else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        Ok(Some(AgentRow {
            agent_id: row.try_get("agent_id")?,
            org_id: row.try_get("org_id")?,
            owner_user_id: row.try_get("owner_user_id")?,
            state: match state.as_str() {
                "draft" => AccessState::Draft,
                "active" => AccessState::Active,
                _ => AccessState::Deleted,
            },
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            latest_version: row.try_get("latest_version")?,
        }))
    }
}
