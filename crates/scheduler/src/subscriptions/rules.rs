//! The rules of automations for users (DESIGN.md, "Automations (scheduler)"):
//! channels, a subscription's status and its reason, the pause, paging, and
//! the notifications agentshare sends when it stops a subscription.

use agentshare_kit::identity::OrgRole;
use agentshare_kit::{Error, ids};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1::WorkspaceRole;

use crate::schedule::{Fire, Schedule};

/// A way a user is told about runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    Web,
    Email,
    Push,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Email => "email",
            Self::Push => "push",
        }
    }

    pub fn to_proto(self) -> pb::NotificationChannel {
        match self {
            Self::Web => pb::NotificationChannel::Web,
            Self::Email => pb::NotificationChannel::Email,
            Self::Push => pb::NotificationChannel::Push,
        }
    }

    fn of_number(number: i32) -> Option<Self> {
        // The registry's and the scheduler's enums share their numbers.
        match pb::NotificationChannel::try_from(number) {
            Ok(pb::NotificationChannel::Web) => Some(Self::Web),
            Ok(pb::NotificationChannel::Email) => Some(Self::Email),
            Ok(pb::NotificationChannel::Push) => Some(Self::Push),
            _ => None,
        }
    }

    /// Channels as stored: comma-separated names.
    pub fn parse_list(text: &str) -> Vec<Self> {
        text.split(',')
            .filter_map(|name| match name {
                "web" => Some(Self::Web),
                "email" => Some(Self::Email),
                "push" => Some(Self::Push),
                _ => None,
            })
            .collect()
    }

    pub fn list_text(channels: &[Self]) -> String {
        channels
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The channels a request names: each known, none twice.
pub fn requested_channels(numbers: &[i32], field: &str) -> Result<Vec<Channel>, Error> {
    let mut channels = Vec::with_capacity(numbers.len());
    for (i, number) in numbers.iter().enumerate() {
        let channel = Channel::of_number(*number)
            .ok_or_else(|| Error::invalid(format!("{field}[{i}]"), "must be WEB, EMAIL or PUSH"))?;
        if channels.contains(&channel) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!(
                    "{} is named twice; name each channel once",
                    channel.as_str()
                ),
            ));
        }
        channels.push(channel);
    }
    Ok(channels)
}

/// The channels of a new subscription that names none: the builder's
/// suggestion, or the inbox alone.
pub fn default_channels(suggested: &[i32]) -> Vec<Channel> {
    let mut channels = suggested_channels(suggested);
    if channels.is_empty() {
        channels.push(Channel::Web);
    }
    channels
}

/// The builder's suggested channels, each once.
pub fn suggested_channels(suggested: &[i32]) -> Vec<Channel> {
    let mut channels: Vec<Channel> = Vec::new();
    for channel in suggested.iter().filter_map(|n| Channel::of_number(*n)) {
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    channels
}

/// Why a subscription is DISABLED or INACTIVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    User,
    AgentUnshared,
    AccessLost,
    AutomationRemoved,
    AgentDeleted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::AgentUnshared => "agent_unshared",
            Self::AccessLost => "access_lost",
            Self::AutomationRemoved => "automation_removed",
            Self::AgentDeleted => "agent_deleted",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "agent_unshared" => Self::AgentUnshared,
            "access_lost" => Self::AccessLost,
            "automation_removed" => Self::AutomationRemoved,
            "agent_deleted" => Self::AgentDeleted,
            _ => Self::User,
        }
    }

    pub fn to_proto(self) -> pb::SubscriptionStatusReason {
        match self {
            Self::User => pb::SubscriptionStatusReason::User,
            Self::AgentUnshared => pb::SubscriptionStatusReason::AgentUnshared,
            Self::AccessLost => pb::SubscriptionStatusReason::AccessLost,
            Self::AutomationRemoved => pb::SubscriptionStatusReason::AutomationRemoved,
            Self::AgentDeleted => pb::SubscriptionStatusReason::AgentDeleted,
        }
    }
}

