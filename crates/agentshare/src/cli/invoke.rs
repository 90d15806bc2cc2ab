//! `agentshare invoke AGENT [INPUT]`: runs an agent once and streams its
//! answer (InvokeService.InvokeStream).
//!
//! The answer goes to stdout as it arrives, and nothing else does, so it
//! pipes and redirects like any text. For people, tool calls and a footer
//! go to stderr: the session to continue, the version that ran, who is
//! billed and whose connection each integration used, the last read from
//! the run's usage record (the stream itself names only the billed party).

use std::io::{IsTerminal as _, Write as _};

use agentshare_proto::gateway::v1 as pb;
use agentshare_proto::store::v1 as store;
use pb::invoke_stream_response::Event;

use super::client::{Api, Target};
use super::failure::{Failure, Outcome};
use super::output::{Format, Output, to_json};
use super::progress::Spinner;
use super::usage::{connection_owner, duration};

/// `agentshare invoke`
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: the answer streams to stdout; tool calls and a footer (session, \
version, who is billed, whose connection each integration used) go to \
stderr. With -o json every stream event (started, textDelta, toolCall, \
completed) is printed as one JSON object per line (NDJSON, the proto3 JSON \
mapping of InvokeStreamResponse), as it arrives; -o yaml prints each event \
as a YAML document; --quiet prints only the session id. A run that fails \
exits 1 with its gRPC code, after the part of the answer already printed.")]
pub struct Args {
    /// The agent to run: its id, or its exact name.
    agent: String,
    /// What to ask the agent; read from stdin when absent or `-` (trailing
    /// line breaks are dropped).
    input: Option<String>,
    /// Continue this session instead of starting a new one.
    #[arg(long, value_name = "SESSION_ID")]
    session: Option<String>,
    /// Start the new session in this project.
    #[arg(long, value_name = "PROJECT_ID")]
    project: Option<String>,
    /// Run the agent's current draft rather than its deployed version; only
    /// those who edit the agent may.
    #[arg(long)]
    draft: bool,
}

pub async fn run(args: Args, target: &Target, out: Output) -> Outcome {
    let input = input(args.input.as_deref())?;
    let api = target.api()?;
    let agent_id = api.agent_id(&args.agent).await?;
    let request = pb::InvokeStreamRequest {
        agent_id: agent_id.clone(),
        input,
        session_id: args.session,
        project_id: args.project,
        draft: args.draft,
        session_secret: None,
    };
    let waiting = Spinner::start(format!("running {}", args.agent));
    let mut stream = api.invoke().invoke_stream(request).await?.into_inner();
    let mut waiting = Some(waiting);
    let mut run = Run::new(out);
    loop {
        let next = stream.message().await;
        // The first event, or the end, stops the spinner before anything
        // is printed.
        waiting.take();
        match next {
            Ok(Some(event)) => run.event(event)?,
            Ok(None) => break,
            Err(status) => {
                run.end_line()?;
                return Err(status.into());
            }
        }
    }
    run.finish(&api, &agent_id).await
}

/// The input from the argument, or stdin when it is absent or `-`.
fn input(argument: Option<&str>) -> Outcome<String> {
    let text = match argument {
        Some(text) if text != "-" => text.to_string(),
        _ => {
            if std::io::stdin().is_terminal() {
                eprintln!("type the input, then Ctrl-D");
            }
            super::read_input("-")?
        }
    };
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(Failure::usage(
            "no input: give it as an argument, or on stdin",
        ));
    }
    Ok(text)
}

/// What one run printed and learned so far.
struct Run {
    out: Output,
    events: Events,
    /// Whether the answer printed so far ends mid-line.
    mid_line: bool,
    started: Option<pb::InvokeStarted>,
    completed: Option<pb::InvokeCompleted>,
}

impl Run {
    fn new(out: Output) -> Self {
        Self {
            out,
            events: Events::new(out.format),
            mid_line: false,
            started: None,
            completed: None,
        }
    }

    fn event(&mut self, event: pb::InvokeStreamResponse) -> Outcome {
        if !self.out.quiet && self.out.format != Format::Table {
            self.events.print(&event)?;
        }
        match event.event {
            Some(Event::Started(started)) => self.started = Some(started),
            Some(Event::TextDelta(delta)) if self.out.for_people() && !delta.text.is_empty() => {
                self.out.write(&delta.text)?;
                self.mid_line = !delta.text.ends_with('\n');
            }
            Some(Event::ToolCall(call)) if self.out.for_people() => tool_call(&call),
            Some(Event::Completed(completed)) => self.completed = Some(completed),
            Some(Event::TextDelta(_) | Event::ToolCall(_)) | None => {}
        }
        Ok(())
    }

