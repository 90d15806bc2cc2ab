//! `agentshare connection ...` and `agentshare setup ...`: your credentials
//! for outside services, and which of them each integration of an agent
//! uses when you run it (ConnectionsService).
//!
//! An API key is read from a file or stdin, never from a flag value, which
//! would land in the shell's history and the process list. An OAuth
//! connection prints the provider's authorize URL and waits, with a
//! spinner on a terminal, until the connection appears among yours: the
//! provider sends the browser to the deployment's callback page, which
//! completes the flow as you.

use std::collections::HashSet;
use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use agentshare_proto::sharing::v1 as pb;
use tonic_types::StatusExt as _;

use super::client::{Api, Target, every_page};
use super::failure::{Failure, Outcome};
use super::grant::parse_duration;
use super::output::{Output, View, label, time, word, word_or_blank};
use super::progress::Spinner;
use super::share::{Colour, setup_dot, yes_no};

/// How often an OAuth wait looks for the new connection.
const OAUTH_POLL: Duration = Duration::from_secs(1);
/// How long an OAuth wait lasts without --timeout.
const OAUTH_TIMEOUT: &str = "5m";

/// `agentshare connection ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Connect a provider: an API key from a file or stdin, or OAuth.
    Create(CreateArgs),
    /// Your connections, newest first; never their secrets.
    List {
        /// Only connections of this provider.
        #[arg(long)]
        provider: Option<String>,
    },
    /// One of your connections.
    Show {
        /// The connection's id.
        connection_id: String,
    },
    /// Check a connection against its provider; exits 1 if it is refused.
    Test {
        /// The connection's id.
        connection_id: String,
    },
    /// Delete a connection and its secret; agents bound to it need setup.
    Delete {
        /// The connection's id.
        connection_id: String,
    },
}

/// `agentshare connection create ...`
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("credential")
        .required(true)
        .args(["api_key_file", "api_key_stdin", "oauth"])
))]
pub struct CreateArgs {
    /// The provider, as the server's config names it (`search`, `crm`, …).
    #[arg(long)]
    provider: String,
    /// A label to tell your connections apart (default: the provider).
    #[arg(long)]
    label: Option<String>,
    /// Read the API key from this file.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// Read the API key from stdin (pasted on a terminal, or piped).
    #[arg(long)]
    api_key_stdin: bool,
    /// Connect with OAuth: print the URL to open, then wait until the
    /// provider sends you back.
    #[arg(long)]
    oauth: bool,
    /// When the API key stops working, as RFC 3339, if the provider says.
    #[arg(long, value_name = "TIME", conflicts_with = "oauth")]
    expires_at: Option<String>,
    /// How long to wait for OAuth to complete: 90s, 5m, 1h (default 5m).
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// Print the OAuth URL and state and return at once, without waiting.
    #[arg(long)]
    no_wait: bool,
}

