//! `agentshare grant ...` and `agentshare pin` (being built).

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::output::Output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

#[derive(Debug, clap::Args)]
pub struct PinArgs {}

pub async fn run(command: Command, _target: &Target, _out: Output) -> Outcome {
    match command {}
}

pub async fn pin(_args: PinArgs, _target: &Target, _out: Output) -> Outcome {
    Err(Failure::local("not built yet"))
}
