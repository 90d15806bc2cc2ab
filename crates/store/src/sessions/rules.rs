//! The rules of sessions, messages and invocation records: who a session
//! belongs to and who may read it, what a message may be, when a record is
//! the same run recorded again, how a run completes, and how usage is
//! summed per UTC day or month. Plain functions over plain types; the SQL
//! lives in `storage`, the wire in `rpc`.

use agentshare_kit::Error;
use agentshare_kit::identity::{Principal, PrincipalKind, secret_digest};
use agentshare_kit::ids;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use agentshare_kit::db::{Stored, StoredList};

/// Characters of the first user message kept as a session's title.
pub const TITLE_CHARS: usize = 80;

/// Who produced a message. Stored as `user`, `assistant` or `tool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// Whether a session may still be continued. Stored as `active` or
/// `archived`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Active,
    Archived,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Archived => "archived",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// One session as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    #[sqlx(flatten)]
    pub spec: SessionSpec,
    /// SHA-256 of an anonymous session's secret; empty otherwise.
    pub secret_digest: String,
    #[sqlx(try_from = "String")]
    pub state: SessionState,
    pub title: String,
    pub message_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
}

/// Who a session belongs to and where it lives, fixed at creation (but
/// for the agent's display name).
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionSpec {
    pub org_id: String,
    pub agent_id: String,
    pub agent_name: String,
    /// Empty for an anonymous visitor.
    pub user_id: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub anonymous: bool,
    pub grant_id: String,
    pub project_id: String,
    pub workspace_id: String,
}

/// One message as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Message {
    pub sequence: i64,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub content: String,
    pub tool_name: String,
    pub invocation_id: String,
    pub agent_version_number: i64,
    pub created_at: i64,
}

/// One message to append, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub tool_name: String,
}

/// A session's owner and place, checked: a named user or an anonymous
/// visitor, never both.
pub fn session_spec(field: &str, wire: SessionSpec) -> Result<SessionSpec, Error> {
    let at = |name: &str| format!("{field}.{name}");
    let spec = SessionSpec {
        org_id: ids::parse(&at("org_id"), &wire.org_id)?,
        agent_id: ids::parse(&at("agent_id"), &wire.agent_id)?,
        agent_name: wire.agent_name,
        user_id: ids::parse_optional(&at("user_id"), &wire.user_id)?,
        anonymous: wire.anonymous,
        grant_id: ids::parse_optional(&at("grant_id"), &wire.grant_id)?,
        project_id: ids::parse_optional(&at("project_id"), &wire.project_id)?,
        workspace_id: ids::parse_optional(&at("workspace_id"), &wire.workspace_id)?,
    };
    owner_fields(field, &spec)?;
    Ok(spec)
}

/// The owner fields alone: enough to match an existing session.
pub fn owner_fields(field: &str, spec: &SessionSpec) -> Result<(), Error> {
    match (spec.anonymous, spec.user_id.is_empty()) {
        (true, false) => Err(Error::invalid(
            format!("{field}.user_id"),
            "must be empty for an anonymous session",
        )),
        (false, true) => Err(Error::invalid(
            format!("{field}.user_id"),
            "required unless the session is anonymous",
        )),
        _ => Ok(()),
    }
}

/// The digest kept for a new session: an anonymous session needs a secret
/// and a named one must have none.
pub fn new_secret_digest(field: &str, anonymous: bool, secret: &str) -> Result<String, Error> {
    match (anonymous, secret.is_empty()) {
        (true, true) => Err(Error::invalid(
            field,
            "an anonymous session needs a secret: at least 32 random bytes, base64url",
        )),
        (true, false) if secret.len() < 43 => Err(Error::invalid(
            field,
            "is too short: use at least 32 random bytes, base64url",
        )),
        (true, false) => Ok(secret_digest(secret)),
        (false, true) => Ok(String::new()),
        (false, false) => Err(Error::invalid(
            field,
            "only anonymous sessions have a secret; leave it empty",
        )),
    }
}

