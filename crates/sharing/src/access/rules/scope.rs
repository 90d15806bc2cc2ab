//! The scope of one request (WorkspaceScope, DESIGN.md "Access model
//! (sharing)"): the workspace a user acts in within an org, validated against
//! membership on every call.

use agentshare_kit::identity::Principal;
use agentshare_kit::{Error, ids};

use crate::access::rules::decision::{self, Action, GrantHeld, Subject};
use crate::access::storage::agent_access::AgentRow;
use crate::common::Storage;
use crate::tenancy::storage::orgs::OrgRow;

/// The workspace of a request in `org`:
/// - with workspaces off, the org's default workspace (the org behaves as
///   one workspace);
/// - the requested one, if the user belongs to it;
/// - else `preferred` (a session's or an API key's), if the user still
///   belongs to it;
/// - else the user's default: the org default workspace if they are in it,
///   else their first. Empty means none, which denies everything.
pub async fn workspace_of(
    storage: &Storage,
    org: &OrgRow,
    user_id: &str,
    requested: &str,
    preferred: Option<&str>,
) -> Result<String, Error> {
    let memberships = if org.workspaces_enabled {
        storage.tenancy.workspace_ids_of(&org.id, user_id).await?
    } else {
        Vec::new()
    };
    choose_workspace(org, &memberships, requested, preferred)
}

/// [`workspace_of`] for a user whose `memberships` in `org` are read: the
/// org's default first, as `workspace_ids_of` lists them.
pub fn choose_workspace(
    org: &OrgRow,
    memberships: &[String],
    requested: &str,
    preferred: Option<&str>,
) -> Result<String, Error> {
    let unknown = || Error::not_found(format!("workspace {requested}"));
    if !org.workspaces_enabled {
        if !requested.is_empty() && requested != org.default_workspace_id {
            return Err(unknown());
        }
        return Ok(org.default_workspace_id.clone());
    }
    let member = |workspace: &str| memberships.iter().any(|m| m == workspace);
    if !requested.is_empty() {
        return if member(requested) {
            Ok(requested.to_string())
        } else {
            Err(unknown())
        };
    }
    if let Some(preferred) = preferred.filter(|w| !w.is_empty() && member(w)) {
        return Ok(preferred.to_string());
    }
    Ok(memberships.first().cloned().unwrap_or_default())
}

/// The org a subject acts in, which must exist.
pub async fn org(storage: &Storage, org_id: &str) -> Result<OrgRow, Error> {
    storage
        .tenancy
        .org(org_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("org {org_id}")))
}

/// The caller as an access subject, from the scope the gateway resolved for
/// this very call (no cache: a membership change shows on the next call).
pub async fn caller(storage: &Storage, principal: &Principal) -> Result<Subject, Error> {
    if let Some(grant) = &principal.grant {
        let user_id = principal.user_id.clone().unwrap_or_default();
        return grant_holder(storage, &grant.id, user_id).await;
    }
    let user_id = principal.require_user()?;
    let org_id = principal.require_org()?;
    // Resolved with the Principal for this very call: read again, they
    // would say the same.
    if let (Some(org_role), Some(resolved)) = (principal.org_role, &principal.memberships) {
        return Ok(Subject {
            user_id: user_id.to_string(),
            org_id: org_id.to_string(),
            org_role: Some(org_role),
            workspaces_enabled: principal.workspaces_enabled,
            active_workspace: principal.workspace_id.clone().filter(|w| !w.is_empty()),
            memberships: resolved.workspace_ids.clone(),
            org_default_workspace: resolved.default_workspace_id.clone(),
            grant: None,
        });
    }
    let org = org(storage, org_id).await?;
    let org_role = match principal.org_role {
        Some(role) => role,
        // The scheduler signs a user's Principal when an automation fires
        // and names no role: read it now, so a user removed from the org
        // since they subscribed is refused at fire time.
        None => storage
            .tenancy
            .org_role(org_id, user_id)
            .await?
            .ok_or_else(|| {
                Error::PermissionDenied("you are no longer a member of this org".into())
            })?,
    };
    Ok(Subject {
        user_id: user_id.to_string(),
        org_id: org_id.to_string(),
        org_role: Some(org_role),
        workspaces_enabled: org.workspaces_enabled,
        active_workspace: principal.workspace_id.clone().filter(|w| !w.is_empty()),
        memberships: storage.tenancy.workspace_ids_of(org_id, user_id).await?,
        org_default_workspace: org.default_workspace_id,
        grant: None,
    })
}

