//! Identity: forged, misaddressed and replayed Principals and service
//! tokens sent straight to a service's port; session JWTs that are
//! unsigned, misissued, misaddressed, expired or not yet valid; and every
//! privileged mutation tried with an API key, a stale second factor and no
//! second factor at all.

use agentshare_e2e::Suite;
use agentshare_kit::identity::{
    Identity, KeyRing, PRINCIPAL_HEADER, Principal, SERVICE_HEADER, ServiceName,
};
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::session;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry::agent_registry_service_client::AgentRegistryServiceClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::{Attack, Caller, Row, never, row, run_table, stepped_up};

pub struct World {
    /// Straight to the registry's port, with no service identity.
    registry_port: Channel,
    /// To the registry as the store, with the store's real key.
    registry_as_store: ServiceChannel,
    /// Principals and service tokens signed for the attacks.
    forged: Vec<(&'static str, String)>,
    service_token_for_store: String,
    agent: String,
    project: String,
    org: String,
    default_ws: String,
    sales: String,
    bob: String,
    carol: String,
    dave: String,
    /// Session tokens of Alice, the org owner.
    sessions: Vec<(&'static str, String)>,
    /// Bad session tokens for a call that any user may make.
    bad_jwts: Vec<(&'static str, String)>,
}

impl World {
    fn forged(&self, name: &str) -> String {
        self.forged
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .expect("forged token")
    }

    fn session(&self, name: &str) -> Caller {
        self.sessions
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Caller::bearer(t))
            .expect("session")
    }

    fn jwt(&self, name: &str) -> Caller {
        self.bad_jwts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Caller::bearer(t))
            .expect("jwt")
    }
}

/// Signs `claims` as a Principal or service token with `service`'s real key.
fn sign_as(suite: &Suite, service: ServiceName, claims: &Value) -> String {
    let pem = std::fs::read(suite.keys_dir().join(format!("{service}.key"))).expect("key");
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_pem(&pem).expect("pem"),
    )
    .expect("sign")
}

fn principal_claims(iss: &str, iat: i64, exp: i64, org: &str) -> Value {
    json!({
        "iss": iss, "aud": "agentshare-internal", "iat": iat, "exp": exp,
        "kind": "user", "user_id": "mallory", "org_id": org, "org_role": "owner",
        "workspace_id": "any"
    })
}

/// Signs session `claims` (any JSON) with the suite's dev HS256 key.
fn sign_session_json(suite: &Suite, claims: &Value) -> String {
    let secret = std::fs::read(
        suite
            .keys_dir()
            .join(agentshare_kit::identity::SESSION_SECRET_FILE),
    )
    .expect("secret");
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&secret),
    )
    .expect("sign")
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/idp")
        .join(name)
}

