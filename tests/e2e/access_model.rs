//! Check against a reference model: for random orgs, workspaces,
//! memberships, roles, shares, unshares and workspace lists, every Check
//! answer agrees with a small model written here from DESIGN.md, and My
//! Agents lists exactly what Check lets the user VIEW.
//!
//! 64 cases per backend; `AGENTSHARE_PROPTEST_CASES` asks for more.

use std::sync::atomic::{AtomicUsize, Ordering};

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sharing::Action;
use tonic::Code;

/// One user besides the org owner.
#[derive(Clone, Debug)]
struct Person {
    viewer: bool,
    /// Membership of the default workspace, then of each extra one.
    memberships: Vec<bool>,
}

#[derive(Clone, Debug)]
enum Op {
    Share(usize),
    Unshare(usize),
    /// The owner lists these workspaces (indexes), keeping the home one.
    SetWorkspaces(usize, Vec<usize>),
}

#[derive(Clone, Debug)]
struct Case {
    workspaces_enabled: bool,
    extra_workspaces: usize,
    people: Vec<Person>,
    /// Each agent's owner: 0 is the org owner, 1.. index `people`.
    agents: Vec<usize>,
    ops: Vec<Op>,
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
        let op = prop_oneof![
            (0..3_usize).prop_map(Op::Share),
            (0..3_usize).prop_map(Op::Share),
            (0..3_usize).prop_map(Op::Unshare),
            (0..3_usize, prop::collection::vec(0..=extra, 0..=2))
                .prop_map(|(a, ws)| Op::SetWorkspaces(a, ws)),
        ];
        (
            Just(enabled),
            Just(extra),
            prop::collection::vec(person, 3),
            prop::collection::vec(0..4_usize, 1..=3),
            prop::collection::vec(op, 0..8),
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

/// The model's view of one agent.
struct ModelAgent {
    id: String,
    owner: usize,
    shared: bool,
    /// Workspace indexes: the home one first.
    listed: Vec<usize>,
}

struct World {
    enabled: bool,
    /// Per user (0 = org owner): org viewer?, and workspace memberships.
    viewer: Vec<bool>,
    member: Vec<Vec<bool>>,
}

impl World {
    /// The workspace a user acts in without a header: the default one if
    /// they are in it, else the oldest of theirs (DESIGN.md's scope rule).
    fn active(&self, user: usize) -> Option<usize> {
        if !self.enabled {
            return Some(0);
        }
        self.member[user].iter().position(|m| *m)
    }

    /// `None`: the user cannot see the agent (NOT_FOUND); else allowed?
    fn check(&self, user: usize, agent: &ModelAgent, action: Action) -> Option<bool> {
        let viewer = self.viewer[user];
        if agent.owner == user {
            return Some(match action {
                Action::View => true,
                _ => !viewer,
            });
        }
        let reaches = agent.shared
            && self
                .active(user)
                .is_some_and(|active| agent.listed.contains(&active));
        if !reaches {
            return None;
        }
        Some(match action {
            Action::View => true,
            Action::Run => !viewer,
            _ => false,
        })
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

async fn run_case(suite: &Suite, case: Case) -> Result<(), TestCaseError> {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let mut users: Vec<UserClient> = Vec::new();
    for i in 0..=case.people.len() {
        let name = format!("model-{n}-{i}");
        let user = suite.user(&name).await;
        users.push(user.with_token(&suite.token_with(&name, true, 7200)));
    }
    let org = users[0].new_org(&format!("Model {n}")).await;
    let owner = &users[0];
    if case.workspaces_enabled {
        owner.enable_workspaces().await;
    }
    let mut workspaces = vec![org.default_workspace_id.clone()];
    for w in 0..case.extra_workspaces {
        workspaces.push(
            owner
                .tenancy()
                .create_workspace(sharing::CreateWorkspaceRequest {
                    name: format!("W{w}"),
                })
                .await
                .expect("workspace")
                .into_inner()
                .workspace
                .expect("workspace")
                .id,
        );
    }
    let mut world = World {
        enabled: case.workspaces_enabled,
        viewer: vec![false],
        member: vec![vec![true; workspaces.len()]],
    };
    for (i, person) in case.people.iter().enumerate() {
        let user_id = users[i + 1].user_id().await;
        owner
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(sharing::add_org_member_request::User::UserId(
                    user_id.clone(),
                )),
                role: if person.viewer {
                    sharing::OrgRole::Viewer
                } else {
                    sharing::OrgRole::Member
                } as i32,
            })
            .await
            .expect("join");
        // Joining the org puts them in the default workspace.
        let mut member = vec![true; 1];
        member.extend(std::iter::repeat_n(false, case.extra_workspaces));
        for (w, wanted) in person.memberships.iter().enumerate() {
            if !case.workspaces_enabled || *wanted == member[w] {
                continue;
            }
            if *wanted {
                owner
                    .add_to_workspace(&workspaces[w], &user_id, sharing::WorkspaceRole::Member)
                    .await;
            } else {
                owner.remove_from_workspace(&workspaces[w], &user_id).await;
            }
            member[w] = *wanted;
        }
        world.viewer.push(person.viewer);
        world.member.push(member);
    }

    let mut agents = Vec::new();
    for (a, wanted_owner) in case.agents.iter().enumerate() {
        // Viewers build nothing, and a builder needs a workspace to build
        // in: such agents go to the org owner.
        let owner_index = if *wanted_owner > 0
            && !world.viewer[*wanted_owner]
            && world.active(*wanted_owner).is_some()
        {
            *wanted_owner
        } else {
            0
        };
        let agent = users[owner_index].deployed_agent(&format!("A{a}")).await;
        let home = workspaces
            .iter()
            .position(|w| *w == agent.home_workspace_id)
            .expect("home is a workspace of the org");
        agents.push(ModelAgent {
            id: agent.id,
            owner: owner_index,
            shared: false,
            listed: vec![home],
        });
    }
    for op in &case.ops {
        match op {
            Op::Share(a) | Op::Unshare(a) => {
                let Some(agent) = agents.get_mut(*a) else {
                    continue;
                };
                let share = matches!(op, Op::Share(_));
                let mut sharing = users[agent.owner].sharing();
                if share {
                    sharing
                        .share_agent(sharing::ShareAgentRequest {
                            agent_id: agent.id.clone(),
                        })
                        .await
                        .expect("share");
                } else {
                    sharing
                        .unshare_agent(sharing::UnshareAgentRequest {
                            agent_id: agent.id.clone(),
                        })
                        .await
                        .expect("unshare");
                }
                agent.shared = share;
            }
            Op::SetWorkspaces(a, wanted) => {
                let Some(agent) = agents.get_mut(*a) else {
                    continue;
                };
                if !case.workspaces_enabled {
                    continue;
                }
                // The owner adds only workspaces they belong to, and sees
                // every one of them (an org owner sees all).
                let mine = &world.member[agent.owner];
                let mut listed = vec![agent.listed[0]];
                for w in wanted {
                    if mine[*w] && !listed.contains(w) {
                        listed.push(*w);
                    }
                }
                users[agent.owner]
                    .sharing()
                    .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                        agent_id: agent.id.clone(),
                        workspace_ids: listed
                            .iter()
                            .skip(1)
                            .map(|w| workspaces[*w].clone())
                            .collect(),
                    })
                    .await
                    .expect("set workspaces");
                agent.listed = listed;
            }
        }
    }

    for (u, user) in users.iter().enumerate() {
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
        for agent in &agents {
            for action in [Action::View, Action::Run, Action::Edit] {
                let expected = world.check(u, agent, action);
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
                    "user {} agent {:?} action {:?} in {:?}",
                    u,
                    agent.id,
                    action,
                    case
                );
            }
            let visible = world.check(u, agent, Action::View) == Some(true);
            prop_assert_eq!(
                listed.contains(&agent.id),
                visible,
                "My Agents of user {} and agent {}",
                u,
                agent.id
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_my_agents_agree_with_the_reference_model() {
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
