//! `agentshare agent ...`: an agent's life as its builder sees it
//! (AgentRegistryService): a draft written in a definition file, deployed
//! into immutable versions, compared, rolled back, published as a template,
//! shared and reaching more workspaces (SharingService), who may write its
//! shared store, deleted.
//!
//! A definition file is the agent's design, `AgentDraft` in the proto3 JSON
//! mapping, as YAML or JSON: `name`, `description`, `instructions`, `model`,
//! `tools` (each an integration with its `scope` and, when SHARED, the
//! builder's `connectionId`), `files` and `automations`. `agent show AGENT
//! --definition` prints one back; `examples/research-agent.yaml` is the
//! README's research agent.
//!
//! AGENT is an agent's id, or its exact name among the agents you can see.

mod definition;
mod diff;

use agentshare_proto::registry::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use tonic_types::StatusExt as _;

use crate::cli::client::{Api, Channel, Target, every_page};
use crate::cli::failure::{Failure, Outcome};
use crate::cli::output::{Output, View, flag, label, time, to_json, with_detail, word};
use definition::{Definition, print_definition};
use diff::{Side, parse_side, render_change};

/// `agentshare agent ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a DRAFT agent from a definition file, in the workspace your
    /// calls land in.
    Create {
        /// The definition file (YAML or JSON); `-` reads stdin.
        #[arg(short = 'f', long, value_name = "FILE")]
        file: String,
        /// Make it a managed agent, never deleted and never moved between
        /// workspaces (org owners and admins only; cannot be undone).
        #[arg(long)]
        managed: bool,
    },
    /// Change an agent's draft from a definition file: the fields the file
    /// names are replaced (lists whole), the others are kept.
    Update {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The definition file (YAML or JSON); `-` reads stdin.
        #[arg(short = 'f', long, value_name = "FILE")]
        file: String,
        /// Replace the whole draft: fields the file leaves out become empty.
        #[arg(long)]
        replace: bool,
        /// The draft revision your change is based on (default: the current
        /// one); another edit since then refuses the update.
        #[arg(long, value_name = "N")]
        revision: Option<i64>,
    },
    /// Show an agent, or one of its versions.
    Show {
        /// The agent: its id, or its exact name.
        agent: String,
        /// A deployed version instead of the draft.
        #[arg(long, value_name = "N")]
        version: Option<i64>,
        /// Print only the design, as a definition file `agent update -f`
        /// reads (YAML, or JSON with -o json).
        #[arg(long)]
        definition: bool,
    },
    /// The agents you build: yours (drafts included) and the org default
    /// agent. `agentshare my-agents` lists those shared with you.
    List {
        /// Only the agents you own.
        #[arg(long)]
        mine: bool,
        /// Only agents in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
    },
    /// Deploy the draft as the next version; holders' next runs use it.
    Deploy {
        /// The agent: its id, or its exact name.
        agent: String,
        /// What changed, kept with the version.
        #[arg(long, default_value = "")]
        notes: String,
        /// The draft revision you reviewed (default: the current one);
        /// another edit since then refuses the deploy.
        #[arg(long, value_name = "N")]
        revision: Option<i64>,
    },
    /// An agent's deployed versions, newest first.
    Versions {
        /// The agent: its id, or its exact name.
        agent: String,
    },
    /// The field-by-field differences between two versions, or a version
    /// and the draft (by default: what deploying the draft would change).
    Diff {
        /// The side to compare from: a version number or `draft` (default:
        /// the latest version).
        #[arg(long, value_name = "N|draft", value_parser = parse_side)]
        from: Option<Side>,
        /// The side to compare to: a version number or `draft`.
        #[arg(long, value_name = "N|draft", value_parser = parse_side, default_value = "draft")]
        to: Side,
        /// The agent: its id, or its exact name.
        agent: String,
    },
    /// Deploy an older version's content again, as a new version; the
    /// draft is left as it is.
    Rollback {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The version whose content to deploy.
        #[arg(long, value_name = "N")]
        to: i64,
        /// Refuse if the latest version is no longer this one.
        #[arg(long, value_name = "N")]
        if_latest: Option<i64>,
        /// Why, kept with the new version.
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Retire an older version on a schedule: until the sunset, users and
    /// grants pinned to it keep it and are told (with the changes to the
    /// latest); from then on their runs use the latest version. Run again
    /// to change the sunset or the note.
    Deprecate {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The version to retire; never the latest.
        version: i64,
        /// When it retires: an RFC 3339 time (2027-01-31T00:00:00Z), a
        /// duration from now (30d), or `now`.
        #[arg(long, value_name = "TIME|DURATION|now")]
        sunset: String,
        /// What the pinned users should know, shown in their notice.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Cancel a version's deprecation before its sunset.
    Undeprecate {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The deprecated version.
        version: i64,
    },
    /// Who pins which version of your agent: users and grants, with each
    /// version's sunset.
    Pins {
        /// The agent: its id, or its exact name.
        agent: String,
        /// Only this version.
        #[arg(long, value_name = "N")]
        version: Option<i64>,
    },
    /// Delete an agent: access, grants and automations end; sessions stay
    /// readable.
    Delete {
        /// The agent: its id, or its exact name.
        agent: String,
    },
    /// Templates: agent versions the org's members start new agents from.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// The workspaces an agent reaches: its home and those it is shared
    /// into.
    Workspaces {
        /// The agent: its id, or its exact name.
        agent: String,
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Who may write the agent's shared store: show it, or change it with
    /// --writers and --anonymous-writes (settings left out keep their
    /// value). Reads are never restricted. Owner only (for the org default
    /// agent: org owners and admins).
    StorePolicy {
        /// The agent: its id, or its exact name.
        agent: String,
        /// Who writes its shared partitions: the owner only, the owner and
        /// workspace members, or everyone who may run it (the default).
        #[arg(long, value_enum)]
        writers: Option<StoreWriters>,
        /// Whether visitors with a DELEGATE token and no signed-in user may
        /// write (allowed by default).
        #[arg(long, value_enum, value_name = "allow|deny")]
        anonymous_writes: Option<AnonymousWrites>,
    },
}

/// Who may write an agent's shared store.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StoreWriters {
    Owner,
    Members,
    Runners,
}

impl From<StoreWriters> for sharing::StoreWriters {
    fn from(writers: StoreWriters) -> Self {
        match writers {
            StoreWriters::Owner => Self::OwnerOnly,
            StoreWriters::Members => Self::Members,
            StoreWriters::Runners => Self::Runners,
        }
    }
}

/// Whether anonymous visitors may write an agent's store.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AnonymousWrites {
    Allow,
    Deny,
}

