//! Access's SQL: agent access facts, grants, run counters and version pins.

pub mod agent_access;
pub mod budgets;
pub mod grants;
pub mod pins;
pub mod retirements;

crate::common::part_storage!(
    /// Access's SQL: agent access facts, grants and version pins.
    AccessStorage
);
