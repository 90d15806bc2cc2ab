//! The JSON form of `sharing.v1.AgentAccessFacts`, as registry's events carry
//! it under the payload key `facts`. Registry writes it and sharing's event
//! follower reads it to repair a missed `SyncAgent`, so both sides share this
//! one codec. Enums are lowercase names rather than numbers, so the payload
//! reads the same in the outbox table as in the proto.

use serde::{Deserialize, Serialize};

use crate::sharing::v1::{
    AgentAccessFacts, AgentAccessState, IntegrationScope, SyncedIntegration, VersionDeprecation,
    VersionIntegrations,
};

#[derive(Serialize, Deserialize)]
struct Facts {
    agent_id: String,
    org_id: String,
    #[serde(default)]
    owner_user_id: String,
    #[serde(default)]
    home_workspace_id: String,
    state: String,
    #[serde(default)]
    is_default: bool,
    #[serde(default)]
    is_managed: bool,
    #[serde(default)]
    latest_version: i64,
    revision: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    versions: Vec<Version>,
    #[serde(default)]
    draft_integrations: Vec<Integration>,
    #[serde(default)]
    deprecations: Vec<Deprecation>,
}

/// A deprecated version; the sunset in UTC microseconds.
#[derive(Serialize, Deserialize)]
struct Deprecation {
    version: i64,
    sunset_micros: i64,
    #[serde(default)]
    note: String,
}

fn micros_of(time: Option<&prost_types::Timestamp>) -> i64 {
    time.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1_000))
    })
}

fn timestamp_of(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

#[derive(Serialize, Deserialize)]
struct Version {
    version: i64,
    #[serde(default)]
    integrations: Vec<Integration>,
}

#[derive(Serialize, Deserialize)]
struct Integration {
    key: String,
    provider: String,
    scope: String,
    #[serde(default)]
    builder_connection_set: bool,
    #[serde(default)]
    builder_connection_id: String,
}

fn state_name(state: i32) -> &'static str {
    match AgentAccessState::try_from(state).unwrap_or(AgentAccessState::Unspecified) {
        AgentAccessState::Unspecified => "unspecified",
        AgentAccessState::Draft => "draft",
        AgentAccessState::Active => "active",
        AgentAccessState::Deleted => "deleted",
    }
}

fn state_of(name: &str) -> Result<AgentAccessState, String> {
    match name {
        "draft" => Ok(AgentAccessState::Draft),
        "active" => Ok(AgentAccessState::Active),
        "deleted" => Ok(AgentAccessState::Deleted),
        other => Err(format!("unknown agent state {other:?}")),
    }
}

fn scope_name(scope: i32) -> &'static str {
    match IntegrationScope::try_from(scope).unwrap_or(IntegrationScope::Unspecified) {
        IntegrationScope::Unspecified => "unspecified",
        IntegrationScope::Shared => "shared",
        IntegrationScope::UserConfigured => "user_configured",
    }
}

fn scope_of(name: &str) -> Result<IntegrationScope, String> {
    match name {
        "shared" => Ok(IntegrationScope::Shared),
        "user_configured" => Ok(IntegrationScope::UserConfigured),
        other => Err(format!("unknown integration scope {other:?}")),
    }
}

fn integration_to_json(integration: &SyncedIntegration) -> Integration {
    Integration {
        key: integration.key.clone(),
        provider: integration.provider.clone(),
        scope: scope_name(integration.scope).into(),
        builder_connection_set: integration.builder_connection_set,
        builder_connection_id: integration.builder_connection_id.clone(),
    }
}

fn integration_of(integration: Integration) -> Result<SyncedIntegration, String> {
    Ok(SyncedIntegration {
        scope: scope_of(&integration.scope)? as i32,
        key: integration.key,
        provider: integration.provider,
        builder_connection_set: integration.builder_connection_set,
        builder_connection_id: integration.builder_connection_id,
    })
}

/// The facts as the JSON object registry's events carry.
pub fn to_json(facts: &AgentAccessFacts) -> serde_json::Value {
    let mirror = Facts {
        agent_id: facts.agent_id.clone(),
        org_id: facts.org_id.clone(),
        owner_user_id: facts.owner_user_id.clone(),
        home_workspace_id: facts.home_workspace_id.clone(),
        state: state_name(facts.state).into(),
        is_default: facts.is_default,
        is_managed: facts.is_managed,
        latest_version: facts.latest_version,
        revision: facts.revision,
        name: facts.name.clone(),
        description: facts.description.clone(),
        versions: facts
            .versions
            .iter()
            .map(|v| Version {
                version: v.version,
                integrations: v.integrations.iter().map(integration_to_json).collect(),
            })
            .collect(),
        draft_integrations: facts
            .draft_integrations
            .iter()
            .map(integration_to_json)
            .collect(),
        deprecations: facts
            .deprecations
            .iter()
            .map(|d| Deprecation {
                version: d.version,
                sunset_micros: micros_of(d.sunset_time.as_ref()),
                note: d.note.clone(),
            })
            .collect(),
    };
    // A struct of strings, numbers, bools and lists always serialises.
    serde_json::to_value(mirror).unwrap_or(serde_json::Value::Null)
}

/// The facts from an event's `facts` object; the error says what is wrong.
pub fn from_json(value: &serde_json::Value) -> Result<AgentAccessFacts, String> {
    let mirror = Facts::deserialize(value).map_err(|e| format!("agent facts: {e}"))?;
    let versions = mirror
        .versions
        .into_iter()
        .map(|v| {
            Ok(VersionIntegrations {
                version: v.version,
                integrations: v
                    .integrations
                    .into_iter()
                    .map(integration_of)
                    .collect::<Result<_, String>>()?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(AgentAccessFacts {
        agent_id: mirror.agent_id,
        org_id: mirror.org_id,
        owner_user_id: mirror.owner_user_id,
        home_workspace_id: mirror.home_workspace_id,
        state: state_of(&mirror.state)? as i32,
        is_default: mirror.is_default,
        is_managed: mirror.is_managed,
        latest_version: mirror.latest_version,
        revision: mirror.revision,
        name: mirror.name,
        description: mirror.description,
        versions,
        draft_integrations: mirror
            .draft_integrations
            .into_iter()
            .map(integration_of)
            .collect::<Result<_, String>>()?,
        deprecations: mirror
            .deprecations
            .into_iter()
            .map(|d| VersionDeprecation {
                version: d.version,
                sunset_time: Some(timestamp_of(d.sunset_micros)),
                note: d.note,
            })
            .collect(),
    })
}