async fn world(suite: &Suite) -> World {
    let fixture_org = suite
        .org("Acme Identity")
        .member("bob", sharing::OrgRole::Member)
        .member("carol", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = fixture_org.owner.with_token(&stepped_up(suite, "alice"));
    alice.enable_workspaces().await;
    let org = fixture_org.org;
    let bob = fixture_org.members[0].user_id.clone();
    let carol = fixture_org.members[1].user_id.clone();
    let dave = suite.user("dave").await.user_id().await;
    let sales = alice.create_workspace("Sales").await;
    alice
        .add_to_workspace(&sales, &bob, sharing::WorkspaceRole::Member)
        .await;
    let agent = alice.deployed_agent("Ledger").await;
    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Roadmap".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project")
        .id;
    // The org owner's own API key: the strongest key there is.
    let key = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("api key")
        .into_inner()
        .secret;

    let now = suite.clock.now_secs();
    let mut stale = session::dev_claims("alice", None, true, now, 3600);
    stale.auth_time = Some(now - 11 * 60);
    let sessions = vec![
        ("api key", key),
        ("stale second factor", suite.sign_session(&stale)),
        ("no second factor", suite.token("alice")),
    ];

    let dev = |user: &str| {
        serde_json::to_value(session::dev_claims(user, None, false, now, 600)).expect("claims")
    };
    let without = |field: &str| {
        let mut claims = dev("mallory");
        claims.as_object_mut().expect("object").remove(field);
        sign_session_json(suite, &claims)
    };
    let with = |field: &str, value: Value| {
        let mut claims = dev("mallory");
        claims[field] = value;
        sign_session_json(suite, &claims)
    };
    let rsa = std::fs::read(fixture("rsa_private.pem")).expect("fixture key");
    let rs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &dev("mallory"),
        &EncodingKey::from_rsa_pem(&rsa).expect("key"),
    )
    .expect("sign");
    let bad_jwts = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&dev("alice").to_string())
            ),
        ),
        (
            "another key",
            session::mint_hs256(
                b"another-secret-another-secret-another",
                &session::dev_claims("alice", None, false, now, 600),
            )
            .expect("mint"),
        ),
        ("RS256 at an HS256 gateway", rs256),
        (
            "another issuer",
            with("iss", json!("https://elsewhere.example")),
        ),
        ("another audience", with("aud", json!("someone-else"))),
        ("expired", with("exp", json!(now - 10))),
        ("no iat", without("iat")),
        ("future iat", with("iat", json!(now + 3600))),
        ("future nbf", with("nbf", json!(now + 3600))),
        ("no exp", without("exp")),
        ("no sub", without("sub")),
        ("not a JWT", "not-a-jwt".into()),
    ];

    // Principals and service tokens for the service-port attacks.
    let stranger_dir = tempfile::tempdir().expect("dir");
    agentshare_kit::identity::generate_missing_keys(stranger_dir.path()).expect("keys");
    let stranger = Identity::new(
        KeyRing::load(stranger_dir.path(), ServiceName::Gateway).expect("keys"),
        suite.clock.clone(),
    );
    let mut mallory = Principal::user("mallory");
    mallory.org_id = Some(org.id.clone());
    let real_gateway = Identity::new(
        KeyRing::load(suite.keys_dir(), ServiceName::Gateway).expect("keys"),
        suite.clock.clone(),
    );
    let forged = vec![
        (
            "gateway-signed, no service identity",
            real_gateway.sign_principal(&mallory).expect("sign"),
        ),
        (
            "signed by a stranger's key",
            stranger.sign_principal(&mallory).expect("sign"),
        ),
        (
            "store's key claiming to be the gateway",
            sign_as(
                suite,
                ServiceName::Store,
                &principal_claims("gateway", now, now + 60, &org.id),
            ),
        ),
        (
            "signed by the store itself",
            sign_as(
                suite,
                ServiceName::Store,
                &principal_claims("store", now, now + 60, &org.id),
            ),
        ),
        (
            "expired, replayed",
            sign_as(
                suite,
                ServiceName::Gateway,
                &principal_claims("gateway", now - 300, now - 240, &org.id),
            ),
        ),
        (
            "living an hour",
            sign_as(
                suite,
                ServiceName::Gateway,
                &principal_claims("gateway", now, now + 3600, &org.id),
            ),
        ),
        (
            "for another audience",
            sign_as(
                suite,
                ServiceName::Gateway,
                &json!({
                    "iss": "gateway", "aud": "agentshare-run", "iat": now, "exp": now + 60,
                    "kind": "user", "user_id": "mallory"
                }),
            ),
        ),
    ];
    let service_token_for_store = real_gateway
        .service_token(ServiceName::Store)
        .expect("token");

    World {
        registry_port: agentshare_e2e::connect(suite.addrs(ServiceName::Registry)[0]).await,
        registry_as_store: suite
            .service_channel(ServiceName::Store, ServiceName::Registry, 0)
            .await,
        forged,
        service_token_for_store,
        agent: agent.id,
        project,
        org: org.id,
        default_ws: org.default_workspace_id,
        sales,
        bob,
        carol,
        dave,
        sessions,
        bad_jwts,
    }
}