impl From<AnonymousWrites> for sharing::AnonymousStoreWrites {
    fn from(anonymous: AnonymousWrites) -> Self {
        match anonymous {
            AnonymousWrites::Allow => Self::Allow,
            AnonymousWrites::Deny => Self::Deny,
        }
    }
}

/// `agentshare agent template ...`
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Publish a deployed version of an agent as a template. It includes
    /// the instructions, readable by every org member, but no connections.
    Create {
        /// The agent: its id, or its exact name.
        agent: String,
        /// The version to publish (default: the latest).
        #[arg(long, value_name = "N")]
        version: Option<i64>,
        /// The template's name (default: the agent's).
        #[arg(long)]
        name: Option<String>,
        /// What the template is for (default: the agent's description).
        #[arg(long)]
        description: Option<String>,
    },
    /// The org's templates, newest first.
    List,
    /// Show a template and its design.
    Show {
        /// The template's id.
        template_id: String,
    },
    /// Create a new DRAFT agent of yours from a template.
    Use {
        /// The template's id.
        template_id: String,
        /// The new agent's name (default: the template's).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `agentshare agent workspaces AGENT ...`
#[derive(Debug, clap::Subcommand)]
pub enum WorkspacesCommand {
    /// The workspaces the agent reaches that you can see, home first.
    Get,
    /// Replace the agent's workspace list (its home is always kept, and so
    /// are workspaces you cannot see). Needs a stepped-up session.
    Set {
        /// Every workspace the agent should reach.
        #[arg(required = true, value_name = "WORKSPACE_ID")]
        workspace_ids: Vec<String>,
    },
}

/// An agent state to filter by.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum State {
    Draft,
    Active,
}

impl From<State> for pb::AgentState {
    fn from(state: State) -> Self {
        match state {
            State::Draft => Self::Draft,
            State::Active => Self::Active,
        }
    }
}

