//! The tenancy rules (DESIGN.md, "Identity and trust" and "Access model
//! (sharing)"): names, org and workspace roles and who may change them, which
//! org a call lands in, and step-up, as plain types and functions.

use agentshare_kit::Error;
use agentshare_kit::identity::{GRANT_SCOPE_DENIED, Principal, PrincipalKind};
use agentshare_proto::sharing::v1 as pb;

pub use agentshare_kit::identity::OrgRole;

/// A role within one workspace. It never lifts an org viewer above reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkspaceRole {
    Owner,
    Admin,
    Member,
}

impl WorkspaceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    const ALL: [Self; 3] = [Self::Owner, Self::Admin, Self::Member];

    pub fn parse(role: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == role)
    }

    pub fn to_proto(self) -> pb::WorkspaceRole {
        match self {
            Self::Owner => pb::WorkspaceRole::Owner,
            Self::Admin => pb::WorkspaceRole::Admin,
            Self::Member => pb::WorkspaceRole::Member,
        }
    }

    /// A workspace's owners and admins manage its members.
    pub fn manages_workspace(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// A workspace role named by a client: a known, specified value.
pub fn workspace_role_of(role: i32) -> Result<WorkspaceRole, Error> {
    WorkspaceRole::ALL
        .into_iter()
        .find(|known| i32::from(known.to_proto()) == role)
        .ok_or_else(|| {
            Error::invalid(
                "role",
                "must be WORKSPACE_ROLE_OWNER, WORKSPACE_ROLE_ADMIN or WORKSPACE_ROLE_MEMBER",
            )
        })
}

pub const MAX_NAME_CHARS: usize = 200;

/// A display name: trimmed, 1 to 200 characters.
pub fn display_name(field: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_string())
}

/// A role named by a client: a known, specified value.
pub fn org_role_of(role: i32) -> Result<OrgRole, Error> {
    OrgRole::of_proto(role).ok_or_else(|| {
        Error::invalid(
            "role",
            "must be ORG_ROLE_OWNER, ORG_ROLE_ADMIN, ORG_ROLE_MEMBER or ORG_ROLE_VIEWER",
        )
    })
}

pub const MAX_DESCRIPTION_CHARS: usize = 4000;

/// A free-text description: at most 4,000 characters.
pub fn description(field: &str, text: &str) -> Result<String, Error> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(text.to_string())
}

/// How a request's org is chosen when the client names none.
#[derive(Debug, PartialEq, Eq)]
pub enum OrgChoice {
    /// The header named this org, or the user has only this one.
    Chosen(String),
    /// The user belongs to no org yet.
    NoOrg,
    /// Several orgs and no header: org-scoped calls must name one.
    Ambiguous,
}

pub fn choose_org(requested: &str, memberships: &[String]) -> Result<OrgChoice, Error> {
    if !requested.is_empty() {
        return if memberships.iter().any(|m| m == requested) {
            Ok(OrgChoice::Chosen(requested.to_string()))
        } else {
            // Identical for an org that exists and one that does not.
            Err(Error::not_found(format!("org {requested}")))
        };
    }
    Ok(match memberships {
        [] => OrgChoice::NoOrg,
        [only] => OrgChoice::Chosen(only.clone()),
        _ => OrgChoice::Ambiguous,
    })
}

/// Privileged mutations need a session that passed a second factor
/// recently; an API key never does.
pub fn require_step_up(
    principal: &Principal,
    now_secs: i64,
    max_age_secs: i64,
) -> Result<(), Error> {
    if principal.api_key_id.is_some() {
        return Err(Error::PermissionDenied(
            "step-up required: API keys never pass step-up; use a browser session with a second factor".into(),
        ));
    }
    match principal.step_up_at {
        Some(at) if now_secs - at <= max_age_secs => Ok(()),
        _ => Err(Error::PermissionDenied(format!(
            "step-up required: sign in again with a second factor (it counts for {max_age_secs} s)"
        ))),
    }
}

