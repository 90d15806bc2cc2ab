//! The gRPC face of sharing: decode, check the caller, call the domain and
//! storage, map the result. No SQL and no rules live here.

mod access;
mod access_internal;
mod sharing;
mod tenancy;

pub use access::Access;
pub use access_internal::AccessInternal;
pub use sharing::Sharing;
pub use tenancy::Tenancy;

use agentshare_proto::sharing::v1 as pb;

/// Services whose RPCs later issues build; each answers UNIMPLEMENTED naming
/// its issue (see the roadmap in lib.rs).
pub struct Unbuilt;

impl pb::connections_service_server::ConnectionsService for Unbuilt {}
