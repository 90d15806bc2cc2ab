//! Limits on what a shared agent may spend (DESIGN.md, Grants): a grant's
//! limits with their defaults, and the counters a run is admitted against.
//! Counting itself is storage's (`storage::budgets`), in the database, so a
//! limit holds exactly across replicas.

use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::error::QuotaViolation;
use agentshare_proto::sharing::v1 as pb;

use crate::access::storage::grants::GrantKind;

/// The largest value a limit may take.
pub const MAX_LIMIT: i32 = 1_000_000;
/// A concurrency slot whose gateway never released it is freed this long
/// after the run's deadline.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// The deadline assumed when the caller names none.
pub const DEFAULT_RUN_DEADLINE: Duration = Duration::from_secs(600);

const MINUTE_MICROS: i64 = 60 * 1_000_000;
const DAY_MICROS: i64 = 24 * 60 * MINUTE_MICROS;

/// How much a grant's token may run; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantLimits {
    pub runs_per_minute: Option<i64>,
    pub runs_per_day: Option<i64>,
    pub concurrent_runs: Option<i64>,
    pub session_runs_per_minute: Option<i64>,
}

/// A kind's limits when its creator sets none. A DELEGATE grant lends its
/// owner's credentials and bill to anyone with the token, so it starts
/// small; an INVOKE holder pays for their own runs.
pub fn defaults(kind: GrantKind) -> GrantLimits {
    match kind {
        GrantKind::Delegate => GrantLimits {
            runs_per_minute: Some(30),
            runs_per_day: Some(1_000),
            concurrent_runs: Some(4),
            session_runs_per_minute: Some(10),
        },
        GrantKind::Invoke => GrantLimits::default(),
    }
}

/// One limit as asked: unset keeps `current`, 0 is no limit.
fn limit(field: &str, asked: Option<i32>, current: Option<i64>) -> Result<Option<i64>, Error> {
    match asked {
        None => Ok(current),
        Some(0) => Ok(None),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(i64::from(n))),
        Some(_) => Err(Error::invalid(
            field,
            format!("must be from 0 (no limit) to {MAX_LIMIT}"),
        )),
    }
}

/// `current` with the limits `asked` sets, every bad one named at once.
pub fn apply(current: GrantLimits, asked: &pb::GrantLimits) -> Result<GrantLimits, Error> {
    let mut violations = Vec::new();
    let mut field = |name: &str, asked: Option<i32>, current: Option<i64>| {
        limit(&format!("limits.{name}"), asked, current).unwrap_or_else(|error| {
            if let Error::InvalidArgument(v) = error {
                violations.extend(v);
            }
            current
        })
    };
    let limits = GrantLimits {
        runs_per_minute: field(
            "runs_per_minute",
            asked.runs_per_minute,
            current.runs_per_minute,
        ),
        runs_per_day: field("runs_per_day", asked.runs_per_day, current.runs_per_day),
        concurrent_runs: field(
            "concurrent_runs",
            asked.concurrent_runs,
            current.concurrent_runs,
        ),
        session_runs_per_minute: field(
            "session_runs_per_minute",
            asked.session_runs_per_minute,
            current.session_runs_per_minute,
        ),
    };
    if violations.is_empty() {
        Ok(limits)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// The limits a new grant of `kind` gets: what it asks, else the kind's
/// defaults.
pub fn for_new_grant(
    kind: GrantKind,
    asked: Option<&pb::GrantLimits>,
) -> Result<GrantLimits, Error> {
    apply(defaults(kind), asked.unwrap_or(&pb::GrantLimits::default()))
}

/// Limits as the API shows them: every one set, 0 for none.
pub fn to_proto(limits: GrantLimits) -> pb::GrantLimits {
    let shown = |limit: Option<i64>| Some(limit.and_then(|n| i32::try_from(n).ok()).unwrap_or(0));
    pb::GrantLimits {
        runs_per_minute: shown(limits.runs_per_minute),
        runs_per_day: shown(limits.runs_per_day),
        concurrent_runs: shown(limits.concurrent_runs),
        session_runs_per_minute: shown(limits.session_runs_per_minute),
    }
}

/// A calendar window runs are counted in, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Minute,
    Day,
}

impl Window {
    fn micros(self) -> i64 {
        match self {
            Self::Minute => MINUTE_MICROS,
            Self::Day => DAY_MICROS,
        }
    }

    /// When the window holding `now` began.
    pub fn start(self, now: i64) -> i64 {
        now - now.rem_euclid(self.micros())
    }

    /// How long from `now` until the next window begins.
    pub fn left(self, now: i64) -> Duration {
        let left = self.start(now) + self.micros() - now;
        Duration::from_micros(u64::try_from(left).unwrap_or(0))
    }

    fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Day => "day",
        }
    }
}

