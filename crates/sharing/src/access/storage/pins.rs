//! Version pins (DESIGN.md, "Access model (sharing)", Versions): a user who
//! may run an agent holds it at one deployed version for themselves, while
//! the owner deploys newer ones.

use agentshare_kit::Result;
use agentshare_kit::db;

use super::AccessStorage;

#[derive(sqlx::FromRow)]
pub struct PinRow {
    pub agent_id: String,
    pub user_id: String,
    pub version: i64,
    pub created_at: i64,
}

const PIN_COLUMNS: &str = "agent_id, user_id, version, created_at FROM pins";

impl AccessStorage {
    /// Sets or replaces the user's pin.
    pub async fn pin(&self, agent_id: &str, user_id: &str, version: i64) -> Result<PinRow> {
        let pin = PinRow {
            agent_id: agent_id.into(),
            user_id: user_id.into(),
            version,
            created_at: self.clock.now_micros(),
        };
        db::execute(
            &self.db.pool,
            "INSERT INTO pins (agent_id, user_id, version, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agent_id, user_id) DO UPDATE SET version = excluded.version, \
             created_at = excluded.created_at",
            (&pin.agent_id, &pin.user_id, pin.version, pin.created_at),
        )
        .await?;
        Ok(pin)
    }

    /// Removes the user's pin; false when there was none.
    pub async fn unpin(&self, agent_id: &str, user_id: &str) -> Result<bool> {
        let done = db::execute(
            &self.db.pool,
            "DELETE FROM pins WHERE agent_id = $1 AND user_id = $2",
            (agent_id, user_id),
        )
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn pin_of(&self, agent_id: &str, user_id: &str) -> Result<Option<PinRow>> {
        Ok(db::fetch_optional(
            &self.db.pool,
            &format!("SELECT {PIN_COLUMNS} WHERE agent_id = $1 AND user_id = $2"),
            (agent_id, user_id),
        )
        .await?)
    }

    /// Every pin of an agent, for its reach.
    pub async fn pins_of(&self, agent_id: &str) -> Result<Vec<PinRow>> {
        Ok(db::fetch_all(
            &self.db.pool,
            &format!("SELECT {PIN_COLUMNS} WHERE agent_id = $1 ORDER BY user_id"),
            (agent_id,),
        )
        .await?)
    }
}
