//! Credentials at the gateway: every bad one is UNAUTHENTICATED, and the
//! message says which.

use agentshare_e2e::Suite;
use agentshare_kit::session;
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;

use crate::assert_status;

fn create_org() -> sharing::CreateOrgRequest {
    sharing::CreateOrgRequest {
        name: "Acme".into(),
    }
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated_and_say_why() {
    let suite = Suite::start().await;
    let anonymous = suite.anonymous().await;
    assert_status(
        anonymous.tenancy().create_org(create_org()).await,
        Code::Unauthenticated,
        "missing credential",
    );

    // alg none: a token anyone could write.
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"iss":"{}","aud":"{}","sub":"mallory","exp":{}}}"#,
            session::DEV_ISSUER,
            session::DEV_AUDIENCE,
            suite.clock.now_secs() + 600
        ))
    );
    assert_status(
        anonymous
            .with_token(&unsigned)
            .tenancy()
            .create_org(create_org())
            .await,
        Code::Unauthenticated,
        "alg none",
    );

    // Signed with a key that is not the data dir's.
    let claims = session::dev_claims("mallory", None, false, suite.clock.now_secs(), 600);
    let forged =
        session::mint_hs256(b"another-secret-another-secret-another", &claims).expect("mint");
    assert_status(
        anonymous
            .with_token(&forged)
            .tenancy()
            .create_org(create_org())
            .await,
        Code::Unauthenticated,
        "another key",
    );

    // Expired: minted an hour ago with a ten-minute life.
    let claims = session::dev_claims("alice", None, false, suite.clock.now_secs() - 3600, 600);
    assert_status(
        anonymous
            .with_token(&suite.sign_session(&claims))
            .tenancy()
            .create_org(create_org())
            .await,
        Code::Unauthenticated,
        "expired",
    );

    // The right key, but another issuer.
    let mut claims = session::dev_claims("alice", None, false, suite.clock.now_secs(), 600);
    claims.iss = "https://elsewhere.example".into();
    assert_status(
        anonymous
            .with_token(&suite.sign_session(&claims))
            .tenancy()
            .create_org(create_org())
            .await,
        Code::Unauthenticated,
        "wrong issuer",
    );

    assert_status(
        anonymous
            .with_token("not-a-jwt")
            .tenancy()
            .create_org(create_org())
            .await,
        Code::Unauthenticated,
        "malformed",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_token_expires_on_the_suite_clock() {
    let suite = Suite::start().await;
    let alice = suite
        .anonymous()
        .await
        .with_token(&suite.token_with("alice", false, 60));
    alice
        .tenancy()
        .create_org(create_org())
        .await
        .expect("valid now");
    suite.clock.advance(std::time::Duration::from_secs(61));
    assert_status(
        alice.tenancy().create_org(create_org()).await,
        Code::Unauthenticated,
        "expired",
    );
    suite.stop().await;
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
