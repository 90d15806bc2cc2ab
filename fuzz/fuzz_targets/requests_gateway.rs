//! Each request message of the gateway's own services, decoded from the bytes a client
//! or a peer could send, as the service's codec decodes it. Input: a
//! first byte picking the message, then its protobuf encoding.
#![no_main]

use agentshare_fuzz::{Request, decoded_only, run_request};
use agentshare_proto::gateway::v1 as pb;
use libfuzzer_sys::fuzz_target;

/// The packages whose services' requests this target decodes.
const PACKAGES: &[&str] = &["agentshare.gateway.v1"];

fn requests() -> Vec<Request> {
    let mut requests = vec![];
    requests.extend(decoded_only!(
        pb::InvokeRequest,
        pb::InvokeStreamRequest,
        pb::RunAutomationRequest,
    ));
    requests
}

fuzz_target!(|data: &[u8]| {
    static REQUESTS: std::sync::OnceLock<Vec<Request>> = std::sync::OnceLock::new();
    run_request(PACKAGES, REQUESTS.get_or_init(requests), data);
});
