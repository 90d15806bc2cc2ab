//! An org's policy (DESIGN.md, Grants) applied to a call: what it forbids
//! stops working on the very next call, and the refusal names the rule.

use agentshare_kit::Error;

use crate::access::rules::plan::Plan;
use crate::access::storage::grants::GrantKind;
use crate::tenancy::storage::orgs::OrgPolicy;

fn refused(rule: &str, why: &str) -> Error {
    Error::PermissionDenied(format!("org policy {rule}: {why}"))
}

/// Whether the org lets a grant of `kind` be created.
pub fn may_create_grant(policy: &OrgPolicy, kind: GrantKind) -> Result<(), Error> {
    if policy.forbid_delegate_grants && kind == GrantKind::Delegate {
        return Err(refused(
            "forbid_delegate_grants",
            "this org does not allow DELEGATE grants; create an INVOKE grant, whose holders run with their own credentials",
        ));
    }
    Ok(())
}

/// Whether a grant of `kind` still works for its holder, who is a member
/// of the grant's org or not (anonymous visitors are not).
pub fn may_use_grant(
    policy: &OrgPolicy,
    kind: GrantKind,
    holder_is_member: bool,
) -> Result<(), Error> {
    if policy.forbid_delegate_grants && kind == GrantKind::Delegate {
        return Err(refused(
            "forbid_delegate_grants",
            "this org no longer allows DELEGATE grants, so this token stops working; ask the agent's owner for another way in",
        ));
    }
    if policy.forbid_external_grants && !holder_is_member {
        return Err(refused(
            "forbid_external_grants",
            "this org's grants work only for its members; sign in as a member of the org",
        ));
    }
    Ok(())
}

/// Whether the org lets `plan` run: a run by anyone but the agent's owner
/// may not use the owner's credentials for a SHARED integration when the
/// policy forbids it.
pub fn may_run(policy: &OrgPolicy, plan: &Plan, owner_runs: bool) -> Result<(), Error> {
    if !policy.forbid_shared_integrations || owner_runs {
        return Ok(());
    }
    let shared: Vec<&str> = plan
        .integrations
        .iter()
        .filter(|i| i.setup.uses_builder)
        .map(|i| i.setup.integration.key.as_str())
        .collect();
    if shared.is_empty() {
        return Ok(());
    }
    Err(refused(
        "forbid_shared_integrations",
        &format!(
            "this agent runs {} with its owner's credentials, which this org does not allow for anyone else; ask the owner to make them user-configured",
            shared.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delegate: bool, external: bool) -> OrgPolicy {
        OrgPolicy {
            forbid_delegate_grants: delegate,
            forbid_external_grants: external,
            ..OrgPolicy::default()
        }
    }

    fn message(result: Result<(), Error>) -> String {
        match result {
            Err(Error::PermissionDenied(message)) => message,
            other => panic!("expected PERMISSION_DENIED, got {other:?}"),
        }
    }

    #[test]
    fn the_default_policy_forbids_nothing() {
        let open = OrgPolicy::default();
        assert!(may_create_grant(&open, GrantKind::Delegate).is_ok());
        assert!(may_use_grant(&open, GrantKind::Delegate, false).is_ok());
    }

    #[test]
    fn forbidding_delegate_ends_existing_delegate_grants_but_not_invoke() {
        let strict = policy(true, false);
        let created = message(may_create_grant(&strict, GrantKind::Delegate));
        assert!(
            created.starts_with("org policy forbid_delegate_grants:"),
            "{created}"
        );
        let used = message(may_use_grant(&strict, GrantKind::Delegate, true));
        assert!(
            used.starts_with("org policy forbid_delegate_grants:"),
            "{used}"
        );
        assert!(may_use_grant(&strict, GrantKind::Invoke, false).is_ok());
        assert!(may_create_grant(&strict, GrantKind::Invoke).is_ok());
    }

    #[test]
    fn forbidding_external_grants_refuses_outsiders_and_anonymous_visitors() {
        let members_only = policy(false, true);
        let outsider = message(may_use_grant(&members_only, GrantKind::Invoke, false));
        assert!(
            outsider.starts_with("org policy forbid_external_grants:"),
            "{outsider}"
        );
        assert!(may_use_grant(&members_only, GrantKind::Invoke, true).is_ok());
        assert!(may_use_grant(&members_only, GrantKind::Delegate, false).is_err());
    }
}
