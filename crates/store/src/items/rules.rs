//! The workspace store's rules: what a key and a value may be, the quotas,
//! compare-and-set, where publishing may go, list pages, and who a write
//! records as its writer. Plain functions
//! over plain types; the SQL lives in `storage`, the wire in `rpc`.

use agentshare_kit::Error;
use agentshare_kit::config;
use agentshare_kit::identity::Principal;
use agentshare_proto::errors::v1::ErrorReason;

/// The ErrorInfo domain of the store's details.
const ERROR_DOMAIN: &str = "store.agentshare";

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;
/// Characters of a value shown by WorkspaceList.
pub const PREVIEW_CHARS: usize = 200;
/// How a value is read. Stored as `json` or `text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Text,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

impl TryFrom<String> for ContentType {
    type Error = String;

    fn try_from(stored: String) -> Result<Self, String> {
        match stored.as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(format!("stored content type {stored:?}")),
        }
    }
}

/// Which kind of partition a call resolved to, as sharing answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `user-<userId>`: the owner's own unshared agents.
    Private,
    /// Any partition of an agent's own store.
    Shared,
}

/// The partition a call reads and writes, never chosen by the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub scope: Scope,
    /// Why the agent's store write policy refuses this caller's writes
    /// here, as sharing words it; `None` when they may write.
    pub write_refusal: Option<String>,
}

impl Partition {
    /// Whether the caller may write here: PERMISSION_DENIED naming the
    /// agent's store write policy when not. Reads never ask.
    pub fn require_writable(&self) -> Result<(), Error> {
        match &self.write_refusal {
            Some(refusal) => Err(Error::PermissionDenied(refusal.clone())),
            None => Ok(()),
        }
    }
}

/// What kind of caller made a write. Stored as its lowercase name; an item
/// written before writers were recorded has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterKind {
    User,
    InvokeGrant,
    DelegateGrant,
    AnonymousSession,
    AutomationRun,
}

impl WriterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::InvokeGrant => "invoke_grant",
            Self::DelegateGrant => "delegate_grant",
            Self::AnonymousSession => "anonymous_session",
            Self::AutomationRun => "automation_run",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        [
            Self::User,
            Self::InvokeGrant,
            Self::DelegateGrant,
            Self::AnonymousSession,
            Self::AutomationRun,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == stored)
    }
}

/// Who made one write, as the server saw the caller. Each field is empty
/// when it does not apply; `kind` is empty for an item written before
/// writers were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Writer {
    #[sqlx(rename = "writer_kind")]
    pub kind: String,
    #[sqlx(rename = "writer_user_id")]
    pub user_id: String,
    #[sqlx(rename = "writer_grant_id")]
    pub grant_id: String,
    #[sqlx(rename = "writer_session_id")]
    pub session_id: String,
    #[sqlx(rename = "writer_automation_run_id")]
    pub automation_run_id: String,
    #[sqlx(rename = "writer_via_agent_id")]
    pub via_agent_id: String,
    #[sqlx(rename = "writer_published_from")]
    pub published_from_agent_id: String,
}

/// The writer of a call by `caller` through `via_agent` (for a publish,
/// the target agent, with the agent it came from). Taken from the signed
/// Principal alone, so a client cannot claim to be someone else:
/// - an automation run (its run token says so) writes for its user;
/// - a grant's holder writes as the grant, a DELEGATE grant without a user
///   as an anonymous session (the run's session, when there is a run);
/// - anyone else is the signed-in user.
pub fn writer_of(caller: &Principal, via_agent: &str, published_from: Option<&str>) -> Writer {
    use agentshare_kit::identity::GrantKind;
    let origin = caller.run.as_ref().map(|run| &run.origin);
    let automation_run = origin.and_then(|o| o.automation_run_id.clone());
    let kind = match (&caller.grant, &automation_run) {
        (_, Some(_)) => WriterKind::AutomationRun,
        (Some(grant), None) if grant.kind == GrantKind::Invoke => WriterKind::InvokeGrant,
        (Some(_), None) if caller.user_id.is_some() => WriterKind::DelegateGrant,
        (Some(_), None) => WriterKind::AnonymousSession,
        (None, None) => WriterKind::User,
    };
    let session_id = match kind {
        WriterKind::AnonymousSession => origin.and_then(|o| o.session_id.clone()),
        _ => None,
    };
    Writer {
        kind: kind.as_str().into(),
        user_id: caller.user_id.clone().unwrap_or_default(),
        grant_id: caller
            .grant
            .as_ref()
            .map(|g| g.id.clone())
            .unwrap_or_default(),
        session_id: session_id.unwrap_or_default(),
        automation_run_id: automation_run.unwrap_or_default(),
        via_agent_id: via_agent.to_string(),
        published_from_agent_id: published_from.unwrap_or_default().to_string(),
    }
}

