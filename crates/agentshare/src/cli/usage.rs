//! `agentshare usage`: invocations counted and summed per agent or per
//! billed account, by day or month (UsageService.SummarizeUsage), and
//! `usage runs`, the records themselves (ListInvocations): who ran which
//! version, with whose connections, billed to whom, and how it went.
//!
//! A caller reads the runs billed to them; an agent's owner reads every run
//! of their agent with `--agent ID --everyone`.

use std::str::FromStr as _;

use agentshare_proto::store::v1 as pb;

use super::client::{Target, every_page};
use super::failure::{Failure, Outcome};
use super::output::{Output, View, label, time, with_detail};

/// `agentshare usage`
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    filter: Filter,
    /// One row per day or per month (UTC); without it, one row per group
    /// over the whole range.
    #[arg(long, value_enum)]
    by: Option<Period>,
    /// What each row totals: one agent, or one billed account.
    #[arg(long, value_enum, default_value_t = Group::Agent)]
    group: Group,
}

/// `agentshare usage ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The run records, newest first: version, caller, billed account,
    /// whose connection each integration used, status and tokens.
    Runs {
        #[command(flatten)]
        filter: Filter,
        /// Only runs that ended this way.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// At most this many records (the server caps it at 500).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Continue a listing from the token a previous page printed.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
}

/// Which records, and over which time.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only this agent's runs.
    #[arg(long, value_name = "AGENT_ID")]
    agent: Option<String>,
    /// Every run of the agent, whoever was billed; for the agent's owner.
    /// Without it, only the runs billed to you.
    #[arg(long, requires = "agent")]
    everyone: bool,
    /// From this day (YYYY-MM-DD, UTC) or instant (RFC 3339), inclusive.
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// Until this day (YYYY-MM-DD, UTC) or instant (RFC 3339), exclusive;
    /// default now.
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Period {
    Day,
    Month,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Group {
    /// One row per agent.
    Agent,
    /// One row per billed account.
    Account,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<Status> for pb::InvocationStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Running => Self::Running,
            Status::Succeeded => Self::Succeeded,
            Status::Failed => Self::Failed,
            Status::Cancelled => Self::Cancelled,
        }
    }
}

/// The filter as the API reads it: scope, agent, start and end.
struct Range {
    scope: pb::UsageScope,
    agent_id: String,
    start_time: Option<prost_types::Timestamp>,
    end_time: Option<prost_types::Timestamp>,
}

impl Filter {
    fn range(&self) -> Outcome<Range> {
        Ok(Range {
            scope: if self.everyone {
                pb::UsageScope::Agent
            } else {
                pb::UsageScope::BilledToCaller
            },
            agent_id: self.agent.clone().unwrap_or_default(),
            start_time: self
                .from
                .as_deref()
                .map(|text| parse_time(text, "--from"))
                .transpose()?,
            end_time: self
                .to
                .as_deref()
                .map(|text| parse_time(text, "--to"))
                .transpose()?,
        })
    }
}

pub async fn run(args: Args, target: &Target, out: Output) -> Outcome {
    match args.command {
        Some(Command::Runs {
            filter,
            status,
            limit,
            page_token,
        }) => runs(&filter, status, limit, page_token, target, out).await,
        None => summary(&args.filter, args.by, args.group, target, out).await,
    }
}

async fn summary(
    filter: &Filter,
    by: Option<Period>,
    group: Group,
    target: &Target,
    out: Output,
) -> Outcome {
    let range = filter.range()?;
    let api = target.api()?;
    // Summaries are short; every page is read so the totals are whole.
    let request = pb::SummarizeUsageRequest {
        scope: range.scope.into(),
        agent_id: range.agent_id.clone(),
        start_time: range.start_time,
        end_time: range.end_time,
        group_by: match group {
            Group::Agent => pb::UsageGroupBy::Agent,
            Group::Account => pb::UsageGroupBy::BilledAccount,
        }
        .into(),
        period: match by {
            None => pb::UsagePeriod::Unspecified,
            Some(Period::Day) => pb::UsagePeriod::Day,
            Some(Period::Month) => pb::UsagePeriod::Month,
        }
        .into(),
        ..Default::default()
    };
    let mut usage = api.usage();
    let answer = every_page(request, async |r| usage.summarize_usage(r).await).await?;
    let who = match group {
        Group::Agent => "AGENT",
        Group::Account => "BILLED TO",
    };
    let view = View::table(&answer.rows)
        .column("PERIOD", |row| period(row, by))
        .id(who, |row| group_of(row, group))
        .column("RUNS", |row| row.invocation_count.to_string())
        .column("OK", |row| row.succeeded_count.to_string())
        .column("FAILED", |row| row.failed_count.to_string())
        .column("CANCELLED", |row| row.cancelled_count.to_string())
        .column("RUNNING", |row| row.running_count.to_string())
        .column("TIME", |row| duration(row.total_duration.as_ref()))
        .column("TOKENS IN", |row| row.input_tokens.to_string())
        .column("TOKENS OUT", |row| row.output_tokens.to_string());
    out.show(&answer, view)
}

fn group_of(row: &pb::UsageSummaryRow, group: Group) -> String {
    match group {
        Group::Agent => row.agent_id.clone(),
        Group::Account => row.billed_to_user_id.clone(),
    }
}

