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
use super::member::{Member, member_record, members_table};
use super::org::Role;
use super::output::{Output, View, flag, label, time};

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

/// A workspace member as both member views read one.
fn member(member: &pb::WorkspaceMember) -> Member<'_> {
    (
        member.user.as_ref(),
        role(member.role),
        member.create_time.as_ref(),
    )
}

type Tenancy = pb::tenancy_service_client::TenancyServiceClient<Channel>;

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut tenancy = api.tenancy();
    match command {
        Command::Create { name } => {
            let call = tenancy.create_workspace(pb::CreateWorkspaceRequest { name });
            out.answer(call.await?, |created| {
                workspace_record(created.workspace.as_ref(), None)
            })
        }
        Command::List => list(&mut tenancy, out).await,
        Command::Show { workspace_id } => {
            let workspace_id = match workspace_id {
                Some(id) => id,
                None => active_workspace(&mut tenancy).await?,
            };
            let call = tenancy.get_workspace(pb::GetWorkspaceRequest { workspace_id });
            out.answer(call.await?, |shown| {
                let membership = shown.workspace.clone().unwrap_or_default();
                workspace_record(membership.workspace.as_ref(), Some(role(membership.role)))
            })
        }
        Command::Switch { workspace_id } => switch(target, &mut tenancy, workspace_id, out).await,
        Command::Update { workspace_id, name } => {
            let call = tenancy.update_workspace(pb::UpdateWorkspaceRequest {
                workspace_id,
                name: Some(name),
            });
            out.answer(call.await?, |updated| {
                workspace_record(updated.workspace.as_ref(), None)
            })
        }
        Command::Delete { workspace_id } => {
            let call = tenancy.delete_workspace(pb::DeleteWorkspaceRequest {
                workspace_id: workspace_id.clone(),
            });
            out.answer(call.await?, |_| {
                View::record(workspace_id.clone(), vec![("deleted", workspace_id)])
            })
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
    let workspaces: Vec<(pb::Workspace, String)> = listed
        .workspaces
        .iter()
        .map(|m| (m.workspace.clone().unwrap_or_default(), role(m.role)))
        .collect();
    let view = View::table(&workspaces)
        .column("", |(workspace, _)| flag(workspace.id == active, "*"))
        .id("ID", |(workspace, _)| workspace.id.clone())
        .column("NAME", |(workspace, _)| workspace.name.clone())
        .column("ROLE", |(_, role)| role.clone())
        .column("DEFAULT", |(workspace, _)| workspace.is_default.to_string())
        .column("CREATED", |(workspace, _)| {
            time(workspace.create_time.as_ref())
        });
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
    out.show(&switched, workspace_record(Some(&workspace), None))?;
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

fn workspace_record(workspace: Option<&pb::Workspace>, caller_role: Option<String>) -> View {
    let workspace = workspace.cloned().unwrap_or_default();
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
    View::record(workspace.id, fields)
}

async fn members(
    command: MembersCommand,
    tenancy: &mut Tenancy,
    workspace_id: String,
    out: Output,
) -> Outcome {
    match command {
        MembersCommand::List => {
            let call = tenancy.list_workspace_members(pb::ListWorkspaceMembersRequest {
                workspace_id,
                ..Default::default()
            });
            out.answer(call.await?, |listed| members_table(&listed.members, member))
        }
        MembersCommand::Add { who, role } => {
            let user_id = user_id(tenancy, who).await?;
            let call = tenancy.add_workspace_member(pb::AddWorkspaceMemberRequest {
                workspace_id,
                user_id,
                role: pb::WorkspaceRole::from(role) as i32,
            });
            out.answer(call.await?, |added| {
                member_record(member(&added.member.clone().unwrap_or_default()))
            })
        }
        MembersCommand::Role { who, role } => {
            let user_id = user_id(tenancy, who).await?;
            let call = tenancy.update_workspace_member_role(pb::UpdateWorkspaceMemberRoleRequest {
                workspace_id,
                user_id,
                role: pb::WorkspaceRole::from(role) as i32,
            });
            out.answer(call.await?, |updated| {
                member_record(member(&updated.member.clone().unwrap_or_default()))
            })
        }
        MembersCommand::Remove { who } => {
            let user_id = user_id(tenancy, who).await?;
            let call = tenancy.remove_workspace_member(pb::RemoveWorkspaceMemberRequest {
                workspace_id: workspace_id.clone(),
                user_id: user_id.clone(),
            });
            out.answer(call.await?, |_| {
                View::record(
                    user_id.clone(),
                    vec![("removed", user_id), ("from workspace", workspace_id)],
                )
            })
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