/// The caller's org role, or PERMISSION_DENIED unless it is one of `allowed`.
pub fn require_org_role(
    principal: &Principal,
    allowed: &[OrgRole],
    what: &str,
) -> Result<OrgRole, Error> {
    match org_role(principal) {
        Some(role) if allowed.contains(&role) => Ok(role),
        _ => Err(Error::PermissionDenied(format!("only {what} may do this"))),
    }
}

/// The caller's org role, if they are a member of the org they act in.
pub fn org_role(principal: &Principal) -> Option<OrgRole> {
    principal.org_role
}

/// Whether the caller is an owner or admin of the org they act in.
pub fn manages_org(principal: &Principal) -> bool {
    org_role(principal).is_some_and(OrgRole::manages_org)
}

/// Owners and admins change the org.
pub fn may_update_org(actor: OrgRole) -> Result<(), Error> {
    if actor.manages_org() {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only org owners and admins may change the org".into(),
    ))
}

/// Only an owner turns workspaces on or off, since that changes what every
/// member sees.
pub fn may_switch_workspaces(actor: OrgRole) -> Result<(), Error> {
    if actor == OrgRole::Owner {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only an org owner may turn workspaces on or off".into(),
    ))
}

/// Only an owner sets the org's policy: it decides whose credentials and
/// bills the org lends out.
pub fn may_set_policy(actor: OrgRole) -> Result<(), Error> {
    if actor == OrgRole::Owner {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only an org owner may change the org's policy".into(),
    ))
}

/// The policy `asked` names, checked.
pub fn policy_of(
    asked: &agentshare_proto::sharing::v1::OrgPolicy,
) -> Result<crate::tenancy::storage::orgs::OrgPolicy, Error> {
    let runs = asked.runs_per_minute_per_principal;
    if !(0..=crate::access::rules::budgets::MAX_LIMIT).contains(&runs) {
        return Err(Error::invalid(
            "policy.runs_per_minute_per_principal",
            format!(
                "must be from 0 (no limit) to {}",
                crate::access::rules::budgets::MAX_LIMIT
            ),
        ));
    }
    Ok(crate::tenancy::storage::orgs::OrgPolicy {
        forbid_delegate_grants: asked.forbid_delegate_grants,
        forbid_external_grants: asked.forbid_external_grants,
        forbid_shared_integrations: asked.forbid_shared_integrations,
        runs_per_minute_per_principal: i64::from(runs),
    })
}

/// Only an org owner adds an owner.
pub fn may_add_org_member(actor: OrgRole, role: OrgRole) -> Result<(), Error> {
    if role == OrgRole::Owner && actor != OrgRole::Owner {
        return Err(Error::PermissionDenied(
            "only an org owner may add an owner".into(),
        ));
    }
    Ok(())
}

/// Only an org owner grants the owner role or takes it away.
pub fn may_change_org_role(actor: OrgRole, current: OrgRole, new: OrgRole) -> Result<(), Error> {
    if (new == OrgRole::Owner || current == OrgRole::Owner) && actor != OrgRole::Owner {
        return Err(Error::PermissionDenied(
            "only an org owner may grant or take away the owner role".into(),
        ));
    }
    Ok(())
}

/// Only an org owner removes an owner.
pub fn may_remove_org_member(actor: OrgRole, member: OrgRole) -> Result<(), Error> {
    if member == OrgRole::Owner && actor != OrgRole::Owner {
        return Err(Error::PermissionDenied(
            "only an org owner may remove an owner".into(),
        ));
    }
    Ok(())
}

/// Org owners and admins read the audit trail.
pub fn may_read_audit(actor: Option<OrgRole>) -> Result<(), Error> {
    if actor.is_some_and(OrgRole::manages_org) {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only org owners and admins read the audit trail".into(),
    ))
}