/// The quotas in force, from config.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_value_bytes: i64,
    pub max_items: i64,
    pub max_total_bytes: i64,
}

impl Limits {
    pub fn from_config(store: &config::Store) -> Self {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            max_value_bytes: clamp(store.max_value_bytes),
            max_items: clamp(store.max_items),
            max_total_bytes: clamp(store.max_total_bytes),
        }
    }
}

/// Compare-and-set failed: ABORTED with an `ErrorInfo` naming the item's
/// revision (`current`, 0 if absent) and the one the client expected.
pub fn revision_mismatch(expected: i64, current: i64) -> Error {
    let message = match (expected, current) {
        (0, current) => format!(
            "the key already exists at revision {current}; read it and write with that revision"
        ),
        (expected, 0) => format!(
            "the item does not exist, so it is not at revision {expected}; \
             write with expected_revision 0 to create it"
        ),
        (expected, current) => format!(
            "the item is at revision {current}, not {expected}; read it again, recompute and retry"
        ),
    };
    Error::Conflict {
        message,
        reason: ErrorReason::RevisionMismatch,
        domain: ERROR_DOMAIN.into(),
        metadata: [
            ("current_revision".into(), current.to_string()),
            ("expected_revision".into(), expected.to_string()),
        ]
        .into(),
    }
}

/// A key is 1 to 512 bytes of UTF-8 with no control characters.
pub fn check_key(field: &str, key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    check_key_text(field, key)
}

/// A key prefix follows the key rules but may be empty.
pub fn check_prefix(field: &str, prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key_text(field, prefix)
}

