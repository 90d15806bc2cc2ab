//! Registry's SQL. Nothing here decides who may do what.
//!
//! Every change that alters an agent's access facts raises its `revision`
//! and records an event carrying the facts at that revision, in the same
//! transaction, so sharing's event follower can repair a missed sync.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::{self, Db, Stored, is_unique_violation, new_id};
use agentshare_kit::events::{self, EventLog, NewEvent};
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result};
use agentshare_proto::access_facts;
use agentshare_proto::registry::v1 as pb;
use agentshare_proto::sharing::v1::AgentAccessFacts;
use prost::Message;
use sqlx::{Any, AnyConnection, Transaction};

use crate::domain::{self, AgentState, FactsSource, Origin};

#[derive(Clone, Debug)]
pub struct AgentRow {
    pub id: String,
    pub org_id: String,
    /// Empty for the org default agent, which belongs to the org.
    pub owner_user_id: String,
    /// Empty for the org default agent.
    pub home_workspace_id: String,
    pub state: AgentState,
    pub is_default: bool,
    pub is_managed: bool,
    pub draft: pb::AgentDraft,
    pub draft_revision: i64,
    pub revision: i64,
    pub latest_version: i64,
    /// The content of the latest version; `None` while a DRAFT.
    pub latest: Option<pb::AgentDraft>,
    pub latest_deployed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

impl AgentRow {
    pub fn standing(&self) -> domain::Standing<'_> {
        domain::Standing {
            owner_user_id: &self.owner_user_id,
            is_default: self.is_default,
            state: self.state,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VersionRow {
    pub agent_id: String,
    pub number: i64,
    #[sqlx(try_from = "Encoded")]
    pub content: pb::AgentDraft,
    pub deployer_user_id: String,
    pub deployed_at: i64,
    pub notes: String,
    #[sqlx(try_from = "String")]
    pub origin: Origin,
    pub rollback_of: i64,
    pub draft_revision: i64,
    /// When the version retires; `None` while it is not deprecated.
    pub sunset_at: Option<i64>,
    pub deprecation_note: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub description: String,
    #[sqlx(try_from = "Encoded")]
    pub content: pb::AgentDraft,
    pub source_agent_id: String,
    pub source_version: i64,
    pub publisher_user_id: String,
    pub created_at: i64,
}

/// A new agent's first draft.
pub struct NewAgent<'a> {
    pub org_id: &'a str,
    pub owner_user_id: &'a str,
    pub home_workspace_id: &'a str,
    pub draft: &'a pb::AgentDraft,
    pub is_managed: bool,
}

/// A version to add, applied only while the agent still is as the caller
/// read it: the same latest version and, for a deploy, the same draft.
pub struct NewVersion<'a> {
    pub agent_id: &'a str,
    pub expected_latest: i64,
    pub expected_draft_revision: Option<i64>,
    pub content: &'a pb::AgentDraft,
    pub deployer_user_id: &'a str,
    pub notes: &'a str,
    pub origin: Origin,
    pub rollback_of: i64,
    /// The draft revision snapshotted; 0 for rollbacks.
    pub draft_revision: i64,
}

/// A version's deprecation to set, or to clear when `announced` is `None`.
pub struct Deprecation<'a> {
    pub agent_id: &'a str,
    pub version: i64,
    pub by_user_id: &'a str,
    pub announced: Option<Announced<'a>>,
}

/// What a deprecation tells the version's pinned users.
pub struct Announced<'a> {
    pub sunset_at: i64,
    pub note: &'a str,
    /// The version their runs move to, and the changes to it in words.
    pub latest_version: i64,
    pub changes: &'a str,
}

pub struct NewTemplate<'a> {
    pub org_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub content: &'a pb::AgentDraft,
    pub source_agent_id: &'a str,
    pub source_version: i64,
    pub publisher_user_id: &'a str,
}

/// Filters of ListAgents, with the visibility rule from the domain.
pub struct AgentFilter<'a> {
    pub org_id: &'a str,
    pub listing: &'a domain::Listing,
    pub state: Option<AgentState>,
    pub page: &'a Page,
}

#[derive(Clone)]
pub struct Storage {
    pub db: Db,
    pub clock: Clock,
    pub events: EventLog,
}

