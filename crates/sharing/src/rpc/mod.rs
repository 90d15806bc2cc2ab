//! The gRPC face of sharing: decode, check the caller, call the domain and
//! storage, map the result. No SQL and no rules live here.

mod access;
mod access_internal;
mod connections;
mod sharing;
mod tenancy;

pub use access::Access;
pub use access_internal::AccessInternal;
pub use connections::Connections;
pub use sharing::Sharing;
pub use tenancy::Tenancy;
