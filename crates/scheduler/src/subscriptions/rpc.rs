//! AutomationsService and AutomationsInternalService: decode, check the
//! caller, call the subscription service, and map rows to the contract.

use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result, ids};
use agentshare_proto::scheduler::v1 as pb;
use pb::automations_internal_service_server::AutomationsInternalService;
use pb::automations_service_server::AutomationsService;

use crate::firing::storage::{DeliveryRow, RunFilter, RunRow};
use crate::schedule::{Fire, Schedule};
use crate::subscriptions::rules::{self, Channel, Status as SubscriptionStatus};
use crate::subscriptions::service::{Caller, Named, Subscriptions, display_name};
use crate::subscriptions::storage::{LastRun, SubscriptionRow};

#[derive(Clone)]
pub struct Automations {
    pub subscriptions: Subscriptions,
}

fn fire_to_proto(fire: &Fire) -> pb::FireTime {
    pb::FireTime {
        fire_time: Some(timestamp(fire.at_micros)),
        local_time: fire.local.clone(),
        shifted_by_dst: fire.shifted_by_dst,
    }
}

fn schedule_to_proto(schedule: &Schedule) -> pb::Schedule {
    use crate::schedule::Kind;
    let kind = match schedule.kind {
        Kind::Cron => pb::ScheduleKind::Cron,
        Kind::Hourly => pb::ScheduleKind::Hourly,
        Kind::Daily => pb::ScheduleKind::Daily,
        Kind::Weekly => pb::ScheduleKind::Weekly,
    };
    pb::Schedule {
        kind: kind.into(),
        description: schedule.description(),
        cron: schedule.cron.clone(),
        time_zone: schedule.zone.name().to_string(),
    }
}

fn run_status(text: &str) -> pb::AutomationRunStatus {
    use pb::AutomationRunStatus as S;
    match text {
        "scheduled" => S::Scheduled,
        "running" => S::Running,
        "succeeded" => S::Succeeded,
        "failed" => S::Failed,
        "missed" => S::Missed,
        "skipped" => S::Skipped,
        _ => S::Unspecified,
    }
}

/// A run status of a request, as stored.
fn run_status_text(number: i32, field: &str) -> Result<&'static str> {
    use pb::AutomationRunStatus as S;
    match S::try_from(number) {
        Ok(S::Scheduled) => Ok("scheduled"),
        Ok(S::Running) => Ok("running"),
        Ok(S::Succeeded) => Ok("succeeded"),
        Ok(S::Failed) => Ok("failed"),
        Ok(S::Missed) => Ok("missed"),
        Ok(S::Skipped) => Ok("skipped"),
        _ => Err(Error::invalid(
            field,
            "must be SCHEDULED, RUNNING, SUCCEEDED, FAILED, MISSED or SKIPPED",
        )),
    }
}

fn delivery_to_proto(row: DeliveryRow) -> pb::NotificationDelivery {
    use pb::DeliveryStatus as D;
    let channel = Channel::parse_list(&row.channel)
        .first()
        .map_or(pb::NotificationChannel::Unspecified, |c| c.to_proto());
    let status = match row.status.as_str() {
        "pending" => D::Pending,
        "delivered" => D::Delivered,
        "retrying" => D::Retrying,
        "failed" => D::Failed,
        _ => D::Unspecified,
    };
    pb::NotificationDelivery {
        channel: channel.into(),
        status: status.into(),
        attempt_count: i32::try_from(row.attempt_count).unwrap_or(i32::MAX),
        last_error: row.last_error,
        deliver_time: row.delivered_at.map(timestamp),
        next_attempt_time: row.next_attempt_at.map(timestamp),
    }
}

fn run_to_proto(row: RunRow, deliveries: Vec<pb::NotificationDelivery>) -> pb::AutomationRun {
    let error = (!row.error_code.is_empty()).then(|| pb::AutomationRunError {
        code: row.error_code.clone(),
        message: row.error_message.clone(),
    });
    let missed = row.status == "missed";
    pb::AutomationRun {
        status: run_status(&row.status).into(),
        id: row.id,
        subscription_id: row.subscription_id,
        agent_id: row.agent_id,
        automation_key: row.automation_key,
        automation_name: row.automation_name,
        user_id: row.user_id,
        scheduled_time: Some(timestamp(row.scheduled_at)),
        start_time: row.started_at.map(timestamp),
        finish_time: row.finished_at.map(timestamp),
        output_summary: row.output_summary,
        error,
        attempt: i32::try_from(row.attempt).unwrap_or(i32::MAX),
        retried_after_lease_expiry: row.retried_after_lease_expiry,
        note: row.note,
        catch_up: row.catch_up,
        missed_count: if missed {
            i32::try_from(row.missed_count).unwrap_or(i32::MAX)
        } else {
            1
        },
        missed_through_time: row.missed_through.filter(|_| missed).map(timestamp),
        agent_version_number: row.agent_version,
        invocation_id: row.invocation_id,
        session_id: row.session_id,
        deliveries,
    }
}

