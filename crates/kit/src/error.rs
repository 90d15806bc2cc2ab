//! One small error vocabulary for every service, mapped once to gRPC and HTTP.
//!
//! Domain code returns [`Error`]; the gRPC layer turns it into a
//! [`tonic::Status`] with `google.rpc` details, and the gateway's HTTP side
//! uses [`Error::http_status`]. Every message says what the client can do.
//! A peer's [`Status`] comes back into an [`Error`] with its details
//! (`Error::from(status)`), so a service matches on kinds, not on codes.

use agentshare_proto::errors::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A field of the request that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// Missing, malformed, expired or revoked credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// A visible resource the caller may not act on.
    #[error("{0}")]
    PermissionDenied(String),
    /// Does not exist, or must not be seen; callers cannot tell which.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource is in the wrong state for this call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The resource is in the wrong state for this call, for reasons a
    /// client can act on one by one: each becomes a `PreconditionFailure`
    /// violation.
    #[error("{0}")]
    Unmet(String, Vec<Precondition>),
    /// A revision conflict, or a container that still holds things.
    #[error("{0}")]
    Aborted(String),
    /// A conflict a client resolves by reading again: ABORTED with an
    /// `ErrorInfo` naming the reason and the facts to retry with.
    #[error("{message}")]
    Conflict {
        message: String,
        reason: ErrorReason,
        /// The service that refused, as `ErrorInfo.domain`.
        domain: String,
        metadata: std::collections::BTreeMap<String, String>,
    },
    /// A uniqueness conflict on create.
    #[error("{0}")]
    AlreadyExists(String),
    /// A quota or cap is reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A quota is reached, naming which: RESOURCE_EXHAUSTED with a
    /// `QuotaFailure` violation per quota.
    #[error("{0}")]
    Quota(String, Vec<QuotaViolation>),
    /// A limit on how often is reached: RESOURCE_EXHAUSTED with a
    /// `QuotaFailure` violation per limit and a `RetryInfo` saying when a
    /// call fits again.
    #[error("{message}")]
    Throttled {
        message: String,
        violations: Vec<QuotaViolation>,
        retry_after: std::time::Duration,
    },
    /// A dependency is down; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// Part of the contract that a later issue builds; the message names it.
    #[error("{0}")]
    Unimplemented(String),
    /// The caller's deadline passed before the answer.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The caller went away.
    #[error("{0}")]
    Cancelled(String),
    /// A bug. The message is logged; the client sees only that it happened.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How many violations the message names; the `BadRequest` detail lists
/// the rest.
const NAMED_IN_MESSAGE: usize = 3;
/// How many violations the `BadRequest` detail lists. Status details travel
/// in a trailer, and HTTP/2 peers refuse header blocks past 16 KiB, so an
/// answer listing every fault of a large request would never arrive.
pub const MAX_VIOLATIONS: usize = 100;

fn describe(violations: &[FieldViolation]) -> String {
    let mut text = violations
        .iter()
        .take(NAMED_IN_MESSAGE)
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > NAMED_IN_MESSAGE {
        let more = violations.len() - NAMED_IN_MESSAGE;
        text.push_str(&format!("; and {more} more"));
        if violations.len() > MAX_VIOLATIONS {
            text.push_str(&format!(
                " (the details list the first {MAX_VIOLATIONS} of {})",
                violations.len()
            ));
        }
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One reason a call cannot proceed in the resource's present state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    pub reason: ErrorReason,
    /// What it concerns, such as `integration/crm`.
    pub subject: String,
    /// What the client does about it.
    pub description: String,
}

impl Precondition {
    pub fn new(
        reason: ErrorReason,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            subject: subject.into(),
            description: description.into(),
        }
    }
}

/// One quota a call ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaViolation {
    /// What is counted, such as `workspace/<id>` or `open_watches`.
    pub subject: String,
    /// How much of it is used, in words.
    pub description: String,
}

