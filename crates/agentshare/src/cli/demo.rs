//! `agentshare demo`: the README's story of a shared agent in about a
//! minute, against a running `agentshare serve`. Each step says what it
//! does, calls the public API as the people in the story, and checks that
//! the answer is what the README promises; the first step that is not stops
//! the demo with exit 1.
//!
//! Every run makes its own org and users (names with a fresh suffix), so it
//! can run any number of times against the same server and leaves the
//! other orgs alone. It mints its users' dev tokens from the embedded
//! default's data dir, as `--as` does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentshare_kit::config::ConfigArgs;
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use tonic::Code;

use super::client::{Api, Resolved, Target, mint};
use super::failure::{Failure, Outcome};
use super::output::Output;
use super::progress::Spinner;

/// `agentshare demo`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to wait for the automation's run to reach the inbox; it
    /// fires at the next minute boundary.
    #[arg(long, default_value_t = 90, value_name = "SECS")]
    pub inbox_timeout_secs: u64,
}

/// The people of the story and what they made.
struct Story {
    out: Output,
    resolved: Resolved,
    /// Ada builds the agent.
    ada: Api,
    /// Ben, her teammate, runs it with his own CRM.
    ben: Api,
    ben_email: String,
    /// This run's suffix, in the org's name.
    suffix: String,
    agent_id: String,
    search_id: String,
}

pub async fn run(args: Args, target: &Target, out: Output) -> Outcome {
    let resolved = target.resolve()?;
    let suffix = suffix();
    let person = |name: &str| -> Outcome<(Api, String)> {
        let user = format!("{name}-{suffix}");
        let email = format!("{user}@example.com");
        let token = mint(&ConfigArgs::default(), &user, Some(&email), true, 3600).map_err(|e| {
            Failure::local(format!(
                "{e}\nthe demo runs against the embedded default (`agentshare serve`): start it \
                 first, from this directory or with AGENTSHARE_DATA_DIR pointing at its data dir"
            ))
        })?;
        let api = Resolved {
            token: Some(token),
            org: None,
            workspace: None,
            ..resolved.clone()
        }
        .api()?;
        Ok((api, email))
    };
    let (ada, _) = person("ada")?;
    let (ben, ben_email) = person("ben")?;
    let mut story = Story {
        out,
        resolved,
        ada,
        ben,
        ben_email,
        suffix: suffix.clone(),
        agent_id: String::new(),
        search_id: String::new(),
    };
    story.line(&format!(
        "agentshare demo against {} (org \"Demo {suffix}\", users ada-{suffix} and ben-{suffix})",
        story.resolved.endpoint
    ))?;
    story.builder_shares().await?;
    story.teammate_sets_up_and_runs().await?;
    story.builder_deploys_v2().await?;
    let (grant_id, token) = story.widget_visitors().await?;
    story.owner_revokes(&grant_id, &token).await?;
    story.workspace_store().await?;
    story
        .automation(Duration::from_secs(args.inbox_timeout_secs))
        .await?;
    story.unshare().await?;
    story.line("\nThe story held: every step behaved as the README says.")
}

/// A short suffix that makes this run's names its own.
fn suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos ^ (u128::from(std::process::id()) << 64)) % 0x100_0000;
    format!("{mixed:06x}")
}

/// Fails the demo unless `held`: `expected` says what the README promises.
fn expect(held: bool, expected: &str, seen: impl std::fmt::Display) -> Outcome {
    if held {
        Ok(())
    } else {
        Err(Failure::local(format!(
            "the demo stopped: expected {expected}, but {seen}"
        )))
    }
}

/// The code of a call the story says must fail (with `code`, when given),
/// or the demo stops saying what `expected` and what happened instead.
fn refused<T>(
    answer: Result<T, tonic::Status>,
    code: Option<Code>,
    expected: &str,
) -> Outcome<&'static str> {
    match answer {
        Err(status) if code.is_none_or(|code| status.code() == code) => {
            Ok(agentshare_kit::error::code_name(status.code()))
        }
        Err(status) => expect(
            false,
            expected,
            format!(
                "it answered {}",
                agentshare_kit::error::code_name(status.code())
            ),
        )
        .map(|()| ""),
        Ok(_) => expect(false, expected, "it succeeded").map(|()| ""),
    }
}

