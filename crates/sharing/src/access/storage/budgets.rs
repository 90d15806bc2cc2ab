//! Counting runs against their limits (DESIGN.md, Grants), in this
//! service's database so that every replica counts the same runs.
//!
//! A run is admitted in one write transaction: the grant's usage first
//! (whose row update, on PostgreSQL, also locks the grant so concurrent
//! admissions under it take turns), then its concurrency slot, then one
//! conditional upsert per window, which adds the run only while the window
//! has room. Any counter without room rolls the whole admission back, so a
//! refused run counts nowhere but in the grant's refusals. Windows that
//! ended days ago are swept as new ones begin.

use agentshare_kit::Result;
use agentshare_kit::db;

/// Windows that started this long before an admission are swept: the
/// longest window is a day, so nothing older counts again.
const KEEP_WINDOWS_MICROS: i64 = 2 * 24 * 3_600 * 1_000_000;

use super::AccessStorage;
use crate::access::rules::budgets::{Admission, Counter};

/// Whether a run was admitted, and the slot it holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Admitted; `Some` names the concurrency slot to release at its end.
    Yes(Option<String>),
    /// Refused by this counter, which had no room.
    No(Counter),
}

impl AccessStorage {
    /// Admits a run against every counter of `admission`, or none.
    pub async fn admit(&self, admission: &Admission) -> Result<Admitted> {
        if admission.is_free() {
            return Ok(Admitted::Yes(None));
        }
        let now = admission.now;
        let mut tx = self.db.begin_write().await?;
        if let Some(grant_id) = &admission.grant_id {
            db::execute(
                &mut *tx,
                "UPDATE share_grants SET runs_total = runs_total + 1, last_used_at = $2 \
                 WHERE id = $1",
                (grant_id, now),
            )
            .await?;
        }
        let mut slot = None;
        for counter in &admission.counters {
            let fits = match counter.window {
                None => {
                    let running: i64 = db::scalar::fetch_one(
                        &mut *tx,
                        "SELECT COUNT(*) FROM running_runs WHERE counter = $1 AND lease_until > $2",
                        (&counter.subject, now),
                    )
                    .await?;
                    if running < counter.limit {
                        let id = db::new_id();
                        db::execute(
                            &mut *tx,
                            "DELETE FROM running_runs WHERE counter = $1 AND lease_until <= $2",
                            (&counter.subject, now),
                        )
                        .await?;
                        db::execute(
                            &mut *tx,
                            "INSERT INTO running_runs (admission_id, counter, lease_until) \
                             VALUES ($1, $2, $3)",
                            (&id, &counter.subject, admission.lease_until),
                        )
                        .await?;
                        slot = Some(id);
                        true
                    } else {
                        false
                    }
                }
                Some(window) => {
                    let start = window.start(now);
                    // Only the current window counts: drop the ones before.
                    db::execute(
                        &mut *tx,
                        "DELETE FROM run_windows WHERE counter = $1 AND window_start < $2",
                        (&counter.subject, start),
                    )
                    .await?;
                    let counted: Option<i64> = db::scalar::fetch_optional(
                        &mut *tx,
                        "INSERT INTO run_windows (counter, window_start, runs) VALUES ($1, $2, 1) \
                         ON CONFLICT (counter, window_start) DO UPDATE \
                         SET runs = run_windows.runs + 1 WHERE run_windows.runs < $3 \
                         RETURNING runs",
                        (&counter.subject, start, counter.limit),
                    )
                    .await?;
                    // A counter's first run in a window (once a minute at
                    // most) sweeps every counter's windows that ended long
                    // ago, such as those of sessions that never came back.
                    if counted == Some(1) {
                        db::execute(
                            &mut *tx,
                            "DELETE FROM run_windows WHERE window_start < $1",
                            (now - KEEP_WINDOWS_MICROS,),
                        )
                        .await?;
                    }
                    counted.is_some()
                }
            };
            if !fits {
                tx.rollback().await?;
                if let Some(grant_id) = &admission.grant_id {
                    self.count_refusal(grant_id, now).await?;
                }
                return Ok(Admitted::No(counter.clone()));
            }
        }
        self.commit(tx).await?;
        Ok(Admitted::Yes(slot))
    }

    /// Records a run refused under a grant, for its owner to see.
    async fn count_refusal(&self, grant_id: &str, now: i64) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE share_grants SET refusals_total = refusals_total + 1, last_refusal_at = $2 \
             WHERE id = $1",
            (grant_id, now),
        )
        .await?;
        Ok(())
    }

    /// Frees the concurrency slot of a run that ended; a slot already free
    /// stays free.
    pub async fn release(&self, admission_id: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "DELETE FROM running_runs WHERE admission_id = $1",
            (admission_id,),
        )
        .await?;
        Ok(())
    }
}
