//! The access decision and the plan of a run, checked against a small
//! reference model written from DESIGN.md's tables ("Access model
//! (sharing)", "Whose connection each integration uses") rather than from
//! the code: who reaches an agent, what each path allows, which version a
//! run uses, as whom, over which store, and what the org's policy refuses.

use proptest::prelude::*;
use proptest::sample::select;

use super::decision::{self, Action, GrantHeld, StoreScope, Subject};
use super::plan::{self, ConnectionOwner, Facts, Options, VersionSource};
use super::policy;
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::{GrantKind, GrantState};
use crate::connections::setup::{Gap, IntegrationSetup};
use crate::connections::storage::IntegrationRow;
use crate::tenancy::rules::OrgRole;
use crate::tenancy::storage::orgs::OrgPolicy;

const ORG: &str = "org-1";
const AGENT: &str = "agent-1";
const HOME: &str = "ws-home";
const WORKSPACES: [&str; 3] = [HOME, "ws-sales", "ws-ops"];

fn workspaces() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(WORKSPACES.to_vec(), 0..=3)
        .prop_map(|ws| ws.into_iter().map(str::to_string).collect())
}

/// An agent as registry syncs it: the default agent has no owner, no home
/// and is never a draft.
fn agent() -> impl Strategy<Value = AgentRow> {
    (
        any::<bool>(),
        select(vec!["alice", "bob"]),
        select(vec![
            AccessState::Draft,
            AccessState::Active,
            AccessState::Deleted,
        ]),
        any::<bool>(),
        workspaces(),
        select(vec![ORG, "org-2"]),
        0_i64..4,
    )
        .prop_map(|(is_default, owner, state, shared, others, org, latest)| {
            let state = if is_default && state == AccessState::Draft {
                AccessState::Active
            } else {
                state
            };
            let mut listed = vec![HOME.to_string()];
            listed.extend(others.into_iter().filter(|w| w != HOME));
            AgentRow {
                agent_id: AGENT.into(),
                org_id: org.into(),
                owner_user_id: if is_default { "" } else { owner }.into(),
                home_workspace_id: if is_default { "" } else { HOME }.into(),
                state,
                is_default,
                is_managed: false,
                shared: shared && !is_default,
                workspaces: if is_default { Vec::new() } else { listed },
                latest_version: if state == AccessState::Draft {
                    0
                } else {
                    latest + 1
                },
                name: "Agent".into(),
                description: String::new(),
                store_policy: Default::default(),
            }
        })
}

fn grant() -> impl Strategy<Value = GrantHeld> {
    (
        select(vec![GrantKind::Invoke, GrantKind::Delegate]),
        select(vec![AGENT, "agent-2"]),
        select(vec![
            GrantState::Active,
            GrantState::Expired,
            GrantState::Revoked,
            GrantState::Ended,
        ]),
        any::<bool>(),
    )
        .prop_map(|(kind, agent_id, state, with_user)| GrantHeld {
            id: "grant-1".into(),
            kind,
            agent_id: agent_id.into(),
            state,
            with_user,
        })
}

/// A member (or not) of the org, standing somewhere, or a grant's holder.
fn subject() -> impl Strategy<Value = Subject> {
    (
        select(vec!["alice", "bob"]),
        proptest::option::of(select(vec![
            OrgRole::Owner,
            OrgRole::Admin,
            OrgRole::Member,
            OrgRole::Viewer,
        ])),
        any::<bool>(),
        proptest::option::of(select(WORKSPACES.to_vec())),
        workspaces(),
        proptest::option::weighted(0.25, grant()),
    )
        .prop_map(|(user, role, enabled, active, memberships, grant)| {
            let with_user = grant.as_ref().is_none_or(|g| g.with_user);
            Subject {
                user_id: if with_user { user } else { "" }.into(),
                org_id: ORG.into(),
                org_role: if grant.is_some() { None } else { role },
                workspaces_enabled: enabled,
                active_workspace: active.map(str::to_string).filter(|_| grant.is_none()),
                memberships: if grant.is_some() {
                    Vec::new()
                } else {
                    memberships
                },
                org_default_workspace: HOME.into(),
                grant,
            }
        })
}