/// A reason's name on the wire: the enum value without its prefix, the
/// form the proto comments document (`SETUP_REQUIRED`).
pub fn reason_name(reason: ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix("ERROR_REASON_").unwrap_or(name)
}

fn reason_of(name: &str) -> ErrorReason {
    ErrorReason::from_str_name(&format!("ERROR_REASON_{name}")).unwrap_or(ErrorReason::Unspecified)
}

/// Why one integration keeps a user's setup of an agent from READY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupGapKind {
    /// The user has bound no live connection to it.
    NotBound,
    /// The user's bound connection expired.
    Expired,
    /// The user's bound connection failed its last check.
    Failed,
    /// A SHARED integration whose builder connection is unusable: only the
    /// agent's owner can fix it.
    BuilderUnavailable,
}

/// One integration that stops a run (or an automation) until its user acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupGap {
    pub integration_key: String,
    pub provider: String,
    pub kind: SetupGapKind,
}

impl SetupGap {
    /// What the user does about it.
    fn remedy(&self) -> String {
        let (key, provider) = (&self.integration_key, &self.provider);
        match self.kind {
            SetupGapKind::NotBound => format!(
                "bind one of your {provider} connections to {key} (ConnectionsService.BindIntegration)"
            ),
            SetupGapKind::Expired => {
                format!("your {provider} connection bound to {key} expired: reconnect it")
            }
            SetupGapKind::Failed => {
                format!("your {provider} connection bound to {key} failed: reconnect it")
            }
            SetupGapKind::BuilderUnavailable => format!(
                "the agent owner's shared {provider} connection for {key} is unavailable: ask the owner to reconnect it"
            ),
        }
    }
}

fn named(gaps: &[SetupGap]) -> String {
    gaps.iter()
        .map(|g| format!("{} ({})", g.integration_key, g.provider))
        .collect::<Vec<_>>()
        .join(", ")
}

fn violations(gaps: &[SetupGap], remedy: impl Fn(&SetupGap) -> String) -> Vec<Precondition> {
    gaps.iter()
        .map(|gap| {
            Precondition::new(
                ErrorReason::SetupRequired,
                format!("integration/{}", gap.integration_key),
                remedy(gap),
            )
        })
        .collect()
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// RESOURCE_EXHAUSTED naming the one quota that was reached.
    pub fn quota(
        message: impl Into<String>,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::Quota(
            message.into(),
            vec![QuotaViolation {
                subject: subject.into(),
                description: description.into(),
            }],
        )
    }

    /// FAILED_PRECONDITION for a setup that is not READY, in the one form
    /// every service answers it: "setup required: connect crm (crm), …",
    /// and a `PreconditionFailure` violation per integration, type
    /// `SETUP_REQUIRED`, subject `integration/<key>`, saying what to do.
    pub fn setup_required(gaps: &[SetupGap]) -> Self {
        Self::Unmet(
            format!(
                "setup required: connect {}; see ConnectionsService.GetAgentSetup",
                named(gaps)
            ),
            violations(gaps, SetupGap::remedy),
        )
    }

    /// The same condition for a DELEGATE share token's run, which uses the
    /// agent owner's setup: only the owner can complete it, so the holder
    /// (often an anonymous visitor) is told whom to ask, not what to bind.
    pub fn setup_required_of_owner(gaps: &[SetupGap]) -> Self {
        Self::Unmet(
            format!(
                "setup required: the agent's owner has not connected {}; ask the owner to finish the agent's setup",
                named(gaps)
            ),
            violations(gaps, |gap| {
                format!(
                    "the agent's owner must connect {} for {} (only the owner can)",
                    gap.provider, gap.integration_key
                )
            }),
        )
    }

    pub fn grpc_code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) | Self::Unmet(..) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Conflict { .. } => Code::Aborted,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::ResourceExhausted(_) | Self::Quota(..) | Self::Throttled { .. } => {
                Code::ResourceExhausted
            }
            Self::Unavailable(_) => Code::Unavailable,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The HTTP status a REST client sees, as DESIGN.md fixes it: a wrong
    /// state is 400 and a conflict 409.
    pub fn http_status(&self) -> u16 {
        http_status_of(self.grpc_code())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in violations.iter().take(MAX_VIOLATIONS) {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid argument: {}", describe(&violations)),
                    details,
                )
            }
            Error::Unmet(message, violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_precondition_failure_violation(
                        reason_name(v.reason),
                        v.subject,
                        v.description,
                    );
                }
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::Quota(message, violations) => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_quota_failure_violation(v.subject, v.description);
                }
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Throttled {
                message,
                violations,
                retry_after,
            } => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_quota_failure_violation(v.subject, v.description);
                }
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Conflict {
                message,
                reason,
                domain,
                metadata,
            } => {
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    reason_name(reason),
                    domain,
                    metadata
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                );
                Status::with_error_details(Code::Aborted, message, details)
            }
            Error::Internal(cause) => {
                // The cause may hold SQL or paths; it belongs in our logs only.
                tracing::error!(%cause, "internal error");
                Status::internal("internal error; it has been logged, please report it")
            }
            other => Status::new(other.grpc_code(), other.to_string()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| database_is_down(&code)),
            _ => false,
        };
        if unavailable {
            tracing::warn!(%error, "database unavailable");
            return Self::Unavailable("the database is unavailable; retry shortly".into());
        }
        Self::Internal(error.to_string())
    }
}