/// Whether the one continuing a session is the one it belongs to: the same
/// signed-in user, or the anonymous visitor holding its secret. Both sides
/// are compared as digests, so the stored form never meets the secret.
pub fn opens(session: &Session, user_id: &str, secret: &str) -> bool {
    if session.spec.anonymous {
        user_id.is_empty()
            && !secret.is_empty()
            && !session.secret_digest.is_empty()
            && secret_digest(secret) == session.secret_digest
    } else {
        !user_id.is_empty() && session.spec.user_id == user_id
    }
}

/// Whether the one appending to an existing session is the one it belongs
/// to, for the same agent; NOT_FOUND otherwise, as for a session that does
/// not exist.
pub fn continues(session: &Session, spec: &SessionSpec, secret: &str) -> Result<(), Error> {
    let theirs = opens(session, &spec.user_id, secret)
        && session.spec.anonymous == spec.anonymous
        && session.spec.agent_id == spec.agent_id;
    if theirs {
        Ok(())
    } else {
        Err(Error::not_found("session"))
    }
}

/// Whoever reads sessions through the public API, from their Principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    /// A signed-in user, in the request's org.
    User { user_id: String, org_id: String },
    /// A signed-in holder of a grant: only sessions run under it.
    GrantHolder { user_id: String, grant_id: String },
    /// An anonymous visitor of a DELEGATE grant: one session at a time,
    /// with its secret.
    Visitor { grant_id: String },
}

impl Reader {
    pub fn of(principal: &Principal) -> Result<Self, Error> {
        match principal.kind {
            PrincipalKind::User => Ok(Self::User {
                user_id: principal.require_user()?.to_string(),
                org_id: principal.require_org()?.to_string(),
            }),
            PrincipalKind::Grant => {
                let grant_id = principal
                    .grant
                    .as_ref()
                    .map(|g| g.id.clone())
                    .filter(|g| !g.is_empty())
                    .ok_or_else(|| Error::Unauthenticated("share token rejected".into()))?;
                Ok(match principal.user_id.as_deref() {
                    Some(user) if !user.is_empty() => Self::GrantHolder {
                        user_id: user.to_string(),
                        grant_id,
                    },
                    _ => Self::Visitor { grant_id },
                })
            }
        }
    }

    /// Whether this reader may read `session`. Nobody reads another's
    /// session: not the agent's owner, not an org admin.
    pub fn may_read(&self, session: &Session, secret: &str) -> bool {
        match self {
            Self::User { user_id, org_id } => {
                !session.spec.anonymous
                    && session.spec.user_id == *user_id
                    && session.spec.org_id == *org_id
            }
            Self::GrantHolder { user_id, grant_id } => {
                !session.spec.anonymous
                    && session.spec.user_id == *user_id
                    && session.spec.grant_id == *grant_id
            }
            Self::Visitor { grant_id } => {
                session.spec.grant_id == *grant_id && opens(session, "", secret)
            }
        }
    }
}

/// Filters of ListSessions: the reader's own sessions, and those the
/// request names.
pub struct SessionFilter<'a> {
    pub user_id: &'a str,
    pub org_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub state: Option<SessionState>,
}

impl<'a> SessionFilter<'a> {
    /// A user lists their sessions in the org, a grant holder those run
    /// under the grant; an anonymous visitor has no list.
    pub fn of(
        reader: &'a Reader,
        agent_id: Option<&'a str>,
        project_id: Option<&'a str>,
        state: Option<SessionState>,
    ) -> Result<Self, Error> {
        let (user_id, org_id, grant_id) = match reader {
            Reader::User { user_id, org_id } => (user_id, Some(org_id.as_str()), None),
            Reader::GrantHolder { user_id, grant_id } => (user_id, None, Some(grant_id.as_str())),
            Reader::Visitor { .. } => {
                return Err(Error::PermissionDenied(
                    "an anonymous visitor has no session list; read your session with GetSession \
                     and the secret Invoke returned"
                        .into(),
                ));
            }
        };
        Ok(Self {
            user_id,
            org_id,
            grant_id,
            agent_id,
            project_id,
            state,
        })
    }
}

