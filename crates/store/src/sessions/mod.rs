//! Sessions, their messages and invocation records: written by the run
//! path through StoreInternal, read by their owners through Sessions and
//! Usage.

mod rpc;
mod rules;
mod storage;

pub use rpc::{Internal, Sessions, Usage};
pub use storage::Storage;