    /// Ends a partial answer's line, so what follows starts on its own.
    fn end_line(&mut self) -> Outcome {
        if self.mid_line {
            self.mid_line = false;
            self.out.write("\n")?;
        }
        Ok(())
    }

    async fn finish(mut self, api: &Api, agent: &str) -> Outcome {
        self.end_line()?;
        let Some(completed) = self.completed else {
            return Err(Failure::local(
                "the run's stream ended without its completed event",
            ));
        };
        if self.out.quiet {
            return self.out.line(&completed.session_id);
        }
        if !self.out.for_people() {
            return Ok(());
        }
        let mut footer = vec![("session", completed.session_id.clone())];
        footer.push((
            "version",
            if completed.draft {
                "draft".to_string()
            } else {
                completed.version_number.to_string()
            },
        ));
        footer.push(("billed to", billed_to(completed.billed_to())));
        footer.extend(integrations(api, agent, &completed.invocation_id).await);
        if completed.finish_reason() == pb::FinishReason::Truncated {
            footer.push(("finished", "cut short by a model limit".to_string()));
        }
        if let Some(usage) = &completed.usage {
            footer.push((
                "used",
                format!(
                    "{} tokens in, {} out, {}",
                    usage.input_tokens,
                    usage.output_tokens,
                    duration(usage.duration.as_ref())
                ),
            ));
        }
        footer.push((
            "continue",
            format!(
                "agentshare invoke {agent} --session {}",
                completed.session_id
            ),
        ));
        let width = footer.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut text = String::from("\n");
        for (name, value) in footer {
            text.push_str(&format!("{name:width$}  {value}\n"));
        }
        eprint!("{text}");
        Ok(())
    }
}

fn tool_call(call: &pb::ToolCallEvent) {
    if call.phase() != pb::ToolCallPhase::Finished {
        return;
    }
    let line = if call.succeeded {
        format!("[{}] {}", call.tool_name, call.result_summary)
    } else {
        format!("[{}] failed: {}", call.tool_name, call.error_message)
    };
    eprintln!("{line}");
}

fn billed_to(party: pb::BilledParty) -> String {
    match party {
        pb::BilledParty::Caller => "you".into(),
        pb::BilledParty::AgentOwner => "the agent's owner".into(),
        pb::BilledParty::Unspecified => "unknown".into(),
    }
}

/// Whose connection each integration used, from the run's usage record,
/// which the caller reads as the billed account. Said as a line of the
/// footer when the record cannot be read, rather than left out.
async fn integrations(api: &Api, agent: &str, invocation: &str) -> Vec<(&'static str, String)> {
    let listed = api
        .usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::BilledToCaller.into(),
            agent_id: agent.to_string(),
            page_size: 20,
            ..Default::default()
        })
        .await;
    let record = match listed {
        Ok(listed) => listed
            .into_inner()
            .invocations
            .into_iter()
            .find(|record| record.id == invocation),
        Err(status) => {
            return vec![(
                "integrations",
                format!(
                    "cannot read the run's record: {}: {}",
                    agentshare_kit::error::code_name(status.code()),
                    status.message()
                ),
            )];
        }
    };
    let Some(record) = record else {
        return vec![("integrations", "the run's record is not listed".into())];
    };
    if record.integrations.is_empty() {
        return vec![("integrations", "none".into())];
    }
    let mut used = record.integrations;
    used.sort_by(|a, b| a.integration_key.cmp(&b.integration_key));
    used.iter()
        .map(|used| {
            (
                "integration",
                format!(
                    "{} ({}): {}",
                    used.integration_key,
                    used.provider,
                    connection_owner(used.connection_owner())
                ),
            )
        })
        .collect()
}

/// Stream messages for scripts: one compact JSON object per line (NDJSON),
/// or one YAML document each, flushed as each arrives.
pub(super) struct Events {
    format: Format,
}

impl Events {
    pub(super) fn new(format: Format) -> Self {
        Self { format }
    }

    pub(super) fn print<M>(&self, message: &M) -> Outcome
    where
        M: prost::Message + prost::Name,
    {
        let json = to_json(message)?;
        let text = match self.format {
            Format::Yaml => {
                let yaml = serde_yaml_ng::to_string(&json)
                    .map_err(|e| Failure::local(format!("cannot print YAML: {e}")))?;
                format!("---\n{yaml}")
            }
            Format::Json | Format::Table => {
                let line = serde_json::to_string(&json)
                    .map_err(|e| Failure::local(format!("cannot print JSON: {e}")))?;
                format!("{line}\n")
            }
        };
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::local(format!("cannot write to stdout: {e}")))
    }
}