/// What the model says a subject may do with an agent: the actions
/// allowed, and whether they see it at all.
fn model(agent: &AgentRow, subject: &Subject) -> (Vec<Action>, bool) {
    use Action::*;
    if let Some(grant) = &subject.grant {
        let holds = grant.agent_id == agent.agent_id
            && grant.state == GrantState::Active
            && agent.state != AccessState::Deleted
            && (grant.kind == GrantKind::Delegate || grant.with_user);
        let actions = match (holds, grant.kind) {
            (false, _) => vec![],
            (true, GrantKind::Invoke) => vec![Run, ConfigureOwn],
            (true, GrantKind::Delegate) => vec![Run],
        };
        return (actions, holds);
    }
    let role = subject.org_role.filter(|_| subject.org_id == agent.org_id);
    let Some(role) = role else {
        return (vec![], false);
    };
    if agent.state == AccessState::Deleted {
        return (vec![], false);
    }
    let active = agent.state == AccessState::Active;
    let standing = if subject.workspaces_enabled {
        subject.active_workspace.clone()
    } else {
        Some(HOME.to_string())
    };
    let owns = agent.owner_user_id == subject.user_id;
    let default = agent.is_default && active;
    let shared = !agent.is_default
        && active
        && agent.shared
        && standing.is_some_and(|w| agent.workspaces.contains(&w));
    let visible = owns || default || shared;
    if role == OrgRole::Viewer {
        return (if visible { vec![View] } else { vec![] }, visible);
    }
    let mut allowed = Vec::new();
    if owns {
        // Everything with their own agent; a draft has nothing to run.
        allowed.extend(Action::ALL.into_iter().filter(|a| *a != Run || active));
    }
    if default || shared {
        allowed.extend([View, Run, ConfigureOwn]);
    }
    if default && matches!(role, OrgRole::Owner | OrgRole::Admin) {
        allowed.extend([Edit, Deploy]);
    }
    (allowed, visible)
}

fn setups(gaps: &[Option<Gap>], builder: &[bool]) -> Vec<IntegrationSetup> {
    gaps.iter()
        .zip(builder)
        .enumerate()
        .map(|(i, (gap, uses_builder))| IntegrationSetup {
            integration: IntegrationRow {
                agent_id: AGENT.into(),
                version: 1,
                key: format!("tool-{i}"),
                provider: "crm".into(),
                shared: *uses_builder,
                builder_connection_id: String::new(),
            },
            uses_builder: *uses_builder,
            binding_required: !uses_builder,
            bound: None,
            gap: *gap,
        })
        .collect()
}

