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
    #[serde(default)]
    pub iat: i64,
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

/// Checks session tokens: algorithm, signature, issuer, audience and expiry.
#[derive(Clone)]
pub struct SessionVerifier {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    issuer: String,
    audience: String,
}

impl SessionVerifier {
    /// Verifies HS256 tokens signed with a shared secret (the dev key).
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256],
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// Verifies RS256 or ES256 tokens against a PEM public key.
    pub fn from_public_pem(pem: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, vec![Algorithm::RS256])
        } else {
            let key = DecodingKey::from_ec_pem(pem)
                .map_err(|e| format!("not an RSA or EC public key PEM: {e}"))?;
            (key, vec![Algorithm::ES256])
        };
        Ok(Self {
            key,
            algorithms,
            issuer: issuer.into(),
            audience: audience.into(),
        })
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
        validation.algorithms = self.algorithms.clone();
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<SessionClaims>(token, &self.key, &validation).map_err(|e| {
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
        if data.claims.exp <= clock.now_secs() {
            return Err(unauthenticated(
                "token expired; sign in again or mint a new token",
            ));
        }
        Ok(data.claims)
    }
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
