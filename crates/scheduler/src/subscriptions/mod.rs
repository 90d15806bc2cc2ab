//! Users' automations (DESIGN.md, "Automations (scheduler)"): what a user
//! may subscribe to, their settings, pauses and workspace caps, the inbox and
//! the notification outbox, in the three layers.

pub mod rpc;
pub mod rules;
pub mod service;
pub mod storage;
