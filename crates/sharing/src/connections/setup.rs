//! A user's setup of an agent they may run: whose connection each integration
//! uses, following the table in DESIGN.md's "Access model (sharing)", and
//! what still stops a run.

use std::collections::HashMap;

use agentshare_kit::Error;

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

/// How someone who may configure their own use of an agent runs it: under
/// the grant they hold, as its owner, or as a member.
pub fn runner_of(holds_grant: bool, owns_agent: bool) -> Runner {
    if holds_grant {
        Runner::InvokeHolder
    } else if owns_agent {
        Runner::Owner
    } else {
        Runner::Member
    }
}

/// The version a user sets up: the draft (0) while the agent is one, else
/// the version the held grant pins, else the user's own pin, else the
/// latest.
pub fn version_to_set_up(
    draft: bool,
    grant_pin: Option<i64>,
    user_pin: Option<i64>,
    latest: i64,
) -> i64 {
    if draft {
        0
    } else {
        grant_pin.or(user_pin).unwrap_or(latest)
    }
}

/// The integration `key` of an agent's setup, or NOT_FOUND pointing at
/// where the keys are listed.
pub fn integration<'a>(
    setups: &'a [IntegrationSetup],
    key: &str,
    agent_id: &str,
) -> Result<&'a IntegrationSetup, Error> {
    setups
        .iter()
        .find(|s| s.integration.key == key)
        .ok_or_else(|| {
            Error::not_found(format!(
                "integration key (GetAgentSetup lists those of agent {agent_id})"
            ))
        })
}

/// Whether the user may bind a connection of `provider` to an integration:
/// it must be of the integration's provider, and the integration must be
/// one the user binds.
pub fn bindable(setup: &IntegrationSetup, provider: &str) -> Result<(), Error> {
    let integration = &setup.integration;
    if provider != integration.provider {
        return Err(Error::invalid(
            "connection_id",
            format!(
                "the connection is a {provider} connection; {} needs {}",
                integration.key, integration.provider
            ),
        ));
    }
    if !setup.binding_required {
        return Err(Error::FailedPrecondition(format!(
            "{} uses the builder's connection; there is nothing for you to bind",
            integration.key
        )));
    }
    Ok(())
}

