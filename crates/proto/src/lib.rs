//! Generated code for the agentshare contract (`proto/` at the workspace
//! root), and the encoded descriptor set for reflection.

/// Every file of the contract, encoded, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agentshare_descriptor.bin"));

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
