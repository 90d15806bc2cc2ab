//! What the fuzz targets share: reading a request message the way every
//! service does (prost, through the generated types), the checks every
//! decoded request gets, and the list of request messages each target
//! must cover, held against the contract so a new RPC cannot go unfuzzed.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use agentshare_kit::page::Page;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

/// A request message a target decodes, and what it runs on it after.
pub struct Request {
    /// The full proto name, from `prost::Name`.
    pub name: fn() -> String,
    pub run: fn(&[u8]),
}

/// A request that is only decoded and given the common checks.
#[macro_export]
macro_rules! decoded_only {
    ($($message:ty),+ $(,)?) => {
        [$($crate::Request {
            name: <$message as prost::Name>::full_name,
            run: |bytes| {
                $crate::decode::<$message>(bytes);
            },
        }),+]
    };
}

/// The contract's descriptors, decoded once.
pub fn contract() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(agentshare_proto::FILE_DESCRIPTOR_SET)
            .expect("the contract's descriptor set decodes")
    })
}

/// Runs the request `bytes` select: the first byte picks the message, the
/// rest is its encoding. Checks once that `requests` holds the input of
/// every RPC of the `packages` services.
pub fn run_request(packages: &[&str], requests: &[Request], bytes: &[u8]) {
    static COVERED: OnceLock<()> = OnceLock::new();
    COVERED.get_or_init(|| assert_covers(packages, requests));
    let Some((&pick, encoded)) = bytes.split_first() else {
        return;
    };
    (requests[usize::from(pick) % requests.len()].run)(encoded);
}

fn assert_covers(packages: &[&str], requests: &[Request]) {
    let listed: BTreeSet<String> = requests.iter().map(|r| (r.name)()).collect();
    let missing: BTreeSet<String> = contract()
        .services()
        .filter(|s| packages.contains(&s.package_name()))
        .flat_map(|s| {
            s.methods()
                .map(|m| m.input().full_name().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|input| !listed.contains(input))
        .collect();
    assert!(
        missing.is_empty(),
        "add these request messages to the fuzz target: {missing:?}"
    );
}

/// `bytes` read as `M`, as the services' codec reads a request; `None` for
/// bytes that are not one. A message that decodes must survive what the
/// services and the gateway do with messages: encode again and decode to
/// the same length, decode by reflection and render in proto3 JSON (or
/// be refused), and, for a list call, have its page read.
pub fn decode<M: Message + Default + prost::Name>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let again = M::decode(encoded.as_slice()).expect("what prost encodes decodes again");
    assert_eq!(again.encoded_len(), encoded.len());
    let descriptor = contract()
        .get_message_by_name(&M::full_name())
        .expect("every generated message is in the contract");
    let dynamic = DynamicMessage::decode(descriptor, encoded.as_slice())
        .expect("what prost encodes decodes by reflection");
    // Not every decodable message has a JSON form (a timestamp past year
    // 9999, a field mask path with capitals); rendering must refuse, not
    // panic.
    let _ = serde_json::to_value(&dynamic);
    read_page(&dynamic);
    Some(message)
}

/// A list request's page, read as every list call reads it. Errors are the
/// client's (INVALID_ARGUMENT); only a panic is a finding.
fn read_page(message: &DynamicMessage) {
    let field = |name: &str| message.get_field_by_name(name).map(|v| v.into_owned());
    let (Some(Value::I32(size)), Some(Value::String(token))) =
        (field("page_size"), field("page_token"))
    else {
        return;
    };
    let listing = message.descriptor().full_name().to_string();
    for parts in 1..=2 {
        let _ = Page::keyed(size, &token, listing.clone(), parts);
    }
}
