//! Connections (DESIGN.md, "Whose connection each integration uses"): users'
//! connections to outside services, their sealed secrets, OAuth flows, the
//! configured providers, credentials handed to runs, and agent setups.

pub mod credentials;
pub mod oauth;
pub mod providers;
pub mod rpc;
pub mod secrets;
pub mod setup;
pub mod storage;
