//! `agentshare workspace ...`: the workspaces (teams) inside an org, which
//! one your calls land in, and their members (TenancyService).
//!
//! Workspaces are opt-in per org (`agentshare org update --workspaces
//! true`); creating, renaming and deleting them and changing their members
//! are privileged mutations that need a stepped-up session.

use agentshare_proto::sharing::v1 as pb;

use super::client::{Channel, Target};
use super::context::{Contexts, config_dir};
use super::failure::{Failure, Outcome};
use super::org::Role;
use super::output::{Output, View, label, time};

/// `agentshare workspace ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a workspace in the org; you become its owner.
    Create {
        /// The workspace's display name, unique in the org.
        name: String,
    },
    /// The workspaces you belong to (org owners and admins: all of them);
    /// `*` marks the one your calls land in.
    List,
    /// Show a workspace (default: the one your calls land in).
    Show {
        /// The workspace's id.
        workspace_id: Option<String>,
    },
    /// Make a workspace the active one of your session. With a context in
    /// use, it is also saved as the context's workspace, so every later call
    /// lands there.
    Switch {
        /// The workspace's id.
        workspace_id: String,
    },
    /// Rename a workspace.
    #[command(alias = "rename")]
    Update {
        /// The workspace's id.
        workspace_id: String,
        /// The new display name.
        #[arg(long)]
        name: String,
    },
    /// Delete a workspace and its memberships; it must be the home of no
    /// agent or project, and never the org's default.
    Delete {
        /// The workspace's id.
        workspace_id: String,
    },
    /// A workspace's members: the one given with --workspace, else the one
    /// your calls land in.
    #[command(subcommand)]
    Members(MembersCommand),
}

/// `agentshare workspace members ...`
#[derive(Debug, clap::Subcommand)]
pub enum MembersCommand {
    /// The members and their roles.
    List,
    /// Add an org member to the workspace with a role.
    Add {
        /// Their user id, or their email (looked up among the org's
        /// members).
        who: String,
        /// Their role in the workspace.
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// Remove someone from the workspace.
    Remove {
        /// Their user id or email.
        who: String,
    },
    /// Change a member's workspace role.
    Role {
        /// Their user id or email.
        who: String,
        /// Their new role.
        #[arg(value_enum)]
        role: Role,
    },
}

fn role(value: i32) -> String {
    match pb::WorkspaceRole::try_from(value) {
        // An org owner or admin sees workspaces they are not a member of.
        Ok(pb::WorkspaceRole::Unspecified) => "(not a member)".into(),
        Ok(role) => label(role.as_str_name(), "WORKSPACE_ROLE_"),
        Err(_) => value.to_string(),
    }
}

type Tenancy = pb::tenancy_service_client::TenancyServiceClient<Channel>;

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut tenancy = api.tenancy();
    match command {
        Command::Create { name } => {
            let created = tenancy
                .create_workspace(pb::CreateWorkspaceRequest { name })
                .await?
                .into_inner();
            let view = workspace_record(&created.workspace.clone().unwrap_or_default(), None);
            out.show(&created, view)
        }
        Command::List => list(&mut tenancy, out).await,
        Command::Show { workspace_id } => {
            let workspace_id = match workspace_id {
                Some(id) => id,
                None => active_workspace(&mut tenancy).await?,
            };
            let shown = tenancy
                .get_workspace(pb::GetWorkspaceRequest { workspace_id })
                .await?
                .into_inner();
            let membership = shown.workspace.clone().unwrap_or_default();
            let view = workspace_record(
                &membership.workspace.unwrap_or_default(),
                Some(role(membership.role)),
            );
            out.show(&shown, view)
        }
        Command::Switch { workspace_id } => switch(target, &mut tenancy, workspace_id, out).await,
        Command::Update { workspace_id, name } => {
            let updated = tenancy
                .update_workspace(pb::UpdateWorkspaceRequest {
                    workspace_id,
                    name: Some(name),
                })
                .await?
                .into_inner();
            let view = workspace_record(&updated.workspace.clone().unwrap_or_default(), None);
            out.show(&updated, view)
        }
        Command::Delete { workspace_id } => {
            let deleted = tenancy
                .delete_workspace(pb::DeleteWorkspaceRequest {
                    workspace_id: workspace_id.clone(),
                })
                .await?
                .into_inner();
            out.show(
                &deleted,
                View::record(workspace_id.clone(), vec![("deleted", workspace_id)]),
            )
        }
        Command::Members(command) => {
            let workspace_id = match target.resolve()?.workspace {
                Some(id) => id,
                None => active_workspace(&mut tenancy).await?,
            };
            members(command, &mut tenancy, workspace_id, out).await
        }
    }
}

async fn list(tenancy: &mut Tenancy, out: Output) -> Outcome {
    let listed = tenancy
        .list_workspaces(pb::ListWorkspacesRequest::default())
        .await?
        .into_inner();
    // Which workspace the calls land in is worth an extra call only for
    // people; scripts read `me`.
    let active = if out.for_people() {
        tenancy
            .get_me(pb::GetMeRequest {})
            .await?
            .into_inner()
            .workspace_id
    } else {
        String::new()
    };
    let view = View::table(
        vec!["", "ID", "NAME", "ROLE", "DEFAULT", "CREATED"],
        &listed.workspaces,
        |membership| {
            let workspace = membership.workspace.clone().unwrap_or_default();
            vec![
                if workspace.id == active { "*" } else { "" }.to_string(),
                workspace.id,
                workspace.name,
                role(membership.role),
                workspace.is_default.to_string(),
                time(workspace.create_time.as_ref()),
            ]
        },
        |membership| {
            membership
                .workspace
                .as_ref()
                .map(|w| w.id.clone())
                .unwrap_or_default()
        },
    );
    out.show(&listed, view)
}

