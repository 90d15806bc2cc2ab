//! Workspace items: a key-value store per partition, which sharing picks
//! for each caller and agent, with compare-and-set writes, quotas,
//! publishing from a private store into a shared one, and watches over a
//! partition's changes.

mod access;
mod rpc;
pub mod rules;
mod storage;
mod watch;

pub use access::Access;
pub use rpc::{WatchSettings, WorkspaceStore};
pub use rules::Limits;
pub use storage::{Retention, Storage};
pub use watch::{Caps, Hub};
