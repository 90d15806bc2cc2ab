//! The one end-to-end test binary: real servers on loopback ports, real gRPC
//! through the gateway. Runs on SQLite, and on PostgreSQL when
//! `AGENTSHARE_TEST_POSTGRES_URL` is set.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod access_model;
mod api_keys;
mod auth;
mod automations;
mod cli;
mod connections;
mod contract;
mod crash;
mod default_agent;
mod documented_errors;
mod faults;
mod firing;
mod firing_replicas;
mod grants;
mod http;
mod invoke;
mod isolation;
mod lifecycle;
mod limits;
mod malformed_ids;
mod mcp;
mod members;
mod outbox;
mod projects;
mod registry;
mod replicas;
mod retirement;
#[path = "../security/mod.rs"]
mod security;
mod sessions_usage;
mod sharing;
mod slice;
mod store;
mod store_provenance;
mod telemetry;
mod trust;
mod viewers;
mod workspaces;

use tonic::{Code, Status};

/// Asserts a call failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    needle: &str,
) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(
        status.code(),
        code,
        "unexpected code; message: {}",
        status.message()
    );
    assert!(
        status.message().contains(needle),
        "message {:?} should contain {needle:?}",
        status.message()
    );
    status
}