type Registry = pb::agent_registry_service_client::AgentRegistryServiceClient<Channel>;

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut registry = api.registry();
    match command {
        Command::Create { file, managed } => create(&mut registry, &file, managed, out).await,
        Command::Update {
            agent,
            file,
            replace,
            revision,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            update(&mut registry, agent_id, &file, replace, revision, out).await
        }
        Command::Show {
            agent,
            version,
            definition,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            show(&mut registry, agent_id, version, definition, out).await
        }
        Command::List { mine, state } => list(&mut registry, mine, state, out).await,
        Command::Deploy {
            agent,
            notes,
            revision,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            deploy(&mut registry, agent_id, notes, revision, out).await
        }
        Command::Versions { agent } => {
            let agent_id = api.agent_id(&agent).await?;
            versions(&mut registry, agent_id, out).await
        }
        Command::Diff { agent, from, to } => {
            let agent_id = api.agent_id(&agent).await?;
            diff(&mut registry, agent_id, from, to, out).await
        }
        Command::Rollback {
            agent,
            to,
            if_latest,
            notes,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            rollback(&mut registry, agent_id, to, if_latest, notes, out).await
        }
        Command::Deprecate {
            agent,
            version,
            sunset,
            note,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            let sunset_time = Some(sunset_time(&sunset)?);
            let call = registry.deprecate_version(pb::DeprecateVersionRequest {
                agent_id: agent_id.clone(),
                version_number: version,
                sunset_time,
                note,
            });
            out.answer(call.await?, |deprecated| {
                deprecation_record(deprecated.version.clone().unwrap_or_default())
            })?;
            out.say(&format!(
                "Users and grants pinned to version {version} keep it until the sunset and are told; \
                 `agentshare agent pins {agent_id}` shows who."
            ))
        }
        Command::Undeprecate { agent, version } => {
            let agent_id = api.agent_id(&agent).await?;
            let call = registry.undeprecate_version(pb::UndeprecateVersionRequest {
                agent_id,
                version_number: version,
            });
            out.answer(call.await?, |undeprecated| {
                let mut view = deprecation_record(undeprecated.version.clone().unwrap_or_default());
                view.rows.push(vec![
                    "cancelled".into(),
                    crate::cli::share::yes_no(undeprecated.cancelled),
                ]);
                view
            })
        }
        Command::Pins { agent, version } => {
            let agent_id = api.agent_id(&agent).await?;
            let listed = api
                .access()
                .list_version_pins(sharing::ListVersionPinsRequest {
                    agent_id,
                    version: version.unwrap_or(0),
                })
                .await?
                .into_inner();
            out.show(&listed, pins_table(&listed))
        }
        Command::Delete { agent } => {
            let agent_id = api.agent_id(&agent).await?;
            let call = registry.delete_agent(pb::DeleteAgentRequest { agent_id });
            out.answer(call.await?, |deleted| {
                let agent = deleted.agent.clone().unwrap_or_default();
                View::record(
                    agent.id.clone(),
                    vec![
                        ("agent", agent.id.clone()),
                        ("name", name_of(&agent)),
                        ("state", state(agent.state)),
                        ("deleted", time(agent.delete_time.as_ref())),
                    ],
                )
            })
        }
        Command::Template(command) => template(command, &api, &mut registry, out).await,
        Command::Workspaces { agent, command } => {
            let agent_id = api.agent_id(&agent).await?;
            let mut sharing = api.sharing();
            workspaces(command, &mut sharing, agent_id, out).await
        }
        Command::StorePolicy {
            agent,
            writers,
            anonymous_writes,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            let mut sharing = api.sharing();
            store_policy(&mut sharing, agent_id, writers, anonymous_writes, out).await
        }
    }
}

async fn create(registry: &mut Registry, file: &str, managed: bool, out: Output) -> Outcome {
    let definition = Definition::read(file)?;
    let created = registry
        .create_agent(pb::CreateAgentRequest {
            draft: Some(definition.draft),
            is_managed: managed,
        })
        .await?
        .into_inner();
    let agent = created.agent.clone().unwrap_or_default();
    out.show(&created, agent_record(Some(&agent)))?;
    out.say(&format!(
        "created a draft; deploy it with `agentshare agent deploy {}`",
        agent.id
    ))
}