/// A project's owner, or an org owner or admin, changes the project.
pub fn may_manage_project(actor: Option<OrgRole>, is_project_owner: bool) -> Result<(), Error> {
    if is_project_owner || actor.is_some_and(OrgRole::manages_org) {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only the project's owner and org owners and admins may change it".into(),
    ))
}

/// Org owners and admins, or the workspace's owners and admins, manage its
/// members.
pub fn may_manage_workspace_members(
    org_admin: bool,
    role: Option<WorkspaceRole>,
) -> Result<(), Error> {
    if org_admin || role.is_some_and(WorkspaceRole::manages_workspace) {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only org owners and admins, or the workspace's owners and admins, manage its members"
            .into(),
    ))
}

/// Org owners and admins, or the workspace's owner, delete a workspace.
pub fn may_delete_workspace(org_admin: bool, role: Option<WorkspaceRole>) -> Result<(), Error> {
    if org_admin || role == Some(WorkspaceRole::Owner) {
        return Ok(());
    }
    Err(Error::PermissionDenied(
        "only org owners and admins, or the workspace's owner, delete a workspace".into(),
    ))
}

/// Only a workspace owner (an org owner or admin counts as one) grants the
/// workspace owner role or takes it away.
pub fn may_change_workspace_role(
    acts_as_owner: bool,
    current: Option<WorkspaceRole>,
    new: WorkspaceRole,
) -> Result<(), Error> {
    if (new == WorkspaceRole::Owner || current == Some(WorkspaceRole::Owner)) && !acts_as_owner {
        return Err(Error::PermissionDenied(
            "only a workspace owner may grant or take away the owner role".into(),
        ));
    }
    Ok(())
}

/// Creating a workspace needs workspaces turned on first.
pub fn workspaces_on(workspaces_enabled: bool) -> Result<(), Error> {
    if workspaces_enabled {
        return Ok(());
    }
    Err(Error::FailedPrecondition(
        "this org has no workspaces: an org owner turns them on with UpdateOrg(workspaces_enabled)"
            .into(),
    ))
}

/// The caller's org role once they are an owner or admin of the org.
pub fn require_org_admin(principal: &Principal) -> Result<OrgRole, Error> {
    require_org_role(
        principal,
        &[OrgRole::Owner, OrgRole::Admin],
        "org owners and admins",
    )
}

/// The caller's org role unless they are a viewer, who only reads;
/// `who` names those allowed in the refusal.
pub fn require_non_viewer(principal: &Principal, who: &str) -> Result<OrgRole, Error> {
    require_org_role(
        principal,
        &[OrgRole::Owner, OrgRole::Admin, OrgRole::Member],
        who,
    )
}

/// A workspace role never lifts an org viewer above reading, so changing
/// a workspace needs an org role above viewer.
pub fn may_change_workspaces(principal: &Principal) -> Result<OrgRole, Error> {
    require_non_viewer(principal, "org members who are not viewers")
}

/// An org owner or admin acts as the owner of every workspace.
pub fn acts_as_workspace_owner(org_admin: bool, role: Option<WorkspaceRole>) -> bool {
    org_admin || role == Some(WorkspaceRole::Owner)
}

/// The org's default workspace holds everyone: it is never deleted.
pub fn deletable_workspace(is_default: bool) -> Result<(), Error> {
    if is_default {
        return Err(Error::FailedPrecondition(
            "the org's default workspace can never be deleted".into(),
        ));
    }
    Ok(())
}

/// The session whose active workspace SwitchWorkspace sets: a user
/// session with a `sid` (never an API key), in an org with workspaces on.
pub fn switching_session(principal: &Principal) -> Result<&str, Error> {
    let Some(session) = principal
        .session_id
        .as_deref()
        .filter(|_| principal.api_key_id.is_none())
    else {
        return Err(Error::FailedPrecondition(
            "SwitchWorkspace needs a session with a `sid`; send x-agentshare-workspace instead"
                .into(),
        ));
    };
    if !principal.workspaces_enabled {
        return Err(Error::FailedPrecondition(
            "workspaces are off in this org: there is only one".into(),
        ));
    }
    Ok(session)
}

