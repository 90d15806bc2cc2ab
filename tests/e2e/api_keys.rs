//! API keys (DESIGN.md, "Identity and trust"): shown once, listed by prefix
//! and last use, acting as their creator in their org, revoked on the very
//! next call.

use std::time::Duration;

use agentshare_e2e::Suite;
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;

use crate::assert_status;

fn create(label: &str) -> sharing::CreateApiKeyRequest {
    sharing::CreateApiKeyRequest {
        label: label.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_key_acts_as_its_creator_until_revoked() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;

    let created = alice
        .tenancy()
        .create_api_key(create("ci"))
        .await
        .expect("create key")
        .into_inner();
    let secret = created.secret;
    let key = created.api_key.expect("key");
    assert!(
        secret.starts_with("ask_") && secret.len() > 40,
        "a high-entropy secret"
    );
    assert!(secret.starts_with(&key.prefix) && key.prefix.len() < 16);
    assert_eq!(key.org_id, org.id);
    assert_eq!(key.default_workspace_id, org.default_workspace_id);
    assert!(key.last_use_time.is_none());

    // The key acts as Alice, in her org, with no header.
    let with_key = alice.with_token(&secret);
    let seen = with_key
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("get org")
        .into_inner();
    assert_eq!(seen.org.expect("org").id, org.id);
    let by_key = with_key.new_agent("Made with a key").await;
    let by_session = alice.new_agent("Made in a session").await;
    assert_eq!(
        by_key.owner_user_id, by_session.owner_user_id,
        "the key acts as its creator"
    );

    let listed = alice
        .tenancy()
        .list_api_keys(sharing::ListApiKeysRequest::default())
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].prefix, key.prefix);
    assert!(
        listed[0].last_use_time.is_some(),
        "the last use is recorded"
    );

    alice
        .tenancy()
        .revoke_api_key(sharing::RevokeApiKeyRequest {
            api_key_id: key.id.clone(),
        })
        .await
        .expect("revoke");
    assert_status(
        with_key
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::Unauthenticated,
        "API key revoked",
    );
    assert_status(
        alice
            .with_token("ask_not-a-key-anyone-made")
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::Unauthenticated,
        "unknown key",
    );
    suite.stop().await;
}

