//! Retiring an older version on a schedule (DESIGN.md, "Access model
//! (sharing)", Versions): the owner deprecates a version with a sunset and a
//! note; pins of it hold until the sunset, and from then on runs pinned to
//! it use the latest version. The latest version is never deprecated, so
//! "the latest" is always a version that does not retire.

use agentshare_kit::Error;
use agentshare_kit::clock::utc_minute;
use agentshare_proto::registry::v1 as pb;

use super::Head;

/// A sunset up to this long ago counts as "now", for clients whose clock
/// runs a little behind the server's.
pub const SUNSET_GRACE_MICROS: i64 = 60 * 1_000_000;
/// The furthest ahead a sunset may be: two years.
pub const MAX_SUNSET_AHEAD_MICROS: i64 = 2 * 366 * 24 * 3600 * 1_000_000;
/// The longest note, as for a deploy's notes.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The most changes a notice lists one by one.
const SUMMARY_CHANGES: usize = 10;

/// A deprecation as the caller asked for it, checked before anything is
/// read: the version named, and the sunset (UTC microseconds) and note.
pub fn check_deprecation(
    version_number: i64,
    sunset: Option<i64>,
    note: &str,
    now: i64,
) -> Result<i64, Error> {
    check_version_number(version_number)?;
    let Some(sunset) = sunset else {
        return Err(Error::invalid(
            "sunset_time",
            "required: when the version retires",
        ));
    };
    if sunset < now - SUNSET_GRACE_MICROS {
        return Err(Error::invalid(
            "sunset_time",
            format!(
                "is in the past ({}); pass now or a later time",
                utc_minute(sunset)
            ),
        ));
    }
    if sunset > now.saturating_add(MAX_SUNSET_AHEAD_MICROS) {
        return Err(Error::invalid(
            "sunset_time",
            "must be at most two years ahead",
        ));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(Error::invalid(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(sunset)
}

/// A version number a deprecation names: 1 or more.
pub fn check_version_number(version_number: i64) -> Result<(), Error> {
    if version_number < 1 {
        return Err(Error::invalid("version_number", "required: 1 or more"));
    }
    Ok(())
}

/// Whether a version deprecated with `sunset` has retired at `now`.
pub fn retired(sunset: Option<i64>, now: i64) -> bool {
    sunset.is_some_and(|sunset| sunset <= now)
}

/// The version may be deprecated: it is not the latest (whose pins would
/// have nothing to move to), and it has not retired already, since its
/// pinned users have been moved and told.
pub fn require_deprecable(
    head: Head,
    version: i64,
    sunset: Option<i64>,
    now: i64,
) -> Result<(), Error> {
    if version == head.latest_version {
        return Err(Error::FailedPrecondition(format!(
            "version {version} is the latest; deploy a newer version first, then deprecate this one"
        )));
    }
    require_not_retired(version, sunset, now)
}

/// A retirement is final: once the sunset has passed, pinned runs have moved
/// on and their users were told.
pub fn require_not_retired(version: i64, sunset: Option<i64>, now: i64) -> Result<(), Error> {
    match sunset {
        Some(sunset) if retired(Some(sunset), now) => Err(Error::FailedPrecondition(format!(
            "version {version} retired on {}; a retirement is final: pin or roll back to a later version instead",
            utc_minute(sunset)
        ))),
        _ => Ok(()),
    }
}

/// The changes from the deprecated version to the latest in a few lines,
/// for the notice pinned users get: one per changed field, then how many
/// more. The diff is of holder views, so it never shows instructions.
pub fn changes_summary(changes: &[pb::FieldChange]) -> String {
    if changes.is_empty() {
        return "no changes visible to you".into();
    }
    let mut lines: Vec<String> = changes
        .iter()
        .take(SUMMARY_CHANGES)
        .map(|change| {
            let kind = match pb::FieldChangeKind::try_from(change.kind) {
                Ok(pb::FieldChangeKind::Added) => "added",
                Ok(pb::FieldChangeKind::Removed) => "removed",
                _ => "changed",
            };
            format!("{} {kind}", change.field_path)
        })
        .collect();
    if changes.len() > SUMMARY_CHANGES {
        lines.push(format!("and {} more", changes.len() - SUMMARY_CHANGES));
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000_000_000;
    const HOUR: i64 = 3600 * 1_000_000;
    const HEAD: Head = Head {
        draft_revision: 3,
        latest_version: 3,
    };

    fn field(error: Error) -> String {
        match error {
            Error::InvalidArgument(violations) => violations[0].field.clone(),
            other => panic!("not INVALID_ARGUMENT: {other:?}"),
        }
    }

    #[test]
    fn a_deprecation_names_a_version_a_sunset_from_now_on_and_a_short_note() {
        assert_eq!(
            check_deprecation(2, Some(NOW + HOUR), "", NOW).expect("ok"),
            NOW + HOUR
        );
        // A client a few seconds behind retires it at once.
        assert!(check_deprecation(2, Some(NOW - 5_000_000), "", NOW).is_ok());
        for (version, sunset, note, bad) in [
            (0, Some(NOW + HOUR), "", "version_number"),
            (2, None, "", "sunset_time"),
            (2, Some(NOW - 2 * HOUR), "", "sunset_time"),
            (
                2,
                Some(NOW + MAX_SUNSET_AHEAD_MICROS + 1),
                "",
                "sunset_time",
            ),
        ] {
            assert_eq!(
                field(check_deprecation(version, sunset, note, NOW).expect_err("bad")),
                bad
            );
        }
        let long = "n".repeat(MAX_NOTE_CHARS + 1);
        assert_eq!(
            field(check_deprecation(2, Some(NOW + HOUR), &long, NOW).expect_err("long")),
            "note"
        );
    }

    #[test]
    fn the_latest_and_a_retired_version_are_not_deprecated() {
        assert!(require_deprecable(HEAD, 2, None, NOW).is_ok());
        assert!(
            require_deprecable(HEAD, 2, Some(NOW + HOUR), NOW).is_ok(),
            "a new sunset"
        );
        let latest = require_deprecable(HEAD, 3, None, NOW).expect_err("latest");
        assert!(
            matches!(&latest, Error::FailedPrecondition(m) if m.contains("deploy a newer version first")),
            "{latest:?}"
        );
        let retired_already = require_deprecable(HEAD, 2, Some(NOW), NOW).expect_err("retired");
        assert!(
            matches!(&retired_already, Error::FailedPrecondition(m) if m.contains("final")),
            "{retired_already:?}"
        );
        assert!(retired(Some(NOW), NOW));
        assert!(!retired(Some(NOW + 1), NOW));
        assert!(!retired(None, NOW));
    }

    #[test]
    fn a_summary_names_each_change_and_counts_the_rest() {
        let change = |path: &str, kind: pb::FieldChangeKind| pb::FieldChange {
            field_path: path.into(),
            kind: kind.into(),
            base_value: None,
            target_value: None,
        };
        assert_eq!(changes_summary(&[]), "no changes visible to you");
        assert_eq!(
            changes_summary(&[
                change("description", pb::FieldChangeKind::Modified),
                change("tools[crm]", pb::FieldChangeKind::Added),
            ]),
            "description changed; tools[crm] added"
        );
        let many: Vec<_> = (0..12)
            .map(|n| change(&format!("tools[t{n}]"), pb::FieldChangeKind::Removed))
            .collect();
        assert!(changes_summary(&many).ends_with("; and 2 more"));
    }
}
