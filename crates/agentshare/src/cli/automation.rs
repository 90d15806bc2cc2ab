//! `agentshare automation ...`: the automations a builder scheduled, your
//! own opt-in to each (a subscription: disabled until you enable it,
//! paused, resumed, unsubscribed), its runs and previews, and the inbox the
//! runs notify (AutomationsService).
//!
//! A subscription is named by its id, as `automation mine` lists it, or by
//! its agent and automation key.

use agentshare_proto::scheduler::v1 as pb;

use super::client::{Api, Channel, Target, every_page};
use super::failure::{Failure, Outcome};
use super::output::{Output, View, flag, label, time, with_detail};
use super::usage::parse_time;

type Automations = pb::automations_service_client::AutomationsServiceClient<Channel>;

/// `agentshare automation ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The automations of the agent version you run, with your
    /// subscription to each and whether you could enable it.
    List {
        /// The agent: its id, or its exact name.
        agent: String,
    },
    /// Subscribe to an automation; it stays disabled unless --enable.
    Subscribe {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The automation's key, as `automation list` shows it.
        key: String,
        /// Enable it now (needs the agent's setup ready).
        #[arg(long)]
        enable: bool,
        /// Where to be told about runs (repeat for several); default: the
        /// builder's suggestion, else the web inbox.
        #[arg(long = "channel", value_enum, value_name = "CHANNEL")]
        channels: Vec<NotificationChannel>,
    },
    /// Turn your subscription on: it runs on schedule from now.
    Enable(Which),
    /// Turn your subscription off; it stays, with its settings and runs.
    Disable(Which),
    /// Stop your enabled subscription from firing for a while; it resumes
    /// by itself.
    Pause {
        #[command(flatten)]
        which: Which,
        /// Until this day (YYYY-MM-DD, UTC) or instant (RFC 3339).
        #[arg(long, value_name = "TIME", required_unless_present = "for_")]
        until: Option<String>,
        /// For this long: minutes, hours or days, as 90m, 12h or 3d.
        #[arg(
            long = "for",
            id = "for_",
            value_name = "DURATION",
            conflicts_with = "until"
        )]
        for_: Option<String>,
    },
    /// End a pause now.
    Resume(Which),
    /// Choose where you are told about runs.
    Channels {
        #[command(flatten)]
        which: Which,
        /// A channel (repeat for several; none at all records runs only).
        #[arg(long = "channel", value_enum, value_name = "CHANNEL")]
        channels: Vec<NotificationChannel>,
    },
    /// Delete your subscription; its runs and inbox items stay readable.
    Unsubscribe(Which),
    /// Your subscriptions in this org, in every workspace.
    Mine {
        /// Only this agent's.
        #[arg(long, value_name = "AGENT_ID")]
        agent: Option<String>,
        /// Only subscriptions in this state (repeat for several).
        #[arg(long, value_enum)]
        status: Vec<SubscriptionStatus>,
    },
    /// Your runs, newest first, including missed and skipped times: of one
    /// subscription, of one agent, or all of them.
    Runs {
        /// A subscription id, or an agent id (with KEY: one automation).
        subscription: Option<String>,
        /// The automation's key, after an agent id.
        key: Option<String>,
        /// Only runs in this state (repeat for several).
        #[arg(long, value_enum)]
        status: Vec<RunStatus>,
        /// At most this many runs (the server caps it at 200).
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// One of your runs, with the delivery of each notification.
    Run {
        /// The run's id.
        run_id: String,
    },
    /// The next times an automation fires, in UTC and its own time zone.
    Next {
        #[command(flatten)]
        which: Which,
        /// How many (at most 50).
        #[arg(long, default_value_t = 3)]
        count: i32,
    },
    /// Your web notifications, newest first, and how many are unread.
    Inbox {
        #[command(subcommand)]
        command: Option<InboxCommand>,
        /// Only unread ones.
        #[arg(long)]
        unread: bool,
    },
}

