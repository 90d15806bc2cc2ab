//! The plan of a run (DESIGN.md, "Whose connection each integration uses"):
//! which version runs, whose connection each integration uses, as whom,
//! billed to whom, over which store. Every run depends on this one answer.

use agentshare_kit::Error;
use agentshare_kit::error::{SetupGap, SetupGapKind};

use crate::access::rules::decision::{self, Action, StoreScope, Subject};
use crate::access::rules::retirement;
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::GrantKind;
use crate::common::Storage;
use crate::connections::setup::{self, Gap, IntegrationSetup, Runner};
use crate::connections::storage::ConnectionRow;
use crate::tenancy::storage::orgs::OrgPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSource {
    Latest,
    UserPin,
    GrantPin,
    Draft,
}

/// Whose connection an integration uses in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionOwner {
    Owner,
    Builder,
    Caller,
    Holder,
}

pub struct IntegrationPlan {
    pub setup: IntegrationSetup,
    pub owner: ConnectionOwner,
    /// The connection the run uses, when there is one.
    pub connection: Option<ConnectionRow>,
    /// That connection's status when the plan was made.
    pub status: Option<crate::connections::storage::Status>,
}

impl IntegrationPlan {
    /// The connection the run uses, or FAILED_PRECONDITION when setup left
    /// the integration without one.
    pub fn connection(&self) -> Result<&ConnectionRow, Error> {
        self.connection.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{} has no connection: complete setup",
                self.setup.integration.key
            ))
        })
    }
}

pub struct Plan {
    pub agent: AgentRow,
    pub version: i64,
    pub source: VersionSource,
    pub integrations: Vec<IntegrationPlan>,
    pub executes_as: String,
    pub billed_to: String,
    pub store_workspace: String,
    pub store_scope: StoreScope,
    pub grant: Option<(String, GrantKind)>,
    /// The signed-in user behind the call; empty for an anonymous visitor.
    pub caller_user_id: String,
    pub session_workspace_id: String,
    /// The policy of the agent's org, which the run passed.
    pub org_policy: OrgPolicy,
}

/// What the caller asked for beyond the agent.
pub struct Options {
    pub draft: bool,
    /// The home workspace of the project the run belongs to, if any.
    pub project_home: Option<String>,
    /// The caller's own session the run continues, already opened (its
    /// ownership and secret checked) by the store.
    pub session: Option<SessionFacts>,
}

/// What the plan needs of a session the run continues.
#[derive(Clone, Debug)]
pub struct SessionFacts {
    pub agent_id: String,
    pub project_id: String,
    pub workspace_id: String,
    pub archived: bool,
}

/// Why the caller's own session can no longer be continued, where a run
/// without a session would be NOT_FOUND or PERMISSION_DENIED: the session
/// proves the caller once ran the agent, so telling them hides nothing.
fn session_refusal(agent: Option<&AgentRow>, refusal: Error) -> Error {
    match refusal {
        Error::NotFound(_) | Error::PermissionDenied(_) => {
            if agent.is_none_or(|a| a.state == AccessState::Deleted) {
                deleted_session()
            } else {
                Error::FailedPrecondition(
                    "agent no longer shared with you: your session stays readable, but it cannot be continued"
                        .into(),
                )
            }
        }
        other => other,
    }
}

fn deleted_session() -> Error {
    Error::FailedPrecondition(
        "agent deleted: the session is archived and stays readable, but it cannot be continued"
            .into(),
    )
}

/// What keeps one integration's setup from READY, if anything.
fn setup_gap(setup: &IntegrationSetup) -> Option<SetupGap> {
    Some(SetupGap {
        integration_key: setup.integration.key.clone(),
        provider: setup.integration.provider.clone(),
        kind: match setup.gap? {
            Gap::NotBound => SetupGapKind::NotBound,
            Gap::Expired => SetupGapKind::Expired,
            Gap::Failed => SetupGapKind::Failed,
            Gap::BuilderUnavailable => SetupGapKind::BuilderUnavailable,
        },
    })
}

/// How the subject runs the agent. No user owns the org default agent:
/// everyone, its org's owners and admins included, runs it as a member, on
/// their own bindings and billed to themselves.
pub fn runner_of(agent: &AgentRow, subject: &Subject) -> Runner {
    match &subject.grant {
        Some(grant) if grant.kind == GrantKind::Invoke => Runner::InvokeHolder,
        Some(_) => Runner::Delegate,
        None if agent.is_default => Runner::Member,
        None if agent.owner_user_id == subject.user_id => Runner::Owner,
        None => Runner::Member,
    }
}

