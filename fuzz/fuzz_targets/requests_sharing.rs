//! Each request message of the sharing services, decoded from the bytes a client
//! or a peer could send, as the service's codec decodes it. Input: a
//! first byte picking the message, then its protobuf encoding.
#![no_main]

use agentshare_fuzz::{Request, decoded_only, run_request};
use agentshare_proto::sharing::v1 as pb;
use libfuzzer_sys::fuzz_target;

/// The packages whose services' requests this target decodes.
const PACKAGES: &[&str] = &["agentshare.sharing.v1"];

fn requests() -> Vec<Request> {
    let mut requests = vec![];
    requests.extend(decoded_only!(
        pb::CheckRequest,
        pb::CheckBulkRequest,
        pb::ExplainRequest,
        pb::ListMyAgentsRequest,
        pb::ResolveInvocationRequest,
        pb::PinVersionRequest,
        pb::UnpinVersionRequest,
        pb::GetPinRequest,
        pb::ListVersionPinsRequest,
        pb::ResolveCallerRequest,
        pb::AuthenticateApiKeyRequest,
        pb::AuthenticateGrantTokenRequest,
        pb::SyncAgentRequest,
        pb::ResolveStoreRequest,
        pb::ResolveInvocationWithSecretsRequest,
        pb::ResolveConnectionSecretRequest,
        pb::ReleaseRunRequest,
        pb::ListVersionHoldersRequest,
        pb::CreateApiKeyConnectionRequest,
        pb::StartOAuthConnectionRequest,
        pb::CompleteOAuthConnectionRequest,
        pb::ListConnectionsRequest,
        pb::GetConnectionRequest,
        pb::DeleteConnectionRequest,
        pb::TestConnectionRequest,
        pb::ReconnectConnectionRequest,
        pb::GetAgentSetupRequest,
        pb::BindIntegrationRequest,
        pb::UnbindIntegrationRequest,
        pb::CompleteAgentSetupRequest,
        pb::ShareAgentRequest,
        pb::UnshareAgentRequest,
        pb::PreviewUnshareAgentRequest,
        pb::GetAgentWorkspacesRequest,
        pb::SetAgentWorkspacesRequest,
        pb::CreateGrantRequest,
        pb::ListGrantsRequest,
        pb::UpdateGrantRequest,
        pb::RevokeGrantRequest,
        pb::GetAgentReachRequest,
        pb::SetStoreWritePolicyRequest,
        pb::GetMeRequest,
        pb::CreateOrgRequest,
        pb::GetOrgRequest,
        pb::ListMyOrgsRequest,
        pb::UpdateOrgRequest,
        pb::AddOrgMemberRequest,
        pb::ListOrgMembersRequest,
        pb::UpdateOrgMemberRoleRequest,
        pb::RemoveOrgMemberRequest,
        pb::CreateWorkspaceRequest,
        pb::GetWorkspaceRequest,
        pb::ListWorkspacesRequest,
        pb::UpdateWorkspaceRequest,
        pb::DeleteWorkspaceRequest,
        pb::AddWorkspaceMemberRequest,
        pb::ListWorkspaceMembersRequest,
        pb::UpdateWorkspaceMemberRoleRequest,
        pb::RemoveWorkspaceMemberRequest,
        pb::SwitchWorkspaceRequest,
        pb::CreateProjectRequest,
        pb::GetProjectRequest,
        pb::ListProjectsRequest,
        pb::UpdateProjectRequest,
        pb::DeleteProjectRequest,
        pb::GetProjectWorkspacesRequest,
        pb::SetProjectWorkspacesRequest,
        pb::CreateApiKeyRequest,
        pb::ListApiKeysRequest,
        pb::RevokeApiKeyRequest,
        pb::ListAuditEventsRequest,
    ));
    requests
}

fuzz_target!(|data: &[u8]| {
    static REQUESTS: std::sync::OnceLock<Vec<Request>> = std::sync::OnceLock::new();
    run_request(PACKAGES, REQUESTS.get_or_init(requests), data);
});