async fn update(
    registry: &mut Registry,
    agent_id: String,
    file: &str,
    replace: bool,
    revision: Option<i64>,
    out: Output,
) -> Outcome {
    let definition = Definition::read(file)?;
    let paths = if replace {
        vec!["*".to_string()]
    } else {
        definition.fields
    };
    if paths.is_empty() {
        return Err(Failure::usage(format!(
            "{}: names no field to change; give at least one of name, description, \
             instructions, model, tools, files, automations (or --replace to empty the draft)",
            definition.source
        )));
    }
    let expected_draft_revision = match revision {
        Some(revision) => revision,
        None => current(registry, &agent_id).await?.draft_revision,
    };
    let updated = registry
        .update_draft(pb::UpdateDraftRequest {
            agent_id,
            draft: Some(definition.draft),
            update_mask: Some(prost_types::FieldMask { paths }),
            expected_draft_revision,
        })
        .await
        .map_err(|status| {
            hinted(
                status,
                tonic::Code::Aborted,
                "someone changed the draft since that revision: look at it with `agentshare \
                 agent show`, then update again",
            )
        })?
        .into_inner();
    out.show(&updated, agent_record(updated.agent.as_ref()))
}

async fn show(
    registry: &mut Registry,
    agent_id: String,
    version: Option<i64>,
    definition: bool,
    out: Output,
) -> Outcome {
    match version {
        None => {
            let shown = registry
                .get_agent(pb::GetAgentRequest { agent_id })
                .await?
                .into_inner();
            let agent = shown.agent.clone().unwrap_or_default();
            if definition {
                return print_definition(agent.draft.as_ref(), out);
            }
            out.show(&shown, agent_record(Some(&agent)))
        }
        Some(version_number) => {
            let shown = registry
                .get_version(pb::GetVersionRequest {
                    agent_id,
                    version_number,
                })
                .await?
                .into_inner();
            let version = shown.version.clone().unwrap_or_default();
            if definition {
                return print_definition(version.content.as_ref(), out);
            }
            let mut fields = version_fields(&version);
            fields.extend(design_fields(&version.content.clone().unwrap_or_default()));
            out.show(&shown, View::record(version.agent_id.clone(), fields))
        }
    }
}

async fn list(registry: &mut Registry, mine: bool, only: Option<State>, out: Output) -> Outcome {
    // Every page, so the table and the JSON hold every agent.
    let request = pb::ListAgentsRequest {
        owned_by_caller: mine,
        state: only.map_or(0, |s| pb::AgentState::from(s) as i32),
        ..Default::default()
    };
    let listed = every_page(request, async |r| registry.list_agents(r).await).await?;
    let view = View::table(&listed.agents)
        .id("ID", |agent| agent.id.clone())
        .column("NAME", |agent| {
            if agent.is_default {
                format!("{} (org default)", name_of(agent))
            } else {
                name_of(agent)
            }
        })
        .column("STATE", |agent| state(agent.state))
        .column("VERSION", |agent| agent.latest_version_number.to_string())
        .column("OWNER", |agent| agent.owner_user_id.clone())
        .column("UNDEPLOYED", |agent| {
            flag(agent.has_undeployed_changes, "yes")
        });
    out.show(&listed, view)
}

async fn deploy(
    registry: &mut Registry,
    agent_id: String,
    notes: String,
    revision: Option<i64>,
    out: Output,
) -> Outcome {
    let expected_draft_revision = match revision {
        Some(revision) => revision,
        None => current(registry, &agent_id).await?.draft_revision,
    };
    let deployed = registry
        .deploy_agent(pb::DeployAgentRequest {
            agent_id,
            expected_draft_revision,
            notes,
        })
        .await
        .map_err(|status| {
            hinted(
                status,
                tonic::Code::FailedPrecondition,
                "set each SHARED tool's connectionId to one of your connections (`agentshare \
                 connection list`) with `agentshare agent update`, then deploy again",
            )
        })?
        .into_inner();
    let agent = deployed.agent.clone().unwrap_or_default();
    let version = deployed.version.clone().unwrap_or_default();
    let mut fields = vec![("name", name_of(&agent)), ("state", state(agent.state))];
    fields.extend(version_fields(&version));
    out.show(&deployed, View::record(agent.id, fields))?;
    if deployed.created {
        out.say(&format!(
            "deployed version {}: holders' next runs use it",
            version.number
        ))
    } else {
        out.say(&format!(
            "the draft equals version {}: no new version was made",
            version.number
        ))
    }
}

