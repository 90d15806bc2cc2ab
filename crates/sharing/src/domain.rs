//! The tenancy rules (DESIGN.md, "Identity and trust" and "Access model
//! (sharing)"): names, org roles, which org a call lands in, step-up and
//! paging, as plain types and functions.

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
    match principal.org_role.as_deref().and_then(OrgRole::parse) {
        Some(role) if allowed.contains(&role) => Ok(role),
        _ => Err(Error::PermissionDenied(format!("only {what} may do this"))),
    }
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
}
