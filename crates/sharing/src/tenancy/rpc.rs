//! TenancyService: orgs, workspaces, members, projects, API keys, audit.
//! Who may do what is decided in `rules`; the SQL lives in `storage`.

use agentshare_kit::Error;
use agentshare_kit::clock::{micros_of, timestamp};
use agentshare_kit::identity::{API_KEY_PREFIX, Principal, random_token, secret_digest};
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_proto::sharing::v1 as pb;
use pb::tenancy_service_server::TenancyService;

use crate::access::rules::scope;
use crate::common::Storage;
use crate::tenancy::rules::{self, OrgRole, Reach, WorkspaceRole};
use crate::tenancy::storage::api_keys;
use crate::tenancy::storage::audit;
use crate::tenancy::storage::members;
use crate::tenancy::storage::orgs::{OrgRow, WorkspaceRow};
use crate::tenancy::storage::projects;
use crate::tenancy::storage::workspaces::{
    Membership, OrgMembership, VisibleWorkspace, WorkspaceMemberRow,
};

#[derive(Clone)]
pub struct Tenancy {
    pub storage: Storage,
    /// How recent a second factor must be for privileged mutations.
    pub step_up_max_age_secs: i64,
}

fn org_to_proto(org: OrgRow) -> pb::Org {
    pb::Org {
        id: org.id,
        name: org.name,
        workspaces_enabled: org.workspaces_enabled,
        default_workspace_id: org.default_workspace_id,
        create_time: Some(timestamp(org.created_at)),
        policy: Some(pb::OrgPolicy {
            forbid_delegate_grants: org.policy.forbid_delegate_grants,
            forbid_external_grants: org.policy.forbid_external_grants,
            forbid_shared_integrations: org.policy.forbid_shared_integrations,
            runs_per_minute_per_principal: i32::try_from(org.policy.runs_per_minute_per_principal)
                .unwrap_or(i32::MAX),
        }),
    }
}

fn api_key_to_proto(key: api_keys::ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id,
        user_id: key.user_id,
        org_id: key.org_id,
        default_workspace_id: key.default_workspace_id,
        label: key.label,
        prefix: key.prefix,
        create_time: Some(timestamp(key.created_at)),
        last_use_time: key.last_used_at.map(timestamp),
        expire_time: key.expires_at.map(timestamp),
        revoke_time: key.revoked_at.map(timestamp),
    }
}

/// A credential kind as the audit trail stores it.
fn credential_to_proto(kind: &str) -> pb::CredentialKind {
    match kind {
        "session" => pb::CredentialKind::Session,
        "api_key" => pb::CredentialKind::ApiKey,
        "grant_token" => pb::CredentialKind::GrantToken,
        "service" => pb::CredentialKind::Service,
        _ => pb::CredentialKind::Unspecified,
    }
}

fn audit_to_proto(row: audit::AuditRow) -> pb::AuditEvent {
    let credential_kind = credential_to_proto(&row.credential_kind);
    pb::AuditEvent {
        id: row.id,
        org_id: row.org_id,
        actor_user_id: row.actor_user_id,
        credential_kind: credential_kind.into(),
        action: row.action,
        target_type: row.target_type,
        target_id: row.target_id,
        before_json: row.before_json,
        after_json: row.after_json,
        occur_time: Some(timestamp(row.occurred_at)),
    }
}

fn membership_to_proto(visible: VisibleWorkspace) -> pb::WorkspaceMembership {
    pb::WorkspaceMembership {
        role: workspace_role_proto(visible.role.as_deref()).into(),
        workspace: Some(workspace_to_proto(visible.workspace)),
    }
}

fn org_membership_to_proto(membership: OrgMembership) -> pb::OrgMembership {
    pb::OrgMembership {
        role: org_role_proto(OrgRole::parse(&membership.role)).into(),
        org: Some(org_to_proto(membership.org)),
    }
}

fn org_role_proto(role: Option<OrgRole>) -> pb::OrgRole {
    role.map_or(pb::OrgRole::Unspecified, OrgRole::to_proto)
}

fn workspace_role_proto(role: Option<&str>) -> pb::WorkspaceRole {
    role.and_then(WorkspaceRole::parse)
        .map_or(pb::WorkspaceRole::Unspecified, WorkspaceRole::to_proto)
}

fn member_to_proto(member: members::MemberRow) -> pb::OrgMember {
    pb::OrgMember {
        user: Some(user_to_proto(member.user)),
        role: member.role.to_proto().into(),
        create_time: Some(timestamp(member.joined_at)),
    }
}

fn user_to_proto(user: members::UserRow) -> pb::User {
    pb::User {
        id: user.id,
        email: user.email,
        display_name: user.display_name,
        create_time: Some(timestamp(user.created_at)),
    }
}

pub(crate) fn workspace_to_proto(workspace: WorkspaceRow) -> pb::Workspace {
    pb::Workspace {
        id: workspace.id,
        org_id: workspace.org_id,
        name: workspace.name,
        is_default: workspace.is_default,
        create_time: Some(timestamp(workspace.created_at)),
    }
}

