//! Each reason the contract documents for InvokeService and GetMe, asserted
//! as a client sees it: code, message and detail. The proto comments quote
//! these messages, so a change to one fails here.

use agentshare_e2e::{Suite, UserClient, tool};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::assert_status;

/// Runs `input` on `agent_id` as `user`, with `draft` set as asked.
async fn invoke(
    user: &UserClient,
    agent_id: &str,
    input: &str,
    draft: bool,
) -> Result<gateway::InvokeResponse, Status> {
    user.invoke()
        .invoke(gateway::InvokeRequest {
            agent_id: agent_id.into(),
            input: input.into(),
            draft,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn continue_session(
    user: &UserClient,
    agent_id: &str,
    session_id: &str,
) -> Result<gateway::InvokeResponse, Status> {
    user.invoke()
        .invoke(gateway::InvokeRequest {
            agent_id: agent_id.into(),
            input: "and then?".into(),
            session_id: Some(session_id.into()),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get_me(user: &UserClient) -> Result<sharing::GetMeResponse, Status> {
    user.tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .map(tonic::Response::into_inner)
}

#[track_caller]
fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn every_documented_invoke_and_get_me_reason_is_what_a_client_gets() {
    let suite = Suite::start().await;
    let alice = suite
        .user("alice")
        .await
        .with_token(&suite.token_with("alice", true, 3600));
    let bob = suite.user("bob").await;
    let vera = suite.user("vera").await;
    let carol = suite.user("carol").await;
    alice.new_org("Acme").await;
    carol.new_org("Elsewhere").await;
    alice
        .add_member(&bob.user_id().await, sharing::OrgRole::Member)
        .await;
    alice
        .add_member(&vera.user_id().await, sharing::OrgRole::Viewer)
        .await;
    let crm = alice
        .shared_agent_with(
            "Research",
            "Find accounts.",
            vec![tool(
                "crm",
                "crm",
                registry::IntegrationScope::UserConfigured,
                "",
            )],
        )
        .await;
    let helper = alice.shared_agent("Helper").await;
    let unfinished = alice.new_agent("Unfinished").await;

    // UNAUTHENTICATED.
    let nobody = suite.anonymous().await;
    assert_status(
        invoke(&nobody, &helper.id, "hi", false).await,
        Code::Unauthenticated,
        "missing credential",
    );
    assert_status(
        get_me(&nobody).await,
        Code::Unauthenticated,
        "missing credential",
    );
    assert_status(
        invoke(
            &nobody.with_grant("asg_not-a-real-token"),
            &helper.id,
            "hi",
            false,
        )
        .await,
        Code::Unauthenticated,
        "share token rejected: unknown token",
    );
    let (_, invoke_token) = alice.grant(&helper.id, sharing::GrantKind::Invoke).await;
    assert_status(
        invoke(&nobody.with_grant(&invoke_token), &helper.id, "hi", false).await,
        Code::Unauthenticated,
        "share token rejected: an INVOKE share token needs a signed-in user as well",
    );
    let (revoked_id, revoked) = alice.grant(&helper.id, sharing::GrantKind::Delegate).await;
    alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest {
            grant_id: revoked_id,
        })
        .await
        .expect("revoke");
    assert_status(
        invoke(&nobody.with_grant(&revoked), &helper.id, "hi", false).await,
        Code::Unauthenticated,
        "share token rejected: token revoked",
    );
    let expiring = alice
        .sharing()
        .create_grant(sharing::CreateGrantRequest {
            agent_id: helper.id.clone(),
            kind: sharing::GrantKind::Delegate as i32,
            label: "for a minute".into(),
            expire_time: Some(agentshare_kit::clock::timestamp(
                suite.clock.now_micros() + 60_000_000,
            )),
            pinned_version: None,
            limits: None,
        })
        .await
        .expect("grant")
        .into_inner()
        .token;
    suite.clock.advance(Duration::from_secs(120));
    assert_status(
        invoke(&nobody.with_grant(&expiring), &helper.id, "hi", false).await,
        Code::Unauthenticated,
        "share token rejected: token expired",
    );

    // PERMISSION_DENIED, GetMe's included: a share token is a valid
    // credential that may only run its agent.
    let (_, delegate) = alice.grant(&helper.id, sharing::GrantKind::Delegate).await;
    for holder in [nobody.with_grant(&delegate), bob.with_grant(&delegate)] {
        assert_status(
            get_me(&holder).await,
            Code::PermissionDenied,
            "a share token allows running its agent only",
        );
    }
    assert_status(
        invoke(&nobody.with_grant(&delegate), &crm.id, "hi", false).await,
        Code::PermissionDenied,
        "this share token is for another agent",
    );
    assert_status(
        invoke(&bob, &helper.id, "hi", true).await,
        Code::PermissionDenied,
        "only the agent's owner runs its draft",
    );
    assert_status(
        invoke(&alice.with_grant(&delegate), &helper.id, "hi", true).await,
        Code::PermissionDenied,
        "only the agent's owner runs its draft",
    );
    assert_status(
        invoke(&vera, &helper.id, "hi", false).await,
        Code::PermissionDenied,
        "viewers read agents but never run, build or change them",
    );

    // NOT_FOUND, identical for what does not exist and what is not seen.
    assert_status(
        invoke(&bob, &uuid::Uuid::now_v7().to_string(), "hi", false).await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        invoke(&carol, &helper.id, "hi", false).await,
        Code::NotFound,
        "not found",
    );
    // A teammate's undeployed draft is not seen either: not by a run, and
    // not by its workspaces (which once said "agent is not deployed").
    assert_status(
        invoke(&bob, &unfinished.id, "hi", false).await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        bob.sharing()
            .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
                agent_id: unfinished.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );

    // FAILED_PRECONDITION: a wrong state the caller can change.
    assert_status(
        invoke(&alice, &unfinished.id, "hi", false).await,
        Code::FailedPrecondition,
        "agent is not deployed",
    );
    let planned = bob
        .access()
        .resolve_invocation(sharing::ResolveInvocationRequest {
            agent_id: crm.id.clone(),
            ..Default::default()
        })
        .await;
    for refused in [
        invoke(&bob, &crm.id, "hi", false).await.map(drop),
        planned.map(drop),
    ] {
        let status = assert_status(
            refused,
            Code::FailedPrecondition,
            "setup required: connect crm (crm)",
        );
        let violations = status
            .get_details_precondition_failure()
            .expect("a PreconditionFailure detail")
            .violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].r#type, "SETUP_REQUIRED");
        assert_eq!(violations[0].subject, "integration/crm");
        assert!(
            violations[0].description.contains("bind"),
            "{:?}",
            violations[0]
        );
    }
    // A DELEGATE token runs on the owner's setup: its holder is told that
    // only the owner can finish it.
    let (_, crm_widget) = alice.grant(&crm.id, sharing::GrantKind::Delegate).await;
    let status = assert_status(
        invoke(&nobody.with_grant(&crm_widget), &crm.id, "hi", false).await,
        Code::FailedPrecondition,
        "setup required: the agent's owner has not connected crm (crm)",
    );
    let violations = status
        .get_details_precondition_failure()
        .expect("a PreconditionFailure detail")
        .violations;
    assert_eq!(
        (
            violations[0].r#type.as_str(),
            violations[0].subject.as_str()
        ),
        ("SETUP_REQUIRED", "integration/crm")
    );
    assert!(violations[0].description.contains("only the owner"));
    let session = invoke(&bob, &helper.id, "hello", false)
        .await
        .expect("bob runs the shared agent")
        .session_id;
    alice.unshare(&helper.id).await;
    assert_status(
        continue_session(&bob, &helper.id, &session).await,
        Code::FailedPrecondition,
        "agent no longer shared with you",
    );
    alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: helper.id.clone(),
        })
        .await
        .expect("delete");
    assert_status(
        continue_session(&bob, &helper.id, &session).await,
        Code::FailedPrecondition,
        "agent deleted",
    );
    assert_status(
        invoke(&nobody.with_grant(&delegate), &helper.id, "hi", false).await,
        Code::Unauthenticated,
        "share token rejected: grant ended: the agent was deleted",
    );

    // INVALID_ARGUMENT names each field.
    let status = assert_status(invoke(&bob, "", "", false).await, Code::InvalidArgument, "");
    assert_eq!(bad_fields(&status), ["agent_id", "input"]);
    suite.stop().await;
}
