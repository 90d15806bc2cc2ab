//! The scheduler's SQL: subscriptions, the agents' latest versions as
//! registry announced them, runs, workspace caps, the inbox and the
//! notification outbox. One set of SQL serves SQLite and PostgreSQL; the one
//! difference, locking a cap row while counting under it, sits in
//! `Db::locking`.

use agentshare_kit::Result;
use agentshare_kit::clock::Clock;
use agentshare_kit::db::Stored;
use agentshare_kit::db::{self, Db, new_id};
use agentshare_kit::page::Page;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Transaction};

use crate::schedule::{Kind, Schedule};
use crate::subscriptions::rules::{Channel, Notice, StopReason, Switches};

#[derive(Clone)]
pub struct Storage {
    pub db: Db,
    pub clock: Clock,
}

/// One subscription as stored, with the definition last seen for it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub org_id: String,
    pub agent_id: String,
    pub automation_key: String,
    pub user_id: String,
    pub workspace_id: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub enabled: bool,
    #[sqlx(try_from = "Stored<String>")]
    pub channels: Vec<Channel>,
    pub email: String,
    pub paused_until: Option<i64>,
    #[sqlx(try_from = "Stored<i64>")]
    pub inactive: bool,
    #[sqlx(try_from = "String")]
    pub status_reason: StopReason,
    pub status_message: String,
    pub agent_version: i64,
    pub checked_version: i64,
    pub agent_name: String,
    pub automation_name: String,
    pub schedule_kind: String,
    pub schedule_cron: String,
    pub time_zone: String,
    pub task: String,
    pub catch_up_policy: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SubscriptionRow {
    pub fn switches(&self) -> Switches {
        Switches {
            enabled: self.enabled,
            inactive: self.inactive,
            paused_until: self.paused_until,
        }
    }

    /// The stored schedule. Registry validated it when it was deployed, so
    /// failing here means a row written by another version: a bug.
    pub fn schedule(&self) -> Result<Schedule, agentshare_kit::Error> {
        let kind = Kind::parse(&self.schedule_kind).ok_or_else(|| {
            agentshare_kit::Error::internal(format!(
                "subscription {} has schedule kind {:?}",
                self.id, self.schedule_kind
            ))
        })?;
        Schedule::parse(kind, &self.schedule_cron, &self.time_zone)
            .map_err(|e| agentshare_kit::Error::internal(format!("subscription {}: {e}", self.id)))
    }

    /// Where the next fire is, for the firing engine: unset unless it can
    /// fire at all.
    pub(crate) fn next_run_at(&self, now: i64) -> Option<i64> {
        let schedule = self.schedule().ok()?;
        self.switches()
            .next_run(&schedule, now)
            .map(|fire| fire.at_micros)
    }
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "id, org_id, agent_id, automation_key, user_id, workspace_id, \
    enabled, channels, email, paused_until, inactive, status_reason, status_message, agent_version, \
    checked_version, agent_name, automation_name, schedule_kind, schedule_cron, time_zone, task, \
    catch_up_policy, created_at, updated_at";

/// A query's parameters for what a user or agentshare may change on a
/// subscription: its columns from `enabled` to `catch_up_policy`, in the
/// order of [`SUBSCRIPTION_COLUMNS`].
trait SubscriptionState<'q> {
    fn state(self, row: &'q SubscriptionRow) -> Self;
}

impl<'q> SubscriptionState<'q> for Query<'q, Any, AnyArguments<'q>> {
    fn state(self, row: &'q SubscriptionRow) -> Self {
        self.bind(i64::from(row.enabled))
            .bind(Channel::list_text(&row.channels))
            .bind(&row.email)
            .bind(row.paused_until)
            .bind(i64::from(row.inactive))
            .bind(row.status_reason.as_str())
            .bind(&row.status_message)
            .bind(row.agent_version)
            .bind(row.checked_version)
            .bind(&row.agent_name)
            .bind(&row.automation_name)
            .bind(&row.schedule_kind)
            .bind(&row.schedule_cron)
            .bind(&row.time_zone)
            .bind(&row.task)
            .bind(&row.catch_up_policy)
    }
}

/// An automation's definition as the version a user runs has it.
#[derive(Clone, Debug)]
pub struct Definition {
    pub agent_name: String,
    pub agent_version: i64,
    pub latest_version: i64,
    pub automation_name: String,
    pub schedule: Schedule,
    pub task: String,
    pub catch_up_policy: String,
}

/// A subscription to create.
pub struct NewSubscription<'a> {
    pub org_id: &'a str,
    pub agent_id: &'a str,
    pub automation_key: &'a str,
    pub user_id: &'a str,
    pub workspace_id: &'a str,
    pub enabled: bool,
    pub channels: &'a [Channel],
    pub email: &'a str,
    pub definition: &'a Definition,
}

