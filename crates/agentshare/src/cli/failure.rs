//! What a command that fails prints, and its exit code: 1 when the call or
//! the work failed, 2 when the command line itself was wrong (as clap exits
//! on a usage error).

use std::process::ExitCode;

use tonic_types::StatusExt as _;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The server refused or failed the call.
    Call(tonic::Status),
    /// The command line cannot be carried out as given.
    Usage(String),
    /// Something on this machine failed: a file, the terminal, a context.
    Local(String),
}

pub type Outcome<T = ()> = Result<T, Failure>;

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::Call(status)
    }
}

impl Failure {
    pub fn usage(why: impl Into<String>) -> Self {
        Self::Usage(why.into())
    }

    pub fn local(why: impl Into<String>) -> Self {
        Self::Local(why.into())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(_) => ExitCode::from(2),
            Self::Call(_) | Self::Local(_) => ExitCode::from(1),
        }
    }

    /// The lines printed on stderr: the code and message, then every hint
    /// the status carries in its details.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Usage(why) => vec![
                format!("error: {why}"),
                "run with --help for the usage".into(),
            ],
            Self::Local(why) => vec![format!("error: {why}")],
            Self::Call(status) => call_lines(status),
        }
    }
}

fn call_lines(status: &tonic::Status) -> Vec<String> {
    let code = agentshare_kit::error::code_name(status.code());
    let mut lines = vec![format!("error: {code}: {}", status.message())];
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for violation in &bad.field_violations {
            let line = format!("{}: {}", violation.field, violation.description);
            // A single fault is often the message itself.
            if !status.message().contains(&line) {
                lines.push(format!("  {line}"));
            }
        }
    }
    if let Some(failed) = details.precondition_failure() {
        for violation in &failed.violations {
            lines.push(format!(
                "  {}: {}",
                violation.subject, violation.description
            ));
        }
    }
    if let Some(info) = details.error_info() {
        let mut metadata: Vec<_> = info.metadata.iter().collect();
        metadata.sort();
        let metadata: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if metadata.is_empty() {
            lines.push(format!("  reason: {}", info.reason));
        } else {
            lines.push(format!(
                "  reason: {} ({})",
                info.reason,
                metadata.join(", ")
            ));
        }
    }
    if let Some(message) = details.localized_message() {
        lines.push(format!("  hint: {}", message.message));
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            lines.push(format!("  see: {} {}", link.description, link.url));
        }
    }
    if let Some(retry) = details.retry_info()
        && let Some(delay) = retry.retry_delay
    {
        lines.push(format!("  retry after {} ms", delay.as_millis()));
    }
    if status.code() == tonic::Code::Unavailable && status.message().contains("connect") {
        lines.push(
            "  hint: nothing answers at the endpoint: is `agentshare serve` running there? \
             set --endpoint, AGENTSHARE_ENDPOINT or a context"
                .into(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn a_refusal_prints_its_code_message_and_every_field_fault() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("name", "must not be empty");
        details.add_precondition_failure_violation("SETUP", "crm", "connect your own CRM");
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "the request has 1 fault",
            details,
        );
        let failure = Failure::from(status);
        assert_eq!(failure.exit_code(), ExitCode::from(1));
        let lines = failure.lines();
        assert_eq!(lines[0], "error: INVALID_ARGUMENT: the request has 1 fault");
        assert!(
            lines.contains(&"  name: must not be empty".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"  crm: connect your own CRM".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_usage_error_exits_2() {
        assert_eq!(Failure::usage("no agent").exit_code(), ExitCode::from(2));
    }
}