/// Whether the subject may run the draft in test mode: whoever edits the
/// agent, signed in and without a share token. That is the owner, or, for
/// the org default agent, the org's owners and admins.
fn tests_draft(agent: Option<&AgentRow>, subject: &Subject) -> bool {
    let Some(agent) = agent else {
        return false;
    };
    if subject.grant.is_some() || subject.user_id.is_empty() {
        return false;
    }
    if agent.is_default {
        decision::explain(Some(agent), subject, Action::Edit).allowed
    } else {
        agent.owner_user_id == subject.user_id
    }
}

/// Everything a plan is decided from, read before anything is decided.
pub struct Facts {
    /// The agent, if sharing knows it.
    pub agent: Option<AgentRow>,
    /// The version the grant the subject holds pins, if it pins one that
    /// has not retired.
    pub grant_pin: Option<i64>,
    /// The version the subject pinned for themselves, if they did and it
    /// has not retired.
    pub user_pin: Option<i64>,
    /// Each integration's setup for the version the run would use.
    pub setups: Vec<IntegrationSetup>,
    /// The builder connections those setups use.
    pub builders: Vec<ConnectionRow>,
    /// When the plan is made, for connection status.
    pub now: i64,
}

/// Which version a run uses, and why: the draft when its editor tests it,
/// else a grant's pin, the user's own pin, or the latest version.
fn version_of(
    agent: &AgentRow,
    owner_testing: bool,
    grant_pin: Option<i64>,
    user_pin: Option<i64>,
) -> (i64, VersionSource) {
    if owner_testing {
        (0, VersionSource::Draft)
    } else if let Some(pinned) = grant_pin {
        (pinned, VersionSource::GrantPin)
    } else if let Some(pinned) = user_pin {
        (pinned, VersionSource::UserPin)
    } else {
        (agent.latest_version, VersionSource::Latest)
    }
}

/// The version My Agents shows a user's setup for: the draft's while the
/// agent has no version, else their pin or the latest.
pub fn listed_version(draft: bool, pinned: Option<i64>, latest: i64) -> i64 {
    if draft { 0 } else { pinned.unwrap_or(latest) }
}

/// NOT_FOUND for a version the agent does not have.
pub fn version_not_found(agent: &AgentRow, version: i64) -> Error {
    Error::not_found(format!(
        "version {version} of agent {} (the latest is {})",
        agent.agent_id, agent.latest_version
    ))
}

/// A user pins a deployed version the agent has.
pub fn check_pin(agent: &AgentRow, version: i64) -> Result<(), Error> {
    if version < 1 {
        return Err(Error::invalid(
            "version",
            "must be a deployed version, 1 or more",
        ));
    }
    if version > agent.latest_version {
        return Err(version_not_found(agent, version));
    }
    Ok(())
}

/// Whose bindings count: the owner's under DELEGATE, else the caller's.
fn binder_of(agent: &AgentRow, subject: &Subject, runner: Runner) -> String {
    if runner == Runner::Delegate {
        agent.owner_user_id.clone()
    } else {
        subject.user_id.clone()
    }
}

/// The run's plan, or why it cannot run now: NOT_FOUND and PERMISSION_DENIED
/// from the access decision, FAILED_PRECONDITION for an agent with no
/// deployed version or a setup that is not READY (listing what it lacks).
pub async fn resolve(
    storage: &Storage,
    agent: Option<AgentRow>,
    agent_id: &str,
    subject: &Subject,
    options: &Options,
) -> Result<Plan, Error> {
    let facts = gather(storage, agent, subject, options).await?;
    decide(facts, agent_id, subject, options)
}

