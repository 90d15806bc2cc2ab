//! When a draft may become a version, and from which version a rollback or
//! a template starts. Each rule reads the agent's head as it was read before
//! the write, and the caller's expectation of it, so a write never lands on
//! a state its caller did not see.

use agentshare_kit::Error;
use agentshare_kit::error::Precondition;
use agentshare_proto::errors::v1::ErrorReason;
use agentshare_proto::registry::v1 as pb;

use super::{Access, shown, tools_without_connection, validate_draft};

/// Where an agent's draft and versions stand, as read before a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Counts the draft's edits; a draft write names the one it read.
    pub draft_revision: i64,
    /// The latest version's number; 0 while nothing is deployed.
    pub latest_version: i64,
}

/// The writes that name the draft revision they start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftWrite {
    Edit,
    Deploy,
}

/// A draft write must name the revision it read: without one it could
/// overwrite an edit its caller never saw, or deploy one they never
/// reviewed.
pub fn check_expected_revision(write: DraftWrite, expected: i64) -> Result<(), Error> {
    if expected > 0 {
        return Ok(());
    }
    let read = match write {
        DraftWrite::Edit => "read",
        DraftWrite::Deploy => "reviewed",
    };
    Err(Error::invalid(
        "expected_draft_revision",
        format!("required: pass the draft_revision you {read}"),
    ))
}

/// The draft is still the one the caller read.
pub fn require_draft_revision(head: Head, expected: i64) -> Result<(), Error> {
    if head.draft_revision == expected {
        Ok(())
    } else {
        Err(aborted_draft(head.draft_revision))
    }
}

/// ABORTED for a draft that moved on since the caller read it.
pub fn aborted_draft(current: i64) -> Error {
    Error::Aborted(format!(
        "the draft changed since you read it (it is now at revision {current}); read the agent again, reapply your change and retry"
    ))
}

/// What a deploy makes a version of: the draft the caller reviewed, which,
/// unlike a draft being edited, must be complete.
pub fn deploy_content(
    head: Head,
    expected_draft_revision: i64,
    draft: &pb::AgentDraft,
) -> Result<pb::AgentDraft, Error> {
    require_draft_revision(head, expected_draft_revision)?;
    validate_draft("draft", draft.clone())
}

/// A rollback needs a deployed version to replace and, when the caller
/// names the latest one they saw, that it is still the latest.
pub fn check_rollback(head: Head, expected_latest_version: Option<i64>) -> Result<(), Error> {
    if head.latest_version == 0 {
        return Err(Error::FailedPrecondition(
            "the agent has no deployed version yet; deploy it first".into(),
        ));
    }
    match expected_latest_version {
        Some(expected) if expected != head.latest_version => Err(Error::Aborted(format!(
            "version {} was deployed since you read the agent; read it again and retry",
            head.latest_version
        ))),
        _ => Ok(()),
    }
}

/// A template publishes a deployed version, named by its number.
pub fn check_publish(head: Head, version_number: i64) -> Result<(), Error> {
    if head.latest_version == 0 {
        return Err(Error::FailedPrecondition(
            "the agent has no deployed version to publish; deploy it first".into(),
        ));
    }
    if version_number <= 0 {
        return Err(Error::invalid("version_number", "required: 1 or more"));
    }
    Ok(())
}

/// What becomes of content offered as the next version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextVersion {
    /// It equals the latest version, which stands: repeating a deploy or a
    /// rollback makes no new version.
    Unchanged,
    /// It becomes a new version.
    New,
}

/// Whether `content` makes a new version after `latest`: only when it
/// differs, and never with a SHARED tool that names no connection.
pub fn next_version(
    latest: Option<&pb::AgentDraft>,
    content: &pb::AgentDraft,
) -> Result<NextVersion, Error> {
    if latest == Some(content) {
        return Ok(NextVersion::Unchanged);
    }
    let missing = tools_without_connection(content);
    if missing.is_empty() {
        Ok(NextVersion::New)
    } else {
        Err(undeployable(&missing))
    }
}

/// FAILED_PRECONDITION naming each SHARED tool that needs a connection.
fn undeployable(keys: &[String]) -> Error {
    Error::Unmet(
        format!(
            "these SHARED tools need one of your connections before a version can be made: {}; \
             set their connection_id with UpdateDraft and deploy again",
            keys.join(", ")
        ),
        keys.iter()
            .map(|key| {
                Precondition::new(
                    ErrorReason::SharedToolWithoutConnection,
                    format!("tools[{key}]"),
                    format!("the SHARED tool {key} names none of your connections"),
                )
            })
            .collect(),
    )
}

/// ABORTED once every attempt of a deploy or rollback found another
/// version landed between its read and its write.
pub fn writes_raced() -> Error {
    Error::Aborted("other deploys kept landing first; read the agent again and retry".into())
}

/// One side of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffSide {
    Draft,
    Version(i64),
}

impl DiffSide {
    /// The side a request's selector names, under the request's `field`.
    pub fn of(
        field: &str,
        selector: Option<&pb::version_selector::Selector>,
    ) -> Result<Self, Error> {
        use pb::version_selector::Selector;
        match selector {
            None => Err(Error::invalid(field, "name a version_number or the draft")),
            Some(Selector::Draft(false)) => Err(Error::invalid(
                format!("{field}.draft"),
                "must be true when set",
            )),
            Some(Selector::Draft(true)) => Ok(Self::Draft),
            Some(Selector::VersionNumber(number)) => Ok(Self::Version(*number)),
        }
    }
}

