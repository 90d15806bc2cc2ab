//! `agentshare grant create|list|limits|revoke` and `agentshare pin`: tokens that
//! let an app, widget or bot run one agent (SharingService's grants), and
//! the version a user runs (AccessService's pins).
//!
//! A grant's token is shown once, by `grant create`: it goes to stdout
//! (alone with `--quiet`, for `$(...)`), and a warning to store it goes to
//! stderr, which a script's capture does not swallow.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use agentshare_proto::sharing::v1 as pb;

use super::client::{Target, every_page};
use super::failure::{Failure, Outcome};
use super::output::{Format, Output, View, time, word};
use super::share::{kind, yes_no};

/// `agentshare grant ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a grant for one of your agents and print its token, once.
    Create {
        /// The agent (its id, or its exact name); it must be deployed, and yours.
        #[arg(value_name = "AGENT")]
        agent_id: String,
        /// Whose credentials runs use: the holder's own (invoke) or yours
        /// (delegate, for anonymous widgets and bots).
        #[arg(long, value_enum)]
        kind: GrantKind,
        /// A label to tell grants apart, such as "marketing-site widget".
        #[arg(long)]
        label: String,
        /// When the token stops working, as RFC 3339
        /// (2027-01-31T00:00:00Z); default: never.
        #[arg(long, value_name = "TIME", conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// How long the token works from now: 90s, 30m, 12h, 30d or 2w.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Pin every run under the grant to this deployed version; default:
        /// the latest.
        #[arg(long, value_name = "VERSION")]
        version: Option<i64>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a grant's limits; the limits you leave out keep their value.
    Limits {
        /// The grant's id.
        grant_id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// An agent's grants, newest first, with token prefixes, never tokens.
    List {
        /// The agent: its id, or its exact name.
        #[arg(value_name = "AGENT")]
        agent_id: String,
        /// Include revoked, expired and ended grants.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a grant: the very next call with its token is refused.
    Revoke {
        /// The grant's id.
        grant_id: String,
    },
}

/// How much a grant's token may run. Unset: on `create`, the kind's
/// default (delegate: 30 a minute, 1000 a day, 4 at once, 10 a minute per
/// anonymous session; invoke: none); on `limits`, unchanged. 0 is no limit.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Runs that may start in one minute.
    #[arg(long, value_name = "N")]
    runs_per_minute: Option<i32>,
    /// Runs that may start in one UTC day.
    #[arg(long, value_name = "N")]
    runs_per_day: Option<i32>,
    /// Runs that may be in progress at once.
    #[arg(long, value_name = "N")]
    concurrent_runs: Option<i32>,
    /// For delegate grants: runs one anonymous session may start in a minute.
    #[arg(long, value_name = "N")]
    session_runs_per_minute: Option<i32>,
}

impl LimitArgs {
    fn to_proto(&self) -> pb::GrantLimits {
        pb::GrantLimits {
            runs_per_minute: self.runs_per_minute,
            runs_per_day: self.runs_per_day,
            concurrent_runs: self.concurrent_runs,
            session_runs_per_minute: self.session_runs_per_minute,
        }
    }

    fn is_empty(&self) -> bool {
        self.to_proto() == pb::GrantLimits::default()
    }
}

/// A grant kind as the command line names it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum GrantKind {
    /// Runs with the holder's own connections, data and bill.
    Invoke,
    /// Runs with your connections, on your bill; needs no signed-in user.
    Delegate,
}

impl From<GrantKind> for pb::GrantKind {
    fn from(kind: GrantKind) -> Self {
        match kind {
            GrantKind::Invoke => Self::Invoke,
            GrantKind::Delegate => Self::Delegate,
        }
    }
}

