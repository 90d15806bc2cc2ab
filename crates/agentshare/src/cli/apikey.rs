//! `agentshare apikey ...` (being built).

use super::client::Target;
use super::failure::Outcome;
use super::output::Output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub async fn run(command: Command, _target: &Target, _out: Output) -> Outcome {
    match command {}
}