#[tokio::test]
async fn keys_stay_in_their_org_and_cannot_mint_more_keys() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    let bobco = bob.new_org("Bobco").await;
    let secret = alice
        .tenancy()
        .create_api_key(create("ci"))
        .await
        .expect("key")
        .into_inner()
        .secret;
    let with_key = alice.with_token(&secret);

    assert_status(
        with_key.tenancy().create_api_key(create("more")).await,
        Code::PermissionDenied,
        "sign in",
    );
    assert_status(
        with_key
            .in_org(&bobco.id)
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::PermissionDenied,
        "its own org",
    );
    // Bob cannot revoke Alice's key, nor learn that it exists.
    let key_id = alice
        .tenancy()
        .list_api_keys(sharing::ListApiKeysRequest::default())
        .await
        .expect("list")
        .into_inner()
        .api_keys[0]
        .id
        .clone();
    assert_status(
        bob.tenancy()
            .revoke_api_key(sharing::RevokeApiKeyRequest { api_key_id: key_id })
            .await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_key_expires_on_the_suite_clock() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let expire = agentshare_kit::clock::timestamp(suite.clock.now_micros() + 60_000_000);
    let secret = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "short".into(),
            expire_time: Some(expire),
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .secret;
    let with_key = alice.with_token(&secret);
    with_key
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("valid now");
    suite.clock.advance(Duration::from_secs(61));
    assert_status(
        with_key
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::Unauthenticated,
        "expired",
    );
    let past = agentshare_kit::clock::timestamp(suite.clock.now_micros() - 1);
    assert_status(
        alice
            .with_token(&suite.token("alice"))
            .tenancy()
            .create_api_key(sharing::CreateApiKeyRequest {
                label: "late".into(),
                expire_time: Some(past),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "expire_time",
    );
    suite.stop().await;
}

#[tokio::test]
async fn key_changes_are_audited_with_the_credential_that_made_them() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    bob.new_org("Bobco").await;

    let first = alice
        .tenancy()
        .create_api_key(create("ci"))
        .await
        .expect("key")
        .into_inner();
    let second = alice
        .tenancy()
        .create_api_key(create("laptop"))
        .await
        .expect("key")
        .into_inner();
    let second_id = second.api_key.expect("key").id;
    // The first key revokes the second: the trail says a key did it.
    alice
        .with_token(&first.secret)
        .tenancy()
        .revoke_api_key(sharing::RevokeApiKeyRequest {
            api_key_id: second_id.clone(),
        })
        .await
        .expect("revoke with a key");

    let events = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.revoked", "api_key.created", "api_key.created"],
        "newest first"
    );
    let revoked = &events[0];
    assert_eq!(revoked.target_id, second_id);
    assert_eq!(
        revoked.credential_kind,
        sharing::CredentialKind::ApiKey as i32
    );
    assert_eq!(
        events[1].credential_kind,
        sharing::CredentialKind::Session as i32
    );
    assert!(events[1].before_json.is_empty() && events[1].after_json.contains("laptop"));
    for event in &events {
        assert!(
            !event.after_json.contains(&first.secret) && !event.after_json.contains(&second.secret)
        );
    }

    // Filtered by target, one per page.
    let page = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: second_id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].action, "api_key.revoked");
    let rest = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: second_id,
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect("next page")
        .into_inner();
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].action, "api_key.created");
    assert!(rest.next_page_token.is_empty());

    // Another org's trail shows none of it.
    let theirs = bob
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("bob's audit")
        .into_inner()
        .events;
    assert!(theirs.is_empty(), "{theirs:?}");
    assert_status(
        alice
            .tenancy()
            .list_audit_events(sharing::ListAuditEventsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    suite.stop().await;
}

#[tokio::test]
async fn the_audit_trail_filters_by_actor_and_time() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let bob_id = bob
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob_id.clone(),
            )),
            role: sharing::OrgRole::Admin as i32,
        })
        .await
        .expect("bob joins as admin");
    suite.clock.advance(Duration::from_secs(60));
    let before_keys = suite.clock.now_micros();
    let bob_key = bob
        .tenancy()
        .create_api_key(create("bob's"))
        .await
        .expect("bob's key")
        .into_inner()
        .api_key
        .expect("key");
    suite.clock.advance(Duration::from_secs(60));
    let between = suite.clock.now_micros();
    suite.clock.advance(Duration::from_secs(60));
    alice
        .tenancy()
        .create_api_key(create("alice's"))
        .await
        .expect("alice's key");

    let list = |filter: sharing::ListAuditEventsRequest| {
        let alice = alice.clone();
        async move {
            alice
                .tenancy()
                .list_audit_events(filter)
                .await
                .expect("audit")
                .into_inner()
                .events
        }
    };
    let at = |micros: i64| Some(agentshare_kit::clock::timestamp(micros));
    let bobs = list(sharing::ListAuditEventsRequest {
        actor_user_id: bob_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(
        (bobs[0].action.as_str(), bobs[0].target_id.as_str()),
        ("api_key.created", bob_key.id.as_str())
    );
    let since = list(sharing::ListAuditEventsRequest {
        start_time: at(before_keys),
        ..Default::default()
    })
    .await;
    let actions: Vec<&str> = since.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.created", "api_key.created"],
        "not the member added before"
    );
    let window = list(sharing::ListAuditEventsRequest {
        start_time: at(before_keys),
        end_time: at(between),
        ..Default::default()
    })
    .await;
    assert_eq!(window.len(), 1, "{window:?}");
    assert_eq!(window[0].target_id, bob_key.id);
    let earlier = list(sharing::ListAuditEventsRequest {
        end_time: at(before_keys),
        ..Default::default()
    })
    .await;
    assert!(
        earlier.iter().all(|e| e.action != "api_key.created")
            && earlier.iter().any(|e| e.action == "member.added"),
        "{earlier:?}"
    );
    assert_status(
        alice
            .tenancy()
            .list_audit_events(sharing::ListAuditEventsRequest {
                actor_user_id: "bob".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "actor_user_id",
    );
    suite.stop().await;
}
