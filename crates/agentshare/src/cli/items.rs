//! `agentshare items ...`: the items of an agent's workspace store, as the
//! caller reaches it (WorkspaceStoreService).
//!
//! A store is never named directly: each command names an agent, and the
//! server resolves the partition from it and the caller, as it does for the
//! agent's own workspace tools. Your private agents share your own store
//! (`user-<you>`); a shared agent's store is that of your active workspace
//! (`--workspace` picks another). `publish` copies a private item one way
//! into a shared agent's store.

use std::io::IsTerminal as _;

use agentshare_proto::store::v1 as pb;
use pb::watch_response::Event;

use super::client::Target;
use super::failure::Outcome;
use super::invoke::Events;
use super::output::{Format, Output, View, time, word};
use super::progress::Spinner;

/// `agentshare items ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The items by key, with a preview of each value, the partition and
    /// its quota use.
    List {
        /// The agent whose store to list: its id, or its exact name.
        agent: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many items (the server caps it at 1000).
        #[arg(long, default_value_t = 100)]
        limit: i32,
        /// Continue a listing from the token a previous page printed.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// One item with its whole value.
    Read {
        /// The agent whose store to read: its id, or its exact name.
        agent: String,
        /// The item's key.
        key: String,
        /// Print only the value, as stored, for pipes.
        #[arg(long)]
        raw: bool,
    },
    /// Create or replace an item; the value is read as is (a trailing line
    /// break included) from stdin or --file.
    Write {
        /// The agent whose store to write: its id, or its exact name.
        agent: String,
        /// The item's key.
        key: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "PATH")]
        file: Option<String>,
        /// How the value reads; JSON values must parse.
        #[arg(long = "type", value_enum, default_value_t = ContentType::Text)]
        content_type: ContentType,
        /// Write only if the item still has this revision (compare-and-set).
        #[arg(long, value_name = "REVISION", conflicts_with = "create_only")]
        if_revision: Option<i64>,
        /// Write only if the key does not exist yet.
        #[arg(long)]
        create_only: bool,
    },
    /// Remove an item.
    Delete {
        /// The agent whose store to change: its id, or its exact name.
        agent: String,
        /// The item's key.
        key: String,
        /// Remove it only if it still has this revision.
        #[arg(long, value_name = "REVISION")]
        if_revision: Option<i64>,
    },
    /// Copy an item of a private agent's store into a shared agent's store
    /// (your active workspace's), one way: later changes to either copy do
    /// not reach the other.
    Publish {
        /// The private agent whose store holds the item.
        agent: String,
        /// The item's key.
        key: String,
        /// The shared agent to copy it into.
        #[arg(long, value_name = "AGENT")]
        to: String,
        /// The key in the shared store (default: the same key).
        #[arg(long, value_name = "KEY")]
        target_key: Option<String>,
        /// Replace the copy only if it still has this revision.
        #[arg(long, value_name = "REVISION")]
        if_target_revision: Option<i64>,
    },
    /// Stream puts and deletes as they happen, until interrupted.
    #[command(after_help = "\
With -o json each stream message (a change, or a progress report naming \
the revision caught up to) is printed as one JSON object per line (NDJSON); \
-o yaml prints each as a YAML document. A watch outlives the credential it \
was opened with by reopening itself from the last revision it saw.")]
    Watch {
        /// The agent whose store to watch: its id, or its exact name.
        agent: String,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Start after this partition revision (as `items list` prints it)
        /// instead of now, so no change in between is lost.
        #[arg(long, value_name = "REVISION")]
        after: Option<i64>,
        /// Leave values out of the changes.
        #[arg(long)]
        omit_values: bool,
        /// Stop after this many changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ContentType {
    Text,
    Json,
}

impl From<ContentType> for pb::ItemContentType {
    fn from(content_type: ContentType) -> Self {
        match content_type {
            ContentType::Text => Self::Text,
            ContentType::Json => Self::Json,
        }
    }
}

fn items_table(items: &[pb::WorkspaceItemSummary]) -> View {
    View::table(items)
        .id("KEY", |item| item.key.clone())
        .column("TYPE", |item| content_type(item.content_type))
        .column("REVISION", |item| item.revision.to_string())
        .column("SIZE", |item| item.size_bytes.to_string())
        .column("UPDATED", |item| time(item.update_time.as_ref()))
        .column("WRITTEN BY", |item| written_by(item.written_by.as_ref()))
        .column("PREVIEW", |item| one_line(&item.preview, 60))
        .into()
}

