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

pub mod errors {
    pub mod v1 {
        tonic::include_proto!("agentshare.errors.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("agentshare.events.v1");
    }
}

pub mod sharing {
    pub mod v1 {
        tonic::include_proto!("agentshare.sharing.v1");
    }
}

pub mod registry {
    pub mod v1 {
        tonic::include_proto!("agentshare.registry.v1");
    }
}

pub mod store {
    pub mod v1 {
        tonic::include_proto!("agentshare.store.v1");
    }
}

pub mod scheduler {
    pub mod v1 {
        tonic::include_proto!("agentshare.scheduler.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("agentshare.gateway.v1");
    }
}

pub mod runtime {
    pub mod v1 {
        tonic::include_proto!("agentshare.runtime.v1");
    }
}
