//! The owner's store write policy (SharingService.SetStoreWritePolicy): who
//! may write an agent's shared store partitions, decided for each tool call
//! with the partition, so a change applies to the very next write.
//!
//! The policy governs the partitions other users' runs read: the workspace
//! partitions, the DELEGATE home partition and the org default agent's
//! org-wide one. The owner's private `user-<id>` store and an INVOKE
//! holder's own partition are the writer's own data, which no other user's
//! run reads, so no mode restricts them: an owner who wants only their own
//! words in front of other users' runs gets that without taking an INVOKE
//! holder's memory away.

use agentshare_kit::Error;
use agentshare_proto::sharing::v1 as pb;

use crate::access::rules::decision::{StoreScope, Subject};
use crate::access::storage::agent_access::AgentRow;
use crate::access::storage::grants::GrantKind;
use crate::tenancy::rules::OrgRole;

/// Who may write the shared partitions. Stored as `owner_only`, `members`
/// or `runners`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Writers {
    /// The owner; for the org default agent, org owners and admins.
    OwnerOnly,
    /// The owner and workspace members running it as members.
    Members,
    /// Everyone who may run it: today's behaviour, the default.
    #[default]
    Runners,
}

impl Writers {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnerOnly => "owner_only",
            Self::Members => "members",
            Self::Runners => "runners",
        }
    }

    /// The name a refusal gives, as the API spells it.
    fn api_name(self) -> &'static str {
        match self {
            Self::OwnerOnly => "OWNER_ONLY",
            Self::Members => "MEMBERS",
            Self::Runners => "RUNNERS",
        }
    }

    pub fn to_proto(self) -> pb::StoreWriters {
        match self {
            Self::OwnerOnly => pb::StoreWriters::OwnerOnly,
            Self::Members => pb::StoreWriters::Members,
            Self::Runners => pb::StoreWriters::Runners,
        }
    }
}

/// A stored setting; anything unknown reads as the narrowest, so a bad row
/// never opens the store wider than its owner chose.
impl From<String> for Writers {
    fn from(stored: String) -> Self {
        match stored.as_str() {
            "runners" => Self::Runners,
            "members" => Self::Members,
            _ => Self::OwnerOnly,
        }
    }
}

/// An agent's store write policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoreWritePolicy {
    #[sqlx(rename = "store_writers", try_from = "String")]
    pub writers: Writers,
    #[sqlx(
        rename = "store_anonymous_writes",
        try_from = "agentshare_kit::db::Stored<i64>"
    )]
    pub anonymous_writes: bool,
}

impl Default for StoreWritePolicy {
    fn default() -> Self {
        Self {
            writers: Writers::Runners,
            anonymous_writes: true,
        }
    }
}

impl StoreWritePolicy {
    pub fn to_proto(self) -> pb::StoreWritePolicy {
        pb::StoreWritePolicy {
            writers: self.writers.to_proto().into(),
            anonymous_writes: if self.anonymous_writes {
                pb::AnonymousStoreWrites::Allow
            } else {
                pb::AnonymousStoreWrites::Deny
            }
            .into(),
        }
    }

    /// The policy after a request: settings it leaves UNSPECIFIED keep
    /// their value, and it must name at least one.
    pub fn updated(self, request: &pb::SetStoreWritePolicyRequest) -> Result<Self, Error> {
        let writers = match pb::StoreWriters::try_from(request.writers) {
            Ok(pb::StoreWriters::Unspecified) => None,
            Ok(pb::StoreWriters::OwnerOnly) => Some(Writers::OwnerOnly),
            Ok(pb::StoreWriters::Members) => Some(Writers::Members),
            Ok(pb::StoreWriters::Runners) => Some(Writers::Runners),
            Err(_) => {
                return Err(Error::invalid(
                    "writers",
                    format!(
                        "{} is not a setting; use OWNER_ONLY, MEMBERS or RUNNERS",
                        request.writers
                    ),
                ));
            }
        };
        let anonymous_writes = match pb::AnonymousStoreWrites::try_from(request.anonymous_writes) {
            Ok(pb::AnonymousStoreWrites::Unspecified) => None,
            Ok(pb::AnonymousStoreWrites::Allow) => Some(true),
            Ok(pb::AnonymousStoreWrites::Deny) => Some(false),
            Err(_) => {
                return Err(Error::invalid(
                    "anonymous_writes",
                    format!(
                        "{} is not a setting; use ALLOW or DENY",
                        request.anonymous_writes
                    ),
                ));
            }
        };
        if writers.is_none() && anonymous_writes.is_none() {
            return Err(Error::invalid(
                "writers",
                "name the writers, anonymous_writes, or both; an empty request changes nothing",
            ));
        }
        Ok(Self {
            writers: writers.unwrap_or(self.writers),
            anonymous_writes: anonymous_writes.unwrap_or(self.anonymous_writes),
        })
    }

