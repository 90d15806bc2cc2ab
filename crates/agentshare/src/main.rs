//! `agentshare`: run the whole product on one machine, mint dev tokens, and
//! call every service from a shell.

use std::process::ExitCode;

use agentshare::cli;
use agentshare_kit::bootstrap::fail;
use agentshare_kit::config::{BadSetting, Config, ConfigArgs};
use agentshare_kit::server::Shutdown;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agentshare",
    version,
    about = "Share AI agents across an organisation.",
    after_help = "Start with `agentshare serve` in one shell and `agentshare demo` in another."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process on embedded SQLite.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print a dev session token for the data dir's embedded mode.
    Token {
        /// The user (IdP subject) the token is for.
        #[arg(long)]
        user: String,
        /// The user's email.
        #[arg(long)]
        email: Option<String>,
        /// Mark the token as just stepped up with a second factor.
        #[arg(long)]
        step_up: bool,
        /// How long the token is valid, in seconds.
        #[arg(long, default_value_t = 12 * 3600)]
        ttl_secs: i64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Re-seal every connection secret under `connections.active_secret_key`,
    /// after which older keys can be removed from config.
    RotateSecrets {
        #[command(flatten)]
        config: ConfigArgs,
    },
    #[command(flatten)]
    Client(cli::Command),
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    match parsed.command {
        Command::Serve { config } => serve(&config),
        Command::Token {
            user,
            email,
            step_up,
            ttl_secs,
            config,
        } => match cli::client::mint(&config, &user, email.as_deref(), step_up, ttl_secs) {
            Ok(token) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{token}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::RotateSecrets { config } => rotate_secrets(&config),
        Command::Client(command) => cli::run::<Cli>(command, &parsed.global),
    }
}

fn rotate_secrets(args: &ConfigArgs) -> ExitCode {
    let outcome = Config::load(args).and_then(|config| {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| BadSetting::new("runtime", e))?;
        runtime.block_on(agentshare_sharing::rotate_secrets(&config))
    });
    match outcome {
        Ok(count) => {
            eprintln!("re-sealed {count} secrets under the active key");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn serve(args: &ConfigArgs) -> ExitCode {
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&BadSetting::new("runtime", e)),
    };
    runtime.block_on(async move {
        let _telemetry = match agentshare_kit::telemetry::init("agentshare", config.log.format) {
            Ok(telemetry) => telemetry,
            Err(e) => return fail(&e),
        };
        let shutdown = Shutdown::default();
        let data_dir = config.data_dir.clone();
        let demo_providers = config.connections.providers.is_empty();
        let on_postgres = !config.database_url.is_empty();
        let embedded = match agentshare::start(config, shutdown.clone()).await {
            Ok(embedded) => embedded,
            Err(e) => return fail(&e),
        };
        shutdown.trigger_on_signals();
        let addr = embedded.gateway_addr();
        let databases = if on_postgres {
            "; a database per service on the PostgreSQL server of database_url"
        } else {
            ""
        };
        eprintln!(
            "agentshare is serving on {addr} (data dir {}{databases})",
            data_dir.display()
        );
        if demo_providers {
            let keys: Vec<String> = agentshare_kit::config::demo_providers()
                .into_keys()
                .collect();
            eprintln!(
                "no connection providers configured; serving the demo API-key providers: {}",
                keys.join(", ")
            );
        }
        // The CLI finds the default data dir and port on its own; anything
        // else it is told, so the hint works when pasted as printed.
        let mut env = String::new();
        if data_dir != Config::default().data_dir {
            env.push_str(&format!("AGENTSHARE_DATA_DIR={} ", shell_path(&data_dir)));
        }
        if addr.to_string() != Config::default().listen {
            env.push_str(&format!("AGENTSHARE_ENDPOINT=http://{addr} "));
        }
        // As this binary was invoked (`target/debug/agentshare` under `cargo
        // run`), so the hints run when pasted even if it is not on PATH.
        let me = std::env::args()
            .next()
            .filter(|program| program.contains('/'))
            .map_or_else(
                || "agentshare".to_string(),
                |program| shell_path(program.as_ref()),
            );
        eprintln!("watch the story:  {env}{me} demo");
        eprintln!("call it yourself: {env}{me} --as alice org create Acme");
        eprintln!(
            "or mint a token:  {me} token --data-dir {} --user alice",
            shell_path(&data_dir)
        );
        match embedded.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}

fn shell_path(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') {
        format!("'{text}'")
    } else {
        text
    }
}
