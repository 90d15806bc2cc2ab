//! User session tokens: JWTs from the org's identity provider, or, in the
//! embedded mode, HS256 tokens minted with the dev key of the data dir.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::Error;

/// The issuer and audience of tokens minted by `agentshare token`.
pub const DEV_ISSUER: &str = "agentshare-dev";
pub const DEV_AUDIENCE: &str = "agentshare";

/// The claims agentshare reads from a session token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    /// Issued at (Unix seconds); required, and never in the future.
    #[serde(default)]
    pub iat: i64,
    /// Not before (Unix seconds), when the provider sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The session id; a session's active workspace hangs off it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// When the user last authenticated (Unix seconds), for step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Authentication methods, e.g. `["pwd", "otp"]`; a second factor is
    /// needed for step-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// One key a session token may be signed with.
#[derive(Clone)]
struct VerifyKey {
    /// The JWKS `kid`; a token naming a kid is checked against that key only.
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks session tokens: algorithm, signature, issuer, audience and expiry.
#[derive(Clone)]
pub struct SessionVerifier {
    keys: Vec<VerifyKey>,
    algorithms: Vec<Algorithm>,
    issuer: String,
    audience: String,
}

impl SessionVerifier {
    fn new(keys: Vec<VerifyKey>, issuer: &str, audience: &str) -> Self {
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for key in &keys {
            if !algorithms.contains(&key.algorithm) {
                algorithms.push(key.algorithm);
            }
        }
        Self {
            keys,
            algorithms,
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// Verifies HS256 tokens signed with a shared secret (the dev key).
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        let key = VerifyKey {
            kid: None,
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        };
        Self::new(vec![key], issuer, audience)
    }

    /// Verifies RS256 or ES256 tokens against a PEM public key.
    pub fn from_public_pem(pem: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else {
            let key = DecodingKey::from_ec_pem(pem)
                .map_err(|e| format!("not an RSA or EC public key PEM: {e}"))?;
            (key, Algorithm::ES256)
        };
        let key = VerifyKey {
            kid: None,
            algorithm,
            key,
        };
        Ok(Self::new(vec![key], issuer, audience))
    }

    /// Verifies RS256 or ES256 tokens against the signing keys of a JWKS
    /// document, as identity providers publish them. RSA keys verify RS256
    /// and P-256 keys ES256; a key of any other kind, or a JWKS with no
    /// usable key, is refused so a mistyped file cannot lock everyone out
    /// silently.
    pub fn from_jwks(json: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            let name = jwk
                .common
                .key_id
                .clone()
                .unwrap_or_else(|| format!("#{index}"));
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    return Err(format!(
                        "key {name}: only RSA (RS256) and P-256 (ES256) keys are supported"
                    ));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {name}: {e}"))?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no signing key".into());
        }
        Ok(Self::new(keys, issuer, audience))
    }

    /// The keys a token with this header may be checked against.
    fn candidates(&self, header: &Header) -> Result<Vec<&VerifyKey>, String> {
        let of_alg = self.keys.iter().filter(|k| k.algorithm == header.alg);
        match &header.kid {
            Some(kid) if self.keys.iter().any(|k| k.kid.is_some()) => {
                let named: Vec<_> = of_alg.filter(|k| k.kid.as_deref() == Some(kid)).collect();
                if named.is_empty() {
                    Err(format!(
                        "unknown key id {kid:?}; the identity provider's keys may have rotated"
                    ))
                } else {
                    Ok(named)
                }
            }
            _ => Ok(of_alg.collect()),
        }
    }

