//! The access facts sharing keeps about an agent (DESIGN.md, "Who owns
//! what"), built from its state, draft and versions.

use agentshare_proto::registry::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;

use super::AgentState;

/// The state of an agent from which its access facts are built.
pub struct FactsSource<'a> {
    pub agent_id: &'a str,
    pub org_id: &'a str,
    pub owner_user_id: &'a str,
    pub home_workspace_id: &'a str,
    pub state: AgentState,
    pub is_default: bool,
    pub is_managed: bool,
    pub revision: i64,
    pub draft: &'a pb::AgentDraft,
    /// Every deployed version, oldest first.
    pub versions: &'a [(i64, pb::AgentDraft)],
    /// Every deprecated version: its number, sunset (UTC microseconds) and
    /// note.
    pub deprecations: &'a [(i64, i64, String)],
}

fn integrations(draft: &pb::AgentDraft) -> Vec<sharing::SyncedIntegration> {
    draft
        .tools
        .iter()
        .map(|t| sharing::SyncedIntegration {
            key: t.integration_key.clone(),
            provider: t.provider.clone(),
            // The two enums share their numbers.
            scope: t.scope,
            builder_connection_set: !t.connection_id.is_empty(),
            builder_connection_id: t.connection_id.clone(),
        })
        .collect()
}

/// Everything sharing keeps about an agent. Every version is sent, so a
/// sync after missed ones repairs them all.
pub fn facts(source: &FactsSource<'_>) -> sharing::AgentAccessFacts {
    let latest = source.versions.last();
    let shown = latest.map_or(source.draft, |(_, content)| content);
    sharing::AgentAccessFacts {
        agent_id: source.agent_id.into(),
        org_id: source.org_id.into(),
        owner_user_id: source.owner_user_id.into(),
        home_workspace_id: source.home_workspace_id.into(),
        state: source.state.to_access() as i32,
        is_default: source.is_default,
        is_managed: source.is_managed,
        latest_version: latest.map_or(0, |(number, _)| *number),
        revision: source.revision,
        name: shown.name.clone(),
        description: shown.description.clone(),
        versions: source
            .versions
            .iter()
            .map(|(number, content)| sharing::VersionIntegrations {
                version: *number,
                integrations: integrations(content),
            })
            .collect(),
        draft_integrations: integrations(source.draft),
        deprecations: source
            .deprecations
            .iter()
            .map(|(version, sunset, note)| sharing::VersionDeprecation {
                version: *version,
                sunset_time: Some(agentshare_kit::clock::timestamp(*sunset)),
                note: note.clone(),
            })
            .collect(),
    }
}

/// The facts that end access, sent before a delete changes anything here:
/// the next revision, DELETED.
pub fn deleted_facts(mut facts: sharing::AgentAccessFacts) -> sharing::AgentAccessFacts {
    facts.state = sharing::AgentAccessState::Deleted as i32;
    facts.revision += 1;
    facts
}

/// Whether a draft edit changes what sharing knows: the draft's tools, and
/// while the agent is a DRAFT its name and description.
pub fn edit_changes_facts(
    state: AgentState,
    before: &pb::AgentDraft,
    after: &pb::AgentDraft,
) -> bool {
    integrations(before) != integrations(after)
        || (state == AgentState::Draft
            && (before.name != after.name || before.description != after.description))
}

/// The integrations of a version, for `agent.deployed`.
pub fn integrations_json(content: &pb::AgentDraft) -> serde_json::Value {
    content
        .tools
        .iter()
        .map(|t| {
            serde_json::json!({
                "key": t.integration_key,
                "provider": t.provider,
                "scope": pb::IntegrationScope::try_from(t.scope)
                    .map_or("INTEGRATION_SCOPE_UNSPECIFIED", |s| s.as_str_name()),
                "builder_connection_set": !t.connection_id.is_empty(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::drafts::tests::tool;

    #[test]
    fn facts_round_trip_through_the_event_json() {
        let draft = pb::AgentDraft {
            name: "A".into(),
            tools: vec![tool("search", pb::IntegrationScope::Shared, "c1")],
            ..Default::default()
        };
        let versions = vec![(1, draft.clone())];
        let facts = facts(&FactsSource {
            agent_id: "a",
            org_id: "o",
            owner_user_id: "u",
            home_workspace_id: "w",
            state: AgentState::Active,
            is_default: false,
            is_managed: true,
            revision: 7,
            draft: &draft,
            versions: &versions,
            deprecations: &[(1, 5, "moving on".into())],
        });
        assert_eq!(facts.latest_version, 1);
        assert!(facts.versions[0].integrations[0].builder_connection_set);
        assert_eq!(facts.deprecations[0].note, "moving on");
        let json = agentshare_proto::access_facts::to_json(&facts);
        assert_eq!(json["state"], "active");
        assert_eq!(
            agentshare_proto::access_facts::from_json(&json).expect("decodes"),
            facts
        );
    }
}