fn subscription_to_proto(
    row: &SubscriptionRow,
    last_run: Option<&LastRun>,
    now: i64,
) -> Result<pb::Subscription> {
    let schedule = row.schedule()?;
    let switches = row.switches();
    let status = switches.status(now);
    let stopped = matches!(
        status,
        SubscriptionStatus::Disabled | SubscriptionStatus::Inactive
    );
    Ok(pb::Subscription {
        id: row.id.clone(),
        agent_id: row.agent_id.clone(),
        automation_key: row.automation_key.clone(),
        user_id: row.user_id.clone(),
        workspace_id: row.workspace_id.clone(),
        enabled: row.enabled,
        channels: row.channels.iter().map(|c| c.to_proto().into()).collect(),
        paused_until: row
            .paused_until
            .filter(|_| status == SubscriptionStatus::Paused)
            .map(timestamp),
        status: status.to_proto().into(),
        status_reason: if stopped {
            row.status_reason.to_proto().into()
        } else {
            pb::SubscriptionStatusReason::Unspecified.into()
        },
        status_message: if stopped {
            row.status_message.clone()
        } else {
            String::new()
        },
        next_run_time: switches
            .next_run(&schedule, now)
            .map(|fire| timestamp(fire.at_micros)),
        last_run: last_run.map(|run| pb::AutomationRunSummary {
            run_id: run.run_id.clone(),
            scheduled_time: Some(timestamp(run.scheduled_at)),
            status: run_status(&run.status).into(),
            finish_time: run.finished_at.map(timestamp),
        }),
        agent_name: row.agent_name.clone(),
        automation_name: row.automation_name.clone(),
        schedule_description: schedule.description(),
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
    })
}

impl Automations {
    fn now(&self) -> i64 {
        self.subscriptions.storage.clock.now_micros()
    }

    /// Subscriptions as the contract shows them, each with its last run.
    async fn shown(&self, rows: &[SubscriptionRow]) -> Result<Vec<pb::Subscription>> {
        let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
        let runs = self.subscriptions.storage.last_runs(&ids).await?;
        let now = self.now();
        rows.iter()
            .map(|row| {
                let run = runs.iter().find(|r| r.subscription_id == row.id);
                subscription_to_proto(row, run, now)
            })
            .collect()
    }

    /// One subscription as the contract shows it, with its last run.
    async fn shown_one(&self, row: SubscriptionRow) -> Result<Option<pb::Subscription>> {
        Ok(self.shown(std::slice::from_ref(&row)).await?.pop())
    }

    /// Whether the caller may read (and, with `manage`, set) a workspace's
    /// cap. NOT_FOUND for a workspace they may not see.
    async fn cap_access(
        &self,
        principal: &Principal,
        workspace_id: &str,
        manage: bool,
    ) -> Result<()> {
        let role = self
            .subscriptions
            .peers
            .workspace_role(principal, workspace_id)
            .await?;
        rules::cap_access(workspace_id, role, principal.org_role, manage)
    }

    async fn cap(&self, workspace_id: &str) -> Result<Option<pb::WorkspaceAutomationCap>> {
        let (cap, active) = self.subscriptions.storage.cap(workspace_id).await?;
        Ok(Some(pb::WorkspaceAutomationCap {
            workspace_id: workspace_id.to_string(),
            max_active_automations: cap.max_active.and_then(|m| i32::try_from(m).ok()),
            active_count: i32::try_from(active).unwrap_or(i32::MAX),
            update_user_id: cap.updated_by,
            update_time: cap.updated_at.map(timestamp),
        }))
    }

    async fn unread(&self, caller: &Caller<'_>) -> Result<i32> {
        let unread = self
            .subscriptions
            .storage
            .unread_count(&caller.org_id, &caller.user_id)
            .await?;
        Ok(i32::try_from(unread).unwrap_or(i32::MAX))
    }
}