/// Who wrote an item's current value, in a few words: the kind of writer
/// and the ids that tell one from another.
fn written_by(writer: Option<&pb::ItemWriter>) -> String {
    let Some(writer) = writer else {
        return String::new();
    };
    let kind = pb::WriterKind::try_from(writer.kind).unwrap_or(pb::WriterKind::Unspecified);
    let mut words = match kind {
        pb::WriterKind::Unspecified => return "unrecorded".into(),
        pb::WriterKind::User => format!("user {}", writer.user_id),
        pb::WriterKind::InvokeGrant => {
            format!(
                "user {} with INVOKE grant {}",
                writer.user_id, writer.grant_id
            )
        }
        pb::WriterKind::DelegateGrant => {
            format!(
                "user {} with DELEGATE grant {}",
                writer.user_id, writer.grant_id
            )
        }
        pb::WriterKind::AnonymousSession if writer.session_id.is_empty() => {
            format!("anonymous visitor with grant {}", writer.grant_id)
        }
        pb::WriterKind::AnonymousSession => format!(
            "anonymous session {} with grant {}",
            writer.session_id, writer.grant_id
        ),
        pb::WriterKind::AutomationRun => format!(
            "automation run {} for user {}",
            writer.automation_run_id, writer.user_id
        ),
    };
    if !writer.published_from_agent_id.is_empty() {
        words.push_str(&format!(
            ", published from agent {}",
            writer.published_from_agent_id
        ));
    }
    words
}

fn content_type(value: i32) -> String {
    word(
        value,
        pb::ItemContentType::as_str_name,
        "ITEM_CONTENT_TYPE_",
    )
}