/// One count a run must fit in: at most `limit` runs in each `window`, or
/// at once when `window` is `None` (a concurrency limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The counter's key in storage, and the `QuotaFailure` subject:
    /// `grant/<id>/runs_per_minute`, `session/<id>/runs_per_minute`,
    /// `principal/<id>/runs_per_minute`, ...
    pub subject: String,
    pub window: Option<Window>,
    pub limit: i64,
}

/// Everything a run is admitted against, at one time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The grant the run is under, whose usage is counted.
    pub grant_id: Option<String>,
    pub counters: Vec<Counter>,
    pub now: i64,
    /// When a concurrency slot stops counting if no one releases it.
    pub lease_until: i64,
}

impl Admission {
    /// Whether there is nothing to count.
    pub fn is_free(&self) -> bool {
        self.grant_id.is_none() && self.counters.is_empty()
    }
}

/// What a run is, as far as its limits go.
pub struct RunFacts<'a> {
    /// The grant and its limits, for a run under a share token.
    pub grant: Option<(&'a str, GrantKind, GrantLimits)>,
    /// The anonymous session the run continues (DELEGATE visitors only).
    pub anonymous_session: Option<&'a str>,
    /// Who is counted against the org's runs per minute per principal: the
    /// API key or the signed-in user; `None` for automations and anonymous
    /// visitors.
    pub principal: Option<&'a str>,
    /// The org's runs per minute per principal; 0 is no limit.
    pub principal_runs_per_minute: i64,
    pub now: i64,
    pub run_deadline: Duration,
}

/// The counters `run` must fit in.
pub fn admission(run: &RunFacts<'_>) -> Admission {
    let mut counters = Vec::new();
    let mut count = |subject: String, window, limit: Option<i64>| {
        if let Some(limit) = limit {
            counters.push(Counter {
                subject,
                window,
                limit,
            });
        }
    };
    if let Some((grant_id, kind, limits)) = run.grant {
        let grant = |limit: &str| format!("grant/{grant_id}/{limit}");
        count(grant("concurrent_runs"), None, limits.concurrent_runs);
        count(
            grant("runs_per_minute"),
            Some(Window::Minute),
            limits.runs_per_minute,
        );
        count(
            grant("runs_per_day"),
            Some(Window::Day),
            limits.runs_per_day,
        );
        if let (GrantKind::Delegate, Some(session)) = (kind, run.anonymous_session) {
            count(
                format!("session/{session}/runs_per_minute"),
                Some(Window::Minute),
                limits.session_runs_per_minute,
            );
        }
    }
    if let Some(principal) = run.principal {
        count(
            format!("principal/{principal}/runs_per_minute"),
            Some(Window::Minute),
            (run.principal_runs_per_minute > 0).then_some(run.principal_runs_per_minute),
        );
    }
    let lease = run.run_deadline.saturating_add(LEASE_MARGIN);
    Admission {
        grant_id: run.grant.map(|(id, _, _)| id.to_string()),
        counters,
        now: run.now,
        lease_until: run
            .now
            .saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX)),
    }
}

