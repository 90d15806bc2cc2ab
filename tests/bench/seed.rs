//! The data the workloads run over, made through the public API as users
//! would make it: orgs × workspaces × agents × members at the chosen
//! scale. Org 0 is the bench org: its first member is the caller of the
//! access and run workloads, and it holds the agents they ask about.

use std::str::FromStr;

use agentshare_e2e::{UserClient, tool};
use agentshare_proto::registry::v1::IntegrationScope;
use agentshare_proto::sharing::v1 as sharing;
use futures::{StreamExt as _, TryStreamExt as _};

use crate::measure::called;
use crate::target::Server;

/// Calls in flight while seeding.
const SEEDING: usize = 16;

/// How much to seed: `ORGSxWORKSPACESxAGENTSxMEMBERS`.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub orgs: usize,
    pub workspaces: usize,
    pub agents: usize,
    pub members: usize,
}

impl FromStr for Scale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let numbers: Vec<usize> = text
            .split('x')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("{text:?}: write ORGSxWORKSPACESxAGENTSxMEMBERS, such as 10x20x500x50")
            })?;
        let [orgs, workspaces, agents, members] = numbers[..] else {
            return Err(format!(
                "{text:?}: four numbers, ORGSxWORKSPACESxAGENTSxMEMBERS"
            ));
        };
        if orgs == 0 || workspaces == 0 || agents == 0 || members == 0 {
            return Err(format!("{text:?}: every number is at least 1"));
        }
        Ok(Self {
            orgs,
            workspaces,
            agents,
            members,
        })
    }
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{}x{}x{}",
            self.orgs, self.workspaces, self.agents, self.members
        )
    }
}

/// The bench org, as the workloads use it.
pub struct BenchOrg {
    pub owner: UserClient,
    /// A member, who asks and runs.
    pub member: UserClient,
    /// Every member, the first included.
    pub members: Vec<UserClient>,
    /// Deployed agents shared with the org, visible to every member.
    pub agents: Vec<String>,
    /// An agent with the builder's shared search key and a CRM the member
    /// has bound: a run plans two integrations.
    pub research: String,
}

/// Seeds every org and returns the bench org.
pub async fn seed(server: &Server, scale: Scale) -> Result<BenchOrg, String> {
    let mut bench = None;
    for org in 0..scale.orgs {
        let seeded = seed_org(server, scale, org).await?;
        if org == 0 {
            bench = Some(seeded);
        }
        eprintln!("  seeded org {} of {}", org + 1, scale.orgs);
    }
    let mut bench = bench.ok_or("no org was seeded")?;
    bench.research = research_agent(&bench).await?;
    Ok(bench)
}

async fn seed_org(server: &Server, scale: Scale, org: usize) -> Result<BenchOrg, String> {
    let owner = server.user(&format!("o{org}-owner"))?;
    called(
        owner
            .tenancy()
            .create_org(sharing::CreateOrgRequest {
                name: format!("Bench {org}"),
            })
            .await,
    )?;
    let members: Vec<UserClient> = (0..scale.members)
        .map(|m| server.user(&format!("o{org}-m{m}")))
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = futures::stream::iter(members.iter().cloned())
        .map(|member| {
            let owner = owner.clone();
            async move {
                let id = member.user_id().await;
                called(
                    owner
                        .tenancy()
                        .add_org_member(sharing::AddOrgMemberRequest {
                            user: Some(sharing::add_org_member_request::User::UserId(id.clone())),
                            role: sharing::OrgRole::Member as i32,
                        })
                        .await,
                )?;
                Ok::<_, String>(id)
            }
        })
        .buffered(SEEDING)
        .try_collect()
        .await?;
    if scale.workspaces > 1 {
        workspaces(&owner, scale.workspaces - 1, &ids).await?;
    }
    let agents = futures::stream::iter(0..scale.agents)
        .map(|n| {
            let owner = owner.clone();
            async move {
                let agent = owner.shared_agent(&format!("Agent {n}")).await;
                Ok::<_, String>(agent.id)
            }
        })
        .buffered(SEEDING)
        .try_collect()
        .await?;
    Ok(BenchOrg {
        member: members[0].clone(),
        owner,
        members,
        agents,
        research: String::new(),
    })
}

/// Turns workspaces on and makes `count` more, the members spread over
/// them; everyone stays in the default workspace, where the agents live.
async fn workspaces(owner: &UserClient, count: usize, members: &[String]) -> Result<(), String> {
    owner.enable_workspaces().await;
    let mut made = Vec::with_capacity(count);
    for n in 0..count {
        made.push(owner.create_workspace(&format!("Team {n}")).await);
    }
    futures::stream::iter(members.iter().enumerate())
        .map(|(m, id)| {
            let (owner, workspace) = (owner.clone(), made[m % count].clone());
            async move {
                owner
                    .add_to_workspace(&workspace, id, sharing::WorkspaceRole::Member)
                    .await;
                Ok::<_, String>(())
            }
        })
        .buffered(SEEDING)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The run workloads' agent: the owner's shared search key, and a CRM the
/// member brings and binds.
async fn research_agent(bench: &BenchOrg) -> Result<String, String> {
    let search = bench
        .owner
        .api_key_connection("search", "srch-bench-0001")
        .await;
    let agent = bench
        .owner
        .shared_agent_with(
            "Research",
            "Answer from search and the CRM.",
            vec![
                tool("web_search", "search", IntegrationScope::Shared, &search),
                tool("crm", "crm", IntegrationScope::UserConfigured, ""),
            ],
        )
        .await;
    let crm = bench
        .member
        .api_key_connection("crm", "crm-bench-member")
        .await;
    bench.member.bind(&agent.id, "crm", &crm).await;
    Ok(agent.id)
}