async fn versions(registry: &mut Registry, agent_id: String, out: Output) -> Outcome {
    let request = pb::ListVersionsRequest {
        agent_id,
        ..Default::default()
    };
    let listed = every_page(request, async |r| registry.list_versions(r).await).await?;
    let view = View::table(&listed.versions)
        .id("VERSION", |version| version.number.to_string())
        .column("ORIGIN", origin)
        .column("DEPLOYED", |version| time(version.deploy_time.as_ref()))
        .column("BY", |version| version.deployer_user_id.clone())
        .column("NOTES", |version| version.notes.clone())
        .column("SUNSET", sunset_of);
    out.show(&listed, view)
}

async fn diff(
    registry: &mut Registry,
    agent_id: String,
    from: Option<Side>,
    to: Side,
    out: Output,
) -> Outcome {
    let from = match from {
        Some(side) => side,
        None => {
            let latest = current(registry, &agent_id).await?.latest_version_number;
            if latest == 0 {
                return Err(Failure::usage(
                    "the agent has no deployed version to compare the draft with: give --from",
                ));
            }
            Side::Version(latest)
        }
    };
    let diffed = registry
        .diff_versions(pb::DiffVersionsRequest {
            agent_id,
            base: Some(from.selector()),
            target: Some(to.selector()),
        })
        .await?
        .into_inner();
    if !out.for_people() {
        let paths: Vec<String> = diffed
            .changes
            .iter()
            .map(|c| c.field_path.clone())
            .collect();
        return out.show(
            &diffed,
            View {
                header: Vec::new(),
                rows: Vec::new(),
                ids: paths,
            },
        );
    }
    // The values as JSON, as the API gives them.
    let json = to_json(&diffed)?;
    let changes = json["changes"].as_array().cloned().unwrap_or_default();
    let mut text = match changes.len() {
        0 => format!("no differences from {} to {}\n", from.name(), to.name()),
        1 => format!("1 change from {} to {}:\n", from.name(), to.name()),
        n => format!("{n} changes from {} to {}:\n", from.name(), to.name()),
    };
    for change in &changes {
        text.push_str(&render_change(change));
    }
    out.write(&text)
}

async fn rollback(
    registry: &mut Registry,
    agent_id: String,
    to: i64,
    if_latest: Option<i64>,
    notes: String,
    out: Output,
) -> Outcome {
    let rolled = registry
        .rollback_agent(pb::RollbackAgentRequest {
            agent_id,
            version_number: to,
            expected_latest_version_number: if_latest,
            notes,
        })
        .await?
        .into_inner();
    let agent = rolled.agent.clone().unwrap_or_default();
    let version = rolled.version.clone().unwrap_or_default();
    let mut fields = vec![("name", name_of(&agent))];
    fields.extend(version_fields(&version));
    out.show(&rolled, View::record(agent.id, fields))?;
    if rolled.created {
        out.say(&format!(
            "deployed the content of version {to} as version {}; the draft is unchanged",
            version.number
        ))
    } else {
        out.say(&format!(
            "version {} already has the content of version {to}: no new version was made",
            version.number
        ))
    }
}