const AGENT_COLUMNS: &str = "a.id, a.org_id, a.owner_user_id, a.home_workspace_id, a.state, \
     a.name, a.description, a.instructions, a.design, a.draft_revision, a.revision, a.is_default, \
     a.is_managed, a.latest_version, a.latest_deployed_at, a.created_at, a.updated_at, \
     a.deleted_at, v.content AS latest_content \
     FROM agents a LEFT JOIN agent_versions v ON v.agent_id = a.id AND v.number = a.latest_version";

const VERSION_COLUMNS: &str = "agent_id, number, content, deployer_user_id, deployed_at, notes, \
     origin, rollback_of, draft_revision, sunset_at, deprecation_note FROM agent_versions";

const TEMPLATE_COLUMNS: &str = "id, org_id, name, description, content, source_agent_id, \
     source_version, publisher_user_id, created_at FROM templates";

fn corrupt(what: &str, error: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {error}"))
}

fn decode_design(bytes: &[u8]) -> Result<pb::AgentDraft> {
    pb::AgentDraft::decode(bytes).map_err(|e| corrupt("stored design", e))
}

/// The draft minus the three fields that have columns of their own.
fn design_bytes(draft: &pb::AgentDraft) -> Vec<u8> {
    pb::AgentDraft {
        name: String::new(),
        description: String::new(),
        instructions: String::new(),
        ..draft.clone()
    }
    .encode_to_vec()
}

/// An agent as stored: the draft's design in bytes beside its own columns,
/// flags as 0 or 1 on both backends.
#[derive(sqlx::FromRow)]
struct AgentRecord {
    id: String,
    org_id: String,
    owner_user_id: String,
    home_workspace_id: String,
    #[sqlx(try_from = "String")]
    state: AgentState,
    name: String,
    description: String,
    instructions: String,
    design: Vec<u8>,
    draft_revision: i64,
    revision: i64,
    #[sqlx(try_from = "Stored<i64>")]
    is_default: bool,
    #[sqlx(try_from = "Stored<i64>")]
    is_managed: bool,
    latest_version: i64,
    latest_deployed_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    latest_content: Option<Vec<u8>>,
}

impl TryFrom<AgentRecord> for AgentRow {
    type Error = Error;

    fn try_from(row: AgentRecord) -> Result<Self> {
        let draft = pb::AgentDraft {
            name: row.name,
            description: row.description,
            instructions: row.instructions,
            ..decode_design(&row.design)?
        };
        Ok(Self {
            id: row.id,
            org_id: row.org_id,
            owner_user_id: row.owner_user_id,
            home_workspace_id: row.home_workspace_id,
            state: row.state,
            is_default: row.is_default,
            is_managed: row.is_managed,
            draft,
            draft_revision: row.draft_revision,
            revision: row.revision,
            latest_version: row.latest_version,
            latest: row
                .latest_content
                .as_deref()
                .map(decode_design)
                .transpose()?,
            latest_deployed_at: row.latest_deployed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        })
    }
}

/// A design as stored: the protobuf encoding of an `AgentDraft`.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
struct Encoded(Vec<u8>);

impl TryFrom<Encoded> for pb::AgentDraft {
    type Error = prost::DecodeError;

    fn try_from(stored: Encoded) -> Result<Self, prost::DecodeError> {
        Self::decode(stored.0.as_slice())
    }
}

/// Decodes stored records into rows.
fn decoded<R, T: TryFrom<R, Error = Error>>(records: Vec<R>) -> Result<Vec<T>> {
    records.into_iter().map(T::try_from).collect()
}

/// Decodes a stored record, if there is one.
fn decoded_one<R, T: TryFrom<R, Error = Error>>(record: Option<R>) -> Result<Option<T>> {
    record.map(T::try_from).transpose()
}

async fn agent_on(conn: &mut AnyConnection, agent_id: &str) -> Result<AgentRow> {
    let row: AgentRecord = db::fetch_one(
        &mut *conn,
        &format!("SELECT {AGENT_COLUMNS} WHERE a.id = $1"),
        (agent_id,),
    )
    .await?;
    row.try_into()
}