/// Drafts `draft` as `api`'s user and deploys it: the agent's id and the
/// version made.
async fn draft_and_deploy(
    api: &Api,
    draft: registry::AgentDraft,
) -> Result<(String, i64), tonic::Status> {
    let agent = api
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(draft),
            ..Default::default()
        })
        .await?
        .into_inner()
        .agent
        .unwrap_or_default();
    let deployed = api
        .registry()
        .deploy_agent(registry::DeployAgentRequest {
            agent_id: agent.id.clone(),
            expected_draft_revision: agent.draft_revision,
            notes: String::new(),
        })
        .await?
        .into_inner();
    Ok((
        agent.id,
        deployed.version.map(|v| v.number).unwrap_or_default(),
    ))
}

/// An item's value in an agent's store, as `api`'s user reads it.
async fn read_item(api: &Api, agent_id: &str, key: &str) -> Result<String, tonic::Status> {
    let read = api
        .store()
        .workspace_read(store::WorkspaceReadRequest {
            agent_id: agent_id.into(),
            key: key.into(),
        })
        .await?
        .into_inner();
    Ok(read.item.map(|i| i.value).unwrap_or_default())
}

/// Fails the demo with what a call answered.
fn step_failed(what: &str) -> impl FnOnce(tonic::Status) -> Failure + '_ {
    move |status| {
        Failure::local(format!(
            "the demo stopped: {what} failed: {}: {}",
            agentshare_kit::error::code_name(status.code()),
            status.message()
        ))
    }
}

/// Connects `provider` with an API key as `api`'s user; the connection's id.
async fn connect(
    api: &Api,
    provider: &str,
    key: &str,
    label: &str,
) -> Result<String, tonic::Status> {
    let created = api
        .connections()
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: provider.into(),
            api_key: key.into(),
            label: label.into(),
            expire_time: None,
        })
        .await?
        .into_inner();
    Ok(created.connection.map(|c| c.id).unwrap_or_default())
}

/// Connects a CRM of `api`'s user and binds the agent's `crm` to it.
async fn connect_and_bind(
    api: &Api,
    agent_id: &str,
    key: &str,
    label: &str,
) -> Result<(), tonic::Status> {
    let crm = connect(api, "crm", key, label).await?;
    api.connections()
        .bind_integration(sharing::BindIntegrationRequest {
            agent_id: agent_id.into(),
            integration_key: "crm".into(),
            connection_id: crm,
        })
        .await?;
    Ok(())
}

fn invoke(agent_id: &str, input: &str) -> gateway::InvokeRequest {
    gateway::InvokeRequest {
        agent_id: agent_id.into(),
        input: input.into(),
        ..Default::default()
    }
}

impl Story {
    fn line(&self, text: &str) -> Outcome {
        self.out.line(text)
    }

    fn step(&self, number: u32, title: &str) -> Outcome {
        self.line(&format!("\n{number}. {title}"))
    }

    fn done(&self, text: &str) -> Outcome {
        self.line(&format!("   ✓ {text}"))
    }