/// The words shown for an automation absent from the version a user runs.
pub fn removed_message(version: i64) -> String {
    format!("automation removed in version {version}")
}

/// The words shown for a subscription whose agent was deleted.
pub const AGENT_DELETED_MESSAGE: &str = "agent deleted";

/// The catch-up policy as stored.
pub fn catch_up_text(policy: i32) -> &'static str {
    match registry::CatchUpPolicy::try_from(policy) {
        Ok(registry::CatchUpPolicy::SkipMissed) => "skip_missed",
        _ => "run_latest_missed",
    }
}

pub fn catch_up_to_proto(text: &str) -> pb::CatchUpPolicy {
    match text {
        "skip_missed" => pb::CatchUpPolicy::SkipMissed,
        _ => pb::CatchUpPolicy::RunLatestMissed,
    }
}

/// Whether a subscription will fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Paused,
    Disabled,
    Inactive,
}

impl Status {
    pub fn to_proto(self) -> pb::SubscriptionStatus {
        match self {
            Self::Active => pb::SubscriptionStatus::Active,
            Self::Paused => pb::SubscriptionStatus::Paused,
            Self::Disabled => pb::SubscriptionStatus::Disabled,
            Self::Inactive => pb::SubscriptionStatus::Inactive,
        }
    }

    pub fn of_proto(number: i32, field: &str) -> Result<Self, Error> {
        match pb::SubscriptionStatus::try_from(number) {
            Ok(pb::SubscriptionStatus::Active) => Ok(Self::Active),
            Ok(pb::SubscriptionStatus::Paused) => Ok(Self::Paused),
            Ok(pb::SubscriptionStatus::Disabled) => Ok(Self::Disabled),
            Ok(pb::SubscriptionStatus::Inactive) => Ok(Self::Inactive),
            _ => Err(Error::invalid(
                field,
                "must be ACTIVE, PAUSED, DISABLED or INACTIVE",
            )),
        }
    }
}

/// The user's switch and agentshare's verdict, from which status follows.
#[derive(Clone, Copy, Debug)]
pub struct Switches {
    pub enabled: bool,
    pub inactive: bool,
    pub paused_until: Option<i64>,
}

impl Switches {
    /// An automation that no longer exists cannot fire, whatever the
    /// user's switch; a pause only matters while the switch is on.
    pub fn status(&self, now: i64) -> Status {
        if self.inactive {
            Status::Inactive
        } else if !self.enabled {
            Status::Disabled
        } else if self.paused_until.is_some_and(|until| until > now) {
            Status::Paused
        } else {
            Status::Active
        }
    }

    /// The next fire, the pause included: a fire exactly at the end of the
    /// pause happens, since the pause ends at that instant.
    pub fn next_run(&self, schedule: &Schedule, now: i64) -> Option<Fire> {
        match self.status(now) {
            Status::Active => schedule.next_after(now),
            Status::Paused => schedule.next_after(self.paused_until.unwrap_or(now).max(now) - 1),
            Status::Disabled | Status::Inactive => None,
        }
    }
}

/// The longest pause.
pub const MAX_PAUSE_MICROS: i64 = 366 * 86_400 * 1_000_000;

/// The end of a pause: in the future and within 366 days.
pub fn pause_end(paused_until: Option<&prost_types::Timestamp>, now: i64) -> Result<i64, Error> {
    let field = "paused_until";
    let until = paused_until
        .ok_or_else(|| Error::invalid(field, "required: when the automation resumes, in UTC"))?;
    let until = until
        .seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(until.nanos / 1_000)))
        .ok_or_else(|| Error::invalid(field, "out of range"))?;
    if until <= now {
        return Err(Error::invalid(field, "must be in the future"));
    }
    if until - now > MAX_PAUSE_MICROS {
        return Err(Error::invalid(
            field,
            "must be at most 366 days ahead; disable the automation to stop it for longer",
        ));
    }
    Ok(until)
}

/// What an inbox item reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxKind {
    RunSucceeded,
    RunFailed,
    SubscriptionStopped,
    VersionDeprecated,
    VersionRetired,
}

