//! The HTTP/JSON transcoder: route matching on the path, query parameters,
//! path variables and the JSON body, into the request message the call
//! stands for; and an answer's bytes rendered as JSON. Input: an HTTP
//! request in brief, `METHOD /path?query` on the first line, the body
//! after it. Every refusal is INVALID_ARGUMENT naming the part to fix, and
//! every message built is one the owning service decodes.
#![no_main]

use std::sync::OnceLock;

use agentshare_fuzz::contract;
use agentshare_gateway::http::json;
use agentshare_gateway::http::routes::{Found, Router};
use agentshare_kit::Error;
use libfuzzer_sys::fuzz_target;
use prost_reflect::DynamicMessage;

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        Router::from_contract(contract(), agentshare_gateway::http::is_public)
            .expect("the contract's routes")
    })
}

fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let Some((method, target)) = line.split_once(' ') else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let Found::Route { route, variables } = router().find(&method, path) else {
        return;
    };
    match json::request_message(route, &variables, query, body) {
        Ok(encoded) => {
            DynamicMessage::decode(route.method.input(), encoded.as_ref())
                .expect("the transcoder builds messages the service decodes");
        }
        Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("a call is refused as {other:?}, not INVALID_ARGUMENT"),
    }
    // The same bytes as an answer of the route's method.
    let _ = json::answer_json(&route.method.output(), body);
});
