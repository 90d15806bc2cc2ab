//! `agentshare demo` (being built).

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _target: &Target, _out: Output) -> Outcome {
    Err(Failure::local("not built yet"))
}
