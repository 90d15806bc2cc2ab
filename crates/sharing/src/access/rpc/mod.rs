//! The gRPC face of access: decode, check the caller, call the rules and
//! storage, map the result. No SQL and no rules live here.

mod access;
mod access_internal;
mod sharing;

pub use access::Access;
pub use access_internal::AccessInternal;
pub use sharing::Sharing;
