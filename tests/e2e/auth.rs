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

/// The committed test-only identity-provider keys.
fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/idp")
        .join(name)
}

const IDP_ISSUER: &str = "https://idp.example";
const IDP_AUDIENCE: &str = "agentshare-prod";

fn idp_auth(public_key_file: &str, jwks_file: &str) -> agentshare_kit::config::Auth {
    agentshare_kit::config::Auth {
        issuer: IDP_ISSUER.into(),
        audience: IDP_AUDIENCE.into(),
        public_key_file: if public_key_file.is_empty() {
            Default::default()
        } else {
            fixture(public_key_file)
        },
        jwks_file: if jwks_file.is_empty() {
            Default::default()
        } else {
            fixture(jwks_file)
        },
        ..Default::default()
    }
}

/// A session token as the identity provider would sign it.
fn idp_token(
    suite: &Suite,
    user: &str,
    algorithm: jsonwebtoken::Algorithm,
    kid: Option<&str>,
) -> String {
    let mut claims = session::dev_claims(user, None, false, suite.clock.now_secs(), 600);
    claims.iss = IDP_ISSUER.into();
    claims.aud = IDP_AUDIENCE.into();
    claims.email = Some(format!("{user}@idp.example"));
    let pem = std::fs::read(fixture(match algorithm {
        jsonwebtoken::Algorithm::RS256 => "rsa_private.pem",
        _ => "ec_private.pem",
    }))
    .expect("fixture key");
    let key = match algorithm {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
    }
    .expect("private key");
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn whoami(suite: &Suite, token: &str) -> Result<sharing::GetMeResponse, tonic::Status> {
    suite
        .anonymous()
        .await
        .with_token(token)
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_identity_providers_rs256_and_es256_tokens_verify_from_a_pem_or_a_jwks() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    // The JWKS holds both keys; the token's kid picks one.
    let suite = Suite::builder()
        .session_auth(idp_auth("", "jwks.json"))
        .start()
        .await;
    let me = whoami(&suite, &idp_token(&suite, "rita", RS256, Some("idp-rsa-1")))
        .await
        .expect("an RS256 token of the JWKS");
    let user = me.user.expect("user");
    assert_eq!(
        user.email, "rita@idp.example",
        "created on first sight from the claims"
    );
    whoami(&suite, &idp_token(&suite, "elsa", ES256, Some("idp-ec-1")))
        .await
        .expect("an ES256 token of the JWKS");
    assert_status(
        whoami(&suite, &idp_token(&suite, "rita", RS256, Some("idp-rsa-9"))).await,
        Code::Unauthenticated,
        "unknown key id",
    );
    // A key id of the wrong kind of key does not verify either.
    assert_status(
        whoami(&suite, &idp_token(&suite, "rita", ES256, Some("idp-rsa-1"))).await,
        Code::Unauthenticated,
        "unknown key id",
    );
    // The dev key means nothing to a gateway that trusts the provider.
    assert_status(
        whoami(&suite, &suite.token("alice")).await,
        Code::Unauthenticated,
        "algorithm",
    );
    suite.stop().await;

    // One PEM: its algorithm only.
    let suite = Suite::builder()
        .session_auth(idp_auth("ec_public.pem", ""))
        .start()
        .await;
    whoami(&suite, &idp_token(&suite, "elsa", ES256, None))
        .await
        .expect("an ES256 token of the PEM");
    assert_status(
        whoami(&suite, &idp_token(&suite, "rita", RS256, None)).await,
        Code::Unauthenticated,
        "algorithm",
    );
    suite.stop().await;
    let suite = Suite::builder()
        .session_auth(idp_auth("rsa_public.pem", ""))
        .start()
        .await;
    whoami(&suite, &idp_token(&suite, "rita", RS256, None))
        .await
        .expect("an RS256 token of the PEM");
    let mut claims = session::dev_claims("rita", None, false, suite.clock.now_secs(), 600);
    claims.aud = "someone-else".into();
    claims.iss = IDP_ISSUER.into();
    let pem = std::fs::read(fixture("rsa_private.pem")).expect("key");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("key"),
    )
    .expect("sign");
    assert_status(
        whoami(&suite, &token).await,
        Code::Unauthenticated,
        "wrong audience",
    );
    suite.stop().await;
}
