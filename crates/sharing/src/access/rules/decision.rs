//! Who may do what with an agent (DESIGN.md, "Access model"), decided from
//! the synced access facts alone, so no check ever calls registry.
//!
//! One function, [`explain`], finds every path from a subject to an agent
//! and every reason none applies; Check, CheckBulk, My Agents, pins and the
//! registry's holder view all take their answer from it, so they cannot
//! disagree.

use agentshare_kit::Error;
use agentshare_proto::sharing::v1 as pb;
use pb::{AccessPathKind as PathKind, DecisionReason as Reason};

use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::{GrantKind, GrantRow, GrantState};
use crate::tenancy::rules::OrgRole;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    View,
    Run,
    ConfigureOwn,
    Edit,
    Deploy,
    Share,
    Delete,
    ManageGrants,
}

impl Action {
    /// Every action, in the order an explanation lists them.
    pub const ALL: [Action; 8] = [
        Self::View,
        Self::Run,
        Self::ConfigureOwn,
        Self::Edit,
        Self::Deploy,
        Self::Share,
        Self::Delete,
        Self::ManageGrants,
    ];

    /// A client's action; UNSPECIFIED only where `default` allows it.
    pub fn of(action: i32, default: Option<Action>) -> Result<Self, Error> {
        Ok(match pb::Action::try_from(action) {
            Ok(pb::Action::View) => Self::View,
            Ok(pb::Action::Run) => Self::Run,
            Ok(pb::Action::ConfigureOwn) => Self::ConfigureOwn,
            Ok(pb::Action::Edit) => Self::Edit,
            Ok(pb::Action::Deploy) => Self::Deploy,
            Ok(pb::Action::Share) => Self::Share,
            Ok(pb::Action::Delete) => Self::Delete,
            Ok(pb::Action::ManageGrants) => Self::ManageGrants,
            Ok(pb::Action::Unspecified) if default.is_some() => {
                return default.ok_or_else(|| Error::invalid("action", "is required"));
            }
            _ => {
                return Err(Error::invalid(
                    "action",
                    "must be one of VIEW, RUN, CONFIGURE_OWN, EDIT, DEPLOY, SHARE, DELETE, MANAGE_GRANTS",
                ));
            }
        })
    }

    pub fn to_proto(self) -> pb::Action {
        match self {
            Self::View => pb::Action::View,
            Self::Run => pb::Action::Run,
            Self::ConfigureOwn => pb::Action::ConfigureOwn,
            Self::Edit => pb::Action::Edit,
            Self::Deploy => pb::Action::Deploy,
            Self::Share => pb::Action::Share,
            Self::Delete => pb::Action::Delete,
            Self::ManageGrants => pb::Action::ManageGrants,
        }
    }
}

/// What a holder (a workspace member, or anyone with the default agent)
/// may do; viewers only look.
const HOLDER: &[Action] = &[Action::View, Action::Run, Action::ConfigureOwn];
const LOOK: &[Action] = &[Action::View];

/// The principal a question is about, as seen in the agent's org.
#[derive(Clone, Debug)]
pub struct Subject {
    pub user_id: String,
    /// The org the subject acts in; agents of other orgs are out of reach.
    pub org_id: String,
    /// Their role in that org; `None` when they are not a member.
    pub org_role: Option<OrgRole>,
    pub workspaces_enabled: bool,
    /// The workspace they act in, validated against membership; `None`
    /// when they may act in none.
    pub active_workspace: Option<String>,
    /// Every workspace of the org they belong to.
    pub memberships: Vec<String>,
    /// The org's default workspace, where everything lives while workspaces
    /// are off.
    pub org_default_workspace: String,
    /// Set when the subject holds a share grant: then the grant alone
    /// decides (a grant's principal acts through its grant, not as a
    /// member).
    pub grant: Option<GrantHeld>,
}

impl Subject {
    /// Where the subject stands: the active workspace when workspaces are
    /// on, the org as one workspace when they are off.
    pub fn standing(&self) -> Option<String> {
        if self.workspaces_enabled {
            self.active_workspace.clone()
        } else {
            Some(self.org_default_workspace.clone())
        }
    }

