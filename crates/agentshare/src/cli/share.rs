//! `agentshare share|unshare|access|my-agents` (being built).

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct ShareArgs {}

#[derive(Debug, clap::Args)]
pub struct UnshareArgs {}

#[derive(Debug, clap::Args)]
pub struct MyAgentsArgs {}

#[derive(Debug, clap::Subcommand)]
pub enum AccessCommand {}

pub async fn share(_args: ShareArgs, _target: &Target, _out: Output) -> Outcome {
    Err(Failure::local("not built yet"))
}

pub async fn unshare(_args: UnshareArgs, _target: &Target, _out: Output) -> Outcome {
    Err(Failure::local("not built yet"))
}

pub async fn my_agents(_args: MyAgentsArgs, _target: &Target, _out: Output) -> Outcome {
    Err(Failure::local("not built yet"))
}

pub async fn access(command: AccessCommand, _target: &Target, _out: Output) -> Outcome {
    match command {}
}