fn get_agent(agent: &str, principal: &str) -> tonic::Request<registry::GetAgentRequest> {
    let mut request = tonic::Request::new(registry::GetAgentRequest {
        agent_id: agent.into(),
    });
    request.metadata_mut().insert(
        PRINCIPAL_HEADER,
        MetadataValue::try_from(principal).expect("header"),
    );
    request
}

/// A Principal sent to the registry as the store, with the store's key.
fn through_store(name: &'static str, needle: &'static str) -> Row<World> {
    row(
        format!("a Principal {name}, to the registry's port"),
        Code::Unauthenticated,
        move |w: &World| {
            let channel = w.registry_as_store.clone();
            let request = get_agent(&w.agent, &w.forged(name));
            Attack::by(&Caller::nobody())
                .grpc(move |_| async move {
                    AgentRegistryServiceClient::new(channel)
                        .get_agent(request)
                        .await
                })
                .says(needle)
        },
    )
}

/// One privileged mutation, tried with each of Alice's weak credentials.
fn privileged(
    rows: &mut Vec<Row<World>>,
    action: &'static str,
    attack: fn(&World, Caller) -> Attack,
) {
    for (credential, needle) in [
        ("api key", "API keys never pass step-up"),
        ("stale second factor", "sign in again with a second factor"),
        ("no second factor", "sign in again with a second factor"),
    ] {
        rows.push(row(
            format!("{action} with {credential}"),
            Code::PermissionDenied,
            move |w: &World| attack(w, w.session(credential)).says(needle),
        ));
    }
}