/// `agentshare pin AGENT [VERSION | --clear]`
#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// The agent: its id, or its exact name.
    #[arg(value_name = "AGENT")]
    agent_id: String,
    /// The deployed version to run from now on; without it (and without
    /// --clear), show your pin.
    #[arg(conflicts_with = "clear")]
    version: Option<i64>,
    /// Clear your pin: follow the latest version again.
    #[arg(long)]
    clear: bool,
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut sharing = api.sharing();
    match command {
        Command::Create {
            agent_id,
            kind,
            label,
            expires_at,
            expires_in,
            version,
            limits,
        } => {
            let expire_time = expiry(expires_at.as_deref(), expires_in.as_deref())?;
            let agent_id = api.agent_id(&agent_id).await?;
            let created = sharing
                .create_grant(pb::CreateGrantRequest {
                    agent_id,
                    kind: pb::GrantKind::from(kind) as i32,
                    label,
                    expire_time,
                    pinned_version: version,
                    limits: Some(limits.to_proto()),
                })
                .await?
                .into_inner();
            eprintln!(
                "warning: this is the only time the grant's token is shown; store it now \
                 (in a secret manager, not a chat or a ticket). It cannot be recovered: \
                 if it is lost, revoke the grant and create another."
            );
            if out.quiet {
                return out.line(&created.token);
            }
            let grant = created.grant.clone().unwrap_or_default();
            // The whole token is shown, so its prefix would say nothing more.
            let mut fields: Vec<_> = grant_fields(&grant)
                .into_iter()
                .filter(|(name, _)| *name != "token prefix")
                .collect();
            fields.push(("token", created.token.clone()));
            out.show(&created, View::record(grant.id.clone(), fields))
        }
        Command::List { agent_id, all } => {
            let request = pb::ListGrantsRequest {
                agent_id: api.agent_id(&agent_id).await?,
                include_inactive: all,
                ..Default::default()
            };
            let listed = every_page(request, async |r| sharing.list_grants(r).await).await?;
            out.show(&listed, grants_table(&listed.grants))
        }
        Command::Limits { grant_id, limits } => {
            if limits.is_empty() {
                return Err(Failure::usage(
                    "nothing to change: give --runs-per-minute, --runs-per-day, \
                     --concurrent-runs or --session-runs-per-minute (0 for no limit)",
                ));
            }
            let call = sharing.update_grant(pb::UpdateGrantRequest {
                grant_id,
                limits: Some(limits.to_proto()),
            });
            out.answer(call.await?, |updated| {
                let grant = updated.grant.clone().unwrap_or_default();
                View::record(grant.id.clone(), grant_fields(&grant))
            })
        }
        Command::Revoke { grant_id } => {
            let call = sharing.revoke_grant(pb::RevokeGrantRequest { grant_id });
            out.answer(call.await?, |revoked| {
                let grant = revoked.grant.clone().unwrap_or_default();
                let mut fields = grant_fields(&grant);
                fields.push(("revoked", time(grant.revoke_time.as_ref())));
                View::record(grant.id, fields)
            })?;
            out.say("Its token is refused from the very next call.")
        }
    }
}

fn grants_table(grants: &[pb::Grant]) -> View {
    View::table(grants)
        .id("ID", |grant| grant.id.clone())
        .column("KIND", |grant| kind(grant.kind))
        .column("LABEL", |grant| grant.label.clone())
        .column("TOKEN", |grant| format!("{}…", grant.token_prefix))
        .column("STATE", |grant| state(grant.state))
        .column("PINNED", |grant| pinned(grant.pinned_version))
        .column("CREATED", |grant| time(grant.create_time.as_ref()))
        .column("EXPIRES", |grant| or_never(grant.expire_time.as_ref()))
        .column("LAST USED", |grant| time(grant.last_use_time.as_ref()))
        .column("LIMITS", |grant| limits_summary(grant.limits.as_ref()))
        .column("RUNS", |grant| usage(grant).0)
        .column("REFUSED", |grant| usage(grant).1)
        .into()
}

/// Runs and refusals so far.
fn usage(grant: &pb::Grant) -> (String, String) {
    let usage = grant.usage.unwrap_or_default();
    (usage.runs.to_string(), usage.refusals.to_string())
}

/// One limit as shown: its value, or "none" for 0.
fn limit(value: Option<i32>) -> String {
    match value.unwrap_or(0) {
        0 => "none".into(),
        n => n.to_string(),
    }
}

/// The limits in one cell: per minute / per day / at once.
fn limits_summary(limits: Option<&pb::GrantLimits>) -> String {
    let limits = limits.copied().unwrap_or_default();
    format!(
        "{}/min {}/day {} at once",
        limit(limits.runs_per_minute),
        limit(limits.runs_per_day),
        limit(limits.concurrent_runs)
    )
}

fn grant_fields(grant: &pb::Grant) -> Vec<(&'static str, String)> {
    let limits = grant.limits.unwrap_or_default();
    let usage = grant.usage.unwrap_or_default();
    vec![
        ("grant", grant.id.clone()),
        ("agent", grant.agent_id.clone()),
        ("kind", kind(grant.kind)),
        ("label", grant.label.clone()),
        ("token prefix", grant.token_prefix.clone()),
        ("state", state(grant.state)),
        ("pinned version", pinned(grant.pinned_version)),
        ("expires", or_never(grant.expire_time.as_ref())),
        ("runs per minute", limit(limits.runs_per_minute)),
        ("runs per day", limit(limits.runs_per_day)),
        ("concurrent runs", limit(limits.concurrent_runs)),
        (
            "session runs per minute",
            limit(limits.session_runs_per_minute),
        ),
        ("runs", usage.runs.to_string()),
        ("refused", usage.refusals.to_string()),
        ("last refused", or_never(usage.last_refusal_time.as_ref())),
    ]
}

