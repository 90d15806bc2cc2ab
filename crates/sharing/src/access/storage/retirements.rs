//! Deprecated versions and who pins them (DESIGN.md, "Access model
//! (sharing)", Versions): registry syncs each agent's deprecations with its
//! access facts; the owner asks who still pins which version.

use agentshare_kit::Result;
use agentshare_kit::db;

use super::AccessStorage;
use crate::access::rules::retirement::Retirement;

/// A user who pinned a version, as the owner sees them.
#[derive(sqlx::FromRow)]
pub struct PinnedUserRow {
    pub version: i64,
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
}

impl AccessStorage {
    /// The agent's deprecated versions, oldest first.
    pub async fn retirements_of(&self, agent_id: &str) -> Result<Vec<Retirement>> {
        Ok(db::fetch_all(
            &self.db.pool,
            "SELECT version, sunset_at, note FROM version_retirements WHERE agent_id = $1 \
             ORDER BY version",
            (agent_id,),
        )
        .await?)
    }

    /// The users who pinned the agent, to `version` only unless it is 0, by
    /// version then user.
    pub async fn pinned_users(&self, agent_id: &str, version: i64) -> Result<Vec<PinnedUserRow>> {
        Ok(db::fetch_all(
            &self.db.pool,
            "SELECT p.version, p.user_id, COALESCE(u.email, '') AS email, \
             COALESCE(u.display_name, '') AS display_name, p.created_at \
             FROM pins p LEFT JOIN users u ON u.id = p.user_id \
             WHERE p.agent_id = $1 AND ($2 = 0 OR p.version = $2) ORDER BY p.version, p.user_id",
            (agent_id, version),
        )
        .await?)
    }
}

/// Replaces the agent's deprecations with `retirements`, inside a sync.
pub async fn replace(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    agent_id: &str,
    retirements: &[Retirement],
) -> Result<()> {
    db::execute(
        &mut **tx,
        "DELETE FROM version_retirements WHERE agent_id = $1",
        (agent_id,),
    )
    .await?;
    for retirement in retirements {
        db::execute(
            &mut **tx,
            "INSERT INTO version_retirements (agent_id, version, sunset_at, note) \
             VALUES ($1, $2, $3, $4)",
            (
                agent_id,
                retirement.version,
                retirement.sunset_at,
                &retirement.note,
            ),
        )
        .await?;
    }
    Ok(())
}