/// Whether `access` may read `side`, and what of `content` it then
/// compares: only editors read the draft, and anyone else compares holder
/// views, so changes outside the holder view stay hidden.
pub fn side_shown(
    access: Access,
    side: DiffSide,
    content: &pb::AgentDraft,
) -> Result<pb::AgentDraft, Error> {
    if side == DiffSide::Draft && access != Access::Edit {
        return Err(Error::PermissionDenied(
            "only the agent's editors may read its draft".into(),
        ));
    }
    Ok(shown(access, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Head = Head {
        draft_revision: 4,
        latest_version: 2,
    };
    const NEVER_DEPLOYED: Head = Head {
        latest_version: 0,
        ..HEAD
    };

    fn draft(name: &str) -> pb::AgentDraft {
        pb::AgentDraft {
            name: name.into(),
            ..Default::default()
        }
    }

    fn shared_tool(connection_id: &str) -> pb::Tool {
        pb::Tool {
            integration_key: "crm".into(),
            provider: "hubspot".into(),
            scope: pb::IntegrationScope::Shared.into(),
            connection_id: connection_id.into(),
            display_name: String::new(),
        }
    }

    #[test]
    fn a_draft_write_names_the_revision_it_read() {
        for write in [DraftWrite::Edit, DraftWrite::Deploy] {
            assert!(check_expected_revision(write, 1).is_ok());
            for missing in [0, -1] {
                let error = check_expected_revision(write, missing).expect_err("required");
                assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
            }
        }
        let error = check_expected_revision(DraftWrite::Deploy, 0).expect_err("required");
        assert!(error.to_string().contains("you reviewed"), "{error}");
        assert!(require_draft_revision(HEAD, 4).is_ok());
        let error = require_draft_revision(HEAD, 3).expect_err("moved on");
        assert!(
            matches!(&error, Error::Aborted(m) if m.contains("now at revision 4")),
            "{error:?}"
        );
    }

    #[test]
    fn a_deploy_takes_the_reviewed_draft_only_when_complete() {
        let content = deploy_content(HEAD, 4, &draft("  Helper ")).expect("deployable");
        assert_eq!(content.name, "Helper", "stored as validated");
        assert!(matches!(
            deploy_content(HEAD, 3, &draft("Helper")),
            Err(Error::Aborted(_))
        ));
        assert!(matches!(
            deploy_content(HEAD, 4, &draft(" ")),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_rollback_needs_a_deployed_version_that_is_still_the_latest() {
        assert!(matches!(
            check_rollback(NEVER_DEPLOYED, None),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(check_rollback(HEAD, None).is_ok());
        assert!(check_rollback(HEAD, Some(2)).is_ok());
        let error = check_rollback(HEAD, Some(1)).expect_err("raced");
        assert!(
            matches!(&error, Error::Aborted(m) if m.starts_with("version 2 was deployed")),
            "{error:?}"
        );
    }

    #[test]
    fn a_template_publishes_a_deployed_version() {
        assert!(matches!(
            check_publish(NEVER_DEPLOYED, 1),
            Err(Error::FailedPrecondition(_))
        ));
        assert!(matches!(
            check_publish(HEAD, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(check_publish(HEAD, 1).is_ok());
    }

    #[test]
    fn only_new_content_with_connected_shared_tools_makes_a_version() {
        let latest = draft("Helper");
        assert_eq!(
            next_version(Some(&latest), &latest).expect("same"),
            NextVersion::Unchanged
        );
        assert_eq!(
            next_version(Some(&latest), &draft("Helper 2")).expect("new"),
            NextVersion::New
        );
        assert_eq!(
            next_version(None, &latest).expect("first"),
            NextVersion::New
        );
        let mut connected = draft("Helper");
        connected.tools.push(shared_tool("conn-1"));
        assert_eq!(
            next_version(Some(&latest), &connected).expect("connected"),
            NextVersion::New
        );
        let mut unconnected = draft("Helper");
        unconnected.tools.push(shared_tool(""));
        let error = next_version(Some(&latest), &unconnected).expect_err("unconnected");
        assert!(
            matches!(&error, Error::Unmet(_, unmet) if unmet[0].subject == "tools[crm]"),
            "{error:?}"
        );
    }

    #[test]
    fn a_diff_side_is_the_draft_or_a_version() {
        use pb::version_selector::Selector;
        assert_eq!(
            DiffSide::of("base", Some(&Selector::Draft(true))).expect("draft"),
            DiffSide::Draft
        );
        assert_eq!(
            DiffSide::of("base", Some(&Selector::VersionNumber(3))).expect("version"),
            DiffSide::Version(3)
        );
        for (selector, field) in [(None, "base"), (Some(Selector::Draft(false)), "base.draft")] {
            let error = DiffSide::of("base", selector.as_ref()).expect_err("unnamed");
            assert!(
                matches!(&error, Error::InvalidArgument(v) if v[0].field == field),
                "{error:?}"
            );
        }
    }

    #[test]
    fn only_editors_diff_the_draft_and_others_compare_holder_views() {
        let mut content = draft("Helper");
        content.instructions = "secret sauce".into();
        assert_eq!(
            side_shown(Access::Edit, DiffSide::Draft, &content).expect("editor"),
            content
        );
        assert!(matches!(
            side_shown(Access::Read, DiffSide::Draft, &content),
            Err(Error::PermissionDenied(_))
        ));
        let seen = side_shown(Access::Read, DiffSide::Version(1), &content).expect("holder");
        assert!(seen.instructions.is_empty(), "instructions stay hidden");
        assert_eq!(seen.name, "Helper");
    }
}