    /// The audit record's view of the policy.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "writers": self.writers.api_name(),
            "anonymous_writes": if self.anonymous_writes { "ALLOW" } else { "DENY" },
        })
    }
}

/// How a writer stands with the agent, for its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterClass {
    Owner,
    Member,
    /// A DELEGATE grant with a signed-in user.
    GrantHolder,
    /// A DELEGATE grant without a signed-in user.
    Anonymous,
}

fn class_of(agent: &AgentRow, subject: &Subject) -> WriterClass {
    match &subject.grant {
        Some(grant) if grant.kind == GrantKind::Delegate && !grant.with_user => {
            WriterClass::Anonymous
        }
        Some(_) => WriterClass::GrantHolder,
        None if agent.is_default => {
            let org_admin = subject.org_id == agent.org_id
                && subject.org_role.is_some_and(OrgRole::manages_org);
            if org_admin {
                WriterClass::Owner
            } else {
                WriterClass::Member
            }
        }
        None if agent.owner_user_id == subject.user_id => WriterClass::Owner,
        None => WriterClass::Member,
    }
}

/// Why `subject` may not write the partition of `scope` they resolved to in
/// `agent`'s store; `None` when they may. The message is the store's
/// PERMISSION_DENIED answer: it names the policy and who can change it,
/// never the owner's identity, which an anonymous visitor must not learn.
pub fn write_refusal(agent: &AgentRow, subject: &Subject, scope: StoreScope) -> Option<String> {
    if matches!(
        scope,
        StoreScope::UserPrivate | StoreScope::AgentGrantHolder
    ) {
        return None;
    }
    let policy = agent.store_policy;
    let class = class_of(agent, subject);
    let change_it = if agent.is_default {
        "ask an org owner or admin to change it"
    } else {
        "ask the agent's owner to change it"
    };
    if class == WriterClass::Anonymous && !policy.anonymous_writes {
        return Some(format!(
            "store write policy anonymous_writes DENY: visitors without a signed-in user read \
             this agent's store but do not write it; {change_it}"
        ));
    }
    let allowed = match policy.writers {
        Writers::Runners => true,
        Writers::Members => matches!(class, WriterClass::Owner | WriterClass::Member),
        Writers::OwnerOnly => class == WriterClass::Owner,
    };
    if allowed {
        return None;
    }
    let who = match (policy.writers, agent.is_default) {
        (Writers::OwnerOnly, false) => "only the agent's owner writes its shared store",
        (Writers::OwnerOnly, true) => "only org owners and admins write this agent's store",
        _ => {
            "only the agent's owner and workspace members write its shared store, \
              not share-grant holders"
        }
    };
    Some(format!(
        "store write policy {}: {who}; {change_it}",
        policy.writers.api_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::rules::decision::GrantHeld;
    use crate::access::storage::agent_access::AccessState;
    use crate::access::storage::grants::GrantState;

    fn agent(writers: Writers, anonymous_writes: bool, is_default: bool) -> AgentRow {
        AgentRow {
            agent_id: "agent-1".into(),
            org_id: "org-1".into(),
            owner_user_id: if is_default { "" } else { "u-owner" }.into(),
            home_workspace_id: "ws".into(),
            state: AccessState::Active,
            is_default,
            is_managed: false,
            shared: true,
            workspaces: vec!["ws".into()],
            latest_version: 1,
            name: "Agent".into(),
            description: String::new(),
            store_policy: StoreWritePolicy {
                writers,
                anonymous_writes,
            },
        }
    }

    fn user(id: &str, role: OrgRole) -> Subject {
        Subject {
            user_id: id.into(),
            org_id: "org-1".into(),
            org_role: Some(role),
            workspaces_enabled: false,
            active_workspace: Some("ws".into()),
            memberships: vec!["ws".into()],
            org_default_workspace: "ws".into(),
            grant: None,
        }
    }

    fn holder(kind: GrantKind, with_user: bool) -> Subject {
        Subject {
            grant: Some(GrantHeld {
                id: "grant-1".into(),
                kind,
                agent_id: "agent-1".into(),
                state: GrantState::Active,
                with_user,
            }),
            // A DELEGATE grant acts as the owner; the class must still be
            // the grant's, never the owner's.
            ..user("u-owner", OrgRole::Member)
        }
    }

    /// Which of owner, member, DELEGATE holder, anonymous visitor may write
    /// the home partition.
    fn writers_under(agent: &AgentRow) -> [bool; 4] {
        let scope = StoreScope::AgentWorkspace;
        [
            user("u-owner", OrgRole::Member),
            user("bob", OrgRole::Member),
            holder(GrantKind::Delegate, true),
            holder(GrantKind::Delegate, false),
        ]
        .map(|subject| write_refusal(agent, &subject, scope).is_none())
    }

    #[test]
    fn each_mode_lets_its_writers_in_and_no_one_else() {
        use Writers::*;
        let cases = [
            (Runners, true, [true, true, true, true]),
            (Runners, false, [true, true, true, false]),
            (Members, true, [true, true, false, false]),
            (Members, false, [true, true, false, false]),
            (OwnerOnly, true, [true, false, false, false]),
            (OwnerOnly, false, [true, false, false, false]),
        ];
        for (writers, anonymous, expected) in cases {
            assert_eq!(
                writers_under(&agent(writers, anonymous, false)),
                expected,
                "{writers:?} with anonymous writes {anonymous}"
            );
        }
    }

    #[test]
    fn the_default_is_todays_behaviour() {
        assert_eq!(
            writers_under(&agent(Writers::Runners, true, false)),
            [true; 4]
        );
        assert_eq!(
            StoreWritePolicy::default(),
            agent(Writers::Runners, true, false).store_policy
        );
    }

    #[test]
    fn private_and_holder_partitions_are_never_restricted() {
        let strict = agent(Writers::OwnerOnly, false, false);
        let invoke = holder(GrantKind::Invoke, true);
        assert_eq!(
            write_refusal(&strict, &invoke, StoreScope::AgentGrantHolder),
            None
        );
        assert_eq!(
            write_refusal(
                &strict,
                &user("u-owner", OrgRole::Member),
                StoreScope::UserPrivate
            ),
            None
        );
    }

    #[test]
    fn refusals_name_the_policy_and_who_changes_it() {
        let strict = agent(Writers::OwnerOnly, true, false);
        let refusal = write_refusal(
            &strict,
            &user("bob", OrgRole::Member),
            StoreScope::AgentWorkspace,
        )
        .expect("refused");
        assert!(
            refusal.starts_with("store write policy OWNER_ONLY: "),
            "{refusal}"
        );
        assert!(refusal.contains("ask the agent's owner"), "{refusal}");
        let closed = agent(Writers::Runners, false, false);
        let refusal = write_refusal(
            &closed,
            &holder(GrantKind::Delegate, false),
            StoreScope::AgentHome,
        )
        .expect("refused");
        assert!(
            refusal.starts_with("store write policy anonymous_writes DENY"),
            "{refusal}"
        );
        // Never who the owner is: an anonymous visitor must not learn it.
        assert!(!refusal.contains("u-owner"), "{refusal}");
    }

    #[test]
    fn org_admins_are_the_owners_of_the_default_agent() {
        let default = agent(Writers::OwnerOnly, true, true);
        let scope = StoreScope::AgentOrgWide;
        assert_eq!(
            write_refusal(&default, &user("ann", OrgRole::Admin), scope),
            None
        );
        assert_eq!(
            write_refusal(&default, &user("olga", OrgRole::Owner), scope),
            None
        );
        let refusal =
            write_refusal(&default, &user("bob", OrgRole::Member), scope).expect("refused");
        assert!(refusal.contains("org owner or admin"), "{refusal}");
        let members = agent(Writers::Members, true, true);
        assert_eq!(
            write_refusal(&members, &user("bob", OrgRole::Member), scope),
            None
        );
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let policy = StoreWritePolicy::default();
        let request = |writers: pb::StoreWriters, anonymous: pb::AnonymousStoreWrites| {
            pb::SetStoreWritePolicyRequest {
                agent_id: "agent-1".into(),
                writers: writers.into(),
                anonymous_writes: anonymous.into(),
            }
        };
        let members = policy
            .updated(&request(
                pb::StoreWriters::Members,
                pb::AnonymousStoreWrites::Unspecified,
            ))
            .expect("valid");
        assert_eq!(members.writers, Writers::Members);
        assert!(members.anonymous_writes);
        let closed = members
            .updated(&request(
                pb::StoreWriters::Unspecified,
                pb::AnonymousStoreWrites::Deny,
            ))
            .expect("valid");
        assert_eq!(closed.writers, Writers::Members);
        assert!(!closed.anonymous_writes);
        assert!(
            policy
                .updated(&request(
                    pb::StoreWriters::Unspecified,
                    pb::AnonymousStoreWrites::Unspecified
                ))
                .is_err()
        );
        let mut unknown = request(pb::StoreWriters::Members, pb::AnonymousStoreWrites::Allow);
        unknown.writers = 9;
        assert!(policy.updated(&unknown).is_err());
    }

    #[test]
    fn an_unknown_stored_setting_reads_as_the_narrowest() {
        assert_eq!(Writers::from("runners".to_string()), Writers::Runners);
        assert_eq!(Writers::from("members".to_string()), Writers::Members);
        assert_eq!(Writers::from("garbled".to_string()), Writers::OwnerOnly);
    }
}
