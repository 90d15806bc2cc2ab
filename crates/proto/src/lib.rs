//! Generated code for the agentshare contract (`proto/` at the workspace
//! root), and the encoded descriptor set for reflection.

// Generated code follows its generator's style, and its doc comments are
// the proto comments, written for every language rather than for rustdoc.
#![allow(clippy::all, clippy::pedantic, clippy::nursery)]

/// Every file of the contract, encoded, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agentshare_descriptor.bin"));

pub mod access_facts;
pub mod codec;

/// Each package of the contract, `agentshare.<name>.v1`, as `<name>::v1`.
macro_rules! packages {
    ($($name:ident),+) => {$(
        pub mod $name {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/agentshare.", stringify!($name), ".v1.rs"));
            }
        }
    )+};
}

packages!(
    errors, events, sharing, registry, store, scheduler, gateway, runtime
);
