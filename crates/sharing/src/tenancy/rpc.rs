//! TenancyService: orgs, workspaces, members, projects, API keys, audit.

use agentshare_kit::Error;
use agentshare_kit::clock::micros_of;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{GRANT_SCOPE_DENIED, Principal, PrincipalKind};
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_kit::rpc;
use agentshare_proto::sharing::v1 as pb;
use pb::tenancy_service_server::TenancyService;
use tonic::{Request, Response, Status};

use crate::access::rules::scope;
use crate::common::Storage;
use crate::tenancy::rules::{self, OrgRole, WorkspaceRole};
use crate::tenancy::storage::api_keys;
use crate::tenancy::storage::audit;
use crate::tenancy::storage::members;
use crate::tenancy::storage::orgs::{OrgRow, WorkspaceRow};
use crate::tenancy::storage::projects;
use agentshare_kit::identity::{API_KEY_PREFIX, random_token, secret_digest};

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

fn audit_to_proto(row: audit::AuditRow) -> pb::AuditEvent {
    let credential_kind = match row.credential_kind.as_str() {
        "session" => pb::CredentialKind::Session,
        "api_key" => pb::CredentialKind::ApiKey,
        "grant_token" => pb::CredentialKind::GrantToken,
        "service" => pb::CredentialKind::Service,
        _ => pb::CredentialKind::Unspecified,
    };
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

fn membership_to_proto(workspace: WorkspaceRow, role: Option<&str>) -> pb::WorkspaceMembership {
    pb::WorkspaceMembership {
        workspace: Some(workspace_to_proto(workspace)),
        role: workspace_role_proto(role).into(),
    }
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

impl Tenancy {
    /// The org of a member-management call, and the caller's role, once the
    /// caller is an owner or admin with a fresh second factor.
    fn member_admin<'p>(&self, principal: &'p Principal) -> Result<(&'p str, OrgRole), Error> {
        principal.require_user()?;
        let org_id = principal.require_org()?;
        let role = rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin],
            "org owners and admins",
        )?;
        rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
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
}

impl Tenancy {
    /// The org and workspace of a workspace-management call, once the
    /// caller has a fresh second factor and is an org owner or admin, or an
    /// owner or admin of the workspace. A workspace the caller cannot see is
    /// NOT_FOUND.
    async fn workspace_admin<'p>(
        &self,
        principal: &'p Principal,
        workspace_id: &str,
    ) -> Result<(&'p str, String), Error> {
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let workspace_id = ids::parse("workspace_id", workspace_id)?;
        // A workspace role never lifts an org viewer above reading.
        rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin, OrgRole::Member],
            "org members who are not viewers",
        )?;
        let org_admin = rules::manages_org(principal);
        let (_, role) = self
            .storage
            .tenancy
            .workspace_visible_to(org_id, &workspace_id, user, org_admin)
            .await?
            .ok_or_else(|| Error::not_found(format!("workspace {workspace_id}")))?;
        rules::may_manage_workspace_members(
            org_admin,
            role.as_deref().and_then(WorkspaceRole::parse),
        )?;
        rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        Ok((org_id, workspace_id))
    }
}

impl Tenancy {
    /// A workspace the caller may see, or NOT_FOUND.
    async fn workspace_row(
        &self,
        principal: &Principal,
        org_id: &str,
        workspace_id: &str,
    ) -> Result<WorkspaceRow, Error> {
        let user = principal.require_user()?;
        let org_admin = rules::manages_org(principal);
        self.storage
            .tenancy
            .workspace_visible_to(org_id, workspace_id, user, org_admin)
            .await?
            .map(|(workspace, _)| workspace)
            .ok_or_else(|| Error::not_found(format!("workspace {workspace_id}")))
    }
}