impl InboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunSucceeded => "run_succeeded",
            Self::RunFailed => "run_failed",
            Self::SubscriptionStopped => "subscription_stopped",
            Self::VersionDeprecated => "version_deprecated",
            Self::VersionRetired => "version_retired",
        }
    }

    pub fn to_proto(text: &str) -> pb::InboxItemKind {
        match text {
            "run_succeeded" => pb::InboxItemKind::RunSucceeded,
            "run_failed" => pb::InboxItemKind::RunFailed,
            "subscription_stopped" => pb::InboxItemKind::SubscriptionStopped,
            "version_deprecated" => pb::InboxItemKind::VersionDeprecated,
            "version_retired" => pb::InboxItemKind::VersionRetired,
            _ => pb::InboxItemKind::Unspecified,
        }
    }
}

/// One notification, to be put on each of a user's channels.
#[derive(Clone, Debug)]
pub struct Notice {
    pub org_id: String,
    pub user_id: String,
    pub kind: InboxKind,
    pub title: String,
    pub body: String,
    pub agent_id: String,
    pub automation_key: String,
    pub run_id: String,
    pub session_id: String,
    pub channels: Vec<Channel>,
    /// Where EMAIL goes; empty when the user has none.
    pub email: String,
}

/// The notice that agentshare stopped one of a user's automations.
pub fn stopped_notice(
    subscription: &crate::subscriptions::storage::SubscriptionRow,
    why: &str,
    what_to_do: &str,
) -> Notice {
    Notice {
        org_id: subscription.org_id.clone(),
        user_id: subscription.user_id.clone(),
        kind: InboxKind::SubscriptionStopped,
        title: format!("{} stopped", subscription.automation_name),
        body: format!(
            "Your automation \"{}\" of {} no longer runs: {why}. {what_to_do}",
            subscription.automation_name, subscription.agent_name
        ),
        agent_id: subscription.agent_id.clone(),
        automation_key: subscription.automation_key.clone(),
        run_id: String::new(),
        session_id: String::new(),
        channels: subscription.channels.clone(),
        email: subscription.email.clone(),
    }
}

/// The longest output summary a run keeps and notifies.
pub const MAX_SUMMARY_CHARS: usize = 500;

/// `text` cut to at most `max` characters, on a character boundary.
pub fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

/// How one run ended, as the user is told.
pub enum RunEnding<'a> {
    Succeeded { summary: &'a str },
    Failed { code: &'a str, message: &'a str },
}

/// The notice that one of a user's automation runs finished.
pub fn run_notice(
    subscription: &crate::subscriptions::storage::SubscriptionRow,
    run_id: &str,
    session_id: &str,
    ending: &RunEnding<'_>,
) -> Notice {
    let name = &subscription.automation_name;
    let (kind, title, body) = match ending {
        RunEnding::Succeeded { summary } => (
            InboxKind::RunSucceeded,
            format!("{name} ran"),
            truncated(summary, MAX_SUMMARY_CHARS),
        ),
        RunEnding::Failed { code, message } => (
            InboxKind::RunFailed,
            format!("{name} failed"),
            format!(
                "Your automation \"{name}\" of {} failed ({code}): {message}. It runs again at its next scheduled time.",
                subscription.agent_name
            ),
        ),
    };
    Notice {
        org_id: subscription.org_id.clone(),
        user_id: subscription.user_id.clone(),
        kind,
        title,
        body,
        agent_id: subscription.agent_id.clone(),
        automation_key: subscription.automation_key.clone(),
        run_id: run_id.to_string(),
        session_id: session_id.to_string(),
        channels: subscription.channels.clone(),
        email: subscription.email.clone(),
    }
}

/// The words shown for a subscription whose agent was unshared.
pub const AGENT_UNSHARED_MESSAGE: &str = "agent unshared";

/// The words shown for a subscription whose user can no longer run the
/// agent.
pub const ACCESS_LOST_MESSAGE: &str = "agent no longer shared with you";