    fn manages_org(&self) -> bool {
        self.org_role.is_some_and(OrgRole::manages_org)
    }
}

/// A grant as a subject holds it.
#[derive(Clone, Debug)]
pub struct GrantHeld {
    pub id: String,
    pub kind: GrantKind,
    pub agent_id: String,
    pub state: GrantState,
    /// Whether a signed-in user presents it (INVOKE needs one).
    pub with_user: bool,
}

/// One way the subject reaches the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub kind: PathKind,
    pub workspace_id: String,
    /// For a grant path, the grant.
    pub grant: Option<(String, GrantKind)>,
    pub actions: Vec<Action>,
}

/// One fact the decision read.
#[derive(Clone, Debug)]
pub struct Fact {
    pub code: &'static str,
    pub subject_id: String,
    pub value: String,
    pub supports_access: bool,
}

#[derive(Clone, Debug)]
pub struct Explanation {
    pub allowed: bool,
    /// The path that allows the action, or the first reason it is denied.
    pub reason: Reason,
    pub paths: Vec<Path>,
    /// Every reason no path allows it; empty when allowed.
    pub denials: Vec<Reason>,
    pub facts: Vec<Fact>,
}

fn reason_of(path: PathKind) -> Reason {
    match path {
        PathKind::Owner => Reason::Owner,
        PathKind::WorkspaceShare => Reason::WorkspaceMember,
        PathKind::OrgDefaultAgent => Reason::OrgDefaultAgent,
        PathKind::OrgAdmin => Reason::OrgAdmin,
        PathKind::Grant => Reason::Grant,
        PathKind::Unspecified => Reason::Unspecified,
    }
}

/// The owner's actions on their own agent. The default agent is never
/// shared, deleted or granted, by anyone; no user owns it, so that arm only
/// keeps the rule in one place. A draft runs only in test mode, which
/// ResolveInvocation allows the owner separately.
fn owner_actions(agent: &AgentRow) -> Vec<Action> {
    Action::ALL
        .into_iter()
        .filter(|action| match action {
            Action::Run => agent.is_default || agent.state != AccessState::Draft,
            Action::Share | Action::Delete | Action::ManageGrants => !agent.is_default,
            _ => true,
        })
        .collect()
}

