//! Access's rules: who may do what with an agent, the scope a request acts
//! in, the plan of a run, the limits and org policy a run must pass, and
//! the owner's store write policy.

pub mod budgets;
pub mod decision;
pub mod grants;
pub mod plan;
pub mod policy;
pub mod retirement;
pub mod scope;
pub mod sharing;
pub mod store_policy;

#[cfg(test)]
mod reference;
