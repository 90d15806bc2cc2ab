//! Session tokens: the JWTs a client sends as `authorization: Bearer`, and
//! the identity provider's key documents they are checked against. Input:
//! - a JSON object: claims, signed with the dev key and then verified, so
//!   the fuzzer reaches past the signature into the claims;
//! - anything else: a token as sent, verified, and also read as a JWKS
//!   document and as a PEM public key.
//! A verified token is unexpired and from the configured issuer and
//! audience; nothing panics.
#![no_main]

use agentshare_kit::clock::Clock;
use agentshare_kit::session::{DEV_AUDIENCE, DEV_ISSUER, SessionVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"a dev key for fuzzing, 32 bytes or more";
/// 2023-11-14T22:13:20Z; the seeds' claims expire around it.
const NOW_SECS: i64 = 1_700_000_000;

fn check(verifier: &SessionVerifier, token: &str, clock: &Clock) {
    if let Ok(claims) = verifier.verify(token, clock) {
        assert!(claims.exp > NOW_SECS, "an expired token verified");
        assert_eq!(claims.iss, DEV_ISSUER);
        assert_eq!(claims.aud, DEV_AUDIENCE);
    }
}

fuzz_target!(|data: &[u8]| {
    let clock = Clock::manual(NOW_SECS * 1_000_000);
    let verifier = SessionVerifier::hs256(SECRET, DEV_ISSUER, DEV_AUDIENCE);
    if let Ok(claims @ serde_json::Value::Object(_)) = serde_json::from_slice(data) {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("HS256 signs any JSON object");
        check(&verifier, &token, &clock);
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = SessionVerifier::from_jwks(data, DEV_ISSUER, DEV_AUDIENCE);
        let _ = SessionVerifier::from_public_pem(data, DEV_ISSUER, DEV_AUDIENCE);
        return;
    };
    check(&verifier, text, &clock);
    if let Ok(jwks) = SessionVerifier::from_jwks(data, DEV_ISSUER, DEV_AUDIENCE) {
        check(&jwks, text, &clock);
    }
    if let Ok(pem) = SessionVerifier::from_public_pem(data, DEV_ISSUER, DEV_AUDIENCE) {
        check(&pem, text, &clock);
    }
});