async fn template(
    command: TemplateCommand,
    api: &Api,
    registry: &mut Registry,
    out: Output,
) -> Outcome {
    match command {
        TemplateCommand::Create {
            agent,
            version,
            name,
            description,
        } => {
            let agent_id = api.agent_id(&agent).await?;
            let version_number = match version {
                Some(version) => version,
                None => match current(registry, &agent_id).await?.latest_version_number {
                    0 => {
                        return Err(Failure::local(format!(
                            "{agent} has no deployed version to publish: deploy it first with \
                             `agentshare agent deploy {agent}`"
                        )));
                    }
                    latest => latest,
                },
            };
            let created = registry
                .create_template_from_agent(pb::CreateTemplateFromAgentRequest {
                    agent_id,
                    version_number,
                    name: name.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.show(&created, template_record(created.template.as_ref()))?;
            out.say("every member of the org can read this template, instructions included")
        }
        TemplateCommand::List => {
            let listed = registry
                .list_templates(pb::ListTemplatesRequest::default())
                .await?
                .into_inner();
            let view = View::table(&listed.templates)
                .id("ID", |template| template.id.clone())
                .column("NAME", |template| template.name.clone())
                .column("FROM AGENT", |template| template.source_agent_id.clone())
                .column("VERSION", |template| {
                    template.source_version_number.to_string()
                })
                .column("PUBLISHER", |template| template.publisher_user_id.clone())
                .column("CREATED", |template| time(template.create_time.as_ref()));
            out.show(&listed, view)
        }
        TemplateCommand::Show { template_id } => {
            let call = registry.get_template(pb::GetTemplateRequest { template_id });
            out.answer(call.await?, |shown| {
                template_record(shown.template.as_ref())
            })
        }
        TemplateCommand::Use { template_id, name } => {
            let created = registry
                .create_agent_from_template(pb::CreateAgentFromTemplateRequest {
                    template_id,
                    name: name.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let agent = created.agent.clone().unwrap_or_default();
            out.show(&created, agent_record(Some(&agent)))?;
            let shared = agent.draft.as_ref().is_some_and(|draft| {
                draft
                    .tools
                    .iter()
                    .any(|tool| tool.scope == pb::IntegrationScope::Shared as i32)
            });
            if shared {
                out.say(
                    "templates carry no connections: point each shared tool at one of your \
                     own with `agentshare agent update` before deploying",
                )?;
            }
            Ok(())
        }
    }
}

type Sharing = sharing::sharing_service_client::SharingServiceClient<Channel>;

async fn workspaces(
    command: WorkspacesCommand,
    sharing: &mut Sharing,
    agent_id: String,
    out: Output,
) -> Outcome {
    match command {
        WorkspacesCommand::Get => {
            let got = sharing
                .get_agent_workspaces(sharing::GetAgentWorkspacesRequest { agent_id })
                .await?
                .into_inner();
            let state = got.sharing.clone().unwrap_or_default();
            out.say(&format!(
                "shared with these workspaces' members: {}",
                if state.shared { "yes" } else { "no" }
            ))?;
            out.show(&got, workspaces_table(&state))
        }
        WorkspacesCommand::Set { workspace_ids } => {
            let set = sharing
                .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                    agent_id,
                    workspace_ids,
                })
                .await?
                .into_inner();
            let state = set.sharing.clone().unwrap_or_default();
            out.show(&set, workspaces_table(&state))?;
            for (what, ids) in [
                ("added", &set.added_workspace_ids),
                ("removed", &set.removed_workspace_ids),
            ] {
                if !ids.is_empty() {
                    out.say(&format!("{what}: {}", ids.join(", ")))?;
                }
            }
            Ok(())
        }
    }
}

async fn store_policy(
    sharing: &mut Sharing,
    agent_id: String,
    writers: Option<StoreWriters>,
    anonymous_writes: Option<AnonymousWrites>,
    out: Output,
) -> Outcome {
    if writers.is_none() && anonymous_writes.is_none() {
        let reach = sharing
            .get_agent_reach(sharing::GetAgentReachRequest { agent_id })
            .await?
            .into_inner();
        let policy = reach.store_write_policy.unwrap_or_default();
        return out.show(&reach, store_policy_record(&policy));
    }
    let set = sharing
        .set_store_write_policy(sharing::SetStoreWritePolicyRequest {
            agent_id,
            writers: writers.map_or(sharing::StoreWriters::Unspecified, Into::into) as i32,
            anonymous_writes: anonymous_writes
                .map_or(sharing::AnonymousStoreWrites::Unspecified, Into::into)
                as i32,
        })
        .await?
        .into_inner();
    let policy = set.policy.unwrap_or_default();
    out.show(&set, store_policy_record(&policy))
}

fn store_policy_record(policy: &sharing::StoreWritePolicy) -> View {
    View::record(
        String::new(),
        vec![
            (
                "writers",
                word(
                    policy.writers,
                    sharing::StoreWriters::as_str_name,
                    "STORE_WRITERS_",
                ),
            ),
            (
                "anonymous writes",
                word(
                    policy.anonymous_writes,
                    sharing::AnonymousStoreWrites::as_str_name,
                    "ANONYMOUS_STORE_WRITES_",
                ),
            ),
        ],
    )
}

fn workspaces_table(state: &sharing::AgentSharingState) -> View {
    View::table(&state.workspaces)
        .id("ID", |workspace| workspace.id.clone())
        .column("NAME", |workspace| workspace.name.clone())
        .column("HOME", |workspace| {
            flag(workspace.id == state.home_workspace_id, "yes")
        })
        .into()
}

/// The agent as it is now.
async fn current(registry: &mut Registry, agent_id: &str) -> Outcome<pb::Agent> {
    Ok(registry
        .get_agent(pb::GetAgentRequest {
            agent_id: agent_id.to_string(),
        })
        .await?
        .into_inner()
        .agent
        .unwrap_or_default())
}

/// `status` with `hint` added, when it has `code` and no hint of its own.
fn hinted(status: tonic::Status, code: tonic::Code, hint: &str) -> Failure {
    let mut details = status.get_error_details();
    if status.code() != code || details.localized_message().is_some() {
        return Failure::Call(status);
    }
    details.set_localized_message("en-US", hint);
    Failure::Call(tonic::Status::with_error_details(
        status.code(),
        status.message(),
        details,
    ))
}

fn state(value: i32) -> String {
    word(value, pb::AgentState::as_str_name, "AGENT_STATE_")
}

fn scope(value: i32) -> String {
    word(
        value,
        pb::IntegrationScope::as_str_name,
        "INTEGRATION_SCOPE_",
    )
}

fn origin(version: &pb::AgentVersion) -> String {
    match pb::VersionOrigin::try_from(version.origin) {
        Ok(pb::VersionOrigin::Rollback) => {
            format!("rollback of {}", version.rollback_of_version_number)
        }
        Ok(origin) => label(origin.as_str_name(), "VERSION_ORIGIN_"),
        Err(_) => version.origin.to_string(),
    }
}

fn name_of(agent: &pb::Agent) -> String {
    agent
        .draft
        .as_ref()
        .map(|draft| draft.name.clone())
        .unwrap_or_default()
}

fn agent_record(agent: Option<&pb::Agent>) -> View {
    let agent = agent.cloned().unwrap_or_default();
    let mut fields = vec![
        ("agent", agent.id.clone()),
        ("state", state(agent.state)),
        ("latest version", agent.latest_version_number.to_string()),
    ];
    if agent.caller_can_edit {
        fields.push(("draft revision", agent.draft_revision.to_string()));
        fields.push((
            "undeployed changes",
            agent.has_undeployed_changes.to_string(),
        ));
    }
    if agent.is_default {
        fields.push(("org default", "true".into()));
    }
    if agent.is_managed {
        fields.push(("managed", "true".into()));
    }
    fields.push(("owner", agent.owner_user_id.clone()));
    fields.push(("home workspace", agent.home_workspace_id.clone()));
    fields.extend(design_fields(&agent.draft.clone().unwrap_or_default()));
    fields.push(("created", time(agent.create_time.as_ref())));
    if agent.latest_deploy_time.is_some() {
        fields.push(("deployed", time(agent.latest_deploy_time.as_ref())));
    }
    View::record(agent.id, fields)
}

/// A version's sunset: when it retires, or retired; empty when it is not
/// deprecated.
fn sunset_of(version: &pb::AgentVersion) -> String {
    match (&version.sunset_time, version.retired) {
        (None, _) => String::new(),
        (Some(at), false) => format!("retires {}", time(Some(at))),
        (Some(at), true) => format!("retired {}", time(Some(at))),
    }
}

/// The sunset `--sunset` asks for: an RFC 3339 time, a duration from now,
/// or `now`.
fn sunset_time(text: &str) -> Outcome<prost_types::Timestamp> {
    use std::str::FromStr as _;
    let now = std::time::SystemTime::now();
    if text.trim() == "now" {
        return Ok(prost_types::Timestamp::from(now));
    }
    if let Ok(at) = prost_types::Timestamp::from_str(text) {
        return Ok(at);
    }
    let within = crate::cli::grant::parse_duration(text).map_err(|why| {
        Failure::usage(format!(
            "--sunset {text:?}: not an RFC 3339 time (2027-01-31T00:00:00Z), `now`, or a duration: {why}"
        ))
    })?;
    now.checked_add(within)
        .map(prost_types::Timestamp::from)
        .ok_or_else(|| Failure::usage(format!("--sunset {text:?} is too far away")))
}

fn deprecation_record(version: pb::AgentVersion) -> View {
    let mut fields = vec![
        ("agent", version.agent_id.clone()),
        ("version", version.number.to_string()),
    ];
    match &version.sunset_time {
        Some(_) => fields.push(("sunset", sunset_of(&version))),
        None => fields.push(("sunset", "none: pins of it hold".into())),
    }
    if !version.deprecation_note.is_empty() {
        fields.push(("note", version.deprecation_note.clone()));
    }
    View::record(version.agent_id, fields)
}

/// One user or grant pinned to one version, as `agent pins` lists it.
struct PinnedRow {
    version: String,
    sunset: String,
    kind: &'static str,
    id: String,
    who: String,
}

fn pins_table(listed: &sharing::ListVersionPinsResponse) -> View {
    let mut rows = Vec::new();
    for pins in &listed.versions {
        let sunset = match (&pins.sunset_time, pins.retired) {
            (None, _) => String::new(),
            (Some(at), false) => format!("retires {}", time(Some(at))),
            (Some(at), true) => format!("retired {}: runs the latest", time(Some(at))),
        };
        for user in &pins.users {
            let who = match (user.email.as_str(), user.display_name.as_str()) {
                ("", "") => String::new(),
                (email, "") => email.to_string(),
                (email, name) => format!("{name} <{email}>"),
            };
            rows.push(PinnedRow {
                version: pins.version.to_string(),
                sunset: sunset.clone(),
                kind: "user",
                id: user.user_id.clone(),
                who,
            });
        }
        for grant in &pins.grants {
            let kind = word(grant.kind, sharing::GrantKind::as_str_name, "GRANT_KIND_");
            rows.push(PinnedRow {
                version: pins.version.to_string(),
                sunset: sunset.clone(),
                kind: "grant",
                id: grant.grant_id.clone(),
                who: format!("{} ({kind})", grant.label),
            });
        }
    }
    View::table(&rows)
        .column("VERSION", |row| row.version.clone())
        .column("SUNSET", |row| row.sunset.clone())
        .column("PINNED BY", |row| row.kind.into())
        .id("ID", |row| row.id.clone())
        .column("WHO", |row| row.who.clone())
        .into()
}

fn version_fields(version: &pb::AgentVersion) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("version", version.number.to_string()),
        ("origin", origin(version)),
        ("deployed", time(version.deploy_time.as_ref())),
        ("deployed by", version.deployer_user_id.clone()),
    ];
    if !version.notes.is_empty() {
        fields.push(("notes", version.notes.clone()));
    }
    if version.sunset_time.is_some() {
        fields.push(("sunset", sunset_of(version)));
    }
    if !version.deprecation_note.is_empty() {
        fields.push(("deprecation note", version.deprecation_note.clone()));
    }
    fields
}

