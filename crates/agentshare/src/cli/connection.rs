//! `agentshare connection ...` and `agentshare setup ...` (being built).

use super::client::Target;
use super::failure::Outcome;
use super::output::Output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

#[derive(Debug, clap::Subcommand)]
pub enum SetupCommand {}

pub async fn run(command: Command, _target: &Target, _out: Output) -> Outcome {
    match command {}
}

pub async fn setup(command: SetupCommand, _target: &Target, _out: Output) -> Outcome {
    match command {}
}
