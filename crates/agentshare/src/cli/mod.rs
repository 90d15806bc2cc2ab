//! The `agentshare` command line's client commands: every resource of the
//! public API, called through the gateway as builders, holders and admins
//! use it from a shell, and `demo`, which tells the README's story of a
//! shared agent against a running `serve`.
//!
//! Conventions, the same in every group: a table for people by default,
//! `-o json|yaml` for scripts (the API's own JSON), `--quiet` for ids only;
//! a failed call prints its gRPC code, message and hints and exits 1; a
//! wrong command line exits 2.

pub mod client;
pub mod context;
pub mod failure;
pub mod output;
pub mod progress;

mod agent;
mod apikey;
mod automation;
mod connection;
mod demo;
mod grant;
mod invoke;
mod items;
mod member;
mod org;
mod share;
mod usage;
mod workspace;

use std::process::ExitCode;

use clap::Subcommand;

pub use client::Target;
use failure::Outcome;
pub use output::{Format, Output};

/// Options every client command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct Global {
    #[command(flatten)]
    pub target: Target,
    /// How to print answers: a table for people, or JSON or YAML for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Print only the ids of what the command shows or makes.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Global {
    pub fn out(&self) -> Output {
        Output {
            format: self.output,
            quiet: self.quiet,
        }
    }
}

/// Every client command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who you are, and in which org and workspace your calls land.
    Me,
    /// Named endpoints and credentials, like kubectl's contexts.
    #[command(subcommand)]
    Context(context::Command),
    /// Orgs and their members.
    #[command(subcommand)]
    Org(org::Command),
    /// Workspaces (teams) inside an org, and their members.
    #[command(subcommand)]
    Workspace(workspace::Command),
    /// API keys that call as a user.
    #[command(subcommand)]
    Apikey(apikey::Command),
    /// Agents: designs, deploys, versions and templates.
    #[command(subcommand)]
    Agent(agent::Command),
    /// Share an agent with the workspace (or whole org).
    Share(share::ShareArgs),
    /// Stop sharing an agent; --dry-run shows who loses what first.
    Unshare(share::UnshareArgs),
    /// Who may do what to an agent, and why.
    #[command(subcommand)]
    Access(share::AccessCommand),
    /// The agents you can run, with their setup status.
    MyAgents(share::MyAgentsArgs),
    /// Grants: tokens that let an app or widget run an agent.
    #[command(subcommand)]
    Grant(grant::Command),
    /// Pin the version of an agent you run, or clear the pin.
    Pin(grant::PinArgs),
    /// Your connections (credentials) to providers.
    #[command(subcommand)]
    Connection(connection::Command),
    /// An agent's setup: which connection each integration uses.
    #[command(subcommand)]
    Setup(connection::SetupCommand),
    /// Run an agent and stream its answer.
    Invoke(invoke::Args),
    /// Items in an agent's workspace store.
    #[command(subcommand)]
    Items(items::Command),
    /// Automations: subscriptions, runs and the inbox.
    #[command(subcommand)]
    Automation(automation::Command),
    /// Usage by day or month.
    Usage(usage::Args),
    /// Tell the README's story of a shared agent against a running `agentshare serve`.
    Demo(demo::Args),
    /// Print a shell completion script.
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a client command and prints its failure, if any.
pub fn run<C: clap::CommandFactory>(command: Command, global: &Global) -> ExitCode {
    if let Command::Completion { shell } = command {
        let mut cli = C::command();
        let name = cli.get_name().to_string();
        clap_complete::generate(shell, &mut cli, name, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&failure::Failure::local(format!("cannot start: {e}"))),
    };
    match runtime.block_on(dispatch(command, global)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let code = report(&failure);
            // Which server could not be reached.
            if let failure::Failure::Call(status) = &failure
                && status.code() == tonic::Code::Unavailable
                && let Ok(resolved) = global.target.resolve()
            {
                eprintln!("  endpoint: {}", resolved.endpoint);
            }
            code
        }
    }
}

fn report(failure: &failure::Failure) -> ExitCode {
    for line in failure.lines() {
        eprintln!("{line}");
    }
    failure.exit_code()
}

async fn dispatch(command: Command, global: &Global) -> Outcome {
    let target = &global.target;
    let out = global.out();
    match command {
        Command::Me => org::me(target, out).await,
        Command::Context(command) => context::run(command, target, out),
        Command::Org(command) => org::run(command, target, out).await,
        Command::Workspace(command) => workspace::run(command, target, out).await,
        Command::Apikey(command) => apikey::run(command, target, out).await,
        Command::Agent(command) => agent::run(command, target, out).await,
        Command::Share(args) => share::share(args, target, out).await,
        Command::Unshare(args) => share::unshare(args, target, out).await,
        Command::Access(command) => share::access(command, target, out).await,
        Command::MyAgents(args) => share::my_agents(args, target, out).await,
        Command::Grant(command) => grant::run(command, target, out).await,
        Command::Pin(args) => grant::pin(args, target, out).await,
        Command::Connection(command) => connection::run(command, target, out).await,
        Command::Setup(command) => connection::setup(command, target, out).await,
        Command::Invoke(args) => invoke::run(args, target, out).await,
        Command::Items(command) => items::run(command, target, out).await,
        Command::Automation(command) => automation::run(command, target, out).await,
        Command::Usage(args) => usage::run(args, target, out).await,
        Command::Demo(args) => demo::run(args, target, out).await,
        Command::Completion { .. } => Ok(()),
    }
}

/// Reads text given as `-` (stdin) or a file path.
pub fn read_input(source: &str) -> Outcome<String> {
    use std::io::Read as _;
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| failure::Failure::local(format!("cannot read stdin: {e}")))?;
        return Ok(text);
    }
    // A file named on the command line that cannot be read is the command
    // line's to fix.
    std::fs::read_to_string(source)
        .map_err(|e| failure::Failure::usage(format!("cannot read {source}: {e}")))
}
