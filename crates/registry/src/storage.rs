//! Registry's SQL.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::{Db, new_id};
use agentshare_kit::events::{self, EventLog, NewEvent};
use sqlx::Row;

use crate::domain::{AgentState, Draft};

pub struct AgentRow {
    pub id: String,
    pub org_id: String,
    pub owner_user_id: String,
    pub home_workspace_id: String,
    pub state: AgentState,
    pub draft: Draft,
    pub draft_revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone)]
pub struct Storage {
    pub db: Db,
    pub clock: Clock,
    pub events: EventLog,
}

impl Storage {
    pub async fn create_agent(
        &self,
        org_id: &str,
        owner: &str,
        home_workspace: &str,
        draft: Draft,
    ) -> Result<AgentRow, sqlx::Error> {
        let now = self.clock.now_micros();
        let agent = AgentRow {
            id: new_id(),
            org_id: org_id.into(),
            owner_user_id: owner.into(),
            home_workspace_id: home_workspace.into(),
            state: AgentState::Draft,
            draft,
            draft_revision: 1,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO agents (id, org_id, owner_user_id, home_workspace_id, state, name, description, \
             instructions, draft_revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(&agent.id)
        .bind(&agent.org_id)
        .bind(&agent.owner_user_id)
        .bind(&agent.home_workspace_id)
        .bind(agent.state.as_str())
        .bind(&agent.draft.name)
        .bind(&agent.draft.description)
        .bind(&agent.draft.instructions)
        .bind(agent.draft_revision)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        events::append(
            &mut tx,
            &self.clock,
            &NewEvent {
                kind: "agent.created",
                subject_id: agent.id.clone(),
                org_id: agent.org_id.clone(),
                payload: serde_json::json!({
                    "owner_user_id": agent.owner_user_id,
                    "home_workspace_id": agent.home_workspace_id,
                    "draft_revision": agent.draft_revision,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.events.committed();
        Ok(agent)
    }

    /// The agent, if it belongs to `org_id`.
    pub async fn agent(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<AgentRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, org_id, owner_user_id, home_workspace_id, state, name, description, instructions, \
             draft_revision, created_at, updated_at FROM agents WHERE id = $1 AND org_id = $2",
        )
        .bind(agent_id)
        .bind(org_id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|row| {
            let state: String = row.try_get("state")?;
            Ok(AgentRow {
                id: row.try_get("id")?,
                org_id: row.try_get("org_id")?,
                owner_user_id: row.try_get("owner_user_id")?,
                home_workspace_id: row.try_get("home_workspace_id")?,
                state: AgentState::parse(&state).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown agent state {state:?}").into())
                })?,
                draft: Draft {
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    instructions: row.try_get("instructions")?,
                },
                draft_revision: row.try_get("draft_revision")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
    }
}