    async fn builder_shares(&mut self) -> Outcome {
        self.step(
            1,
            "Ada drafts, deploys and shares a research agent: the team's search key, each user's own CRM",
        )?;
        self.ben
            .tenancy()
            .get_me(sharing::GetMeRequest {})
            .await
            .map_err(step_failed("Ben signing in"))?;
        let org = self
            .ada
            .tenancy()
            .create_org(sharing::CreateOrgRequest {
                name: format!("Demo {}", self.suffix),
            })
            .await
            .map_err(step_failed("creating the org"))?
            .into_inner();
        let org_id = org.org.map(|o| o.id).unwrap_or_default();
        self.ada
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(sharing::add_org_member_request::User::Email(
                    self.ben_email.clone(),
                )),
                role: sharing::OrgRole::Member as i32,
            })
            .await
            .map_err(step_failed("adding Ben to the org"))?;
        self.done(&format!("org {org_id} created; Ben is a member"))?;

        self.search_id = connect(&self.ada, "search", "srch-demo-team-key", "Team search")
            .await
            .map_err(step_failed("connecting the team's search key"))?;
        self.done("Ada connected the team's search key (stored sealed, never shown again)")?;

        let (agent_id, version) =
            draft_and_deploy(&self.ada, self.design("Research accounts and brief me."))
                .await
                .map_err(step_failed("drafting and deploying the agent"))?;
        self.agent_id = agent_id;
        expect(
            version == 1,
            "the first deploy to be v1",
            format!("it is v{version}"),
        )?;
        self.done(&format!(
            "\"Research\" {} deployed as v1: web_search uses Ada's key for everyone, crm is each user's own",
            self.agent_id
        ))?;
        self.ada
            .sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: self.agent_id.clone(),
            })
            .await
            .map_err(step_failed("sharing the agent"))?;
        self.done("shared with the workspace")
    }

    /// The research agent's design; `instructions` change between versions.
    fn design(&self, instructions: &str) -> registry::AgentDraft {
        registry::AgentDraft {
            name: "Research".into(),
            description: "Researches accounts with the team's search and your CRM.".into(),
            instructions: instructions.into(),
            tools: vec![
                registry::Tool {
                    integration_key: "web_search".into(),
                    provider: "search".into(),
                    scope: registry::IntegrationScope::Shared as i32,
                    connection_id: self.search_id.clone(),
                    display_name: "Web search".into(),
                },
                registry::Tool {
                    integration_key: "crm".into(),
                    provider: "crm".into(),
                    scope: registry::IntegrationScope::UserConfigured as i32,
                    connection_id: String::new(),
                    display_name: "CRM".into(),
                },
            ],
            automations: vec![registry::Automation {
                key: "account-brief".into(),
                display_name: "Account brief".into(),
                schedule: Some(registry::Schedule {
                    kind: Some(registry::schedule::Kind::Cron(registry::CronSchedule {
                        expression: "* * * * *".into(),
                    })),
                }),
                time_zone: "UTC".into(),
                task: "Brief me on my accounts.".into(),
                suggested_channels: vec![registry::NotificationChannel::Web as i32],
                catch_up_policy: registry::CatchUpPolicy::SkipMissed as i32,
            }],
            ..Default::default()
        }
    }

    async fn setup_status(&self) -> Outcome<i32> {
        let mine = self
            .ben
            .access()
            .list_my_agents(sharing::ListMyAgentsRequest::default())
            .await
            .map_err(step_failed("listing Ben's agents"))?
            .into_inner();
        let found = mine.agents.iter().find(|a| a.agent_id == self.agent_id);
        expect(
            found.is_some(),
            "Ben to see the shared agent in his list",
            "it is not there",
        )?;
        Ok(found.map(|a| a.setup_status).unwrap_or_default())
    }

    async fn teammate_sets_up_and_runs(&mut self) -> Outcome {
        self.step(
            2,
            "Ben sees it needs setup, connects his own CRM, and runs it",
        )?;
        let status = self.setup_status().await?;
        expect(
            status == sharing::SetupStatus::SetupRequired as i32,
            "an orange dot (setup required) before Ben connects his CRM",
            format!("the status is {status}"),
        )?;
        self.done("Ben's list shows Research with an orange dot: setup required (crm)")?;
        connect_and_bind(&self.ben, &self.agent_id, "ben-crm-key", "Ben's CRM")
            .await
            .map_err(step_failed("connecting and binding Ben's CRM"))?;
        let status = self.setup_status().await?;
        expect(
            status == sharing::SetupStatus::Ready as i32,
            "a green dot (ready) once the CRM is bound",
            format!("the status is {status}"),
        )?;
        self.done("Ben connected and bound his CRM: the dot is green (ready)")?;
        let answer = self.run_as_ben("Brief me on Initech").await?;
        self.check_connections(&answer)?;
        expect(
            answer.billed_to == gateway::BilledParty::Caller as i32,
            "Ben's run to be billed to Ben",
            format!("it was billed to {}", answer.billed_to),
        )?;
        self.done(&format!(
            "Ben ran v{}: web_search used Ada's key, crm used Ben's own connection, billed to Ben",
            answer.version_number
        ))
    }

    async fn run_as_ben(&self, input: &str) -> Outcome<gateway::InvokeResponse> {
        Ok(self
            .ben
            .invoke()
            .invoke(invoke(&self.agent_id, input))
            .await
            .map_err(step_failed("Ben's run"))?
            .into_inner())
    }

    /// The answer names whose connection each integration used.
    fn check_connections(&self, answer: &gateway::InvokeResponse) -> Outcome {
        let text = &answer.output_text;
        expect(
            text.contains("crm (crm) with your connection")
                && text.contains("web_search (search) with the agent owner's connection"),
            "the answer to say crm used Ben's connection and web_search Ada's",
            format!("it said {text:?}"),
        )
    }

    async fn builder_deploys_v2(&self) -> Outcome {
        self.step(
            3,
            "Ada deploys v2; Ben's next run uses it and keeps his CRM",
        )?;
        let current = self
            .ada
            .registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: self.agent_id.clone(),
            })
            .await
            .map_err(step_failed("reading the draft"))?
            .into_inner()
            .agent
            .unwrap_or_default();
        let updated = self
            .ada
            .registry()
            .update_draft(registry::UpdateDraftRequest {
                agent_id: self.agent_id.clone(),
                draft: Some(self.design("Research accounts; lead with open opportunities.")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["instructions".into()],
                }),
                expected_draft_revision: current.draft_revision,
            })
            .await
            .map_err(step_failed("editing the draft"))?
            .into_inner()
            .agent
            .unwrap_or_default();
        self.ada
            .registry()
            .deploy_agent(registry::DeployAgentRequest {
                agent_id: self.agent_id.clone(),
                expected_draft_revision: updated.draft_revision,
                notes: "lead with open opportunities".into(),
            })
            .await
            .map_err(step_failed("deploying v2"))?;
        self.done("Ada changed the instructions and deployed v2")?;
        let answer = self.run_as_ben("Brief me on Globex").await?;
        expect(
            answer.version_number == 2,
            "Ben's next run to use v2",
            format!("it used v{}", answer.version_number),
        )?;
        self.check_connections(&answer)?;
        self.done("Ben's next run used v2, still with his own CRM, without doing anything")
    }

    /// Returns the widget's grant and its token.
    async fn widget_visitors(&self) -> Outcome<(String, String)> {
        self.step(
            4,
            "A DELEGATE grant for a website widget: two anonymous visitors chat, each in private",
        )?;
        // A delegated run uses the owner's connections, so Ada binds her own
        // CRM first.
        connect_and_bind(&self.ada, &self.agent_id, "ada-crm-key", "Ada's CRM")
            .await
            .map_err(step_failed("connecting and binding Ada's CRM"))?;
        self.done("Ada bound her own CRM: a delegated run uses the owner's connections")?;
        let created = self
            .ada
            .sharing()
            .create_grant(sharing::CreateGrantRequest {
                agent_id: self.agent_id.clone(),
                kind: sharing::GrantKind::Delegate as i32,
                label: "website widget".into(),
                expire_time: None,
                pinned_version: None,
                limits: None,
            })
            .await
            .map_err(step_failed("creating the widget's grant"))?
            .into_inner();
        let grant_id = created.grant.map(|g| g.id).unwrap_or_default();
        self.done("Ada created a DELEGATE grant; its token is shown once, for the widget")?;
        let first = self.resolved.grant_api(&created.token)?;
        let second = self.resolved.grant_api(&created.token)?;
        let one = first
            .invoke()
            .invoke(invoke(&self.agent_id, "Where is my parcel?"))
            .await
            .map_err(step_failed("the first visitor's chat"))?
            .into_inner();
        let two = second
            .invoke()
            .invoke(invoke(&self.agent_id, "How do I return shoes?"))
            .await
            .map_err(step_failed("the second visitor's chat"))?
            .into_inner();
        expect(
            one.billed_to == gateway::BilledParty::AgentOwner as i32,
            "a delegated run to be billed to the agent's owner",
            format!("it was billed to {}", one.billed_to),
        )?;
        self.done("both visitors chatted; their runs use Ada's connections and bill Ada")?;
        let own = first
            .sessions()
            .get_session(store::GetSessionRequest {
                session_id: one.session_id.clone(),
                session_secret: one.session_secret.clone(),
                ..Default::default()
            })
            .await;
        expect(
            own.is_ok(),
            "the first visitor to read their own chat",
            "they could not",
        )?;
        let other = second
            .sessions()
            .get_session(store::GetSessionRequest {
                session_id: one.session_id.clone(),
                session_secret: two.session_secret.clone(),
                ..Default::default()
            })
            .await;
        refused(
            other,
            Some(Code::NotFound),
            "the second visitor to be told the first one's chat does not exist",
        )?;
        self.done("the second visitor cannot read the first one's chat (NOT_FOUND)")?;
        Ok((grant_id, created.token))
    }

    async fn owner_revokes(&self, grant_id: &str, token: &str) -> Outcome {
        self.step(
            5,
            "Ada revokes the widget's grant; the very next call fails",
        )?;
        // A second grant, which step 8 shows surviving the unshare.
        self.ada
            .sharing()
            .create_grant(sharing::CreateGrantRequest {
                agent_id: self.agent_id.clone(),
                kind: sharing::GrantKind::Delegate as i32,
                label: "support portal".into(),
                expire_time: None,
                pinned_version: None,
                limits: None,
            })
            .await
            .map_err(step_failed("creating a second grant"))?;
        self.ada
            .sharing()
            .revoke_grant(sharing::RevokeGrantRequest {
                grant_id: grant_id.into(),
            })
            .await
            .map_err(step_failed("revoking the grant"))?;
        self.done("Ada revoked the widget's grant (a second one, for a support portal, stays)")?;
        let after = self
            .resolved
            .grant_api(token)?
            .invoke()
            .invoke(invoke(&self.agent_id, "Are you still there?"))
            .await;
        let code = refused(after, None, "the widget's very next call to fail")?;
        self.done(&format!("the widget's very next call fails ({code})"))
    }

    async fn workspace_store(&self) -> Outcome {
        self.step(
            6,
            "The agent writes to its workspace store, and Ada publishes a private note into it",
        )?;
        let answer = self
            .run_as_ben(
                "Remember Initech's renewal\n/workspace_write {\"key\":\"accounts/initech\",\"value\":\"renewal in March\"}",
            )
            .await?;
        expect(
            answer
                .output_text
                .contains("workspace_write: wrote accounts/initech"),
            "the run to write accounts/initech through its workspace tool",
            format!("it said {:?}", answer.output_text),
        )?;
        self.done("Ben's run wrote accounts/initech to the agent's shared workspace store")?;
        let value = read_item(&self.ada, &self.agent_id, "accounts/initech")
            .await
            .map_err(step_failed("Ada reading the team's item"))?;
        expect(
            value == "renewal in March",
            "Ada to read what Ben's run wrote",
            format!("she read {value:?}"),
        )?;
        self.done("Ada, on the same team, reads it: \"renewal in March\"")?;

        let scratchpad = registry::AgentDraft {
            name: "Scratchpad".into(),
            instructions: "Keep my notes.".into(),
            ..Default::default()
        };
        let (scratch, _) = draft_and_deploy(&self.ada, scratchpad)
            .await
            .map_err(step_failed("drafting and deploying Ada's private agent"))?;
        self.ada
            .store()
            .workspace_write(store::WorkspaceWriteRequest {
                agent_id: scratch.clone(),
                key: "playbook".into(),
                value: "Lead with the ROI numbers.".into(),
                content_type: store::ItemContentType::Text as i32,
                expected_revision: None,
            })
            .await
            .map_err(step_failed("writing Ada's private note"))?;
        self.ada
            .store()
            .workspace_publish(store::WorkspacePublishRequest {
                agent_id: scratch.clone(),
                key: "playbook".into(),
                target_agent_id: self.agent_id.clone(),
                target_key: None,
                expected_target_revision: None,
            })
            .await
            .map_err(step_failed("publishing the note"))?;
        let value = read_item(&self.ben, &self.agent_id, "playbook")
            .await
            .map_err(step_failed("Ben reading the published note"))?;
        expect(
            value == "Lead with the ROI numbers.",
            "Ben to read the note Ada published",
            format!("he read {value:?}"),
        )?;
        self.done("Ada published her private playbook into Research; Ben reads it there")?;
        let back = self
            .ada
            .store()
            .workspace_publish(store::WorkspacePublishRequest {
                agent_id: self.agent_id.clone(),
                key: "accounts/initech".into(),
                target_agent_id: scratch.clone(),
                target_key: None,
                expected_target_revision: None,
            })
            .await;
        refused(
            back,
            Some(Code::FailedPrecondition),
            "publishing from the shared agent back into a private one to be refused",
        )?;
        self.done(
            "publishing is one way: the team's item cannot be copied back into a private agent",
        )
    }

    async fn automation(&self, timeout: Duration) -> Outcome {
        self.step(
            7,
            "Ben enables the agent's automation and a run arrives in his inbox",
        )?;
        let subscribed = self
            .ben
            .automations()
            .subscribe(scheduler::SubscribeRequest {
                agent_id: self.agent_id.clone(),
                automation_key: "account-brief".into(),
                enabled: true,
                channels: vec![registry::NotificationChannel::Web as i32],
            })
            .await
            .map_err(step_failed("subscribing to the automation"))?
            .into_inner();
        let subscription = subscribed.subscription.unwrap_or_default();
        self.done(&format!(
            "Ben subscribed to \"Account brief\" (every minute), with his own CRM: {}",
            subscription.id
        ))?;
        let spinner = Spinner::start("waiting for the next minute boundary");
        let deadline = tokio::time::Instant::now() + timeout;
        let item = loop {
            let inbox = self
                .ben
                .automations()
                .list_inbox(scheduler::ListInboxRequest::default())
                .await
                .map_err(step_failed("reading Ben's inbox"))?
                .into_inner();
            if let Some(item) = inbox
                .items
                .into_iter()
                .find(|item| item.agent_id == self.agent_id)
            {
                break item;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::local(format!(
                    "the demo stopped: expected a run in Ben's inbox within {} s, but none came",
                    timeout.as_secs()
                )));
            }
            // The run fires at a minute boundary; asking once a second
            // shows it within a second of arriving.
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        drop(spinner);
        self.done(&format!("Ben's inbox: \"{}\"", item.title))
    }

    async fn unshare(&self) -> Outcome {
        self.step(
            8,
            "Ada unshares, with a dry run first: who loses access, which automations stop, which grants survive",
        )?;
        let preview = self
            .ada
            .sharing()
            .preview_unshare_agent(sharing::PreviewUnshareAgentRequest {
                agent_id: self.agent_id.clone(),
            })
            .await
            .map_err(step_failed("the dry run"))?
            .into_inner();
        let losing: Vec<&str> = preview
            .users_losing_access
            .iter()
            .map(|u| u.email.as_str())
            .collect();
        expect(
            losing.contains(&self.ben_email.as_str()),
            "the dry run to say Ben loses access",
            format!("it lists {losing:?}"),
        )?;
        expect(
            preview.automations_disabled_total >= 1,
            "the dry run to say Ben's automation stops",
            format!(
                "it lists {} automations",
                preview.automations_disabled_total
            ),
        )?;
        let surviving: Vec<&str> = preview
            .surviving_grants
            .iter()
            .map(|g| g.label.as_str())
            .collect();
        expect(
            surviving.contains(&"support portal"),
            "the dry run to say the support portal's grant survives",
            format!("it lists {surviving:?}"),
        )?;
        self.done(&format!(
            "dry run: {} loses access, {} automation(s) stop, grants that survive: {}",
            losing.join(", "),
            preview.automations_disabled_total,
            surviving.join(", ")
        ))?;
        self.ada
            .sharing()
            .unshare_agent(sharing::UnshareAgentRequest {
                agent_id: self.agent_id.clone(),
            })
            .await
            .map_err(step_failed("unsharing"))?;
        let after = self
            .ben
            .invoke()
            .invoke(invoke(&self.agent_id, "Brief me on Initech"))
            .await;
        let code = refused(after, None, "Ben's very next run to fail")?;
        self.done(&format!("unshared: Ben's very next run fails ({code})"))
    }
}