/// Which column picks the subscriptions an access change concerns.
#[derive(Clone, Copy, Debug)]
pub enum RunningBy {
    User,
    Agent,
    Workspace,
}

/// Why a write was refused.
#[derive(Debug)]
pub enum Refused {
    /// The user already subscribes to this automation.
    Exists,
    /// Enabling would pass the workspace's cap, of this many.
    CapReached(i64),
    /// The subscription is gone.
    Missing,
}

/// What a change to a user's settings sets; `None` keeps the stored value.
#[derive(Default)]
pub struct SettingsChange<'a> {
    pub enabled: Option<bool>,
    pub channels: Option<&'a [Channel]>,
    pub email: Option<&'a str>,
}

/// The cap of a workspace and who set it.
#[derive(Default, sqlx::FromRow)]
pub struct CapRow {
    pub max_active: Option<i64>,
    pub updated_by: String,
    pub updated_at: Option<i64>,
}

/// One run as a subscription shows it.
#[derive(sqlx::FromRow)]
pub struct LastRun {
    pub subscription_id: String,
    pub run_id: String,
    pub scheduled_at: i64,
    pub status: String,
    pub finished_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub struct InboxRow {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub agent_id: String,
    pub automation_key: String,
    pub run_id: String,
    pub session_id: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// One email or push notification in the outbox.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: String,
    pub channel: String,
    pub address: String,
    pub title: String,
    pub body: String,
    pub attempt_count: i64,
}

/// An outbox row due for an attempt, as seen before claiming it.
#[derive(sqlx::FromRow)]
struct DueDelivery {
    #[sqlx(flatten)]
    row: OutboxRow,
    next_attempt_at: i64,
}

/// Statuses of a subscription, as SQL over its columns at `$now`.
fn status_condition(status: crate::subscriptions::rules::Status) -> &'static str {
    use crate::subscriptions::rules::Status;
    match status {
        Status::Inactive => "inactive = 1",
        Status::Disabled => "(inactive = 0 AND enabled = 0)",
        Status::Paused => "(inactive = 0 AND enabled = 1 AND paused_until > $now)",
        Status::Active => {
            "(inactive = 0 AND enabled = 1 AND (paused_until IS NULL OR paused_until <= $now))"
        }
    }
}

