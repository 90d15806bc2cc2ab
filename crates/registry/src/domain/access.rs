//! Who may see and change an agent in the registry (DESIGN.md, "Access
//! model (sharing)"): the caller of a request, what they may do with an
//! agent, and what a listing may return to them.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_proto::registry::v1 as pb;

use super::{AgentState, holder_view};

pub use agentshare_kit::identity::OrgRole;

/// The signed-in user of a request, in the org of that request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Forwarded when registry asks sharing about this caller.
    pub principal: Principal,
    pub user_id: String,
    pub org_id: String,
    pub role: OrgRole,
    pub workspace_id: Option<String>,
}

impl Caller {
    /// The caller of `principal`. The gateway has checked membership, so a
    /// Principal without a role is not a member of the org it names.
    pub fn of(principal: &Principal) -> Result<Self, Error> {
        let user_id = principal.require_user()?.to_string();
        let org_id = principal.require_org()?.to_string();
        let role = principal
            .org_role
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))?;
        Ok(Self {
            principal: principal.clone(),
            user_id,
            org_id,
            role,
            workspace_id: principal.workspace_id.clone(),
        })
    }

    /// Who may build in the org: every role but viewer.
    pub fn require_builder(&self) -> Result<(), Error> {
        if self.role == OrgRole::Viewer {
            return Err(Error::PermissionDenied(
                "viewers cannot build agents; ask an org admin for the member role".into(),
            ));
        }
        Ok(())
    }

    /// The workspace a new agent lives in.
    pub fn home_workspace(&self) -> Result<&str, Error> {
        self.workspace_id.as_deref().ok_or_else(|| {
            Error::PermissionDenied(
                "you have no workspace in this org; ask an admin to add you to one".into(),
            )
        })
    }

    /// Managed agents are an org decision.
    pub fn require_may_manage(&self) -> Result<(), Error> {
        if !self.role.manages_org() {
            return Err(Error::PermissionDenied(
                "only org owners and admins may create managed agents".into(),
            ));
        }
        Ok(())
    }
}

/// What a caller may do with an agent they can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Edit, deploy, roll back and publish; sees the full design.
    Edit,
    /// Sees the holder view of the latest deployed version.
    Read,
}

/// How much of an agent a caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The full draft; the caller may change it.
    Editor,
    /// The holder view of the latest version.
    Holder,
    /// A deleted agent, shown to its owner in full but read-only.
    History,
}

impl From<Access> for View {
    fn from(access: Access) -> Self {
        match access {
            Access::Edit => Self::Editor,
            Access::Read => Self::Holder,
        }
    }
}

/// What `access` shows of a design: all of it to an editor, the holder view
/// to anyone else.
pub fn shown(access: Access, content: &pb::AgentDraft) -> pb::AgentDraft {
    match access {
        Access::Edit => content.clone(),
        Access::Read => holder_view(content),
    }
}

/// The parts of an agent that decide who sees it.
pub struct Standing<'a> {
    pub owner_user_id: &'a str,
    pub is_default: bool,
    pub state: AgentState,
}

/// Who may see a live agent, and how. `None` means the caller must get
/// NOT_FOUND, exactly as for an id that never existed. This is the one place
/// that decides it: holders of shared agents and grants join here.
pub fn access(agent: &Standing<'_>, caller: &Caller) -> Option<Access> {
    // Viewers read agents but never change them, even ones they built
    // before they became viewers.
    let edit_unless_viewer = if caller.role == OrgRole::Viewer {
        Access::Read
    } else {
        Access::Edit
    };
    match agent.state {
        AgentState::Deleted => None,
        _ if agent.is_default => Some(if caller.role.manages_org() {
            Access::Edit
        } else {
            Access::Read
        }),
        _ if agent.owner_user_id == caller.user_id => Some(edit_unless_viewer),
        _ => None,
    }
}

/// A deleted agent stays readable by its owner, for history.
pub fn sees_deleted(agent: &Standing<'_>, caller: &Caller) -> bool {
    agent.state == AgentState::Deleted && agent.owner_user_id == caller.user_id
}

/// Which agents ListAgents may return to `caller`: the SQL form of
/// [`access`], which must agree with it.
pub struct Listing {
    pub owner_user_id: String,
    pub include_default: bool,
}

pub fn listing(caller: &Caller, owned_by_caller: bool) -> Listing {
    Listing {
        owner_user_id: caller.user_id.clone(),
        include_default: !owned_by_caller,
    }
}