pub fn table() -> Vec<Row<World>> {
    let mut rows = vec![
        row(
            "a gateway-signed Principal straight to a service port, no service identity",
            Code::Unauthenticated,
            |w: &World| {
                let channel = w.registry_port.clone();
                let request = get_agent(&w.agent, &w.forged("gateway-signed, no service identity"));
                Attack::by(&Caller::nobody())
                    .grpc(move |_| async move {
                        AgentRegistryServiceClient::new(channel)
                            .get_agent(request)
                            .await
                    })
                    .says(SERVICE_HEADER)
            },
        ),
        row(
            "a service token addressed to the store, sent to the registry",
            Code::Unauthenticated,
            |w: &World| {
                let channel = w.registry_port.clone();
                let mut request =
                    get_agent(&w.agent, &w.forged("gateway-signed, no service identity"));
                request.metadata_mut().insert(
                    SERVICE_HEADER,
                    MetadataValue::try_from(w.service_token_for_store.as_str()).expect("header"),
                );
                Attack::by(&Caller::nobody())
                    .grpc(move |_| async move {
                        AgentRegistryServiceClient::new(channel)
                            .get_agent(request)
                            .await
                    })
                    .says("service identity rejected")
            },
        ),
        through_store("signed by a stranger's key", "principal rejected"),
        through_store(
            "store's key claiming to be the gateway",
            "principal rejected",
        ),
        through_store(
            "signed by the store itself",
            "store may not sign principals",
        ),
        through_store("expired, replayed", "expired"),
        through_store("living an hour", "longer than 60 s"),
        through_store("for another audience", "principal rejected"),
    ];
    for (name, needle) in [
        ("alg none", "alg none"),
        ("another key", "another key"),
        ("RS256 at an HS256 gateway", "algorithm"),
        ("another issuer", "wrong issuer"),
        ("another audience", "wrong audience"),
        ("expired", "expired"),
        ("no iat", "iat"),
        ("future iat", "iat"),
        ("future nbf", "not valid yet"),
        ("no exp", "exp"),
        ("no sub", "sub"),
        ("not a JWT", "malformed"),
    ] {
        rows.push(row(
            format!("a session JWT: {name}"),
            Code::Unauthenticated,
            move |w: &World| {
                Attack::by(&w.jwt(name))
                    .grpc(|c| async move { c.tenancy().get_me(sharing::GetMeRequest {}).await })
                    .get("/api/v1/me")
                    .says(needle)
            },
        ));
    }

    privileged(&mut rows, "CreateWorkspace", |_, caller| {
        Attack::by(&caller)
            .grpc(|c| async move {
                c.tenancy()
                    .create_workspace(sharing::CreateWorkspaceRequest { name: "Ops".into() })
                    .await
            })
            .post("/api/v1/workspaces", json!({ "name": "Ops" }))
    });
    privileged(&mut rows, "UpdateWorkspace", |w, caller| {
        let id = w.sales.clone();
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .update_workspace(sharing::UpdateWorkspaceRequest {
                        workspace_id: id,
                        name: Some("Renamed".into()),
                    })
                    .await
            })
            .patch(
                format!("/api/v1/workspaces/{}", w.sales),
                json!({ "name": "Renamed" }),
            )
    });
    privileged(&mut rows, "DeleteWorkspace", |w, caller| {
        let id = w.sales.clone();
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .delete_workspace(sharing::DeleteWorkspaceRequest { workspace_id: id })
                    .await
            })
            .delete(format!("/api/v1/workspaces/{}", w.sales))
    });
    privileged(&mut rows, "AddWorkspaceMember", |w, caller| {
        let (ws, user) = (w.sales.clone(), w.carol.clone());
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .add_workspace_member(sharing::AddWorkspaceMemberRequest {
                        workspace_id: ws,
                        user_id: user,
                        role: sharing::WorkspaceRole::Member as i32,
                    })
                    .await
            })
            .post(
                format!("/api/v1/workspaces/{}/members", w.sales),
                json!({ "user_id": w.carol, "role": "WORKSPACE_ROLE_MEMBER" }),
            )
    });
    privileged(&mut rows, "UpdateWorkspaceMemberRole", |w, caller| {
        let (ws, user) = (w.sales.clone(), w.bob.clone());
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .update_workspace_member_role(sharing::UpdateWorkspaceMemberRoleRequest {
                        workspace_id: ws,
                        user_id: user,
                        role: sharing::WorkspaceRole::Owner as i32,
                    })
                    .await
            })
            .patch(
                format!("/api/v1/workspaces/{}/members/{}", w.sales, w.bob),
                json!({ "role": "WORKSPACE_ROLE_OWNER" }),
            )
    });
    privileged(&mut rows, "RemoveWorkspaceMember", |w, caller| {
        let (ws, user) = (w.sales.clone(), w.bob.clone());
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .remove_workspace_member(sharing::RemoveWorkspaceMemberRequest {
                        workspace_id: ws,
                        user_id: user,
                    })
                    .await
            })
            .delete(format!("/api/v1/workspaces/{}/members/{}", w.sales, w.bob))
    });
    privileged(&mut rows, "AddOrgMember", |w, caller| {
        let user = w.dave.clone();
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .add_org_member(sharing::AddOrgMemberRequest {
                        user: Some(sharing::add_org_member_request::User::UserId(user)),
                        role: sharing::OrgRole::Admin as i32,
                    })
                    .await
            })
            .post(
                "/api/v1/members",
                json!({ "user_id": w.dave, "role": "ORG_ROLE_ADMIN" }),
            )
    });
    privileged(&mut rows, "UpdateOrgMemberRole", |w, caller| {
        let user = w.bob.clone();
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .update_org_member_role(sharing::UpdateOrgMemberRoleRequest {
                        user_id: user,
                        role: sharing::OrgRole::Owner as i32,
                    })
                    .await
            })
            .patch(
                format!("/api/v1/members/{}", w.bob),
                json!({ "role": "ORG_ROLE_OWNER" }),
            )
    });
    privileged(&mut rows, "RemoveOrgMember", |w, caller| {
        let user = w.bob.clone();
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .remove_org_member(sharing::RemoveOrgMemberRequest { user_id: user })
                    .await
            })
            .delete(format!("/api/v1/members/{}", w.bob))
    });
    privileged(&mut rows, "SetAgentWorkspaces", |w, caller| {
        let (agent, list) = (w.agent.clone(), vec![w.default_ws.clone(), w.sales.clone()]);
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.sharing()
                    .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                        agent_id: agent,
                        workspace_ids: list,
                    })
                    .await
            })
            .patch(
                format!("/api/v1/agents/{}/workspaces", w.agent),
                json!({ "workspace_ids": [w.default_ws, w.sales] }),
            )
    });
    privileged(&mut rows, "SetProjectWorkspaces", |w, caller| {
        let (project, list) = (
            w.project.clone(),
            vec![w.default_ws.clone(), w.sales.clone()],
        );
        Attack::by(&caller)
            .grpc(move |c| async move {
                c.tenancy()
                    .set_project_workspaces(sharing::SetProjectWorkspacesRequest {
                        project_id: project,
                        workspace_ids: list,
                    })
                    .await
            })
            .patch(
                format!("/api/v1/projects/{}/workspaces", w.project),
                json!({ "workspace_ids": [w.default_ws, w.sales] }),
            )
    });
    privileged(
        &mut rows,
        "UpdateOrg turning workspaces off",
        |w, caller| {
            let org = w.org.clone();
            Attack::by(&caller)
                .grpc(move |c| async move {
                    c.tenancy()
                        .update_org(sharing::UpdateOrgRequest {
                            org_id: org,
                            workspaces_enabled: Some(false),
                            ..Default::default()
                        })
                        .await
                })
                .patch(
                    format!("/api/v1/orgs/{}", w.org),
                    json!({ "workspaces_enabled": false }),
                )
        },
    );
    rows
}