fn state(value: i32) -> String {
    word(value, pb::GrantState::as_str_name, "GRANT_STATE_")
}

fn pinned(version: Option<i64>) -> String {
    version.map_or_else(|| "latest".into(), |v| v.to_string())
}

/// A time, or "never" when there is none (no expiry, no refusal yet).
fn or_never(stamp: Option<&prost_types::Timestamp>) -> String {
    stamp.map_or_else(|| "never".into(), |t| time(Some(t)))
}

/// The expiry the flags ask for: an RFC 3339 time, or a duration from now.
fn expiry(at: Option<&str>, within: Option<&str>) -> Outcome<Option<prost_types::Timestamp>> {
    if let Some(at) = at {
        return prost_types::Timestamp::from_str(at).map(Some).map_err(|e| {
            Failure::usage(format!(
                "--expires-at {at:?} is not an RFC 3339 time such as \
                     2027-01-31T00:00:00Z: {e}"
            ))
        });
    }
    let Some(within) = within else {
        return Ok(None);
    };
    let duration = parse_duration(within)
        .map_err(|why| Failure::usage(format!("--expires-in {within:?}: {why}")))?;
    let at = SystemTime::now()
        .checked_add(duration)
        .ok_or_else(|| Failure::usage(format!("--expires-in {within:?} is too far away")))?;
    Ok(Some(prost_types::Timestamp::from(at)))
}

/// A duration as people write it: a whole number and one unit, `s`, `m`,
/// `h`, `d` or `w` (`90s`, `5m`, `30d`).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h, d or w (such as 30m)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number (such as 30m)"))?;
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        other => return Err(format!("{other:?} is not a unit: use s, m, h, d or w")),
    };
    let seconds = number
        .checked_mul(seconds_per)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if seconds == 0 {
        return Err("must be longer than zero".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// `agentshare pin AGENT [VERSION | --clear]`
pub async fn pin(args: PinArgs, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut access = api.access();
    let agent_id = api.agent_id(&args.agent_id).await?;
    if args.clear {
        let call = access.unpin_version(pb::UnpinVersionRequest {
            agent_id: agent_id.clone(),
        });
        return out.answer(call.await?, |unpinned| {
            View::record(
                agent_id.clone(),
                vec![
                    ("agent", agent_id.clone()),
                    ("pin removed", yes_no(unpinned.removed)),
                    ("runs", "the latest version".into()),
                ],
            )
        });
    }
    if let Some(version) = args.version {
        let call = access.pin_version(pb::PinVersionRequest {
            agent_id: agent_id.clone(),
            version,
        });
        out.answer(call.await?, |pinned| pin_record(pinned.pin.as_ref()))?;
        return out.say(&format!(
            "Your runs use version {version} until `agentshare pin {agent_id} --clear`."
        ));
    }
    let shown = access
        .get_pin(pb::GetPinRequest {
            agent_id: agent_id.clone(),
        })
        .await?
        .into_inner();
    let view = pin_record(shown.pin.as_ref());
    if shown.pin.is_none() && out.format == Format::Table && !out.quiet {
        return out.line(&format!(
            "You have no pin on agent {agent_id}: your runs use the latest version."
        ));
    }
    out.show(&shown, view)
}

fn pin_record(pin: Option<&pb::Pin>) -> View {
    let Some(pin) = pin else {
        return View::record(String::new(), Vec::new());
    };
    View::record(
        pin.agent_id.clone(),
        vec![
            ("agent", pin.agent_id.clone()),
            ("version", pin.version.to_string()),
            ("pinned", time(pin.create_time.as_ref())),
            ("status", pin.summary.clone()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn an_expiry_is_a_time_or_a_duration_from_now() {
        let at = expiry(Some("2030-01-31T00:00:00Z"), None).unwrap().unwrap();
        assert_eq!(at.seconds, 1_896_048_000);
        let soon = expiry(None, Some("1h")).unwrap().unwrap();
        assert!(soon.seconds > at.seconds - 10 * 365 * 86_400);
        assert!(matches!(
            expiry(Some("tomorrow"), None),
            Err(Failure::Usage(_))
        ));
        assert_eq!(expiry(None, None).unwrap(), None);
    }
}