/// The automation a request names, for its caller.
fn named<'a>(principal: &'a Principal, agent_id: &str, key: &str) -> Result<Named<'a>> {
    Ok(Named {
        caller: Caller::of(principal)?,
        agent_id: ids::parse("agent_id", agent_id)?,
        key: rules::automation_key(key)?,
    })
}

/// The agent a listing is narrowed to, if any.
fn agent_filter(agent_id: &str) -> Result<Option<String>> {
    match agent_id {
        "" => Ok(None),
        id => Ok(Some(ids::parse("agent_id", id)?)),
    }
}

/// Each status a listing names, checked by `of`, in order and once.
fn each_status<T>(numbers: &[i32], of: impl Fn(i32, &str) -> Result<T>) -> Result<Vec<T>> {
    numbers
        .iter()
        .enumerate()
        .map(|(i, s)| of(*s, &format!("statuses[{i}]")))
        .collect()
}

/// The (scheduled time, id) a page of runs resumes after.
fn run_cursor(page: &Page) -> Result<Option<(i64, String)>> {
    let Some(after) = page.after() else {
        return Ok(None);
    };
    after
        .split_once('_')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
        .map(Some)
        .ok_or_else(|| {
            Error::invalid(
                "page_token",
                "not a token from a previous page of this list; start again with an empty token",
            )
        })
}

fn inbox_item_to_proto(r: crate::subscriptions::storage::InboxRow) -> pb::InboxItem {
    pb::InboxItem {
        kind: rules::InboxKind::to_proto(&r.kind).into(),
        id: r.id,
        title: r.title,
        body: r.body,
        agent_id: r.agent_id,
        automation_key: r.automation_key,
        run_id: r.run_id,
        session_id: r.session_id,
        create_time: Some(timestamp(r.created_at)),
        read_time: r.read_at.map(timestamp),
    }
}

