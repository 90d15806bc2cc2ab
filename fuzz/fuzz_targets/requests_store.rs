//! Each request message of the store's services, decoded from the bytes a client
//! or a peer could send, as the service's codec decodes it, then checked
//! by the key and value rules the workspace store runs. Input: a
//! first byte picking the message, then its protobuf encoding.
#![no_main]

use agentshare_fuzz::{Request, decoded_only, run_request};
use agentshare_proto::store::v1 as pb;
use agentshare_store::item_rules::{self, Limits};
use libfuzzer_sys::fuzz_target;

/// The default limits' shape; the value check reads only the size.
const LIMITS: Limits = Limits {
    max_value_bytes: 64 * 1024,
    max_items: 10_000,
    max_total_bytes: 64 << 20,
};

/// The packages whose services' requests this target decodes.
const PACKAGES: &[&str] = &["agentshare.store.v1"];

fn requests() -> Vec<Request> {
    let mut requests = vec![
        Request {
            name: <pb::WorkspaceListRequest as prost::Name>::full_name,
            run: list,
        },
        Request {
            name: <pb::WorkspaceReadRequest as prost::Name>::full_name,
            run: read,
        },
        Request {
            name: <pb::WorkspaceWriteRequest as prost::Name>::full_name,
            run: write,
        },
        Request {
            name: <pb::WorkspaceDeleteRequest as prost::Name>::full_name,
            run: delete,
        },
        Request {
            name: <pb::WorkspacePublishRequest as prost::Name>::full_name,
            run: publish,
        },
    ];
    requests.extend(decoded_only!(
        pb::ListSessionsRequest,
        pb::GetSessionRequest,
        pb::RecordInvocationRequest,
        pb::CompleteInvocationRequest,
        pb::CreateSessionRequest,
        pb::AppendTurnRequest,
        pb::OpenSessionRequest,
        pb::GetInvocationRequest,
        pb::ListInvocationsRequest,
        pb::SummarizeUsageRequest,
        pb::WatchRequest,
    ));
    requests
}

fuzz_target!(|data: &[u8]| {
    static REQUESTS: std::sync::OnceLock<Vec<Request>> = std::sync::OnceLock::new();
    run_request(PACKAGES, REQUESTS.get_or_init(requests), data);
});

fn list(bytes: &[u8]) {
    if let Some(request) = agentshare_fuzz::decode::<pb::WorkspaceListRequest>(bytes) {
        let _ = item_rules::check_prefix("key_prefix", &request.key_prefix);
    }
}

fn read(bytes: &[u8]) {
    if let Some(request) = agentshare_fuzz::decode::<pb::WorkspaceReadRequest>(bytes) {
        let _ = item_rules::check_key("key", &request.key);
    }
}

/// WorkspaceWrite: the checks run before any lookup, in the service's order.
fn write(bytes: &[u8]) {
    let Some(request) = agentshare_fuzz::decode::<pb::WorkspaceWriteRequest>(bytes) else {
        return;
    };
    let _ = item_rules::check_key("key", &request.key);
    if let Ok(content_type) = item_rules::content_type_of(request.content_type) {
        let _ = item_rules::check_value(&request.value, content_type, &LIMITS);
    }
}

fn delete(bytes: &[u8]) {
    if let Some(request) = agentshare_fuzz::decode::<pb::WorkspaceDeleteRequest>(bytes) {
        let _ = item_rules::check_key("key", &request.key);
    }
}

fn publish(bytes: &[u8]) {
    if let Some(request) = agentshare_fuzz::decode::<pb::WorkspacePublishRequest>(bytes) {
        let _ = item_rules::check_key("key", &request.key);
        if let Some(target) = request.target_key.as_deref() {
            let _ = item_rules::check_key("target_key", target);
        }
    }
}