/// Another member of `org` as an access subject, acting in `requested`
/// (validated against their membership) or else their default workspace.
/// NOT_FOUND when they are not a member, as for a user that never existed.
pub async fn member(
    storage: &Storage,
    org: &OrgRow,
    user_id: &str,
    requested: &str,
) -> Result<Subject, Error> {
    let role = storage
        .tenancy
        .org_role(&org.id, user_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
    let workspace = workspace_of(storage, org, user_id, requested, None).await?;
    Ok(Subject {
        user_id: user_id.to_string(),
        org_id: org.id.clone(),
        org_role: Some(role),
        workspaces_enabled: org.workspaces_enabled,
        active_workspace: Some(workspace).filter(|w| !w.is_empty()),
        memberships: storage.tenancy.workspace_ids_of(&org.id, user_id).await?,
        org_default_workspace: org.default_workspace_id.clone(),
        grant: None,
    })
}

/// The holder of a grant as an access subject, signed in as `user_id` too
/// unless it is empty: the grant alone decides, read fresh with its org's
/// policy, so a revocation or a policy forbidding it shows on the very next
/// call.
async fn grant_holder(
    storage: &Storage,
    grant_id: &str,
    user_id: String,
) -> Result<Subject, Error> {
    let grant = storage
        .access
        .grant(grant_id)
        .await?
        .ok_or_else(|| Error::Unauthenticated("share token rejected: unknown grant".into()))?;
    let org = org(storage, &grant.org_id).await?;
    let holder_is_member = match user_id.as_str() {
        "" => false,
        // Read only when the policy asks: most orgs let anyone hold a grant.
        user if org.policy.forbid_external_grants => {
            storage.tenancy.org_role(&org.id, user).await?.is_some()
        }
        _ => true,
    };
    super::policy::may_use_grant(&org.policy, grant.kind, holder_is_member)?;
    let held = GrantHeld {
        id: grant.id.clone(),
        kind: grant.kind,
        agent_id: grant.agent_id.clone(),
        state: grant.state_at(storage.clock.now_micros()),
        with_user: !user_id.is_empty(),
    };
    Ok(Subject {
        user_id,
        org_id: org.id,
        org_role: None,
        workspaces_enabled: org.workspaces_enabled,
        active_workspace: None,
        memberships: Vec::new(),
        org_default_workspace: org.default_workspace_id,
        grant: Some(held),
    })
}

/// The caller as a subject, the parsed id of the agent a request names,
/// and the agent if sharing knows it.
pub async fn caller_and_agent(
    storage: &Storage,
    principal: &Principal,
    agent_id: &str,
) -> Result<(Subject, String, Option<AgentRow>), Error> {
    let agent_id = ids::parse("agent_id", agent_id)?;
    let subject = caller(storage, principal).await?;
    let agent = storage.access.agent(&agent_id).await?;
    Ok((subject, agent_id, agent))
}

/// The agent a request names and the caller, once the caller may do
/// `action` with it.
pub async fn agent_for(
    storage: &Storage,
    principal: &Principal,
    agent_id: &str,
    action: Action,
) -> Result<(AgentRow, Subject), Error> {
    let (subject, agent_id, agent) = caller_and_agent(storage, principal, agent_id).await?;
    let agent = decision::require(agent, &agent_id, &subject, action)?;
    Ok((agent, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(workspaces_enabled: bool) -> OrgRow {
        OrgRow {
            id: "org".into(),
            name: "Acme".into(),
            workspaces_enabled,
            default_workspace_id: "default".into(),
            created_at: 0,
            policy: Default::default(),
        }
    }

    fn member_of(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_string()).collect()
    }

    #[test]
    fn without_workspaces_the_org_is_its_default_workspace() {
        let off = org(false);
        assert_eq!(choose_workspace(&off, &[], "", None).unwrap(), "default");
        assert_eq!(
            choose_workspace(&off, &[], "default", Some("x")).unwrap(),
            "default"
        );
        let other = choose_workspace(&off, &[], "sales", None).unwrap_err();
        assert!(matches!(other, Error::NotFound(_)), "{other:?}");
    }

    #[test]
    fn the_requested_workspace_must_be_ones_own() {
        let on = org(true);
        let mine = member_of(&["default", "sales"]);
        assert_eq!(
            choose_workspace(&on, &mine, "sales", None).unwrap(),
            "sales"
        );
        let theirs = choose_workspace(&on, &mine, "legal", Some("sales")).unwrap_err();
        assert!(matches!(theirs, Error::NotFound(_)), "{theirs:?}");
    }

    #[test]
    fn a_preferred_workspace_counts_while_one_still_belongs_to_it() {
        let on = org(true);
        let mine = member_of(&["default", "sales"]);
        assert_eq!(
            choose_workspace(&on, &mine, "", Some("sales")).unwrap(),
            "sales"
        );
        assert_eq!(
            choose_workspace(&on, &mine, "", Some("left")).unwrap(),
            "default",
            "a workspace the user left falls back to their first"
        );
        assert_eq!(choose_workspace(&on, &[], "", Some("left")).unwrap(), "");
    }
}
