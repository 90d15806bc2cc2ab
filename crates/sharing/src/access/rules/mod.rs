//! Access's rules: who may do what with an agent, the scope a request acts
//! in, and the plan of a run.

pub mod decision;
pub mod grants;
pub mod plan;
pub mod scope;
pub mod sharing;

#[cfg(test)]
mod reference;