/// A message to append: a known role, text PostgreSQL can store, within
/// the size limit.
pub fn new_message(
    index: usize,
    role: i32,
    content: String,
    tool_name: String,
    max_bytes: u64,
) -> Result<NewMessage, Error> {
    use agentshare_proto::store::v1::MessageRole as Wire;
    let field = |name: &str| format!("messages[{index}].{name}");
    let role = match Wire::try_from(role) {
        Ok(Wire::User) => Role::User,
        Ok(Wire::Assistant) => Role::Assistant,
        Ok(Wire::Tool) => Role::Tool,
        Ok(Wire::Unspecified) | Err(_) => {
            return Err(Error::invalid(
                field("role"),
                "must be USER, ASSISTANT or TOOL",
            ));
        }
    };
    let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
    if size > max_bytes {
        return Err(Error::ResourceExhausted(format!(
            "messages[{index}] is {size} bytes, over the limit of {max_bytes} bytes per message; \
             send a shorter message"
        )));
    }
    if content.contains('\0') || tool_name.contains('\0') {
        return Err(Error::invalid(field("content"), "must not contain U+0000"));
    }
    if role != Role::Tool && !tool_name.is_empty() {
        return Err(Error::invalid(
            field("tool_name"),
            "only TOOL messages name a tool; leave it empty",
        ));
    }
    Ok(NewMessage {
        role,
        content,
        tool_name,
    })
}

/// A session's title: the first 80 characters of its first user message.
pub fn title_of(content: &str) -> String {
    content.chars().take(TITLE_CHARS).collect()
}

/// How a run was called. Stored by these names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallerKind {
    #[default]
    User,
    InvokeGrant,
    DelegateGrant,
    Automation,
}

impl CallerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::InvokeGrant => "invoke_grant",
            Self::DelegateGrant => "delegate_grant",
            Self::Automation => "automation",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "user" => Some(Self::User),
            "invoke_grant" => Some(Self::InvokeGrant),
            "delegate_grant" => Some(Self::DelegateGrant),
            "automation" => Some(Self::Automation),
            _ => None,
        }
    }

    pub fn of_wire(wire: i32) -> Option<Self> {
        use agentshare_proto::store::v1::CallerKind as Wire;
        match Wire::try_from(wire).ok()? {
            Wire::User => Some(Self::User),
            Wire::InvokeGrant => Some(Self::InvokeGrant),
            Wire::DelegateGrant => Some(Self::DelegateGrant),
            Wire::Automation => Some(Self::Automation),
            Wire::Unspecified => None,
        }
    }

    pub fn wire(self) -> i32 {
        use agentshare_proto::store::v1::CallerKind as Wire;
        match self {
            Self::User => Wire::User,
            Self::InvokeGrant => Wire::InvokeGrant,
            Self::DelegateGrant => Wire::DelegateGrant,
            Self::Automation => Wire::Automation,
        }
        .into()
    }

    /// Whether a share grant made the call.
    pub fn is_grant(self) -> bool {
        matches!(self, Self::InvokeGrant | Self::DelegateGrant)
    }
}

crate::stored::by_name!(
    Role: "message role",
    SessionState: "session state",
    Status: "invocation status",
    CallerKind: "caller kind",
);

/// How a run ended. Stored by these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn of_wire(wire: i32) -> Option<Self> {
        use agentshare_proto::store::v1::InvocationStatus as Wire;
        match Wire::try_from(wire).ok()? {
            Wire::Running => Some(Self::Running),
            Wire::Succeeded => Some(Self::Succeeded),
            Wire::Failed => Some(Self::Failed),
            Wire::Cancelled => Some(Self::Cancelled),
            Wire::Unspecified => None,
        }
    }

    pub fn wire(self) -> i32 {
        use agentshare_proto::store::v1::InvocationStatus as Wire;
        match self {
            Self::Running => Wire::Running,
            Self::Succeeded => Wire::Succeeded,
            Self::Failed => Wire::Failed,
            Self::Cancelled => Wire::Cancelled,
        }
        .into()
    }
}

/// Whose connection one integration used; never the connection id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationUse {
    pub key: String,
    pub provider: String,
    /// `owner`, `builder`, `caller` or `holder`.
    pub owner: String,
}

pub fn connection_owner_name(wire: i32) -> Option<&'static str> {
    use agentshare_proto::store::v1::ConnectionOwner as Wire;
    match Wire::try_from(wire).ok()? {
        Wire::Owner => Some("owner"),
        Wire::Builder => Some("builder"),
        Wire::Caller => Some("caller"),
        Wire::Holder => Some("holder"),
        Wire::Unspecified => None,
    }
}