impl From<Status> for Error {
    /// A peer's answer as the error it was built from, details included, so
    /// a service passes it on or matches on it without reading codes. The
    /// peer's INTERNAL stays INTERNAL: its cause is in the peer's logs.
    fn from(status: Status) -> Self {
        let message = status.message().to_string();
        let details = status.get_error_details();
        match status.code() {
            Code::InvalidArgument => Self::InvalidArgument(
                details
                    .bad_request()
                    .and_then(|b| listed(&b.field_violations))
                    .unwrap_or_else(|| vec![FieldViolation::new("", message)]),
            ),
            Code::Unauthenticated => Self::Unauthenticated(message),
            Code::PermissionDenied => Self::PermissionDenied(message),
            Code::NotFound => Self::NotFound(
                message
                    .strip_suffix(" not found")
                    .unwrap_or(&message)
                    .to_string(),
            ),
            Code::FailedPrecondition => {
                match details
                    .precondition_failure()
                    .and_then(|f| listed(&f.violations))
                {
                    Some(unmet) => Self::Unmet(message, unmet),
                    None => Self::FailedPrecondition(message),
                }
            }
            Code::Aborted => match details.error_info() {
                Some(info) => Self::Conflict {
                    message,
                    reason: reason_of(&info.reason),
                    domain: info.domain.clone(),
                    metadata: info.metadata.clone().into_iter().collect(),
                },
                None => Self::Aborted(message),
            },
            Code::AlreadyExists => Self::AlreadyExists(message),
            Code::ResourceExhausted => {
                let quota = details.quota_failure().and_then(|q| listed(&q.violations));
                let retry_after = details.retry_info().and_then(|r| r.retry_delay);
                match (quota, retry_after) {
                    (quota, Some(retry_after)) => Self::Throttled {
                        message,
                        violations: quota.unwrap_or_default(),
                        retry_after,
                    },
                    (Some(quota), None) => Self::Quota(message, quota),
                    (None, None) => Self::ResourceExhausted(message),
                }
            }
            Code::Unavailable => Self::Unavailable(message),
            Code::Unimplemented => Self::Unimplemented(message),
            Code::DeadlineExceeded => Self::DeadlineExceeded(message),
            Code::Cancelled => Self::Cancelled(message),
            Code::Ok | Code::Unknown | Code::OutOfRange | Code::DataLoss | Code::Internal => {
                Self::Internal(format!("{}: {message}", code_name(status.code())))
            }
        }
    }
}

