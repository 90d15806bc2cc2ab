//! Tenancy (DESIGN.md, "Identity and trust"): orgs, members, workspaces,
//! projects, API keys and the audit trail.

pub mod rpc;
pub mod rules;
pub mod storage;