/// Reads everything [`decide`] needs: the grant's and the user's pins, and
/// the setups of the version the run would use.
async fn gather(
    storage: &Storage,
    agent: Option<AgentRow>,
    subject: &Subject,
    options: &Options,
) -> Result<Facts, Error> {
    let grant_pin = match &subject.grant {
        Some(held) => storage
            .access
            .grant(&held.id)
            .await?
            .and_then(|g| g.pinned_version),
        None => None,
    };
    let mut facts = Facts {
        agent,
        grant_pin,
        user_pin: None,
        setups: Vec::new(),
        builders: Vec::new(),
        now: storage.clock.now_micros(),
    };
    let Some(agent) = &facts.agent else {
        return Ok(facts);
    };
    let runner = runner_of(agent, subject);
    if !subject.user_id.is_empty() && runner != Runner::Delegate {
        let pin = storage
            .access
            .pin_of(&agent.agent_id, &subject.user_id)
            .await?;
        facts.user_pin = pin.map(|pin| pin.version);
    }
    if facts.grant_pin.is_some() || facts.user_pin.is_some() {
        // A pin of a retired version decides nothing: the run follows the
        // latest version from the sunset on.
        let retirements = storage.access.retirements_of(&agent.agent_id).await?;
        facts.grant_pin = retirement::in_force(facts.grant_pin, &retirements, facts.now);
        facts.user_pin = retirement::in_force(facts.user_pin, &retirements, facts.now);
    }
    let owner_testing = options.draft && tests_draft(Some(agent), subject);
    let (version, _) = version_of(agent, owner_testing, facts.grant_pin, facts.user_pin);
    let binder = binder_of(agent, subject, runner);
    facts.setups = setup::setups(
        storage,
        &binder,
        &[(agent.agent_id.clone(), version, runner)],
    )
    .await?
    .pop()
    .unwrap_or_default();
    let builder_ids: Vec<String> = facts
        .setups
        .iter()
        .filter(|s| s.uses_builder)
        .map(|s| s.integration.builder_connection_id.clone())
        .collect();
    facts.builders = storage.connections.connections_by_id(&builder_ids).await?;
    Ok(facts)
}

/// The plan of `subject`'s run of `agent_id`, decided from `facts` alone.
pub fn decide(
    facts: Facts,
    agent_id: &str,
    subject: &Subject,
    options: &Options,
) -> Result<Plan, Error> {
    let Facts {
        agent,
        grant_pin,
        user_pin,
        setups,
        builders,
        now,
    } = facts;
    let owner_testing = options.draft && tests_draft(agent.as_ref(), subject);
    if options.draft && !owner_testing {
        // Only the owner tests the draft; anyone else is told so once they
        // may see the agent at all.
        decision::require(agent, agent_id, subject, Action::View)?;
        return Err(Error::PermissionDenied(
            "only the agent's owner runs its draft (test mode)".into(),
        ));
    }
    let action = if owner_testing {
        Action::ConfigureOwn
    } else {
        Action::Run
    };
    if let Some(session) = &options.session {
        if session.agent_id != agent_id {
            return Err(Error::invalid(
                "session_id",
                "the session belongs to another agent: omit session_id to start a new one",
            ));
        }
        if session.archived {
            return Err(deleted_session());
        }
    }
    let agent = match options.session {
        Some(_) => {
            let row = agent.clone();
            decision::require(agent, agent_id, subject, action)
                .map_err(|refusal| session_refusal(row.as_ref(), refusal))?
        }
        None => decision::require(agent, agent_id, subject, action)?,
    };
    let runner = runner_of(&agent, subject);
    let (version, source) = version_of(&agent, owner_testing, grant_pin, user_pin);
    if version == 0 && !owner_testing && agent.state == AccessState::Draft {
        return Err(Error::FailedPrecondition(decision::denial_message(
            agentshare_proto::sharing::v1::DecisionReason::AgentDraft,
        )));
    }
    let missing: Vec<SetupGap> = setups.iter().filter_map(setup_gap).collect();
    if !missing.is_empty() {
        return Err(if runner == Runner::Delegate {
            Error::setup_required_of_owner(&missing)
        } else {
            Error::setup_required(&missing)
        });
    }
    let integrations = setups
        .into_iter()
        .map(|setup| integration_plan(setup, runner, &builders, now))
        .collect();
    let billed_to = binder_of(&agent, subject, runner);
    let (store_workspace, store_scope) = store_of(&agent, subject)?;
    // A session keeps the workspace it started in.
    let session_workspace_id = match &options.session {
        Some(session) => session.workspace_id.clone(),
        None => options
            .project_home
            .clone()
            .or(subject.standing().filter(|_| subject.grant.is_none()))
            .unwrap_or_else(|| agent.home_workspace_id.clone()),
    };
    Ok(Plan {
        version,
        source,
        integrations,
        executes_as: billed_to.clone(),
        billed_to,
        store_workspace,
        store_scope,
        grant: subject.grant.as_ref().map(|g| (g.id.clone(), g.kind)),
        org_policy: OrgPolicy::default(),
        caller_user_id: subject.user_id.clone(),
        session_workspace_id,
        agent,
    })
}