impl Storage {
    pub async fn subscription(
        &self,
        agent_id: &str,
        automation_key: &str,
        user_id: &str,
    ) -> Result<Option<SubscriptionRow>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
             WHERE agent_id = $1 AND automation_key = $2 AND user_id = $3"
        );
        Ok(db::fetch_optional(&self.db.pool, &sql, (agent_id, automation_key, user_id)).await?)
    }

    /// A user's subscriptions to one agent.
    pub async fn subscriptions_to(
        &self,
        agent_id: &str,
        user_id: &str,
    ) -> Result<Vec<SubscriptionRow>> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
             WHERE agent_id = $1 AND user_id = $2 ORDER BY id"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (agent_id, user_id)).await?)
    }

    /// One page of a user's subscriptions in an org, oldest first (ids are
    /// UUID v7, so id order is creation order).
    pub async fn subscriptions_of(
        &self,
        org_id: &str,
        user_id: &str,
        agent_id: Option<&str>,
        statuses: &[crate::subscriptions::rules::Status],
        page: &Page,
    ) -> Result<Vec<SubscriptionRow>> {
        let after = page.after();
        let mut sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = $1 AND user_id = $2"
        );
        let mut next = 3;
        if agent_id.is_some() {
            sql.push_str(&format!(" AND agent_id = ${next}"));
            next += 1;
        }
        if after.is_some() {
            sql.push_str(&format!(" AND id > ${next}"));
            next += 1;
        }
        if !statuses.is_empty() {
            let now = format!("${next}");
            next += 1;
            let any: Vec<String> = statuses
                .iter()
                .map(|s| status_condition(*s).replace("$now", &now))
                .collect();
            sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${next}"));
        let mut query = sqlx::query_as(&sql).bind(org_id).bind(user_id);
        if let Some(agent_id) = agent_id {
            query = query.bind(agent_id);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        if !statuses.is_empty() {
            query = query.bind(self.clock.now_micros());
        }
        Ok(query.bind(page.limit()).fetch_all(&self.db.pool).await?)
    }

    /// The agents of a user's subscriptions whose latest version registry
    /// announced after the subscriptions were last compared with it.
    pub async fn stale_agents_of(&self, org_id: &str, user_id: &str) -> Result<Vec<String>> {
        let agents: Vec<(String,)> = db::fetch_all(
            &self.db.pool,
            "SELECT DISTINCT s.agent_id FROM subscriptions s \
             JOIN known_agents k ON k.agent_id = s.agent_id \
             WHERE s.org_id = $1 AND s.user_id = $2 AND k.deleted = 0 \
             AND k.latest_version > s.checked_version ORDER BY s.agent_id",
            (org_id, user_id),
        )
        .await?;
        Ok(agents.into_iter().map(|(agent_id,)| agent_id).collect())
    }

    /// Creates a subscription; an enabled one only with room under the
    /// workspace's cap, counted in the same transaction.
    pub async fn create_subscription(
        &self,
        new: NewSubscription<'_>,
    ) -> Result<Result<SubscriptionRow, Refused>> {
        let now = self.clock.now_micros();
        let definition = new.definition;
        let mut row = SubscriptionRow {
            id: new_id(),
            org_id: new.org_id.into(),
            agent_id: new.agent_id.into(),
            automation_key: new.automation_key.into(),
            user_id: new.user_id.into(),
            workspace_id: new.workspace_id.into(),
            enabled: new.enabled,
            channels: new.channels.to_vec(),
            email: new.email.into(),
            paused_until: None,
            inactive: false,
            status_reason: StopReason::User,
            status_message: String::new(),
            agent_version: definition.agent_version,
            checked_version: definition.latest_version,
            agent_name: definition.agent_name.clone(),
            automation_name: definition.automation_name.clone(),
            schedule_kind: definition.schedule.kind.as_str().into(),
            schedule_cron: definition.schedule.cron.clone(),
            time_zone: definition.schedule.zone.name().into(),
            task: definition.task.clone(),
            catch_up_policy: definition.catch_up_policy.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin_write().await?;
        if new.enabled
            && let Some(cap) = self.cap_without_room(&mut tx, new.workspace_id).await?
        {
            return Ok(Err(Refused::CapReached(cap)));
        }
        let next_run_at = row.next_run_at(now);
        let sql = format!(
            "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}, next_run_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22, $23, $24, $25) ON CONFLICT (agent_id, automation_key, user_id) DO NOTHING"
        );
        let inserted = sqlx::query(&sql)
            .bind(&row.id)
            .bind(&row.org_id)
            .bind(&row.agent_id)
            .bind(&row.automation_key)
            .bind(&row.user_id)
            .bind(&row.workspace_id)
            .state(&row)
            .bind(now)
            .bind(now)
            .bind(next_run_at)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Err(Refused::Exists));
        }
        tx.commit().await?;
        row.updated_at = now;
        Ok(Ok(row))
    }

    /// The cap of `workspace_id` when it leaves no room for one more
    /// enabled subscription. The cap row is locked, so concurrent enables
    /// in one workspace count one after the other.
    async fn cap_without_room(
        &self,
        tx: &mut Transaction<'static, Any>,
        workspace_id: &str,
    ) -> Result<Option<i64>> {
        let sql = self
            .db
            .locking("SELECT max_active FROM workspace_caps WHERE workspace_id = $1");
        let cap: Option<(Option<i64>,)> =
            db::fetch_optional(&mut **tx, &sql, (workspace_id,)).await?;
        let cap = cap.and_then(|(max_active,)| max_active);
        let Some(cap) = cap else {
            return Ok(None);
        };
        let active = active_in(&mut **tx, workspace_id).await?;
        Ok((active >= cap).then_some(cap))
    }

    /// Applies a user's change of settings. Turning the switch on counts
    /// against the cap; turning it off clears any pause.
    pub async fn change_settings(
        &self,
        id: &str,
        change: SettingsChange<'_>,
    ) -> Result<Result<SubscriptionRow, Refused>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let Some(mut row) = self.locked(&mut tx, id).await? else {
            return Ok(Err(Refused::Missing));
        };
        if change.enabled == Some(true)
            && !row.enabled
            && let Some(cap) = self.cap_without_room(&mut tx, &row.workspace_id).await?
        {
            return Ok(Err(Refused::CapReached(cap)));
        }
        if let Some(enabled) = change.enabled {
            if enabled != row.enabled {
                row.status_reason = StopReason::User;
                row.status_message = String::new();
            }
            if !enabled {
                row.paused_until = None;
            }
            row.enabled = enabled;
        }
        if let Some(channels) = change.channels {
            row.channels = channels.to_vec();
        }
        if let Some(email) = change.email {
            row.email = email.to_string();
        }
        row.updated_at = now;
        self.write_state(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(Ok(row))
    }

    /// Sets or clears the pause of an enabled subscription.
    pub async fn set_pause(
        &self,
        id: &str,
        paused_until: Option<i64>,
    ) -> Result<Option<SubscriptionRow>> {
        let mut tx = self.db.begin_write().await?;
        let Some(mut row) = self.locked(&mut tx, id).await? else {
            return Ok(None);
        };
        if row.paused_until != paused_until {
            row.paused_until = paused_until;
            row.updated_at = self.clock.now_micros();
            self.write_state(&mut tx, &row).await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }

    pub(crate) async fn locked(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Option<SubscriptionRow>> {
        let sql = self.db.locking(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
        ));
        Ok(db::fetch_optional(&mut **tx, &sql, (id,)).await?)
    }

    /// Writes everything a user or agentshare may change on a row, and the
    /// next fire time that follows from it. A time already due and not yet
    /// claimed stays due while the subscription is still ACTIVE, so
    /// changing channels at 08:00:00 does not lose the 08:00 run.
    pub(crate) async fn write_state(
        &self,
        tx: &mut Transaction<'static, Any>,
        row: &SubscriptionRow,
    ) -> Result<()> {
        let now = self.clock.now_micros();
        sqlx::query(
            "UPDATE subscriptions SET enabled = $1, channels = $2, email = $3, paused_until = $4, \
             inactive = $5, status_reason = $6, status_message = $7, agent_version = $8, \
             checked_version = $9, agent_name = $10, automation_name = $11, schedule_kind = $12, \
             schedule_cron = $13, time_zone = $14, task = $15, catch_up_policy = $16, \
             next_run_at = CASE WHEN $20 = 1 AND next_run_at IS NOT NULL AND next_run_at <= $21 \
             THEN next_run_at ELSE $17 END, updated_at = $18 WHERE id = $19",
        )
        .state(row)
        .bind(row.next_run_at(now))
        .bind(row.updated_at)
        .bind(&row.id)
        .bind(i64::from(
            row.switches().status(now) == crate::subscriptions::rules::Status::Active,
        ))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Brings one subscription up to the version its user runs: the new
    /// definition when the key is still there, INACTIVE with the reason
    /// when it is gone, DISABLED when a later version restores it. Only a
    /// row still older than `definition`'s latest version changes, so
    /// replicas and concurrent reads apply it once; an enabled subscription
    /// that stops notifies its user in the same transaction. Returns the row
    /// as it now is.
    pub async fn reconcile(
        &self,
        id: &str,
        latest_version: i64,
        version: i64,
        definition: Option<&Definition>,
    ) -> Result<Option<SubscriptionRow>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let Some(mut row) = self.locked(&mut tx, id).await? else {
            return Ok(None);
        };
        if row.checked_version >= latest_version && row.agent_version == version {
            return Ok(Some(row));
        }
        let mut stopped = None;
        match definition {
            Some(definition) => {
                if row.inactive && row.status_reason == StopReason::AutomationRemoved {
                    row.inactive = false;
                    row.enabled = false;
                    row.paused_until = None;
                    row.status_reason = StopReason::User;
                    row.status_message = format!(
                        "automation restored in version {version}; enable it again to run it"
                    );
                }
                row.agent_name.clone_from(&definition.agent_name);
                row.automation_name.clone_from(&definition.automation_name);
                row.schedule_kind = definition.schedule.kind.as_str().into();
                row.schedule_cron.clone_from(&definition.schedule.cron);
                row.time_zone = definition.schedule.zone.name().into();
                row.task.clone_from(&definition.task);
                row.catch_up_policy.clone_from(&definition.catch_up_policy);
            }
            None if !row.inactive => {
                let was_running = row.enabled;
                row.inactive = true;
                row.status_reason = StopReason::AutomationRemoved;
                row.status_message = crate::subscriptions::rules::removed_message(version);
                if was_running {
                    stopped = Some(crate::subscriptions::rules::stopped_notice(
                        &row,
                        &row.status_message,
                        "Nothing runs until the builder restores it.",
                    ));
                }
            }
            None => {}
        }
        row.agent_version = version;
        row.checked_version = row.checked_version.max(latest_version);
        row.updated_at = now;
        self.write_state(&mut tx, &row).await?;
        if let Some(notice) = stopped {
            notify(&mut tx, &notice, now).await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let deleted = db::execute(
            &self.db.pool,
            "DELETE FROM subscriptions WHERE id = $1",
            (id,),
        )
        .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The latest run of each subscription, for the rows of one page.
    pub async fn last_runs(&self, ids: &[String]) -> Result<Vec<LastRun>> {
        let mut runs = Vec::new();
        for id in ids {
            let run: Option<LastRun> = db::fetch_optional(
                &self.db.pool,
                "SELECT subscription_id, id AS run_id, scheduled_at, status, finished_at \
                 FROM automation_runs WHERE subscription_id = $1 ORDER BY scheduled_at DESC LIMIT 1",
                (id,),
            )
            .await?;
            runs.extend(run);
        }
        Ok(runs)
    }

    /// Records registry's latest version of an agent; versions only grow.
    pub async fn agent_deployed(&self, agent_id: &str, org_id: &str, version: i64) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO known_agents (agent_id, org_id, latest_version, deleted, updated_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (agent_id) DO UPDATE SET \
             latest_version = CASE WHEN excluded.latest_version > known_agents.latest_version \
             THEN excluded.latest_version ELSE known_agents.latest_version END, \
             updated_at = excluded.updated_at",
            (agent_id, org_id, version, self.clock.now_micros()),
        )
        .await?;
        Ok(())
    }

    /// Stops every subscription of a deleted agent, notifying the users
    /// whose subscriptions were running. Repeating it changes nothing.
    pub async fn agent_deleted(&self, agent_id: &str, org_id: &str) -> Result<()> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO known_agents (agent_id, org_id, latest_version, deleted, updated_at) \
             VALUES ($1, $2, 0, 1, $3) ON CONFLICT (agent_id) DO UPDATE SET deleted = 1, \
             updated_at = excluded.updated_at",
            (agent_id, org_id, now),
        )
        .await?;
        let sql = self.db.locking(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE agent_id = $1 \
             AND NOT (inactive = 1 AND status_reason = 'agent_deleted')"
        ));
        let rows: Vec<SubscriptionRow> = db::fetch_all(&mut *tx, &sql, (agent_id,)).await?;
        for mut row in rows {
            let was_running = row.enabled && !row.inactive;
            row.inactive = true;
            row.status_reason = StopReason::AgentDeleted;
            row.status_message = crate::subscriptions::rules::AGENT_DELETED_MESSAGE.into();
            row.updated_at = now;
            self.write_state(&mut tx, &row).await?;
            if was_running {
                let notice = crate::subscriptions::rules::stopped_notice(
                    &row,
                    "the agent was deleted",
                    "Its run history stays readable.",
                );
                notify(&mut tx, &notice, now).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Disables every running subscription of an unshared agent except the
    /// owner's, with the reason "agent unshared", notifying each user.
    /// Repeating it changes nothing; sharing again re-enables none.
    pub async fn agent_unshared(&self, agent_id: &str, owner_id: &str) -> Result<usize> {
        let sql = self.db.locking(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE agent_id = $1 \
             AND user_id <> $2 AND enabled = 1 AND inactive = 0"
        ));
        let mut tx = self.db.begin_write().await?;
        let rows: Vec<SubscriptionRow> =
            db::fetch_all(&mut *tx, &sql, (agent_id, owner_id)).await?;
        let mut stopped = 0;
        for mut row in rows {
            self.disable(
                &mut tx,
                &mut row,
                StopReason::AgentUnshared,
                crate::subscriptions::rules::AGENT_UNSHARED_MESSAGE,
                "the owner unshared the agent",
            )
            .await?;
            stopped += 1;
        }
        tx.commit().await?;
        Ok(stopped)
    }

    /// Disables one subscription of a user who can no longer run its agent,
    /// if it is still running; true when it stopped now.
    pub async fn access_lost(&self, id: &str) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let Some(mut row) = self.locked(&mut tx, id).await? else {
            return Ok(false);
        };
        if !row.enabled || row.inactive {
            return Ok(false);
        }
        self.disable(
            &mut tx,
            &mut row,
            StopReason::AccessLost,
            crate::subscriptions::rules::ACCESS_LOST_MESSAGE,
            "you can no longer run the agent",
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves a subscription to another workspace of its user through which
    /// they still run the agent, after they lost the one it ran in.
    pub async fn move_to_workspace(&self, id: &str, workspace_id: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE subscriptions SET workspace_id = $1, updated_at = $2 WHERE id = $3",
            (workspace_id, self.clock.now_micros(), id),
        )
        .await?;
        Ok(())
    }

    /// Running subscriptions of one user in an org, or of one agent, or in
    /// one workspace: those an access change may have stopped.
    pub async fn running_where(
        &self,
        column: RunningBy,
        value: &str,
        org_id: &str,
    ) -> Result<Vec<SubscriptionRow>> {
        let column = match column {
            RunningBy::User => "user_id",
            RunningBy::Agent => "agent_id",
            RunningBy::Workspace => "workspace_id",
        };
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE {column} = $1 AND org_id = $2 \
             AND enabled = 1 AND inactive = 0 ORDER BY id"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (value, org_id)).await?)
    }

    async fn disable(
        &self,
        tx: &mut Transaction<'static, Any>,
        row: &mut SubscriptionRow,
        reason: StopReason,
        message: &str,
        why: &str,
    ) -> Result<()> {
        let now = self.clock.now_micros();
        row.enabled = false;
        row.paused_until = None;
        row.status_reason = reason;
        row.status_message = message.into();
        row.updated_at = now;
        self.write_state(tx, row).await?;
        let notice = crate::subscriptions::rules::stopped_notice(
            row,
            why,
            "It stays listed, disabled; enable it again once you can run the agent.",
        );
        notify(tx, &notice, now).await
    }

    /// Enabled subscriptions of an agent that can still fire, oldest first,
    /// and how many there are.
    pub async fn enabled_of_agent(
        &self,
        agent_id: &str,
        exclude_user_id: &str,
        page: &Page,
    ) -> Result<(Vec<SubscriptionRow>, i64)> {
        let filter = "agent_id = $1 AND user_id <> $2 AND enabled = 1 AND inactive = 0";
        let (total,): (i64,) = db::fetch_one(
            &self.db.pool,
            &format!("SELECT COUNT(*) FROM subscriptions WHERE {filter}"),
            (agent_id, exclude_user_id),
        )
        .await?;
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE {filter} AND id > $3 \
             ORDER BY id LIMIT $4"
        );
        let rows = db::fetch_all(&self.db.pool, &sql, (agent_id, exclude_user_id, page)).await?;
        Ok((rows, total))
    }

    pub async fn cap(&self, workspace_id: &str) -> Result<(CapRow, i64)> {
        let cap: Option<CapRow> = db::fetch_optional(
            &self.db.pool,
            "SELECT max_active, updated_by, updated_at FROM workspace_caps WHERE workspace_id = $1",
            (workspace_id,),
        )
        .await?;
        let cap = cap.unwrap_or_default();
        let active = active_in(&self.db.pool, workspace_id).await?;
        Ok((cap, active))
    }

    pub async fn set_cap(
        &self,
        workspace_id: &str,
        org_id: &str,
        max_active: Option<i64>,
        user_id: &str,
    ) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO workspace_caps (workspace_id, org_id, max_active, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id) DO UPDATE SET \
             max_active = excluded.max_active, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
            (
                workspace_id,
                org_id,
                max_active,
                user_id,
                self.clock.now_micros(),
            ),
        )
        .await?;
        Ok(())
    }

    /// Puts a notice on its user's channels, in its own transaction.
    #[cfg(test)]
    pub async fn notify(&self, notice: &Notice) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        notify(&mut tx, notice, self.clock.now_micros()).await?;
        Ok(tx.commit().await?)
    }

    pub async fn inbox(
        &self,
        org_id: &str,
        user_id: &str,
        unread_only: bool,
        page: &Page,
    ) -> Result<Vec<InboxRow>> {
        let mut sql = String::from(
            "SELECT id, kind, title, body, agent_id, automation_key, run_id, session_id, \
             created_at, read_at FROM inbox_items WHERE org_id = $1 AND user_id = $2 AND id < $3",
        );
        if unread_only {
            sql.push_str(" AND read_at IS NULL");
        }
        sql.push_str(" ORDER BY id DESC LIMIT $4");
        // UUID v7 text sorts by time; every id sorts below this bound.
        Ok(db::fetch_all(
            &self.db.pool,
            &sql,
            (org_id, user_id, page.after().unwrap_or("~"), page.limit()),
        )
        .await?)
    }

    pub async fn unread_count(&self, org_id: &str, user_id: &str) -> Result<i64> {
        let (unread,): (i64,) = db::fetch_one(
            &self.db.pool,
            "SELECT COUNT(*) FROM inbox_items WHERE org_id = $1 AND user_id = $2 AND read_at IS NULL",
            (org_id, user_id),
        )
        .await?;
        Ok(unread)
    }

    /// Marks items read, keeping each first read time. With `ids`, all of
    /// them must be the user's, or nothing is marked (`None`).
    pub async fn mark_read(
        &self,
        org_id: &str,
        user_id: &str,
        ids: Option<&[String]>,
    ) -> Result<Option<u64>> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let Some(ids) = ids else {
            let marked = db::execute(
                &mut *tx,
                "UPDATE inbox_items SET read_at = $1 WHERE org_id = $2 AND user_id = $3 \
                 AND read_at IS NULL",
                (now, org_id, user_id),
            )
            .await?;
            tx.commit().await?;
            return Ok(Some(marked.rows_affected()));
        };
        let mut marked = 0;
        for id in ids {
            let owned: Option<(Option<i64>,)> = db::fetch_optional(
                &mut *tx,
                "SELECT read_at FROM inbox_items WHERE id = $1 AND org_id = $2 AND user_id = $3",
                (id, org_id, user_id),
            )
            .await?;
            let Some(owned) = owned else {
                return Ok(None);
            };
            if owned.0.is_none() {
                marked += db::execute(
                    &mut *tx,
                    "UPDATE inbox_items SET read_at = $1 WHERE id = $2 AND read_at IS NULL",
                    (now, id),
                )
                .await?
                .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(Some(marked))
    }

    /// Claims up to `limit` due outbox rows for one attempt each. A claim
    /// moves the row's next attempt past `lease_micros`, so another replica
    /// leaves it alone meanwhile, and takes it again if this one dies.
    pub async fn claim_deliveries(&self, limit: i64, lease_micros: i64) -> Result<Vec<OutboxRow>> {
        let now = self.clock.now_micros();
        let due: Vec<DueDelivery> = db::fetch_all(
            &self.db.pool,
            "SELECT id, channel, address, title, body, attempt_count, next_attempt_at \
             FROM notification_outbox WHERE status IN ('pending', 'retrying') \
             AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
            (now, limit),
        )
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for due in due {
            let taken = db::execute(
                &self.db.pool,
                "UPDATE notification_outbox SET next_attempt_at = $1 \
                 WHERE id = $2 AND next_attempt_at = $3 AND status IN ('pending', 'retrying')",
                (now + lease_micros, &due.row.id, due.next_attempt_at),
            )
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(due.row);
            }
        }
        Ok(claimed)
    }

    pub async fn delivered(&self, id: &str) -> Result<()> {
        let now = self.clock.now_micros();
        db::execute(
            &self.db.pool,
            "UPDATE notification_outbox SET status = 'delivered', attempt_count = attempt_count + 1, \
             delivered_at = $1, last_error = '' WHERE id = $2",
            (now, id),
        )
        .await?;
        Ok(())
    }

    /// Records a failed attempt: another at `retry_at`, or FAILED when
    /// there is none.
    pub async fn attempt_failed(&self, id: &str, error: &str, retry_at: Option<i64>) -> Result<()> {
        let (status, next) = match retry_at {
            Some(at) => ("retrying", at),
            None => ("failed", self.clock.now_micros()),
        };
        db::execute(
            &self.db.pool,
            "UPDATE notification_outbox SET status = $1, attempt_count = attempt_count + 1, \
             last_error = $2, next_attempt_at = $3 WHERE id = $4",
            (status, error, next, id),
        )
        .await?;
        Ok(())
    }
}