/// Every path from `subject` to `agent`, whether `action` is allowed, and
/// why not when it is not.
pub fn explain(agent: Option<&AgentRow>, subject: &Subject, action: Action) -> Explanation {
    let mut facts = Vec::new();
    let mut fact = |code: &'static str, subject_id: &str, value: String, supports: bool| {
        facts.push(Fact {
            code,
            subject_id: subject_id.to_string(),
            value,
            supports_access: supports,
        });
    };
    let Some(agent) = agent else {
        return Explanation {
            allowed: false,
            reason: Reason::NotFound,
            paths: Vec::new(),
            denials: vec![Reason::NotFound],
            facts,
        };
    };
    if let Some(grant) = &subject.grant {
        return explain_grant(agent, grant, action, facts);
    }
    let role = subject.org_role.filter(|_| subject.org_id == agent.org_id);
    let viewer = role == Some(OrgRole::Viewer);
    let org_admin = role.is_some_and(OrgRole::manages_org);
    fact(
        "principal.org_role",
        &subject.user_id,
        role.map_or("none", OrgRole::as_str).into(),
        role.is_some(),
    );
    fact(
        "org.workspaces_enabled",
        &agent.org_id,
        subject.workspaces_enabled.to_string(),
        true,
    );
    let standing = subject.standing();
    fact(
        "principal.active_workspace",
        standing.as_deref().unwrap_or_default(),
        standing.clone().unwrap_or_else(|| "none".into()),
        standing.is_some(),
    );
    let live = agent.state != AccessState::Deleted;
    fact(
        "agent.state",
        &agent.agent_id,
        agent.state.as_str().to_uppercase(),
        live,
    );
    let owner = agent.owner_user_id == subject.user_id;
    fact(
        "agent.owner",
        &agent.owner_user_id,
        owner.to_string(),
        owner,
    );
    fact(
        "agent.is_default",
        &agent.agent_id,
        agent.is_default.to_string(),
        agent.is_default,
    );
    fact(
        "agent.is_managed",
        &agent.agent_id,
        agent.is_managed.to_string(),
        false,
    );
    fact(
        "agent.shared",
        &agent.agent_id,
        agent.shared.to_string(),
        agent.shared,
    );
    for workspace in &agent.workspaces {
        let member = !subject.workspaces_enabled || subject.memberships.contains(workspace);
        fact("agent.workspace", workspace, "listed".into(), true);
        fact(
            "workspace.membership",
            workspace,
            if member { "member" } else { "none" }.into(),
            member,
        );
    }

    let mut paths = Vec::new();
    let in_org = role.is_some();
    let active = agent.state == AccessState::Active;
    if in_org && live {
        if owner {
            let actions = if viewer {
                LOOK.to_vec()
            } else {
                owner_actions(agent)
            };
            paths.push(Path {
                kind: PathKind::Owner,
                workspace_id: String::new(),
                grant: None,
                actions,
            });
        }
        if agent.is_default && active {
            paths.push(Path {
                kind: PathKind::OrgDefaultAgent,
                workspace_id: String::new(),
                grant: None,
                actions: if viewer { LOOK } else { HOLDER }.to_vec(),
            });
            if org_admin {
                paths.push(Path {
                    kind: PathKind::OrgAdmin,
                    workspace_id: String::new(),
                    grant: None,
                    actions: vec![Action::Edit, Action::Deploy],
                });
            }
        }
        if !agent.is_default
            && active
            && agent.shared
            && let Some(standing) = &standing
            && agent.workspaces.contains(standing)
        {
            paths.push(Path {
                kind: PathKind::WorkspaceShare,
                workspace_id: standing.clone(),
                grant: None,
                actions: if viewer { LOOK } else { HOLDER }.to_vec(),
            });
        }
    }
    if let Some(path) = paths.iter().find(|p| p.actions.contains(&action)) {
        let reason = reason_of(path.kind);
        return Explanation {
            allowed: true,
            reason,
            paths,
            denials: Vec::new(),
            facts,
        };
    }

    let mut denials = Vec::new();
    if !in_org {
        denials.push(Reason::NotOrgMember);
    }
    if !live {
        denials.push(Reason::AgentDeleted);
    }
    if !paths.is_empty() {
        // The subject reaches the agent, but not for this action.
        if viewer && action != Action::View {
            denials.push(Reason::ViewerRole);
        } else if agent.is_default
            && matches!(
                action,
                Action::Share | Action::Delete | Action::ManageGrants
            )
        {
            denials.push(Reason::DefaultAgentProtected);
        } else if owner && action == Action::Run && agent.state == AccessState::Draft {
            denials.push(Reason::AgentDraft);
        } else {
            denials.push(Reason::OwnerOnly);
        }
    } else if in_org && live {
        if agent.state == AccessState::Draft {
            denials.push(Reason::AgentDraft);
        }
        if !agent.is_default {
            if !agent.shared {
                denials.push(Reason::NotShared);
            }
            match &standing {
                None => denials.push(Reason::NoActiveWorkspace),
                Some(standing) if !agent.workspaces.contains(standing) => {
                    denials.push(Reason::NotWorkspaceMember);
                }
                Some(_) => {}
            }
        }
    }
    Explanation {
        allowed: false,
        reason: denials.first().copied().unwrap_or(Reason::NotFound),
        paths,
        denials,
        facts,
    }
}

/// Whether the subject can see the agent at all: any path, even a viewer's.
/// An agent they cannot see answers NOT_FOUND everywhere, exactly like one
/// that never existed.
pub fn visible(explanation: &Explanation) -> bool {
    !explanation.paths.is_empty()
}

