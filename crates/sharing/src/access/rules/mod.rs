//! Access's rules: who may do what with an agent, the scope a request acts
//! in, the plan of a run, and the limits and org policy a run must pass.

pub mod budgets;
pub mod decision;
pub mod grants;
pub mod plan;
pub mod policy;
pub mod retirement;
pub mod scope;
pub mod sharing;

#[cfg(test)]
mod reference;