/// `agentshare setup ...`
#[derive(Debug, clap::Subcommand)]
pub enum SetupCommand {
    /// Your setup of an agent: each integration, its scope, the connection
    /// it uses, and whether you are ready to run it.
    Show {
        /// The agent: its id, or its exact name.
        #[arg(value_name = "AGENT")]
        agent_id: String,
    },
    /// Bind one of the agent's integrations to one of your connections.
    Bind {
        /// The agent: its id, or its exact name.
        #[arg(value_name = "AGENT")]
        agent_id: String,
        /// The integration's key in the agent's design, such as `crm`.
        integration: String,
        /// One of your connections, of the integration's provider.
        connection_id: String,
    },
    /// Remove your binding of one integration.
    Unbind {
        /// The agent: its id, or its exact name.
        #[arg(value_name = "AGENT")]
        agent_id: String,
        /// The integration's key in the agent's design.
        integration: String,
    },
    /// "Use the agent": check your setup and record it as complete when
    /// it is ready.
    Complete {
        /// The agent: its id, or its exact name.
        #[arg(value_name = "AGENT")]
        agent_id: String,
    },
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut connections = api.connections();
    match command {
        Command::Create(args) if args.oauth => oauth(&api, args, out).await,
        Command::Create(args) => {
            // clap counts a flag's default as present, so `requires` cannot
            // say this.
            if args.timeout.is_some() || args.no_wait {
                return Err(Failure::usage(
                    "--timeout and --no-wait are for --oauth, which waits for the provider",
                ));
            }
            let api_key = api_key(&args)?;
            let expire_time = args
                .expires_at
                .as_deref()
                .map(|at| {
                    prost_types::Timestamp::from_str(at).map_err(|e| {
                        Failure::usage(format!(
                            "--expires-at {at:?} is not an RFC 3339 time such as \
                             2027-01-31T00:00:00Z: {e}"
                        ))
                    })
                })
                .transpose()?;
            let call = connections.create_api_key_connection(pb::CreateApiKeyConnectionRequest {
                label: args.label.unwrap_or_else(|| args.provider.clone()),
                provider: args.provider,
                api_key,
                expire_time,
            });
            out.answer(call.await?, |created| {
                connection_record(created.connection.as_ref())
            })
        }
        Command::List { provider } => {
            let listed = all_connections(&api, provider.unwrap_or_default()).await?;
            out.show(&listed, connections_table(&listed.connections))
        }
        Command::Show { connection_id } => {
            let call = connections.get_connection(pb::GetConnectionRequest { connection_id });
            out.answer(call.await?, |shown| {
                connection_record(shown.connection.as_ref())
            })
        }
        Command::Test { connection_id } => {
            let call = connections.test_connection(pb::TestConnectionRequest {
                connection_id: connection_id.clone(),
            });
            let tested = call.await?.into_inner();
            let connection = tested.connection.clone().unwrap_or_default();
            let view = View::record(
                connection.id.clone(),
                vec![
                    ("connection", connection.id.clone()),
                    ("provider", connection.provider.clone()),
                    ("ok", yes_no(tested.ok)),
                    ("found", tested.message.clone()),
                    ("status", status(connection.status)),
                    ("tested", time(connection.last_test_time.as_ref())),
                ],
            );
            out.show(&tested, view)?;
            if tested.ok {
                return Ok(());
            }
            Err(Failure::local(format!(
                "the provider refused connection {connection_id}: {}",
                tested.message
            )))
        }
        Command::Delete { connection_id } => {
            let call = connections.delete_connection(pb::DeleteConnectionRequest {
                connection_id: connection_id.clone(),
            });
            let deleted = call.await?.into_inner();
            let view = View::record(
                connection_id.clone(),
                vec![
                    ("deleted", connection_id),
                    (
                        "bindings removed",
                        deleted.removed_binding_count.to_string(),
                    ),
                ],
            );
            out.show(&deleted, view)?;
            if deleted.removed_binding_count > 0 {
                out.say("The agents that used it need setup again (`agentshare my-agents`).")?;
            }
            Ok(())
        }
    }
}

/// The API key, from the file or stdin the flags name; never a flag value.
fn api_key(args: &CreateArgs) -> Outcome<String> {
    let (key, source) = if let Some(file) = &args.api_key_file {
        let key = std::fs::read_to_string(file).map_err(|e| {
            Failure::local(format!(
                "cannot read the API key file {}: {e}",
                file.display()
            ))
        })?;
        (key, format!("the file {}", file.display()))
    } else {
        (read_key_from_stdin(&args.provider)?, "stdin".to_string())
    };
    // A key file or a paste ends with a newline that is no part of the key.
    let key = key.trim();
    if key.is_empty() {
        return Err(Failure::usage(format!(
            "the API key from {source} is empty"
        )));
    }
    Ok(key.to_string())
}

fn read_key_from_stdin(provider: &str) -> Outcome<String> {
    let stdin = std::io::stdin();
    let mut key = String::new();
    let read = if stdin.is_terminal() {
        eprint!("Paste the {provider} API key and press Enter: ");
        stdin.lock().read_line(&mut key)
    } else {
        stdin.lock().read_to_string(&mut key)
    };
    read.map_err(|e| Failure::local(format!("cannot read the API key from stdin: {e}")))?;
    Ok(key)
}

/// Every connection of a provider (every one, for an empty provider).
async fn all_connections(api: &Api, provider: String) -> Outcome<pb::ListConnectionsResponse> {
    let request = pb::ListConnectionsRequest {
        provider,
        ..Default::default()
    };
    let mut connections = api.connections();
    every_page(request, async |r| connections.list_connections(r).await).await
}