fn check_key_text(field: &str, key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes of UTF-8; at most {MAX_KEY_BYTES} are allowed",
                key.len()
            ),
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!(
                "holds the control character U+{:04X}; use printable characters only",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// The content type a write names; UNSPECIFIED means text.
pub fn content_type_of(wire: i32) -> Result<ContentType, Error> {
    use agentshare_proto::store::v1::ItemContentType as Wire;
    match Wire::try_from(wire) {
        Ok(Wire::Json) => Ok(ContentType::Json),
        Ok(Wire::Text | Wire::Unspecified) => Ok(ContentType::Text),
        Err(_) => Err(Error::invalid(
            "content_type",
            format!("{wire} is not a content type; use JSON or TEXT"),
        )),
    }
}

/// A value must fit the size limit; a JSON value must parse. Text may be
/// anything but U+0000, which PostgreSQL cannot store in text, so both
/// backends refuse it alike.
pub fn check_value(value: &str, content_type: ContentType, limits: &Limits) -> Result<(), Error> {
    let size = byte_len(value);
    if size > limits.max_value_bytes {
        return Err(Error::quota(
            format!(
                "the value is {size} bytes, over the limit of {} bytes per item; \
                 store it in smaller items",
                limits.max_value_bytes
            ),
            "value_bytes",
            format!(
                "value is {size} bytes; the limit is {} bytes",
                limits.max_value_bytes
            ),
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid("value", "must not contain U+0000"));
    }
    if content_type == ContentType::Json
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(value)
    {
        return Err(Error::invalid(
            "value",
            format!("is not valid JSON ({e}); send valid JSON or use content type TEXT"),
        ));
    }
    Ok(())
}

pub fn byte_len(value: &str) -> i64 {
    i64::try_from(value.len()).unwrap_or(i64::MAX)
}

/// A compare-and-set condition on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Write whatever is there.
    Any,
    /// The key must not exist.
    Absent,
    /// The item must exist at this revision.
    Revision(i64),
}

impl Expected {
    /// The condition of a write: absent, 0 (create only) or N > 0.
    pub fn for_write(field: &str, wire: Option<i64>) -> Result<Self, Error> {
        match wire {
            None => Ok(Self::Any),
            Some(0) => Ok(Self::Absent),
            Some(n) if n > 0 => Ok(Self::Revision(n)),
            Some(n) => Err(Error::invalid(
                field,
                format!("{n} is negative; use 0 to create only, or the item's revision"),
            )),
        }
    }

    /// The condition of a delete: absent or N > 0; 0 means nothing to
    /// delete and is refused.
    pub fn for_delete(wire: Option<i64>) -> Result<Self, Error> {
        match wire {
            Some(0) => Err(Error::invalid(
                "expected_revision",
                "0 would delete only an absent item; omit it or pass the item's revision",
            )),
            other => Self::for_write("expected_revision", other),
        }
    }

    /// Whether an item at `current` (0 when absent) meets the condition.
    pub fn check(self, current: i64) -> Result<(), Error> {
        let expected = match self {
            Self::Any => return Ok(()),
            Self::Absent if current == 0 => return Ok(()),
            Self::Revision(n) if n == current => return Ok(()),
            Self::Absent => 0,
            Self::Revision(n) => n,
        };
        Err(revision_mismatch(expected, current))
    }
}

/// A partition's use before a write, and what the write changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Usage {
    pub item_count: i64,
    pub total_bytes: i64,
}

/// The use after putting `new_size` bytes where `old_size` stood (`None`
/// when the key is new). Only a limit that the write makes worse is
/// checked, so a partition over a lowered limit can still shrink.
pub fn usage_after_put(
    before: Usage,
    old_size: Option<i64>,
    new_size: i64,
    limits: &Limits,
) -> Result<Usage, Error> {
    let after = Usage {
        item_count: before.item_count + i64::from(old_size.is_none()),
        total_bytes: before.total_bytes - old_size.unwrap_or(0) + new_size,
    };
    if after.item_count > before.item_count && after.item_count > limits.max_items {
        return Err(Error::quota(
            format!(
                "this store is full: {} of {} items used; delete items to make room",
                before.item_count, limits.max_items
            ),
            "items",
            format!("{} of {} items used", before.item_count, limits.max_items),
        ));
    }
    if after.total_bytes > before.total_bytes && after.total_bytes > limits.max_total_bytes {
        return Err(Error::quota(
            format!(
                "this store is full: {} of {} bytes used, and the value needs {new_size}; \
                 delete items to make room",
                before.total_bytes, limits.max_total_bytes
            ),
            "total_bytes",
            format!(
                "{} of {} bytes used",
                before.total_bytes, limits.max_total_bytes
            ),
        ));
    }
    Ok(after)
}

/// Publishing goes one way: from the caller's private store into the store
/// of another, shared agent.
pub fn check_publish(
    source_agent: &str,
    source: &Partition,
    target_agent: &str,
    target: &Partition,
) -> Result<(), Error> {
    if source_agent.eq_ignore_ascii_case(target_agent) {
        return Err(Error::FailedPrecondition(
            "an agent cannot publish into its own store; name another, shared agent as the target"
                .into(),
        ));
    }
    if source.scope != Scope::Private {
        return Err(Error::FailedPrecondition(
            "publishing goes one way, from a private store to a shared one, and this agent's store is shared; \
             write to the target agent directly"
                .into(),
        ));
    }
    if target.scope == Scope::Private {
        return Err(Error::FailedPrecondition(
            "the target agent is visible but not shared, so its store is private; \
             share it first or publish to a shared agent"
                .into(),
        ));
    }
    Ok(())
}