/// `agentshare automation inbox ...`
#[derive(Debug, clap::Subcommand)]
pub enum InboxCommand {
    /// Mark notifications read.
    Read {
        /// The notifications' ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Every unread notification.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// A subscription: its id, or its agent and automation key.
#[derive(Debug, clap::Args)]
pub struct Which {
    /// A subscription id (as `automation mine` lists it), or an agent id
    /// followed by the automation's key.
    subscription: String,
    /// The automation's key, after an agent id.
    key: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NotificationChannel {
    Web,
    Email,
    Push,
}

impl From<NotificationChannel> for pb::NotificationChannel {
    fn from(channel: NotificationChannel) -> Self {
        match channel {
            NotificationChannel::Web => Self::Web,
            NotificationChannel::Email => Self::Email,
            NotificationChannel::Push => Self::Push,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SubscriptionStatus {
    Active,
    Paused,
    Disabled,
    Inactive,
}

impl From<SubscriptionStatus> for pb::SubscriptionStatus {
    fn from(status: SubscriptionStatus) -> Self {
        match status {
            SubscriptionStatus::Active => Self::Active,
            SubscriptionStatus::Paused => Self::Paused,
            SubscriptionStatus::Disabled => Self::Disabled,
            SubscriptionStatus::Inactive => Self::Inactive,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RunStatus {
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Missed,
    Skipped,
}

impl From<RunStatus> for pb::AutomationRunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Scheduled => Self::Scheduled,
            RunStatus::Running => Self::Running,
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Failed => Self::Failed,
            RunStatus::Missed => Self::Missed,
            RunStatus::Skipped => Self::Skipped,
        }
    }
}

fn channels(values: Vec<NotificationChannel>) -> Vec<i32> {
    values
        .into_iter()
        .map(|c| pb::NotificationChannel::from(c).into())
        .collect()
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut automations = api.automations();
    match command {
        Command::List { agent } => {
            let agent = api.agent_id(&agent).await?;
            list(&mut automations, agent, out).await
        }
        Command::Subscribe {
            agent,
            key,
            enable,
            channels: chosen,
        } => {
            let agent = api.agent_id(&agent).await?;
            let call = automations.subscribe(pb::SubscribeRequest {
                agent_id: agent,
                automation_key: key,
                enabled: enable,
                channels: channels(chosen),
            });
            out.answer(call.await?, subscription_record)
        }
        Command::Enable(which) => switch(&api, which, true, out).await,
        Command::Disable(which) => switch(&api, which, false, out).await,
        Command::Channels {
            which,
            channels: chosen,
        } => {
            let settings = pb::SubscriptionSettings {
                enabled: false,
                channels: channels(chosen),
            };
            update(&api, which, "channels", settings, out).await
        }
        Command::Pause { which, until, for_ } => {
            let paused_until = match (until, for_) {
                (Some(until), _) => parse_time(&until, "--until")?,
                (None, Some(length)) => from_now(&length)?,
                (None, None) => return Err(Failure::usage("give --until TIME or --for DURATION")),
            };
            let (agent_id, automation_key) = resolve(&api, which).await?;
            let call = automations.pause_subscription(pb::PauseSubscriptionRequest {
                agent_id,
                automation_key,
                paused_until: Some(paused_until),
            });
            out.answer(call.await?, subscription_record)
        }
        Command::Resume(which) => {
            let (agent_id, automation_key) = resolve(&api, which).await?;
            let call = automations.resume_subscription(pb::ResumeSubscriptionRequest {
                agent_id,
                automation_key,
            });
            out.answer(call.await?, subscription_record)
        }
        Command::Unsubscribe(which) => {
            let (agent_id, automation_key) = resolve(&api, which).await?;
            let call = automations.unsubscribe(pb::UnsubscribeRequest {
                agent_id,
                automation_key: automation_key.clone(),
            });
            out.answer(call.await?, |removed| {
                View::record(
                    removed.subscription_id.clone(),
                    vec![
                        ("unsubscribed", removed.subscription_id.clone()),
                        ("automation", automation_key),
                        ("runs", "kept, with their inbox items".into()),
                    ],
                )
            })
        }
        Command::Mine { agent, status } => {
            let statuses = status
                .into_iter()
                .map(|s| pb::SubscriptionStatus::from(s).into())
                .collect();
            let mine =
                my_subscriptions(&mut automations, agent.unwrap_or_default(), statuses).await?;
            out.show(&mine, subscriptions_table(&mine.subscriptions))
        }
        Command::Runs {
            subscription,
            key,
            status,
            limit,
        } => {
            let (agent_id, automation_key) = match (subscription, key) {
                (None, _) => (String::new(), String::new()),
                (Some(agent), Some(key)) => (agent, key),
                (Some(first), None) => {
                    match find_subscription(&mut automations, &first).await? {
                        Some(found) => (found.agent_id, found.automation_key),
                        // Not one of your subscriptions: an agent.
                        None => (first, String::new()),
                    }
                }
            };
            let listed = automations
                .list_runs(pb::ListRunsRequest {
                    agent_id,
                    automation_key,
                    statuses: status
                        .into_iter()
                        .map(|s| pb::AutomationRunStatus::from(s).into())
                        .collect(),
                    page_size: limit,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            out.show(&listed, runs_table(&listed.runs))?;
            if !listed.next_page_token.is_empty() {
                out.say("more runs are older; raise --limit to see them")?;
            }
            Ok(())
        }
        Command::Run { run_id } => {
            let call = automations.get_run(pb::GetRunRequest { run_id });
            out.answer(call.await?, |got| run_record(got.run.as_ref()))
        }
        Command::Next { which, count } => {
            let (agent_id, automation_key) = resolve(&api, which).await?;
            let next = automations
                .next_runs(pb::NextRunsRequest {
                    agent_id,
                    automation_key,
                    count,
                    after_time: None,
                })
                .await?
                .into_inner();
            let view = View::table(&next.fire_times)
                .id("UTC", |fire| time(fire.fire_time.as_ref()))
                .column("LOCAL", |fire| fire.local_time.clone())
                .column("NOTE", |fire| {
                    flag(fire.shifted_by_dst, "moved past a daylight-saving gap")
                });
            out.show(&next, view)?;
            if let Some(schedule) = &next.schedule {
                out.say(&format!(
                    "{} (cron {})",
                    schedule.description, schedule.cron
                ))?;
            }
            Ok(())
        }
        Command::Inbox {
            command: Some(InboxCommand::Read { ids, all }),
            ..
        } => {
            let call = automations.mark_inbox_read(pb::MarkInboxReadRequest { item_ids: ids, all });
            out.answer(call.await?, |marked| {
                View::record(
                    String::new(),
                    vec![
                        ("marked read", marked.marked_count.to_string()),
                        ("unread", marked.unread_count.to_string()),
                    ],
                )
            })
        }
        Command::Inbox {
            command: None,
            unread,
        } => {
            let inbox = automations
                .list_inbox(pb::ListInboxRequest {
                    unread_only: unread,
                    page_size: 50,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            out.show(&inbox, inbox_table(&inbox.items))?;
            out.say(&format!("{} unread", inbox.unread_count))
        }
    }
}

async fn list(automations: &mut Automations, agent: String, out: Output) -> Outcome {
    let request = pb::ListAutomationsRequest {
        agent_id: agent,
        ..Default::default()
    };
    let answer = every_page(request, async |r| automations.list_automations(r).await).await?;
    let view = View::table(&answer.automations)
        .id("KEY", |a| a.key.clone())
        .column("NAME", |a| a.name.clone())
        .column("SCHEDULE", |a| {
            a.schedule
                .as_ref()
                .map(|s| s.description.clone())
                .unwrap_or_default()
        })
        .column("NEXT", |a| {
            time(a.next_fire_times.first().and_then(|f| f.fire_time.as_ref()))
        })
        .column("YOURS", |a| {
            a.my_subscription
                .as_ref()
                .map(subscription_status)
                .unwrap_or_else(|| "not subscribed".into())
        })
        .column("CAN ENABLE", |a| {
            if a.can_enable {
                "yes".into()
            } else {
                format!("no: {}", a.cannot_enable_reason)
            }
        });
    out.show(&answer, view)
}

/// Enables or disables a subscription.
async fn switch(api: &Api, which: Which, enabled: bool, out: Output) -> Outcome {
    let settings = pb::SubscriptionSettings {
        enabled,
        channels: Vec::new(),
    };
    update(api, which, "enabled", settings, out).await
}

/// Changes the one setting `path` names, leaving the others as they are
/// (UpdateSubscription with a one-path mask).
async fn update(
    api: &Api,
    which: Which,
    path: &str,
    settings: pb::SubscriptionSettings,
    out: Output,
) -> Outcome {
    let (agent_id, automation_key) = resolve(api, which).await?;
    let request = pb::UpdateSubscriptionRequest {
        agent_id,
        automation_key,
        settings: Some(settings),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![path.into()],
        }),
    };
    let call = api.automations().update_subscription(request).await?;
    out.answer(call, subscription_record)
}

/// The agent and key a subscription is addressed by.
async fn resolve(api: &Api, which: Which) -> Outcome<(String, String)> {
    if let Some(key) = which.key {
        return Ok((api.agent_id(&which.subscription).await?, key));
    }
    match find_subscription(&mut api.automations(), &which.subscription).await? {
        Some(found) => Ok((found.agent_id, found.automation_key)),
        None => Err(Failure::Call(tonic::Status::not_found(format!(
            "none of your subscriptions has the id {}; name an automation as AGENT KEY",
            which.subscription
        )))),
    }
}

/// One of the caller's subscriptions by id, read from their list.
async fn find_subscription(
    automations: &mut Automations,
    id: &str,
) -> Outcome<Option<pb::Subscription>> {
    let mine = my_subscriptions(automations, String::new(), Vec::new()).await?;
    Ok(mine.subscriptions.into_iter().find(|s| s.id == id))
}

/// Every page of the caller's subscriptions, as one answer.
async fn my_subscriptions(
    automations: &mut Automations,
    agent_id: String,
    statuses: Vec<i32>,
) -> Outcome<pb::ListMySubscriptionsResponse> {
    let request = pb::ListMySubscriptionsRequest {
        agent_id,
        statuses,
        ..Default::default()
    };
    every_page(request, async |r| {
        automations.list_my_subscriptions(r).await
    })
    .await
}

/// An answer that carries the caller's subscription as the call left it.
trait Subscribed {
    fn subscription(&self) -> Option<&pb::Subscription>;
}

macro_rules! subscribed {
    ($($answer:ty),+) => {$(
        impl Subscribed for $answer {
            fn subscription(&self) -> Option<&pb::Subscription> {
                self.subscription.as_ref()
            }
        }
    )+};
}

subscribed!(
    pb::SubscribeResponse,
    pb::UpdateSubscriptionResponse,
    pb::PauseSubscriptionResponse,
    pb::ResumeSubscriptionResponse
);

/// Every answer that carries a subscription prints as it.
fn subscription_record(answer: &impl Subscribed) -> View {
    let s = answer.subscription().cloned().unwrap_or_default();
    let mut fields = vec![
        ("subscription", s.id.clone()),
        ("agent", format!("{} ({})", s.agent_name, s.agent_id)),
        (
            "automation",
            format!("{} ({})", s.automation_name, s.automation_key),
        ),
        ("schedule", s.schedule_description.clone()),
        ("status", subscription_status(&s)),
        ("channels", channel_names(&s.channels)),
        ("workspace", s.workspace_id.clone()),
    ];
    if s.paused_until.is_some() {
        fields.push(("paused until", time(s.paused_until.as_ref())));
    }
    fields.push(("next run", time(s.next_run_time.as_ref())));
    fields.push(("last run", last_run(s.last_run.as_ref())));
    View::record(s.id, fields)
}

fn subscriptions_table(subscriptions: &[pb::Subscription]) -> View {
    View::table(subscriptions)
        .id("ID", |s| s.id.clone())
        .column("AGENT", |s| s.agent_name.clone())
        .column("AUTOMATION", |s| {
            format!("{} ({})", s.automation_name, s.automation_key)
        })
        .column("SCHEDULE", |s| s.schedule_description.clone())
        .column("STATUS", subscription_status)
        .column("NEXT RUN", |s| time(s.next_run_time.as_ref()))
        .column("LAST RUN", |s| last_run(s.last_run.as_ref()))
        .column("CHANNELS", |s| channel_names(&s.channels))
        .into()
}

fn runs_table(runs: &[pb::AutomationRun]) -> View {
    View::table(runs)
        .id("ID", |run| run.id.clone())
        .column("AUTOMATION", |run| run.automation_name.clone())
        .column("SCHEDULED", |run| time(run.scheduled_time.as_ref()))
        .column("STATUS", run_status)
        .column("FINISHED", |run| time(run.finish_time.as_ref()))
        .column("OUTCOME", outcome)
        .into()
}

/// One run, with the delivery of each notification.
fn run_record(run: Option<&pb::AutomationRun>) -> View {
    let run = run.cloned().unwrap_or_default();
    let mut fields = vec![
        ("run", run.id.clone()),
        (
            "automation",
            format!("{} ({})", run.automation_name, run.automation_key),
        ),
        ("agent", run.agent_id.clone()),
        ("scheduled", time(run.scheduled_time.as_ref())),
        ("status", run_status(&run)),
        ("started", time(run.start_time.as_ref())),
        ("finished", time(run.finish_time.as_ref())),
        ("version", run.agent_version_number.to_string()),
        ("outcome", outcome(&run)),
        ("session", run.session_id.clone()),
        ("invocation", run.invocation_id.clone()),
        ("attempt", run.attempt.to_string()),
    ];
    if !run.note.is_empty() {
        fields.push(("note", run.note.clone()));
    }
    for delivery in &run.deliveries {
        let status = label(delivery.status().as_str_name(), "DELIVERY_STATUS_");
        fields.push((
            channel_field(delivery.channel()),
            with_detail(status, &delivery.last_error),
        ));
    }
    View::record(run.id, fields)
}

fn inbox_table(items: &[pb::InboxItem]) -> View {
    View::table(items)
        .id("ID", |item| item.id.clone())
        .column("WHEN", |item| time(item.create_time.as_ref()))
        .column("KIND", |item| {
            label(item.kind().as_str_name(), "INBOX_ITEM_KIND_")
        })
        .column("TITLE", |item| item.title.clone())
        .column("BODY", |item| item.body.chars().take(60).collect())
        .column("READ", |item| {
            if item.read_time.is_some() {
                "read".into()
            } else {
                "unread".into()
            }
        })
        .into()
}

fn subscription_status(s: &pb::Subscription) -> String {
    let status = label(s.status().as_str_name(), "SUBSCRIPTION_STATUS_");
    with_detail(status, &s.status_message)
}

fn last_run(run: Option<&pb::AutomationRunSummary>) -> String {
    run.map(|run| {
        format!(
            "{} {}",
            time(run.scheduled_time.as_ref()),
            label(run.status().as_str_name(), "AUTOMATION_RUN_STATUS_")
        )
    })
    .unwrap_or_default()
}

fn channel_names(values: &[i32]) -> String {
    let names: Vec<String> = values
        .iter()
        .map(|value| {
            pb::NotificationChannel::try_from(*value)
                .map(|c| label(c.as_str_name(), "NOTIFICATION_CHANNEL_"))
                .unwrap_or_else(|_| value.to_string())
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn channel_field(channel: pb::NotificationChannel) -> &'static str {
    match channel {
        pb::NotificationChannel::Web => "web",
        pb::NotificationChannel::Email => "email",
        pb::NotificationChannel::Push => "push",
        pb::NotificationChannel::Unspecified => "channel",
    }
}

fn run_status(run: &pb::AutomationRun) -> String {
    let status = label(run.status().as_str_name(), "AUTOMATION_RUN_STATUS_");
    if run.missed_count > 1 {
        format!("{status} ({} times)", run.missed_count)
    } else {
        status
    }
}

fn outcome(run: &pb::AutomationRun) -> String {
    let text = match &run.error {
        Some(error) => format!("{}: {}", error.code, error.message),
        None => run.output_summary.clone(),
    };
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    flat
}

/// `now + length`, with length as minutes, hours or days (`90m`, `12h`,
/// `3d`).
fn from_now(length: &str) -> Outcome<prost_types::Timestamp> {
    let seconds = duration_secs(length).ok_or_else(|| {
        Failure::usage(format!(
            "--for {length:?} is not a length such as 90m, 12h or 3d"
        ))
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Failure::local(format!("the system clock is before 1970: {e}")))?;
    let now = i64::try_from(now.as_secs())
        .map_err(|_| Failure::local("the system clock is out of range"))?;
    Ok(prost_types::Timestamp {
        seconds: now + seconds,
        nanos: 0,
    })
}

fn duration_secs(length: &str) -> Option<i64> {
    let length = length.trim();
    let unit = match length.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let count: i64 = length[..length.len() - 1].parse().ok()?;
    (count > 0).then(|| count.checked_mul(unit)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_lengths_read_in_minutes_hours_and_days() {
        assert_eq!(duration_secs("90m"), Some(5400));
        assert_eq!(duration_secs("12h"), Some(43_200));
        assert_eq!(duration_secs("3d"), Some(259_200));
        assert_eq!(duration_secs("0h"), None);
        assert_eq!(duration_secs("soon"), None);
        assert_eq!(duration_secs("5"), None);
    }
}