/// The setups of several agents for one user, read in a few queries: each
/// entry is an agent, the version the user would run (0: the draft) and how
/// they run it.
pub async fn setups(
    storage: &crate::common::Storage,
    user_id: &str,
    wanted: &[(String, i64, Runner)],
) -> agentshare_kit::Result<Vec<Vec<IntegrationSetup>>> {
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
    let mut of_pair: HashMap<(&str, i64), Vec<&IntegrationRow>> = HashMap::new();
    for integration in &integrations {
        of_pair
            .entry((integration.agent_id.as_str(), integration.version))
            .or_default()
            .push(integration);
    }
    let bound: HashMap<(&str, &str), &ConnectionRow> = bindings
        .iter()
        .map(|b| {
            (
                (b.agent_id.as_str(), b.integration_key.as_str()),
                &b.connection,
            )
        })
        .collect();
    Ok(wanted
        .iter()
        .map(|(agent, version, runner)| {
            of_pair
                .get(&(agent.as_str(), *version))
                .into_iter()
                .flatten()
                .map(|integration| {
                    let binding = bound
                        .get(&(agent.as_str(), integration.key.as_str()))
                        .copied();
                    integration_setup(*runner, integration, binding, &builders, now)
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::secrets::Sealed;
    use crate::connections::storage::Kind;

    const NOW: i64 = 1_000;

    fn integration(shared: bool, builder: &str) -> IntegrationRow {
        IntegrationRow {
            agent_id: "a".into(),
            version: 1,
            key: "crm".into(),
            provider: "salesforce".into(),
            shared,
            builder_connection_id: builder.into(),
        }
    }

    fn connection(id: &str, status: Status) -> ConnectionRow {
        let sealed = Sealed {
            key_id: "k".into(),
            blob: String::new(),
        };
        ConnectionRow {
            id: id.into(),
            user_id: "u".into(),
            provider: "salesforce".into(),
            kind: Kind::ApiKey,
            label: "crm".into(),
            status,
            status_message: String::new(),
            secret: sealed,
            refresh: None,
            access_expires_at: None,
            expires_at: None,
            scopes: Vec::new(),
            created_at: 0,
            last_used_at: None,
            last_tested_at: None,
        }
    }

    #[test]
    fn whose_connection_each_runner_uses() {
        let builders = [connection("b", Status::Live)];
        let own = connection("mine", Status::Live);
        // (runner, shared, builder connection) -> (uses builder, binds)
        let table = [
            (Runner::Owner, true, "b", true, false),
            (Runner::Owner, false, "b", true, false),
            (Runner::Owner, false, "", false, true),
            (Runner::Member, true, "b", true, false),
            (Runner::Member, false, "b", false, true),
            (Runner::InvokeHolder, true, "b", false, true),
            (Runner::InvokeHolder, false, "", false, true),
        ];
        for (runner, shared, builder, uses_builder, binds) in table {
            let setup = integration_setup(
                runner,
                &integration(shared, builder),
                Some(&own),
                &builders,
                NOW,
            );
            let case = format!("{runner:?} shared={shared} builder={builder:?}");
            assert_eq!(setup.uses_builder, uses_builder, "{case}");
            assert_eq!(setup.binding_required, binds, "{case}");
            assert_eq!(setup.gap, None, "{case}");
        }
        // Under DELEGATE the owner's bindings count and the caller binds nothing.
        let delegate = integration_setup(
            Runner::Delegate,
            &integration(false, ""),
            None,
            &builders,
            NOW,
        );
        assert!(!delegate.binding_required);
        assert_eq!(delegate.gap, Some(Gap::NotBound));
    }

    #[test]
    fn each_gap_names_what_stops_a_run() {
        let member = |binding: Option<&ConnectionRow>, builders: &[ConnectionRow], shared| {
            integration_setup(
                Runner::Member,
                &integration(shared, "b"),
                binding,
                builders,
                NOW,
            )
            .gap
        };
        let live = [connection("b", Status::Live)];
        assert_eq!(member(None, &live, false), Some(Gap::NotBound));
        let expired = connection("mine", Status::Expired);
        assert_eq!(member(Some(&expired), &live, false), Some(Gap::Expired));
        let failed = connection("mine", Status::Failed);
        assert_eq!(member(Some(&failed), &live, false), Some(Gap::Failed));
        let broken = [connection("b", Status::Failed)];
        assert_eq!(member(None, &broken, true), Some(Gap::BuilderUnavailable));
        assert_eq!(member(None, &[], true), Some(Gap::BuilderUnavailable));
        // A SHARED integration of a draft with no builder connection.
        let unset = integration_setup(Runner::Member, &integration(true, ""), None, &live, NOW);
        assert_eq!(unset.gap, Some(Gap::BuilderUnavailable));
        assert!(!ready(&[unset]));
    }

    #[test]
    fn the_version_set_up_is_the_draft_the_grants_pin_the_users_or_the_latest() {
        assert_eq!(version_to_set_up(true, Some(2), Some(3), 4), 0);
        assert_eq!(version_to_set_up(false, Some(2), Some(3), 4), 2);
        assert_eq!(version_to_set_up(false, None, Some(3), 4), 3);
        assert_eq!(version_to_set_up(false, None, None, 4), 4);
        assert_eq!(runner_of(true, true), Runner::InvokeHolder);
        assert_eq!(runner_of(false, true), Runner::Owner);
        assert_eq!(runner_of(false, false), Runner::Member);
    }

    #[test]
    fn only_a_connection_of_the_provider_binds_and_only_where_the_user_binds() {
        let own = connection("mine", Status::Live);
        let setups = [integration_setup(
            Runner::Member,
            &integration(false, ""),
            None,
            &[],
            NOW,
        )];
        let crm = super::integration(&setups, "crm", "a").expect("listed");
        assert!(bindable(crm, &own.provider).is_ok());
        assert!(matches!(
            bindable(crm, "hubspot"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            super::integration(&setups, "mail", "a"),
            Err(Error::NotFound(_))
        ));
        let shared = integration_setup(
            Runner::Member,
            &integration(true, "b"),
            None,
            &[connection("b", Status::Live)],
            NOW,
        );
        assert!(matches!(
            bindable(&shared, "salesforce"),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
