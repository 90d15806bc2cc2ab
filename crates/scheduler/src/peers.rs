//! What the scheduler asks registry and sharing, always with the caller's
//! own Principal, so every answer is the one that caller is entitled to:
//! registry for the automations of the version the caller runs, sharing for
//! whether they may run the agent, their setup, their pin, their email and
//! their workspace roles. Nothing here is cached: access changes show on the
//! next call.
//!
//! One question has no caller: whether a subscriber can still RUN an agent
//! after an access event. The scheduler asks it with a Principal it signs
//! for that user, naming no org role, so sharing reads the user's current
//! role and memberships itself.

use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::identity::{Identity, Principal};
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::sharing::v1::access_service_client::AccessServiceClient;
use agentshare_proto::sharing::v1::connections_service_client::ConnectionsServiceClient;
use agentshare_proto::sharing::v1::tenancy_service_client::TenancyServiceClient;

/// A peer call waits no longer than this: a user is waiting on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Peers {
    registry: AgentRegistryServiceClient<ServiceChannel>,
    access: AccessServiceClient<ServiceChannel>,
    connections: ConnectionsServiceClient<ServiceChannel>,
    tenancy: TenancyServiceClient<ServiceChannel>,
    identity: Identity,
}

/// Whether a subscriber still runs an agent, and in which workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// They run it in `workspace_id`: the subscription's own when it still
    /// serves, else another of their workspaces the agent is shared with.
    Runs {
        workspace_id: String,
    },
    Lost,
}

/// An agent as the caller runs it.
#[derive(Clone, Debug)]
pub struct AgentView {
    pub agent_id: String,
    pub name: String,
    /// The latest deployed version.
    pub latest_version: i64,
    /// The version the caller runs: their pin, else the latest.
    pub version: i64,
    pub automations: Vec<registry::Automation>,
}

/// Whether the caller may subscribe to the agent's automations, and if not
/// why, in words that say what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscriber {
    Allowed,
    Denied(String),
}

