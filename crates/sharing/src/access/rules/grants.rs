//! Share grants (DESIGN.md, "Access model (sharing)", Grants): what a new
//! grant may be, and how many one agent may have.

use agentshare_kit::Error;
use agentshare_kit::clock::micros_of;
use agentshare_proto::sharing::v1 as pb;

use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::GrantKind;

/// Share tokens start with this, so a leaked one is recognisable.
pub const GRANT_TOKEN_PREFIX: &str = "asg_";
/// Active grants one agent may have at once.
pub const MAX_ACTIVE_GRANTS: i64 = 100;

/// A grant as its creator asked for it, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct NewGrant {
    pub kind: GrantKind,
    pub label: String,
    pub expires_at: Option<i64>,
    pub pinned_version: Option<i64>,
}

/// The grant `request` asks for on `agent` at `now`, or which field is
/// wrong; an agent with no deployed version has nothing to grant.
pub fn new_grant(
    agent: &AgentRow,
    request: &pb::CreateGrantRequest,
    now: i64,
) -> Result<NewGrant, Error> {
    let kind = match pb::GrantKind::try_from(request.kind) {
        Ok(pb::GrantKind::Invoke) => GrantKind::Invoke,
        Ok(pb::GrantKind::Delegate) => GrantKind::Delegate,
        _ => return Err(Error::invalid("kind", "must be INVOKE or DELEGATE")),
    };
    let label = crate::tenancy::rules::display_name("label", &request.label)?;
    if agent.state != AccessState::Active {
        return Err(Error::FailedPrecondition(
            "deploy the agent before granting access to it".into(),
        ));
    }
    let expires_at = request.expire_time.as_ref().map(micros_of);
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Error::invalid("expire_time", "must be in the future"));
    }
    if let Some(pinned) = request.pinned_version
        && (pinned < 1 || pinned > agent.latest_version)
    {
        return Err(crate::access::rules::plan::version_not_found(agent, pinned));
    }
    Ok(NewGrant {
        kind,
        label,
        expires_at,
        pinned_version: request.pinned_version,
    })
}

/// One more grant fits while the agent has fewer than the most.
pub fn require_room(agent_id: &str, active: i64) -> Result<(), Error> {
    if active >= MAX_ACTIVE_GRANTS {
        return Err(Error::ResourceExhausted(format!(
            "agent {agent_id} has {MAX_ACTIVE_GRANTS} active grants; revoke one first"
        )));
    }
    Ok(())
}

/// The part of a token shown in listings: the prefix and four characters.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(GRANT_TOKEN_PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(state: AccessState) -> AgentRow {
        AgentRow {
            agent_id: "a".into(),
            org_id: "o".into(),
            owner_user_id: "alice".into(),
            home_workspace_id: "home".into(),
            state,
            is_default: false,
            is_managed: false,
            shared: false,
            workspaces: vec!["home".into()],
            latest_version: 2,
            name: "A".into(),
            description: String::new(),
            store_policy: Default::default(),
        }
    }

    fn request(kind: pb::GrantKind, pinned: Option<i64>) -> pb::CreateGrantRequest {
        pb::CreateGrantRequest {
            agent_id: "a".into(),
            kind: kind.into(),
            label: "Demo".into(),
            pinned_version: pinned,
            ..Default::default()
        }
    }

    #[test]
    fn a_grant_needs_a_kind_a_deployed_agent_and_a_version_it_has() {
        let active = agent(AccessState::Active);
        let grant =
            new_grant(&active, &request(pb::GrantKind::Delegate, Some(2)), 0).expect("valid");
        assert_eq!(
            (grant.kind, grant.pinned_version),
            (GrantKind::Delegate, Some(2))
        );
        assert!(matches!(
            new_grant(&active, &request(pb::GrantKind::Unspecified, None), 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            new_grant(&active, &request(pb::GrantKind::Invoke, Some(3)), 0),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            new_grant(
                &agent(AccessState::Draft),
                &request(pb::GrantKind::Invoke, None),
                0
            ),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(require_room("a", MAX_ACTIVE_GRANTS - 1).is_ok());
        assert!(require_room("a", MAX_ACTIVE_GRANTS).is_err());
    }
}
