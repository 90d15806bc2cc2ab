//! The SQL of runs: claiming due subscriptions, leases, reclaiming the runs
//! of a replica that died, recording how a run ended, and the run history.
//!
//! A claim is one transaction that inserts the run row and moves the
//! subscription's next run time on. The run row's UNIQUE (subscription_id,
//! scheduled_at) makes a second claim of the same time a no-op, on any
//! replica. The one difference between the backends sits in
//! [`skip_locked`]: PostgreSQL replicas claim side by side, each skipping
//! the rows another holds; SQLite has one writer, whose `BEGIN IMMEDIATE`
//! already serialises claims.

use agentshare_kit::Result;
use agentshare_kit::db::{self, Backend, new_id};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use crate::firing::due::{self, CatchUp};
use crate::subscriptions::rules::{self, Notice, RunEnding, StopReason};
use crate::subscriptions::storage::{self, SUBSCRIPTION_COLUMNS, Storage, SubscriptionRow};
use agentshare_kit::db::Stored;

/// Locks the rows a claim reads, skipping those another replica holds.
fn skip_locked(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

/// The note on a run that catches up the latest time missed in downtime.
pub const CATCH_UP_NOTE: &str = "catch-up of the latest time missed during downtime";
/// The note on a run retried because its claimant's lease expired.
pub const RETRIED_NOTE: &str = "retried after lease expiry";
const MISSED_NOTE: &str = "missed during downtime; only the latest missed time runs";
const SKIPPED_NOTE: &str =
    "missed during downtime and skipped: the automation's catch-up policy is SKIP_MISSED";

/// A run this replica holds the lease of, ready to execute.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub run_id: String,
    pub attempt: i64,
    pub subscription_id: String,
    pub org_id: String,
    pub user_id: String,
    pub workspace_id: String,
    pub agent_id: String,
    pub automation_key: String,
    pub task: String,
    pub scheduled_at: i64,
}

/// What one claim wrote: the runs to execute now, and how many scheduled
/// times it recorded as missed during downtime or skipped by the catch-up
/// policy (counted once committed).
#[derive(Debug, Default)]
pub struct Claims {
    pub runs: Vec<Claimed>,
    pub missed: u64,
    pub skipped: u64,
}

/// How a run ended, to record.
#[derive(Clone, Debug)]
pub enum Outcome {
    Succeeded {
        summary: String,
        invocation_id: String,
        session_id: String,
        version: i64,
    },
    Failed {
        code: String,
        message: String,
        invocation_id: String,
        session_id: String,
        version: i64,
    },
    /// The run path refused the user: they may no longer run the agent.
    /// The run is SKIPPED and the subscription disabled, never retried.
    AccessLost { code: String, message: String },
}

/// One run as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub subscription_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub automation_key: String,
    pub automation_name: String,
    pub user_id: String,
    pub scheduled_at: i64,
    pub status: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub output_summary: String,
    pub error_code: String,
    pub error_message: String,
    pub attempt: i64,
    #[sqlx(try_from = "Stored<i64>")]
    pub retried_after_lease_expiry: bool,
    pub note: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub catch_up: bool,
    pub missed_count: i64,
    pub missed_through: Option<i64>,
    pub agent_version: i64,
    pub invocation_id: String,
    pub session_id: String,
}

const RUN_COLUMNS: &str = "id, subscription_id, org_id, agent_id, automation_key, \
    automation_name, user_id, scheduled_at, status, started_at, finished_at, output_summary, \
    error_code, error_message, attempt, retried_after_lease_expiry, note, catch_up, missed_count, \
    missed_through, agent_version, invocation_id, session_id";

/// A due subscription, as a claim reads it.
#[derive(sqlx::FromRow)]
struct Due {
    #[sqlx(flatten)]
    subscription: SubscriptionRow,
    next_run_at: i64,
}

/// A running run whose lease expired, as a reclaim reads it.
#[derive(sqlx::FromRow)]
struct Expired {
    #[sqlx(flatten)]
    run: Claimed,
    lease_owner: String,
    note: String,
}

/// One notification of a run on one channel.
#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    pub channel: String,
    /// pending, retrying, delivered or failed.
    pub status: String,
    pub attempt_count: i64,
    pub last_error: String,
    pub delivered_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

