//! Each request message of the registry's services (and the
//! event log every service serves), decoded from the bytes a client
//! or a peer could send, as the service's codec decodes it, then checked
//! by the draft rules a create or an edit runs. Input: a
//! first byte picking the message, then its protobuf encoding.
#![no_main]

use agentshare_fuzz::{Request, decoded_only, run_request};
use agentshare_proto::events::v1 as pb_events;
use agentshare_proto::registry::v1 as pb_registry;
use libfuzzer_sys::fuzz_target;

/// The packages whose services' requests this target decodes.
const PACKAGES: &[&str] = &["agentshare.registry.v1", "agentshare.events.v1"];

fn requests() -> Vec<Request> {
    let mut requests = vec![
        Request {
            name: <pb_registry::CreateAgentRequest as prost::Name>::full_name,
            run: create_agent,
        },
        Request {
            name: <pb_registry::UpdateDraftRequest as prost::Name>::full_name,
            run: update_draft,
        },
    ];
    requests.extend(decoded_only!(
        pb_registry::GetAgentRequest,
        pb_registry::ListAgentsRequest,
        pb_registry::DeployAgentRequest,
        pb_registry::ListVersionsRequest,
        pb_registry::GetVersionRequest,
        pb_registry::DiffVersionsRequest,
        pb_registry::RollbackAgentRequest,
        pb_registry::DeprecateVersionRequest,
        pb_registry::UndeprecateVersionRequest,
        pb_registry::DeleteAgentRequest,
        pb_registry::CreateTemplateFromAgentRequest,
        pb_registry::ListTemplatesRequest,
        pb_registry::GetTemplateRequest,
        pb_registry::CreateAgentFromTemplateRequest,
        pb_registry::GetDefaultAgentRequest,
        pb_registry::GetRunContentRequest,
        pb_events::WatchRequest,
    ));
    requests
}

fuzz_target!(|data: &[u8]| {
    static REQUESTS: std::sync::OnceLock<Vec<Request>> = std::sync::OnceLock::new();
    run_request(PACKAGES, REQUESTS.get_or_init(requests), data);
});

/// CreateAgent: the draft as sent, under every rule of a design.
fn create_agent(bytes: &[u8]) {
    if let Some(request) = agentshare_fuzz::decode::<pb_registry::CreateAgentRequest>(bytes) {
        let _ = agentshare_registry::validate_draft("draft", request.draft.unwrap_or_default());
    }
}

/// UpdateDraft: the mask applied to the default draft, then the rules.
fn update_draft(bytes: &[u8]) {
    let Some(request) = agentshare_fuzz::decode::<pb_registry::UpdateDraftRequest>(bytes) else {
        return;
    };
    let update = request.draft.unwrap_or_default();
    let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
    let mut draft = pb_registry::AgentDraft::default();
    if agentshare_registry::apply_mask(&mut draft, &update, &paths).is_ok() {
        let _ = agentshare_registry::validate_draft("draft", draft);
    }
}