    pub fn verify(&self, token: &str, clock: &Clock) -> Result<SessionClaims, Error> {
        let unauthenticated =
            |why: &str| Error::Unauthenticated(format!("session token rejected: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            if declares_alg_none(token) {
                unauthenticated("alg none is not accepted; tokens must be signed")
            } else {
                unauthenticated("malformed token; send `authorization: Bearer <jwt>`")
            }
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(unauthenticated(&format!(
                "algorithm {:?} is not accepted here; expected {:?}",
                header.alg, self.algorithms
            )));
        }
        let mut validation = Validation::new(header.alg);
        // One algorithm: the library refuses a list that spans key families.
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let candidates = self
            .candidates(&header)
            .map_err(|why| unauthenticated(&why))?;
        let mut outcome = Err(jsonwebtoken::errors::ErrorKind::InvalidSignature.into());
        for key in candidates {
            outcome = jsonwebtoken::decode::<SessionClaims>(token, &key.key, &validation);
            let wrong_key = matches!(
                &outcome,
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)
            );
            if !wrong_key {
                break;
            }
        }
        let data = outcome.map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => unauthenticated(
                    "signature does not verify; the token was signed with another key",
                ),
                ErrorKind::InvalidIssuer => {
                    unauthenticated(&format!("wrong issuer; expected {}", self.issuer))
                }
                ErrorKind::InvalidAudience => {
                    unauthenticated(&format!("wrong audience; expected {}", self.audience))
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    unauthenticated(&format!("missing claim {claim}"))
                }
                _ => unauthenticated(&format!("invalid token: {e}")),
            }
        })?;
        let now = clock.now_secs();
        if data.claims.exp <= now {
            return Err(unauthenticated(
                "token expired; sign in again or mint a new token",
            ));
        }
        not_early(&data.claims, now).map_err(|why| unauthenticated(&why))?;
        Ok(data.claims)
    }
}

/// How far a provider's clock may run ahead of ours.
const CLOCK_SKEW_SECS: i64 = 60;

/// A token must say when it was issued, and neither that nor its `nbf`
/// may lie ahead: a token minted for later is not a credential yet.
fn not_early(claims: &SessionClaims, now: i64) -> Result<(), String> {
    if claims.iat <= 0 {
        return Err(
            "missing claim iat; the identity provider must say when it issued the token".into(),
        );
    }
    if claims.iat > now + CLOCK_SKEW_SECS {
        return Err("iat lies in the future; check the identity provider's clock".into());
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
        return Err("the token is not valid yet (nbf); use it once its time has come".into());
    }
    Ok(())
}

fn declares_alg_none(token: &str) -> bool {
    use base64::Engine;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| {
            v.get("alg")
                .and_then(|a| a.as_str())
                .map(|a| a.eq_ignore_ascii_case("none"))
        })
        .unwrap_or(false)
}

/// Mints an HS256 session token, as `agentshare token` does.
pub fn mint_hs256(secret: &[u8], claims: &SessionClaims) -> Result<String, Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(Error::internal)
}

/// Claims of a dev token for `user`, valid for `ttl_secs` from `now`.
pub fn dev_claims(
    user: &str,
    email: Option<&str>,
    step_up: bool,
    now: i64,
    ttl_secs: i64,
) -> SessionClaims {
    SessionClaims {
        iss: DEV_ISSUER.into(),
        aud: DEV_AUDIENCE.into(),
        sub: user.into(),
        exp: now + ttl_secs,
        iat: now,
        nbf: None,
        email: email.map(str::to_string),
        name: Some(user.into()),
        // Each minted token is its own session, so SwitchWorkspace works in
        // the embedded mode too.
        sid: Some(uuid::Uuid::now_v7().to_string()),
        auth_time: Some(now),
        amr: if step_up {
            vec!["pwd".into(), "otp".into()]
        } else {
            vec!["pwd".into()]
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

    fn verify(claims: &SessionClaims, now: i64) -> Result<SessionClaims, Error> {
        let token = mint_hs256(SECRET, claims).expect("mint");
        SessionVerifier::hs256(SECRET, DEV_ISSUER, DEV_AUDIENCE)
            .verify(&token, &Clock::manual(now * 1_000_000))
    }

    fn refusal(claims: &SessionClaims, now: i64) -> String {
        match verify(claims, now) {
            Err(Error::Unauthenticated(why)) => why,
            other => panic!("expected UNAUTHENTICATED, got {other:?}"),
        }
    }

    #[test]
    fn a_token_must_say_when_it_was_issued_and_not_claim_a_later_time() {
        let now = 1_800_000_000;
        verify(&dev_claims("ann", None, false, now, 600), now).expect("a fresh token");

        let mut missing = dev_claims("ann", None, false, now, 600);
        missing.iat = 0;
        assert!(refusal(&missing, now).contains("missing claim iat"));

        let mut future = dev_claims("ann", None, false, now, 600);
        future.iat = now + 3600;
        assert!(refusal(&future, now).contains("iat lies in the future"));
        future.iat = now + CLOCK_SKEW_SECS;
        verify(&future, now).expect("within the allowed skew");

        let mut early = dev_claims("ann", None, false, now, 600);
        early.nbf = Some(now + 3600);
        assert!(refusal(&early, now).contains("not valid yet"));
        early.nbf = Some(now - 10);
        verify(&early, now).expect("nbf passed");
    }
}