/// An automation key from a request.
pub fn automation_key(value: &str) -> Result<String, Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid("automation_key", "required"));
    }
    if value.len() > 200 {
        return Err(Error::invalid(
            "automation_key",
            "must be at most 200 bytes",
        ));
    }
    Ok(value.to_string())
}

/// The most a workspace cap may be.
pub const MAX_CAP: i32 = 1_000_000;

/// The words of a reached cap: the cap, and who may raise it.
pub fn cap_reached_message(cap: i64) -> String {
    format!(
        "workspace cap of {cap} active automations reached; ask a workspace owner or admin (or an org owner or admin) to raise it, or disable another automation first"
    )
}

/// A cap a request sets: 0 to [`MAX_CAP`], or none to remove it.
pub fn cap_of(max_active: Option<i32>) -> Result<Option<i64>, Error> {
    match max_active {
        Some(max) if !(0..=MAX_CAP).contains(&max) => Err(Error::invalid(
            "max_active_automations",
            format!("must be 0 to {MAX_CAP}; leave it unset to remove the cap"),
        )),
        max => Ok(max.map(i64::from)),
    }
}

/// Who reads a workspace's cap (its members, and the org's owners and
/// admins) and who sets it (its owners and admins, and the org's): the
/// caller's role in the workspace, `None` when they cannot see it, and in
/// the org. NOT_FOUND for a workspace they may not read.
pub fn cap_access(
    workspace_id: &str,
    role: Option<WorkspaceRole>,
    org_role: Option<OrgRole>,
    manage: bool,
) -> Result<(), Error> {
    let role = role.ok_or_else(|| Error::not_found(format!("workspace {workspace_id}")))?;
    let org_admin = org_role.is_some_and(OrgRole::manages_org);
    let workspace_admin = matches!(role, WorkspaceRole::Owner | WorkspaceRole::Admin);
    let member = role != WorkspaceRole::Unspecified;
    if !(member || org_admin) {
        return Err(Error::not_found(format!("workspace {workspace_id}")));
    }
    if manage && !(workspace_admin || org_admin) {
        return Err(Error::PermissionDenied(
            "only a workspace owner or admin, or an org owner or admin, may set the automation cap"
                .into(),
        ));
    }
    Ok(())
}

/// What an update of a subscription's settings changes: the paths of its
/// mask, each `enabled` or `channels`.
pub fn settings_change(
    paths: &[String],
    settings: &pb::SubscriptionSettings,
) -> Result<(Option<bool>, Option<Vec<Channel>>), Error> {
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "name the settings to change: enabled, channels or both",
        ));
    }
    let (mut enabled, mut channels) = (None, None);
    for path in paths {
        match path.as_str() {
            "enabled" => enabled = Some(settings.enabled),
            "channels" => {
                channels = Some(requested_channels(&settings.channels, "settings.channels")?);
            }
            _ => {
                return Err(Error::invalid(
                    "update_mask",
                    "names an unknown path; use enabled or channels",
                ));
            }
        }
    }
    Ok((enabled, channels))
}

/// The inbox items a MarkInboxRead names: up to 500 ids, or `all`, never
/// both.
pub fn items_to_mark(item_ids: &[String], all: bool) -> Result<Vec<String>, Error> {
    if item_ids.is_empty() != all {
        return Err(Error::invalid(
            "item_ids",
            "name the items to mark read, or set all, but not both",
        ));
    }
    if item_ids.len() > 500 {
        return Err(Error::invalid("item_ids", "at most 500 ids per call"));
    }
    item_ids
        .iter()
        .enumerate()
        .map(|(i, id)| ids::parse(&format!("item_ids[{i}]"), id))
        .collect()
}