/// The agent and its facts as of this connection's view.
async fn facts_on(
    conn: &mut AnyConnection,
    agent_id: &str,
) -> Result<(AgentRow, AgentAccessFacts)> {
    let agent = agent_on(conn, agent_id).await?;
    let stored: Vec<(i64, Vec<u8>, Option<i64>, String)> = db::fetch_all(
        &mut *conn,
        "SELECT number, content, sunset_at, deprecation_note FROM agent_versions \
         WHERE agent_id = $1 ORDER BY number",
        (agent_id,),
    )
    .await?;
    let deprecations: Vec<(i64, i64, String)> = stored
        .iter()
        .filter_map(|(number, _, sunset, note)| {
            sunset.map(|sunset| (*number, sunset, note.clone()))
        })
        .collect();
    let versions = stored
        .into_iter()
        .map(|(number, content, _, _)| Ok((number, decode_design(&content)?)))
        .collect::<Result<Vec<_>>>()?;
    let facts = domain::facts(&FactsSource {
        agent_id: &agent.id,
        org_id: &agent.org_id,
        owner_user_id: &agent.owner_user_id,
        home_workspace_id: &agent.home_workspace_id,
        state: agent.state,
        is_default: agent.is_default,
        is_managed: agent.is_managed,
        revision: agent.revision,
        draft: &agent.draft,
        versions: &versions,
        deprecations: &deprecations,
    });
    Ok((agent, facts))
}

impl Storage {
    async fn commit(&self, tx: Transaction<'static, Any>) -> Result<()> {
        tx.commit().await?;
        self.events.committed();
        Ok(())
    }