/// Whether `caller` may ask about `agent` at all: they see it, or they are
/// an owner or admin of its org. Anything else answers NOT_FOUND, exactly
/// like an agent that never existed.
pub fn may_ask(caller: &Subject, agent: Option<&AgentRow>) -> bool {
    let Some(agent) = agent else {
        return false;
    };
    (caller.manages_org() && agent.org_id == caller.org_id)
        || visible(&explain(Some(agent), caller, Action::View))
}

/// Whether `caller` may ask about someone else's access to `agent` (another
/// member, or a grant's holder): org owners and admins, and the agent's
/// owner.
pub fn may_ask_about_others(caller: &Subject, agent: Option<&AgentRow>) -> bool {
    caller.manages_org() || agent.is_some_and(|a| a.owner_user_id == caller.user_id)
}

/// How an agent the subject sees stands in their My Agents; `None` when
/// they do not see it.
pub fn relation(agent: &AgentRow, subject: &Subject) -> Option<pb::AgentRelation> {
    if !visible(&explain(Some(agent), subject, Action::View)) {
        return None;
    }
    Some(if agent.owner_user_id == subject.user_id {
        pb::AgentRelation::Owned
    } else if agent.is_default {
        pb::AgentRelation::OrgDefault
    } else {
        pb::AgentRelation::SharedWithYou
    })
}

/// The holder of `grant` as a subject in the org `caller` acts in, as an
/// owner or admin asks about them. A DELEGATE grant acts as its owner, so
/// it never lacks a user.
pub fn holder_of(caller: &Subject, grant: &GrantRow, now: i64, user_id: String) -> Subject {
    Subject {
        grant: Some(GrantHeld {
            id: grant.id.clone(),
            kind: grant.kind,
            agent_id: grant.agent_id.clone(),
            state: grant.state_at(now),
            with_user: !user_id.is_empty() || grant.kind == GrantKind::Delegate,
        }),
        user_id,
        org_role: None,
        active_workspace: None,
        memberships: Vec::new(),
        ..caller.clone()
    }
}

/// The agent, if the subject may do `action`; NOT_FOUND when they cannot
/// see it, FAILED_PRECONDITION for running an agent with no deployed
/// version yet, PERMISSION_DENIED naming why when they see it but may not.
pub fn require(
    agent: Option<AgentRow>,
    agent_id: &str,
    subject: &Subject,
    action: Action,
) -> Result<AgentRow, Error> {
    let explanation = explain(agent.as_ref(), subject, action);
    match agent {
        Some(agent) if explanation.allowed => Ok(agent),
        // A valid grant presented for another agent of its org is a
        // refusal, not a mystery: the holder knows which agent it is for.
        Some(agent)
            if explanation.reason == Reason::GrantOtherAgent && agent.org_id == subject.org_id =>
        {
            Err(Error::PermissionDenied(
                "this share token is for another agent".into(),
            ))
        }
        // The owner's own draft: nothing is deployed to run yet, a state
        // they can change, not a permission they lack. Anyone else is not
        // told the draft exists.
        Some(agent)
            if explanation.reason == Reason::AgentDraft
                && agent.owner_user_id == subject.user_id =>
        {
            Err(Error::FailedPrecondition(denial_message(
                Reason::AgentDraft,
            )))
        }
        Some(_) if visible(&explanation) => {
            Err(Error::PermissionDenied(denial_message(explanation.reason)))
        }
        _ => Err(Error::not_found(format!("agent {agent_id}"))),
    }
}

/// What a caller reads when an agent they can see refuses them.
pub fn denial_message(reason: Reason) -> String {
    match reason {
        Reason::ViewerRole => "viewers read agents but never run, build or change them".into(),
        Reason::DefaultAgentProtected => {
            "the org default agent cannot be shared, unshared, deleted or given share tokens: every member of the org already runs it".into()
        }
        Reason::ManagedAgent => "a managed agent's workspaces cannot change".into(),
        Reason::AgentDraft => {
            "agent is not deployed: deploy a version first, or (as its owner) set `draft` to run the draft in test mode".into()
        }
        Reason::GrantActionNotAllowed => "a share token allows running its agent only".into(),
        _ => "only the agent's owner may do this".into(),
    }
}