/// Enabled subscriptions of a workspace that can fire (ACTIVE or PAUSED).
async fn active_in<'e, E>(executor: E, workspace_id: &str) -> Result<i64>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let (active,): (i64,) = db::fetch_one(
        executor,
        "SELECT COUNT(*) FROM subscriptions WHERE workspace_id = $1 AND enabled = 1 AND inactive = 0",
        (workspace_id,),
    )
    .await?;
    Ok(active)
}

/// The columns of every stored copy of a notice, bound by [`with_notice`].
const NOTICE_COLUMNS: &str = "id, org_id, user_id, title, body, agent_id, automation_key, run_id";

/// `query` with a new row's id and the fields of `notice` that every copy
/// keeps, as `$1` to `$8` in the order of [`NOTICE_COLUMNS`].
fn with_notice<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    notice: &'q Notice,
) -> Query<'q, Any, AnyArguments<'q>> {
    query
        .bind(new_id())
        .bind(&notice.org_id)
        .bind(&notice.user_id)
        .bind(&notice.title)
        .bind(&notice.body)
        .bind(&notice.agent_id)
        .bind(&notice.automation_key)
        .bind(&notice.run_id)
}

/// Puts a notice on its channels in `tx`: an inbox item for WEB, an outbox
/// row for EMAIL (when the user has an address) and for PUSH.
pub(crate) async fn notify(
    tx: &mut Transaction<'static, Any>,
    notice: &Notice,
    now: i64,
) -> Result<()> {
    for channel in &notice.channels {
        match channel {
            Channel::Web => {
                let sql = format!(
                    "INSERT INTO inbox_items ({NOTICE_COLUMNS}, kind, session_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                );
                with_notice(sqlx::query(&sql), notice)
                    .bind(notice.kind.as_str())
                    .bind(&notice.session_id)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            Channel::Email | Channel::Push => {
                // Push goes to the user's devices, which the sender looks up
                // by user id.
                let address = if *channel == Channel::Email {
                    &notice.email
                } else {
                    &notice.user_id
                };
                if address.is_empty() {
                    continue;
                }
                let sql = format!(
                    "INSERT INTO notification_outbox ({NOTICE_COLUMNS}, channel, address, status, \
                     next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $11)"
                );
                with_notice(sqlx::query(&sql), notice)
                    .bind(channel.as_str())
                    .bind(address)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}
