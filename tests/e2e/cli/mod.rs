//! The `agentshare` command line, run as a built binary against a live
//! `agentshare serve`: every command group, its JSON, its errors and exit
//! codes.

mod agents;
mod demo;
mod runs;
mod serve;
mod sharing;
mod tenancy;