/// The AutomationsService handlers, one per unary call.
impl Automations {
    async fn list_automations(
        &self,
        principal: Principal,
        message: pb::ListAutomationsRequest,
    ) -> agentshare_kit::Result<pb::ListAutomationsResponse> {
        let caller = Caller::of(&principal)?;
        let agent_id = ids::parse("agent_id", &message.agent_id)?;
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("automations:{agent_id}"),
        )?;
        let (view, listed, cannot_enable) = self.subscriptions.list(&caller, &agent_id).await?;
        let now = self.now();
        let after = page.after().unwrap_or_default().to_string();
        let listed: Vec<_> = listed
            .into_iter()
            .filter(|l| page.after().is_none() || l.automation.key > after)
            .take(usize::try_from(page.limit()).unwrap_or(usize::MAX))
            .collect();
        let (listed, next_page_token) = page.split(listed, |l| l.automation.key.clone());
        let rows: Vec<SubscriptionRow> = listed
            .iter()
            .filter_map(|l| l.subscription.clone())
            .collect();
        let mut shown = self.shown(&rows).await?.into_iter();
        let mut automations = Vec::with_capacity(listed.len());
        for item in listed {
            let my_subscription = item.subscription.as_ref().and_then(|_| shown.next());
            automations.push(pb::Automation {
                agent_id: agent_id.clone(),
                key: item.automation.key.clone(),
                name: display_name(&item.automation),
                task: item.automation.task.clone(),
                schedule: Some(schedule_to_proto(&item.schedule)),
                catch_up_policy: rules::catch_up_to_proto(rules::catch_up_text(
                    item.automation.catch_up_policy,
                ))
                .into(),
                next_fire_times: item
                    .schedule
                    .fires_after(now, 3)
                    .iter()
                    .map(fire_to_proto)
                    .collect(),
                my_subscription,
                agent_version_number: view.version,
                can_enable: cannot_enable.is_none(),
                cannot_enable_reason: cannot_enable.clone().unwrap_or_default(),
                suggested_channels: rules::suggested_channels(&item.automation.suggested_channels)
                    .iter()
                    .map(|c| c.to_proto().into())
                    .collect(),
            });
        }
        Ok(pb::ListAutomationsResponse {
            automations,
            next_page_token,
        })
    }

    async fn subscribe(
        &self,
        principal: Principal,
        message: pb::SubscribeRequest,
    ) -> agentshare_kit::Result<pb::SubscribeResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let channels = if message.channels.is_empty() {
            None
        } else {
            Some(rules::requested_channels(&message.channels, "channels")?)
        };
        let row = self
            .subscriptions
            .subscribe(&named, message.enabled, channels)
            .await?;
        Ok(pb::SubscribeResponse {
            subscription: self.shown_one(row).await?,
        })
    }

    async fn update_subscription(
        &self,
        principal: Principal,
        message: pb::UpdateSubscriptionRequest,
    ) -> agentshare_kit::Result<pb::UpdateSubscriptionResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let paths = message.update_mask.map(|m| m.paths).unwrap_or_default();
        let (enabled, channels) =
            rules::settings_change(&paths, &message.settings.unwrap_or_default())?;
        let row = self.subscriptions.update(&named, enabled, channels).await?;
        Ok(pb::UpdateSubscriptionResponse {
            subscription: self.shown_one(row).await?,
        })
    }

    async fn pause_subscription(
        &self,
        principal: Principal,
        message: pb::PauseSubscriptionRequest,
    ) -> agentshare_kit::Result<pb::PauseSubscriptionResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let until = rules::pause_end(message.paused_until.as_ref(), self.now())?;
        let row = self.subscriptions.pause(&named, until).await?;
        Ok(pb::PauseSubscriptionResponse {
            subscription: self.shown_one(row).await?,
        })
    }

    async fn resume_subscription(
        &self,
        principal: Principal,
        message: pb::ResumeSubscriptionRequest,
    ) -> agentshare_kit::Result<pb::ResumeSubscriptionResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let row = self.subscriptions.resume(&named).await?;
        Ok(pb::ResumeSubscriptionResponse {
            subscription: self.shown_one(row).await?,
        })
    }

    async fn unsubscribe(
        &self,
        principal: Principal,
        message: pb::UnsubscribeRequest,
    ) -> agentshare_kit::Result<pb::UnsubscribeResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let subscription_id = self.subscriptions.unsubscribe(&named).await?;
        Ok(pb::UnsubscribeResponse { subscription_id })
    }

    async fn list_my_subscriptions(
        &self,
        principal: Principal,
        message: pb::ListMySubscriptionsRequest,
    ) -> agentshare_kit::Result<pb::ListMySubscriptionsResponse> {
        let caller = Caller::of(&principal)?;
        let agent_id = agent_filter(&message.agent_id)?;
        let mut statuses = each_status(&message.statuses, SubscriptionStatus::of_proto)?;
        statuses.dedup();
        let mut scope_statuses: Vec<i32> = message.statuses.clone();
        scope_statuses.sort_unstable();
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!(
                "subscriptions:{}:{scope_statuses:?}",
                agent_id.as_deref().unwrap_or("")
            ),
        )?;
        let (rows, next_page_token) = self
            .subscriptions
            .mine(&caller, agent_id.as_deref(), &statuses, &page)
            .await?;
        Ok(pb::ListMySubscriptionsResponse {
            subscriptions: self.shown(&rows).await?,
            next_page_token,
        })
    }

    async fn list_runs(
        &self,
        principal: Principal,
        message: pb::ListRunsRequest,
    ) -> agentshare_kit::Result<pb::ListRunsResponse> {
        let caller = Caller::of(&principal)?;
        let agent_id = agent_filter(&message.agent_id)?;
        let automation_key = match message.automation_key.as_str() {
            "" => None,
            _ if agent_id.is_none() => {
                return Err(Error::invalid(
                    "automation_key",
                    "needs agent_id: name the agent the automation belongs to",
                ));
            }
            key => Some(rules::automation_key(key)?),
        };
        let mut statuses = each_status(&message.statuses, run_status_text)?;
        statuses.sort_unstable();
        statuses.dedup();
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!(
                "runs:{}:{}:{}",
                agent_id.as_deref().unwrap_or(""),
                automation_key.as_deref().unwrap_or(""),
                statuses.join(",")
            ),
        )?;
        let rows = self
            .subscriptions
            .storage
            .runs_of(&RunFilter {
                org_id: &caller.org_id,
                user_id: &caller.user_id,
                agent_id: agent_id.as_deref(),
                automation_key: automation_key.as_deref(),
                statuses: &statuses,
                after: run_cursor(&page)?,
                limit: page.limit(),
            })
            .await?;
        let (rows, next_page_token) = page.split(rows, |r| format!("{}_{}", r.scheduled_at, r.id));
        Ok(pb::ListRunsResponse {
            runs: rows
                .into_iter()
                .map(|row| run_to_proto(row, Vec::new()))
                .collect(),
            next_page_token,
        })
    }

    async fn get_run(
        &self,
        principal: Principal,
        message: pb::GetRunRequest,
    ) -> agentshare_kit::Result<pb::GetRunResponse> {
        let caller = Caller::of(&principal)?;
        let run_id = ids::parse("run_id", &message.run_id)?;
        let storage = &self.subscriptions.storage;
        let run = storage
            .run(&run_id)
            .await?
            .filter(|r| r.user_id == caller.user_id && r.org_id == caller.org_id)
            .ok_or_else(|| Error::not_found(format!("run {run_id}")))?;
        let deliveries = storage
            .deliveries(&run_id)
            .await?
            .into_iter()
            .map(delivery_to_proto)
            .collect();
        Ok(pb::GetRunResponse {
            run: Some(run_to_proto(run, deliveries)),
        })
    }

    async fn next_runs(
        &self,
        principal: Principal,
        message: pb::NextRunsRequest,
    ) -> agentshare_kit::Result<pb::NextRunsResponse> {
        let named = named(&principal, &message.agent_id, &message.automation_key)?;
        let count = match message.count {
            0 => 3,
            n @ 1..=50 => usize::try_from(n).unwrap_or(3),
            _ => return Err(Error::invalid("count", "must be 0 to 50; 0 means 3")),
        };
        let after = match &message.after_time {
            Some(t) => t
                .seconds
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(i64::from(t.nanos / 1_000)))
                .ok_or_else(|| Error::invalid("after_time", "out of range"))?,
            None => self.now(),
        };
        let (view, automation) = self.subscriptions.automation(&named).await?;
        let schedule = crate::subscriptions::service::definition(&view, &automation)?.schedule;
        Ok(pb::NextRunsResponse {
            fire_times: schedule
                .fires_after(after, count)
                .iter()
                .map(fire_to_proto)
                .collect(),
            schedule: Some(schedule_to_proto(&schedule)),
        })
    }

    async fn list_inbox(
        &self,
        principal: Principal,
        message: pb::ListInboxRequest,
    ) -> agentshare_kit::Result<pb::ListInboxResponse> {
        let caller = Caller::of(&principal)?;
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("inbox:{}", message.unread_only),
        )?;
        let rows = self
            .subscriptions
            .storage
            .inbox(&caller.org_id, &caller.user_id, message.unread_only, &page)
            .await?;
        let (rows, next_page_token) = page.split(rows, |r| r.id.clone());
        Ok(pb::ListInboxResponse {
            items: rows.into_iter().map(inbox_item_to_proto).collect(),
            next_page_token,
            unread_count: self.unread(&caller).await?,
        })
    }

    async fn mark_inbox_read(
        &self,
        principal: Principal,
        message: pb::MarkInboxReadRequest,
    ) -> agentshare_kit::Result<pb::MarkInboxReadResponse> {
        let caller = Caller::of(&principal)?;
        let ids = rules::items_to_mark(&message.item_ids, message.all)?;
        let marked = self
            .subscriptions
            .storage
            .mark_read(
                &caller.org_id,
                &caller.user_id,
                (!message.all).then_some(ids.as_slice()),
            )
            .await?
            .ok_or_else(|| {
                Error::not_found("one of item_ids in your inbox; nothing was marked read")
            })?;
        Ok(pb::MarkInboxReadResponse {
            marked_count: i32::try_from(marked).unwrap_or(i32::MAX),
            unread_count: self.unread(&caller).await?,
        })
    }

    async fn get_inbox_unread_count(
        &self,
        principal: Principal,
        _request: pb::GetInboxUnreadCountRequest,
    ) -> agentshare_kit::Result<pb::GetInboxUnreadCountResponse> {
        let caller = Caller::of(&principal)?;
        Ok(pb::GetInboxUnreadCountResponse {
            unread_count: self.unread(&caller).await?,
        })
    }

    async fn get_workspace_automation_cap(
        &self,
        principal: Principal,
        message: pb::GetWorkspaceAutomationCapRequest,
    ) -> agentshare_kit::Result<pb::GetWorkspaceAutomationCapResponse> {
        Caller::of(&principal)?;
        let workspace_id = ids::parse("workspace_id", &message.workspace_id)?;
        self.cap_access(&principal, &workspace_id, false).await?;
        Ok(pb::GetWorkspaceAutomationCapResponse {
            cap: self.cap(&workspace_id).await?,
        })
    }

    async fn set_workspace_automation_cap(
        &self,
        principal: Principal,
        message: pb::SetWorkspaceAutomationCapRequest,
    ) -> agentshare_kit::Result<pb::SetWorkspaceAutomationCapResponse> {
        let caller = Caller::of(&principal)?;
        let workspace_id = ids::parse("workspace_id", &message.workspace_id)?;
        let max_active = rules::cap_of(message.max_active_automations)?;
        self.cap_access(&principal, &workspace_id, true).await?;
        self.subscriptions
            .storage
            .set_cap(&workspace_id, &caller.org_id, max_active, &caller.user_id)
            .await?;
        Ok(pb::SetWorkspaceAutomationCapResponse {
            cap: self.cap(&workspace_id).await?,
        })
    }
}