pub fn connection_owner_wire(stored: &str) -> i32 {
    use agentshare_proto::store::v1::ConnectionOwner as Wire;
    match stored {
        "owner" => Wire::Owner,
        "builder" => Wire::Builder,
        "caller" => Wire::Caller,
        "holder" => Wire::Holder,
        _ => Wire::Unspecified,
    }
    .into()
}

/// The integrations of a record, stored as JSON.
impl StoredList for IntegrationUse {
    fn list(stored: &str) -> Result<Vec<Self>, String> {
        serde_json::from_str(stored).map_err(|e| e.to_string())
    }
}

/// One invocation record as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Invocation {
    pub id: String,
    #[sqlx(flatten)]
    pub facts: RunFacts,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub error_code: String,
    pub error_message: String,
    pub duration_micros: Option<i64>,
    pub end_time: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// What the caller states at a run's start, from sharing's plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RunFacts {
    pub org_id: String,
    pub agent_id: String,
    pub agent_owner_user_id: String,
    pub agent_version_number: i64,
    #[sqlx(try_from = "Stored<i64>")]
    pub draft_run: bool,
    #[sqlx(try_from = "String")]
    pub caller_kind: CallerKind,
    pub user_id: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub anonymous: bool,
    pub grant_id: String,
    pub session_id: String,
    pub project_id: String,
    pub automation_run_id: String,
    #[sqlx(try_from = "Stored<String>")]
    pub integrations: Vec<IntegrationUse>,
    pub executes_as_user_id: String,
    pub billed_to_user_id: String,
    pub store_partition: String,
    pub start_time: i64,
}

impl RunFacts {
    /// Whether a retry states the same run. A retry that left the start
    /// time to the server, or knew no session yet (CompleteInvocation may
    /// have added it since), agrees with what is stored.
    pub fn same_run(&self, retry: &RunFacts, retry_set_start: bool) -> bool {
        let stored = RunFacts {
            start_time: if retry_set_start { self.start_time } else { 0 },
            session_id: if retry.session_id.is_empty() {
                String::new()
            } else {
                self.session_id.clone()
            },
            ..self.clone()
        };
        let retry = RunFacts {
            start_time: if retry_set_start { retry.start_time } else { 0 },
            ..retry.clone()
        };
        stored == retry
    }
}

/// Whether a retried create names the session it created: same owner, same
/// agent, same secret.
pub fn same_owner(session: &Session, spec: &SessionSpec, digest: &str) -> Result<(), Error> {
    let same = session.spec.user_id == spec.user_id
        && session.spec.anonymous == spec.anonymous
        && session.spec.agent_id == spec.agent_id
        && session.secret_digest == digest;
    if same {
        Ok(())
    } else {
        Err(Error::invalid(
            "request_id",
            "was already used to start a session for someone else; use a new request_id",
        ))
    }
}

