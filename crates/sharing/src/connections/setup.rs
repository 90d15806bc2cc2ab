//! A user's setup of an agent they may run: whose connection each integration
//! uses, following the table in DESIGN.md's "Access model (sharing)", and
//! what still stops a run.

use crate::connections::storage::{ConnectionRow, IntegrationRow, Status};

/// How the user comes to run the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The owner runs their own agent: the builder's connection where the
    /// tool names one, else their own binding.
    Owner,
    /// A workspace member of a shared agent, or anyone with the org default
    /// agent: the builder's connection for SHARED integrations, their own
    /// binding for USER_CONFIGURED ones.
    Member,
    /// An INVOKE grant holder: their own binding for every integration.
    InvokeHolder,
    /// A DELEGATE grant run: the owner's connections, as if the owner
    /// called; the bindings passed in are the owner's.
    Delegate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    NotBound,
    Expired,
    Failed,
    BuilderUnavailable,
}

/// The user's setup of one integration.
#[derive(Clone, Debug)]
pub struct IntegrationSetup {
    pub integration: IntegrationRow,
    /// The run uses the builder's connection the tool names.
    pub uses_builder: bool,
    pub binding_required: bool,
    /// The user's own bound connection, with its status now.
    pub bound: Option<(ConnectionRow, Status)>,
    pub gap: Option<Gap>,
}

/// Whether the builder's connection named by `id` can serve runs now.
fn builder_usable(id: &str, builders: &[ConnectionRow], now: i64) -> bool {
    builders
        .iter()
        .any(|c| c.id == id && c.status_at(now).0 == Status::Live)
}

/// One integration's setup for `runner`, given the user's binding of it and
/// the builders' connections the agent names.
pub fn integration_setup(
    runner: Runner,
    integration: &IntegrationRow,
    binding: Option<&ConnectionRow>,
    builders: &[ConnectionRow],
    now: i64,
) -> IntegrationSetup {
    let uses_builder = match runner {
        Runner::Owner | Runner::Delegate => !integration.builder_connection_id.is_empty(),
        Runner::Member => integration.shared,
        Runner::InvokeHolder => false,
    };
    let binds = !uses_builder && (runner == Runner::InvokeHolder || !integration.shared);
    let bound = binding.map(|c| (c.clone(), c.status_at(now).0));
    let gap = if uses_builder {
        (!builder_usable(&integration.builder_connection_id, builders, now))
            .then_some(Gap::BuilderUnavailable)
    } else if !binds {
        // A SHARED integration with no builder connection: only a draft
        // can be in that state, and only its owner can fix it.
        Some(Gap::BuilderUnavailable)
    } else {
        match bound.as_ref().map(|(_, status)| *status) {
            None => Some(Gap::NotBound),
            Some(Status::Live) => None,
            Some(Status::Expired) => Some(Gap::Expired),
            Some(Status::Failed) => Some(Gap::Failed),
        }
    };
    IntegrationSetup {
        integration: integration.clone(),
        uses_builder,
        // Under DELEGATE the owner binds, never the caller.
        binding_required: binds && runner != Runner::Delegate,
        bound,
        gap,
    }
}

/// READY when no integration has a gap.
pub fn ready(setups: &[IntegrationSetup]) -> bool {
    setups.iter().all(|s| s.gap.is_none())
}

/// The setups of several agents for one user, read in a few queries: each
/// entry is an agent, the version the user would run (0: the draft) and how
/// they run it.
pub async fn setups(
    storage: &crate::common::Storage,
    user_id: &str,
    wanted: &[(String, i64, Runner)],
) -> Result<Vec<Vec<IntegrationSetup>>, sqlx::Error> {
    let pairs: Vec<(String, i64)> = wanted
        .iter()
        .map(|(agent, version, _)| (agent.clone(), *version))
        .collect();
    let integrations = storage.connections.integrations_of(&pairs).await?;
    let agent_ids: Vec<String> = wanted.iter().map(|(agent, _, _)| agent.clone()).collect();
    let bindings = storage.connections.bindings(user_id, &agent_ids).await?;
    let mut builder_ids: Vec<String> = integrations
        .iter()
        .filter(|i| !i.builder_connection_id.is_empty())
        .map(|i| i.builder_connection_id.clone())
        .collect();
    builder_ids.sort_unstable();
    builder_ids.dedup();
    let builders = storage.connections.connections_by_id(&builder_ids).await?;
    let now = storage.clock.now_micros();
    Ok(wanted
        .iter()
        .map(|(agent, version, runner)| {
            integrations
                .iter()
                .filter(|i| &i.agent_id == agent && i.version == *version)
                .map(|integration| {
                    let binding = bindings
                        .iter()
                        .find(|b| &b.agent_id == agent && b.integration_key == integration.key)
                        .map(|b| &b.connection);
                    integration_setup(*runner, integration, binding, &builders, now)
                })
                .collect()
        })
        .collect())
}
