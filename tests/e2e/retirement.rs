//! Versions that retire on a schedule (DESIGN.md, "Access model (sharing)",
//! Versions): the owner deprecates an older version with a sunset and a
//! note; users and grants pinned to it keep it until the sunset and are
//! told, with the changes to the latest; from the sunset on their runs use
//! the latest version, and they are told again. Time is the suite's manual
//! clock.

use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, eventually};
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;

use crate::assert_status;
use crate::automations::automations;

const DAY: Duration = Duration::from_secs(86_400);

/// An org where Alice owns "Research", shared with Bob, at version 2 (whose
/// description differs from version 1's).
struct World {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    bob_id: String,
    agent_id: String,
}

impl World {
    /// Moves the suite clock, with fresh session tokens for everyone (a
    /// token lives an hour of the suite clock).
    fn advance(&mut self, by: Duration) {
        self.suite.clock.advance(by);
        self.alice = self.alice.with_token(&self.suite.token("alice"));
        self.bob = self.bob.with_token(&self.suite.token("bob"));
        self.carol = self.carol.with_token(&self.suite.token("carol"));
    }
}

async fn world() -> World {
    world_on(Suite::start().await).await
}

async fn world_on(suite: Suite) -> World {
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_id = bob.user_id().await;
    let carol_id = carol.user_id().await;
    strong.add_member(&bob_id, sharing::OrgRole::Member).await;
    strong.add_member(&carol_id, sharing::OrgRole::Member).await;
    let agent = alice.shared_agent("Research").await;
    let mut edit = registry::UpdateDraftRequest {
        agent_id: agent.id.clone(),
        draft: Some(registry::AgentDraft {
            description: "Now with citations".into(),
            ..Default::default()
        }),
        update_mask: Some(Default::default()),
        expected_draft_revision: agent.draft_revision,
    };
    if let Some(mask) = edit.update_mask.as_mut() {
        mask.paths = vec!["description".into()];
    }
    let edited = alice
        .registry()
        .update_draft(edit)
        .await
        .expect("edit")
        .into_inner()
        .agent
        .expect("agent");
    alice.deploy(&edited).await;
    World {
        agent_id: agent.id,
        suite,
        alice,
        bob,
        carol,
        bob_id,
    }
}

async fn deprecate(
    owner: &UserClient,
    agent_id: &str,
    version: i64,
    sunset_micros: i64,
    note: &str,
) -> Result<registry::AgentVersion, tonic::Status> {
    owner
        .registry()
        .deprecate_version(registry::DeprecateVersionRequest {
            agent_id: agent_id.into(),
            version_number: version,
            sunset_time: Some(timestamp(sunset_micros)),
            note: note.into(),
        })
        .await
        .map(|r| r.into_inner().version.expect("version"))
}

async fn pin(
    user: &UserClient,
    agent_id: &str,
    version: i64,
) -> Result<sharing::Pin, tonic::Status> {
    user.access()
        .pin_version(sharing::PinVersionRequest {
            agent_id: agent_id.into(),
            version,
        })
        .await
        .map(|r| r.into_inner().pin.expect("pin"))
}

async fn row(user: &UserClient, agent_id: &str) -> sharing::MyAgent {
    user.access()
        .list_my_agents(sharing::ListMyAgentsRequest::default())
        .await
        .expect("my agents")
        .into_inner()
        .agents
        .into_iter()
        .find(|a| a.agent_id == agent_id)
        .expect("listed")
}

async fn inbox(user: &UserClient) -> Vec<pb::InboxItem> {
    automations(user)
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect("inbox")
        .into_inner()
        .items
}

/// The caller's inbox items of `kind`, once there are `count` of them.
async fn notices(user: &UserClient, kind: pb::InboxItemKind, count: usize) -> Vec<pb::InboxItem> {
    eventually("the version notices", || async {
        let items: Vec<_> = inbox(user)
            .await
            .into_iter()
            .filter(|item| item.kind() == kind)
            .collect();
        (items.len() >= count).then_some(items)
    })
    .await
}

async fn ran_version(user: &UserClient, agent_id: &str) -> i64 {
    user.run(agent_id, "hello")
        .await
        .expect("run")
        .version_number
}

