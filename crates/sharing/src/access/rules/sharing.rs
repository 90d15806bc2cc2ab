//! Sharing an agent with its workspaces (DESIGN.md, "Access model
//! (sharing)", Agents and sharing): when it may be shared, and what its
//! workspace list becomes when an owner sets it.

use std::collections::HashSet;

use agentshare_kit::{Error, ids};
use agentshare_proto::sharing::v1::DecisionReason;

use crate::access::rules::decision::{self, Subject};
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::tenancy::rules::OrgRole;

/// The most workspaces one agent's list may name.
pub const MAX_WORKSPACES: usize = 1000;

/// Only a deployed agent is shared: a draft has nothing to run.
pub fn require_deployed(agent: &AgentRow) -> Result<(), Error> {
    if agent.state == AccessState::Draft {
        return Err(Error::FailedPrecondition(
            "deploy the agent before sharing it".into(),
        ));
    }
    Ok(())
}

/// A managed agent's workspaces are the org's decision and never change.
pub fn require_unmanaged(agent: &AgentRow) -> Result<(), Error> {
    if agent.is_managed {
        return Err(Error::PermissionDenied(decision::denial_message(
            DecisionReason::ManagedAgent,
        )));
    }
    Ok(())
}

/// The workspace ids a request names, parsed, each once.
pub fn requested_workspaces(workspace_ids: &[String]) -> Result<Vec<String>, Error> {
    if workspace_ids.len() > MAX_WORKSPACES {
        return Err(Error::invalid(
            "workspace_ids",
            format!("must name at most {MAX_WORKSPACES} workspaces"),
        ));
    }
    let mut seen = HashSet::new();
    workspace_ids
        .iter()
        .map(|id| {
            let id = ids::parse("workspace_ids", id)?;
            if !seen.insert(id.clone()) {
                return Err(Error::invalid(
                    "workspace_ids",
                    format!("workspace {id} is listed twice"),
                ));
            }
            Ok(id)
        })
        .collect()
}

/// The agent's workspace list after `requested` replaces it, for an owner
/// who can see `accessible`. The home workspace always stays, and so do
/// the listed workspaces the caller cannot see: they cannot take away what
/// they cannot see. The caller must belong to every workspace they add.
pub fn workspace_list(
    agent: &AgentRow,
    requested: Vec<String>,
    accessible: &HashSet<String>,
    subject: &Subject,
) -> Result<Vec<String>, Error> {
    let mut after = vec![agent.home_workspace_id.clone()];
    for id in agent.workspaces.iter().skip(1) {
        if !accessible.contains(id) {
            after.push(id.clone());
        }
    }
    for id in requested {
        if !after.contains(&id) {
            after.push(id);
        }
    }
    if let Some(id) = after
        .iter()
        .find(|id| !agent.workspaces.contains(id) && !subject.memberships.contains(id))
    {
        return Err(Error::PermissionDenied(format!(
            "you are not a member of workspace {id}; only members add a workspace"
        )));
    }
    Ok(after)
}

/// Whether the subject reads the agent's reach as an owner or admin of its
/// org, whoever owns it; anyone else needs to manage its grants.
pub fn reads_reach_as_admin(agent: &AgentRow, subject: &Subject) -> bool {
    subject.org_role.is_some_and(OrgRole::manages_org)
        && agent.org_id == subject.org_id
        && agent.state != AccessState::Deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(workspaces: &[&str]) -> AgentRow {
        AgentRow {
            agent_id: "a".into(),
            org_id: "o".into(),
            owner_user_id: "alice".into(),
            home_workspace_id: workspaces[0].into(),
            state: AccessState::Active,
            is_default: false,
            is_managed: false,
            shared: true,
            workspaces: workspaces.iter().map(|w| (*w).to_string()).collect(),
            latest_version: 1,
            name: "A".into(),
            description: String::new(),
            store_policy: Default::default(),
        }
    }

    fn alice(memberships: &[&str]) -> Subject {
        Subject {
            user_id: "alice".into(),
            org_id: "o".into(),
            org_role: Some(OrgRole::Member),
            workspaces_enabled: true,
            active_workspace: Some(memberships[0].into()),
            memberships: memberships.iter().map(|w| (*w).to_string()).collect(),
            org_default_workspace: "home".into(),
            grant: None,
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|w| (*w).to_string()).collect()
    }

    #[test]
    fn the_home_and_the_unseen_workspaces_stay_and_only_members_add() {
        let agent = agent(&["home", "hidden", "sales"]);
        let after = workspace_list(
            &agent,
            vec!["ops".into()],
            &set(&["home", "sales", "ops"]),
            &alice(&["home", "sales", "ops"]),
        )
        .expect("allowed");
        assert_eq!(after, ["home", "hidden", "ops"]);
        let refused = workspace_list(
            &agent,
            vec!["ops".into()],
            &set(&["ops"]),
            &alice(&["home"]),
        )
        .expect_err("not a member of ops");
        assert!(matches!(refused, Error::PermissionDenied(m) if m.contains("ops")));
    }

    #[test]
    fn a_list_names_each_workspace_once() {
        let id = agentshare_kit::db::new_id();
        assert!(requested_workspaces(std::slice::from_ref(&id)).is_ok());
        assert!(matches!(
            requested_workspaces(&[id.clone(), id]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
