//! `agentshare`: run the whole product on one machine, and mint dev tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use agentshare_kit::bootstrap::fail;
use agentshare_kit::clock::Clock;
use agentshare_kit::config::{BadSetting, Config, ConfigArgs};
use agentshare_kit::identity::SESSION_SECRET_FILE;
use agentshare_kit::server::Shutdown;
use agentshare_kit::session;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agentshare",
    version,
    about = "Share AI agents across an organisation."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => serve(&config),
        Command::Token {
            user,
            email,
            step_up,
            ttl_secs,
            config,
        } => match token(&config, &user, email.as_deref(), step_up, ttl_secs) {
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
    }
}

fn rotate_secrets(args: &ConfigArgs) -> ExitCode {
    let outcome = Config::load(Config::default(), args).and_then(|config| {
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
    let config = match Config::load(Config::default(), args) {
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
        let embedded = match agentshare::start(config, shutdown.clone()).await {
            Ok(embedded) => embedded,
            Err(e) => return fail(&e),
        };
        shutdown.trigger_on_signals();
        let addr = embedded.gateway_addr();
        eprintln!(
            "agentshare is serving on {addr} (data dir {})",
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
        eprintln!(
            "mint a token:  agentshare token --data-dir {} --user alice",
            shell_path(&data_dir)
        );
        eprintln!(
            "then call it:  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {addr} list"
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

fn token(
    args: &ConfigArgs,
    user: &str,
    email: Option<&str>,
    step_up: bool,
    ttl_secs: i64,
) -> Result<String, BadSetting> {
    let config = Config::load(Config::default(), args)?;
    if user.trim().is_empty() {
        return Err(BadSetting::new("user", "must not be empty"));
    }
    let secret_file: PathBuf = if config.auth.hs256_key_file.as_os_str().is_empty() {
        config.keys_dir().join(SESSION_SECRET_FILE)
    } else {
        config.auth.hs256_key_file.clone()
    };
    let secret = std::fs::read(&secret_file).map_err(|e| {
        BadSetting::new(
            "data_dir",
            format!(
                "cannot read {}: {e}; run `agentshare serve` once to create the data dir",
                secret_file.display()
            ),
        )
    })?;
    let mut claims =
        session::dev_claims(user, email, step_up, Clock::system().now_secs(), ttl_secs);
    claims.iss.clone_from(&config.auth.issuer);
    claims.aud.clone_from(&config.auth.audience);
    session::mint_hs256(&secret, &claims).map_err(|e| BadSetting::new("token", e))
}
