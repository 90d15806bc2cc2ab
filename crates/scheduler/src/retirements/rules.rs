//! What users pinned to a retiring version are told (DESIGN.md, "Access
//! model (sharing)", Versions): once when the owner deprecates it, with the
//! note, the sunset and the changes to the latest version, and once more
//! when it retires. A user who pinned it is told about their own pin; the
//! user who created a grant pinned to it is told about the grant, since a
//! grant's token names no holder the scheduler could reach.

use agentshare_kit::clock::utc_minute;
use agentshare_proto::sharing::v1 as sharing;

use crate::subscriptions::rules::{Channel, InboxKind, Notice};

/// The stage of a retirement a notice reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Deprecated,
    Retired,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deprecated => "deprecated",
            Self::Retired => "retired",
        }
    }
}

/// A deprecated version as registry announced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deprecation {
    pub agent_id: String,
    pub org_id: String,
    pub agent_name: String,
    pub version: i64,
    pub sunset_at: i64,
    pub note: String,
    /// The version pinned runs move to: the latest when the notice is made.
    pub latest_version: i64,
    /// The changes from `version` to the latest, in words.
    pub changes: String,
}

/// One user to tell, and why: their own pin, the grants they created, or
/// both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: String,
    pub pinned_self: bool,
    /// The labels of their grants pinned to the version.
    pub grants: Vec<String>,
}

/// Who to tell about a version's pins, one entry per user, by user id.
pub fn recipients(pins: &sharing::VersionPins) -> Vec<Recipient> {
    let mut recipients: Vec<Recipient> = Vec::new();
    fn entry<'r>(recipients: &'r mut Vec<Recipient>, user_id: &str) -> &'r mut Recipient {
        let at = match recipients.iter().position(|r| r.user_id == user_id) {
            Some(at) => at,
            None => {
                recipients.push(Recipient {
                    user_id: user_id.to_string(),
                    ..Recipient::default()
                });
                recipients.len() - 1
            }
        };
        &mut recipients[at]
    }
    for user in &pins.users {
        entry(&mut recipients, &user.user_id).pinned_self = true;
    }
    for grant in pins.grants.iter().filter(|g| !g.creator_user_id.is_empty()) {
        entry(&mut recipients, &grant.creator_user_id)
            .grants
            .push(format!("\"{}\"", grant.label));
    }
    recipients.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    recipients
}

/// Whose runs the notice is about, in words.
fn whose(recipient: &Recipient) -> String {
    let grants = match recipient.grants.len() {
        0 => String::new(),
        1 => format!("your grant {}", recipient.grants[0]),
        _ => format!("your grants {}", recipient.grants.join(", ")),
    };
    match (recipient.pinned_self, grants.is_empty()) {
        (true, true) => "your runs".into(),
        (true, false) => format!("your runs and those of {grants}"),
        (false, _) => format!("the runs of {grants}"),
    }
}

/// The notice one recipient gets at `stage`.
pub fn notice(stage: Stage, deprecation: &Deprecation, recipient: &Recipient) -> Notice {
    let Deprecation {
        agent_name: name,
        version,
        latest_version: latest,
        ..
    } = deprecation;
    let sunset = utc_minute(deprecation.sunset_at);
    let whose = whose(recipient);
    let (kind, title, body) = match stage {
        Stage::Deprecated => {
            let note = match deprecation.note.trim() {
                "" => String::new(),
                note => format!(" The owner's note: {note}"),
            };
            (
                InboxKind::VersionDeprecated,
                format!("{name} v{version} retires on {sunset}"),
                format!(
                    "The owner of {name} deprecated v{version}, which {whose} are pinned to. \
                     Until {sunset} nothing changes; from then on {whose} use the latest version \
                     (v{latest} now).{note} Changes from v{version} to v{latest}: {}. \
                     To move earlier, pin v{latest} or unpin.",
                    deprecation.changes
                ),
            )
        }
        Stage::Retired => (
            InboxKind::VersionRetired,
            format!("{name} v{version} retired: now v{latest}"),
            format!(
                "v{version} of {name} retired on {sunset}, so {whose} now use the latest \
                 version, v{latest}. The pin stays until it is removed; pin another version \
                 or unpin to clear it."
            ),
        ),
    };
    Notice {
        org_id: deprecation.org_id.clone(),
        user_id: recipient.user_id.clone(),
        kind,
        title,
        body,
        agent_id: deprecation.agent_id.clone(),
        automation_key: String::new(),
        run_id: String::new(),
        session_id: String::new(),
        channels: vec![Channel::Web],
        email: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins() -> sharing::VersionPins {
        sharing::VersionPins {
            version: 2,
            users: vec![
                sharing::PinnedUser {
                    user_id: "bob".into(),
                    ..Default::default()
                },
                sharing::PinnedUser {
                    user_id: "alice".into(),
                    ..Default::default()
                },
            ],
            grants: vec![
                sharing::PinnedGrant {
                    label: "widget".into(),
                    creator_user_id: "alice".into(),
                    ..Default::default()
                },
                sharing::PinnedGrant {
                    label: "site".into(),
                    creator_user_id: "carol".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn deprecation() -> Deprecation {
        Deprecation {
            agent_id: "a".into(),
            org_id: "o".into(),
            agent_name: "Helper".into(),
            version: 2,
            sunset_at: 1_766_239_200_000_000,
            note: "v3 cites sources".into(),
            latest_version: 3,
            changes: "description changed".into(),
        }
    }

    #[test]
    fn each_user_is_told_once_about_their_pin_and_their_grants() {
        let recipients = recipients(&pins());
        let ids: Vec<&str> = recipients.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(ids, ["alice", "bob", "carol"]);
        assert!(recipients[0].pinned_self);
        assert_eq!(recipients[0].grants, ["\"widget\""]);
        assert!(!recipients[2].pinned_self);
    }

    #[test]
    fn a_deprecation_notice_has_the_note_the_sunset_and_the_changes() {
        let recipients = recipients(&pins());
        let told = notice(Stage::Deprecated, &deprecation(), &recipients[0]);
        assert_eq!(told.kind, InboxKind::VersionDeprecated);
        assert_eq!(told.title, "Helper v2 retires on 2025-12-20 14:00 UTC");
        for part in [
            "your runs and those of your grant \"widget\"",
            "v3 cites sources",
            "Changes from v2 to v3: description changed",
        ] {
            assert!(told.body.contains(part), "{part:?} in {}", told.body);
        }
        let retired = notice(Stage::Retired, &deprecation(), &recipients[2]);
        assert_eq!(retired.kind, InboxKind::VersionRetired);
        assert!(
            retired
                .body
                .contains("the runs of your grant \"site\" now use the latest version, v3"),
            "{}",
            retired.body
        );
    }
}