#[tokio::test]
async fn a_pinned_member_keeps_a_deprecated_version_until_its_sunset_then_runs_the_latest() {
    let mut w = world().await;
    let id = &w.agent_id.clone();
    pin(&w.bob, id, 1).await.expect("pin v1");
    assert_eq!(ran_version(&w.bob, id).await, 1);

    let now = w.suite.clock.now_micros();
    let sunset = now + 7 * 86_400 * 1_000_000;
    let version = deprecate(&w.alice, id, 1, sunset, "v2 cites its sources")
        .await
        .expect("deprecate");
    assert_eq!(version.sunset_time, Some(timestamp(sunset)));
    assert_eq!(version.deprecation_note, "v2 cites its sources");
    assert!(!version.retired);

    // Until the sunset nothing changes for Bob's runs, and he is told how
    // things stand, in his list and in his inbox, with what v2 changed.
    assert_eq!(ran_version(&w.bob, id).await, 1);
    let listed = row(&w.bob, id).await;
    assert_eq!(listed.pinned_version, Some(1));
    assert_eq!(listed.pinned_version_sunset_time, Some(timestamp(sunset)));
    assert_eq!(
        listed.pinned_version_deprecation_note,
        "v2 cites its sources"
    );
    assert!(!listed.pinned_version_retired);
    let day = agentshare_kit::clock::utc_minute(sunset);
    assert_eq!(
        listed.pin_summary,
        format!("pinned to v1, retires on {day}")
    );
    let told = notices(&w.bob, pb::InboxItemKind::VersionDeprecated, 1).await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].agent_id, *id);
    assert_eq!(told[0].title, format!("Research v1 retires on {day}"));
    for part in ["v2 cites its sources", "description added", "v2 now"] {
        assert!(told[0].body.contains(part), "{part:?} in {}", told[0].body);
    }
    let read_pin = w
        .bob
        .access()
        .get_pin(sharing::GetPinRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("get pin")
        .into_inner()
        .pin
        .expect("pin");
    assert_eq!(read_pin.summary, listed.pin_summary);
    // Versions show it to anyone who sees the agent.
    let versions = w
        .bob
        .registry()
        .list_versions(registry::ListVersionsRequest {
            agent_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("versions")
        .into_inner()
        .versions;
    let v1 = versions.iter().find(|v| v.number == 1).expect("v1");
    assert_eq!(v1.sunset_time, Some(timestamp(sunset)));
    assert!(
        versions
            .iter()
            .all(|v| v.number == 1 || v.sunset_time.is_none())
    );

    // Carol pins v1 too while it is still deprecated, and sees the sunset.
    let carols = pin(&w.carol, id, 1)
        .await
        .expect("pin a deprecated version");
    assert!(carols.summary.contains("retires on"), "{}", carols.summary);

    // Past the sunset, runs follow the latest with no call from anyone,
    // and both are told once.
    w.advance(8 * DAY);
    assert_eq!(ran_version(&w.bob, id).await, 2);
    let plan = w
        .bob
        .access()
        .resolve_invocation(sharing::ResolveInvocationRequest {
            agent_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(
        (plan.version, plan.version_source()),
        (2, sharing::VersionSource::Latest)
    );
    let listed = row(&w.bob, id).await;
    assert!(listed.pinned_version_retired);
    assert_eq!(
        listed.pin_summary,
        format!("pinned to v1, retired on {day}: runs v2")
    );
    let retired = notices(&w.bob, pb::InboxItemKind::VersionRetired, 1).await;
    assert_eq!(retired[0].title, "Research v1 retired: now v2");
    assert!(
        retired[0]
            .body
            .contains("your runs now use the latest version, v2"),
        "{}",
        retired[0].body
    );
    notices(&w.carol, pb::InboxItemKind::VersionRetired, 1).await;
    w.suite.firing_caught_up().await;
    let kinds: Vec<_> = inbox(&w.bob)
        .await
        .iter()
        .map(pb::InboxItem::kind)
        .collect();
    assert_eq!(
        kinds,
        [
            pb::InboxItemKind::VersionRetired,
            pb::InboxItemKind::VersionDeprecated
        ],
        "each notice once"
    );

    // A retired version is final: no new pin, no new sunset.
    assert_status(
        pin(&w.bob, id, 1).await,
        Code::FailedPrecondition,
        "retired",
    );
    let again = w.suite.clock.now_micros() + 86_400 * 1_000_000;
    assert_status(
        deprecate(&w.alice, id, 1, again, "").await,
        Code::FailedPrecondition,
        "final",
    );
}

#[tokio::test]
async fn a_grant_pinned_to_a_retiring_version_follows_the_same_rule_and_the_owner_sees_who_pins() {
    let mut w = world().await;
    let id = &w.agent_id.clone();
    let created = w
        .alice
        .sharing()
        .create_grant(sharing::CreateGrantRequest {
            agent_id: id.clone(),
            kind: sharing::GrantKind::Delegate as i32,
            label: "site widget".into(),
            expire_time: None,
            pinned_version: Some(1),
            limits: None,
        })
        .await
        .expect("grant")
        .into_inner();
    let grant_id = created.grant.expect("grant").id;
    let visitor = w.suite.anonymous().await.with_grant(&created.token);
    pin(&w.bob, id, 1).await.expect("bob pins v1");
    assert_eq!(ran_version(&visitor, id).await, 1);

    // Alice sees who pins which version, and that v1 is not deprecated.
    let pins = |alice: UserClient, version: i64| {
        let id = id.clone();
        async move {
            alice
                .access()
                .list_version_pins(sharing::ListVersionPinsRequest {
                    agent_id: id,
                    version,
                })
                .await
                .map(|r| r.into_inner().versions)
        }
    };
    let listed = pins(w.alice.clone(), 0).await.expect("pins");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 1);
    assert!(listed[0].sunset_time.is_none());
    assert_eq!(listed[0].users[0].user_id, w.bob_id);
    assert_eq!(listed[0].users[0].email, "bob@example.com");
    assert_eq!(listed[0].grants[0].grant_id, grant_id);
    assert_eq!(listed[0].grants[0].label, "site widget");
    assert!(
        pins(w.alice.clone(), 2)
            .await
            .expect("none on v2")
            .is_empty()
    );
    // Bob, who holds the agent but does not own it, may not ask.
    assert_status(
        w.bob
            .access()
            .list_version_pins(sharing::ListVersionPinsRequest {
                agent_id: id.clone(),
                version: 0,
            })
            .await,
        Code::PermissionDenied,
        "",
    );

    let sunset = w.suite.clock.now_micros() + 2 * 86_400 * 1_000_000;
    deprecate(&w.alice, id, 1, sunset, "")
        .await
        .expect("deprecate");
    let listed = pins(w.alice.clone(), 1).await.expect("pins");
    assert_eq!(listed[0].sunset_time, Some(timestamp(sunset)));
    assert!(!listed[0].retired);
    // Alice created the grant, so she is told about it.
    let told = notices(&w.alice, pb::InboxItemKind::VersionDeprecated, 1).await;
    assert!(
        told[0].body.contains("your grant \"site widget\""),
        "{}",
        told[0].body
    );
    assert_eq!(ran_version(&visitor, id).await, 1, "before the sunset");

    w.advance(3 * DAY);
    assert_eq!(ran_version(&visitor, id).await, 2, "after the sunset");
    let retired = notices(&w.alice, pb::InboxItemKind::VersionRetired, 1).await;
    assert!(
        retired[0]
            .body
            .contains("the runs of your grant \"site widget\" now use the latest version, v2"),
        "{}",
        retired[0].body
    );
    let listed = pins(w.alice.clone(), 1).await.expect("pins");
    assert!(listed[0].retired, "the owner sees who still pins it");
    assert_eq!(listed[0].users.len(), 1);
    // A new grant cannot pin the retired version.
    assert_status(
        w.alice
            .sharing()
            .create_grant(sharing::CreateGrantRequest {
                agent_id: id.clone(),
                kind: sharing::GrantKind::Delegate as i32,
                label: "late".into(),
                expire_time: None,
                pinned_version: Some(1),
                limits: None,
            })
            .await,
        Code::FailedPrecondition,
        "retired",
    );
}

#[tokio::test]
async fn only_the_owner_deprecates_an_older_version_with_a_sunset_ahead_and_may_cancel_it() {
    let mut w = world().await;
    let id = &w.agent_id.clone();
    let now = w.suite.clock.now_micros();
    let week = now + 7 * 86_400 * 1_000_000;

    // A holder sees the agent but may not change it; a stranger sees nothing.
    assert_status(
        deprecate(&w.bob, id, 1, week, "").await,
        Code::PermissionDenied,
        "owner",
    );
    let dave = w.suite.user("dave").await;
    dave.new_org("Elsewhere").await;
    assert_status(deprecate(&dave, id, 1, week, "").await, Code::NotFound, "");
    // The latest version is never deprecated; a version must exist.
    assert_status(
        deprecate(&w.alice, id, 2, week, "").await,
        Code::FailedPrecondition,
        "deploy a newer version first",
    );
    assert_status(
        deprecate(&w.alice, id, 9, week, "").await,
        Code::NotFound,
        "version 9",
    );
    // Bad input names its field.
    for (version, sunset, note, field) in [
        (0, Some(week), "", "version_number"),
        (1, None, "", "sunset_time"),
        (1, Some(now - 86_400 * 1_000_000), "", "sunset_time"),
        (1, Some(week), &*"n".repeat(2001), "note"),
    ] {
        let refused = w
            .alice
            .registry()
            .deprecate_version(registry::DeprecateVersionRequest {
                agent_id: id.clone(),
                version_number: version,
                sunset_time: sunset.map(timestamp),
                note: note.into(),
            })
            .await;
        assert_status(refused, Code::InvalidArgument, field);
    }

    // Deprecating again moves the sunset; cancelling restores the pin.
    pin(&w.bob, id, 1).await.expect("pin");
    deprecate(&w.alice, id, 1, week, "")
        .await
        .expect("deprecate");
    let later = week + 86_400 * 1_000_000;
    let moved = deprecate(&w.alice, id, 1, later, "one more day")
        .await
        .expect("move the sunset");
    assert_eq!(moved.sunset_time, Some(timestamp(later)));
    assert_eq!(
        row(&w.bob, id).await.pinned_version_sunset_time,
        Some(timestamp(later))
    );
    let cancelled = w
        .alice
        .registry()
        .undeprecate_version(registry::UndeprecateVersionRequest {
            agent_id: id.clone(),
            version_number: 1,
        })
        .await
        .expect("undeprecate")
        .into_inner();
    assert!(cancelled.cancelled);
    assert!(cancelled.version.expect("version").sunset_time.is_none());
    let listed = row(&w.bob, id).await;
    assert_eq!(listed.pin_summary, "pinned to v1");
    assert!(listed.pinned_version_sunset_time.is_none());
    // Past the cancelled sunset, Bob still runs his pin, and hears nothing
    // of a retirement.
    w.advance(10 * DAY);
    assert_eq!(ran_version(&w.bob, id).await, 1);
    w.suite.firing_caught_up().await;
    assert!(
        inbox(&w.bob)
            .await
            .iter()
            .all(|item| item.kind() != pb::InboxItemKind::VersionRetired)
    );
}

#[tokio::test]
async fn each_pinned_user_is_told_once_per_stage_whatever_the_scheduler_replicas() {
    let suite = Suite::builder()
        .replicas(ServiceName::Scheduler, crate::firing::schedulers())
        .scheduler(crate::firing::fast())
        .start()
        .await;
    let mut w = world_on(suite).await;
    let id = &w.agent_id.clone();
    pin(&w.bob, id, 1).await.expect("bob pins v1");
    pin(&w.carol, id, 1).await.expect("carol pins v1");
    let sunset = w.suite.clock.now_micros() + 86_400 * 1_000_000;
    deprecate(&w.alice, id, 1, sunset, "")
        .await
        .expect("deprecate");
    for user in [&w.bob, &w.carol] {
        notices(user, pb::InboxItemKind::VersionDeprecated, 1).await;
    }
    w.advance(2 * DAY);
    for user in [&w.bob, &w.carol] {
        notices(user, pb::InboxItemKind::VersionRetired, 1).await;
    }
    // Every replica has followed the event and come round its loop since.
    w.suite.firing_caught_up().await;
    w.suite.firing_caught_up().await;
    for user in [&w.bob, &w.carol] {
        let kinds: Vec<_> = inbox(user).await.iter().map(pb::InboxItem::kind).collect();
        assert_eq!(
            kinds,
            [
                pb::InboxItemKind::VersionRetired,
                pb::InboxItemKind::VersionDeprecated
            ]
        );
    }
}