/// Enabling past a workspace's cap: RESOURCE_EXHAUSTED with a
/// `QuotaFailure` naming the workspace.
pub fn cap_reached(workspace_id: &str, cap: i64) -> Error {
    let message = cap_reached_message(cap);
    Error::quota(
        message.clone(),
        format!("workspace/{workspace_id}"),
        message,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::schedule::Kind;

    #[test]
    fn channels_are_known_and_named_once() {
        let web = pb::NotificationChannel::Web as i32;
        let email = pb::NotificationChannel::Email as i32;
        assert_eq!(
            requested_channels(&[web, email], "channels").expect("ok"),
            [Channel::Web, Channel::Email]
        );
        assert!(requested_channels(&[web, web], "channels").is_err());
        assert!(requested_channels(&[0], "channels").is_err());
        assert!(requested_channels(&[9], "channels").is_err());
        assert_eq!(default_channels(&[]), [Channel::Web]);
        assert_eq!(
            default_channels(&[email, email, 3]),
            [Channel::Email, Channel::Push]
        );
        assert_eq!(
            Channel::parse_list(&Channel::list_text(&[Channel::Push, Channel::Web])),
            [Channel::Push, Channel::Web]
        );
        assert!(Channel::parse_list("").is_empty());
    }

    #[test]
    fn status_follows_the_switch_the_pause_and_the_automation() {
        let schedule = Schedule::parse(Kind::Hourly, "0 * * * *", "UTC").expect("schedule");
        let hour = 3_600_000_000;
        let now = 10 * hour + 5;
        let on = Switches {
            enabled: true,
            inactive: false,
            paused_until: None,
        };
        assert_eq!(on.status(now), Status::Active);
        assert_eq!(
            on.next_run(&schedule, now).map(|f| f.at_micros),
            Some(11 * hour)
        );
        let paused = Switches {
            paused_until: Some(13 * hour),
            ..on
        };
        assert_eq!(paused.status(now), Status::Paused);
        assert_eq!(
            paused.next_run(&schedule, now).map(|f| f.at_micros),
            Some(13 * hour),
            "a fire exactly at the end of the pause happens"
        );
        assert_eq!(
            paused.status(13 * hour),
            Status::Active,
            "resumes by itself"
        );
        let off = Switches {
            enabled: false,
            ..paused
        };
        assert_eq!(off.status(now), Status::Disabled);
        assert!(off.next_run(&schedule, now).is_none());
        let gone = Switches {
            inactive: true,
            ..on
        };
        assert_eq!(gone.status(now), Status::Inactive);
    }

    #[test]
    fn members_read_a_cap_and_admins_of_the_workspace_or_org_set_it() {
        let member = Some(WorkspaceRole::Member);
        let admin = Some(WorkspaceRole::Admin);
        assert!(cap_access("w", member, Some(OrgRole::Member), false).is_ok());
        assert!(matches!(
            cap_access("w", member, Some(OrgRole::Member), true),
            Err(Error::PermissionDenied(_))
        ));
        assert!(cap_access("w", admin, Some(OrgRole::Member), true).is_ok());
        let unseen = Some(WorkspaceRole::Unspecified);
        assert!(cap_access("w", unseen, Some(OrgRole::Admin), true).is_ok());
        assert!(matches!(
            cap_access("w", unseen, Some(OrgRole::Member), false),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            cap_access("w", None, Some(OrgRole::Owner), false),
            Err(Error::NotFound(_))
        ));
        assert!(cap_of(Some(-1)).is_err());
        assert_eq!(cap_of(None).expect("no cap"), None);
    }

    #[test]
    fn marking_read_names_items_or_all_but_not_both() {
        assert!(items_to_mark(&[], false).is_err());
        assert!(items_to_mark(&["x".into()], true).is_err());
        assert_eq!(items_to_mark(&[], true).expect("all"), Vec::<String>::new());
        assert!(items_to_mark(&vec![String::new(); 501], false).is_err());
    }

    #[test]
    fn a_pause_ends_in_the_future_within_366_days() {
        let now = 1_000_000_000_000;
        let at = |micros: i64| prost_types::Timestamp {
            seconds: micros / 1_000_000,
            nanos: 0,
        };
        assert!(pause_end(None, now).is_err());
        assert!(pause_end(Some(&at(now)), now).is_err());
        assert!(pause_end(Some(&at(now + MAX_PAUSE_MICROS + 1_000_000)), now).is_err());
        assert_eq!(
            pause_end(Some(&at(now + 86_400_000_000)), now).expect("ok"),
            now + 86_400_000_000
        );
    }
}