    /// Records an event about an agent, carrying its facts.
    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        kind: &'static str,
        facts: &AgentAccessFacts,
        mut payload: serde_json::Value,
    ) -> Result<()> {
        if let Some(object) = payload.as_object_mut() {
            object.insert("facts".into(), access_facts::to_json(facts));
        }
        events::append(
            tx,
            &self.clock,
            &NewEvent {
                kind,
                subject_id: facts.agent_id.clone(),
                org_id: facts.org_id.clone(),
                payload,
            },
        )
        .await?;
        Ok(())
    }

    /// Records an event about an agent, carrying its facts, and commits.
    async fn commit_recorded(
        &self,
        mut tx: Transaction<'static, Any>,
        kind: &'static str,
        facts: &AgentAccessFacts,
        payload: serde_json::Value,
    ) -> Result<()> {
        self.record(&mut tx, kind, facts, payload).await?;
        self.commit(tx).await
    }

    pub async fn create_agent(&self, new: NewAgent<'_>) -> Result<(AgentRow, AgentAccessFacts)> {
        let now = self.clock.now_micros();
        let id = new_id();
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO agents (id, org_id, owner_user_id, home_workspace_id, state, name, \
             description, instructions, design, draft_revision, revision, is_managed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8, 1, 1, $9, $10, $10)",
            (
                &id,
                new.org_id,
                new.owner_user_id,
                new.home_workspace_id,
                &new.draft.name,
                &new.draft.description,
                &new.draft.instructions,
                design_bytes(new.draft),
                i64::from(new.is_managed),
                now,
            ),
        )
        .await?;
        let (agent, facts) = facts_on(&mut tx, &id).await?;
        let payload = serde_json::json!({
            "owner_user_id": agent.owner_user_id,
            "home_workspace_id": agent.home_workspace_id,
            "is_managed": agent.is_managed,
        });
        self.commit_recorded(tx, "agent.created", &facts, payload)
            .await?;
        Ok((agent, facts))
    }

    /// Creates the org default agent, ACTIVE with version 1. `None` when the
    /// org already has one: the unique index lets exactly one creator win.
    pub async fn create_default_agent(
        &self,
        org_id: &str,
        content: &pb::AgentDraft,
    ) -> Result<Option<(AgentRow, AgentAccessFacts)>> {
        let now = self.clock.now_micros();
        let id = new_id();
        let mut tx = self.db.begin_write().await?;
        let inserted = db::execute(
            &mut *tx,
            "INSERT INTO agents (id, org_id, owner_user_id, home_workspace_id, state, name, \
             description, instructions, design, draft_revision, revision, is_default, latest_version, \
             latest_deployed_at, created_at, updated_at) \
             VALUES ($1, $2, '', '', 'active', $3, $4, $5, $6, 1, 1, 1, 1, $7, $7, $7)",
            (
                &id,
                org_id,
                &content.name,
                &content.description,
                &content.instructions,
                design_bytes(content),
                now,
            ),
        )
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        db::execute(
            &mut *tx,
            "INSERT INTO agent_versions (agent_id, number, content, deployer_user_id, deployed_at, origin) \
             VALUES ($1, 1, $2, '', $3, 'initial')",
            (&id, content.encode_to_vec(), now),
        )
        .await?;
        let (agent, facts) = facts_on(&mut tx, &id).await?;
        let payload = serde_json::json!({ "is_default": true, "version": 1 });
        self.commit_recorded(tx, "agent.created", &facts, payload)
            .await?;
        Ok(Some((agent, facts)))
    }

    /// The one agent `condition` picks, with `binds` in order.
    async fn agent_where(&self, condition: &str, binds: &[&str]) -> Result<Option<AgentRow>> {
        let sql = format!("SELECT {AGENT_COLUMNS} WHERE {condition}");
        let mut query = sqlx::query_as::<_, AgentRecord>(&sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        decoded_one(query.fetch_optional(&self.db.pool).await?)
    }

    /// The agent, if it belongs to `org_id`.
    pub async fn agent(&self, org_id: &str, agent_id: &str) -> Result<Option<AgentRow>> {
        self.agent_where("a.id = $1 AND a.org_id = $2", &[agent_id, org_id])
            .await
    }

    /// An agent whatever its org, for the run path, which sharing has
    /// already authorised.
    pub async fn agent_for_run(&self, agent_id: &str) -> Result<Option<AgentRow>> {
        self.agent_where("a.id = $1", &[agent_id]).await
    }

    pub async fn default_agent(&self, org_id: &str) -> Result<Option<AgentRow>> {
        self.agent_where("a.org_id = $1 AND a.is_default = 1", &[org_id])
            .await
    }

    /// The agent's facts now, for a sync that repeats the latest one.
    pub async fn current_facts(&self, agent_id: &str) -> Result<(AgentRow, AgentAccessFacts)> {
        let mut conn = self.db.pool.acquire().await?;
        facts_on(&mut conn, agent_id).await
    }

    pub async fn agents(&self, filter: AgentFilter<'_>) -> Result<Vec<AgentRow>> {
        let mut sql = format!(
            "SELECT {AGENT_COLUMNS} WHERE a.org_id = $1 AND a.state <> 'deleted' \
             AND (a.owner_user_id = $2 OR (a.is_default = 1 AND $3 = 1))"
        );
        let mut next = 4;
        if filter.state.is_some() {
            sql.push_str(&format!(" AND a.state = ${next}"));
            next += 1;
        }
        let after = filter.page.after();
        if after.is_some() {
            sql.push_str(&format!(" AND a.id < ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY a.id DESC LIMIT ${next}"));
        let mut query = sqlx::query_as::<_, AgentRecord>(&sql)
            .bind(filter.org_id)
            .bind(&filter.listing.owner_user_id)
            .bind(i64::from(filter.listing.include_default));
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        decoded(
            query
                .bind(filter.page.limit())
                .fetch_all(&self.db.pool)
                .await?,
        )
    }

    /// Replaces the draft if it is still at `expected_revision`; `None`
    /// otherwise (or when the agent is gone). `changes_facts` raises the
    /// agent's revision and records the facts with `agent.draft_updated`.
    pub async fn update_draft(
        &self,
        agent_id: &str,
        expected_revision: i64,
        draft: &pb::AgentDraft,
        changes_facts: bool,
    ) -> Result<Option<(AgentRow, Option<AgentAccessFacts>)>> {
        let mut tx = self.db.begin_write().await?;
        let updated = db::execute(
            &mut *tx,
            "UPDATE agents SET name = $1, description = $2, instructions = $3, design = $4, \
             draft_revision = draft_revision + 1, revision = revision + $5, updated_at = $6 \
             WHERE id = $7 AND draft_revision = $8 AND state <> 'deleted'",
            (
                &draft.name,
                &draft.description,
                &draft.instructions,
                design_bytes(draft),
                i64::from(changes_facts),
                self.clock.now_micros(),
                agent_id,
                expected_revision,
            ),
        )
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let (agent, facts) = facts_on(&mut tx, agent_id).await?;
        let synced = if changes_facts {
            let payload = serde_json::json!({ "draft_revision": agent.draft_revision });
            self.record(&mut tx, "agent.draft_updated", &facts, payload)
                .await?;
            Some(facts)
        } else {
            None
        };
        self.commit(tx).await?;
        Ok(Some((agent, synced)))
    }

    /// Adds version N+1 and makes the agent ACTIVE, if the agent is still as
    /// `new` expects; `None` otherwise. The number comes from the row the
    /// same statement updates, so numbers are gapless and unique under any
    /// number of concurrent deploys.
    pub async fn add_version(
        &self,
        new: NewVersion<'_>,
    ) -> Result<Option<(AgentRow, VersionRow, AgentAccessFacts)>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let mut sql = String::from(
            "UPDATE agents SET latest_version = latest_version + 1, state = 'active', \
             revision = revision + 1, latest_deployed_at = $1, updated_at = $1 \
             WHERE id = $2 AND latest_version = $3 AND state <> 'deleted'",
        );
        if new.expected_draft_revision.is_some() {
            sql.push_str(" AND draft_revision = $4");
        }
        sql.push_str(" RETURNING latest_version");
        let mut query = sqlx::query_scalar::<_, i64>(&sql)
            .bind(now)
            .bind(new.agent_id)
            .bind(new.expected_latest);
        if let Some(revision) = new.expected_draft_revision {
            query = query.bind(revision);
        }
        let Some(number) = query.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let version = VersionRow {
            agent_id: new.agent_id.to_string(),
            number,
            content: new.content.clone(),
            deployer_user_id: new.deployer_user_id.to_string(),
            deployed_at: now,
            notes: new.notes.to_string(),
            origin: new.origin,
            rollback_of: new.rollback_of,
            draft_revision: new.draft_revision,
            sunset_at: None,
            deprecation_note: String::new(),
        };
        db::execute(
            &mut *tx,
            "INSERT INTO agent_versions (agent_id, number, content, deployer_user_id, deployed_at, \
             notes, origin, rollback_of, draft_revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            (
                &version.agent_id,
                number,
                version.content.encode_to_vec(),
                &version.deployer_user_id,
                now,
                &version.notes,
                version.origin.as_str(),
                version.rollback_of,
                version.draft_revision,
            ),
        )
        .await?;
        let (agent, facts) = facts_on(&mut tx, new.agent_id).await?;
        let payload = serde_json::json!({
            "version": number,
            "origin": version.origin.as_str(),
            "rollback_of": version.rollback_of,
            "deployer_user_id": version.deployer_user_id,
            "integrations": domain::integrations_json(&version.content),
        });
        self.commit_recorded(tx, "agent.deployed", &facts, payload)
            .await?;
        Ok(Some((agent, version, facts)))
    }

    /// Sets or clears a version's deprecation, unless the version retired
    /// before `now` (a retirement is final): `None` then. Raises the agent's
    /// revision and records `version.deprecated` (with `announced`, what the
    /// pinned users are told) or `version.undeprecated`, carrying the facts.
    pub async fn set_deprecation(
        &self,
        change: &Deprecation<'_>,
    ) -> Result<Option<(VersionRow, AgentAccessFacts)>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let (sunset, note) = match &change.announced {
            Some(announced) => (Some(announced.sunset_at), announced.note),
            None => (None, ""),
        };
        let updated = db::execute(
            &mut *tx,
            "UPDATE agent_versions SET sunset_at = $1, deprecation_note = $2 \
             WHERE agent_id = $3 AND number = $4 AND (sunset_at IS NULL OR sunset_at > $5)",
            (sunset, note, change.agent_id, change.version, now),
        )
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        db::execute(
            &mut *tx,
            "UPDATE agents SET revision = revision + 1, updated_at = $1 WHERE id = $2",
            (now, change.agent_id),
        )
        .await?;
        let version: VersionRow = db::fetch_one(
            &mut *tx,
            &format!("SELECT {VERSION_COLUMNS} WHERE agent_id = $1 AND number = $2"),
            (change.agent_id, change.version),
        )
        .await?;
        let (agent, facts) = facts_on(&mut tx, change.agent_id).await?;
        let (kind, payload) = match &change.announced {
            Some(announced) => (
                "version.deprecated",
                serde_json::json!({
                    "version": change.version,
                    "sunset_at": announced.sunset_at,
                    "note": announced.note,
                    "latest_version": announced.latest_version,
                    "agent_name": agent.latest.as_ref().map_or(&agent.draft.name, |l| &l.name),
                    "changes": announced.changes,
                    "by_user_id": change.by_user_id,
                }),
            ),
            None => (
                "version.undeprecated",
                serde_json::json!({ "version": change.version, "by_user_id": change.by_user_id }),
            ),
        };
        self.commit_recorded(tx, kind, &facts, payload).await?;
        Ok(Some((version, facts)))
    }

    /// Marks the agent DELETED; `None` when it already was.
    pub async fn delete_agent(
        &self,
        agent_id: &str,
    ) -> Result<Option<(AgentRow, AgentAccessFacts)>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let deleted = db::execute(
            &mut *tx,
            "UPDATE agents SET state = 'deleted', deleted_at = $1, updated_at = $1, \
             revision = revision + 1 WHERE id = $2 AND state <> 'deleted'",
            (now, agent_id),
        )
        .await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        let (agent, facts) = facts_on(&mut tx, agent_id).await?;
        let payload = serde_json::json!({ "owner_user_id": agent.owner_user_id });
        self.commit_recorded(tx, "agent.deleted", &facts, payload)
            .await?;
        Ok(Some((agent, facts)))
    }

    /// One page of versions, newest first.
    pub async fn versions(&self, agent_id: &str, page: &Page) -> Result<Vec<VersionRow>> {
        let before = page
            .after()
            .map(|n| {
                n.parse::<i64>()
                    .map_err(|_| Error::invalid("page_token", "not a token from a previous page"))
            })
            .transpose()?;
        Ok(db::fetch_all(
            &self.db.pool,
            &format!(
                "SELECT {VERSION_COLUMNS} WHERE agent_id = $1 AND number < $2 ORDER BY number DESC LIMIT $3"
            ),
            (agent_id, before.unwrap_or(i64::MAX), page.limit()),
        )
        .await?)
    }

    pub async fn version(&self, agent_id: &str, number: i64) -> Result<Option<VersionRow>> {
        Ok(db::fetch_optional(
            &self.db.pool,
            &format!("SELECT {VERSION_COLUMNS} WHERE agent_id = $1 AND number = $2"),
            (agent_id, number),
        )
        .await?)
    }

    pub async fn create_template(&self, new: NewTemplate<'_>) -> Result<TemplateRow> {
        let template = TemplateRow {
            id: new_id(),
            org_id: new.org_id.to_string(),
            name: new.name.to_string(),
            description: new.description.to_string(),
            content: new.content.clone(),
            source_agent_id: new.source_agent_id.to_string(),
            source_version: new.source_version,
            publisher_user_id: new.publisher_user_id.to_string(),
            created_at: self.clock.now_micros(),
        };
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO templates (id, org_id, name, description, content, source_agent_id, \
             source_version, publisher_user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            (
                &template.id,
                &template.org_id,
                &template.name,
                &template.description,
                template.content.encode_to_vec(),
                &template.source_agent_id,
                template.source_version,
                &template.publisher_user_id,
                template.created_at,
            ),
        )
        .await?;
        events::append(
            &mut tx,
            &self.clock,
            &NewEvent {
                kind: "template.published",
                subject_id: template.id.clone(),
                org_id: template.org_id.clone(),
                payload: serde_json::json!({
                    "source_agent_id": template.source_agent_id,
                    "source_version": template.source_version,
                    "publisher_user_id": template.publisher_user_id,
                }),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(template)
    }

    /// One page of the org's templates, newest first.
    pub async fn templates(&self, org_id: &str, page: &Page) -> Result<Vec<TemplateRow>> {
        let sql = format!(
            "SELECT {TEMPLATE_COLUMNS} WHERE org_id = $1 AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (org_id, page)).await?)
    }

    pub async fn template(&self, org_id: &str, template_id: &str) -> Result<Option<TemplateRow>> {
        Ok(db::fetch_optional(
            &self.db.pool,
            &format!("SELECT {TEMPLATE_COLUMNS} WHERE id = $1 AND org_id = $2"),
            (template_id, org_id),
        )
        .await?)
    }
}