#[tonic::async_trait]
impl AutomationsService for Automations {
    agentshare_kit::handlers! {
        list_automations(pb::ListAutomationsRequest) -> pb::ListAutomationsResponse;
        subscribe(pb::SubscribeRequest) -> pb::SubscribeResponse;
        update_subscription(pb::UpdateSubscriptionRequest) -> pb::UpdateSubscriptionResponse;
        pause_subscription(pb::PauseSubscriptionRequest) -> pb::PauseSubscriptionResponse;
        resume_subscription(pb::ResumeSubscriptionRequest) -> pb::ResumeSubscriptionResponse;
        unsubscribe(pb::UnsubscribeRequest) -> pb::UnsubscribeResponse;
        list_my_subscriptions(pb::ListMySubscriptionsRequest) -> pb::ListMySubscriptionsResponse;
        list_runs(pb::ListRunsRequest) -> pb::ListRunsResponse;
        get_run(pb::GetRunRequest) -> pb::GetRunResponse;
        next_runs(pb::NextRunsRequest) -> pb::NextRunsResponse;
        list_inbox(pb::ListInboxRequest) -> pb::ListInboxResponse;
        mark_inbox_read(pb::MarkInboxReadRequest) -> pb::MarkInboxReadResponse;
        get_inbox_unread_count(pb::GetInboxUnreadCountRequest) -> pb::GetInboxUnreadCountResponse;
        get_workspace_automation_cap(pb::GetWorkspaceAutomationCapRequest) -> pb::GetWorkspaceAutomationCapResponse;
        set_workspace_automation_cap(pb::SetWorkspaceAutomationCapRequest) -> pb::SetWorkspaceAutomationCapResponse;
    }
}