/// Starts an OAuth flow, prints where to go, and waits for the new
/// connection. The API has no call that reports a pending flow, so the wait
/// watches the caller's connections of the provider for one that was not
/// there before, with the label asked for.
async fn oauth(api: &Api, args: CreateArgs, out: Output) -> Outcome {
    let timeout_text = args.timeout.as_deref().unwrap_or(OAUTH_TIMEOUT);
    let timeout = parse_duration(timeout_text)
        .map_err(|why| Failure::usage(format!("--timeout {timeout_text:?}: {why}")))?;
    let provider = args.provider;
    let label = args.label.unwrap_or_else(|| provider.clone());
    let before: HashSet<String> = all_connections(api, provider.clone())
        .await?
        .connections
        .into_iter()
        .map(|c| c.id)
        .collect();
    let started = api
        .connections()
        .start_o_auth_connection(pb::StartOAuthConnectionRequest {
            provider: provider.clone(),
            label: label.clone(),
        })
        .await
        .map_err(|status| {
            // The server names its own call; say which flags do it here.
            if status.code() != tonic::Code::InvalidArgument
                || !status.message().contains("takes an API key")
            {
                return Failure::from(status);
            }
            let mut details = status.get_error_details();
            details.set_localized_message(
                "en-US",
                format!(
                    "{provider} takes an API key: connect it with --api-key-stdin or \
                     --api-key-file instead of --oauth"
                ),
            );
            Failure::from(tonic::Status::with_error_details(
                status.code(),
                status.message(),
                details,
            ))
        })?
        .into_inner();
    if args.no_wait {
        let view = View::record(
            started.state.clone(),
            vec![
                ("authorize url", started.authorize_url.clone()),
                ("state", started.state.clone()),
                ("expires", time(started.expire_time.as_ref())),
            ],
        );
        return out.show(&started, view);
    }
    let invitation = format!(
        "Open this URL in your browser to connect {provider} (the flow expires at {}):\n  {}",
        time(started.expire_time.as_ref()),
        started.authorize_url
    );
    // Scripts read one document from stdout: the URL goes to stderr then.
    if out.for_people() {
        out.line(&invitation)?;
    } else {
        eprintln!("{invitation}");
    }
    let spinner = Spinner::start(format!("waiting for {provider} to send you back"));
    let waited = tokio::time::timeout(timeout, async {
        let mut ticks = tokio::time::interval(OAUTH_POLL);
        loop {
            ticks.tick().await;
            let listed = api
                .connections()
                .list_connections(pb::ListConnectionsRequest {
                    provider: provider.clone(),
                    page_size: 50,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            if let Some(connection) = listed
                .connections
                .into_iter()
                .find(|c| !before.contains(&c.id) && c.label == label)
            {
                return Ok::<_, Failure>(connection);
            }
        }
    })
    .await;
    drop(spinner);
    let connection = waited.map_err(|_| {
        Failure::local(format!(
            "no {provider} connection was completed within {timeout_text}; open the URL \
             and finish signing in, or run the command again (pass --timeout to wait longer)"
        ))
    })??;
    let shown = pb::GetConnectionResponse {
        connection: Some(connection),
    };
    let view = connection_record(shown.connection.as_ref());
    out.show(&shown, view)
}

fn connections_table(connections: &[pb::Connection]) -> View {
    View::table(connections)
        .id("ID", |connection| connection.id.clone())
        .column("PROVIDER", |connection| connection.provider.clone())
        .column("KIND", |connection| connection_kind(connection.kind))
        .column("LABEL", |connection| connection.label.clone())
        .column("STATUS", |connection| status(connection.status))
        .column("CREATED", |connection| {
            time(connection.create_time.as_ref())
        })
        .column("LAST USED", |connection| {
            time(connection.last_use_time.as_ref())
        })
        .into()
}

fn connection_record(connection: Option<&pb::Connection>) -> View {
    let connection = connection.cloned().unwrap_or_default();
    let mut fields = vec![
        ("connection", connection.id.clone()),
        ("provider", connection.provider.clone()),
        ("kind", connection_kind(connection.kind)),
        ("label", connection.label.clone()),
        ("status", status(connection.status)),
    ];
    if !connection.status_message.is_empty() {
        fields.push(("why", connection.status_message.clone()));
    }
    fields.extend([
        ("created", time(connection.create_time.as_ref())),
        ("last used", time(connection.last_use_time.as_ref())),
        ("last tested", time(connection.last_test_time.as_ref())),
        ("expires", time(connection.expire_time.as_ref())),
    ]);
    if !connection.scopes.is_empty() {
        fields.push(("scopes", connection.scopes.join(" ")));
    }
    View::record(connection.id, fields)
}

fn scope(value: i32) -> String {
    word_or_blank(
        value,
        pb::IntegrationScope::as_str_name,
        "INTEGRATION_SCOPE_",
    )
}

fn connection_kind(value: i32) -> String {
    word(value, pb::ConnectionKind::as_str_name, "CONNECTION_KIND_")
}

fn status(value: i32) -> String {
    match pb::ConnectionStatus::try_from(value) {
        Ok(pb::ConnectionStatus::Unspecified) => String::new(),
        Ok(s) => label(s.as_str_name(), "CONNECTION_STATUS_"),
        Err(_) => value.to_string(),
    }
}

impl SetupCommand {
    /// The agent every setup command is about.
    fn agent(&mut self) -> &mut String {
        match self {
            Self::Show { agent_id }
            | Self::Bind { agent_id, .. }
            | Self::Unbind { agent_id, .. }
            | Self::Complete { agent_id } => agent_id,
        }
    }
}

pub async fn setup(mut command: SetupCommand, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let agent_id = api.agent_id(command.agent()).await?;
    *command.agent() = agent_id;
    let mut connections = api.connections();
    match command {
        SetupCommand::Show { agent_id } => {
            let call = connections.get_agent_setup(pb::GetAgentSetupRequest { agent_id });
            show_setup(out, call.await?, |answer| answer.setup.as_ref())
        }
        SetupCommand::Bind {
            agent_id,
            integration,
            connection_id,
        } => {
            let call = connections.bind_integration(pb::BindIntegrationRequest {
                agent_id,
                integration_key: integration,
                connection_id,
            });
            show_setup(out, call.await?, |answer| answer.setup.as_ref())
        }
        SetupCommand::Unbind {
            agent_id,
            integration,
        } => {
            let call = connections.unbind_integration(pb::UnbindIntegrationRequest {
                agent_id,
                integration_key: integration,
            });
            show_setup(out, call.await?, |answer| answer.setup.as_ref())
        }
        SetupCommand::Complete { agent_id } => {
            let call = connections.complete_agent_setup(pb::CompleteAgentSetupRequest { agent_id });
            show_setup(out, call.await?, |answer| answer.setup.as_ref())
        }
    }
}

/// A setup for people: the status dot, a row per integration, and what to
/// do about each gap.
fn show_setup<M>(
    out: Output,
    response: tonic::Response<M>,
    setup: impl FnOnce(&M) -> Option<&pb::AgentSetup>,
) -> Outcome
where
    M: prost::Message + prost::Name,
{
    let answer = response.into_inner();
    let setup = setup(&answer).cloned().unwrap_or_default();
    out.say(&format!(
        "Agent {}, version {}: {}",
        setup.agent_id,
        setup.version,
        setup_dot(setup.status, Colour::for_stdout())
    ))?;
    let view = View::table(&setup.integrations)
        .id("INTEGRATION", |i| i.integration_key.clone())
        .column("PROVIDER", |i| i.provider.clone())
        .column("SCOPE", |i| scope(i.scope))
        .column("YOU BIND", |i| yes_no(i.binding_required))
        .column("CONNECTION", bound_connection)
        .column("STATUS", |i| match pb::SetupGapReason::try_from(i.gap) {
            Ok(pb::SetupGapReason::Unspecified) => "ok".into(),
            Ok(gap) => label(gap.as_str_name(), "SETUP_GAP_REASON_"),
            Err(_) => i.gap.to_string(),
        });
    out.show(&answer, view)?;
    for gap in &setup.missing {
        out.say(&gap_advice(&setup.agent_id, gap))?;
    }
    Ok(())
}

/// The connection an integration runs with, as the setup table words it.
fn bound_connection(integration: &pb::IntegrationSetup) -> String {
    if integration.bound_connection_id.is_empty() {
        match (integration.binding_required, integration.scope()) {
            (true, _) => "(none)".into(),
            (false, pb::IntegrationScope::Shared) => "the builder's".into(),
            (false, _) => "(not needed)".into(),
        }
    } else {
        format!(
            "{} ({})",
            integration.bound_connection_label, integration.bound_connection_id
        )
    }
}

/// What to do about one integration that blocks a run.
fn gap_advice(agent_id: &str, gap: &pb::SetupGap) -> String {
    let key = &gap.integration_key;
    let provider = &gap.provider;
    match pb::SetupGapReason::try_from(gap.reason) {
        Ok(pb::SetupGapReason::ConnectionExpired | pb::SetupGapReason::ConnectionFailed) => {
            format!(
                "To fix {key}: its {provider} connection no longer works; connect {provider} \
                 again and `agentshare setup bind {agent_id} {key} CONNECTION`."
            )
        }
        Ok(pb::SetupGapReason::BuilderConnectionUnavailable) => format!(
            "To fix {key}: the builder's {provider} connection is unavailable; only the \
             agent's owner can fix it."
        ),
        _ => format!(
            "To fix {key}: `agentshare connection create --provider {provider} \
             --api-key-stdin` (or --oauth), then `agentshare setup bind {agent_id} {key} \
             CONNECTION`."
        ),
    }
}