/// The facts of a run's start, checked field by field.
pub fn run_facts(
    record: agentshare_proto::store::v1::InvocationRecord,
    now: i64,
) -> Result<(String, RunFacts, bool), Error> {
    let field = |name: &str| format!("invocation.{name}");
    let required = |name: &str, value: &str| ids::parse(&field(name), value);
    let optional = |name: &str, value: &str| ids::parse_optional(&field(name), value);
    let id = required("id", &record.id)?;
    let caller_kind = CallerKind::of_wire(record.caller_kind).ok_or_else(|| {
        Error::invalid(
            field("caller_kind"),
            "must be USER, INVOKE_GRANT, DELEGATE_GRANT or AUTOMATION",
        )
    })?;
    let user_id = optional("user_id", &record.user_id)?;
    let user_id_fault = match (record.anonymous, user_id.is_empty()) {
        (true, false) => Some("must be empty for an anonymous visitor"),
        (false, true) => Some("required unless the caller is an anonymous visitor"),
        _ => None,
    };
    if let Some(fault) = user_id_fault {
        return Err(Error::invalid(field("user_id"), fault));
    }
    if record.anonymous && caller_kind != CallerKind::DelegateGrant {
        return Err(Error::invalid(
            field("anonymous"),
            "only DELEGATE_GRANT runs have anonymous callers",
        ));
    }
    let grant_id = optional("grant_id", &record.grant_id)?;
    if grant_id.is_empty() && caller_kind.is_grant() {
        return Err(Error::invalid(
            field("grant_id"),
            "required for a grant's run",
        ));
    }
    let version_fault = match (record.draft_run, record.agent_version_number) {
        (true, 0) | (false, 1..) => None,
        (true, _) => Some("must be 0 for a draft run"),
        (false, _) => Some("must be 1 or more; set draft_run for a run of the draft"),
    };
    if let Some(fault) = version_fault {
        return Err(Error::invalid(field("agent_version_number"), fault));
    }
    let mut integrations = Vec::with_capacity(record.integrations.len());
    for (i, used) in record.integrations.into_iter().enumerate() {
        let at = |name: &str| format!("invocation.integrations[{i}].{name}");
        if used.integration_key.is_empty() {
            return Err(Error::invalid(at("integration_key"), "required"));
        }
        let owner = connection_owner_name(used.connection_owner).ok_or_else(|| {
            Error::invalid(
                at("connection_owner"),
                "must be OWNER, BUILDER, CALLER or HOLDER",
            )
        })?;
        integrations.push(IntegrationUse {
            key: used.integration_key,
            provider: used.provider,
            owner: owner.to_string(),
        });
    }
    let start_set = record.start_time.is_some();
    let start_time = match &record.start_time {
        Some(time) => micros_of(&field("start_time"), time)?,
        None => now,
    };
    let facts = RunFacts {
        org_id: required("org_id", &record.org_id)?,
        agent_id: required("agent_id", &record.agent_id)?,
        // Empty for the org default agent: no user owns it, and each run
        // is billed to its caller.
        agent_owner_user_id: optional("agent_owner_user_id", &record.agent_owner_user_id)?,
        agent_version_number: record.agent_version_number,
        draft_run: record.draft_run,
        caller_kind,
        user_id,
        anonymous: record.anonymous,
        grant_id,
        session_id: optional("session_id", &record.session_id)?,
        project_id: optional("project_id", &record.project_id)?,
        automation_run_id: optional("automation_run_id", &record.automation_run_id)?,
        integrations,
        executes_as_user_id: required("executes_as_user_id", &record.executes_as_user_id)?,
        billed_to_user_id: required("billed_to_user_id", &record.billed_to_user_id)?,
        store_partition: record.store_partition,
        start_time,
    };
    Ok((id, facts, start_set))
}

/// What completing a run does, given how it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Still RUNNING: record the end.
    Record,
    /// Already ended so: answer the record as it is.
    Unchanged,
    /// Already ended otherwise: refuse.
    Conflict(Status),
}

pub fn completion(current: Status, requested: Status) -> Completion {
    if current == Status::Running {
        Completion::Record
    } else if current == requested {
        Completion::Unchanged
    } else {
        Completion::Conflict(current)
    }
}

/// The final status a completion names: SUCCEEDED, FAILED or CANCELLED.
pub fn final_status(wire: i32) -> Result<Status, Error> {
    match Status::of_wire(wire) {
        Some(Status::Running) | None => Err(Error::invalid(
            "status",
            "must be SUCCEEDED, FAILED or CANCELLED",
        )),
        Some(status) => Ok(status),
    }
}

/// Whole microseconds of a protobuf time of `seconds` and `nanos`; `None`
/// past the range of i64.
fn micros(seconds: i64, nanos: i32) -> Option<i64> {
    seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(nanos / 1_000)))
}

/// Microseconds of a protobuf timestamp, or INVALID_ARGUMENT naming the
/// field for one before 1970 or out of range.
pub fn micros_of(field: &str, time: &prost_types::Timestamp) -> Result<i64, Error> {
    match micros(time.seconds, time.nanos) {
        Some(m) if m > 0 && (0..1_000_000_000).contains(&time.nanos) => Ok(m),
        _ => Err(Error::invalid(field, "must be a time after 1970 (UTC)")),
    }
}

