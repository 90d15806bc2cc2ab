//! Sessions, their messages and invocation records: written by
//! the run path through StoreInternal, read by their owners through
//! Sessions and Usage.

pub mod domain;
mod internal;
mod sessions;
pub mod storage;
mod usage;
mod wire;

pub use internal::Internal;
pub use sessions::Sessions;
pub use usage::Usage;
