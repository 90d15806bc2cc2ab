//! Tenancy's SQL, with each change audited in its transaction.

pub mod api_keys;
pub mod audit;
pub mod members;
pub mod orgs;
pub mod projects;
pub mod workspaces;

crate::common::part_storage!(
    /// Tenancy's SQL: users, orgs, members, workspaces, projects, API keys
    /// and the audit trail.
    TenancyStorage
);