pub fn duration_micros(field: &str, duration: &prost_types::Duration) -> Result<i64, Error> {
    match micros(duration.seconds, duration.nanos) {
        Some(m) if m >= 0 && duration.nanos >= 0 => Ok(m),
        _ => Err(Error::invalid(field, "must not be negative")),
    }
}

pub fn duration(micros: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A page position that is a number, as the page token carries it.
pub fn cursor_number(part: &str) -> Result<i64, Error> {
    part.parse().map_err(|_| {
        Error::invalid(
            "page_token",
            "is not a token from this listing; start again with an empty token",
        )
    })
}

/// Whether sharing's answer to "may the caller EDIT this agent" lets them
/// read its usage: its owner may, and an org admin for the org default
/// agent, which no user owns. An agent they cannot see, or one deleted, is
/// NOT_FOUND.
pub fn owner_reads_usage(allowed: bool, reason: i32) -> Result<(), Error> {
    use agentshare_proto::sharing::v1::DecisionReason as Reason;
    match Reason::try_from(reason) {
        Ok(Reason::Owner | Reason::OrgAdmin) if allowed => Ok(()),
        Ok(Reason::NotFound | Reason::AgentDeleted) => Err(Error::not_found("agent")),
        _ => Err(Error::PermissionDenied(
            "only the agent's owner reads its usage; read your own with scope BILLED_TO_CALLER"
                .into(),
        )),
    }
}

/// Whose records a usage request reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageFilter {
    /// Billed to this user, optionally for one agent.
    BilledTo { user_id: String, agent_id: String },
    /// Every record of one agent.
    Agent { agent_id: String },
}

/// The time range of a usage request, [start, end) in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: Option<i64>,
    pub end: i64,
}

pub fn range(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    now: i64,
) -> Result<Range, Error> {
    let start = start.map(|t| micros_of("start_time", t)).transpose()?;
    let end = end.map(|t| micros_of("end_time", t)).transpose()?;
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        return Err(Error::invalid("end_time", "must be after start_time"));
    }
    // "Unset for now" takes in runs that started at this very instant.
    Ok(Range {
        start,
        end: end.unwrap_or_else(|| now.saturating_add(1)),
    })
}

/// How SummarizeUsage buckets rows in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Whole,
    Day,
    Month,
}

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// The UTC day a time falls in, as microseconds of its midnight.
#[cfg(test)]
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS) * DAY_MICROS
}

/// The [start, end) of the period holding the day starting at `day`.
pub fn period_of(period: Period, day: i64, range: Range) -> (Option<i64>, i64) {
    match period {
        Period::Whole => (range.start, range.end),
        Period::Day => (Some(day), day + DAY_MICROS),
        Period::Month => {
            let date = chrono::DateTime::from_timestamp_micros(day)
                .map(|t| t.date_naive())
                .unwrap_or_default();
            let first = date.with_day(1).unwrap_or(date);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            let micros = |d: NaiveDate| {
                d.and_hms_opt(0, 0, 0)
                    .map_or(0, |t| t.and_utc().timestamp_micros())
            };
            (Some(micros(first)), micros(next))
        }
    }
}

/// The totals of one group on one UTC day, as storage sums them.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DayTotals {
    #[sqlx(rename = "grp")]
    pub group: String,
    pub day: i64,
    #[sqlx(flatten)]
    pub totals: Totals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Totals {
    pub invocations: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub running: i64,
    pub duration_micros: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.invocations += other.invocations;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.running += other.running;
        self.duration_micros += other.duration_micros;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// One summary row: a group over one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub group: String,
    pub period_start: Option<i64>,
    pub period_end: i64,
    pub totals: Totals,
}

/// Folds daily totals into the requested periods, ordered by period and
/// then by group id, as the contract lists them.
pub fn summarize(days: Vec<DayTotals>, period: Period, range: Range) -> Vec<SummaryRow> {
    let mut rows: std::collections::BTreeMap<(Option<i64>, String), SummaryRow> =
        std::collections::BTreeMap::new();
    for day in days {
        let (period_start, period_end) = period_of(period, day.day, range);
        rows.entry((period_start, day.group.clone()))
            .or_insert_with(|| SummaryRow {
                group: day.group,
                period_start,
                period_end,
                totals: Totals::default(),
            })
            .totals
            .add(&day.totals);
    }
    rows.into_values().collect()
}