fn template_record(template: Option<&pb::Template>) -> View {
    let template = template.cloned().unwrap_or_default();
    let mut fields = vec![
        ("template", template.id.clone()),
        ("from agent", template.source_agent_id.clone()),
        ("from version", template.source_version_number.to_string()),
        ("publisher", template.publisher_user_id.clone()),
        ("created", time(template.create_time.as_ref())),
    ];
    let mut design = template.content.clone().unwrap_or_default();
    // The template's own name and description, not the copied agent's.
    design.name.clone_from(&template.name);
    design.description.clone_from(&template.description);
    fields.extend(design_fields(&design));
    View::record(template.id, fields)
}

/// A design as record lines: one per tool and automation.
fn design_fields(draft: &pb::AgentDraft) -> Vec<(&'static str, String)> {
    let mut fields = vec![("name", draft.name.clone())];
    if !draft.description.is_empty() {
        fields.push(("description", draft.description.clone()));
    }
    if !draft.instructions.is_empty() {
        fields.push(("instructions", summary(&draft.instructions)));
    }
    if let Some(model) = &draft.model {
        fields.push(("model", format!("{} {}", model.provider, model.model)));
    }
    for tool in &draft.tools {
        let mut text = format!(
            "{} ({}, {})",
            tool.integration_key,
            tool.provider,
            scope(tool.scope)
        );
        if !tool.connection_id.is_empty() {
            text.push_str(&format!(", connection {}", tool.connection_id));
        }
        fields.push(("tool", text));
    }
    for file in &draft.files {
        fields.push(("file", format!("{} ({})", file.name, file.uri)));
    }
    for automation in &draft.automations {
        let text = with_detail(automation.key.clone(), &automation.display_name);
        fields.push(("automation", text));
    }
    fields
}

/// A long text's first line, shortened, and its length.
fn summary(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut shown: String = first.chars().take(60).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown} ({} characters)", text.chars().count())
}