async fn switch(
    target: &Target,
    tenancy: &mut Tenancy,
    workspace_id: String,
    out: Output,
) -> Outcome {
    let switched = tenancy
        .switch_workspace(pb::SwitchWorkspaceRequest { workspace_id })
        .await?
        .into_inner();
    let workspace = switched.workspace.clone().unwrap_or_default();
    // The session remembers the switch, but `--as` mints a new session on
    // every call; the context's workspace is sent as a header on each call,
    // so saving it there makes the switch last whatever the credential.
    let dir = config_dir()?;
    let mut contexts = Contexts::load(&dir)?;
    let saved_in = match contexts.selected(target.context.as_deref())? {
        Some((name, _)) => {
            if let Some(context) = contexts.contexts.get_mut(&name) {
                context.workspace = Some(workspace.id.clone());
            }
            contexts.save(&dir)?;
            Some(name)
        }
        None => None,
    };
    let view = workspace_record(&workspace, None);
    out.show(&switched, view)?;
    match saved_in {
        Some(name) => out.say(&format!("saved as the workspace of context {name}")),
        None if target.as_user.is_some() => {
            eprintln!(
                "note: --as starts a new session on every call; pass --workspace {} (or \
                 set AGENTSHARE_WORKSPACE) to keep calling there",
                workspace.id
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// The workspace the caller's requests land in, as the server resolves it.
async fn active_workspace(tenancy: &mut Tenancy) -> Outcome<String> {
    let me = tenancy.get_me(pb::GetMeRequest {}).await?.into_inner();
    if me.workspace_id.is_empty() {
        return Err(Failure::usage(
            "your calls land in no workspace: name one with --workspace",
        ));
    }
    Ok(me.workspace_id)
}

fn workspace_record(workspace: &pb::Workspace, caller_role: Option<String>) -> View {
    let mut fields = vec![
        ("workspace", workspace.id.clone()),
        ("name", workspace.name.clone()),
        ("org", workspace.org_id.clone()),
        ("default", workspace.is_default.to_string()),
        ("created", time(workspace.create_time.as_ref())),
    ];
    if let Some(caller_role) = caller_role {
        fields.push(("your role", caller_role));
    }
    View::record(workspace.id.clone(), fields)
}

async fn members(
    command: MembersCommand,
    tenancy: &mut Tenancy,
    workspace_id: String,
    out: Output,
) -> Outcome {
    match command {
        MembersCommand::List => {
            let listed = tenancy
                .list_workspace_members(pb::ListWorkspaceMembersRequest {
                    workspace_id,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let view = View::table(
                vec!["USER", "EMAIL", "ROLE", "SINCE"],
                &listed.members,
                |member| {
                    let user = member.user.clone().unwrap_or_default();
                    vec![
                        user.id,
                        user.email,
                        role(member.role),
                        time(member.create_time.as_ref()),
                    ]
                },
                |member| {
                    member
                        .user
                        .as_ref()
                        .map(|u| u.id.clone())
                        .unwrap_or_default()
                },
            );
            out.show(&listed, view)
        }
        MembersCommand::Add { who, role } => {
            let user_id = user_id(tenancy, who).await?;
            let added = tenancy
                .add_workspace_member(pb::AddWorkspaceMemberRequest {
                    workspace_id,
                    user_id,
                    role: pb::WorkspaceRole::from(role) as i32,
                })
                .await?
                .into_inner();
            let view = member_record(added.member.as_ref());
            out.show(&added, view)
        }
        MembersCommand::Role { who, role } => {
            let user_id = user_id(tenancy, who).await?;
            let updated = tenancy
                .update_workspace_member_role(pb::UpdateWorkspaceMemberRoleRequest {
                    workspace_id,
                    user_id,
                    role: pb::WorkspaceRole::from(role) as i32,
                })
                .await?
                .into_inner();
            let view = member_record(updated.member.as_ref());
            out.show(&updated, view)
        }
        MembersCommand::Remove { who } => {
            let user_id = user_id(tenancy, who).await?;
            let removed = tenancy
                .remove_workspace_member(pb::RemoveWorkspaceMemberRequest {
                    workspace_id: workspace_id.clone(),
                    user_id: user_id.clone(),
                })
                .await?
                .into_inner();
            out.show(
                &removed,
                View::record(
                    user_id.clone(),
                    vec![("removed", user_id), ("from workspace", workspace_id)],
                ),
            )
        }
    }
}

/// A user id as given, or the id of the org member with that email.
async fn user_id(tenancy: &mut Tenancy, who: String) -> Outcome<String> {
    if !who.contains('@') {
        return Ok(who);
    }
    let mut page_token = String::new();
    loop {
        let page = tenancy
            .list_org_members(pb::ListOrgMembersRequest {
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        let found = page
            .members
            .iter()
            .filter_map(|member| member.user.as_ref())
            .find(|user| user.email.eq_ignore_ascii_case(&who));
        if let Some(user) = found {
            return Ok(user.id.clone());
        }
        if page.next_page_token.is_empty() {
            return Err(Failure::usage(format!(
                "no member of the org has the email {who}: add them with `agentshare org \
                 members add {who}` first"
            )));
        }
        page_token = page.next_page_token;
    }
}

fn member_record(member: Option<&pb::WorkspaceMember>) -> View {
    let member = member.cloned().unwrap_or_default();
    let user = member.user.clone().unwrap_or_default();
    View::record(
        user.id.clone(),
        vec![
            ("user", user.id),
            ("email", user.email),
            ("role", role(member.role)),
        ],
    )
}
