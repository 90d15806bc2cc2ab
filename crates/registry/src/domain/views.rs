//! What each reader sees of a design: holders never see the instructions,
//! the model, the files or the builder's connections, and a copy for others
//! leaves the connections behind.

use agentshare_proto::registry::v1 as pb;

/// What holders see of a version: never the instructions, the model, the
/// files or the builder's connections.
pub fn holder_view(content: &pb::AgentDraft) -> pb::AgentDraft {
    pb::AgentDraft {
        name: content.name.clone(),
        description: content.description.clone(),
        instructions: String::new(),
        model: None,
        tools: content
            .tools
            .iter()
            .map(|t| pb::Tool {
                connection_id: String::new(),
                ..t.clone()
            })
            .collect(),
        files: Vec::new(),
        automations: content.automations.clone(),
    }
}

/// A copy for others to start from: the builder's connections stay behind.
pub fn without_connections(content: &pb::AgentDraft) -> pb::AgentDraft {
    let mut copy = content.clone();
    for tool in &mut copy.tools {
        tool.connection_id.clear();
    }
    copy
}

/// The org default agent as it is first created: a general assistant with no
/// tools, which org owners and admins then shape.
pub fn default_agent_design() -> pb::AgentDraft {
    pb::AgentDraft {
        name: "Assistant".into(),
        description: "The org's default agent, available to every member.".into(),
        instructions: "You are this organisation's general assistant. Answer clearly and say when you do not know.".into(),
        ..Default::default()
    }
}
