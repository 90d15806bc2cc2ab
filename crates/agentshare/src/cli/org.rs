//! `agentshare me` and `agentshare org ...`: who you are, your orgs and
//! their members (TenancyService).

use agentshare_proto::sharing::v1 as pb;

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::member::{Member, member_record, members_table, user_record};
use super::output::{Output, View, time, word};

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
    /// Show the org's policy, or change it (an owner, with step-up): what
    /// you leave out keeps its value. Each change holds from the very next
    /// call.
    Policy {
        /// The org's id (default: the org your calls land in).
        org_id: Option<String>,
        /// Forbid DELEGATE grants (true): none can be created, and existing
        /// ones stop working.
        #[arg(long, value_name = "BOOL")]
        forbid_delegate_grants: Option<bool>,
        /// Forbid grants to anyone outside the org (true), anonymous
        /// visitors included.
        #[arg(long, value_name = "BOOL")]
        forbid_external_grants: Option<bool>,
        /// Forbid runs by anyone but an agent's owner that use its owner's
        /// credentials for a SHARED integration (true).
        #[arg(long, value_name = "BOOL")]
        forbid_shared_integrations: Option<bool>,
        /// Runs one user or API key may start in a minute; 0 for no limit.
        #[arg(long, value_name = "N")]
        runs_per_minute_per_principal: Option<i32>,
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
    word(value, pb::OrgRole::as_str_name, "ORG_ROLE_")
}

/// An org member as both member views read one.
fn member(member: &pb::OrgMember) -> Member<'_> {
    (
        member.user.as_ref(),
        role(member.role),
        member.create_time.as_ref(),
    )
}

/// `agentshare me`
pub async fn me(target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let me = api.tenancy().get_me(pb::GetMeRequest {}).await?;
    out.answer(me, |me| {
        user_record(
            me.user.as_ref(),
            vec![
                ("org", me.org_id.clone()),
                ("org role", role(me.org_role)),
                ("workspace", me.workspace_id.clone()),
                ("workspaces enabled", me.workspaces_enabled.to_string()),
            ],
        )
    })
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut tenancy = api.tenancy();
    match command {
        Command::Create { name } => {
            let call = tenancy.create_org(pb::CreateOrgRequest { name });
            out.answer(call.await?, |created| {
                let org = created.org.clone().unwrap_or_default();
                let workspace = created.default_workspace.clone().unwrap_or_default();
                View::record(
                    org.id.clone(),
                    vec![
                        ("org", org.id),
                        ("name", org.name),
                        ("default workspace", workspace.id),
                    ],
                )
            })
        }
        Command::Show { org_id } => {
            let org_id = org_id.unwrap_or_default();
            let call = tenancy.get_org(pb::GetOrgRequest { org_id });
            out.answer(call.await?, |shown| {
                org_record(shown.org.as_ref(), Some(role(shown.caller_role)))
            })
        }
        Command::List => {
            let call = tenancy.list_my_orgs(pb::ListMyOrgsRequest::default());
            out.answer(call.await?, |listed| {
                let orgs: Vec<(pb::Org, String)> = listed
                    .orgs
                    .iter()
                    .map(|m| (m.org.clone().unwrap_or_default(), role(m.role)))
                    .collect();
                View::table(&orgs)
                    .id("ID", |(org, _)| org.id.clone())
                    .column("NAME", |(org, _)| org.name.clone())
                    .column("ROLE", |(_, role)| role.clone())
                    .column("WORKSPACES", |(org, _)| org.workspaces_enabled.to_string())
                    .into()
            })
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
            let call = tenancy.update_org(pb::UpdateOrgRequest {
                org_id: org_id.unwrap_or_default(),
                name,
                workspaces_enabled: workspaces,
                policy: None,
            });
            out.answer(call.await?, |updated| {
                org_record(updated.org.as_ref(), None)
            })
        }
        Command::Policy {
            org_id,
            forbid_delegate_grants,
            forbid_external_grants,
            forbid_shared_integrations,
            runs_per_minute_per_principal,
        } => {
            let shown = tenancy
                .get_org(pb::GetOrgRequest {
                    org_id: org_id.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let org = shown.org.unwrap_or_default();
            let current = org.policy.unwrap_or_default();
            let policy = pb::OrgPolicy {
                forbid_delegate_grants: forbid_delegate_grants
                    .unwrap_or(current.forbid_delegate_grants),
                forbid_external_grants: forbid_external_grants
                    .unwrap_or(current.forbid_external_grants),
                forbid_shared_integrations: forbid_shared_integrations
                    .unwrap_or(current.forbid_shared_integrations),
                runs_per_minute_per_principal: runs_per_minute_per_principal
                    .unwrap_or(current.runs_per_minute_per_principal),
            };
            if policy == current {
                return out.show(&current, policy_record(&org.id, &current));
            }
            let call = tenancy.update_org(pb::UpdateOrgRequest {
                org_id: org.id.clone(),
                policy: Some(policy),
                ..Default::default()
            });
            out.answer(call.await?, |updated| {
                let org = updated.org.clone().unwrap_or_default();
                policy_record(&org.id, &org.policy.unwrap_or_default())
            })
        }
        Command::Members(command) => members(command, &mut tenancy, out).await,
    }
}

fn org_record(org: Option<&pb::Org>, caller_role: Option<String>) -> View {
    let org = org.cloned().unwrap_or_default();
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
    View::record(org.id, fields)
}

fn policy_record(org_id: &str, policy: &pb::OrgPolicy) -> View {
    let per_principal = match policy.runs_per_minute_per_principal {
        0 => "none".to_string(),
        n => n.to_string(),
    };
    View::record(
        org_id.to_string(),
        vec![
            (
                "forbid delegate grants",
                policy.forbid_delegate_grants.to_string(),
            ),
            (
                "forbid external grants",
                policy.forbid_external_grants.to_string(),
            ),
            (
                "forbid shared integrations",
                policy.forbid_shared_integrations.to_string(),
            ),
            ("runs per minute per principal", per_principal),
        ],
    )
}

type Tenancy = pb::tenancy_service_client::TenancyServiceClient<super::client::Channel>;

async fn members(command: MembersCommand, tenancy: &mut Tenancy, out: Output) -> Outcome {
    match command {
        MembersCommand::List => {
            let call = tenancy.list_org_members(pb::ListOrgMembersRequest::default());
            out.answer(call.await?, |listed| members_table(&listed.members, member))
        }
        MembersCommand::Add { who, user_id, role } => {
            let user = if user_id {
                pb::add_org_member_request::User::UserId(who)
            } else {
                pb::add_org_member_request::User::Email(who)
            };
            let call = tenancy.add_org_member(pb::AddOrgMemberRequest {
                user: Some(user),
                role: pb::OrgRole::from(role) as i32,
            });
            out.answer(call.await?, |added| {
                member_record(member(&added.member.clone().unwrap_or_default()))
            })
        }
        MembersCommand::Role { user_id, role } => {
            let call = tenancy.update_org_member_role(pb::UpdateOrgMemberRoleRequest {
                user_id,
                role: pb::OrgRole::from(role) as i32,
            });
            out.answer(call.await?, |updated| {
                member_record(member(&updated.member.clone().unwrap_or_default()))
            })
        }
        MembersCommand::Remove { user_id } => {
            let call = tenancy.remove_org_member(pb::RemoveOrgMemberRequest {
                user_id: user_id.clone(),
            });
            out.answer(call.await?, |_| {
                View::record(user_id.clone(), vec![("removed", user_id)])
            })
        }
    }
}