/// What the rows could change, as the owner reads it: the org, its
/// members, workspaces and their members, the agent's and the project's
/// workspace lists.
async fn snapshot(suite: &Suite, w: &World) -> String {
    let owner = suite
        .anonymous()
        .await
        .with_token(&stepped_up(suite, "alice"));
    let tenancy = || owner.tenancy();
    let org = tenancy()
        .get_org(sharing::GetOrgRequest {
            org_id: w.org.clone(),
        })
        .await
        .expect("org")
        .into_inner()
        .org
        .expect("org");
    let mut members: Vec<(String, i32)> = tenancy()
        .list_org_members(sharing::ListOrgMembersRequest::default())
        .await
        .expect("members")
        .into_inner()
        .members
        .into_iter()
        .map(|m| (m.user.expect("user").id, m.role))
        .collect();
    members.sort();
    let mut workspaces: Vec<(String, String)> = tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("workspaces")
        .into_inner()
        .workspaces
        .into_iter()
        .map(|m| {
            let ws = m.workspace.expect("workspace");
            (ws.id, ws.name)
        })
        .collect();
    workspaces.sort();
    let mut sales: Vec<(String, i32)> = tenancy()
        .list_workspace_members(sharing::ListWorkspaceMembersRequest {
            workspace_id: w.sales.clone(),
            ..Default::default()
        })
        .await
        .expect("sales members")
        .into_inner()
        .members
        .into_iter()
        .map(|m| (m.user.expect("user").id, m.role))
        .collect();
    sales.sort();
    let agent = owner
        .sharing()
        .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
            agent_id: w.agent.clone(),
        })
        .await
        .expect("agent workspaces")
        .into_inner()
        .sharing
        .expect("sharing");
    let project = tenancy()
        .get_project_workspaces(sharing::GetProjectWorkspacesRequest {
            project_id: w.project.clone(),
        })
        .await
        .expect("project workspaces")
        .into_inner();
    let ids = |list: Vec<sharing::Workspace>| list.into_iter().map(|w| w.id).collect::<Vec<_>>();
    format!(
        "org {} {} | members {members:?} | workspaces {workspaces:?} | sales {sales:?} | \
         agent {} {:?} | project {:?}",
        org.name,
        org.workspaces_enabled,
        agent.shared,
        ids(agent.workspaces),
        ids(project.workspaces),
    )
}

