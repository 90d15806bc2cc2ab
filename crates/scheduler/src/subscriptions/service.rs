//! Each user's automations: what they may subscribe to, their settings, and
//! keeping their subscriptions in step with the version they run. It joins
//! what registry and sharing answer for the caller with the scheduler's own
//! rows; the rules themselves live in `rules`.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;

use crate::peers::{AgentView, Peers, Subscriber};
use crate::schedule::Schedule;
use crate::subscriptions::rules::{self, Channel, Status};
use crate::subscriptions::storage::{
    Definition, NewSubscription, Refused, SettingsChange, Storage, SubscriptionRow,
};

#[derive(Clone)]
pub struct Subscriptions {
    pub storage: Storage,
    pub peers: Peers,
}

/// The signed-in user of a request, in its org and active workspace.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub user_id: String,
    pub org_id: String,
}

impl<'a> Caller<'a> {
    /// Automations belong to signed-in users; a share token never reaches
    /// them (the gateway refuses it, and so do we).
    pub fn of(principal: &'a Principal) -> Result<Self, Error> {
        if principal.grant.is_some() {
            return Err(Error::PermissionDenied(
                "a share token may only invoke its agent; automations need your own sign-in".into(),
            ));
        }
        Ok(Self {
            user_id: principal.require_user()?.to_string(),
            org_id: principal.require_org()?.to_string(),
            principal,
        })
    }

    fn workspace(&self) -> Result<String, Error> {
        self.principal
            .workspace_id
            .clone()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                Error::FailedPrecondition(
                    "you have no active workspace: switch to a workspace to subscribe in".into(),
                )
            })
    }
}

/// An automation a request names for its caller: automation `key` of agent
/// `agent_id`, and the caller's subscription to it.
pub struct Named<'a> {
    pub caller: Caller<'a>,
    pub agent_id: String,
    pub key: String,
}

impl Named<'_> {
    /// The caller has no subscription to this automation, or can no longer
    /// see the agent.
    fn missing(&self) -> Error {
        Error::not_found(format!(
            "your subscription to automation {} of agent {}",
            self.key, self.agent_id
        ))
    }
}

/// One automation as the caller sees it.
pub struct Listed {
    pub automation: registry::Automation,
    pub schedule: Schedule,
    pub subscription: Option<SubscriptionRow>,
}

/// The definition a subscription copies from the version the user runs.
pub fn definition(
    view: &AgentView,
    automation: &registry::Automation,
) -> Result<Definition, Error> {
    let schedule = Schedule::of_automation(automation).map_err(|e| {
        Error::internal(format!(
            "agent {} version {}: {e}",
            view.agent_id, view.version
        ))
    })?;
    Ok(Definition {
        agent_name: view.name.clone(),
        agent_version: view.version,
        latest_version: view.latest_version,
        automation_name: display_name(automation),
        schedule,
        task: automation.task.clone(),
        catch_up_policy: rules::catch_up_text(automation.catch_up_policy).into(),
    })
}

pub fn display_name(automation: &registry::Automation) -> String {
    if automation.display_name.trim().is_empty() {
        automation.key.clone()
    } else {
        automation.display_name.clone()
    }
}

/// What blocks a setup, in the form every service answers it.
fn setup_required(gaps: &[sharing::SetupGap]) -> Error {
    use agentshare_kit::error::{SetupGap, SetupGapKind};
    let gaps: Vec<SetupGap> = gaps
        .iter()
        .map(|g| SetupGap {
            integration_key: g.integration_key.clone(),
            provider: g.provider.clone(),
            kind: match sharing::SetupGapReason::try_from(g.reason) {
                Ok(sharing::SetupGapReason::ConnectionExpired) => SetupGapKind::Expired,
                Ok(sharing::SetupGapReason::ConnectionFailed) => SetupGapKind::Failed,
                Ok(sharing::SetupGapReason::BuilderConnectionUnavailable) => {
                    SetupGapKind::BuilderUnavailable
                }
                _ => SetupGapKind::NotBound,
            },
        })
        .collect();
    Error::setup_required(&gaps)
}

impl Subscriptions {
    /// The agent as the caller runs it, with the caller's subscriptions to
    /// it brought up to that version.
    async fn view(
        &self,
        caller: &Caller<'_>,
        agent_id: &str,
    ) -> Result<(AgentView, Vec<SubscriptionRow>), Error> {
        let view = self.peers.agent_view(caller.principal, agent_id).await?;
        self.storage
            .agent_deployed(agent_id, &caller.org_id, view.latest_version)
            .await?;
        let mut rows = Vec::new();
        for row in self
            .storage
            .subscriptions_to(agent_id, &caller.user_id)
            .await?
        {
            if row.checked_version >= view.latest_version && row.agent_version == view.version {
                rows.push(row);
                continue;
            }
            let found = view
                .automations
                .iter()
                .find(|a| a.key == row.automation_key);
            let definition = found.map(|a| definition(&view, a)).transpose()?;
            let row = self
                .storage
                .reconcile(
                    &row.id,
                    view.latest_version,
                    view.version,
                    definition.as_ref(),
                )
                .await?;
            rows.extend(row);
        }
        Ok((view, rows))
    }