fn project_to_proto(project: projects::ProjectRow) -> pb::Project {
    pb::Project {
        id: project.id,
        org_id: project.org_id,
        home_workspace_id: project.home_workspace_id,
        owner_user_id: project.owner_user_id,
        name: project.name,
        description: project.description,
        revision: project.revision,
        create_time: Some(timestamp(project.created_at)),
        update_time: Some(timestamp(project.updated_at)),
    }
}

fn workspace_member_to_proto(member: WorkspaceMemberRow) -> pb::WorkspaceMember {
    pb::WorkspaceMember {
        user: Some(user_to_proto(member.user)),
        role: workspace_role_proto(Some(&member.role)).into(),
        create_time: Some(timestamp(member.joined_at)),
    }
}

fn last_owner() -> Error {
    Error::FailedPrecondition(
        "that would leave the org without an owner: make someone else owner first".into(),
    )
}

fn stale_project(project: &projects::ProjectRow) -> Error {
    Error::Aborted(format!(
        "project {} changed since you read it (revision {}): read it again and retry",
        project.id, project.revision
    ))
}

impl Tenancy {
    /// Privileged mutations need a fresh second factor.
    fn step_up(&self, caller: &Principal) -> Result<(), Error> {
        rules::require_step_up(
            caller,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )
    }

    async fn org(&self, org_id: &str) -> Result<OrgRow, Error> {
        self.storage
            .tenancy
            .org(org_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))
    }

    /// The org and the user's role in it; NOT_FOUND alike for an org that
    /// does not exist and one they are not a member of.
    async fn org_of_member(&self, org_id: &str, user: &str) -> Result<(OrgRole, OrgRow), Error> {
        let role = self
            .storage
            .tenancy
            .org_role(org_id, user)
            .await?
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))?;
        Ok((role, self.org(org_id).await?))
    }

    /// The org of a member-management call, and the caller's role, once the
    /// caller is an owner or admin with a fresh second factor.
    fn member_admin<'p>(&self, caller: &'p Principal) -> Result<(&'p str, OrgRole), Error> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        let role = rules::require_org_admin(caller)?;
        self.step_up(caller)?;
        Ok((org_id, role))
    }

    /// A member of the org, or NOT_FOUND exactly as for a user who is not.
    async fn member_of(&self, org_id: &str, user_id: &str) -> Result<members::MemberRow, Error> {
        let user_id = ids::parse("user_id", user_id)?;
        self.storage
            .tenancy
            .org_member(org_id, &user_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("member {user_id}")))
    }

    /// A workspace of the org the user may see (any when `all`), or
    /// NOT_FOUND.
    async fn visible_workspace(
        &self,
        org_id: &str,
        workspace_id: &str,
        user: &str,
        all: bool,
    ) -> Result<VisibleWorkspace, Error> {
        self.storage
            .tenancy
            .workspace_visible_to(org_id, workspace_id, user, all)
            .await?
            .ok_or_else(|| Error::not_found(format!("workspace {workspace_id}")))
    }

    /// The org and workspace of a call that changes a workspace, once the
    /// caller is no org viewer, passes `rule` (given whether they run the
    /// org and their role in the workspace) and has a fresh second factor.
    /// A workspace the caller cannot see is NOT_FOUND.
    async fn changeable_workspace<'p>(
        &self,
        caller: &'p Principal,
        workspace_id: &str,
        rule: fn(bool, Option<WorkspaceRole>) -> Result<(), Error>,
    ) -> Result<(&'p str, VisibleWorkspace), Error> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let workspace_id = ids::parse("workspace_id", workspace_id)?;
        rules::may_change_workspaces(caller)?;
        let org_admin = rules::manages_org(caller);
        let workspace = self
            .visible_workspace(org_id, &workspace_id, user, org_admin)
            .await?;
        rule(
            org_admin,
            workspace.role.as_deref().and_then(WorkspaceRole::parse),
        )?;
        self.step_up(caller)?;
        Ok((org_id, workspace))
    }

    /// The org and workspace of a workspace-membership call: the caller is
    /// an org owner or admin, or an owner or admin of the workspace.
    async fn workspace_admin<'p>(
        &self,
        caller: &'p Principal,
        workspace_id: &str,
    ) -> Result<(&'p str, VisibleWorkspace), Error> {
        self.changeable_workspace(caller, workspace_id, rules::may_manage_workspace_members)
            .await
    }

    /// One member of a workspace, or NOT_FOUND.
    async fn workspace_member(
        &self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<WorkspaceMemberRow, Error> {
        self.storage
            .tenancy
            .workspace_member(workspace_id, user_id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("member {user_id} of workspace {workspace_id}"))
            })
    }

    /// A project the caller can see, or NOT_FOUND.
    async fn project(
        &self,
        caller: &Principal,
        project_id: &str,
    ) -> Result<projects::ProjectRow, Error> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let project_id = ids::parse("project_id", project_id)?;
        let viewer = projects::Viewer {
            org_id,
            user_id: user,
            workspaces_enabled: caller.workspaces_enabled,
        };
        self.storage
            .tenancy
            .visible_project(&viewer, &project_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("project {project_id}")))
    }

    /// A project the caller may change.
    async fn managed_project(
        &self,
        caller: &Principal,
        project_id: &str,
    ) -> Result<projects::ProjectRow, Error> {
        let project = self.project(caller, project_id).await?;
        rules::require_project_manager(caller, &project.owner_user_id)?;
        Ok(project)
    }

    /// The home and `listed` workspaces the caller can access, home first.
    async fn accessible_workspaces(
        &self,
        caller: &Principal,
        project: &projects::ProjectRow,
        listed: &[String],
    ) -> Result<Vec<pb::Workspace>, Error> {
        let user = caller.require_user()?;
        let mut out = Vec::new();
        for id in std::iter::once(&project.home_workspace_id).chain(listed) {
            if let Some(visible) = self
                .storage
                .tenancy
                .workspace_visible_to(&project.org_id, id, user, false)
                .await?
            {
                out.push(workspace_to_proto(visible.workspace));
            }
        }
        Ok(out)
    }

    /// How the caller stands to each workspace they ask to list a project
    /// in: those listed already are known from `listed`.
    async fn reach(
        &self,
        org_id: &str,
        user: &str,
        listed: &[(String, bool)],
        requested: Vec<String>,
    ) -> Result<Vec<(String, Reach)>, Error> {
        let tenancy = &self.storage.tenancy;
        let mut out = Vec::new();
        for id in requested {
            let reach = match listed.iter().find(|(listed, _)| *listed == id) {
                Some((_, true)) => Reach::Member,
                Some((_, false)) => Reach::Outsider,
                None if !tenancy.workspace_exists(org_id, &id).await? => Reach::Missing,
                None if tenancy.is_workspace_member(org_id, &id, user).await? => Reach::Member,
                None => Reach::Outsider,
            };
            out.push((id, reach));
        }
        Ok(out)
    }
}

