//! Access (DESIGN.md, "Access model (sharing)"): the agent access facts
//! synced from registry, Check and Explain, grants, version pins, the scope
//! of a request and the plan of a run.

pub mod rpc;
pub mod rules;
pub mod storage;