/// Which kind of store partition a run uses (DESIGN.md, "The store's
/// workspaces").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreScope {
    UserPrivate,
    AgentWorkspace,
    AgentHome,
    AgentGrantHolder,
    AgentOrgWide,
}

impl StoreScope {
    pub fn to_proto(self) -> pb::StoreScopeKind {
        match self {
            Self::UserPrivate => pb::StoreScopeKind::UserPrivate,
            Self::AgentWorkspace => pb::StoreScopeKind::AgentWorkspace,
            Self::AgentHome => pb::StoreScopeKind::AgentHome,
            Self::AgentGrantHolder => pb::StoreScopeKind::AgentGrantHolder,
            Self::AgentOrgWide => pb::StoreScopeKind::AgentOrgWide,
        }
    }
}

/// The store partition of a user's run of an agent they may RUN (or, for
/// the owner, test as a draft): `user-<owner>` only for the owner's own
/// unshared agent, the org-wide one for the default agent, else the agent's
/// partition for the workspace the user stands in.
pub fn user_store(agent: &AgentRow, subject: &Subject) -> Result<(String, StoreScope), Error> {
    if agent.is_default {
        return Ok((
            format!("agent-{}", agent.agent_id),
            StoreScope::AgentOrgWide,
        ));
    }
    if agent.owner_user_id == subject.user_id && !agent.shared {
        return Ok((format!("user-{}", subject.user_id), StoreScope::UserPrivate));
    }
    let workspace = subject.standing().ok_or_else(|| {
        Error::PermissionDenied(
            "you have no active workspace in this org; ask an admin to add you to one".into(),
        )
    })?;
    Ok((
        format!("agent-{}/{workspace}", agent.agent_id),
        StoreScope::AgentWorkspace,
    ))
}

