//! Who may do what with an agent (DESIGN.md, "Access model"), decided from
//! the synced access facts alone, so no check ever calls registry.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;

use crate::agent_access::{AccessState, AgentRow};

/// The agent, if the principal may RUN it. An agent they cannot see answers
/// NOT_FOUND, exactly like one that never existed; one they see but may not
/// run answers PERMISSION_DENIED.
///
/// Sees and runs: the owner, and every member of the org for the org's
/// default agent. Workspace sharing widens this in the sharing issue (#6).
pub fn require_run(
    agent: Option<AgentRow>,
    agent_id: &str,
    principal: &Principal,
) -> Result<AgentRow, Error> {
    let not_found = || Error::not_found(format!("agent {agent_id}"));
    let agent = agent.ok_or_else(not_found)?;
    let user = principal.user_id.as_deref().unwrap_or_default();
    let in_org = principal.org_id.as_deref() == Some(agent.org_id.as_str());
    let visible = in_org
        && agent.state != AccessState::Deleted
        && (agent.owner_user_id == user
            || (agent.is_default && agent.state == AccessState::Active));
    if !visible {
        return Err(not_found());
    }
    if principal.org_role.as_deref() == Some("viewer") {
        return Err(Error::PermissionDenied(
            "viewers read agents but cannot run them".into(),
        ));
    }
    Ok(agent)
}