/// The page of summary rows after `after` (period start, group), and
/// whether more follow.
pub fn summary_page(
    rows: Vec<SummaryRow>,
    after: Option<&(i64, String)>,
    size: i64,
) -> (Vec<SummaryRow>, bool) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut page: Vec<SummaryRow> = rows
        .into_iter()
        .filter(|row| {
            after.is_none_or(|(start, group)| {
                (row.period_start.unwrap_or(0), &row.group) > (*start, group)
            })
        })
        .take(size.saturating_add(1))
        .collect();
    let more = page.len() > size;
    page.truncate(size);
    (page, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(anonymous: bool, secret: &str) -> Session {
        Session {
            id: "s".into(),
            spec: SessionSpec {
                org_id: "o".into(),
                agent_id: "a".into(),
                user_id: if anonymous { String::new() } else { "u".into() },
                anonymous,
                grant_id: "g".into(),
                ..SessionSpec::default()
            },
            secret_digest: if anonymous {
                secret_digest(secret)
            } else {
                String::new()
            },
            state: SessionState::Active,
            title: String::new(),
            message_count: 0,
            created_at: 0,
            updated_at: 0,
            archived_at: None,
        }
    }

    #[test]
    fn a_session_opens_for_its_user_or_its_secret_only() {
        let named = session(false, "");
        assert!(opens(&named, "u", ""));
        assert!(!opens(&named, "v", ""));
        assert!(!opens(&named, "", ""));
        let anonymous = session(true, "s3cret");
        assert!(opens(&anonymous, "", "s3cret"));
        assert!(!opens(&anonymous, "", "wrong"));
        assert!(!opens(&anonymous, "", ""));
        assert!(!opens(&anonymous, "u", "s3cret"));
    }

    #[test]
    fn readers_see_their_own_sessions_only() {
        let named = session(false, "");
        let user = |user: &str, org: &str| Reader::User {
            user_id: user.into(),
            org_id: org.into(),
        };
        assert!(user("u", "o").may_read(&named, ""));
        assert!(!user("u", "other-org").may_read(&named, ""));
        assert!(!user("v", "o").may_read(&named, ""));
        let holder = |grant: &str| Reader::GrantHolder {
            user_id: "u".into(),
            grant_id: grant.into(),
        };
        assert!(holder("g").may_read(&named, ""));
        assert!(!holder("h").may_read(&named, ""));
        let anonymous = session(true, "s3cret");
        let visitor = |grant: &str| Reader::Visitor {
            grant_id: grant.into(),
        };
        assert!(visitor("g").may_read(&anonymous, "s3cret"));
        assert!(!visitor("g").may_read(&anonymous, "nope"));
        assert!(!visitor("h").may_read(&anonymous, "s3cret"));
        assert!(!user("", "o").may_read(&anonymous, "s3cret"));
    }

    #[test]
    fn anonymous_sessions_need_a_long_secret_and_named_ones_none() {
        assert!(new_secret_digest("s", true, "").is_err());
        assert!(new_secret_digest("s", true, "short").is_err());
        assert_eq!(
            new_secret_digest("s", true, &"x".repeat(43)),
            Ok(secret_digest(&"x".repeat(43)))
        );
        assert_eq!(new_secret_digest("s", false, ""), Ok(String::new()));
        assert!(new_secret_digest("s", false, "x").is_err());
    }

    #[test]
    fn messages_have_a_role_and_fit_the_limit() {
        let user = agentshare_proto::store::v1::MessageRole::User as i32;
        assert!(new_message(0, user, "hi".into(), String::new(), 2).is_ok());
        assert!(matches!(
            new_message(0, user, "hey".into(), String::new(), 2),
            Err(Error::ResourceExhausted(_))
        ));
        assert!(new_message(0, 0, "hi".into(), String::new(), 2).is_err());
        assert!(new_message(0, user, "a\0".into(), String::new(), 9).is_err());
        assert!(new_message(0, user, "a".into(), "tool".into(), 9).is_err());
    }

    #[test]
    fn only_the_owner_or_an_admin_of_the_default_agent_reads_its_usage() {
        use agentshare_proto::sharing::v1::DecisionReason as Reason;
        assert_eq!(owner_reads_usage(true, Reason::Owner.into()), Ok(()));
        assert_eq!(owner_reads_usage(true, Reason::OrgAdmin.into()), Ok(()));
        assert!(matches!(
            owner_reads_usage(true, Reason::WorkspaceMember.into()),
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            owner_reads_usage(false, Reason::Owner.into()),
            Err(Error::PermissionDenied(_))
        ));
        for gone in [Reason::NotFound, Reason::AgentDeleted] {
            assert_eq!(
                owner_reads_usage(false, gone.into()),
                Err(Error::not_found("agent"))
            );
        }
    }

    #[test]
    fn titles_keep_80_characters() {
        assert_eq!(title_of(&"é".repeat(100)).chars().count(), 80);
        assert_eq!(title_of("short"), "short");
    }

    #[test]
    fn a_retry_is_the_same_run_unless_a_fact_differs() {
        let stored = RunFacts {
            agent_id: "a".into(),
            session_id: "s".into(),
            start_time: 10,
            caller_kind: CallerKind::User,
            ..RunFacts::default()
        };
        let retry = RunFacts {
            session_id: String::new(),
            start_time: 99,
            ..stored.clone()
        };
        assert!(stored.same_run(&retry, false));
        assert!(!stored.same_run(&retry, true));
        let other = RunFacts {
            billed_to_user_id: "x".into(),
            ..stored.clone()
        };
        assert!(!stored.same_run(&other, true));
    }

    #[test]
    fn a_run_completes_once() {
        assert_eq!(
            completion(Status::Running, Status::Failed),
            Completion::Record
        );
        assert_eq!(
            completion(Status::Failed, Status::Failed),
            Completion::Unchanged
        );
        assert_eq!(
            completion(Status::Succeeded, Status::Failed),
            Completion::Conflict(Status::Succeeded)
        );
        assert!(final_status(1).is_err());
        assert!(final_status(0).is_err());
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        // 2024-02-29T13:00:00Z, a leap day.
        let t = 1_709_211_600 * 1_000_000;
        let day = day_of(t);
        assert_eq!(day, 1_709_164_800 * 1_000_000);
        let range = Range {
            start: None,
            end: t,
        };
        assert_eq!(
            period_of(Period::Day, day, range),
            (Some(day), day + DAY_MICROS)
        );
        // February 2024 runs from the 1st to March 1st.
        assert_eq!(
            period_of(Period::Month, day, range),
            (Some(1_706_745_600 * 1_000_000), 1_709_251_200 * 1_000_000)
        );
        // December rolls into the next year.
        let december = 1_703_030_400 * 1_000_000; // 2023-12-20
        assert_eq!(
            period_of(Period::Month, day_of(december), range).1,
            1_704_067_200 * 1_000_000
        );
        assert_eq!(period_of(Period::Whole, day, range), (None, t));
    }

    #[test]
    fn summaries_fold_days_and_page_by_period_then_group() {
        let range = Range {
            start: None,
            end: 100 * DAY_MICROS,
        };
        let totals = Totals {
            invocations: 1,
            succeeded: 1,
            ..Totals::default()
        };
        let days = vec![
            DayTotals {
                group: "b".into(),
                day: 0,
                totals,
            },
            DayTotals {
                group: "a".into(),
                day: DAY_MICROS,
                totals,
            },
            DayTotals {
                group: "b".into(),
                day: DAY_MICROS,
                totals,
            },
        ];
        let whole = summarize(days.clone(), Period::Whole, range);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].group, "a");
        assert_eq!(whole[1].totals.invocations, 2);
        let daily = summarize(days, Period::Day, range);
        let order: Vec<_> = daily
            .iter()
            .map(|r| (r.period_start, r.group.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (Some(0), "b"),
                (Some(DAY_MICROS), "a"),
                (Some(DAY_MICROS), "b")
            ]
        );
        let (first, more) = summary_page(daily.clone(), None, 2);
        assert!(more);
        let (rest, more) = summary_page(daily, Some(&(DAY_MICROS, "a".into())), 2);
        assert!(!more);
        assert_eq!(first.len() + rest.len(), 3);
        assert_eq!(rest[0].group, "b");
    }
}