/// The TenancyService handlers, one per unary call.
impl Tenancy {
    async fn create_org(
        &self,
        caller: Principal,
        request: pb::CreateOrgRequest,
    ) -> agentshare_kit::Result<pb::CreateOrgResponse> {
        let user = caller.require_user()?;
        let name = rules::display_name("name", &request.name)?;
        let (org, workspace) = self.storage.tenancy.create_org(&name, user).await?;
        Ok(pb::CreateOrgResponse {
            org: Some(org_to_proto(org)),
            default_workspace: Some(workspace_to_proto(workspace)),
        })
    }

    async fn get_org(
        &self,
        caller: Principal,
        request: pb::GetOrgRequest,
    ) -> agentshare_kit::Result<pb::GetOrgResponse> {
        let user = caller.require_user()?;
        let org_id = match request.org_id.as_str() {
            "" => caller.require_org()?.to_string(),
            named => ids::parse("org_id", named)?,
        };
        let (role, org) = self.org_of_member(&org_id, user).await?;
        Ok(pb::GetOrgResponse {
            org: Some(org_to_proto(org)),
            caller_role: role.to_proto().into(),
        })
    }

    async fn create_api_key(
        &self,
        caller: Principal,
        request: pb::CreateApiKeyRequest,
    ) -> agentshare_kit::Result<pb::CreateApiKeyResponse> {
        rules::may_create_api_key(&caller)?;
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let label = rules::display_name("label", &request.label)?;
        let now = self.storage.clock.now_micros();
        let expires_at = rules::expiry(request.expire_time.as_ref(), now)?;
        let org = self.org(org_id).await?;
        let preferred = caller.workspace_id.as_deref();
        let requested = &request.default_workspace_id;
        let workspace =
            scope::workspace_of(&self.storage, &org, user, requested, preferred).await?;
        let workspace = rules::key_workspace(workspace)?;
        let secret = format!("{API_KEY_PREFIX}{}", random_token()?);
        let prefix: String = secret.chars().take(api_keys::SHOWN_PREFIX_CHARS).collect();
        let key = api_keys::NewApiKey {
            user_id: user,
            org_id,
            default_workspace_id: &workspace,
            label: &label,
            prefix: &prefix,
            secret_digest: &secret_digest(&secret),
            expires_at,
        };
        let key = self.storage.tenancy.create_api_key(&caller, key).await?;
        Ok(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
            secret,
        })
    }

    async fn list_api_keys(
        &self,
        caller: Principal,
        request: pb::ListApiKeysRequest,
    ) -> agentshare_kit::Result<pb::ListApiKeysResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let listing = format!("api-keys:{org_id}:{user}");
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let keys = self.storage.tenancy.api_keys_of(user, org_id, &page);
        let (api_keys, next_page_token) =
            page.answer(keys.await?, |key| key.id.clone(), api_key_to_proto);
        Ok(pb::ListApiKeysResponse {
            api_keys,
            next_page_token,
        })
    }

    async fn revoke_api_key(
        &self,
        caller: Principal,
        request: pb::RevokeApiKeyRequest,
    ) -> agentshare_kit::Result<pb::RevokeApiKeyResponse> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        let id = &request.api_key_id;
        let key = self
            .storage
            .tenancy
            .revoke_api_key(&caller, org_id, id)
            .await?;
        let key = key.ok_or_else(|| Error::not_found(format!("API key {id}")))?;
        Ok(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
        })
    }

    async fn update_org(
        &self,
        caller: Principal,
        request: pb::UpdateOrgRequest,
    ) -> agentshare_kit::Result<pb::UpdateOrgResponse> {
        let user = caller.require_user()?;
        let org_id = match request.org_id.as_str() {
            "" => caller.require_org()?,
            named => named,
        };
        let (role, before) = self.org_of_member(org_id, user).await?;
        rules::may_update_org(role)?;
        let name = request
            .name
            .as_deref()
            .map(|n| rules::display_name("name", n))
            .transpose()?;
        if let Some(enabled) = request.workspaces_enabled
            && enabled != before.workspaces_enabled
        {
            rules::may_switch_workspaces(role)?;
            self.step_up(&caller)?;
        }
        let policy = request.policy.as_ref().map(rules::policy_of).transpose()?;
        if policy.is_some_and(|p| p != before.policy) {
            rules::may_set_policy(role)?;
            self.step_up(&caller)?;
        }
        let enabled = request.workspaces_enabled;
        let org = self
            .storage
            .tenancy
            .update_org(&caller, &before, name.as_deref(), enabled, policy)
            .await?;
        Ok(pb::UpdateOrgResponse {
            org: Some(org_to_proto(org)),
        })
    }

    async fn create_workspace(
        &self,
        caller: Principal,
        request: pb::CreateWorkspaceRequest,
    ) -> agentshare_kit::Result<pb::CreateWorkspaceResponse> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        rules::require_org_admin(&caller)?;
        self.step_up(&caller)?;
        let name = rules::display_name("name", &request.name)?;
        rules::workspaces_on(caller.workspaces_enabled)?;
        let workspace = self
            .storage
            .tenancy
            .create_workspace(&caller, org_id, &name)
            .await?;
        Ok(pb::CreateWorkspaceResponse {
            workspace: Some(workspace_to_proto(workspace)),
        })
    }

    async fn get_workspace(
        &self,
        caller: Principal,
        request: pb::GetWorkspaceRequest,
    ) -> agentshare_kit::Result<pb::GetWorkspaceResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let id = ids::parse("workspace_id", &request.workspace_id)?;
        let sees_all = rules::manages_org(&caller);
        let workspace = self.visible_workspace(org_id, &id, user, sees_all).await?;
        Ok(pb::GetWorkspaceResponse {
            workspace: Some(membership_to_proto(workspace)),
        })
    }

    async fn list_workspaces(
        &self,
        caller: Principal,
        request: pb::ListWorkspacesRequest,
    ) -> agentshare_kit::Result<pb::ListWorkspacesResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let listing = format!("workspaces:{org_id}:{user}");
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let sees_all = rules::manages_org(&caller);
        let rows = self
            .storage
            .tenancy
            .workspace_page(org_id, user, sees_all, &page);
        let key = |row: &VisibleWorkspace| row.workspace.id.clone();
        let (workspaces, next_page_token) = page.answer(rows.await?, key, membership_to_proto);
        Ok(pb::ListWorkspacesResponse {
            workspaces,
            next_page_token,
        })
    }

    async fn add_org_member(
        &self,
        caller: Principal,
        request: pb::AddOrgMemberRequest,
    ) -> agentshare_kit::Result<pb::AddOrgMemberResponse> {
        let (org_id, actor_role) = self.member_admin(&caller)?;
        let role = rules::org_role_of(request.role)?;
        rules::may_add_org_member(actor_role, role)?;
        let (key, by_email) = match &request.user {
            Some(pb::add_org_member_request::User::UserId(id)) => {
                (ids::parse("user_id", id)?, false)
            }
            Some(pb::add_org_member_request::User::Email(email)) if !email.trim().is_empty() => {
                (email.trim().to_string(), true)
            }
            _ => return Err(Error::invalid("user", "name the user by user_id or email")),
        };
        let user = self
            .storage
            .tenancy
            .user_by(&key, by_email)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("user {key} (they must sign in to agentshare once)"))
            })?;
        let org = self.org(org_id).await?;
        let home = &org.default_workspace_id;
        let tenancy = &self.storage.tenancy;
        if !tenancy
            .add_org_member(&caller, org_id, home, &user.id, role)
            .await?
        {
            return Err(Error::AlreadyExists(format!(
                "user {} is already a member; change their role instead",
                user.id
            )));
        }
        let member = tenancy
            .org_member(org_id, &user.id)
            .await?
            .ok_or_else(|| Error::internal("a member just added is missing"))?;
        Ok(pb::AddOrgMemberResponse {
            member: Some(member_to_proto(member)),
        })
    }

    async fn list_org_members(
        &self,
        caller: Principal,
        request: pb::ListOrgMembersRequest,
    ) -> agentshare_kit::Result<pb::ListOrgMembersResponse> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        rules::require_non_viewer(&caller, "org members other than viewers")?;
        let listing = format!("org-members:{org_id}");
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let rows = self.storage.tenancy.org_members(org_id, &page).await?;
        let (members, next_page_token) = page.answer(rows, |m| m.user.id.clone(), member_to_proto);
        Ok(pb::ListOrgMembersResponse {
            members,
            next_page_token,
        })
    }

    async fn get_me(
        &self,
        caller: Principal,
        _request: pb::GetMeRequest,
    ) -> agentshare_kit::Result<pb::GetMeResponse> {
        // The gateway refuses a share token here already; a grant's
        // principal passed on by another service is refused the same way.
        rules::not_a_grant(&caller)?;
        let user_id = caller.require_user()?;
        let user = self
            .storage
            .tenancy
            .user_by(user_id, false)
            .await?
            .ok_or_else(|| {
                Error::Unauthenticated("your user no longer exists; sign in again".into())
            })?;
        Ok(pb::GetMeResponse {
            user: Some(user_to_proto(user)),
            org_id: caller.org_id.clone().unwrap_or_default(),
            org_role: org_role_proto(caller.org_role).into(),
            workspace_id: caller.workspace_id.clone().unwrap_or_default(),
            workspaces_enabled: caller.workspaces_enabled,
            credential_kind: credential_to_proto(audit::credential_kind(&caller)).into(),
            step_up_fresh: self.step_up(&caller).is_ok(),
        })
    }

    async fn list_my_orgs(
        &self,
        caller: Principal,
        request: pb::ListMyOrgsRequest,
    ) -> agentshare_kit::Result<pb::ListMyOrgsResponse> {
        let user = caller.require_user()?;
        let listing = format!("my-orgs:{user}");
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let rows = self.storage.tenancy.orgs_of(user, &page).await?;
        let (orgs, next_page_token) =
            page.answer(rows, |row| row.org.id.clone(), org_membership_to_proto);
        Ok(pb::ListMyOrgsResponse {
            orgs,
            next_page_token,
        })
    }

    async fn switch_workspace(
        &self,
        caller: Principal,
        request: pb::SwitchWorkspaceRequest,
    ) -> agentshare_kit::Result<pb::SwitchWorkspaceResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let session = rules::switching_session(&caller)?;
        let id = ids::parse("workspace_id", &request.workspace_id)?;
        // Only a workspace the caller belongs to, whatever their org role.
        let visible = self.visible_workspace(org_id, &id, user, false).await?;
        self.storage
            .tenancy
            .switch_workspace(session, org_id, user, &id)
            .await?;
        Ok(pb::SwitchWorkspaceResponse {
            workspace: Some(workspace_to_proto(visible.workspace)),
        })
    }

    async fn update_org_member_role(
        &self,
        caller: Principal,
        request: pb::UpdateOrgMemberRoleRequest,
    ) -> agentshare_kit::Result<pb::UpdateOrgMemberRoleResponse> {
        let (org_id, actor_role) = self.member_admin(&caller)?;
        let role = rules::org_role_of(request.role)?;
        let member = self.member_of(org_id, &request.user_id).await?;
        rules::may_change_org_role(actor_role, member.role, role)?;
        let tenancy = &self.storage.tenancy;
        if let Err(members::LastOwner) = tenancy
            .change_org_role(&caller, org_id, &member, role)
            .await?
        {
            return Err(last_owner());
        }
        let member = self.member_of(org_id, &request.user_id).await?;
        Ok(pb::UpdateOrgMemberRoleResponse {
            member: Some(member_to_proto(member)),
        })
    }

    async fn remove_org_member(
        &self,
        caller: Principal,
        request: pb::RemoveOrgMemberRequest,
    ) -> agentshare_kit::Result<pb::RemoveOrgMemberResponse> {
        let (org_id, actor_role) = self.member_admin(&caller)?;
        let member = self.member_of(org_id, &request.user_id).await?;
        rules::may_remove_org_member(actor_role, member.role)?;
        let tenancy = &self.storage.tenancy;
        if let Err(members::LastOwner) = tenancy.remove_org_member(&caller, org_id, &member).await?
        {
            return Err(last_owner());
        }
        Ok(pb::RemoveOrgMemberResponse {})
    }

    async fn add_workspace_member(
        &self,
        caller: Principal,
        request: pb::AddWorkspaceMemberRequest,
    ) -> agentshare_kit::Result<pb::AddWorkspaceMemberResponse> {
        let (org_id, visible) = self.workspace_admin(&caller, &request.workspace_id).await?;
        let workspace_id = &visible.workspace.id;
        let role = rules::workspace_role_of(request.role)?;
        let user_id = ids::parse("user_id", &request.user_id)?;
        let member = Membership {
            org_id,
            workspace_id,
            user_id: &user_id,
        };
        let tenancy = &self.storage.tenancy;
        if tenancy.org_role(org_id, &user_id).await?.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "user {user_id} is not a member of this org: add them to the org first"
            )));
        }
        if !tenancy
            .add_workspace_member(&caller, member, role.as_str())
            .await?
        {
            return Err(Error::AlreadyExists(format!(
                "user {user_id} is already in this workspace"
            )));
        }
        let member = tenancy
            .workspace_member(workspace_id, &user_id)
            .await?
            .ok_or_else(|| Error::internal("a workspace member just added is missing"))?;
        Ok(pb::AddWorkspaceMemberResponse {
            member: Some(workspace_member_to_proto(member)),
        })
    }

    async fn list_workspace_members(
        &self,
        caller: Principal,
        request: pb::ListWorkspaceMembersRequest,
    ) -> agentshare_kit::Result<pb::ListWorkspaceMembersResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let workspace_id = ids::parse("workspace_id", &request.workspace_id)?;
        let sees_all = rules::manages_org(&caller);
        let tenancy = &self.storage.tenancy;
        if tenancy
            .workspace_visible_to(org_id, &workspace_id, user, sees_all)
            .await?
            .is_none()
        {
            return Err(if tenancy.workspace_exists(org_id, &workspace_id).await? {
                Error::PermissionDenied(
                    "only the workspace's members and org admins list its members".into(),
                )
            } else {
                Error::not_found(format!("workspace {workspace_id}"))
            });
        }
        let listing = format!("workspace-members:{workspace_id}");
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let rows = tenancy.workspace_members(&workspace_id, &page).await?;
        let (members, next_page_token) =
            page.answer(rows, |m| m.user.id.clone(), workspace_member_to_proto);
        Ok(pb::ListWorkspaceMembersResponse {
            members,
            next_page_token,
        })
    }

    async fn remove_workspace_member(
        &self,
        caller: Principal,
        request: pb::RemoveWorkspaceMemberRequest,
    ) -> agentshare_kit::Result<pb::RemoveWorkspaceMemberResponse> {
        let (org_id, visible) = self.workspace_admin(&caller, &request.workspace_id).await?;
        let workspace_id = &visible.workspace.id;
        let user_id = ids::parse("user_id", &request.user_id)?;
        let member = Membership {
            org_id,
            workspace_id,
            user_id: &user_id,
        };
        if !self
            .storage
            .tenancy
            .remove_workspace_member(&caller, member)
            .await?
        {
            return Err(Error::not_found(format!(
                "member {user_id} of workspace {workspace_id}"
            )));
        }
        Ok(pb::RemoveWorkspaceMemberResponse {})
    }

    async fn update_workspace(
        &self,
        caller: Principal,
        request: pb::UpdateWorkspaceRequest,
    ) -> agentshare_kit::Result<pb::UpdateWorkspaceResponse> {
        let (_, visible) = self.workspace_admin(&caller, &request.workspace_id).await?;
        let mut workspace = visible.workspace;
        if let Some(name) = request.name.as_deref() {
            let name = rules::display_name("name", name)?;
            workspace = self
                .storage
                .tenancy
                .rename_workspace(&caller, &workspace, &name)
                .await?;
        }
        Ok(pb::UpdateWorkspaceResponse {
            workspace: Some(workspace_to_proto(workspace)),
        })
    }

    async fn delete_workspace(
        &self,
        caller: Principal,
        request: pb::DeleteWorkspaceRequest,
    ) -> agentshare_kit::Result<pb::DeleteWorkspaceResponse> {
        let (_, visible) = self
            .changeable_workspace(&caller, &request.workspace_id, rules::may_delete_workspace)
            .await?;
        rules::deletable_workspace(visible.workspace.is_default)?;
        self.storage
            .tenancy
            .delete_workspace(&caller, &visible.workspace)
            .await?;
        Ok(pb::DeleteWorkspaceResponse {})
    }

    async fn update_workspace_member_role(
        &self,
        caller: Principal,
        request: pb::UpdateWorkspaceMemberRoleRequest,
    ) -> agentshare_kit::Result<pb::UpdateWorkspaceMemberRoleResponse> {
        let (org_id, visible) = self.workspace_admin(&caller, &request.workspace_id).await?;
        let workspace_id = &visible.workspace.id;
        let role = rules::workspace_role_of(request.role)?;
        let user_id = ids::parse("user_id", &request.user_id)?;
        let member = Membership {
            org_id,
            workspace_id,
            user_id: &user_id,
        };
        let caller_is_owner = rules::acts_as_workspace_owner(
            rules::manages_org(&caller),
            visible.role.as_deref().and_then(WorkspaceRole::parse),
        );
        let current = self.workspace_member(workspace_id, &user_id).await?;
        let current_role = WorkspaceRole::parse(&current.role);
        rules::may_change_workspace_role(caller_is_owner, current_role, role)?;
        self.storage
            .tenancy
            .change_workspace_role(&caller, member, role.as_str())
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("member {user_id} of workspace {workspace_id}"))
            })?;
        Ok(pb::UpdateWorkspaceMemberRoleResponse {
            member: Some(workspace_member_to_proto(WorkspaceMemberRow {
                role: role.as_str().to_string(),
                ..current
            })),
        })
    }

    async fn create_project(
        &self,
        caller: Principal,
        request: pb::CreateProjectRequest,
    ) -> agentshare_kit::Result<pb::CreateProjectResponse> {
        let user = caller.require_user()?;
        let org_id = caller.require_org()?;
        let home = rules::project_home(&caller)?;
        let name = rules::display_name("name", &request.name)?;
        let description = rules::description("description", &request.description)?;
        let now = self.storage.clock.now_micros();
        let project = projects::new_project(org_id, home, user, name, description, now);
        self.storage.tenancy.create_project(&project).await?;
        Ok(pb::CreateProjectResponse {
            project: Some(project_to_proto(project)),
        })
    }

    async fn get_project(
        &self,
        caller: Principal,
        request: pb::GetProjectRequest,
    ) -> agentshare_kit::Result<pb::GetProjectResponse> {
        let project = self.project(&caller, &request.project_id).await?;
        Ok(pb::GetProjectResponse {
            project: Some(project_to_proto(project)),
        })
    }

    async fn list_projects(
        &self,
        caller: Principal,
        request: pb::ListProjectsRequest,
    ) -> agentshare_kit::Result<pb::ListProjectsResponse> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        let workspace = caller.workspace_id.as_deref();
        let listing = format!("projects:{org_id}:{}", workspace.unwrap_or_default());
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        // A null workspace scope sees nothing.
        let Some(workspace) = workspace else {
            return Ok(pb::ListProjectsResponse::default());
        };
        let rows = self.storage.tenancy.projects_in(org_id, workspace, &page);
        let (projects, next_page_token) =
            page.answer(rows.await?, |p| p.id.clone(), project_to_proto);
        Ok(pb::ListProjectsResponse {
            projects,
            next_page_token,
        })
    }

    async fn update_project(
        &self,
        caller: Principal,
        request: pb::UpdateProjectRequest,
    ) -> agentshare_kit::Result<pb::UpdateProjectResponse> {
        let mut project = self.managed_project(&caller, &request.project_id).await?;
        let expected = request.expected_revision.unwrap_or(project.revision);
        if expected != project.revision {
            return Err(stale_project(&project));
        }
        if let Some(name) = request.name.as_deref() {
            project.name = rules::display_name("name", name)?;
        }
        if let Some(description) = request.description.as_deref() {
            project.description = rules::description("description", description)?;
        }
        project.updated_at = self.storage.clock.now_micros();
        if !self
            .storage
            .tenancy
            .update_project(&project, expected)
            .await?
        {
            return Err(stale_project(&project));
        }
        project.revision = expected + 1;
        Ok(pb::UpdateProjectResponse {
            project: Some(project_to_proto(project)),
        })
    }

    async fn delete_project(
        &self,
        caller: Principal,
        request: pb::DeleteProjectRequest,
    ) -> agentshare_kit::Result<pb::DeleteProjectResponse> {
        let project = self.managed_project(&caller, &request.project_id).await?;
        self.storage.tenancy.delete_project(&project.id).await?;
        Ok(pb::DeleteProjectResponse {})
    }

    async fn get_project_workspaces(
        &self,
        caller: Principal,
        request: pb::GetProjectWorkspacesRequest,
    ) -> agentshare_kit::Result<pb::GetProjectWorkspacesResponse> {
        let project = self.project(&caller, &request.project_id).await?;
        let tenancy = &self.storage.tenancy;
        let listed = tenancy.project_workspace_ids(&project.id).await?;
        let workspaces = self
            .accessible_workspaces(&caller, &project, &listed)
            .await?;
        Ok(pb::GetProjectWorkspacesResponse {
            home_workspace_id: project.home_workspace_id,
            workspaces,
        })
    }

    async fn set_project_workspaces(
        &self,
        caller: Principal,
        request: pb::SetProjectWorkspacesRequest,
    ) -> agentshare_kit::Result<pb::SetProjectWorkspacesResponse> {
        let project = self.managed_project(&caller, &request.project_id).await?;
        self.step_up(&caller)?;
        let user = caller.require_user()?;
        let home = &project.home_workspace_id;
        let requested = rules::requested_workspaces(&request.workspace_ids, home)?;
        let tenancy = &self.storage.tenancy;
        let before = tenancy.project_workspace_ids(&project.id).await?;
        let mut listed = Vec::new();
        for id in &before {
            let visible = tenancy
                .is_workspace_member(&project.org_id, id, user)
                .await?;
            listed.push((id.clone(), visible));
        }
        let requested = self
            .reach(&project.org_id, user, &listed, requested)
            .await?;
        let change = rules::change_list(&listed, &requested)?;
        tenancy
            .set_project_workspaces(&caller, &project, &before, &change.after)
            .await?;
        let workspaces = self
            .accessible_workspaces(&caller, &project, &change.after)
            .await?;
        Ok(pb::SetProjectWorkspacesResponse {
            workspaces,
            added_workspace_ids: change.added,
            removed_workspace_ids: change.removed,
        })
    }

    async fn list_audit_events(
        &self,
        caller: Principal,
        request: pb::ListAuditEventsRequest,
    ) -> agentshare_kit::Result<pb::ListAuditEventsResponse> {
        caller.require_user()?;
        let org_id = caller.require_org()?;
        rules::may_read_audit(rules::org_role(&caller))?;
        let listing = format!(
            "audit:{org_id}:{}:{}:{:?}:{:?}",
            request.actor_user_id, request.target_id, request.start_time, request.end_time
        );
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let actor_user_id = ids::parse_optional("actor_user_id", &request.actor_user_id)?;
        let target_id = ids::parse_optional("target_id", &request.target_id)?;
        let filter = audit::Filter {
            org_id,
            actor_user_id: &actor_user_id,
            target_id: &target_id,
            from_micros: request.start_time.as_ref().map(micros_of),
            until_micros: request.end_time.as_ref().map(micros_of),
        };
        let rows = self.storage.tenancy.audit_events(filter, &page).await?;
        let (events, next_page_token) = page.answer(rows, |row| row.id.clone(), audit_to_proto);
        Ok(pb::ListAuditEventsResponse {
            events,
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl TenancyService for Tenancy {
    agentshare_kit::handlers! {
        create_org(pb::CreateOrgRequest) -> pb::CreateOrgResponse;
        get_org(pb::GetOrgRequest) -> pb::GetOrgResponse;
        create_api_key(pb::CreateApiKeyRequest) -> pb::CreateApiKeyResponse;
        list_api_keys(pb::ListApiKeysRequest) -> pb::ListApiKeysResponse;
        revoke_api_key(pb::RevokeApiKeyRequest) -> pb::RevokeApiKeyResponse;
        update_org(pb::UpdateOrgRequest) -> pb::UpdateOrgResponse;
        create_workspace(pb::CreateWorkspaceRequest) -> pb::CreateWorkspaceResponse;
        get_workspace(pb::GetWorkspaceRequest) -> pb::GetWorkspaceResponse;
        list_workspaces(pb::ListWorkspacesRequest) -> pb::ListWorkspacesResponse;
        add_org_member(pb::AddOrgMemberRequest) -> pb::AddOrgMemberResponse;
        list_org_members(pb::ListOrgMembersRequest) -> pb::ListOrgMembersResponse;
        get_me(pb::GetMeRequest) -> pb::GetMeResponse;
        list_my_orgs(pb::ListMyOrgsRequest) -> pb::ListMyOrgsResponse;
        switch_workspace(pb::SwitchWorkspaceRequest) -> pb::SwitchWorkspaceResponse;
        update_org_member_role(pb::UpdateOrgMemberRoleRequest) -> pb::UpdateOrgMemberRoleResponse;
        remove_org_member(pb::RemoveOrgMemberRequest) -> pb::RemoveOrgMemberResponse;
        add_workspace_member(pb::AddWorkspaceMemberRequest) -> pb::AddWorkspaceMemberResponse;
        list_workspace_members(pb::ListWorkspaceMembersRequest) -> pb::ListWorkspaceMembersResponse;
        remove_workspace_member(pb::RemoveWorkspaceMemberRequest) -> pb::RemoveWorkspaceMemberResponse;
        update_workspace(pb::UpdateWorkspaceRequest) -> pb::UpdateWorkspaceResponse;
        delete_workspace(pb::DeleteWorkspaceRequest) -> pb::DeleteWorkspaceResponse;
        update_workspace_member_role(pb::UpdateWorkspaceMemberRoleRequest) -> pb::UpdateWorkspaceMemberRoleResponse;
        create_project(pb::CreateProjectRequest) -> pb::CreateProjectResponse;
        get_project(pb::GetProjectRequest) -> pb::GetProjectResponse;
        list_projects(pb::ListProjectsRequest) -> pb::ListProjectsResponse;
        update_project(pb::UpdateProjectRequest) -> pb::UpdateProjectResponse;
        delete_project(pb::DeleteProjectRequest) -> pb::DeleteProjectResponse;
        get_project_workspaces(pb::GetProjectWorkspacesRequest) -> pb::GetProjectWorkspacesResponse;
        set_project_workspaces(pb::SetProjectWorkspacesRequest) -> pb::SetProjectWorkspacesResponse;
        list_audit_events(pb::ListAuditEventsRequest) -> pb::ListAuditEventsResponse;
    }
}