/// API keys are made by a signed-in person, never by another key.
pub fn may_create_api_key(principal: &Principal) -> Result<(), Error> {
    if principal.api_key_id.is_some() {
        return Err(Error::PermissionDenied(
            "an API key cannot create API keys; sign in to create one".into(),
        ));
    }
    Ok(())
}

/// A key's default workspace: the caller must belong to one (`""` when
/// they belong to none).
pub fn key_workspace(workspace: String) -> Result<String, Error> {
    if workspace.is_empty() {
        return Err(Error::FailedPrecondition(
            "you belong to no workspace in this org; ask an admin to add you to one".into(),
        ));
    }
    Ok(workspace)
}

/// An optional `expire_time` of a new credential, in micros: it must lie
/// after `now`.
pub fn expiry(
    expire_time: Option<&prost_types::Timestamp>,
    now: i64,
) -> Result<Option<i64>, Error> {
    let expires_at = expire_time.map(agentshare_kit::clock::micros_of);
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Error::invalid("expire_time", "must be in the future"));
    }
    Ok(expires_at)
}

/// A grant's principal reaches only Invoke, its sessions and its tools:
/// never the caller's account.
pub fn not_a_grant(principal: &Principal) -> Result<(), Error> {
    if principal.kind == PrincipalKind::Grant {
        return Err(Error::PermissionDenied(GRANT_SCOPE_DENIED.into()));
    }
    Ok(())
}

/// A new project's home: the workspace the caller acts in, once they are
/// an org member who builds.
pub fn project_home(principal: &Principal) -> Result<&str, Error> {
    require_non_viewer(principal, "members who build")?;
    principal.workspace_id.as_deref().ok_or_else(|| {
        Error::PermissionDenied(
            "you have no workspace in this org; ask an admin to add you to one".into(),
        )
    })
}

/// A project's owner, or an org owner or admin, changes the project.
pub fn require_project_manager(principal: &Principal, owner_user_id: &str) -> Result<(), Error> {
    let is_owner = principal.user_id.as_deref() == Some(owner_user_id);
    may_manage_project(org_role(principal), is_owner)
}

/// The workspaces a caller asks to list a project in: each id once, the
/// home left out (it always stays).
pub fn requested_workspaces(ids: &[String], home: &str) -> Result<Vec<String>, Error> {
    let mut requested = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let id = agentshare_kit::ids::parse(&format!("workspace_ids[{index}]"), id)?;
        if id != home && !requested.contains(&id) {
            requested.push(id);
        }
    }
    Ok(requested)
}

/// How the caller stands to a workspace they ask to add to a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The caller belongs to it.
    Member,
    /// It exists in the org, but the caller does not belong to it.
    Outsider,
    /// No such workspace in the org.
    Missing,
}

