//! The tenancy rules (DESIGN.md, "Identity and trust" and "Access model
//! (sharing)"): names, org and workspace roles and who may change them, which
//! org a call lands in, and step-up, as plain types and functions.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_proto::sharing::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgRole {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(role: &str) -> Option<Self> {
        [Self::Owner, Self::Admin, Self::Member, Self::Viewer]
            .into_iter()
            .find(|r| r.as_str() == role)
    }

    pub fn to_proto(self) -> pb::OrgRole {
        match self {
            Self::Owner => pb::OrgRole::Owner,
            Self::Admin => pb::OrgRole::Admin,
            Self::Member => pb::OrgRole::Member,
            Self::Viewer => pb::OrgRole::Viewer,
        }
    }

    /// Owners and admins run the org: they see every workspace, manage
    /// members and read the audit trail.
    pub fn manages_org(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

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

    pub fn parse(role: &str) -> Option<Self> {
        [Self::Owner, Self::Admin, Self::Member]
            .into_iter()
            .find(|r| r.as_str() == role)
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
    match pb::WorkspaceRole::try_from(role) {
        Ok(pb::WorkspaceRole::Owner) => Ok(WorkspaceRole::Owner),
        Ok(pb::WorkspaceRole::Admin) => Ok(WorkspaceRole::Admin),
        Ok(pb::WorkspaceRole::Member) => Ok(WorkspaceRole::Member),
        _ => Err(Error::invalid(
            "role",
            "must be WORKSPACE_ROLE_OWNER, WORKSPACE_ROLE_ADMIN or WORKSPACE_ROLE_MEMBER",
        )),
    }
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
    match pb::OrgRole::try_from(role) {
        Ok(pb::OrgRole::Owner) => Ok(OrgRole::Owner),
        Ok(pb::OrgRole::Admin) => Ok(OrgRole::Admin),
        Ok(pb::OrgRole::Member) => Ok(OrgRole::Member),
        Ok(pb::OrgRole::Viewer) => Ok(OrgRole::Viewer),
        _ => Err(Error::invalid(
            "role",
            "must be ORG_ROLE_OWNER, ORG_ROLE_ADMIN, ORG_ROLE_MEMBER or ORG_ROLE_VIEWER",
        )),
    }
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
    principal.org_role.as_deref().and_then(OrgRole::parse)
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
            principal.org_role = Some(actor.as_str().into());
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
}