fn request<T>(principal: &Principal, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    principal.forward(&mut request);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// A peer's refusal as the caller's error. NOT_FOUND keeps the peer's
/// indistinguishability; an outage is UNAVAILABLE; anything else a peer
/// should never answer us is a bug.
fn from_peer(status: tonic::Status, what: &str) -> Error {
    let message = status.message().to_string();
    match Error::from(status) {
        Error::NotFound(_) => Error::not_found(what),
        refused @ (Error::PermissionDenied(_) | Error::Unauthenticated(_)) => refused,
        Error::FailedPrecondition(message) | Error::Unmet(message, _) => {
            Error::FailedPrecondition(message)
        }
        Error::InvalidArgument(_) => Error::invalid("agent_id", message),
        Error::Unavailable(_)
        | Error::DeadlineExceeded(_)
        | Error::Cancelled(_)
        | Error::ResourceExhausted(_)
        | Error::Quota(..)
        | Error::Throttled { .. } => Error::Unavailable(format!(
            "cannot reach a service automations depend on ({message}); retry shortly"
        )),
        other => Error::internal(format!("peer answered {what}: {other:?}")),
    }
}

impl Peers {
    pub fn new(registry: ServiceChannel, sharing: &ServiceChannel, identity: Identity) -> Self {
        Self {
            registry: AgentRegistryServiceClient::new(registry),
            access: AccessServiceClient::new(sharing.clone()),
            connections: ConnectionsServiceClient::new(sharing.clone()),
            tenancy: TenancyServiceClient::new(sharing.clone()),
            identity,
        }
    }

    /// A Principal for `user_id` in `org_id`, signed by the scheduler.
    fn acting_for(
        &self,
        user_id: &str,
        org_id: &str,
        workspace_id: Option<&str>,
    ) -> Result<Principal, Error> {
        let mut principal = Principal::user(user_id);
        principal.org_id = Some(org_id.to_string());
        principal.workspace_id = workspace_id.map(str::to_string);
        principal.token = self.identity.sign_principal(&principal)?;
        Ok(principal)
    }

    /// Whether `user_id` can still RUN `agent_id` as its owner or a member
    /// of one of its workspaces, preferring `workspace_id`, the workspace
    /// their subscription runs in. A grant never counts: it never made a
    /// subscriber.
    pub async fn reach(
        &self,
        user_id: &str,
        org_id: &str,
        workspace_id: &str,
        agent_id: &str,
    ) -> Result<Reach, Error> {
        let me = self.acting_for(user_id, org_id, None)?;
        // Sharing takes the active workspace of a Principal as given, so
        // a workspace counts only while the user is still a member of it.
        let memberships = self.memberships(&me).await?;
        let mut candidates: Vec<&str> = Vec::with_capacity(memberships.len() + 1);
        candidates.push(workspace_id);
        candidates.extend(
            memberships
                .iter()
                .map(String::as_str)
                .filter(|w| *w != workspace_id),
        );
        use sharing::DecisionReason as R;
        for candidate in candidates {
            let principal = self.acting_for(user_id, org_id, Some(candidate))?;
            let answer = match self
                .access
                .clone()
                .check(request(
                    &principal,
                    sharing::CheckRequest {
                        principal: None,
                        agent_id: agent_id.into(),
                        action: sharing::Action::Run as i32,
                    },
                ))
                .await
            {
                Ok(answer) => answer.into_inner(),
                Err(status) => match from_peer(status, &format!("agent {agent_id}")) {
                    // Gone, or no longer a member of the org: no reach at all.
                    Error::NotFound(_) | Error::PermissionDenied(_) => return Ok(Reach::Lost),
                    error => return Err(error),
                },
            };
            let reason = R::try_from(answer.reason).unwrap_or(R::Unspecified);
            let member = memberships.iter().any(|w| w == candidate);
            let runs = match (answer.allowed, reason) {
                // Neither depends on the workspace.
                (true, R::Owner | R::OrgDefaultAgent) => true,
                (true, R::WorkspaceMember) => member,
                _ => false,
            };
            if runs {
                return Ok(Reach::Runs {
                    workspace_id: candidate.to_string(),
                });
            }
        }
        Ok(Reach::Lost)
    }

    /// The workspaces `principal`'s user is a member of in its org.
    async fn memberships(&self, principal: &Principal) -> Result<Vec<String>, Error> {
        Ok(self
            .workspaces(principal)
            .await?
            .iter()
            .filter(|w| w.role() != sharing::WorkspaceRole::Unspecified)
            .filter_map(|w| w.workspace.as_ref().map(|w| w.id.clone()))
            .collect())
    }

    /// Every workspace of the org `principal` sees, with their role in it.
    async fn workspaces(
        &self,
        principal: &Principal,
    ) -> Result<Vec<sharing::WorkspaceMembership>, Error> {
        let mut workspaces = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .tenancy
                .clone()
                .list_workspaces(request(
                    principal,
                    sharing::ListWorkspacesRequest {
                        page_size: 1000,
                        page_token,
                    },
                ))
                .await
                .map_err(|s| from_peer(s, "workspaces"))?
                .into_inner();
            workspaces.extend(page.workspaces);
            if page.next_page_token.is_empty() {
                return Ok(workspaces);
            }
            page_token = page.next_page_token;
        }
    }

    /// The agent and the automations of the version the caller runs.
    /// NOT_FOUND when they may not see it; FAILED_PRECONDITION when it was
    /// never deployed or was deleted.
    pub async fn agent_view(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<AgentView, Error> {
        let what = format!("agent {agent_id}");
        let (mut registry, mut access) = (self.registry.clone(), self.access.clone());
        let get_agent = registry.get_agent(request(
            principal,
            registry::GetAgentRequest {
                agent_id: agent_id.into(),
            },
        ));
        let get_pin = access.get_pin(request(
            principal,
            sharing::GetPinRequest {
                agent_id: agent_id.into(),
            },
        ));
        let (agent, pin) = tokio::join!(get_agent, get_pin);
        let agent = agent
            .map_err(|s| from_peer(s, &what))?
            .into_inner()
            .agent
            .ok_or_else(|| Error::internal("registry returned no agent"))?;
        if agent.state == registry::AgentState::Deleted as i32 {
            return Err(Error::FailedPrecondition(format!(
                "agent {agent_id} was deleted; its automations stopped"
            )));
        }
        if agent.latest_version_number == 0 {
            return Err(Error::FailedPrecondition(format!(
                "agent {agent_id} was never deployed: deploy the agent first"
            )));
        }
        let pinned = match pin {
            // A retired version's pin decides nothing: the latest runs.
            Ok(pin) => pin
                .into_inner()
                .pin
                .filter(|p| !p.retired)
                .map(|p| p.version),
            Err(status) => return Err(from_peer(status, &what)),
        };
        let version_number = pinned.unwrap_or(agent.latest_version_number);
        let version = self
            .registry
            .clone()
            .get_version(request(
                principal,
                registry::GetVersionRequest {
                    agent_id: agent_id.into(),
                    version_number,
                },
            ))
            .await
            .map_err(|s| from_peer(s, &what))?
            .into_inner()
            .version
            .ok_or_else(|| Error::internal("registry returned no version"))?;
        let content = version.content.unwrap_or_default();
        let name = if content.name.is_empty() {
            agent.draft.map(|d| d.name).unwrap_or_default()
        } else {
            content.name
        };
        let mut automations = content.automations;
        automations.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(AgentView {
            agent_id: agent.id,
            name,
            latest_version: agent.latest_version_number,
            version: version.number,
            automations,
        })
    }

    /// Whether the caller may subscribe: they may RUN the agent as its
    /// owner, as a member of one of its workspaces, or as any member for the
    /// org default agent. A grant never makes a subscriber.
    pub async fn subscriber(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<Subscriber, Error> {
        let answer = self
            .access
            .clone()
            .check(request(
                principal,
                sharing::CheckRequest {
                    principal: None,
                    agent_id: agent_id.into(),
                    action: sharing::Action::Run as i32,
                },
            ))
            .await
            .map_err(|s| from_peer(s, &format!("agent {agent_id}")))?
            .into_inner();
        use sharing::DecisionReason as R;
        let reason = R::try_from(answer.reason).unwrap_or(R::Unspecified);
        Ok(match (answer.allowed, reason) {
            (true, R::Owner | R::WorkspaceMember | R::OrgDefaultAgent) => Subscriber::Allowed,
            (true, _) => Subscriber::Denied(
                "automations belong to the agent's owner and workspace members; a share grant lets you run the agent but not subscribe".into(),
            ),
            (false, R::ViewerRole) => Subscriber::Denied(
                "viewers cannot run agents, so they cannot enable automations; ask an org admin for the member role".into(),
            ),
            (false, R::NotWorkspaceMember | R::NoActiveWorkspace) => Subscriber::Denied(
                "the agent is not shared with your active workspace; switch to a workspace it is shared with".into(),
            ),
            (false, R::NotShared) => Subscriber::Denied(
                "the agent is no longer shared with you; ask its owner to share it again".into(),
            ),
            (false, other) => Subscriber::Denied(format!(
                "you may not run this agent ({})",
                other.as_str_name()
            )),
        })
    }

    /// What blocks the caller's setup of the agent; empty when READY.
    pub async fn setup_gaps(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<Vec<sharing::SetupGap>, Error> {
        let setup = self
            .connections
            .clone()
            .get_agent_setup(request(
                principal,
                sharing::GetAgentSetupRequest {
                    agent_id: agent_id.into(),
                },
            ))
            .await
            .map_err(|s| from_peer(s, &format!("agent {agent_id}")))?
            .into_inner()
            .setup
            .ok_or_else(|| Error::internal("sharing returned no setup"))?;
        if setup.status == sharing::SetupStatus::Ready as i32 {
            return Ok(Vec::new());
        }
        Ok(setup.missing)
    }

    /// The email address on the caller's account; empty when they have none.
    pub async fn email(&self, principal: &Principal) -> Result<String, Error> {
        let me = self
            .tenancy
            .clone()
            .get_me(request(principal, sharing::GetMeRequest {}))
            .await
            .map_err(|s| from_peer(s, "user"))?
            .into_inner();
        Ok(me.user.map(|u| u.email).unwrap_or_default())
    }

    /// The caller's role in a workspace of the org of the request: `None`
    /// when they may not see it. Org owners and admins see every workspace,
    /// with no role unless they are members.
    pub async fn workspace_role(
        &self,
        principal: &Principal,
        workspace_id: &str,
    ) -> Result<Option<sharing::WorkspaceRole>, Error> {
        Ok(self
            .workspaces(principal)
            .await?
            .iter()
            .find(|w| w.workspace.as_ref().is_some_and(|w| w.id == workspace_id))
            .map(sharing::WorkspaceMembership::role))
    }
}