/// A workspace list after a change, and what the caller added and removed.
#[derive(Debug, PartialEq, Eq)]
pub struct ListChange {
    /// Sorted.
    pub after: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Replaces a workspace list (DESIGN.md, "Access model (sharing)"): the
/// listed workspaces the caller cannot see stay, and every one they add
/// must exist and hold them. `before` pairs each listed workspace with
/// whether the caller belongs to it; `requested` pairs each asked-for one
/// with how the caller stands to it.
pub fn change_list(
    before: &[(String, bool)],
    requested: &[(String, Reach)],
) -> Result<ListChange, Error> {
    let mut after: Vec<String> = before
        .iter()
        .filter(|(_, visible)| !visible)
        .map(|(id, _)| id.clone())
        .collect();
    let mut added = Vec::new();
    for (id, reach) in requested {
        if after.contains(id) {
            continue;
        }
        if !before.iter().any(|(listed, _)| listed == id) {
            match reach {
                Reach::Missing => return Err(Error::not_found(format!("workspace {id}"))),
                Reach::Outsider => {
                    return Err(Error::PermissionDenied(format!(
                        "you are not a member of workspace {id}"
                    )));
                }
                Reach::Member => added.push(id.clone()),
            }
        }
        after.push(id.clone());
    }
    let removed = before
        .iter()
        .filter(|(id, visible)| *visible && !after.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    after.sort();
    Ok(ListChange {
        after,
        added,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_one_org_needs_no_header_and_several_need_one() {
        let one = vec!["o1".to_string()];
        let two = vec!["o1".to_string(), "o2".to_string()];
        assert_eq!(
            choose_org("", &one).ok(),
            Some(OrgChoice::Chosen("o1".into()))
        );
        assert_eq!(choose_org("", &two).ok(), Some(OrgChoice::Ambiguous));
        assert_eq!(
            choose_org("o2", &two).ok(),
            Some(OrgChoice::Chosen("o2".into()))
        );
        assert_eq!(choose_org("", &[]).ok(), Some(OrgChoice::NoOrg));
        assert!(matches!(choose_org("o3", &two), Err(Error::NotFound(_))));
    }

    #[test]
    fn step_up_holds_for_its_age_and_never_for_api_keys() {
        let mut principal = Principal::user("u");
        assert!(
            require_step_up(&principal, 1_000, 600).is_err(),
            "no second factor"
        );
        principal.step_up_at = Some(1_000);
        assert!(
            require_step_up(&principal, 1_600, 600).is_ok(),
            "exactly at the age"
        );
        assert!(
            require_step_up(&principal, 1_601, 600).is_err(),
            "one second past"
        );
        principal.api_key_id = Some("k".into());
        assert!(
            require_step_up(&principal, 1_000, 600).is_err(),
            "API keys never pass"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            display_name("name", "  Acme ").ok().as_deref(),
            Some("Acme")
        );
        assert!(display_name("name", "   ").is_err());
        assert!(display_name("name", &"x".repeat(201)).is_err());
    }

    const ORG_ROLES: [OrgRole; 4] = [
        OrgRole::Owner,
        OrgRole::Admin,
        OrgRole::Member,
        OrgRole::Viewer,
    ];

    #[test]
    fn only_an_owner_adds_changes_or_removes_an_owner() {
        for actor in ORG_ROLES {
            let owner = actor == OrgRole::Owner;
            assert_eq!(
                may_add_org_member(actor, OrgRole::Owner).is_ok(),
                owner,
                "{actor:?} adds an owner"
            );
            assert_eq!(
                may_remove_org_member(actor, OrgRole::Owner).is_ok(),
                owner,
                "{actor:?} removes an owner"
            );
            assert_eq!(
                may_change_org_role(actor, OrgRole::Member, OrgRole::Owner).is_ok(),
                owner,
                "{actor:?} makes a member an owner"
            );
            assert_eq!(
                may_change_org_role(actor, OrgRole::Owner, OrgRole::Admin).is_ok(),
                owner,
                "{actor:?} demotes an owner"
            );
            for role in [OrgRole::Admin, OrgRole::Member, OrgRole::Viewer] {
                assert!(may_add_org_member(actor, role).is_ok());
                assert!(may_remove_org_member(actor, role).is_ok());
                assert!(may_change_org_role(actor, role, OrgRole::Viewer).is_ok());
            }
        }
    }

    #[test]
    fn admins_change_the_org_and_only_owners_turn_workspaces_on_or_off() {
        for actor in ORG_ROLES {
            assert_eq!(
                may_update_org(actor).is_ok(),
                actor.manages_org(),
                "{actor:?}"
            );
            assert_eq!(
                may_switch_workspaces(actor).is_ok(),
                actor == OrgRole::Owner,
                "{actor:?}"
            );
        }
    }

    #[test]
    fn owners_and_admins_run_the_org_and_read_its_audit_trail() {
        for actor in ORG_ROLES {
            let runs = matches!(actor, OrgRole::Owner | OrgRole::Admin);
            assert_eq!(actor.manages_org(), runs, "{actor:?}");
            assert_eq!(may_read_audit(Some(actor)).is_ok(), runs, "{actor:?}");
            let mut principal = Principal::user("u");
            principal.org_role = Some(actor);
            assert_eq!(manages_org(&principal), runs, "{actor:?}");
        }
        assert!(may_read_audit(None).is_err());
        assert!(!manages_org(&Principal::user("u")));
    }

    #[test]
    fn a_project_is_changed_by_its_owner_or_by_org_admins() {
        assert!(may_manage_project(Some(OrgRole::Member), true).is_ok());
        assert!(may_manage_project(None, true).is_ok());
        assert!(may_manage_project(Some(OrgRole::Admin), false).is_ok());
        assert!(may_manage_project(Some(OrgRole::Member), false).is_err());
        assert!(may_manage_project(Some(OrgRole::Viewer), false).is_err());
    }

    #[test]
    fn workspace_owners_and_admins_manage_members_and_only_owners_delete() {
        use WorkspaceRole::{Admin, Member, Owner};
        assert!(may_manage_workspace_members(true, None).is_ok());
        assert!(may_manage_workspace_members(false, Some(Owner)).is_ok());
        assert!(may_manage_workspace_members(false, Some(Admin)).is_ok());
        assert!(may_manage_workspace_members(false, Some(Member)).is_err());
        assert!(may_manage_workspace_members(false, None).is_err());
        assert!(may_delete_workspace(true, None).is_ok());
        assert!(may_delete_workspace(false, Some(Owner)).is_ok());
        assert!(may_delete_workspace(false, Some(Admin)).is_err());
        assert!(may_delete_workspace(false, None).is_err());
    }

    #[test]
    fn only_a_workspace_owner_grants_or_takes_away_its_owner_role() {
        use WorkspaceRole::{Admin, Member, Owner};
        assert!(may_change_workspace_role(true, Some(Owner), Member).is_ok());
        assert!(may_change_workspace_role(true, Some(Member), Owner).is_ok());
        assert!(may_change_workspace_role(false, Some(Member), Owner).is_err());
        assert!(may_change_workspace_role(false, Some(Owner), Admin).is_err());
        assert!(may_change_workspace_role(false, Some(Member), Admin).is_ok());
        assert!(may_change_workspace_role(false, Some(Admin), Member).is_ok());
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in ORG_ROLES {
            assert_eq!(OrgRole::parse(role.as_str()), Some(role));
        }
        for role in [
            WorkspaceRole::Owner,
            WorkspaceRole::Admin,
            WorkspaceRole::Member,
        ] {
            assert_eq!(WorkspaceRole::parse(role.as_str()), Some(role));
            assert_eq!(workspace_role_of(role.to_proto().into()).ok(), Some(role));
        }
        assert!(WorkspaceRole::parse("viewer").is_none());
        assert!(workspace_role_of(0).is_err());
    }

    #[test]
    fn a_list_change_keeps_what_the_caller_cannot_see_and_adds_only_their_workspaces() {
        let before = [
            ("w1".to_string(), true),
            ("w2".to_string(), false),
            ("w3".to_string(), true),
        ];
        let change = change_list(
            &before,
            &[
                ("w4".to_string(), Reach::Member),
                ("w1".to_string(), Reach::Member),
            ],
        )
        .expect("allowed");
        assert_eq!(
            change,
            ListChange {
                after: vec!["w1".into(), "w2".into(), "w4".into()],
                added: vec!["w4".into()],
                removed: vec!["w3".into()],
            }
        );
        // Asking for a workspace already listed needs no membership.
        assert!(change_list(&before, &[("w2".to_string(), Reach::Outsider)]).is_ok());
        assert!(matches!(
            change_list(&before, &[("w5".to_string(), Reach::Missing)]),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            change_list(&before, &[("w5".to_string(), Reach::Outsider)]),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn requested_workspaces_drop_the_home_and_repeats_and_name_a_bad_id() {
        let id = |n: u8| format!("00000000-0000-7000-8000-00000000000{n}");
        let asked = [id(1), id(2), id(1), id(3)];
        assert_eq!(
            requested_workspaces(&asked, &id(2)).ok(),
            Some(vec![id(1), id(3)])
        );
        let Err(Error::InvalidArgument(violations)) =
            requested_workspaces(&[id(1), String::new()], &id(2))
        else {
            panic!("an empty id is refused");
        };
        assert_eq!(violations[0].field, "workspace_ids[1]");
    }

    #[test]
    fn api_keys_come_from_people_and_expire_later() {
        let mut principal = Principal::user("u");
        assert!(may_create_api_key(&principal).is_ok());
        principal.api_key_id = Some("k".into());
        assert!(may_create_api_key(&principal).is_err());
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert_eq!(expiry(None, 5_000_000).ok(), Some(None));
        assert_eq!(expiry(Some(&at(6)), 5_000_000).ok(), Some(Some(6_000_000)));
        assert!(expiry(Some(&at(5)), 5_000_000).is_err());
        assert!(key_workspace(String::new()).is_err());
        assert_eq!(key_workspace("w".into()).ok().as_deref(), Some("w"));
    }

    #[test]
    fn a_session_switches_workspaces_only_when_the_org_has_them() {
        let mut principal = Principal::user("u");
        principal.workspaces_enabled = true;
        assert!(switching_session(&principal).is_err(), "no sid");
        principal.session_id = Some("s".into());
        assert_eq!(switching_session(&principal).ok(), Some("s"));
        principal.api_key_id = Some("k".into());
        assert!(switching_session(&principal).is_err(), "an API key");
        principal.api_key_id = None;
        principal.workspaces_enabled = false;
        assert!(switching_session(&principal).is_err(), "workspaces off");
        assert!(workspaces_on(false).is_err());
        assert!(workspaces_on(true).is_ok());
    }

    #[test]
    fn org_admins_act_as_owners_and_the_default_workspace_stays() {
        assert!(acts_as_workspace_owner(true, None));
        assert!(acts_as_workspace_owner(false, Some(WorkspaceRole::Owner)));
        assert!(!acts_as_workspace_owner(false, Some(WorkspaceRole::Admin)));
        assert!(!acts_as_workspace_owner(false, None));
        assert!(deletable_workspace(true).is_err());
        assert!(deletable_workspace(false).is_ok());
    }

    #[test]
    fn viewers_change_nothing_and_builders_need_a_workspace_for_a_project() {
        for role in ORG_ROLES {
            let mut principal = Principal::user("u");
            principal.org_role = Some(role);
            assert_eq!(
                may_change_workspaces(&principal).is_ok(),
                role != OrgRole::Viewer,
                "{role:?}"
            );
            assert_eq!(
                require_org_admin(&principal).is_ok(),
                role.manages_org(),
                "{role:?}"
            );
            assert!(
                project_home(&principal).is_err(),
                "{role:?} without a workspace"
            );
            principal.workspace_id = Some("w".into());
            assert_eq!(
                project_home(&principal).ok(),
                (role != OrgRole::Viewer).then_some("w"),
                "{role:?}"
            );
        }
    }

    #[test]
    fn a_grant_never_reads_the_account() {
        let mut principal = Principal::user("u");
        assert!(not_a_grant(&principal).is_ok());
        principal.kind = PrincipalKind::Grant;
        assert!(not_a_grant(&principal).is_err());
    }
}