impl Tenancy {
    /// A project the caller can see, or NOT_FOUND.
    async fn project(
        &self,
        principal: &Principal,
        project_id: &str,
    ) -> Result<projects::ProjectRow, Error> {
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let project_id = ids::parse("project_id", project_id)?;
        let viewer = projects::Viewer {
            org_id,
            user_id: user,
            workspaces_enabled: principal.workspaces_enabled,
        };
        self.storage
            .tenancy
            .visible_project(&viewer, &project_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("project {project_id}")))
    }

    /// The home and `listed` workspaces the caller can access, home first.
    async fn accessible_workspaces(
        &self,
        principal: &Principal,
        project: &projects::ProjectRow,
        listed: &[String],
    ) -> Result<Vec<WorkspaceRow>, Error> {
        let user = principal.require_user()?;
        let mut out = Vec::new();
        for id in std::iter::once(&project.home_workspace_id).chain(listed) {
            if let Some((workspace, _)) = self
                .storage
                .tenancy
                .workspace_visible_to(&project.org_id, id, user, false)
                .await?
            {
                out.push(workspace);
            }
        }
        Ok(out)
    }
}

/// A project's owner, or an org owner or admin.
fn require_project_manager(
    principal: &Principal,
    project: &projects::ProjectRow,
) -> Result<(), Error> {
    let is_owner = principal.user_id.as_deref() == Some(project.owner_user_id.as_str());
    rules::may_manage_project(rules::org_role(principal), is_owner)
}