/// The one path a grant gives: RUN (and CONFIGURE_OWN for INVOKE) of its own
/// agent while it is active, and nothing else.
fn explain_grant(
    agent: &AgentRow,
    grant: &GrantHeld,
    action: Action,
    mut facts: Vec<Fact>,
) -> Explanation {
    let state = match grant.state {
        GrantState::Active => "ACTIVE",
        GrantState::Expired => "EXPIRED",
        GrantState::Revoked => "REVOKED",
        GrantState::Ended => "ENDED",
    };
    facts.push(Fact {
        code: "grant.state",
        subject_id: grant.id.clone(),
        value: state.into(),
        supports_access: grant.state == GrantState::Active,
    });
    let same_agent = grant.agent_id == agent.agent_id;
    facts.push(Fact {
        code: "grant.agent",
        subject_id: grant.id.clone(),
        value: grant.agent_id.clone(),
        supports_access: same_agent,
    });
    facts.push(Fact {
        code: "grant.kind",
        subject_id: grant.id.clone(),
        value: grant.kind.as_str().to_uppercase(),
        supports_access: true,
    });
    let mut denials = Vec::new();
    if !same_agent {
        denials.push(Reason::GrantOtherAgent);
    }
    match grant.state {
        GrantState::Active => {}
        GrantState::Expired => denials.push(Reason::GrantExpired),
        GrantState::Revoked => denials.push(Reason::GrantRevoked),
        GrantState::Ended => denials.push(Reason::GrantEnded),
    }
    if agent.state == AccessState::Deleted && !denials.contains(&Reason::GrantEnded) {
        denials.push(Reason::GrantEnded);
    }
    if grant.kind == GrantKind::Invoke && !grant.with_user {
        denials.push(Reason::GrantNeedsUser);
    }
    let mut paths = Vec::new();
    if denials.is_empty() {
        let actions = match grant.kind {
            GrantKind::Invoke => vec![Action::Run, Action::ConfigureOwn],
            GrantKind::Delegate => vec![Action::Run],
        };
        if !actions.contains(&action) {
            denials.push(Reason::GrantActionNotAllowed);
        }
        paths.push(Path {
            kind: PathKind::Grant,
            workspace_id: String::new(),
            grant: Some((grant.id.clone(), grant.kind)),
            actions,
        });
    }
    let allowed = denials.is_empty();
    Explanation {
        allowed,
        reason: if allowed { Reason::Grant } else { denials[0] },
        paths,
        denials,
        facts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "org-1";
    const HOME: &str = "ws-home";

    fn default_agent() -> AgentRow {
        AgentRow {
            agent_id: "agent-default".into(),
            org_id: ORG.into(),
            owner_user_id: String::new(),
            home_workspace_id: String::new(),
            state: AccessState::Active,
            is_default: true,
            is_managed: false,
            shared: false,
            workspaces: Vec::new(),
            latest_version: 1,
            name: "Assistant".into(),
            description: String::new(),
            store_policy: Default::default(),
        }
    }

    fn member(user_id: &str, role: OrgRole, workspace: Option<&str>) -> Subject {
        Subject {
            user_id: user_id.into(),
            org_id: ORG.into(),
            org_role: Some(role),
            workspaces_enabled: true,
            active_workspace: workspace.map(str::to_string),
            memberships: workspace.map(str::to_string).into_iter().collect(),
            org_default_workspace: HOME.into(),
            grant: None,
        }
    }

    #[test]
    fn every_member_runs_the_default_agent_from_any_workspace_and_viewers_only_look() {
        let agent = default_agent();
        for workspace in [Some(HOME), Some("ws-sales"), None] {
            let bob = member("bob", OrgRole::Member, workspace);
            let run = explain(Some(&agent), &bob, Action::Run);
            assert!(run.allowed, "{workspace:?}");
            assert_eq!(run.reason, Reason::OrgDefaultAgent);
        }
        let vera = member("vera", OrgRole::Viewer, Some(HOME));
        assert!(explain(Some(&agent), &vera, Action::View).allowed);
        let run = explain(Some(&agent), &vera, Action::Run);
        assert_eq!((run.allowed, run.reason), (false, Reason::ViewerRole));
        let outsider = Subject {
            org_id: "org-2".into(),
            ..member("mallory", OrgRole::Owner, Some(HOME))
        };
        assert!(!visible(&explain(Some(&agent), &outsider, Action::Run)));
    }

    #[test]
    fn org_admins_edit_the_default_agent_and_nobody_shares_deletes_or_grants_it() {
        let agent = default_agent();
        let alice = member("alice", OrgRole::Owner, Some(HOME));
        let bob = member("bob", OrgRole::Member, Some(HOME));
        let edit = explain(Some(&agent), &alice, Action::Edit);
        assert_eq!((edit.allowed, edit.reason), (true, Reason::OrgAdmin));
        let edit = explain(Some(&agent), &bob, Action::Edit);
        assert_eq!((edit.allowed, edit.reason), (false, Reason::OwnerOnly));
        for subject in [&alice, &bob] {
            for action in [Action::Share, Action::Delete, Action::ManageGrants] {
                let decision = explain(Some(&agent), subject, action);
                assert_eq!(
                    (decision.allowed, decision.reason),
                    (false, Reason::DefaultAgentProtected),
                    "{} {action:?}",
                    subject.user_id
                );
            }
        }
        let refused = require(Some(agent), "agent-default", &alice, Action::ManageGrants)
            .expect_err("no grants on the default agent");
        assert!(
            matches!(&refused, Error::PermissionDenied(m) if m.contains("cannot be shared")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_default_agents_store_is_one_org_wide_partition() {
        let agent = default_agent();
        for workspace in [Some(HOME), Some("ws-sales"), None] {
            let bob = member("bob", OrgRole::Member, workspace);
            assert_eq!(
                user_store(&agent, &bob).expect("a partition"),
                ("agent-agent-default".to_string(), StoreScope::AgentOrgWide)
            );
        }
    }
}
