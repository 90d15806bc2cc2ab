//! The gRPC face of sharing: decode, check the caller, call the domain and
//! storage, map the result. No SQL and no rules live here.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_proto::sharing::v1 as pb;
use pb::access_internal_service_server::AccessInternalService;
use pb::tenancy_service_server::TenancyService;
use tonic::{Request, Response, Status};

use crate::domain::{self, OrgChoice};
use crate::storage::{OrgRow, Storage, WorkspaceRow};

#[derive(Clone)]
pub struct Tenancy {
    pub storage: Storage,
}

#[derive(Clone)]
pub struct AccessInternal {
    pub storage: Storage,
}

/// Services whose RPCs later issues build; each answers UNIMPLEMENTED naming
/// its issue (see the roadmap in lib.rs).
pub struct Unbuilt;

impl pb::sharing_service_server::SharingService for Unbuilt {}
impl pb::connections_service_server::ConnectionsService for Unbuilt {}
impl pb::access_service_server::AccessService for Unbuilt {}

fn org_to_proto(org: OrgRow) -> pb::Org {
    pb::Org {
        id: org.id,
        name: org.name,
        workspaces_enabled: org.workspaces_enabled,
        default_workspace_id: org.default_workspace_id,
        create_time: Some(timestamp(org.created_at)),
    }
}

fn workspace_to_proto(workspace: WorkspaceRow) -> pb::Workspace {
    pb::Workspace {
        id: workspace.id,
        org_id: workspace.org_id,
        name: workspace.name,
        is_default: workspace.is_default,
        create_time: Some(timestamp(workspace.created_at)),
    }
}

#[tonic::async_trait]
impl TenancyService for Tenancy {
    async fn create_org(
        &self,
        request: Request<pb::CreateOrgRequest>,
    ) -> Result<Response<pb::CreateOrgResponse>, Status> {
        let user = Principal::of(&request)?.require_user()?.to_string();
        let name = domain::display_name("name", &request.get_ref().name)?;
        let (org, workspace) = self
            .storage
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
            "" => principal.require_org()?,
            named => named,
        };
        let not_found = || Error::not_found(format!("org {org_id}"));
        let role = self
            .storage
            .org_role(org_id, user)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        let org = self
            .storage
            .org(org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::GetOrgResponse {
            org: Some(org_to_proto(org)),
            caller_role: role.to_proto().into(),
        }))
    }
}

#[tonic::async_trait]
impl AccessInternalService for AccessInternal {
    async fn resolve_caller(
        &self,
        request: Request<pb::ResolveCallerRequest>,
    ) -> Result<Response<pb::ResolveCallerResponse>, Status> {
        let request = request.into_inner();
        if request.subject.is_empty() {
            return Err(Error::invalid("subject", "must not be empty").into());
        }
        let storage = &self.storage;
        let user_id = storage
            .upsert_user(&request.subject, &request.email, &request.display_name)
            .await
            .map_err(Error::from)?;
        let orgs = storage.org_ids_of(&user_id).await.map_err(Error::from)?;
        let mut response = pb::ResolveCallerResponse {
            user_id: user_id.clone(),
            ..Default::default()
        };
        let org_id = match domain::choose_org(&request.requested_org_id, &orgs)? {
            OrgChoice::Chosen(org_id) => org_id,
            OrgChoice::NoOrg => return Ok(Response::new(response)),
            OrgChoice::Ambiguous => {
                response.org_choice_required = true;
                return Ok(Response::new(response));
            }
        };
        let not_found = || Error::not_found(format!("org {org_id}"));
        let role = storage
            .org_role(&org_id, &user_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        let org = storage
            .org(&org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        response.workspace_id = if !org.workspaces_enabled {
            // With workspaces off, the org behaves as its default workspace.
            if !request.requested_workspace_id.is_empty()
                && request.requested_workspace_id != org.default_workspace_id
            {
                return Err(Error::not_found(format!(
                    "workspace {}",
                    request.requested_workspace_id
                ))
                .into());
            }
            org.default_workspace_id.clone()
        } else if !request.requested_workspace_id.is_empty() {
            if !storage
                .is_workspace_member(&org_id, &request.requested_workspace_id, &user_id)
                .await
                .map_err(Error::from)?
            {
                return Err(Error::not_found(format!(
                    "workspace {}",
                    request.requested_workspace_id
                ))
                .into());
            }
            request.requested_workspace_id
        } else {
            // The user's default: the org default workspace if they are in
            // it, else their first; none denies everything (null scope).
            storage
                .workspace_ids_of(&org_id, &user_id)
                .await
                .map_err(Error::from)?
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        response.org_id = org_id;
        response.org_role = role.to_proto().into();
        response.workspaces_enabled = org.workspaces_enabled;
        Ok(Response::new(response))
    }
}