/// The filters of a run history page.
pub struct RunFilter<'a> {
    pub org_id: &'a str,
    pub user_id: &'a str,
    pub agent_id: Option<&'a str>,
    pub automation_key: Option<&'a str>,
    pub statuses: &'a [&'static str],
    /// Resume after this (scheduled time, id), newest first.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// Who holds a run's lease: the replica and the attempt.
pub struct Lease<'a> {
    pub owner: &'a str,
    pub run_id: &'a str,
    pub attempt: i64,
}

/// What one claim writes for a row of the plan.
struct NewRun<'a> {
    subscription: &'a SubscriptionRow,
    scheduled_at: i64,
    status: &'static str,
    note: &'static str,
    catch_up: bool,
    missed_count: i64,
    missed_through: Option<i64>,
    /// The lease, for a run that executes now.
    lease: Option<(&'a str, i64)>,
}

async fn insert_run(
    tx: &mut Transaction<'static, Any>,
    new: &NewRun<'_>,
    now: i64,
) -> Result<Option<String>> {
    let id = new_id();
    let s = new.subscription;
    let (owner, expires) = match new.lease {
        Some((owner, expires)) => (owner, Some(expires)),
        None => ("", None),
    };
    let inserted = db::execute(
        &mut **tx,
        "INSERT INTO automation_runs (id, subscription_id, org_id, agent_id, automation_key, \
         automation_name, user_id, workspace_id, task, scheduled_at, status, started_at, attempt, \
         lease_owner, lease_expires_at, note, catch_up, missed_count, missed_through, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14, $15, $16, $17, \
         $18, $19) ON CONFLICT (subscription_id, scheduled_at) DO NOTHING",
        (
            &id,
            &s.id,
            &s.org_id,
            &s.agent_id,
            &s.automation_key,
            &s.automation_name,
            &s.user_id,
            &s.workspace_id,
            &s.task,
            new.scheduled_at,
            new.status,
            new.lease.map(|_| now),
            owner,
            expires,
            new.note,
            i64::from(new.catch_up),
            new.missed_count,
            new.missed_through,
            now,
        ),
    )
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

/// Whether any subscription is due at `$1`.
const DUE: &str =
    "SELECT 1 FROM subscriptions WHERE next_run_at <= $1 AND enabled = 1 AND inactive = 0 LIMIT 1";
/// Whether any run's lease expired before `$1`.
const EXPIRED: &str =
    "SELECT 1 FROM automation_runs WHERE status = 'running' AND lease_expires_at < $1 LIMIT 1";

impl Storage {
    /// A read before a claim, so an idle replica never takes SQLite's one
    /// write lock (or PostgreSQL row locks) just to find nothing.
    async fn any(&self, sql: &str, now: i64) -> Result<bool> {
        Ok(db::exists(&self.db.pool, sql, (now,)).await?)
    }

    /// The rows `select` reads for a claim in `tx`: those due at `$1`, at
    /// most `$2` of them, locked, skipping those another replica holds.
    async fn claimable<T>(
        &self,
        tx: &mut Transaction<'static, Any>,
        select: &str,
        now: i64,
        limit: i64,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        let sql = format!("{select}{}", skip_locked(self.db.backend));
        Ok(db::fetch_all(&mut **tx, &sql, (now, limit)).await?)
    }

    /// Claims up to `limit` due subscriptions for `owner`: writes each
    /// one's run rows by the catch-up plan, leases the run that executes
    /// now for `lease` microseconds, and moves the subscription to its next
    /// time, all in one transaction. Returns the runs to execute.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: i64,
        missed_after: i64,
        limit: i64,
    ) -> Result<Claims> {
        let now = self.clock.now_micros();
        if !self.any(DUE, now).await? {
            return Ok(Claims::default());
        }
        let mut tx = self.db.begin_write().await?;
        let select = format!(
            "SELECT {SUBSCRIPTION_COLUMNS}, next_run_at FROM subscriptions \
             WHERE next_run_at <= $1 AND enabled = 1 AND inactive = 0 \
             ORDER BY next_run_at LIMIT $2"
        );
        let due: Vec<Due> = self.claimable(&mut tx, &select, now, limit).await?;
        let mut claims = Claims {
            runs: Vec::with_capacity(due.len()),
            ..Claims::default()
        };
        for Due {
            subscription,
            next_run_at,
        } in &due
        {
            let next = match subscription.schedule() {
                Ok(schedule) => {
                    let times = due::due_times(&schedule, *next_run_at, now);
                    let policy = CatchUp::parse(&subscription.catch_up_policy);
                    for planned in due::plan(&times, policy, now, missed_after) {
                        if let Some(run) = self
                            .write_planned(
                                &mut tx,
                                subscription,
                                &planned,
                                (owner, lease, now),
                                &mut claims,
                            )
                            .await?
                        {
                            claims.runs.push(run);
                        }
                    }
                    subscription.next_run_at(now)
                }
                Err(error) => {
                    // A schedule this version cannot read: a bug, logged;
                    // the subscription waits for the next redeploy rather
                    // than being claimed over and over.
                    tracing::error!(subscription = %subscription.id, %error, "unreadable schedule; not fired");
                    None
                }
            };
            db::execute(
                &mut *tx,
                "UPDATE subscriptions SET next_run_at = $1 WHERE id = $2",
                (next, &subscription.id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(claims)
    }

    async fn write_planned(
        &self,
        tx: &mut Transaction<'static, Any>,
        subscription: &SubscriptionRow,
        planned: &due::Row,
        (owner, lease, now): (&str, i64, i64),
        tally: &mut Claims,
    ) -> Result<Option<Claimed>> {
        let new = match *planned {
            due::Row::Run { at, catch_up } => NewRun {
                subscription,
                scheduled_at: at,
                status: "running",
                note: if catch_up { CATCH_UP_NOTE } else { "" },
                catch_up,
                missed_count: 1,
                missed_through: None,
                lease: Some((owner, now + lease)),
            },
            due::Row::Missed { first, last, count } => NewRun {
                subscription,
                scheduled_at: first,
                status: "missed",
                note: MISSED_NOTE,
                catch_up: false,
                missed_count: count,
                missed_through: (count > 1).then_some(last),
                lease: None,
            },
            due::Row::Skipped { at } => NewRun {
                subscription,
                scheduled_at: at,
                status: "skipped",
                note: SKIPPED_NOTE,
                catch_up: false,
                missed_count: 1,
                missed_through: None,
                lease: None,
            },
        };
        let Some(run_id) = insert_run(tx, &new, now).await? else {
            return Ok(None);
        };
        match *planned {
            due::Row::Missed { count, .. } => tally.missed += u64::try_from(count).unwrap_or(0),
            due::Row::Skipped { .. } => tally.skipped += 1,
            due::Row::Run { .. } => {}
        }
        if new.lease.is_none() {
            return Ok(None);
        }
        Ok(Some(Claimed {
            run_id,
            attempt: 1,
            subscription_id: subscription.id.clone(),
            org_id: subscription.org_id.clone(),
            user_id: subscription.user_id.clone(),
            workspace_id: subscription.workspace_id.clone(),
            agent_id: subscription.agent_id.clone(),
            automation_key: subscription.automation_key.clone(),
            task: subscription.task.clone(),
            scheduled_at: new.scheduled_at,
        }))
    }

    /// Takes over up to `limit` runs whose lease expired: a first attempt
    /// is retried once under the same run id as attempt 2; a second
    /// attempt whose lease expired too is recorded FAILED and not retried
    /// again, so a run that kills its replica cannot take them all down.
    pub async fn reclaim_expired(
        &self,
        owner: &str,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let now = self.clock.now_micros();
        if !self.any(EXPIRED, now).await? {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await?;
        let select = "SELECT id AS run_id, subscription_id, org_id, user_id, workspace_id, \
             agent_id, automation_key, task, scheduled_at, attempt, lease_owner, note \
             FROM automation_runs WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at LIMIT $2";
        let expired: Vec<Expired> = self.claimable(&mut tx, select, now, limit).await?;
        let mut claimed = Vec::new();
        for Expired {
            run,
            lease_owner: previous,
            note,
        } in expired
        {
            let run_id = &run.run_id;
            if run.attempt >= 2 {
                let message = "the scheduler replicas running it stopped twice before it finished, so it is not retried again; the next scheduled time runs as usual";
                let ended = db::execute(
                    &mut *tx,
                    "UPDATE automation_runs SET status = 'failed', finished_at = $1, \
                     error_code = 'ABORTED', error_message = $2, lease_owner = '', \
                     lease_expires_at = NULL WHERE id = $3 AND attempt = $4 AND lease_owner = $5 \
                     AND status = 'running'",
                    (now, message, run_id, run.attempt, &previous),
                )
                .await?;
                if ended.rows_affected() == 1
                    && let Some(subscription) = self.locked(&mut tx, &run.subscription_id).await?
                {
                    let ending = RunEnding::Failed {
                        code: "ABORTED",
                        message,
                    };
                    let notice = rules::run_notice(&subscription, run_id, "", &ending);
                    storage::notify(&mut tx, &notice, now).await?;
                }
                continue;
            }
            let note = if note.is_empty() {
                RETRIED_NOTE.to_string()
            } else {
                format!("{note}; {RETRIED_NOTE}")
            };
            let taken = db::execute(
                &mut *tx,
                "UPDATE automation_runs SET attempt = 2, lease_owner = $1, lease_expires_at = $2, \
                 started_at = $3, retried_after_lease_expiry = 1, note = $4 \
                 WHERE id = $5 AND attempt = 1 AND lease_owner = $6 AND status = 'running'",
                (owner, now + lease, now, &note, run_id, &previous),
            )
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(Claimed { attempt: 2, ..run });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends a lease this replica holds; false when it was lost (it
    /// expired and another replica took the run over).
    pub async fn renew_lease(&self, lease: &Lease<'_>, length: i64) -> Result<bool> {
        self.lease_until(lease, self.clock.now_micros() + length)
            .await
    }

    /// Gives a lease up at once, when a replica stops with the run
    /// unfinished: another replica retries it without waiting out the
    /// lease.
    pub async fn release_lease(&self, lease: &Lease<'_>) -> Result<()> {
        self.lease_until(lease, self.clock.now_micros() - 1).await?;
        Ok(())
    }

    /// Moves the end of a lease this replica holds to `expires_at`; false
    /// when it was lost.
    async fn lease_until(&self, lease: &Lease<'_>, expires_at: i64) -> Result<bool> {
        let moved = db::execute(
            &self.db.pool,
            "UPDATE automation_runs SET lease_expires_at = $1 \
             WHERE id = $2 AND lease_owner = $3 AND attempt = $4 AND status = 'running'",
            (expires_at, lease.run_id, lease.owner, lease.attempt),
        )
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    /// Records how a run ended, while this replica still holds its lease,
    /// and notifies its user in the same transaction. When access was
    /// lost, the subscription is disabled too. False when the lease was
    /// lost: the replica that took the run over records it.
    pub async fn finish_run(&self, lease: &Lease<'_>, outcome: &Outcome) -> Result<bool> {
        let now = self.clock.now_micros();
        let (status, summary, code, message, invocation, session, version) = match outcome {
            Outcome::Succeeded {
                summary,
                invocation_id,
                session_id,
                version,
            } => (
                "succeeded",
                summary.as_str(),
                "",
                "",
                invocation_id.as_str(),
                session_id.as_str(),
                *version,
            ),
            Outcome::Failed {
                code,
                message,
                invocation_id,
                session_id,
                version,
            } => (
                "failed",
                "",
                code.as_str(),
                message.as_str(),
                invocation_id.as_str(),
                session_id.as_str(),
                *version,
            ),
            Outcome::AccessLost { code, message } => {
                ("skipped", "", code.as_str(), message.as_str(), "", "", 0)
            }
        };
        let summary = rules::truncated(summary, rules::MAX_SUMMARY_CHARS);
        let mut tx = self.db.begin_write().await?;
        let ended: Option<(String,)> = db::fetch_optional(
            &mut *tx,
            "UPDATE automation_runs SET status = $1, finished_at = $2, output_summary = $3, \
             error_code = $4, error_message = $5, invocation_id = $6, session_id = $7, \
             agent_version = $8, lease_owner = '', lease_expires_at = NULL \
             WHERE id = $9 AND lease_owner = $10 AND attempt = $11 AND status = 'running' \
             RETURNING subscription_id",
            (
                status,
                now,
                &summary,
                code,
                message,
                invocation,
                session,
                version,
                lease.run_id,
                lease.owner,
                lease.attempt,
            ),
        )
        .await?;
        let Some((subscription_id,)) = ended else {
            return Ok(false);
        };
        // An unsubscribed user keeps the history but is told nothing more.
        if let Some(mut subscription) = self.locked(&mut tx, &subscription_id).await? {
            let notice = match outcome {
                Outcome::Succeeded { .. } => Some(rules::run_notice(
                    &subscription,
                    lease.run_id,
                    session,
                    &RunEnding::Succeeded { summary: &summary },
                )),
                Outcome::Failed { .. } => Some(rules::run_notice(
                    &subscription,
                    lease.run_id,
                    session,
                    &RunEnding::Failed { code, message },
                )),
                Outcome::AccessLost { .. } => self
                    .stop_for_lost_access(&mut tx, &mut subscription, message, now)
                    .await?
                    .map(|mut notice| {
                        notice.run_id = lease.run_id.to_string();
                        notice
                    }),
            };
            if let Some(notice) = notice {
                storage::notify(&mut tx, &notice, now).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Disables a running subscription whose user lost access; returns the
    /// notice to send, or nothing when it was not running.
    async fn stop_for_lost_access(
        &self,
        tx: &mut Transaction<'static, Any>,
        subscription: &mut SubscriptionRow,
        why: &str,
        now: i64,
    ) -> Result<Option<Notice>> {
        if !subscription.enabled || subscription.inactive {
            return Ok(None);
        }
        subscription.enabled = false;
        subscription.paused_until = None;
        subscription.status_reason = StopReason::AccessLost;
        subscription.status_message = rules::ACCESS_LOST_MESSAGE.into();
        subscription.updated_at = now;
        self.write_state(tx, subscription).await?;
        Ok(Some(rules::stopped_notice(
            subscription,
            &format!("you can no longer run the agent ({why})"),
            "Enable it again once you can run the agent.",
        )))
    }

    /// One page of a user's runs, newest scheduled time first.
    pub async fn runs_of(&self, filter: &RunFilter<'_>) -> Result<Vec<RunRow>> {
        let mut sql =
            format!("SELECT {RUN_COLUMNS} FROM automation_runs WHERE org_id = $1 AND user_id = $2");
        let mut next = 3;
        if filter.agent_id.is_some() {
            sql.push_str(&format!(" AND agent_id = ${next}"));
            next += 1;
        }
        if filter.automation_key.is_some() {
            sql.push_str(&format!(" AND automation_key = ${next}"));
            next += 1;
        }
        if !filter.statuses.is_empty() {
            let any: Vec<String> = filter.statuses.iter().map(|s| format!("'{s}'")).collect();
            sql.push_str(&format!(" AND status IN ({})", any.join(", ")));
        }
        if filter.after.is_some() {
            sql.push_str(&format!(
                " AND (scheduled_at < ${next} OR (scheduled_at = ${next} AND id < ${}))",
                next + 1
            ));
            next += 2;
        }
        sql.push_str(&format!(
            " ORDER BY scheduled_at DESC, id DESC LIMIT ${next}"
        ));
        let mut query = sqlx::query_as(&sql)
            .bind(filter.org_id)
            .bind(filter.user_id);
        if let Some(agent_id) = filter.agent_id {
            query = query.bind(agent_id);
        }
        if let Some(key) = filter.automation_key {
            query = query.bind(key);
        }
        if let Some((at, id)) = &filter.after {
            query = query.bind(*at).bind(id.as_str());
        }
        Ok(query.bind(filter.limit).fetch_all(&self.db.pool).await?)
    }

    pub async fn run(&self, id: &str) -> Result<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM automation_runs WHERE id = $1");
        Ok(db::fetch_optional(&self.db.pool, &sql, (id,)).await?)
    }

    /// Where each notification of a run is: the inbox item (WEB), then the
    /// outbox rows (EMAIL, PUSH).
    pub async fn deliveries(&self, run_id: &str) -> Result<Vec<DeliveryRow>> {
        let inbox: Vec<(i64,)> = db::fetch_all(
            &self.db.pool,
            "SELECT created_at FROM inbox_items WHERE run_id = $1 ORDER BY id",
            (run_id,),
        )
        .await?;
        let outbox: Vec<DeliveryRow> = db::fetch_all(
            &self.db.pool,
            "SELECT channel, status, attempt_count, last_error, delivered_at, next_attempt_at \
             FROM notification_outbox WHERE run_id = $1 ORDER BY channel",
            (run_id,),
        )
        .await?;
        let web = inbox.into_iter().map(|(created_at,)| DeliveryRow {
            channel: "web".into(),
            status: "delivered".into(),
            attempt_count: 1,
            last_error: String::new(),
            delivered_at: Some(created_at),
            next_attempt_at: None,
        });
        // Only a retry waits for a next attempt.
        let deliveries = web
            .chain(outbox.into_iter().map(|row| DeliveryRow {
                next_attempt_at: row.next_attempt_at.filter(|_| row.status == "retrying"),
                ..row
            }))
            .collect();
        Ok(deliveries)
    }
}
