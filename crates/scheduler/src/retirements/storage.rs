//! The retirements the scheduler waits on, and the notices it sends about
//! them, each at most once per user, stage and sunset.

use agentshare_kit::Result;
use agentshare_kit::db;

use super::rules::{Deprecation, Stage};
use crate::subscriptions::rules::Notice;
use crate::subscriptions::storage::{Storage, notify};

/// A retirement whose sunset has passed, claimed by this replica.
#[derive(sqlx::FromRow)]
pub struct Due {
    pub agent_id: String,
    pub version: i64,
    pub org_id: String,
    pub agent_name: String,
    pub sunset_at: i64,
}

impl Storage {
    /// Records (or moves) a version's sunset, unless its retirement was
    /// already announced: that one is final.
    pub async fn version_deprecated(&self, deprecation: &Deprecation) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO version_retirements (agent_id, version, org_id, agent_name, sunset_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id, version) DO UPDATE SET \
             sunset_at = excluded.sunset_at, agent_name = excluded.agent_name \
             WHERE version_retirements.notified_at IS NULL",
            (
                &deprecation.agent_id,
                deprecation.version,
                &deprecation.org_id,
                &deprecation.agent_name,
                deprecation.sunset_at,
            ),
        )
        .await?;
        Ok(())
    }

    /// Forgets a retirement the owner cancelled before its sunset.
    pub async fn version_undeprecated(&self, agent_id: &str, version: i64) -> Result<()> {
        db::execute(
            &self.db.pool,
            "DELETE FROM version_retirements WHERE agent_id = $1 AND version = $2 \
             AND notified_at IS NULL",
            (agent_id, version),
        )
        .await?;
        Ok(())
    }

    /// Claims up to `limit` retirements whose sunset has passed and whose
    /// notices are not sent, for `lease_micros`: one conditional update per
    /// row, so two replicas never hold the same one, and a row whose holder
    /// died is claimed again once its lease expires.
    pub async fn claim_due_retirements(
        &self,
        owner: &str,
        lease_micros: i64,
        limit: i64,
    ) -> Result<Vec<Due>> {
        let now = self.clock.now_micros();
        let candidates: Vec<Due> = db::fetch_all(
            &self.db.pool,
            "SELECT agent_id, version, org_id, agent_name, sunset_at FROM version_retirements \
             WHERE notified_at IS NULL AND sunset_at <= $1 \
             AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
             ORDER BY sunset_at LIMIT $2",
            (now, limit),
        )
        .await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for due in candidates {
            let taken = db::execute(
                &self.db.pool,
                "UPDATE version_retirements SET lease_owner = $1, lease_expires_at = $2 \
                 WHERE agent_id = $3 AND version = $4 AND notified_at IS NULL \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= $5)",
                (owner, now + lease_micros, &due.agent_id, due.version, now),
            )
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(due);
            }
        }
        Ok(claimed)
    }

    /// Marks a claimed retirement's notices sent; false when the lease was
    /// lost meanwhile (whoever took it over finishes it).
    pub async fn retirement_notified(&self, due: &Due, owner: &str) -> Result<bool> {
        let done = db::execute(
            &self.db.pool,
            "UPDATE version_retirements SET notified_at = $1, lease_expires_at = NULL \
             WHERE agent_id = $2 AND version = $3 AND lease_owner = $4 AND notified_at IS NULL",
            (self.clock.now_micros(), &due.agent_id, due.version, owner),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts each notice on its channels unless its user was already told at
    /// this stage of this sunset; how many went out.
    pub async fn version_notices(
        &self,
        stage: Stage,
        deprecation: &Deprecation,
        notices: &[Notice],
    ) -> Result<usize> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let mut sent = 0;
        for notice in notices {
            let first = db::execute(
                &mut *tx,
                "INSERT INTO version_notices (agent_id, version, user_id, stage, sunset_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                (
                    &deprecation.agent_id,
                    deprecation.version,
                    &notice.user_id,
                    stage.as_str(),
                    deprecation.sunset_at,
                ),
            )
            .await?;
            if first.rows_affected() == 1 {
                notify(&mut tx, notice, now).await?;
                sent += 1;
            }
        }
        tx.commit().await?;
        Ok(sent)
    }
}