fn stale_project(project: &projects::ProjectRow) -> Error {
    Error::Aborted(format!(
        "project {} changed since you read it (revision {}): read it again and retry",
        project.id, project.revision
    ))
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

fn workspace_member_to_proto(
    member: crate::tenancy::storage::workspaces::WorkspaceMemberRow,
) -> pb::WorkspaceMember {
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

#[tonic::async_trait]
impl TenancyService for Tenancy {
    async fn create_org(
        &self,
        request: Request<pb::CreateOrgRequest>,
    ) -> Result<Response<pb::CreateOrgResponse>, Status> {
        let user = Principal::of(&request)?.require_user()?.to_string();
        let name = rules::display_name("name", &request.get_ref().name)?;
        let (org, workspace) = self
            .storage
            .tenancy
            .create_org(&name, &user)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateOrgResponse {
            org: Some(org_to_proto(org)),
            default_workspace: Some(workspace_to_proto(workspace)),
        }))
    }

    async fn get_org(
        &self,
        request: Request<pb::GetOrgRequest>,
    ) -> Result<Response<pb::GetOrgResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = match request.get_ref().org_id.as_str() {
            "" => principal.require_org()?.to_string(),
            named => ids::parse("org_id", named)?,
        };
        let org_id = org_id.as_str();
        let not_found = || Error::not_found(format!("org {org_id}"));
        let role = self
            .storage
            .tenancy
            .org_role(org_id, user)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        let org = self
            .storage
            .tenancy
            .org(org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::GetOrgResponse {
            org: Some(org_to_proto(org)),
            caller_role: role.to_proto().into(),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let principal = Principal::of(&request)?;
        if principal.api_key_id.is_some() {
            return Err(Error::PermissionDenied(
                "an API key cannot create API keys; sign in to create one".into(),
            )
            .into());
        }
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let request = request.get_ref();
        let label = rules::display_name("label", &request.label)?;
        let now = self.storage.clock.now_micros();
        let expires_at = request.expire_time.as_ref().map(micros_of);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expire_time", "must be in the future").into());
        }
        let org = self
            .storage
            .tenancy
            .org(org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))?;
        let preferred = principal.workspace_id.as_deref();
        let workspace = scope::workspace_of(
            &self.storage,
            &org,
            user,
            &request.default_workspace_id,
            preferred,
        )
        .await?;
        if workspace.is_empty() {
            return Err(Error::FailedPrecondition(
                "you belong to no workspace in this org; ask an admin to add you to one".into(),
            )
            .into());
        }
        let secret = format!("{API_KEY_PREFIX}{}", random_token()?);
        let prefix: String = secret.chars().take(api_keys::SHOWN_PREFIX_CHARS).collect();
        let key = self
            .storage
            .tenancy
            .create_api_key(
                principal,
                api_keys::NewApiKey {
                    user_id: user,
                    org_id,
                    default_workspace_id: &workspace,
                    label: &label,
                    prefix: &prefix,
                    secret_digest: &secret_digest(&secret),
                    expires_at,
                },
            )
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let user = caller.require_user()?;
            let org_id = caller.require_org()?;
            let listing = format!("api-keys:{org_id}:{user}");
            let page = Page::of(request.page_size, &request.page_token, listing)?;
            let keys = self
                .storage
                .tenancy
                .api_keys_of(user, org_id, &page)
                .await?;
            let (keys, next_page_token) = page.split(keys, |key| key.id.clone());
            Ok(pb::ListApiKeysResponse {
                api_keys: keys.into_iter().map(api_key_to_proto).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        rpc::unary(request, async |caller, request| {
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
        })
        .await
    }

    async fn update_org(
        &self,
        request: Request<pb::UpdateOrgRequest>,
    ) -> Result<Response<pb::UpdateOrgResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let org_id = match request.org_id.as_str() {
            "" => principal.require_org()?,
            named => named,
        };
        let not_found = || Error::not_found(format!("org {org_id}"));
        let role = self
            .storage
            .tenancy
            .org_role(org_id, user)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        let before = self
            .storage
            .tenancy
            .org(org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
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
            rules::require_step_up(
                principal,
                self.storage.clock.now_secs(),
                self.step_up_max_age_secs,
            )?;
        }
        let org = self
            .storage
            .tenancy
            .update_org(
                principal,
                &before,
                name.as_deref(),
                request.workspaces_enabled,
            )
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::UpdateOrgResponse {
            org: Some(org_to_proto(org)),
        }))
    }

    async fn create_workspace(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::CreateWorkspaceResponse>, Status> {
        let principal = Principal::of(&request)?;
        principal.require_user()?;
        let org_id = principal.require_org()?;
        rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin],
            "org owners and admins",
        )?;
        rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        let name = rules::display_name("name", &request.get_ref().name)?;
        if !principal.workspaces_enabled {
            return Err(Error::FailedPrecondition(
                "this org has no workspaces: an org owner turns them on with UpdateOrg(workspaces_enabled)".into(),
            )
            .into());
        }
        let workspace = self
            .storage
            .tenancy
            .create_workspace(principal, org_id, &name)
            .await
            .map_err(|e| e.into_error(&name))?;
        Ok(Response::new(pb::CreateWorkspaceResponse {
            workspace: Some(workspace_to_proto(workspace)),
        }))
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::GetWorkspaceResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let id = ids::parse("workspace_id", &request.get_ref().workspace_id)?;
        let sees_all = rules::manages_org(principal);
        let (workspace, role) = self
            .storage
            .tenancy
            .workspace_visible_to(org_id, &id, user, sees_all)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("workspace {id}")))?;
        Ok(Response::new(pb::GetWorkspaceResponse {
            workspace: Some(membership_to_proto(workspace, role.as_deref())),
        }))
    }

    async fn list_workspaces(
        &self,
        request: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let page = Page::of(
            request.get_ref().page_size,
            &request.get_ref().page_token,
            format!("workspaces:{org_id}:{user}"),
        )?;
        let sees_all = rules::manages_org(principal);
        let rows = self
            .storage
            .tenancy
            .workspaces_visible_to(org_id, user, sees_all, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |(workspace, _)| workspace.id.clone());
        Ok(Response::new(pb::ListWorkspacesResponse {
            workspaces: rows
                .into_iter()
                .map(|(workspace, role)| membership_to_proto(workspace, role.as_deref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn add_org_member(
        &self,
        request: Request<pb::AddOrgMemberRequest>,
    ) -> Result<Response<pb::AddOrgMemberResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (org_id, actor_role) = self.member_admin(principal)?;
        let request = request.get_ref();
        let role = rules::org_role_of(request.role)?;
        rules::may_add_org_member(actor_role, role)?;
        let (key, by_email) = match &request.user {
            Some(pb::add_org_member_request::User::UserId(id)) => {
                (ids::parse("user_id", id)?, false)
            }
            Some(pb::add_org_member_request::User::Email(email)) if !email.trim().is_empty() => {
                (email.trim().to_string(), true)
            }
            _ => return Err(Error::invalid("user", "name the user by user_id or email").into()),
        };
        let user = self
            .storage
            .tenancy
            .user_by(&key, by_email)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::not_found(format!("user {key} (they must sign in to agentshare once)"))
            })?;
        let org = self
            .storage
            .tenancy
            .org(org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))?;
        let added = self
            .storage
            .tenancy
            .add_org_member(principal, org_id, &org.default_workspace_id, &user.id, role)
            .await
            .map_err(Error::from)?;
        if !added {
            return Err(Error::AlreadyExists(format!(
                "user {} is already a member; change their role instead",
                user.id
            ))
            .into());
        }
        let member = self
            .storage
            .tenancy
            .org_member(org_id, &user.id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::internal("a member just added is missing"))?;
        Ok(Response::new(pb::AddOrgMemberResponse {
            member: Some(member_to_proto(member)),
        }))
    }

    async fn list_org_members(
        &self,
        request: Request<pb::ListOrgMembersRequest>,
    ) -> Result<Response<pb::ListOrgMembersResponse>, Status> {
        let principal = Principal::of(&request)?;
        principal.require_user()?;
        let org_id = principal.require_org()?;
        rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin, OrgRole::Member],
            "org members other than viewers",
        )?;
        let page = Page::of(
            request.get_ref().page_size,
            &request.get_ref().page_token,
            format!("org-members:{org_id}"),
        )?;
        let rows = self
            .storage
            .tenancy
            .org_members(org_id, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |member| member.user.id.clone());
        Ok(Response::new(pb::ListOrgMembersResponse {
            members: rows.into_iter().map(member_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::GetMeResponse>, Status> {
        let principal = Principal::of(&request)?;
        // The gateway refuses a share token here already; a grant's
        // principal passed on by another service is refused the same way.
        if principal.kind == PrincipalKind::Grant {
            return Err(Error::PermissionDenied(GRANT_SCOPE_DENIED.into()).into());
        }
        let user_id = principal.require_user()?;
        let user = self
            .storage
            .tenancy
            .user_by(user_id, false)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::Unauthenticated("your user no longer exists; sign in again".into())
            })?;
        let kind = match audit::credential_kind(principal) {
            "api_key" => pb::CredentialKind::ApiKey,
            "grant_token" => pb::CredentialKind::GrantToken,
            _ => pb::CredentialKind::Session,
        };
        let step_up_fresh = rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )
        .is_ok();
        Ok(Response::new(pb::GetMeResponse {
            user: Some(user_to_proto(user)),
            org_id: principal.org_id.clone().unwrap_or_default(),
            org_role: principal
                .org_role
                .as_deref()
                .and_then(OrgRole::parse)
                .map_or(pb::OrgRole::Unspecified, OrgRole::to_proto)
                .into(),
            workspace_id: principal.workspace_id.clone().unwrap_or_default(),
            workspaces_enabled: principal.workspaces_enabled,
            credential_kind: kind.into(),
            step_up_fresh,
        }))
    }

    async fn list_my_orgs(
        &self,
        request: Request<pb::ListMyOrgsRequest>,
    ) -> Result<Response<pb::ListMyOrgsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let page = Page::of(
            request.get_ref().page_size,
            &request.get_ref().page_token,
            format!("my-orgs:{user}"),
        )?;
        let rows = self
            .storage
            .tenancy
            .orgs_of(user, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |(org, _)| org.id.clone());
        Ok(Response::new(pb::ListMyOrgsResponse {
            orgs: rows
                .into_iter()
                .map(|(org, role)| pb::OrgMembership {
                    org: Some(org_to_proto(org)),
                    role: OrgRole::parse(&role)
                        .map_or(pb::OrgRole::Unspecified, OrgRole::to_proto)
                        .into(),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn switch_workspace(
        &self,
        request: Request<pb::SwitchWorkspaceRequest>,
    ) -> Result<Response<pb::SwitchWorkspaceResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let Some(session) = principal
            .session_id
            .as_deref()
            .filter(|_| principal.api_key_id.is_none())
        else {
            return Err(Error::FailedPrecondition(
                "SwitchWorkspace needs a session with a `sid`; send x-agentshare-workspace instead"
                    .into(),
            )
            .into());
        };
        if !principal.workspaces_enabled {
            return Err(Error::FailedPrecondition(
                "workspaces are off in this org: there is only one".into(),
            )
            .into());
        }
        let id = ids::parse("workspace_id", &request.get_ref().workspace_id)?;
        // Only a workspace the caller belongs to, whatever their org role.
        let (workspace, _) = self
            .storage
            .tenancy
            .workspace_visible_to(org_id, &id, user, false)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("workspace {id}")))?;
        self.storage
            .tenancy
            .switch_workspace(session, org_id, user, &id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::SwitchWorkspaceResponse {
            workspace: Some(workspace_to_proto(workspace)),
        }))
    }

    async fn update_org_member_role(
        &self,
        request: Request<pb::UpdateOrgMemberRoleRequest>,
    ) -> Result<Response<pb::UpdateOrgMemberRoleResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (org_id, actor_role) = self.member_admin(principal)?;
        let request = request.get_ref();
        let role = rules::org_role_of(request.role)?;
        let member = self.member_of(org_id, &request.user_id).await?;
        rules::may_change_org_role(actor_role, member.role, role)?;
        if let Err(members::LastOwner) = self
            .storage
            .tenancy
            .change_org_role(principal, org_id, &member, role)
            .await
            .map_err(Error::from)?
        {
            return Err(last_owner().into());
        }
        let member = self.member_of(org_id, &request.user_id).await?;
        Ok(Response::new(pb::UpdateOrgMemberRoleResponse {
            member: Some(member_to_proto(member)),
        }))
    }

    async fn remove_org_member(
        &self,
        request: Request<pb::RemoveOrgMemberRequest>,
    ) -> Result<Response<pb::RemoveOrgMemberResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (org_id, actor_role) = self.member_admin(principal)?;
        let member = self.member_of(org_id, &request.get_ref().user_id).await?;
        rules::may_remove_org_member(actor_role, member.role)?;
        if let Err(members::LastOwner) = self
            .storage
            .tenancy
            .remove_org_member(principal, org_id, &member)
            .await
            .map_err(Error::from)?
        {
            return Err(last_owner().into());
        }
        Ok(Response::new(pb::RemoveOrgMemberResponse {}))
    }

    async fn add_workspace_member(
        &self,
        request: Request<pb::AddWorkspaceMemberRequest>,
    ) -> Result<Response<pb::AddWorkspaceMemberResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (org_id, workspace_id) = self
            .workspace_admin(principal, &request.workspace_id)
            .await?;
        let role = rules::workspace_role_of(request.role)?;
        let user_id = ids::parse("user_id", &request.user_id)?;
        if self
            .storage
            .tenancy
            .org_role(org_id, &user_id)
            .await
            .map_err(Error::from)?
            .is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "user {user_id} is not a member of this org: add them to the org first"
            ))
            .into());
        }
        if !self
            .storage
            .tenancy
            .add_workspace_member(principal, org_id, &workspace_id, &user_id, role.as_str())
            .await
            .map_err(Error::from)?
        {
            return Err(Error::AlreadyExists(format!(
                "user {user_id} is already in this workspace"
            ))
            .into());
        }
        let member = self
            .storage
            .tenancy
            .workspace_member(&workspace_id, &user_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::internal("a workspace member just added is missing"))?;
        Ok(Response::new(pb::AddWorkspaceMemberResponse {
            member: Some(workspace_member_to_proto(member)),
        }))
    }

    async fn list_workspace_members(
        &self,
        request: Request<pb::ListWorkspaceMembersRequest>,
    ) -> Result<Response<pb::ListWorkspaceMembersResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let request = request.get_ref();
        let workspace_id = ids::parse("workspace_id", &request.workspace_id)?;
        let sees_all = rules::manages_org(principal);
        if self
            .storage
            .tenancy
            .workspace_visible_to(org_id, &workspace_id, user, sees_all)
            .await
            .map_err(Error::from)?
            .is_none()
        {
            return Err(if self
                .storage
                .tenancy
                .workspace_exists(org_id, &workspace_id)
                .await
                .map_err(Error::from)?
            {
                Error::PermissionDenied(
                    "only the workspace's members and org admins list its members".into(),
                )
            } else {
                Error::not_found(format!("workspace {workspace_id}"))
            }
            .into());
        }
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("workspace-members:{workspace_id}"),
        )?;
        let rows = self
            .storage
            .tenancy
            .workspace_members(&workspace_id, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |m| m.user.id.clone());
        Ok(Response::new(pb::ListWorkspaceMembersResponse {
            members: rows.into_iter().map(workspace_member_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn remove_workspace_member(
        &self,
        request: Request<pb::RemoveWorkspaceMemberRequest>,
    ) -> Result<Response<pb::RemoveWorkspaceMemberResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (org_id, workspace_id) = self
            .workspace_admin(principal, &request.workspace_id)
            .await?;
        let user_id = ids::parse("user_id", &request.user_id)?;
        if !self
            .storage
            .tenancy
            .remove_workspace_member(principal, org_id, &workspace_id, &user_id)
            .await
            .map_err(Error::from)?
        {
            return Err(
                Error::not_found(format!("member {user_id} of workspace {workspace_id}")).into(),
            );
        }
        Ok(Response::new(pb::RemoveWorkspaceMemberResponse {}))
    }

    async fn update_workspace(
        &self,
        request: Request<pb::UpdateWorkspaceRequest>,
    ) -> Result<Response<pb::UpdateWorkspaceResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (org_id, workspace_id) = self
            .workspace_admin(principal, &request.workspace_id)
            .await?;
        let workspace = self.workspace_row(principal, org_id, &workspace_id).await?;
        let Some(name) = request.name.as_deref() else {
            return Ok(Response::new(pb::UpdateWorkspaceResponse {
                workspace: Some(workspace_to_proto(workspace)),
            }));
        };
        let name = rules::display_name("name", name)?;
        let workspace = self
            .storage
            .tenancy
            .rename_workspace(principal, &workspace, &name)
            .await
            .map_err(|e| e.into_error(&name))?;
        Ok(Response::new(pb::UpdateWorkspaceResponse {
            workspace: Some(workspace_to_proto(workspace)),
        }))
    }

    async fn delete_workspace(
        &self,
        request: Request<pb::DeleteWorkspaceRequest>,
    ) -> Result<Response<pb::DeleteWorkspaceResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        let workspace_id = ids::parse("workspace_id", &request.workspace_id)?;
        rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin, OrgRole::Member],
            "org members who are not viewers",
        )?;
        let org_admin = rules::manages_org(principal);
        let (workspace, role) = self
            .storage
            .tenancy
            .workspace_visible_to(org_id, &workspace_id, user, org_admin)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("workspace {workspace_id}")))?;
        rules::may_delete_workspace(org_admin, role.as_deref().and_then(WorkspaceRole::parse))?;
        rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        if workspace.is_default {
            return Err(Error::FailedPrecondition(
                "the org's default workspace can never be deleted".into(),
            )
            .into());
        }
        self.storage
            .tenancy
            .delete_workspace(principal, &workspace)
            .await?;
        Ok(Response::new(pb::DeleteWorkspaceResponse {}))
    }

    async fn update_workspace_member_role(
        &self,
        request: Request<pb::UpdateWorkspaceMemberRoleRequest>,
    ) -> Result<Response<pb::UpdateWorkspaceMemberRoleResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (org_id, workspace_id) = self
            .workspace_admin(principal, &request.workspace_id)
            .await?;
        let role = rules::workspace_role_of(request.role)?;
        let user_id = ids::parse("user_id", &request.user_id)?;
        let caller = principal.require_user()?;
        let org_admin = rules::manages_org(principal);
        let caller_is_owner = org_admin
            || self
                .storage
                .tenancy
                .workspace_visible_to(org_id, &workspace_id, caller, false)
                .await
                .map_err(Error::from)?
                .is_some_and(|(_, r)| {
                    r.as_deref().and_then(WorkspaceRole::parse) == Some(WorkspaceRole::Owner)
                });
        let current = self
            .storage
            .tenancy
            .workspace_member(&workspace_id, &user_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::not_found(format!("member {user_id} of workspace {workspace_id}"))
            })?;
        rules::may_change_workspace_role(
            caller_is_owner,
            WorkspaceRole::parse(&current.role),
            role,
        )?;
        self.storage
            .tenancy
            .change_workspace_role(principal, org_id, &workspace_id, &user_id, role.as_str())
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::not_found(format!("member {user_id} of workspace {workspace_id}"))
            })?;
        Ok(Response::new(pb::UpdateWorkspaceMemberRoleResponse {
            member: Some(workspace_member_to_proto(
                crate::tenancy::storage::workspaces::WorkspaceMemberRow {
                    role: role.as_str().to_string(),
                    ..current
                },
            )),
        }))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org_id = principal.require_org()?;
        rules::require_org_role(
            principal,
            &[OrgRole::Owner, OrgRole::Admin, OrgRole::Member],
            "members who build",
        )?;
        let home = principal.workspace_id.as_deref().ok_or_else(|| {
            Error::PermissionDenied(
                "you have no workspace in this org; ask an admin to add you to one".into(),
            )
        })?;
        let request = request.get_ref();
        let name = rules::display_name("name", &request.name)?;
        let description = rules::description("description", &request.description)?;
        let project = projects::new_project(
            org_id,
            home,
            user,
            name,
            description,
            self.storage.clock.now_micros(),
        );
        self.storage
            .tenancy
            .create_project(&project)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateProjectResponse {
            project: Some(project_to_proto(project)),
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let principal = Principal::of(&request)?;
        let project = self
            .project(principal, &request.get_ref().project_id)
            .await?;
        Ok(Response::new(pb::GetProjectResponse {
            project: Some(project_to_proto(project)),
        }))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let principal = Principal::of(&request)?;
        principal.require_user()?;
        let org_id = principal.require_org()?;
        let page = Page::of(
            request.get_ref().page_size,
            &request.get_ref().page_token,
            format!(
                "projects:{org_id}:{}",
                principal.workspace_id.as_deref().unwrap_or_default()
            ),
        )?;
        // A null workspace scope sees nothing.
        let Some(workspace) = principal.workspace_id.as_deref() else {
            return Ok(Response::new(pb::ListProjectsResponse::default()));
        };
        let rows = self
            .storage
            .tenancy
            .projects_in(org_id, workspace, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |p| p.id.clone());
        Ok(Response::new(pb::ListProjectsResponse {
            projects: rows.into_iter().map(project_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::UpdateProjectResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let mut project = self.project(principal, &request.project_id).await?;
        require_project_manager(principal, &project)?;
        let expected = request.expected_revision.unwrap_or(project.revision);
        if expected != project.revision {
            return Err(stale_project(&project).into());
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
            .await
            .map_err(Error::from)?
        {
            return Err(stale_project(&project).into());
        }
        project.revision = expected + 1;
        Ok(Response::new(pb::UpdateProjectResponse {
            project: Some(project_to_proto(project)),
        }))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let principal = Principal::of(&request)?;
        let project = self
            .project(principal, &request.get_ref().project_id)
            .await?;
        require_project_manager(principal, &project)?;
        self.storage
            .tenancy
            .delete_project(&project.id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    async fn get_project_workspaces(
        &self,
        request: Request<pb::GetProjectWorkspacesRequest>,
    ) -> Result<Response<pb::GetProjectWorkspacesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let project = self
            .project(principal, &request.get_ref().project_id)
            .await?;
        let listed = self
            .storage
            .tenancy
            .project_workspace_ids(&project.id)
            .await
            .map_err(Error::from)?;
        let workspaces = self
            .accessible_workspaces(principal, &project, &listed)
            .await?;
        Ok(Response::new(pb::GetProjectWorkspacesResponse {
            home_workspace_id: project.home_workspace_id,
            workspaces: workspaces.into_iter().map(workspace_to_proto).collect(),
        }))
    }

    async fn set_project_workspaces(
        &self,
        request: Request<pb::SetProjectWorkspacesRequest>,
    ) -> Result<Response<pb::SetProjectWorkspacesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let project = self.project(principal, &request.project_id).await?;
        require_project_manager(principal, &project)?;
        rules::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        let user = principal.require_user()?;
        let mut requested = Vec::new();
        for (index, id) in request.workspace_ids.iter().enumerate() {
            let id = ids::parse(&format!("workspace_ids[{index}]"), id)?;
            if id != project.home_workspace_id && !requested.contains(&id) {
                requested.push(id);
            }
        }
        let before = self
            .storage
            .tenancy
            .project_workspace_ids(&project.id)
            .await
            .map_err(Error::from)?;
        let mut visible_before = Vec::new();
        let mut after = Vec::new();
        for id in &before {
            if self
                .storage
                .tenancy
                .is_workspace_member(&project.org_id, id, user)
                .await
                .map_err(Error::from)?
            {
                visible_before.push(id.clone());
            } else {
                // Listed workspaces the caller cannot see are kept.
                after.push(id.clone());
            }
        }
        let mut added = Vec::new();
        for id in requested {
            if after.contains(&id) {
                continue;
            }
            if !before.contains(&id) {
                if !self
                    .storage
                    .tenancy
                    .workspace_exists(&project.org_id, &id)
                    .await
                    .map_err(Error::from)?
                {
                    return Err(Error::not_found(format!("workspace {id}")).into());
                }
                if !self
                    .storage
                    .tenancy
                    .is_workspace_member(&project.org_id, &id, user)
                    .await
                    .map_err(Error::from)?
                {
                    return Err(Error::PermissionDenied(format!(
                        "you are not a member of workspace {id}"
                    ))
                    .into());
                }
                added.push(id.clone());
            }
            after.push(id);
        }
        let removed: Vec<String> = visible_before
            .into_iter()
            .filter(|id| !after.contains(id))
            .collect();
        after.sort();
        self.storage
            .tenancy
            .set_project_workspaces(principal, &project, &before, &after)
            .await
            .map_err(Error::from)?;
        let workspaces = self
            .accessible_workspaces(principal, &project, &after)
            .await?;
        Ok(Response::new(pb::SetProjectWorkspacesResponse {
            workspaces: workspaces.into_iter().map(workspace_to_proto).collect(),
            added_workspace_ids: added,
            removed_workspace_ids: removed,
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let principal = Principal::of(&request)?;
        principal.require_user()?;
        let org_id = principal.require_org()?;
        rules::may_read_audit(rules::org_role(principal))?;
        let request = request.get_ref();
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!(
                "audit:{org_id}:{}:{}:{:?}:{:?}",
                request.actor_user_id, request.target_id, request.start_time, request.end_time
            ),
        )?;
        let actor_user_id = ids::parse_optional("actor_user_id", &request.actor_user_id)?;
        let target_id = ids::parse_optional("target_id", &request.target_id)?;
        let rows = self
            .storage
            .tenancy
            .audit_events(audit::Filter {
                org_id,
                actor_user_id: &actor_user_id,
                target_id: &target_id,
                from_micros: request.start_time.as_ref().map(micros_of),
                until_micros: request.end_time.as_ref().map(micros_of),
                before_id: page.after(),
                limit: page.limit(),
            })
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |row| row.id.clone());
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: rows.into_iter().map(audit_to_proto).collect(),
            next_page_token,
        }))
    }
}