/// The first 200 characters of a value.
pub fn preview(value: &str) -> String {
    value.chars().take(PREVIEW_CHARS).collect()
}

/// Whether `partition` belongs to the store of `agent_id`: the org-wide
/// `agent-<id>` or any `agent-<id>/...` partition.
pub fn belongs_to_agent(partition: &str, agent_id: &str) -> bool {
    partition
        .strip_prefix("agent-")
        .and_then(|rest| rest.strip_prefix(agent_id))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_value_bytes: 10,
        max_items: 2,
        max_total_bytes: 15,
    };

    /// The one quota a refusal names.
    fn quota_subject<T: std::fmt::Debug>(outcome: Result<T, Error>) -> String {
        match outcome {
            Err(Error::Quota(_, violations)) if violations.len() == 1 => {
                violations[0].subject.clone()
            }
            other => panic!("expected one quota, got {other:?}"),
        }
    }

    #[test]
    fn a_revision_mismatch_names_both_revisions() {
        let Error::Conflict {
            reason, metadata, ..
        } = revision_mismatch(2, 3)
        else {
            panic!("expected a conflict");
        };
        assert_eq!(reason, ErrorReason::RevisionMismatch);
        assert_eq!(metadata["current_revision"], "3");
        assert_eq!(metadata["expected_revision"], "2");
    }

    #[test]
    fn keys_are_short_printable_utf8() {
        assert!(check_key("key", "notes/2026-01 ✓").is_ok());
        assert!(check_key("key", "").is_err());
        assert!(check_key("key", "a\u{7}b").is_err());
        assert!(check_key("key", "a\u{85}b").is_err());
        assert!(check_key("key", &"é".repeat(256)).is_ok());
        assert!(check_key("key", &"é".repeat(257)).is_err());
        assert!(check_prefix("key_prefix", "").is_ok());
    }

    #[test]
    fn values_fit_the_limit_and_json_parses() {
        assert!(check_value("{\"a\":1}", ContentType::Json, &LIMITS).is_ok());
        assert!(check_value("{a}", ContentType::Json, &LIMITS).is_err());
        assert!(check_value("{a}", ContentType::Text, &LIMITS).is_ok());
        assert_eq!(
            quota_subject(check_value("01234567890", ContentType::Text, &LIMITS)),
            "value_bytes"
        );
        assert!(check_value("a\0b", ContentType::Text, &LIMITS).is_err());
    }

    #[test]
    fn compare_and_set_names_the_current_revision() {
        assert!(Expected::Any.check(7).is_ok());
        assert!(Expected::Absent.check(0).is_ok());
        assert_eq!(Expected::Absent.check(3), Err(revision_mismatch(0, 3)));
        assert!(Expected::Revision(3).check(3).is_ok());
        assert_eq!(Expected::Revision(2).check(0), Err(revision_mismatch(2, 0)));
        assert!(Expected::for_delete(Some(0)).is_err());
        assert!(Expected::for_write("expected_revision", Some(-1)).is_err());
    }

    #[test]
    fn quotas_check_only_what_a_write_makes_worse() {
        let full = Usage {
            item_count: 2,
            total_bytes: 14,
        };
        assert_eq!(
            quota_subject(usage_after_put(full, None, 1, &LIMITS)),
            "items"
        );
        assert_eq!(
            quota_subject(usage_after_put(full, Some(4), 6, &LIMITS)),
            "total_bytes"
        );
        let over = Usage {
            item_count: 5,
            total_bytes: 40,
        };
        assert_eq!(
            usage_after_put(over, Some(10), 2, &LIMITS),
            Ok(Usage {
                item_count: 5,
                total_bytes: 32
            })
        );
    }

    #[test]
    fn an_agents_store_is_its_org_wide_partition_and_its_slashed_ones() {
        assert!(belongs_to_agent("agent-a1", "a1"));
        assert!(belongs_to_agent("agent-a1/ws", "a1"));
        assert!(!belongs_to_agent("agent-a12/ws", "a1"));
        assert!(!belongs_to_agent("user-a1", "a1"));
    }

    fn caller(user: Option<&str>, grant: Option<agentshare_kit::identity::GrantKind>) -> Principal {
        let mut principal = Principal::user(user.unwrap_or_default());
        principal.user_id = user.map(str::to_string);
        principal.grant = grant.map(|kind| agentshare_kit::identity::HeldGrant {
            id: "g1".into(),
            kind,
            agent_id: "a1".into(),
        });
        principal
    }

    fn in_run(mut principal: Principal, session: &str, automation: Option<&str>) -> Principal {
        principal.run = Some(agentshare_kit::identity::RunScope {
            run_id: "r1".into(),
            agent_id: "a1".into(),
            partition: "agent-a1/ws".into(),
            origin: agentshare_kit::identity::RunOrigin {
                session_id: Some(session.into()),
                automation_run_id: automation.map(str::to_string),
            },
        });
        principal
    }

    #[test]
    fn a_writer_is_told_by_its_principal_alone() {
        use agentshare_kit::identity::GrantKind::{Delegate, Invoke};
        let user = writer_of(&caller(Some("u1"), None), "a1", None);
        assert_eq!(
            (
                user.kind.as_str(),
                user.user_id.as_str(),
                user.grant_id.as_str()
            ),
            ("user", "u1", "")
        );
        assert_eq!(user.via_agent_id, "a1");
        let invoke = writer_of(&caller(Some("u2"), Some(Invoke)), "a1", None);
        assert_eq!(
            (invoke.kind.as_str(), invoke.grant_id.as_str()),
            ("invoke_grant", "g1")
        );
        let delegate = writer_of(&caller(Some("u3"), Some(Delegate)), "a1", None);
        assert_eq!(delegate.kind, "delegate_grant");
        let anonymous = writer_of(
            &in_run(caller(None, Some(Delegate)), "s1", None),
            "a1",
            None,
        );
        assert_eq!(
            (
                anonymous.kind.as_str(),
                anonymous.user_id.as_str(),
                anonymous.session_id.as_str()
            ),
            ("anonymous_session", "", "s1")
        );
        // A signed-in user's run session is not recorded: the user says it.
        let signed_in = writer_of(&in_run(caller(Some("u1"), None), "s2", None), "a1", None);
        assert_eq!(
            (signed_in.kind.as_str(), signed_in.session_id.as_str()),
            ("user", "")
        );
        let automation = writer_of(
            &in_run(caller(Some("u4"), None), "s3", Some("run-9")),
            "a1",
            None,
        );
        assert_eq!(
            (
                automation.kind.as_str(),
                automation.user_id.as_str(),
                automation.automation_run_id.as_str()
            ),
            ("automation_run", "u4", "run-9")
        );
        let published = writer_of(&caller(Some("u1"), None), "target", Some("private"));
        assert_eq!(
            (
                published.via_agent_id.as_str(),
                published.published_from_agent_id.as_str()
            ),
            ("target", "private")
        );
        for writer in [user, invoke, delegate, anonymous, automation] {
            assert!(WriterKind::parse(&writer.kind).is_some(), "{}", writer.kind);
        }
    }

    #[test]
    fn a_refused_partition_refuses_writes_with_the_policy() {
        let mut partition = Partition {
            name: "agent-a1/ws".into(),
            scope: Scope::Shared,
            write_refusal: None,
        };
        assert!(partition.require_writable().is_ok());
        partition.write_refusal = Some("store write policy OWNER_ONLY: only the owner".into());
        assert!(matches!(
            partition.require_writable(),
            Err(Error::PermissionDenied(message)) if message.contains("OWNER_ONLY")
        ));
    }

    #[test]
    fn previews_count_characters_not_bytes() {
        let value = "é".repeat(300);
        assert_eq!(preview(&value).chars().count(), 200);
        assert_eq!(preview("short"), "short");
    }
}