#[tokio::test]
async fn forged_identities_and_weak_credentials_change_nothing() {
    let suite = Suite::start().await;
    let w = world(&suite).await;
    // Nothing of the org may show in an answer to a stranger's credential;
    // the owner's own weak credentials see their org, so only names of
    // others are private here.
    let private = vec!["Acme Identity".to_string(), "Ledger".to_string(), never()];
    run_table(&suite, &w, table(), &private, || snapshot(&suite, &w)).await;
    suite.stop().await;
}

/// The gateway trusts an identity provider's RS256 key: HS256 tokens
/// signed with that public key (the classic confusion), ES256 tokens and
/// tokens without a key id are refused.
pub fn rs256_table() -> Vec<Row<Rs256World>> {
    vec![
        row(
            "HS256 signed with the provider's RSA public key (HS/RS confusion)",
            Code::Unauthenticated,
            |w: &Rs256World| {
                Attack::by(&Caller::bearer(&w.confused))
                    .grpc(|c| async move { c.tenancy().get_me(sharing::GetMeRequest {}).await })
                    .get("/api/v1/me")
                    .says("algorithm")
            },
        ),
        row(
            "the dev HS256 key at a gateway that trusts the provider",
            Code::Unauthenticated,
            |w: &Rs256World| {
                Attack::by(&Caller::bearer(&w.dev))
                    .grpc(|c| async move { c.tenancy().get_me(sharing::GetMeRequest {}).await })
                    .get("/api/v1/me")
                    .says("algorithm")
            },
        ),
        row(
            "RS256 from the provider, for another audience",
            Code::Unauthenticated,
            |w: &Rs256World| {
                Attack::by(&Caller::bearer(&w.other_audience))
                    .grpc(|c| async move { c.tenancy().get_me(sharing::GetMeRequest {}).await })
                    .get("/api/v1/me")
                    .says("wrong audience")
            },
        ),
    ]
}

pub struct Rs256World {
    confused: String,
    dev: String,
    other_audience: String,
}

#[tokio::test]
async fn a_provider_keyed_gateway_refuses_algorithm_confusion() {
    let issuer = "https://idp.example";
    let audience = "agentshare-prod";
    let suite = Suite::builder()
        .session_auth(agentshare_kit::config::Auth {
            issuer: issuer.into(),
            audience: audience.into(),
            public_key_file: fixture("rsa_public.pem"),
            ..Default::default()
        })
        .start()
        .await;
    let now = suite.clock.now_secs();
    let mut claims = session::dev_claims("rita", None, false, now, 600);
    claims.iss = issuer.into();
    claims.aud = audience.into();
    let public = std::fs::read(fixture("rsa_public.pem")).expect("public key");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&public),
    )
    .expect("sign");
    let mut elsewhere = claims.clone();
    elsewhere.aud = "someone-else".into();
    let rsa = std::fs::read(fixture("rsa_private.pem")).expect("key");
    let other_audience = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &elsewhere,
        &EncodingKey::from_rsa_pem(&rsa).expect("key"),
    )
    .expect("sign");
    // The provider's real token works, so the refusals are about the token.
    let real = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&rsa).expect("key"),
    )
    .expect("sign");
    let w = Rs256World {
        confused,
        dev: suite.token("rita"),
        other_audience,
    };
    let rita = suite.anonymous().await.with_token(&real);
    let snapshot = || {
        let rita = rita.clone();
        async move {
            let me = rita
                .tenancy()
                .get_me(sharing::GetMeRequest {})
                .await
                .expect("the provider's own token works")
                .into_inner();
            format!("{:?}", me.user.map(|u| (u.id, u.email)))
        }
    };
    run_table(&suite, &w, rs256_table(), &[], snapshot).await;
    suite.stop().await;
}
