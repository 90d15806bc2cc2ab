//! Shared machinery of every agentshare service, written once.

pub mod bootstrap;
pub mod clock;
pub mod colocated;
pub mod config;
pub mod cron;
pub mod db;
pub mod error;
pub mod events;
pub mod identity;
pub mod ids;
mod names;
pub mod page;
pub mod rpc;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;

pub use error::{Error, Result};
