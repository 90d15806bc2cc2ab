//! Access against a reference model: for random orgs, workspaces,
//! memberships, org roles (viewers among them), shares, unshares, workspace
//! lists, redeploys, version pins, INVOKE and DELEGATE grants (pinned,
//! expiring, revoked; held by members, outsiders and anonymous visitors),
//! projects shared into workspaces and org policies, every answer agrees
//! with a small model written from DESIGN.md (`access_model/model.rs`):
//! - Check, and My Agents lists exactly what Check lets the user VIEW;
//! - the run's plan (ResolveInvocation): allowed or which refusal, and the
//!   version it uses, for members, in projects, and for grant holders;
//! - what each member sees of each project;
//! - Check asked by an org owner about each grant's holder;
//! - every mutation's own answer (owner only, policy, versions).
//!
//! 64 cases per backend; `AGENTSHARE_PROPTEST_CASES` asks for more. A
//! failure prints the shrunk case.

mod model;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, tool};
use agentshare_kit::clock::timestamp;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use model::{Holder, Kind, ModelAgent, ModelGrant, ModelProject, OUTSIDER, Policy, Run, World};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sharing::Action;
use tonic::{Code, Status};

/// How long an expiring grant lives, and how far one clock step moves.
const GRANT_LIFE: Duration = Duration::from_secs(30 * 60);
const CLOCK_STEP: Duration = Duration::from_secs(31 * 60);

/// One org member besides the org owner.
#[derive(Clone, Debug)]
struct Person {
    viewer: bool,
    /// Membership of the default workspace, then of each extra one.
    memberships: Vec<bool>,
}

#[derive(Clone, Debug)]
struct AgentSpec {
    /// 0 is the org owner, 1.. index `people`.
    owner: usize,
    /// A SHARED integration on its builder's connection.
    shared_integration: bool,
    /// Deployed versions at the start: 1 or 2.
    versions: i64,
    /// Shared with its workspaces at the start.
    shared: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Share(usize),
    Unshare(usize),
    /// The owner lists these workspaces (indexes), keeping the home one.
    SetWorkspaces(usize, Vec<usize>),
    /// The owner deploys one more version.
    Redeploy(usize),
    /// The org owner makes a member a viewer (true) or a member again.
    Role(usize, bool),
    Pin(usize, usize, i64),
    Unpin(usize, usize),
    /// The agent's owner creates a grant for a holder.
    Grant {
        agent: usize,
        kind: Kind,
        holder: Holder,
        pinned: Option<i64>,
        expires: bool,
    },
    /// The agent's owner revokes a grant made so far (index modulo count).
    Revoke(usize),
    /// The suite clock moves past every expiring grant made so far.
    Advance,
    /// A member creates a project in their active workspace.
    Project(usize),
    /// The org owner lists these workspaces for a project.
    SetProjectWorkspaces(usize, Vec<usize>),
    Policy(Policy),
}

#[derive(Clone, Debug)]
struct Case {
    workspaces_enabled: bool,
    extra_workspaces: usize,
    people: Vec<Person>,
    agents: Vec<AgentSpec>,
    ops: Vec<Op>,
}