/// Answers other services about subscriptions; sharing's unshare dry-run.
#[derive(Clone)]
pub struct AutomationsInternal {
    pub subscriptions: Subscriptions,
}

impl AutomationsInternal {
    async fn list_enabled_subscriptions(
        &self,
        message: pb::ListEnabledSubscriptionsRequest,
    ) -> Result<pb::ListEnabledSubscriptionsResponse> {
        let agent_id = ids::parse("agent_id", &message.agent_id)?;
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("enabled:{agent_id}:{}", message.exclude_user_id),
        )?;
        let (rows, total) = self
            .subscriptions
            .storage
            .enabled_of_agent(&agent_id, &message.exclude_user_id, &page)
            .await?;
        let (rows, next_page_token) = page.split(rows, |r| r.id.clone());
        Ok(pb::ListEnabledSubscriptionsResponse {
            subscriptions: rows
                .into_iter()
                .map(|r| pb::EnabledSubscription {
                    subscription_id: r.id,
                    user_id: r.user_id,
                    automation_key: r.automation_key,
                    workspace_id: r.workspace_id,
                })
                .collect(),
            next_page_token,
            total: i32::try_from(total).unwrap_or(i32::MAX),
        })
    }
}

/// Sharing calls with its service identity and no user caller.
#[tonic::async_trait]
impl AutomationsInternalService for AutomationsInternal {
    agentshare_kit::internal_handlers! {
        list_enabled_subscriptions(pb::ListEnabledSubscriptionsRequest) -> pb::ListEnabledSubscriptionsResponse;
    }
}