/// A status detail's violations in our types; none where the peer listed
/// none, so the error keeps its plain form.
fn listed<'a, V, T: From<&'a V>>(violations: &'a [V]) -> Option<Vec<T>> {
    (!violations.is_empty()).then(|| violations.iter().map(T::from).collect())
}

impl From<&tonic_types::FieldViolation> for FieldViolation {
    fn from(v: &tonic_types::FieldViolation) -> Self {
        Self::new(&v.field, &v.description)
    }
}

impl From<&tonic_types::PreconditionViolation> for Precondition {
    fn from(v: &tonic_types::PreconditionViolation) -> Self {
        Self::new(reason_of(&v.r#type), &v.subject, &v.description)
    }
}

impl From<&tonic_types::QuotaViolation> for QuotaViolation {
    fn from(v: &tonic_types::QuotaViolation) -> Self {
        Self {
            subject: v.subject.clone(),
            description: v.description.clone(),
        }
    }
}

/// Whether a database error's SQLSTATE says the server went away or is not
/// taking connections (a restart, a failover, a full connection table):
/// the call may succeed once it is back, so it is UNAVAILABLE, not a bug.
/// Class 08 is connection exceptions; 57P01 to 57P03 an administrator or
/// crash shutdown and "cannot connect now"; 53300 too many connections.
fn database_is_down(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300")
}

/// The HTTP status of a gRPC code, as Google's API design guide maps them
/// (`google.rpc.Code`): the gateway answers HTTP/JSON calls with it.
pub fn http_status_of(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::Aborted | Code::AlreadyExists => 409,
        Code::ResourceExhausted => 429,
        // The client closed the request (nginx's non-standard 499, which
        // Google's mapping uses too).
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
    }
}

/// A gRPC code's canonical name (`FAILED_PRECONDITION`), as run records
/// and run history keep it for people and other languages to read.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_going_away_is_unavailable_and_other_errors_are_bugs() {
        for down in ["57P01", "57P03", "08006", "08001", "53300"] {
            assert!(database_is_down(down), "{down}");
        }
        for bug in ["23505", "42P01", "40001"] {
            assert!(!database_is_down(bug), "{bug}");
        }
    }

    #[test]
    fn a_request_with_many_faults_answers_a_bounded_status() {
        let violations: Vec<FieldViolation> = (0..250)
            .map(|i| FieldViolation::new(format!("draft.files[{i}].name"), "must not be empty"))
            .collect();
        let status: Status = Error::InvalidArgument(violations).into();
        assert!(
            status
                .message()
                .ends_with("and 247 more (the details list the first 100 of 250)"),
            "{}",
            status.message()
        );
        let listed = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(listed.len(), MAX_VIOLATIONS);
        assert_eq!(listed[0].field, "draft.files[0].name");
        assert!(
            status.details().len() < 8 * 1024,
            "{} bytes",
            status.details().len()
        );
    }

    #[test]
    fn every_error_maps_to_its_grpc_and_http_code() {
        let cases = [
            (Error::invalid("name", "empty"), Code::InvalidArgument, 400),
            (
                Error::Unauthenticated("x".into()),
                Code::Unauthenticated,
                401,
            ),
            (
                Error::PermissionDenied("x".into()),
                Code::PermissionDenied,
                403,
            ),
            (Error::not_found("agent"), Code::NotFound, 404),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
                400,
            ),
            (Error::Aborted("x".into()), Code::Aborted, 409),
            (Error::AlreadyExists("x".into()), Code::AlreadyExists, 409),
            (
                Error::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
                429,
            ),
            (Error::Unavailable("x".into()), Code::Unavailable, 503),
            (Error::Unimplemented("x".into()), Code::Unimplemented, 501),
            (Error::internal("boom"), Code::Internal, 500),
        ];
        for (error, code, http) in cases {
            assert_eq!(error.http_status(), http, "{error:?}");
            let status = Status::from(error.clone());
            assert_eq!(status.code(), code, "{error:?}");
        }
    }

    #[test]
    fn invalid_argument_carries_bad_request_field_violations() {
        let status = Status::from(Error::InvalidArgument(vec![
            FieldViolation::new("draft.name", "must not be empty"),
            FieldViolation::new("draft.instructions", "over 100 KiB"),
        ]));
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["draft.name", "draft.instructions"]);
        assert!(status.message().contains("draft.name: must not be empty"));
    }

    #[test]
    fn a_missing_setup_lists_each_integration_in_one_form() {
        let gap = |key: &str, provider: &str, kind| SetupGap {
            integration_key: key.into(),
            provider: provider.into(),
            kind,
        };
        let status = Status::from(Error::setup_required(&[
            gap("crm", "salesforce", SetupGapKind::NotBound),
            gap("slack", "slack", SetupGapKind::Expired),
            gap("search", "brave", SetupGapKind::BuilderUnavailable),
        ]));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().starts_with(
                "setup required: connect crm (salesforce), slack (slack), search (brave)"
            ),
            "{}",
            status.message()
        );
        let violations = status
            .get_details_precondition_failure()
            .expect("precondition failure")
            .violations;
        let seen: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| (v.r#type.as_str(), v.subject.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("SETUP_REQUIRED", "integration/crm"),
                ("SETUP_REQUIRED", "integration/slack"),
                ("SETUP_REQUIRED", "integration/search"),
            ]
        );
        assert!(violations[1].description.contains("expired"));
        assert!(violations[2].description.contains("owner"));
    }

    #[test]
    fn a_peer_answer_comes_back_as_the_error_it_was_built_from() {
        let gap = SetupGap {
            integration_key: "crm".into(),
            provider: "salesforce".into(),
            kind: SetupGapKind::NotBound,
        };
        let conflict = Error::Conflict {
            message: "the item is at revision 3, not 2".into(),
            reason: ErrorReason::RevisionMismatch,
            domain: "store.agentshare".into(),
            metadata: [("current_revision".into(), "3".into())].into(),
        };
        let errors = [
            Error::InvalidArgument(vec![
                FieldViolation::new("draft.name", "must not be empty"),
                FieldViolation::new("draft.model", "unknown model"),
            ]),
            Error::Unauthenticated("token expired".into()),
            Error::PermissionDenied("only an owner adds an owner".into()),
            Error::not_found("agent a-1"),
            Error::FailedPrecondition("agent is not deployed".into()),
            Error::setup_required(std::slice::from_ref(&gap)),
            Error::Aborted("the workspace still holds agents".into()),
            conflict,
            Error::AlreadyExists("that slug is taken".into()),
            Error::ResourceExhausted("too many".into()),
            Error::quota("cap reached", "workspace/w-1", "100 of 100 used"),
            Error::Throttled {
                message: "30 runs per minute reached".into(),
                violations: vec![QuotaViolation {
                    subject: "grant/g-1/runs_per_minute".into(),
                    description: "30 of 30 this minute".into(),
                }],
                retry_after: std::time::Duration::from_secs(12),
            },
            Error::Unavailable("retry".into()),
            Error::Unimplemented("later".into()),
            Error::DeadlineExceeded("too slow".into()),
            Error::Cancelled("gone".into()),
        ];
        for error in errors {
            let back = Error::from(Status::from(error.clone()));
            assert_eq!(back, error);
        }
    }

    #[test]
    fn a_peer_bug_stays_a_bug_without_its_cause() {
        let back = Error::from(Status::from(Error::internal("SELECT secret")));
        assert!(matches!(&back, Error::Internal(cause) if !cause.contains("SELECT")));
        assert_eq!(Status::from(back).code(), Code::Internal);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(Error::internal("SELECT secret FROM connections"));
        assert!(!status.message().contains("SELECT"));
    }
}
