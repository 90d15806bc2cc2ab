//! AccessInternalService: what the gateway, registry and scheduler ask of
//! sharing with their service identity.

use agentshare_kit::Error;
use agentshare_kit::identity::secret_digest;
use agentshare_proto::sharing::v1 as pb;
use pb::access_internal_service_server::AccessInternalService;
use tonic::{Request, Response, Status};

use crate::agent_access;
use crate::domain::{self, OrgChoice};
use crate::scope;
use crate::storage::Storage;

#[derive(Clone)]
pub struct AccessInternal {
    pub storage: Storage,
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
        let chosen = match request.session_id.as_str() {
            "" => None,
            session => storage
                .session_workspace(session, &org_id, &user_id)
                .await
                .map_err(Error::from)?,
        };
        response.workspace_id = scope::workspace_of(
            storage,
            &org,
            &user_id,
            &request.requested_workspace_id,
            chosen.as_deref(),
        )
        .await?;
        response.org_id = org_id;
        response.org_role = role.to_proto().into();
        response.workspaces_enabled = org.workspaces_enabled;
        Ok(Response::new(response))
    }

    async fn sync_agent(
        &self,
        request: Request<pb::SyncAgentRequest>,
    ) -> Result<Response<pb::SyncAgentResponse>, Status> {
        let facts = request
            .into_inner()
            .agent
            .ok_or_else(|| Error::invalid("agent", "must be set"))?;
        let synced = agent_access::sync(&self.storage, facts).await?;
        Ok(Response::new(pb::SyncAgentResponse {
            applied: synced.applied,
            stored_revision: synced.stored_revision,
        }))
    }

    async fn authenticate_api_key(
        &self,
        request: Request<pb::AuthenticateApiKeyRequest>,
    ) -> Result<Response<pb::AuthenticateApiKeyResponse>, Status> {
        let request = request.into_inner();
        let storage = &self.storage;
        let rejected = |why: &str| Error::Unauthenticated(format!("API key rejected: {why}"));
        let key = storage
            .use_api_key(&secret_digest(&request.secret))
            .await
            .map_err(Error::from)?
            .ok_or_else(|| rejected("unknown key; create one with TenancyService.CreateApiKey"))?;
        if key.revoked_at.is_some() {
            return Err(rejected("API key revoked").into());
        }
        if key
            .expires_at
            .is_some_and(|at| at <= storage.clock.now_micros())
        {
            return Err(rejected("API key expired; create a new one").into());
        }
        if !request.requested_org_id.is_empty() && request.requested_org_id != key.org_id {
            return Err(Error::PermissionDenied(
                "this API key works in its own org only; drop x-agentshare-org or use a key of that org".into(),
            )
            .into());
        }
        let role = storage
            .org_role(&key.org_id, &key.user_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| rejected("its user is no longer a member of its org"))?;
        let org = storage
            .org(&key.org_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| rejected("its org no longer exists"))?;
        let workspace_id = scope::workspace_of(
            storage,
            &org,
            &key.user_id,
            &request.requested_workspace_id,
            Some(&key.default_workspace_id),
        )
        .await?;
        Ok(Response::new(pb::AuthenticateApiKeyResponse {
            api_key_id: key.id,
            user_id: key.user_id,
            org_id: key.org_id,
            org_role: role.to_proto().into(),
            workspace_id,
            workspaces_enabled: org.workspaces_enabled,
        }))
    }
}