impl Command {
    /// The agent whose store every items command reads or changes.
    fn agent(&mut self) -> &mut String {
        match self {
            Self::List { agent, .. }
            | Self::Read { agent, .. }
            | Self::Write { agent, .. }
            | Self::Delete { agent, .. }
            | Self::Publish { agent, .. }
            | Self::Watch { agent, .. } => agent,
        }
    }
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut command = command;
    let agent_id = api.agent_id(command.agent()).await?;
    *command.agent() = agent_id;
    if let Command::Publish { to, .. } = &mut command {
        *to = api.agent_id(to).await?;
    }
    let mut store = api.store();
    match command {
        Command::List {
            agent,
            prefix,
            limit,
            page_token,
        } => {
            let listed = store
                .workspace_list(pb::WorkspaceListRequest {
                    agent_id: agent,
                    key_prefix: prefix.unwrap_or_default(),
                    page_size: limit,
                    page_token: page_token.unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.show(&listed, items_table(&listed.items))?;
            let usage = listed.usage.unwrap_or_default();
            out.say(&format!(
                "store {} at revision {}: {} of {} items, {} of {} bytes",
                listed.partition,
                listed.revision,
                usage.item_count,
                usage.item_count_limit,
                usage.total_bytes,
                usage.total_bytes_limit
            ))?;
            if !listed.next_page_token.is_empty() {
                out.say(&format!("more: --page-token {}", listed.next_page_token))?;
            }
            Ok(())
        }
        Command::Read { agent, key, raw } => {
            let call = store.workspace_read(pb::WorkspaceReadRequest {
                agent_id: agent,
                key,
            });
            let read = call.await?.into_inner();
            let item = read.item.clone().unwrap_or_default();
            if raw {
                return out.write(&item.value);
            }
            out.show(&read, item_record(&item, true))
        }
        Command::Write {
            agent,
            key,
            file,
            content_type,
            if_revision,
            create_only,
        } => {
            if file.is_none() && std::io::stdin().is_terminal() {
                eprintln!("type the value, then Ctrl-D");
            }
            let value = super::read_input(file.as_deref().unwrap_or("-"))?;
            let written = store
                .workspace_write(pb::WorkspaceWriteRequest {
                    agent_id: agent,
                    key,
                    value,
                    content_type: pb::ItemContentType::from(content_type).into(),
                    expected_revision: if create_only { Some(0) } else { if_revision },
                })
                .await?
                .into_inner();
            let item = written.item.clone().unwrap_or_default();
            out.say(if written.created {
                "created"
            } else {
                "replaced"
            })?;
            out.show(&written, item_record(&item, false))
        }
        Command::Delete {
            agent,
            key,
            if_revision,
        } => {
            let call = store.workspace_delete(pb::WorkspaceDeleteRequest {
                agent_id: agent,
                key: key.clone(),
                expected_revision: if_revision,
            });
            out.answer(call.await?, |deleted| {
                View::record(
                    key.clone(),
                    vec![
                        ("deleted", key),
                        ("item revision", deleted.deleted_item_revision.to_string()),
                        ("store revision", deleted.revision.to_string()),
                    ],
                )
            })
        }
        Command::Publish {
            agent,
            key,
            to,
            target_key,
            if_target_revision,
        } => {
            let call = store.workspace_publish(pb::WorkspacePublishRequest {
                agent_id: agent,
                key,
                target_agent_id: to.clone(),
                target_key,
                expected_target_revision: if_target_revision,
            });
            out.answer(call.await?, |published| publish_record(published, to))
        }
        Command::Watch {
            agent,
            prefix,
            after,
            omit_values,
            count,
        } => {
            let request = pb::WatchRequest {
                agent_id: agent,
                key_prefix: prefix.unwrap_or_default(),
                after_revision: after,
                omit_values,
            };
            watch(&api, request, count, out).await
        }
    }
}

fn item_record(item: &pb::WorkspaceItem, with_value: bool) -> View {
    let mut fields = vec![
        ("key", item.key.clone()),
        ("type", content_type(item.content_type)),
        ("revision", item.revision.to_string()),
        ("size", item.size_bytes.to_string()),
        ("created by", item.created_by.clone()),
        ("created", time(item.create_time.as_ref())),
        ("updated", time(item.update_time.as_ref())),
        ("written by", written_by(item.written_by.as_ref())),
    ];
    if with_value {
        fields.push(("value", item.value.clone()));
    }
    View::record(item.key.clone(), fields)
}

/// Where an item was published, and the copy there.
fn publish_record(published: &pb::WorkspacePublishResponse, to: String) -> View {
    let item = published.item.clone().unwrap_or_default();
    View::record(
        item.key.clone(),
        vec![
            ("published to", to),
            ("key", item.key),
            ("revision", item.revision.to_string()),
            ("size", item.size_bytes.to_string()),
            ("created", published.created.to_string()),
        ],
    )
}

/// A value's start on one line, for a table cell.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Streams changes until Ctrl-C or `count` changes. The server ends a watch
/// when the credential it was opened with expires (and when it shuts
/// down) with UNAVAILABLE, naming the revision to resume from; the watch
/// then reopens from the last revision it saw. A reopen that fails before
/// its first message ends the command.
async fn watch(
    api: &super::client::Api,
    mut request: pb::WatchRequest,
    count: Option<u64>,
    out: Output,
) -> Outcome {
    let spinner = Spinner::start(format!("watching {}'s store", request.agent_id));
    let events = Events::new(out.format);
    let mut store = api.store();
    let mut changes = 0_u64;
    loop {
        if count.is_some_and(|count| changes >= count) {
            return Ok(());
        }
        let opened = tokio::select! {
            opened = store.watch(request.clone()) => opened?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let mut stream = opened.into_inner();
        let mut heard = false;
        loop {
            if count.is_some_and(|count| changes >= count) {
                return Ok(());
            }
            let next = tokio::select! {
                next = stream.message() => next,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(status) if status.code() == tonic::Code::Unavailable && heard => break,
                Err(status) => return Err(status.into()),
            };
            heard = true;
            match &message.event {
                Some(Event::Change(change)) => {
                    changes += 1;
                    request.after_revision = Some(change.revision);
                    print_watched(&spinner, &events, out, &message, Some(change))?;
                }
                Some(Event::Progress(progress)) => {
                    request.after_revision = Some(progress.revision);
                    spinner.say(format!(
                        "watching {}'s store (caught up at revision {})",
                        request.agent_id, progress.revision
                    ));
                    print_watched(&spinner, &events, out, &message, None)?;
                }
                None => {}
            }
        }
    }
}

/// Prints one watch message: every message for scripts, changes for
/// people (`--quiet`: their keys).
fn print_watched(
    spinner: &Spinner,
    events: &Events,
    out: Output,
    message: &pb::WatchResponse,
    change: Option<&pb::WorkspaceChange>,
) -> Outcome {
    spinner.suspend(|| {
        if out.quiet {
            return match change {
                Some(change) => out.line(&change.key),
                None => Ok(()),
            };
        }
        if out.format != Format::Table {
            return events.print(message);
        }
        let Some(change) = change else {
            return Ok(());
        };
        let line = match change.kind() {
            pb::WorkspaceChangeKind::Delete => {
                format!("{}  delete  {}", change.revision, change.key)
            }
            _ => {
                let value = change
                    .item
                    .as_ref()
                    .map(|item| one_line(&item.value, 80))
                    .unwrap_or_default();
                format!("{}  put     {}  {value}", change.revision, change.key)
            }
        };
        out.line(line.trim_end())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_stays_on_one_line_and_within_its_width() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("abcd", 4), "abcd");
    }
}