fn period(row: &pb::UsageSummaryRow, by: Option<Period>) -> String {
    let start = time(row.period_start_time.as_ref());
    match by {
        // The day or month itself, not its first second.
        Some(Period::Day) => start.chars().take(10).collect(),
        Some(Period::Month) => start.chars().take(7).collect(),
        None if row.period_start_time.is_none() => {
            format!("until {}", time(row.period_end_time.as_ref()))
        }
        None => format!("{start} to {}", time(row.period_end_time.as_ref())),
    }
}

async fn runs(
    filter: &Filter,
    status: Option<Status>,
    limit: i32,
    page_token: Option<String>,
    target: &Target,
    out: Output,
) -> Outcome {
    let range = filter.range()?;
    let api = target.api()?;
    let listed = api
        .usage()
        .list_invocations(pb::ListInvocationsRequest {
            scope: range.scope.into(),
            agent_id: range.agent_id,
            start_time: range.start_time,
            end_time: range.end_time,
            status: status
                .map(pb::InvocationStatus::from)
                .unwrap_or_default()
                .into(),
            page_size: limit,
            page_token: page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let view = View::table(&listed.invocations)
        .id("ID", |record| record.id.clone())
        .column("AGENT", |record| record.agent_id.clone())
        .column("VERSION", |record| {
            if record.draft_run {
                "draft".into()
            } else {
                record.agent_version_number.to_string()
            }
        })
        .column("CALLER", caller)
        .column("BILLED TO", |record| record.billed_to_user_id.clone())
        .column("INTEGRATIONS", |record| {
            record
                .integrations
                .iter()
                .map(|used| {
                    format!(
                        "{}: {}",
                        used.integration_key,
                        connection_owner(used.connection_owner())
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .column("STATUS", status_of)
        .column("STARTED", |record| time(record.start_time.as_ref()))
        .column("TIME", |record| duration(record.duration.as_ref()))
        .column("TOKENS", |record| {
            format!("{}/{}", record.input_tokens, record.output_tokens)
        });
    out.show(&listed, view)?;
    if !listed.next_page_token.is_empty() {
        out.say(&format!("more: --page-token {}", listed.next_page_token))?;
    }
    Ok(())
}

fn caller(record: &pb::InvocationRecord) -> String {
    let kind = label(record.caller_kind().as_str_name(), "CALLER_KIND_");
    if record.anonymous {
        format!("anonymous ({kind})")
    } else {
        format!("{} ({kind})", record.user_id)
    }
}

fn status_of(record: &pb::InvocationRecord) -> String {
    let status = label(record.status().as_str_name(), "INVOCATION_STATUS_");
    with_detail(status, &record.error_code)
}

/// Whose connection an integration used, for people.
pub(super) fn connection_owner(owner: pb::ConnectionOwner) -> String {
    match owner {
        pb::ConnectionOwner::Owner => "the agent owner's connection",
        pb::ConnectionOwner::Builder => "the builder's shared connection",
        pb::ConnectionOwner::Caller => "your connection",
        pb::ConnectionOwner::Holder => "the grant holder's connection",
        pb::ConnectionOwner::Unspecified => "an unknown connection",
    }
    .into()
}

/// A duration for people: `850ms`, `2.4s`, `3m 05s`, `1h 02m`.
pub(super) fn duration(value: Option<&prost_types::Duration>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let millis = value.seconds * 1000 + i64::from(value.nanos) / 1_000_000;
    match millis {
        ..1_000 => format!("{millis}ms"),
        1_000..60_000 => format!("{}.{}s", millis / 1000, millis % 1000 / 100),
        60_000..3_600_000 => format!("{}m {:02}s", millis / 60_000, millis % 60_000 / 1000),
        _ => format!(
            "{}h {:02}m",
            millis / 3_600_000,
            millis % 3_600_000 / 60_000
        ),
    }
}

/// A day (`2026-03-01`, midnight UTC) or an RFC 3339 instant.
pub(super) fn parse_time(text: &str, flag: &str) -> Outcome<prost_types::Timestamp> {
    let text = text.trim();
    let instant = if text.len() == 10 && !text.contains('T') {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    prost_types::Timestamp::from_str(&instant).map_err(|_| {
        Failure::usage(format!(
            "{flag} {text:?} is neither a day (2026-03-01) nor an RFC 3339 instant \
             (2026-03-01T08:00:00Z)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_instants_parse_and_anything_else_is_a_usage_error() {
        let day = parse_time("2026-03-01", "--from").unwrap();
        assert_eq!(day.seconds, 1_772_323_200);
        let instant = parse_time("2026-03-01T08:00:00Z", "--to").unwrap();
        assert_eq!(instant.seconds, day.seconds + 8 * 3600);
        let refused = parse_time("yesterday", "--from");
        assert!(matches!(refused, Err(Failure::Usage(why)) if why.contains("--from")));
    }

    #[test]
    fn durations_read_in_the_largest_sensible_unit() {
        let of = |seconds, nanos| duration(Some(&prost_types::Duration { seconds, nanos }));
        assert_eq!(of(0, 850_000_000), "850ms");
        assert_eq!(of(2, 400_000_000), "2.4s");
        assert_eq!(of(185, 0), "3m 05s");
        assert_eq!(of(3720, 0), "1h 02m");
        assert_eq!(duration(None), "");
    }
}
