//! `agentshare me` and `agentshare org ...`: who you are, your orgs and
//! their members (TenancyService).

use agentshare_proto::sharing::v1 as pb;

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::output::{Output, View, label, time};

/// `agentshare org ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an org; you become its owner.
    Create {
        /// The org's display name.
        name: String,
    },
    /// Show an org (default: the org your calls land in).
    Show {
        /// The org's id.
        org_id: Option<String>,
    },
    /// The orgs you belong to.
    List,
    /// Rename an org, or turn workspaces on or off.
    Update {
        /// The org's id (default: the org your calls land in).
        org_id: Option<String>,
        /// A new display name.
        #[arg(long)]
        name: Option<String>,
        /// Turn workspaces on (true) or off (false); needs an owner.
        #[arg(long, value_name = "BOOL")]
        workspaces: Option<bool>,
    },
    /// The org's members.
    #[command(subcommand)]
    Members(MembersCommand),
}

/// `agentshare org members ...`
#[derive(Debug, clap::Subcommand)]
pub enum MembersCommand {
    /// The members and their roles.
    List,
    /// Add someone by email (or user id) with a role.
    Add {
        /// Their email, or their user id with --user-id.
        who: String,
        /// `who` is a user id, not an email.
        #[arg(long)]
        user_id: bool,
        /// Their role in the org.
        #[arg(long, value_enum, default_value_t = Role::Member)]
        role: Role,
    },
    /// Remove a member from the org.
    Remove {
        /// The member's user id.
        user_id: String,
    },
    /// Change a member's role.
    Role {
        /// The member's user id.
        user_id: String,
        /// Their new role.
        #[arg(value_enum)]
        role: Role,
    },
}

/// A role in an org or a workspace, as the command line names it: both
/// have the same three.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl From<Role> for pb::OrgRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
        }
    }
}

impl From<Role> for pb::WorkspaceRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => Self::Owner,
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
        }
    }
}

fn role(value: i32) -> String {
    pb::OrgRole::try_from(value)
        .map(|role| label(role.as_str_name(), "ORG_ROLE_"))
        .unwrap_or_else(|_| value.to_string())
}

/// `agentshare me`
pub async fn me(target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let me = api
        .tenancy()
        .get_me(pb::GetMeRequest {})
        .await?
        .into_inner();
    let user = me.user.clone().unwrap_or_default();
    let view = View::record(
        user.id.clone(),
        vec![
            ("user", user.id),
            ("email", user.email),
            ("org", me.org_id.clone()),
            ("org role", role(me.org_role)),
            ("workspace", me.workspace_id.clone()),
            ("workspaces enabled", me.workspaces_enabled.to_string()),
        ],
    );
    out.show(&me, view)
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut tenancy = api.tenancy();
    match command {
        Command::Create { name } => {
            let created = tenancy
                .create_org(pb::CreateOrgRequest { name })
                .await?
                .into_inner();
            let org = created.org.clone().unwrap_or_default();
            let workspace = created.default_workspace.clone().unwrap_or_default();
            out.show(
                &created,
                View::record(
                    org.id.clone(),
                    vec![
                        ("org", org.id),
                        ("name", org.name),
                        ("default workspace", workspace.id),
                    ],
                ),
            )
        }
        Command::Show { org_id } => {
            let shown = tenancy
                .get_org(pb::GetOrgRequest {
                    org_id: org_id.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let org = shown.org.clone().unwrap_or_default();
            let view = org_record(&org, Some(role(shown.caller_role)));
            out.show(&shown, view)
        }
        Command::List => {
            let listed = tenancy
                .list_my_orgs(pb::ListMyOrgsRequest::default())
                .await?
                .into_inner();
            let view = View::table(
                vec!["ID", "NAME", "ROLE", "WORKSPACES"],
                &listed.orgs,
                |membership| {
                    let org = membership.org.clone().unwrap_or_default();
                    vec![
                        org.id,
                        org.name,
                        role(membership.role),
                        org.workspaces_enabled.to_string(),
                    ]
                },
                |membership| {
                    membership
                        .org
                        .as_ref()
                        .map(|o| o.id.clone())
                        .unwrap_or_default()
                },
            );
            out.show(&listed, view)
        }
        Command::Update {
            org_id,
            name,
            workspaces,
        } => {
            if name.is_none() && workspaces.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --name or --workspaces",
                ));
            }
            let updated = tenancy
                .update_org(pb::UpdateOrgRequest {
                    org_id: org_id.unwrap_or_default(),
                    name,
                    workspaces_enabled: workspaces,
                })
                .await?
                .into_inner();
            let view = org_record(&updated.org.clone().unwrap_or_default(), None);
            out.show(&updated, view)
        }
        Command::Members(command) => members(command, &mut tenancy, out).await,
    }
}

fn org_record(org: &pb::Org, caller_role: Option<String>) -> View {
    let mut fields = vec![
        ("org", org.id.clone()),
        ("name", org.name.clone()),
        ("workspaces enabled", org.workspaces_enabled.to_string()),
        ("default workspace", org.default_workspace_id.clone()),
        ("created", time(org.create_time.as_ref())),
    ];
    if let Some(caller_role) = caller_role {
        fields.push(("your role", caller_role));
    }
    View::record(org.id.clone(), fields)
}

type Tenancy = pb::tenancy_service_client::TenancyServiceClient<super::client::Channel>;

async fn members(command: MembersCommand, tenancy: &mut Tenancy, out: Output) -> Outcome {
    match command {
        MembersCommand::List => {
            let listed = tenancy
                .list_org_members(pb::ListOrgMembersRequest::default())
                .await?
                .into_inner();
            let view = View::table(
                vec!["USER", "EMAIL", "ROLE", "SINCE"],
                &listed.members,
                member_row,
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
        MembersCommand::Add { who, user_id, role } => {
            let user = if user_id {
                pb::add_org_member_request::User::UserId(who)
            } else {
                pb::add_org_member_request::User::Email(who)
            };
            let added = tenancy
                .add_org_member(pb::AddOrgMemberRequest {
                    user: Some(user),
                    role: pb::OrgRole::from(role) as i32,
                })
                .await?
                .into_inner();
            let view = member_record(added.member.as_ref());
            out.show(&added, view)
        }
        MembersCommand::Role { user_id, role } => {
            let updated = tenancy
                .update_org_member_role(pb::UpdateOrgMemberRoleRequest {
                    user_id,
                    role: pb::OrgRole::from(role) as i32,
                })
                .await?
                .into_inner();
            let view = member_record(updated.member.as_ref());
            out.show(&updated, view)
        }
        MembersCommand::Remove { user_id } => {
            let removed = tenancy
                .remove_org_member(pb::RemoveOrgMemberRequest {
                    user_id: user_id.clone(),
                })
                .await?
                .into_inner();
            out.show(
                &removed,
                View::record(user_id.clone(), vec![("removed", user_id)]),
            )
        }
    }
}

fn member_row(member: &pb::OrgMember) -> Vec<String> {
    let user = member.user.clone().unwrap_or_default();
    vec![
        user.id,
        user.email,
        role(member.role),
        time(member.create_time.as_ref()),
    ]
}

fn member_record(member: Option<&pb::OrgMember>) -> View {
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