fn gap() -> impl Strategy<Value = Option<Gap>> {
    proptest::option::weighted(
        0.2,
        select(vec![
            Gap::NotBound,
            Gap::Expired,
            Gap::Failed,
            Gap::BuilderUnavailable,
        ]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn explain_allows_what_the_model_allows(agent in agent(), subject in subject()) {
        let (allowed, visible) = model(&agent, &subject);
        for action in Action::ALL {
            let explanation = decision::explain(Some(&agent), &subject, action);
            prop_assert_eq!(explanation.allowed, allowed.contains(&action), "{:?}", action);
            prop_assert_eq!(explanation.denials.is_empty(), explanation.allowed);
            prop_assert_eq!(decision::visible(&explanation), visible, "{:?}", action);
            let required = decision::require(Some(agent.clone()), AGENT, &subject, action);
            prop_assert_eq!(required.is_ok(), explanation.allowed);
            if !visible {
                let hidden = matches!(required, Err(agentshare_kit::Error::NotFound(_)));
                let other_agent = subject.grant.as_ref().is_some_and(|g| g.agent_id != AGENT);
                prop_assert!(hidden || other_agent, "{:?}: {:?}", action, required);
            }
        }
        let nothing = decision::explain(None, &subject, Action::View);
        prop_assert!(!nothing.allowed && !decision::visible(&nothing));
    }

    #[test]
    fn a_plan_runs_what_the_model_says_as_whom_it_says(
        agent in agent(),
        subject in subject(),
        draft in any::<bool>(),
        grant_pin in proptest::option::of(1_i64..4),
        user_pin in proptest::option::of(1_i64..4),
        gaps in proptest::collection::vec(gap(), 0..3),
        builder in proptest::collection::vec(any::<bool>(), 3),
    ) {
        let facts = Facts {
            agent: Some(agent.clone()),
            grant_pin: grant_pin.filter(|_| subject.grant.is_some()),
            user_pin,
            setups: setups(&gaps, &builder),
            builders: Vec::new(),
            now: 0,
        };
        let options = Options { draft, project_home: None, session: None };
        let planned = plan::decide(facts, AGENT, &subject, &options);

        let (allowed, _) = model(&agent, &subject);
        let edits = if agent.is_default {
            allowed.contains(&Action::Edit)
        } else {
            agent.owner_user_id == subject.user_id
        };
        let testing = draft && subject.grant.is_none() && !subject.user_id.is_empty() && edits;
        let action = if testing { Action::ConfigureOwn } else { Action::Run };
        if (draft && !testing) || !allowed.contains(&action) {
            prop_assert!(planned.is_err(), "ran without access: {:?}", planned.ok().map(|p| p.version));
            return Ok(());
        }
        let (version, source) = match (testing, subject.grant.as_ref().and(grant_pin), user_pin) {
            (true, _, _) => (0, VersionSource::Draft),
            (false, Some(pin), _) => (pin, VersionSource::GrantPin),
            (false, None, Some(pin)) => (pin, VersionSource::UserPin),
            (false, None, None) => (agent.latest_version, VersionSource::Latest),
        };
        if version == 0 && !testing {
            prop_assert!(matches!(planned, Err(agentshare_kit::Error::FailedPrecondition(_))));
            return Ok(());
        }
        if gaps.iter().any(Option::is_some) {
            prop_assert!(matches!(planned, Err(agentshare_kit::Error::Unmet(..))));
            return Ok(());
        }
        let delegate = subject.grant.as_ref().is_some_and(|g| g.kind == GrantKind::Delegate);
        let invoke = subject.grant.as_ref().is_some_and(|g| g.kind == GrantKind::Invoke);
        let standing = if subject.workspaces_enabled {
            subject.active_workspace.clone()
        } else {
            Some(HOME.to_string())
        };
        let store = if invoke {
            Some(StoreScope::AgentGrantHolder)
        } else if agent.is_default {
            Some(StoreScope::AgentOrgWide)
        } else if delegate {
            Some(StoreScope::AgentHome)
        } else if agent.owner_user_id == subject.user_id && !agent.shared {
            Some(StoreScope::UserPrivate)
        } else {
            standing.map(|_| StoreScope::AgentWorkspace)
        };
        let Some(store) = store else {
            prop_assert!(matches!(planned, Err(agentshare_kit::Error::PermissionDenied(_))));
            return Ok(());
        };
        let plan = planned.map_err(|e| TestCaseError::fail(format!("refused: {e:?}")))?;
        prop_assert_eq!((plan.version, plan.source), (version, source));
        prop_assert_eq!(plan.store_scope, store);
        let runs_as = if delegate { &agent.owner_user_id } else { &subject.user_id };
        prop_assert_eq!(&plan.executes_as, runs_as);
        prop_assert_eq!(&plan.billed_to, runs_as);
        let owns = !agent.is_default && agent.owner_user_id == subject.user_id && subject.grant.is_none();
        for (integration, uses_builder) in plan.integrations.iter().zip(&builder) {
            let expected = if owns || delegate {
                ConnectionOwner::Owner
            } else if invoke {
                ConnectionOwner::Holder
            } else if *uses_builder {
                ConnectionOwner::Builder
            } else {
                ConnectionOwner::Caller
            };
            prop_assert_eq!(integration.owner, expected);
        }
        prop_assert_eq!(plan.integrations.len(), gaps.len());
    }

    #[test]
    fn the_org_policy_refuses_what_the_model_says(
        agent in agent(),
        subject in subject(),
        forbid in (any::<bool>(), any::<bool>(), any::<bool>()),
        holder_is_member in any::<bool>(),
        builder in proptest::collection::vec(any::<bool>(), 0..3),
    ) {
        let org_policy = OrgPolicy {
            forbid_delegate_grants: forbid.0,
            forbid_external_grants: forbid.1,
            forbid_shared_integrations: forbid.2,
            ..OrgPolicy::default()
        };
        // A grant works unless the org forbids its kind, or forbids grants
        // to anyone outside it and the holder is.
        if let Some(grant) = &subject.grant {
            let refused = (forbid.0 && grant.kind == GrantKind::Delegate)
                || (forbid.1 && !holder_is_member);
            let used = policy::may_use_grant(&org_policy, grant.kind, holder_is_member);
            prop_assert_eq!(used.is_err(), refused);
            prop_assert!(used.is_ok() || matches!(used, Err(agentshare_kit::Error::PermissionDenied(_))));
        }
        // A run lends the builder's connection to nobody but the owner
        // while the org forbids it.
        let gaps = vec![None; builder.len()];
        let facts = Facts {
            agent: Some(agent.clone()),
            grant_pin: None,
            user_pin: None,
            setups: setups(&gaps, &builder),
            builders: Vec::new(),
            now: 0,
        };
        let options = Options { draft: false, project_home: None, session: None };
        let Ok(plan) = plan::decide(facts, AGENT, &subject, &options) else {
            return Ok(());
        };
        let owner_runs = subject.grant.is_none()
            && !agent.is_default
            && agent.owner_user_id == subject.user_id;
        let lends = builder.iter().any(|b| *b);
        let ran = policy::may_run(&org_policy, &plan, owner_runs);
        prop_assert_eq!(ran.is_err(), forbid.2 && lends && !owner_runs);
    }
}