/// Whose connection one integration uses in the run, and its status now.
fn integration_plan(
    setup: IntegrationSetup,
    runner: Runner,
    builders: &[ConnectionRow],
    now: i64,
) -> IntegrationPlan {
    let uses_builder = setup.uses_builder;
    let owner = match runner {
        Runner::Owner | Runner::Delegate => ConnectionOwner::Owner,
        Runner::InvokeHolder => ConnectionOwner::Holder,
        Runner::Member if uses_builder => ConnectionOwner::Builder,
        Runner::Member => ConnectionOwner::Caller,
    };
    let connection = if uses_builder {
        builders
            .iter()
            .find(|c| c.id == setup.integration.builder_connection_id)
            .cloned()
    } else {
        setup
            .bound
            .as_ref()
            .map(|(connection, _)| connection.clone())
    };
    IntegrationPlan {
        status: connection.as_ref().map(|c| c.status_at(now).0),
        setup,
        owner,
        connection,
    }
}

/// The store partition of the subject's runs of `agent`, by DESIGN.md's
/// table: the holder's own partition under INVOKE, the home partition under
/// DELEGATE, else as for a user's run.
pub fn store_of(agent: &AgentRow, subject: &Subject) -> Result<(String, StoreScope), Error> {
    match &subject.grant {
        Some(held) if held.kind == GrantKind::Invoke => Ok((
            format!(
                "agent-{}/grant-{}/{}",
                agent.agent_id, held.id, subject.user_id
            ),
            StoreScope::AgentGrantHolder,
        )),
        Some(_) if agent.is_default => Ok((
            format!("agent-{}", agent.agent_id),
            StoreScope::AgentOrgWide,
        )),
        Some(_) => Ok((
            format!("agent-{}/{}", agent.agent_id, agent.home_workspace_id),
            StoreScope::AgentHome,
        )),
        None => decision::user_store(agent, subject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::rules::decision::GrantHeld;
    use crate::access::storage::grants::GrantState;
    use crate::tenancy::rules::OrgRole;

    fn agent(owner: &str, is_default: bool) -> AgentRow {
        AgentRow {
            agent_id: "agent-1".into(),
            org_id: "org-1".into(),
            owner_user_id: owner.into(),
            home_workspace_id: if is_default { "" } else { "ws-home" }.into(),
            state: AccessState::Active,
            is_default,
            is_managed: false,
            shared: !is_default,
            workspaces: if is_default {
                Vec::new()
            } else {
                vec!["ws-home".into()]
            },
            latest_version: 1,
            name: "Agent".into(),
            description: String::new(),
            store_policy: Default::default(),
        }
    }

    fn subject(user: &str, role: OrgRole) -> Subject {
        Subject {
            user_id: user.into(),
            org_id: "org-1".into(),
            org_role: Some(role),
            workspaces_enabled: false,
            active_workspace: Some("ws-home".into()),
            memberships: vec!["ws-home".into()],
            org_default_workspace: "ws-home".into(),
            grant: None,
        }
    }

    fn with_grant(subject: Subject, kind: GrantKind) -> Subject {
        Subject {
            grant: Some(GrantHeld {
                id: "grant-1".into(),
                kind,
                agent_id: "agent-1".into(),
                state: GrantState::Active,
                with_user: true,
            }),
            ..subject
        }
    }

    #[test]
    fn everyone_runs_the_default_agent_as_a_member_and_owners_their_own() {
        let default = agent("", true);
        for role in [OrgRole::Owner, OrgRole::Admin, OrgRole::Member] {
            assert_eq!(
                runner_of(&default, &subject("alice", role)),
                Runner::Member,
                "{role:?}"
            );
        }
        let own = agent("alice", false);
        assert_eq!(
            runner_of(&own, &subject("alice", OrgRole::Member)),
            Runner::Owner
        );
        assert_eq!(
            runner_of(&own, &subject("bob", OrgRole::Member)),
            Runner::Member
        );
        let holder = with_grant(subject("carol", OrgRole::Member), GrantKind::Invoke);
        assert_eq!(runner_of(&own, &holder), Runner::InvokeHolder);
    }

    #[test]
    fn whoever_edits_the_agent_tests_its_draft() {
        let own = agent("alice", false);
        assert!(tests_draft(Some(&own), &subject("alice", OrgRole::Member)));
        assert!(!tests_draft(Some(&own), &subject("bob", OrgRole::Owner)));
        let owner_with_token = with_grant(subject("alice", OrgRole::Member), GrantKind::Delegate);
        assert!(!tests_draft(Some(&own), &owner_with_token));

        let default = agent("", true);
        assert!(tests_draft(
            Some(&default),
            &subject("alice", OrgRole::Owner)
        ));
        assert!(tests_draft(Some(&default), &subject("ada", OrgRole::Admin)));
        assert!(!tests_draft(
            Some(&default),
            &subject("bob", OrgRole::Member)
        ));
        assert!(!tests_draft(Some(&default), &subject("", OrgRole::Owner)));
        assert!(!tests_draft(None, &subject("alice", OrgRole::Owner)));
    }
}
