//! Firing (DESIGN.md, "Automations (scheduler)"): exactly one run per due
//! subscription across replicas, its catch-up rules, its leases and history,
//! and the delivery of the notifications it sends.

pub mod delivery;
pub mod due;
pub mod metrics;
pub mod passes;
pub mod storage;