/// RESOURCE_EXHAUSTED for a run that `counter` has no room for, saying
/// when to come back.
pub fn refusal(counter: &Counter, now: i64) -> Error {
    let (what, retry_after) = match counter.window {
        Some(window) => (
            format!("{} runs per {}", counter.limit, window.name()),
            window.left(now),
        ),
        // A run ends when it ends: look again shortly.
        None => (
            format!("{} concurrent runs", counter.limit),
            Duration::from_secs(1),
        ),
    };
    // Who may raise it: the grant's limits are its agent owner's, the
    // limit per user and API key is the org owners'.
    let (whose, raiser) = match counter.subject.split('/').next() {
        Some("grant") => ("this grant's limit", "the agent's owner"),
        Some("session") => ("this session's limit", "the agent's owner"),
        _ => ("your org's limit per user and API key", "an org owner"),
    };
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    Error::Throttled {
        message: format!(
            "{whose} of {what} is reached; retry in {seconds} s, or ask {raiser} to raise it"
        ),
        violations: vec![QuotaViolation {
            subject: counter.subject.clone(),
            description: format!("{what} used"),
        }],
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn asked(minute: Option<i32>, day: Option<i32>) -> pb::GrantLimits {
        pb::GrantLimits {
            runs_per_minute: minute,
            runs_per_day: day,
            ..Default::default()
        }
    }

    #[test]
    fn a_delegate_grant_without_limits_gets_conservative_ones() {
        let delegate = for_new_grant(GrantKind::Delegate, None).unwrap();
        assert_eq!(delegate.runs_per_minute, Some(30));
        assert_eq!(delegate.runs_per_day, Some(1_000));
        assert_eq!(delegate.concurrent_runs, Some(4));
        assert_eq!(delegate.session_runs_per_minute, Some(10));
        assert_eq!(
            for_new_grant(GrantKind::Invoke, None).unwrap(),
            GrantLimits::default()
        );
    }

    #[test]
    fn unset_keeps_zero_lifts_and_a_value_sets() {
        let current = defaults(GrantKind::Delegate);
        let changed = apply(current, &asked(Some(0), Some(5))).unwrap();
        assert_eq!(changed.runs_per_minute, None, "0 lifts the limit");
        assert_eq!(changed.runs_per_day, Some(5));
        assert_eq!(changed.concurrent_runs, Some(4), "unset keeps");
    }

    #[test]
    fn every_bad_limit_is_named_at_once() {
        let error = apply(
            GrantLimits::default(),
            &asked(Some(-1), Some(MAX_LIMIT + 1)),
        )
        .unwrap_err();
        let Error::InvalidArgument(violations) = error else {
            panic!("{error:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["limits.runs_per_minute", "limits.runs_per_day"]);
    }

    #[test]
    fn windows_are_calendar_minutes_and_days() {
        let now = 3 * DAY_MICROS + 5 * MINUTE + 12_000_000;
        assert_eq!(Window::Minute.start(now), 3 * DAY_MICROS + 5 * MINUTE);
        assert_eq!(Window::Minute.left(now), Duration::from_secs(48));
        assert_eq!(Window::Day.start(now), 3 * DAY_MICROS);
    }

    fn run<'a>(grant: Option<(&'a str, GrantKind, GrantLimits)>) -> RunFacts<'a> {
        RunFacts {
            grant,
            anonymous_session: Some("s-1"),
            principal: None,
            principal_runs_per_minute: 0,
            now: 10 * MINUTE,
            run_deadline: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_delegate_run_counts_the_grant_and_the_visitors_session() {
        let limits = defaults(GrantKind::Delegate);
        let admission = admission(&run(Some(("g-1", GrantKind::Delegate, limits))));
        let subjects: Vec<_> = admission
            .counters
            .iter()
            .map(|c| c.subject.as_str())
            .collect();
        assert_eq!(
            subjects,
            [
                "grant/g-1/concurrent_runs",
                "grant/g-1/runs_per_minute",
                "grant/g-1/runs_per_day",
                "session/s-1/runs_per_minute",
            ]
        );
        assert_eq!(
            admission.counters[0].window, None,
            "concurrency has no window"
        );
        assert_eq!(admission.counters[0].limit, 4);
        assert_eq!(admission.lease_until, 10 * MINUTE + 90_000_000);
    }

    #[test]
    fn a_member_run_counts_only_the_orgs_limit_per_principal() {
        let mut member = run(None);
        member.anonymous_session = None;
        assert!(
            admission(&member).is_free(),
            "no org limit: nothing to count"
        );
        member.principal = Some("u-1");
        member.principal_runs_per_minute = 20;
        let counted = admission(&member);
        assert_eq!(counted.counters.len(), 1);
        assert_eq!(counted.counters[0].subject, "principal/u-1/runs_per_minute");
        assert_eq!(counted.counters[0].window, Some(Window::Minute));
    }

    #[test]
    fn a_refusal_names_the_limit_and_when_to_retry() {
        let counter = Counter {
            subject: "grant/g-1/runs_per_minute".into(),
            window: Some(Window::Minute),
            limit: 30,
        };
        let Error::Throttled {
            message,
            violations,
            retry_after,
        } = refusal(&counter, 10 * MINUTE + 45_500_000)
        else {
            panic!("a throttle");
        };
        assert_eq!(retry_after, Duration::from_micros(14_500_000));
        assert!(message.contains("30 runs per minute"), "{message}");
        assert!(message.contains("retry in 15 s"), "{message}");
        assert!(message.contains("ask the agent's owner"), "{message}");
        let org = Counter {
            subject: "principal/u-1/runs_per_minute".into(),
            ..counter
        };
        let Error::Throttled { message, .. } = refusal(&org, 10 * MINUTE) else {
            panic!("a throttle");
        };
        assert!(message.contains("ask an org owner"), "{message}");
        assert_eq!(violations[0].subject, "grant/g-1/runs_per_minute");
    }
}
