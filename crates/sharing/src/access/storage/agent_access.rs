//! Agent access facts (DESIGN.md, "Who owns what"): what sharing keeps of
//! each agent so that checks, setup status and plans never call registry.
//! Registry writes them through `AccessInternal.SyncAgent`; its events repair
//! a missed write through the same path.

use agentshare_kit::db::{self, Stored, json_list};
use agentshare_kit::events::{self, NewEvent};
use agentshare_kit::ids;
use agentshare_kit::{Error, Result};
use agentshare_proto::events::v1::Event;
use agentshare_proto::sharing::v1 as pb;

use super::AccessStorage;
use crate::access::rules::retirement::Retirement;
use crate::access::rules::store_policy::StoreWritePolicy;

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

/// A stored state; anything but a live one reads as deleted, which grants
/// nothing.
impl From<String> for AccessState {
    fn from(state: String) -> Self {
        match state.as_str() {
            "draft" => Self::Draft,
            "active" => Self::Active,
            _ => Self::Deleted,
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
    /// The deprecated versions, each once.
    pub retirements: Vec<Retirement>,
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
        (false, home) => ids::parse("agent.home_workspace_id", home)?,
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
    let retirements = retirements_of(facts.latest_version, facts.deprecations)?;
    Ok(Facts {
        retirements,
        agent_id: ids::parse("agent.agent_id", &facts.agent_id)?,
        org_id: ids::parse("agent.org_id", &facts.org_id)?,
        // No user owns the org default agent: org owners and admins edit it.
        owner_user_id: if facts.is_default && facts.owner_user_id.is_empty() {
            String::new()
        } else {
            ids::parse("agent.owner_user_id", &facts.owner_user_id)?
        },
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

/// The deprecated versions registry sent: each an older version, once,
/// with a sunset.
fn retirements_of(
    latest_version: i64,
    deprecations: Vec<pb::VersionDeprecation>,
) -> Result<Vec<Retirement>, Error> {
    let mut retirements: Vec<Retirement> = Vec::with_capacity(deprecations.len());
    for deprecation in deprecations {
        if deprecation.version < 1 || deprecation.version >= latest_version {
            return Err(Error::invalid(
                "agent.deprecations.version",
                format!(
                    "version {} is not below the latest ({latest_version})",
                    deprecation.version
                ),
            ));
        }
        if retirements.iter().any(|r| r.version == deprecation.version) {
            return Err(Error::invalid(
                "agent.deprecations.version",
                format!("version {} appears twice", deprecation.version),
            ));
        }
        let sunset = deprecation
            .sunset_time
            .as_ref()
            .ok_or_else(|| Error::invalid("agent.deprecations.sunset_time", "required"))?;
        retirements.push(Retirement {
            version: deprecation.version,
            sunset_at: agentshare_kit::clock::micros_of(sunset),
            note: deprecation.note,
        });
    }
    Ok(retirements)
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

impl AccessStorage {
    /// Writes `facts` unless sharing already holds this revision or a later
    /// one. Deployed versions are immutable: one already stored is kept as
    /// it is. The home workspace is locked, so a concurrent DeleteWorkspace
    /// either sees this agent or deletes the workspace first.
    pub async fn sync_agent(&self, facts: &Facts) -> Result<Synced, Error> {
        let mut tx = self.db.begin_write().await?;
        let stored: Option<i64> = db::scalar::fetch_optional(
            &mut *tx,
            &self
                .db
                .locking("SELECT revision FROM agent_access WHERE agent_id = $1"),
            (&facts.agent_id,),
        )
        .await?;
        if let Some(stored) = stored.filter(|stored| *stored >= facts.revision) {
            return Ok(Synced {
                applied: false,
                stored_revision: stored,
            });
        }
        let org_known = db::exists(
            &mut *tx,
            "SELECT 1 FROM orgs WHERE id = $1",
            (&facts.org_id,),
        )
        .await?;
        if !org_known {
            return Err(Error::not_found(format!("org {}", facts.org_id)));
        }
        if facts.state != AccessState::Deleted && !facts.home_workspace_id.is_empty() {
            let home_known = db::exists(
                &mut *tx,
                &self
                    .db
                    .locking("SELECT 1 FROM workspaces WHERE id = $1 AND org_id = $2"),
                (&facts.home_workspace_id, &facts.org_id),
            )
            .await?;
            if !home_known {
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
        db::execute(
            &mut *tx,
            "DELETE FROM agent_integrations WHERE agent_id = $1 AND version = 0",
            (&facts.agent_id,),
        )
        .await?;
        insert_integrations(&mut tx, &facts.agent_id, 0, &facts.draft, false).await?;
        super::retirements::replace(&mut tx, &facts.agent_id, &facts.retirements).await?;
        if facts.state == AccessState::Deleted {
            // A delete ends every grant: the next call with a token says so.
            db::execute(
                &mut *tx,
                "UPDATE share_grants SET ended_at = $2 WHERE agent_id = $1 AND ended_at IS NULL",
                (&facts.agent_id, now),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Synced {
            applied: true,
            stored_revision: facts.revision,
        })
    }
}

/// The non-deleted agents whose home is `workspace_id`, up to `limit`,
/// for the message that says what to move or delete first.
pub async fn agents_homed_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    workspace_id: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let homed: Vec<(String, String)> = db::fetch_all(
        &mut **tx,
        "SELECT name, agent_id FROM agent_access WHERE home_workspace_id = $1 \
         AND state <> 'deleted' ORDER BY agent_id LIMIT $2",
        (workspace_id, limit),
    )
    .await?;
    Ok(homed
        .into_iter()
        .map(|(name, id)| format!("agent {name:?} ({id})"))
        .collect())
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
        db::execute(
            &mut **tx,
            &format!(
                "INSERT INTO agent_integrations (agent_id, version, key, position, provider, scope, \
                 builder_connection_id) VALUES ($1, $2, $3, $4, $5, $6, $7){conflict}"
            ),
            (
                agent_id,
                version,
                &integration.key,
                position,
                &integration.provider,
                integration.scope.as_str(),
                &integration.builder_connection_id,
            ),
        )
        .await?;
    }
    Ok(())
}

/// Applies one agent's facts. The first two syncs of a new agent may race to
/// insert it; the loser tries once more and finds the row.
pub async fn sync(storage: &AccessStorage, facts: pb::AgentAccessFacts) -> Result<Synced, Error> {
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
pub async fn repair(storage: &AccessStorage, event: &Event) -> Result<(), Error> {
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

/// One agent as sharing knows it. Flags are stored as 0 or 1 on both
/// backends.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AgentRow {
    pub agent_id: String,
    pub org_id: String,
    pub owner_user_id: String,
    /// Empty only for the org default agent.
    pub home_workspace_id: String,
    #[sqlx(try_from = "String")]
    pub state: AccessState,
    #[sqlx(try_from = "Stored<i64>")]
    pub is_default: bool,
    #[sqlx(try_from = "Stored<i64>")]
    pub is_managed: bool,
    #[sqlx(try_from = "Stored<i64>")]
    pub shared: bool,
    /// The home workspace first, then the others in the order added; read
    /// apart from the row, by `attach_workspaces`.
    #[sqlx(skip)]
    pub workspaces: Vec<String>,
    pub latest_version: i64,
    pub name: String,
    pub description: String,
    /// Who may write the agent's shared store.
    #[sqlx(flatten)]
    pub store_policy: StoreWritePolicy,
}

const AGENT_COLUMNS: &str = "a.agent_id, a.org_id, a.owner_user_id, a.home_workspace_id, a.state, \
     a.is_default, a.is_managed, a.shared, a.latest_version, a.name, a.description, \
     a.store_writers, a.store_anonymous_writes";

/// A My Agents candidate as stored.
#[derive(sqlx::FromRow)]
struct ListedRecord {
    #[sqlx(flatten)]
    agent: AgentRow,
    owner_display_name: String,
    pinned_version: Option<i64>,
    pin_sunset_at: Option<i64>,
    pin_note: String,
}

/// One user reaching an agent through one workspace.
#[derive(sqlx::FromRow)]
struct ReachRecord {
    id: String,
    email: String,
    display_name: String,
    workspace_id: String,
}

/// A user who reaches an agent through its workspaces.
pub struct Reached {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub workspace_ids: Vec<String>,
}

/// One row of My Agents before setup status.
pub struct Listed {
    pub agent: AgentRow,
    pub owner_display_name: String,
    pub pinned_version: Option<i64>,
    /// The pinned version's deprecation, if the owner deprecated it.
    pub pin_retirement: Option<Retirement>,
}

impl AccessStorage {
    /// The agent's facts, if registry has synced it.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>> {
        Ok(self
            .agents(&[agent_id.to_string()])
            .await?
            .into_iter()
            .next())
    }

    /// The synced agents among `ids`, each with its workspace list.
    pub async fn agents(&self, ids: &[String]) -> Result<Vec<AgentRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agent_access a WHERE a.agent_id IN ({})",
            self.db.backend.listed(1)
        );
        let mut agents: Vec<AgentRow> =
            db::fetch_all(&self.db.pool, &sql, (json_list(ids),)).await?;
        self.attach_workspaces(&mut agents).await?;
        Ok(agents)
    }

    /// Fills each agent's workspace list: its home, then the others.
    async fn attach_workspaces(&self, agents: &mut [AgentRow]) -> Result<()> {
        if agents.is_empty() {
            return Ok(());
        }
        for agent in agents.iter_mut() {
            agent.workspaces.clear();
            if !agent.home_workspace_id.is_empty() {
                agent.workspaces.push(agent.home_workspace_id.clone());
            }
        }
        let sql = format!(
            "SELECT agent_id, workspace_id FROM agent_workspaces WHERE agent_id IN ({}) \
             ORDER BY added_at, workspace_id",
            self.db.backend.listed(1)
        );
        let ids: Vec<&str> = agents.iter().map(|a| a.agent_id.as_str()).collect();
        let rows: Vec<(String, String)> =
            db::fetch_all(&self.db.pool, &sql, (json_list(&ids),)).await?;
        let position: std::collections::HashMap<String, usize> = agents
            .iter()
            .enumerate()
            .map(|(n, a)| (a.agent_id.clone(), n))
            .collect();
        for (agent_id, workspace_id) in rows {
            if let Some(agent) = position.get(&agent_id).map(|n| &mut agents[*n])
                && !agent.workspaces.contains(&workspace_id)
            {
                agent.workspaces.push(workspace_id);
            }
        }
        Ok(())
    }

    /// Sets the `shared` flag, recording `agent.shared` or `agent.unshared`
    /// when it changes; false when it already had that value.
    pub async fn set_shared(&self, agent: &AgentRow, shared: bool) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let changed = db::execute(
            &mut *tx,
            "UPDATE agent_access SET shared = $2 WHERE agent_id = $1 AND shared <> $2",
            (&agent.agent_id, i64::from(shared)),
        )
        .await?
        .rows_affected()
            > 0;
        if changed {
            events::append(
                &mut tx,
                &self.clock,
                &NewEvent {
                    kind: if shared {
                        "agent.shared"
                    } else {
                        "agent.unshared"
                    },
                    subject_id: agent.agent_id.clone(),
                    org_id: agent.org_id.clone(),
                    payload: serde_json::json!({
                        "owner_user_id": agent.owner_user_id,
                        "workspace_ids": agent.workspaces,
                    }),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(changed)
    }
    /// Replaces the workspaces besides the home one, recording
    /// `agent.workspaces_changed` with those removed and an audit event.
    pub async fn set_agent_workspaces(
        &self,
        actor: &agentshare_kit::identity::Principal,
        agent: &AgentRow,
        after: &[String],
    ) -> Result<(Vec<String>, Vec<String>)> {
        let before = &agent.workspaces;
        let added: Vec<String> = after
            .iter()
            .filter(|w| !before.contains(w))
            .cloned()
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|w| !after.contains(w))
            .cloned()
            .collect();
        if added.is_empty() && removed.is_empty() {
            return Ok((added, removed));
        }
        let mut tx = self.db.begin_write().await?;
        let now = self.clock.now_micros();
        for workspace in &removed {
            db::execute(
                &mut *tx,
                "DELETE FROM agent_workspaces WHERE agent_id = $1 AND workspace_id = $2",
                (&agent.agent_id, workspace),
            )
            .await?;
        }
        for workspace in &added {
            db::execute(
                &mut *tx,
                "INSERT INTO agent_workspaces (agent_id, workspace_id, added_at) VALUES ($1, $2, $3)",
                (&agent.agent_id, workspace, now),
            )
            .await?;
        }
        // The audit record is also the `agent.workspaces_changed` event.
        crate::tenancy::storage::audit::record(
            &mut tx,
            &self.clock,
            crate::tenancy::storage::audit::Change {
                org_id: &agent.org_id,
                actor,
                action: "agent.workspaces_changed",
                target_type: "agent",
                target_id: &agent.agent_id,
                before: Some(serde_json::json!({ "workspace_ids": before })),
                after: Some(serde_json::json!({
                    "workspace_ids": after,
                    "added_workspace_ids": added,
                    "removed_workspace_ids": removed,
                })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok((added, removed))
    }

    /// Stores the agent's store write policy, with the audit event
    /// `agent.store_write_policy_changed` when it changes; false when it
    /// already was `after`.
    pub async fn set_store_policy(
        &self,
        actor: &agentshare_kit::identity::Principal,
        agent: &AgentRow,
        after: StoreWritePolicy,
    ) -> Result<bool> {
        if agent.store_policy == after {
            return Ok(false);
        }
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "UPDATE agent_access SET store_writers = $2, store_anonymous_writes = $3 \
             WHERE agent_id = $1",
            (
                &agent.agent_id,
                after.writers.as_str(),
                i64::from(after.anonymous_writes),
            ),
        )
        .await?;
        crate::tenancy::storage::audit::record(
            &mut tx,
            &self.clock,
            crate::tenancy::storage::audit::Change::new(
                actor,
                &agent.org_id,
                "agent.store_write_policy_changed",
                ("agent", &agent.agent_id),
            )
            .before(agent.store_policy.to_json())
            .after(after.to_json()),
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    /// The users other than the owner who reach the agent through its
    /// workspaces now (every org member when workspaces are off), and
    /// through which. Viewers count: they lose sight of it too.
    pub async fn users_reaching(
        &self,
        agent: &AgentRow,
        workspaces_enabled: bool,
        default_workspace_id: &str,
    ) -> Result<Vec<Reached>> {
        let rows: Vec<ReachRecord> = if workspaces_enabled {
            if agent.workspaces.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT u.id, u.email, u.display_name, m.workspace_id FROM workspace_members m \
                 JOIN users u ON u.id = m.user_id \
                 JOIN org_members o ON o.user_id = m.user_id AND o.org_id = $1 \
                 WHERE m.user_id <> $2 AND m.workspace_id IN ({}) ORDER BY u.id, m.workspace_id",
                self.db.backend.listed(3)
            );
            let workspaces = json_list(&agent.workspaces);
            db::fetch_all(
                &self.db.pool,
                &sql,
                (&agent.org_id, &agent.owner_user_id, workspaces),
            )
            .await?
        } else {
            db::fetch_all(
                &self.db.pool,
                "SELECT u.id, u.email, u.display_name, $3 AS workspace_id FROM org_members o \
                 JOIN users u ON u.id = o.user_id WHERE o.org_id = $1 AND o.user_id <> $2 ORDER BY u.id",
                (&agent.org_id, &agent.owner_user_id, default_workspace_id),
            )
            .await?
        };
        let mut reached: Vec<Reached> = Vec::new();
        for row in rows {
            match reached.last_mut() {
                Some(last) if last.user_id == row.id => last.workspace_ids.push(row.workspace_id),
                _ => reached.push(Reached {
                    user_id: row.id,
                    email: row.email,
                    display_name: row.display_name,
                    workspace_ids: vec![row.workspace_id],
                }),
            }
        }
        Ok(reached)
    }

    /// Candidates for the user's My Agents in `org_id`, after `after`, by
    /// agent id: their own live agents, the org's active default agent, and
    /// active shared agents listed in `standing` (any workspace of the org
    /// while workspaces are off). The caller applies the access decision to
    /// each, so the list and Check cannot disagree, and reads on from the
    /// last candidate until its page is full.
    pub async fn my_agent_candidates(
        &self,
        org_id: &str,
        user_id: &str,
        standing: Option<&str>,
        workspaces_enabled: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Listed>> {
        let reach = match (workspaces_enabled, standing) {
            (false, _) => "OR (a.state = 'active' AND a.shared = 1)".to_string(),
            (true, Some(_)) => "OR (a.state = 'active' AND a.shared = 1 AND (a.home_workspace_id = $4 \
                 OR EXISTS (SELECT 1 FROM agent_workspaces w WHERE w.agent_id = a.agent_id AND w.workspace_id = $4)))"
                .to_string(),
            (true, None) => String::new(),
        };
        let sql = format!(
            "SELECT {AGENT_COLUMNS}, \
             COALESCE(u.display_name, '') AS owner_display_name, p.version AS pinned_version, \
             r.sunset_at AS pin_sunset_at, COALESCE(r.note, '') AS pin_note \
             FROM agent_access a \
             LEFT JOIN users u ON u.id = a.owner_user_id \
             LEFT JOIN pins p ON p.agent_id = a.agent_id AND p.user_id = $2 \
             LEFT JOIN version_retirements r ON r.agent_id = p.agent_id AND r.version = p.version \
             WHERE a.org_id = $1 AND a.state <> 'deleted' AND a.agent_id > $3 \
             AND ((a.owner_user_id = $2) OR (a.is_default = 1 AND a.state = 'active') {reach}) \
             ORDER BY a.agent_id LIMIT $5"
        );
        let rows: Vec<ListedRecord> = db::fetch_all(
            &self.db.pool,
            &sql,
            (
                org_id,
                user_id,
                after.unwrap_or(""),
                standing.unwrap_or(""),
                limit,
            ),
        )
        .await?;
        let (mut agents, about): (Vec<AgentRow>, Vec<_>) = rows
            .into_iter()
            .map(|row| {
                let pin_retirement =
                    row.pinned_version
                        .zip(row.pin_sunset_at)
                        .map(|(version, sunset_at)| Retirement {
                            version,
                            sunset_at,
                            note: row.pin_note,
                        });
                let about = (row.owner_display_name, row.pinned_version, pin_retirement);
                (row.agent, about)
            })
            .unzip();
        self.attach_workspaces(&mut agents).await?;
        Ok(agents
            .into_iter()
            .zip(about)
            .map(
                |(agent, (owner_display_name, pinned_version, pin_retirement))| Listed {
                    agent,
                    owner_display_name,
                    pinned_version,
                    pin_retirement,
                },
            )
            .collect())
    }
}