    /// The caller's subscriptions to agents deployed again since they were
    /// last compared, brought up to the version the caller runs. An agent
    /// the caller can no longer see keeps its rows as last known; stopping
    /// those on lost access follows sharing's events.
    async fn catch_up(&self, caller: &Caller<'_>, only: Option<&str>) -> Result<(), Error> {
        for agent_id in self
            .storage
            .stale_agents_of(&caller.org_id, &caller.user_id)
            .await?
        {
            if only.is_some_and(|only| only != agent_id) {
                continue;
            }
            match self.view(caller, &agent_id).await {
                Ok(_) | Err(Error::NotFound(_) | Error::FailedPrecondition(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The automations of the version the caller runs, with their
    /// subscriptions, and why enabling would fail now, if it would.
    pub async fn list(
        &self,
        caller: &Caller<'_>,
        agent_id: &str,
    ) -> Result<(AgentView, Vec<Listed>, Option<String>), Error> {
        let (view, rows) = self.view(caller, agent_id).await?;
        let cannot_enable = self.cannot_enable(caller, agent_id).await?;
        let listed = view
            .automations
            .iter()
            .map(|automation| {
                Ok(Listed {
                    schedule: definition(&view, automation)?.schedule,
                    subscription: rows
                        .iter()
                        .find(|r| r.automation_key == automation.key)
                        .cloned(),
                    automation: automation.clone(),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok((view, listed, cannot_enable))
    }

    /// The automation `key` of the version the caller runs.
    pub async fn automation(
        &self,
        named: &Named<'_>,
    ) -> Result<(AgentView, registry::Automation), Error> {
        let Named {
            caller,
            agent_id,
            key,
        } = named;
        let view = self.peers.agent_view(caller.principal, agent_id).await?;
        let automation = view
            .automations
            .iter()
            .find(|a| a.key == *key)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("automation {key} of agent {agent_id}")))?;
        Ok((view, automation))
    }

    /// Why the caller could not enable an automation of the agent now, in
    /// words that say what to do; `None` when they could.
    async fn cannot_enable(
        &self,
        caller: &Caller<'_>,
        agent_id: &str,
    ) -> Result<Option<String>, Error> {
        if let Subscriber::Denied(why) = self.peers.subscriber(caller.principal, agent_id).await? {
            return Ok(Some(why));
        }
        let gaps = self.peers.setup_gaps(caller.principal, agent_id).await?;
        if !gaps.is_empty() {
            return Ok(Some(setup_required(&gaps).to_string()));
        }
        let Ok(workspace) = caller.workspace() else {
            return Ok(Some(
                "you have no active workspace: switch to a workspace first".into(),
            ));
        };
        let (cap, active) = self.storage.cap(&workspace).await?;
        Ok(cap
            .max_active
            .filter(|max| active >= *max)
            .map(rules::cap_reached_message))
    }

    /// Refuses a caller who may not subscribe, and, when enabling, one
    /// whose setup is not READY. The cap is counted when the row is written.
    async fn require_subscriber(
        &self,
        caller: &Caller<'_>,
        agent_id: &str,
        enabling: bool,
    ) -> Result<(), Error> {
        if let Subscriber::Denied(why) = self.peers.subscriber(caller.principal, agent_id).await? {
            return Err(Error::PermissionDenied(why));
        }
        if enabling {
            let gaps = self.peers.setup_gaps(caller.principal, agent_id).await?;
            if !gaps.is_empty() {
                return Err(setup_required(&gaps));
            }
        }
        Ok(())
    }

    /// The address for EMAIL, asked only when EMAIL is chosen.
    async fn email_for(&self, caller: &Caller<'_>, channels: &[Channel]) -> Result<String, Error> {
        if !channels.contains(&Channel::Email) {
            return Ok(String::new());
        }
        let email = self.peers.email(caller.principal).await?;
        if email.is_empty() {
            return Err(Error::invalid(
                "channels",
                "your account has no email address, so EMAIL cannot reach you; choose WEB or PUSH",
            ));
        }
        Ok(email)
    }

    pub async fn subscribe(
        &self,
        named: &Named<'_>,
        enabled: bool,
        channels: Option<Vec<Channel>>,
    ) -> Result<SubscriptionRow, Error> {
        let Named {
            caller,
            agent_id,
            key,
        } = named;
        let (view, automation) = self.automation(named).await?;
        self.storage
            .agent_deployed(agent_id, &caller.org_id, view.latest_version)
            .await?;
        self.require_subscriber(caller, agent_id, enabled).await?;
        let workspace_id = caller.workspace()?;
        let channels =
            channels.unwrap_or_else(|| rules::default_channels(&automation.suggested_channels));
        let email = self.email_for(caller, &channels).await?;
        let definition = definition(&view, &automation)?;
        let created = self
            .storage
            .create_subscription(NewSubscription {
                org_id: &caller.org_id,
                agent_id,
                automation_key: key,
                user_id: &caller.user_id,
                workspace_id: &workspace_id,
                enabled,
                channels: &channels,
                email: &email,
                definition: &definition,
            })
            .await?;
        match created {
            Ok(row) => Ok(row),
            Err(Refused::CapReached(cap)) => Err(rules::cap_reached(&workspace_id, cap)),
            Err(Refused::Exists | Refused::Missing) => Err(Error::AlreadyExists(format!(
                "you already subscribe to automation {key} of agent {agent_id}; change it with UpdateSubscription"
            ))),
        }
    }

    /// The caller's subscription, brought up to the version they run;
    /// NOT_FOUND when they have none or can no longer see the agent.
    async fn own(&self, named: &Named<'_>) -> Result<SubscriptionRow, Error> {
        let (_, rows) = self.view(&named.caller, &named.agent_id).await?;
        rows.into_iter()
            .find(|r| r.automation_key == named.key)
            .ok_or_else(|| named.missing())
    }

    pub async fn update(
        &self,
        named: &Named<'_>,
        enabled: Option<bool>,
        channels: Option<Vec<Channel>>,
    ) -> Result<SubscriptionRow, Error> {
        let Named {
            caller, agent_id, ..
        } = named;
        let row = self.own(named).await?;
        let enabling = enabled == Some(true) && !row.enabled;
        if enabled == Some(true) && row.inactive {
            return Err(Error::FailedPrecondition(format!(
                "this automation cannot run: {}",
                row.status_message
            )));
        }
        if enabling {
            self.require_subscriber(caller, agent_id, true).await?;
        }
        let email = match &channels {
            Some(channels) if channels.contains(&Channel::Email) => {
                Some(self.email_for(caller, channels).await?)
            }
            _ => None,
        };
        let changed = self
            .storage
            .change_settings(
                &row.id,
                SettingsChange {
                    enabled,
                    channels: channels.as_deref(),
                    email: email.as_deref(),
                },
            )
            .await?;
        match changed {
            Ok(row) => Ok(row),
            Err(Refused::CapReached(cap)) => Err(rules::cap_reached(&row.workspace_id, cap)),
            Err(Refused::Missing | Refused::Exists) => Err(named.missing()),
        }
    }

    pub async fn pause(&self, named: &Named<'_>, until: i64) -> Result<SubscriptionRow, Error> {
        let row = self.own(named).await?;
        if row.inactive {
            return Err(Error::FailedPrecondition(format!(
                "this automation cannot run: {}",
                row.status_message
            )));
        }
        if !row.enabled {
            return Err(Error::FailedPrecondition(
                "the automation is disabled: enable the automation first".into(),
            ));
        }
        self.storage
            .set_pause(&row.id, Some(until))
            .await?
            .ok_or_else(|| named.missing())
    }

    pub async fn resume(&self, named: &Named<'_>) -> Result<SubscriptionRow, Error> {
        let row = self.own(named).await?;
        let now = self.storage.clock.now_micros();
        if row.switches().status(now) != Status::Paused {
            return Ok(row);
        }
        self.storage
            .set_pause(&row.id, None)
            .await?
            .ok_or_else(|| named.missing())
    }

    /// Deletes the caller's subscription. It needs no look at the agent, so
    /// rows of unshared or deleted agents can always be removed.
    pub async fn unsubscribe(&self, named: &Named<'_>) -> Result<String, Error> {
        let Named {
            caller,
            agent_id,
            key,
        } = named;
        let row = self
            .storage
            .subscription(agent_id, key, &caller.user_id)
            .await?
            .filter(|r| r.org_id == caller.org_id)
            .ok_or_else(|| named.missing())?;
        if !self.storage.delete_subscription(&row.id).await? {
            return Err(named.missing());
        }
        Ok(row.id)
    }

    pub async fn mine(
        &self,
        caller: &Caller<'_>,
        agent_id: Option<&str>,
        statuses: &[Status],
        page: &agentshare_kit::page::Page,
    ) -> Result<(Vec<SubscriptionRow>, String), Error> {
        self.catch_up(caller, agent_id).await?;
        let rows = self
            .storage
            .subscriptions_of(&caller.org_id, &caller.user_id, agent_id, statuses, page)
            .await?;
        Ok(page.split(rows, |r| r.id.clone()))
    }
}