/// The state a listing asks for; `None` lists every live state. Deleted
/// agents are in no list: their owner reads each one by id.
pub fn listed_state(state: pb::AgentState) -> Result<Option<AgentState>, Error> {
    match state {
        pb::AgentState::Unspecified => Ok(None),
        pb::AgentState::Draft => Ok(Some(AgentState::Draft)),
        pb::AgentState::Active => Ok(Some(AgentState::Active)),
        pb::AgentState::Deleted => Err(Error::invalid(
            "state",
            "deleted agents are in no list; read one with GetAgent",
        )),
    }
}

/// NOT_FOUND for an invisible agent, PERMISSION_DENIED for a visible one the
/// caller may not change.
pub fn require_edit(access: Option<Access>, agent_id: &str) -> Result<(), Error> {
    match access {
        Some(Access::Edit) => Ok(()),
        Some(Access::Read) => Err(Error::PermissionDenied(
            "only the agent's owner may change it (org owners and admins for the org default agent)"
                .into(),
        )),
        None => Err(not_found(agent_id)),
    }
}

pub fn not_found(agent_id: &str) -> Error {
    Error::not_found(format!("agent {agent_id}"))
}

/// Delete belongs to the owner alone, and never to the default or a managed
/// agent.
pub fn require_may_delete(
    agent: &Standing<'_>,
    is_managed: bool,
    access: Option<Access>,
    caller: &Caller,
    agent_id: &str,
) -> Result<(), Error> {
    let Some(access) = access else {
        return Err(not_found(agent_id));
    };
    if agent.is_default {
        return Err(Error::PermissionDenied(
            "the org default agent cannot be deleted; edit and redeploy it instead".into(),
        ));
    }
    if is_managed {
        return Err(Error::PermissionDenied(
            "managed agents cannot be deleted".into(),
        ));
    }
    if access != Access::Edit || agent.owner_user_id != caller.user_id {
        return Err(Error::PermissionDenied(
            "only the agent's owner may delete it".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, role: OrgRole) -> Caller {
        Caller {
            principal: Principal::user(user),
            user_id: user.into(),
            org_id: "o".into(),
            role,
            workspace_id: None,
        }
    }

    #[test]
    fn owners_edit_members_read_the_default_and_strangers_see_nothing() {
        let own = Standing {
            owner_user_id: "alice",
            is_default: false,
            state: AgentState::Draft,
        };
        let default = Standing {
            owner_user_id: "",
            is_default: true,
            state: AgentState::Active,
        };
        let alice = caller("alice", OrgRole::Member);
        let bob = caller("bob", OrgRole::Member);
        let admin = caller("carol", OrgRole::Admin);
        let viewer = caller("alice", OrgRole::Viewer);
        assert_eq!(access(&own, &alice), Some(Access::Edit));
        assert_eq!(access(&own, &bob), None);
        assert_eq!(access(&own, &admin), None, "admins do not see drafts");
        assert_eq!(access(&own, &viewer), Some(Access::Read));
        assert_eq!(access(&default, &bob), Some(Access::Read));
        assert_eq!(access(&default, &admin), Some(Access::Edit));
        let deleted = Standing {
            state: AgentState::Deleted,
            ..own
        };
        assert_eq!(access(&deleted, &alice), None);
        assert!(sees_deleted(&deleted, &alice));
        assert!(!sees_deleted(&deleted, &bob));
    }

    #[test]
    fn lists_hold_live_agents_only() {
        assert_eq!(
            listed_state(pb::AgentState::Unspecified).expect("all"),
            None
        );
        assert_eq!(
            listed_state(pb::AgentState::Active).expect("active"),
            Some(AgentState::Active)
        );
        assert_eq!(
            listed_state(pb::AgentState::Draft).expect("draft"),
            Some(AgentState::Draft)
        );
        assert!(matches!(
            listed_state(pb::AgentState::Deleted),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn only_the_owner_deletes_and_never_the_default() {
        let default = Standing {
            owner_user_id: "",
            is_default: true,
            state: AgentState::Active,
        };
        let owner = caller("o", OrgRole::Owner);
        let error = require_may_delete(&default, false, access(&default, &owner), &owner, "a")
            .expect_err("denied");
        assert!(matches!(error, Error::PermissionDenied(_)));
    }
}