fn op(extra: usize) -> impl Strategy<Value = Op> {
    let holder = prop_oneof![
        Just(Holder::Anonymous),
        (0..=OUTSIDER).prop_map(Holder::User),
    ];
    let kind = prop_oneof![Just(Kind::Invoke), Just(Kind::Delegate)];
    let policy = (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(d, e, s)| Policy {
        forbid_delegate_grants: d,
        forbid_external_grants: e,
        forbid_shared_integrations: s,
    });
    let workspaces = prop::collection::vec(0..=extra, 0..=2);
    prop_oneof![
        2 => (0..3_usize).prop_map(Op::Share),
        1 => (0..3_usize).prop_map(Op::Unshare),
        1 => (0..3_usize, workspaces.clone()).prop_map(|(a, ws)| Op::SetWorkspaces(a, ws)),
        1 => (0..3_usize).prop_map(Op::Redeploy),
        1 => (1..4_usize, any::<bool>()).prop_map(|(u, v)| Op::Role(u, v)),
        3 => (0..4_usize, 0..3_usize, 1..=3_i64).prop_map(|(u, a, v)| Op::Pin(u, a, v)),
        1 => (0..4_usize, 0..3_usize).prop_map(|(u, a)| Op::Unpin(u, a)),
        4 => (0..3_usize, kind, holder, prop::option::of(1..=3_i64), any::<bool>()).prop_map(
            |(agent, kind, holder, pinned, expires)| Op::Grant {
                agent,
                kind,
                holder,
                pinned,
                expires,
            }
        ),
        1 => (0..4_usize).prop_map(Op::Revoke),
        1 => Just(Op::Advance),
        1 => (0..4_usize).prop_map(Op::Project),
        1 => (0..3_usize, workspaces).prop_map(|(p, ws)| Op::SetProjectWorkspaces(p, ws)),
        1 => policy.prop_map(Op::Policy),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (any::<bool>(), 1..=2_usize).prop_flat_map(|(enabled, extra)| {
        let extra = if enabled { extra } else { 0 };
        let person = (
            any::<bool>(),
            prop::collection::vec(any::<bool>(), 1 + extra),
        )
            .prop_map(|(viewer, memberships)| Person {
                viewer,
                memberships,
            });
        let agent = (0..4_usize, any::<bool>(), 1..=2_i64, any::<bool>()).prop_map(
            |(owner, shared_integration, versions, shared)| AgentSpec {
                owner,
                shared_integration,
                versions,
                shared,
            },
        );
        (
            Just(enabled),
            Just(extra),
            prop::collection::vec(person, 3),
            prop::collection::vec(agent, 1..=3),
            prop::collection::vec(op(extra), 0..20),
        )
            .prop_map(
                |(workspaces_enabled, extra_workspaces, people, agents, ops)| Case {
                    workspaces_enabled,
                    extra_workspaces,
                    people,
                    agents,
                    ops,
                },
            )
    })
}

/// A mutation's answer as the model sees it: success, or its code.
fn outcome<T>(result: &Result<T, Status>) -> Result<(), Code> {
    result.as_ref().map(|_| ()).map_err(Status::code)
}

/// Whether a run's answer is what the model predicts: the same version
/// and source, or the same code with the predicted word in its message.
fn agrees(expected: &Run, got: &Result<sharing::InvocationPlan, Status>) -> bool {
    match (expected, got) {
        (Run::Plan { version, source }, Ok(plan)) => {
            plan.version == *version && plan.version_source() == *source
        }
        (Run::Refused(code, needle), Err(status)) => {
            status.code() == *code && status.message().contains(needle)
        }
        _ => false,
    }
}

fn show(got: &Result<sharing::InvocationPlan, Status>) -> String {
    match got {
        Ok(plan) => format!("plan v{} {:?}", plan.version, plan.version_source()),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

async fn resolve(
    client: &UserClient,
    agent_id: &str,
    project_id: &str,
) -> Result<sharing::InvocationPlan, Status> {
    client
        .access()
        .resolve_invocation(sharing::ResolveInvocationRequest {
            agent_id: agent_id.into(),
            project_id: project_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().plan.expect("plan"))
}

/// Deploys one more version of the agent: an edit, then a deploy. Each
/// edit is new (deploying an unchanged draft makes no version).
async fn redeploy(owner: &UserClient, agent: &registry::Agent) -> Result<registry::Agent, Status> {
    let edited = owner
        .registry()
        .update_draft(registry::UpdateDraftRequest {
            agent_id: agent.id.clone(),
            draft: Some(registry::AgentDraft {
                description: format!("edit {}", agent.draft_revision),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
            expected_draft_revision: agent.draft_revision,
        })
        .await?
        .into_inner()
        .agent
        .expect("agent");
    Ok(owner
        .registry()
        .deploy_agent(registry::DeployAgentRequest {
            agent_id: edited.id.clone(),
            expected_draft_revision: edited.draft_revision,
            notes: String::new(),
        })
        .await?
        .into_inner()
        .agent
        .expect("agent"))
}

/// An org member's agent as the property test builds it.
async fn build_agent(owner: &UserClient, name: &str, spec: &AgentSpec) -> registry::Agent {
    let tools = if spec.shared_integration {
        let key = owner
            .api_key_connection("drive", &format!("kb-{name}"))
            .await;
        vec![tool(
            "knowledge",
            "drive",
            registry::IntegrationScope::Shared,
            &key,
        )]
    } else {
        Vec::new()
    };
    let created = owner
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: name.into(),
                tools,
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("create agent")
        .into_inner()
        .agent
        .expect("agent");
    let mut agent = owner.deploy(&created).await;
    for _ in 1..spec.versions {
        agent = redeploy(owner, &agent).await.expect("redeploy");
    }
    if spec.shared {
        owner.share(&agent.id).await;
    }
    agent
}

/// The users of one case, stepped up, with tokens the suite clock accepts.
struct People {
    names: Vec<String>,
    clients: Vec<UserClient>,
    ids: Vec<String>,
}

impl People {
    fn refresh(&mut self, suite: &Suite) {
        for (client, name) in self.clients.iter_mut().zip(&self.names) {
            *client = client.with_token(&suite.token_with(name, true, 7200));
        }
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Everything one case made, driver side and model side.
struct Built {
    people: People,
    workspaces: Vec<String>,
    world: World,
    agents: Vec<ModelAgent>,
    registry_agents: Vec<registry::Agent>,
    grants: Vec<ModelGrant>,
    projects: Vec<ModelProject>,
    anonymous: UserClient,
}

async fn build(suite: &Suite, case: &Case) -> Built {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let names: Vec<String> = (0..=OUTSIDER).map(|i| format!("model-{n}-{i}")).collect();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for name in &names {
        let user = suite.user(name).await;
        let user = user.with_token(&suite.token_with(name, true, 7200));
        ids.push(user.user_id().await);
        clients.push(user);
    }
    let people = People {
        names,
        clients,
        ids,
    };
    let owner = &people.clients[0];
    let org = owner.new_org(&format!("Model {n}")).await;
    if case.workspaces_enabled {
        owner.enable_workspaces().await;
    }
    let mut workspaces = vec![org.default_workspace_id.clone()];
    for w in 0..case.extra_workspaces {
        workspaces.push(owner.create_workspace(&format!("W{w}")).await);
    }
    let mut world = World {
        enabled: case.workspaces_enabled,
        viewer: vec![false],
        member: vec![vec![true; workspaces.len()]],
        pins: Default::default(),
        policy: Policy::default(),
        now: suite.clock.now_micros(),
    };
    for (i, person) in case.people.iter().enumerate() {
        let user_id = &people.ids[i + 1];
        owner
            .add_member(
                user_id,
                if person.viewer {
                    sharing::OrgRole::Viewer
                } else {
                    sharing::OrgRole::Member
                },
            )
            .await;
        // Joining the org puts them in the default workspace.
        let mut member = vec![true; 1];
        member.extend(std::iter::repeat_n(false, case.extra_workspaces));
        for (w, wanted) in person.memberships.iter().enumerate() {
            if !case.workspaces_enabled || *wanted == member[w] {
                continue;
            }
            if *wanted {
                owner
                    .add_to_workspace(&workspaces[w], user_id, sharing::WorkspaceRole::Member)
                    .await;
            } else {
                owner.remove_from_workspace(&workspaces[w], user_id).await;
            }
            member[w] = *wanted;
        }
        world.viewer.push(person.viewer);
        world.member.push(member);
    }

    let mut agents = Vec::new();
    let mut registry_agents = Vec::new();
    for (a, spec) in case.agents.iter().enumerate() {
        // Viewers build nothing, and a builder needs a workspace to build
        // in: such agents go to the org owner.
        let owner_index =
            if spec.owner > 0 && !world.viewer[spec.owner] && world.active(spec.owner).is_some() {
                spec.owner
            } else {
                0
            };
        let agent = build_agent(&people.clients[owner_index], &format!("A{a}"), spec).await;
        let home = workspaces
            .iter()
            .position(|w| *w == agent.home_workspace_id)
            .expect("home is a workspace of the org");
        agents.push(ModelAgent {
            id: agent.id.clone(),
            owner: owner_index,
            shared: spec.shared,
            listed: vec![home],
            shared_integration: spec.shared_integration,
            latest: spec.versions,
        });
        registry_agents.push(agent);
    }
    Built {
        people,
        workspaces,
        world,
        agents,
        registry_agents,
        grants: Vec::new(),
        projects: Vec::new(),
        anonymous: suite.anonymous().await,
    }
}

/// Applies one operation through the API and to the model, checking the
/// operation's own answer against the model.
async fn apply(suite: &Suite, b: &mut Built, op: &Op) -> Result<(), TestCaseError> {
    let clients = &b.people.clients;
    match op {
        Op::Share(a) | Op::Unshare(a) => {
            let a = &(a % b.agents.len());
            let agent = &mut b.agents[*a];
            let share = matches!(op, Op::Share(_));
            let mut client = clients[agent.owner].sharing();
            let got = if share {
                outcome(
                    &client
                        .share_agent(sharing::ShareAgentRequest {
                            agent_id: agent.id.clone(),
                        })
                        .await,
                )
            } else {
                outcome(
                    &client
                        .unshare_agent(sharing::UnshareAgentRequest {
                            agent_id: agent.id.clone(),
                        })
                        .await,
                )
            };
            let expected = b.world.owner_change(agent);
            prop_assert_eq!(got, expected, "{:?}", op);
            if expected.is_ok() {
                agent.shared = share;
            }
        }
        Op::SetWorkspaces(a, wanted) => {
            let a = &(a % b.agents.len());
            let agent = &mut b.agents[*a];
            if !b.world.enabled {
                return Ok(());
            }
            // The owner adds only workspaces they belong to, and sees
            // every one of them (an org owner sees all).
            let mine = &b.world.member[agent.owner];
            let mut listed = vec![agent.listed[0]];
            for w in wanted {
                if mine[*w] && !listed.contains(w) {
                    listed.push(*w);
                }
            }
            let got = clients[agent.owner]
                .sharing()
                .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                    agent_id: agent.id.clone(),
                    workspace_ids: listed
                        .iter()
                        .skip(1)
                        .map(|w| b.workspaces[*w].clone())
                        .collect(),
                })
                .await;
            let expected = b.world.owner_change(agent);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if expected.is_ok() {
                agent.listed = listed;
            }
        }
        Op::Redeploy(a) => {
            let a = &(a % b.agents.len());
            let agent = &mut b.agents[*a];
            let got = redeploy(&clients[agent.owner], &b.registry_agents[*a]).await;
            let expected = b.world.owner_change(agent);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if let Ok(deployed) = got {
                b.registry_agents[*a] = deployed;
                agent.latest += 1;
            }
        }
        Op::Role(u, viewer) => {
            clients[0]
                .tenancy()
                .update_org_member_role(sharing::UpdateOrgMemberRoleRequest {
                    user_id: b.people.ids[*u].clone(),
                    role: if *viewer {
                        sharing::OrgRole::Viewer
                    } else {
                        sharing::OrgRole::Member
                    } as i32,
                })
                .await
                .expect("the org owner changes a role");
            b.world.viewer[*u] = *viewer;
        }
        Op::Pin(u, a, version) => {
            let a = &(a % b.agents.len());
            let agent = &b.agents[*a];
            let got = clients[*u]
                .access()
                .pin_version(sharing::PinVersionRequest {
                    agent_id: agent.id.clone(),
                    version: *version,
                })
                .await;
            let expected = b.world.pin(*u, agent, *version);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if expected.is_ok() {
                b.world.pins.insert((*u, *a), *version);
            }
        }
        Op::Unpin(u, a) => {
            let a = &(a % b.agents.len());
            let agent = &b.agents[*a];
            let got = clients[*u]
                .access()
                .unpin_version(sharing::UnpinVersionRequest {
                    agent_id: agent.id.clone(),
                })
                .await;
            let expected = b.world.unpin(*u, agent);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if expected.is_ok() {
                b.world.pins.remove(&(*u, *a));
            }
        }
        Op::Grant {
            agent: a,
            kind,
            holder,
            pinned,
            expires,
        } => {
            let a = &(a % b.agents.len());
            let agent = &b.agents[*a];
            let expires_at = expires
                .then(|| b.world.now + i64::try_from(GRANT_LIFE.as_micros()).expect("micros"));
            let got = clients[agent.owner]
                .sharing()
                .create_grant(sharing::CreateGrantRequest {
                    agent_id: agent.id.clone(),
                    kind: match kind {
                        Kind::Invoke => sharing::GrantKind::Invoke,
                        Kind::Delegate => sharing::GrantKind::Delegate,
                    } as i32,
                    label: "model".into(),
                    expire_time: expires_at.map(timestamp),
                    pinned_version: *pinned,
                    limits: None,
                })
                .await;
            let expected = b.world.create_grant(agent, *kind, *pinned);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if let Ok(created) = got {
                let created = created.into_inner();
                b.grants.push(ModelGrant {
                    id: created.grant.expect("grant").id,
                    token: created.token,
                    agent: *a,
                    kind: *kind,
                    holder: *holder,
                    pinned: *pinned,
                    expires_at,
                    revoked: false,
                });
            }
        }
        Op::Revoke(g) => {
            if b.grants.is_empty() {
                return Ok(());
            }
            let g = g % b.grants.len();
            let agent = &b.agents[b.grants[g].agent];
            let got = clients[agent.owner]
                .sharing()
                .revoke_grant(sharing::RevokeGrantRequest {
                    grant_id: b.grants[g].id.clone(),
                })
                .await;
            let expected = b.world.owner_change(agent);
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if expected.is_ok() {
                b.grants[g].revoked = true;
            }
        }
        Op::Advance => {
            suite.clock.advance(CLOCK_STEP);
            b.world.now = suite.clock.now_micros();
            // Sessions and step-up are timed by the same clock.
            b.people.refresh(suite);
        }
        Op::Project(u) => {
            let got = clients[*u]
                .tenancy()
                .create_project(sharing::CreateProjectRequest {
                    name: format!("P{}", b.projects.len()),
                    description: String::new(),
                })
                .await;
            let home = b.world.active(*u);
            let expected = match home {
                _ if b.world.viewer[*u] => Err(Code::PermissionDenied),
                None => Err(Code::PermissionDenied),
                Some(_) => Ok(()),
            };
            prop_assert_eq!(outcome(&got), expected, "{:?}", op);
            if let (Ok(created), Some(home)) = (got, home) {
                let project = created.into_inner().project.expect("project");
                prop_assert_eq!(&project.home_workspace_id, &b.workspaces[home]);
                b.projects.push(ModelProject {
                    id: project.id,
                    listed: vec![home],
                });
            }
        }
        Op::SetProjectWorkspaces(p, wanted) => {
            if b.projects.is_empty() {
                return Ok(());
            }
            let p = p % b.projects.len();
            let project = &mut b.projects[p];
            if !b.world.enabled {
                return Ok(());
            }
            // The org owner belongs to every workspace, so may add any.
            let mut listed = vec![project.listed[0]];
            for w in wanted {
                if !listed.contains(w) {
                    listed.push(*w);
                }
            }
            clients[0]
                .tenancy()
                .set_project_workspaces(sharing::SetProjectWorkspacesRequest {
                    project_id: project.id.clone(),
                    workspace_ids: listed.iter().map(|w| b.workspaces[*w].clone()).collect(),
                })
                .await
                .expect("the org owner lists the project's workspaces");
            project.listed = listed;
        }
        Op::Policy(policy) => {
            clients[0]
                .tenancy()
                .update_org(sharing::UpdateOrgRequest {
                    policy: Some(sharing::OrgPolicy {
                        forbid_delegate_grants: policy.forbid_delegate_grants,
                        forbid_external_grants: policy.forbid_external_grants,
                        forbid_shared_integrations: policy.forbid_shared_integrations,
                        runs_per_minute_per_principal: 0,
                    }),
                    ..Default::default()
                })
                .await
                .expect("the org owner sets the policy");
            b.world.policy = *policy;
        }
    }
    Ok(())
}

/// Check, My Agents and each member's runs agree with the model.
async fn assert_members(b: &Built, case: &Case) -> Result<(), TestCaseError> {
    for (u, user) in b.people.clients.iter().enumerate().take(OUTSIDER) {
        let listed: Vec<String> = user
            .access()
            .list_my_agents(sharing::ListMyAgentsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("my agents")
            .into_inner()
            .agents
            .into_iter()
            .map(|a| a.agent_id)
            .collect();
        for (a, agent) in b.agents.iter().enumerate() {
            for action in [Action::View, Action::Run, Action::Edit] {
                let expected = b.world.check(u, agent, action);
                let answer = user
                    .access()
                    .check(sharing::CheckRequest {
                        principal: None,
                        agent_id: agent.id.clone(),
                        action: action as i32,
                    })
                    .await;
                let got = match answer {
                    Ok(answer) => Some(answer.into_inner().allowed),
                    Err(status) if status.code() == Code::NotFound => None,
                    Err(status) => panic!("check failed: {status}"),
                };
                // The org owner administers every agent of the org, so
                // Check answers them with a denial instead of NOT_FOUND.
                let expected = if u == 0 {
                    Some(expected.unwrap_or(false))
                } else {
                    expected
                };
                prop_assert_eq!(
                    got,
                    expected,
                    "Check: user {} agent {} action {:?} in {:?}",
                    u,
                    a,
                    action,
                    case
                );
            }
            let visible = b.world.check(u, agent, Action::View) == Some(true);
            prop_assert_eq!(
                listed.contains(&agent.id),
                visible,
                "My Agents of user {} and agent {}",
                u,
                a
            );
            let expected = b.world.member_run(u, a, agent, None);
            let got = resolve(user, &agent.id, "").await;
            prop_assert!(
                agrees(&expected, &got),
                "run: user {} agent {}: model {:?}, got {}",
                u,
                a,
                expected,
                show(&got)
            );
        }
    }
    Ok(())
}

/// What each member sees of each project, and their runs in it.
async fn assert_projects(b: &Built) -> Result<(), TestCaseError> {
    for (u, user) in b.people.clients.iter().enumerate().take(OUTSIDER) {
        let listed: Vec<String> = user
            .tenancy()
            .list_projects(sharing::ListProjectsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("projects")
            .into_inner()
            .projects
            .into_iter()
            .map(|p| p.id)
            .collect();
        for (p, project) in b.projects.iter().enumerate() {
            let got = user
                .tenancy()
                .get_project(sharing::GetProjectRequest {
                    project_id: project.id.clone(),
                })
                .await;
            let sees = b.world.sees_project(u, project);
            let got = outcome(&got);
            prop_assert_eq!(
                got,
                if sees { Ok(()) } else { Err(Code::NotFound) },
                "GetProject: user {} project {}",
                u,
                p
            );
            prop_assert_eq!(
                listed.contains(&project.id),
                b.world.lists_project(u, project),
                "ListProjects: user {} project {}",
                u,
                p
            );
            // A run in the project: the project's visibility first, then
            // the agent's; its session lives in the project's home.
            let a = p % b.agents.len();
            let agent = &b.agents[a];
            let expected = b.world.member_run(u, a, agent, Some(project));
            let got = resolve(user, &agent.id, &project.id).await;
            prop_assert!(
                agrees(&expected, &got),
                "run in project: user {} agent {} project {}: model {:?}, got {}",
                u,
                a,
                p,
                expected,
                show(&got)
            );
            if let Ok(plan) = got {
                prop_assert_eq!(&plan.session_workspace_id, &b.workspaces[project.listed[0]]);
            }
        }
    }
    Ok(())
}

/// Each grant's holder runs under it as the model says, and Check asked by
/// the org owner about the holder agrees.
async fn assert_grants(b: &Built) -> Result<(), TestCaseError> {
    for (g, grant) in b.grants.iter().enumerate() {
        let agent = &b.agents[grant.agent];
        let client = match grant.holder {
            Holder::Anonymous => &b.anonymous,
            Holder::User(u) => &b.people.clients[u],
        };
        let expected = b.world.grant_run(grant, agent);
        let got = resolve(&client.with_grant(&grant.token), &agent.id, "").await;
        prop_assert!(
            agrees(&expected, &got),
            "grant {} run ({:?} {:?} for agent {}): model {:?}, got {}",
            g,
            grant.kind,
            grant.holder,
            grant.agent,
            expected,
            show(&got)
        );
        let holder_id = match grant.holder {
            Holder::Anonymous => String::new(),
            Holder::User(u) => b.people.ids[u].clone(),
        };
        let checked = b.people.clients[0]
            .access()
            .check(sharing::CheckRequest {
                principal: Some(sharing::PrincipalRef {
                    user_id: holder_id,
                    grant_id: grant.id.clone(),
                    workspace_id: String::new(),
                }),
                agent_id: agent.id.clone(),
                action: Action::Run as i32,
            })
            .await
            .expect("the org owner asks about a grant")
            .into_inner();
        prop_assert_eq!(
            checked.allowed,
            b.world.grant_check(grant),
            "Check of grant {}'s holder",
            g
        );
    }
    Ok(())
}

async fn run_case(suite: &Suite, case: Case) -> Result<(), TestCaseError> {
    let mut built = build(suite, &case).await;
    for op in &case.ops {
        apply(suite, &mut built, op).await?;
    }
    assert_members(&built, &case).await?;
    assert_projects(&built).await?;
    assert_grants(&built).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_agrees_with_the_reference_model() {
    let suite = Suite::start().await;
    let cases = std::env::var("AGENTSHARE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&case(), |case| handle.block_on(run_case(&suite, case)))
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    suite.stop().await;
}
