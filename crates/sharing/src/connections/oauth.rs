//! The OAuth 2.0 authorization-code client (RFC 6749 with PKCE, RFC 7636)
//! behind OAuth connections: build the URL a user consents at, trade the code
//! for tokens, refresh them.
//!
//! Tokens, codes and verifiers are secrets: nothing here logs them, and no
//! error message carries them.

use std::fmt;
use std::time::Duration;

use agentshare_kit::secret::Secret;
use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpClientError, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardErrorResponse, TokenResponse, TokenUrl,
};

/// A slow or silent provider must not hold a user's request (or a refresh
/// before an agent run) for long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One OAuth provider, as configured.
#[derive(Clone, Debug)]
pub struct OAuthProvider {
    /// How connections and config name the provider, e.g. "gmail".
    pub key: String,
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Requested at consent; also what a token grant is taken to cover when
    /// the provider does not say.
    pub scopes: Vec<String>,
    /// Where the provider sends the user back; it must match the provider's
    /// registration exactly, and is sent again with the code exchange.
    pub redirect_url: String,
}

/// What StartOAuthConnection hands out and keeps.
pub struct Authorization {
    /// The provider's authorize URL carrying client_id, redirect_uri, scope,
    /// state and the S256 PKCE challenge: where the user is sent to consent.
    pub url: String,
    /// Proves at the code exchange that whoever started the flow finishes it.
    /// Kept server-side until then, never sent to the client.
    pub pkce_verifier: String,
}

/// What a provider granted.
pub struct Tokens {
    pub access_token: String,
    /// `None` when the provider issues none, or, on a refresh, keeps the old
    /// one valid; the caller then keeps the refresh token it has.
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
    /// Granted scopes if the provider says, else the requested ones.
    pub scopes: Vec<String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why no tokens came back. The two call for different remedies: a refusal
/// needs the user to reconnect, an outage only needs a retry.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider answered and refused (invalid_grant, invalid_client, ...):
    /// carries the provider's error code and description, never a token.
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The provider could not be reached or answered garbage.
    #[error("the provider is unreachable: {0}")]
    Unreachable(String),
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

type ExchangeError = RequestTokenError<
    HttpClientError<reqwest::Error>,
    StandardErrorResponse<oauth2::basic::BasicErrorResponseType>,
>;

/// Builds the URL the user consents at, with a fresh PKCE pair. `state` is
/// the caller's, so it can tie the callback to the flow it started.
pub fn authorize(provider: &OAuthProvider, state: &str) -> Result<Authorization, String> {
    let client = client(provider)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _state) = client
        .authorize_url(|| CsrfToken::new(state.to_owned()))
        .add_scopes(provider.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    Ok(Authorization {
        url: url.into(),
        pkce_verifier: verifier.into_secret(),
    })
}

/// Trades the code the provider sent back for tokens.
pub async fn exchange_code(
    provider: &OAuthProvider,
    code: &str,
    pkce_verifier: &str,
) -> Result<Tokens, TokenError> {
    let client = client(provider).map_err(TokenError::Unreachable)?;
    let http = http_client()?;
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(&http)
        .await
        .map_err(token_error)?;
    Ok(tokens(provider, &response))
}

/// Trades a refresh token for a fresh access token, for the scopes first
/// granted.
pub async fn refresh(provider: &OAuthProvider, refresh_token: &str) -> Result<Tokens, TokenError> {
    let client = client(provider).map_err(TokenError::Unreachable)?;
    let http = http_client()?;
    let refresh_token = RefreshToken::new(refresh_token.to_owned());
    let response = client
        .exchange_refresh_token(&refresh_token)
        .request_async(&http)
        .await
        .map_err(token_error)?;
    Ok(tokens(provider, &response))
}

/// Client authentication is HTTP Basic, RFC 6749's default that every
/// provider must accept.
fn client(provider: &OAuthProvider) -> Result<Client, String> {
    let key = &provider.key;
    let authorize_url = AuthUrl::new(provider.authorize_url.clone())
        .map_err(|e| format!("OAuth provider {key}: bad authorize_url: {e}"))?;
    let token_url = TokenUrl::new(provider.token_url.clone())
        .map_err(|e| format!("OAuth provider {key}: bad token_url: {e}"))?;
    let redirect_url = RedirectUrl::new(provider.redirect_url.clone())
        .map_err(|e| format!("OAuth provider {key}: bad redirect_url: {e}"))?;
    Ok(BasicClient::new(ClientId::new(provider.client_id.clone()))
        .set_client_secret(ClientSecret::new(
            provider.client_secret.expose().to_owned(),
        ))
        .set_auth_uri(authorize_url)
        .set_token_uri(token_url)
        .set_redirect_uri(redirect_url))
}

/// Redirects are not followed, so a token endpoint cannot bounce the request
/// (and the client's credentials) to another host, as the oauth2 docs warn.
///
/// A client per call rather than one shared: a pooled connection is bound to
/// the runtime that opened it, and token calls are rare enough that the pool
/// buys nothing.
fn http_client() -> Result<reqwest::Client, TokenError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| TokenError::Unreachable(format!("cannot build the HTTP client: {e}")))
}

fn tokens(provider: &OAuthProvider, response: &BasicTokenResponse) -> Tokens {
    let scopes = match response.scopes() {
        Some(granted) => granted.iter().map(|scope| scope.to_string()).collect(),
        None => provider.scopes.clone(),
    };
    Tokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|token| token.secret().clone()),
        expires_in: response.expires_in(),
        scopes,
    }
}

/// The messages are built from parts known to hold no secret: a response
/// body, or serde's echo of a value in it, may be a token.
fn token_error(error: ExchangeError) -> TokenError {
    match error {
        RequestTokenError::ServerResponse(refusal) => {
            let mut message = refusal.error().to_string();
            if let Some(description) = refusal.error_description() {
                message.push_str(": ");
                message.push_str(description);
            }
            TokenError::Refused(message)
        }
        RequestTokenError::Request(e) => TokenError::Unreachable(request_failure(&e)),
        RequestTokenError::Parse(e, _body) => TokenError::Unreachable(match e.path().to_string() {
            path if path == "." => "an unreadable token response".to_owned(),
            path => format!("an unreadable token response at `{path}`"),
        }),
        RequestTokenError::Other(message) => TokenError::Unreachable(message),
    }
}

fn request_failure(error: &HttpClientError<reqwest::Error>) -> String {
    match error {
        HttpClientError::Reqwest(e) if e.is_timeout() => {
            format!("no answer within {}s", TIMEOUT.as_secs())
        }
        HttpClientError::Reqwest(e) => {
            // reqwest's top line says only "error sending request"; the cause
            // (refused, DNS, TLS) is what an operator needs.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn provider() -> OAuthProvider {
        OAuthProvider {
            key: "gmail".into(),
            authorize_url: "https://accounts.example.com/o/oauth2/auth".into(),
            token_url: "https://oauth2.example.com/token".into(),
            client_id: "client-1".into(),
            client_secret: "s3cret".into(),
            scopes: vec!["mail.read".into(), "mail.compose".into()],
            redirect_url: "https://agentshare.example.com/oauth/callback".into(),
        }
    }

    fn query(url: &str) -> HashMap<String, String> {
        let url = reqwest::Url::parse(url).unwrap();
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn authorize_url_carries_the_flow() {
        let authorization = authorize(&provider(), "state-42").unwrap();
        assert!(
            authorization
                .url
                .starts_with("https://accounts.example.com/o/oauth2/auth?")
        );
        let query = query(&authorization.url);
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client-1");
        assert_eq!(
            query["redirect_uri"],
            "https://agentshare.example.com/oauth/callback"
        );
        assert_eq!(query["state"], "state-42");
        assert_eq!(query["scope"], "mail.read mail.compose");
        assert_eq!(query["code_challenge_method"], "S256");
        let verifier = PkceCodeVerifier::new(authorization.pkce_verifier);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        assert_eq!(query["code_challenge"], challenge.as_str());
    }

    #[test]
    fn authorize_keeps_secrets_out_of_the_url() {
        let authorization = authorize(&provider(), "state-42").unwrap();
        assert!(!authorization.url.contains("s3cret"));
        assert!(!authorization.url.contains(&authorization.pkce_verifier));
    }

    #[test]
    fn each_authorization_has_its_own_verifier() {
        let first = authorize(&provider(), "a").unwrap();
        let second = authorize(&provider(), "a").unwrap();
        assert_ne!(first.pkce_verifier, second.pkce_verifier);
    }

    #[test]
    fn a_bad_url_names_the_provider_and_the_setting() {
        let mut provider = provider();
        provider.token_url = "not a url".into();
        let error = authorize(&provider, "s").err().unwrap();
        assert!(
            error.contains("gmail") && error.contains("token_url"),
            "{error}"
        );
    }

    #[test]
    fn tokens_debug_is_redacted() {
        let tokens = Tokens {
            access_token: "at-123".into(),
            refresh_token: Some("rt-456".into()),
            expires_in: None,
            scopes: vec![],
        };
        let debug = format!("{tokens:?}");
        assert!(
            !debug.contains("at-123") && !debug.contains("rt-456"),
            "{debug}"
        );
    }
}
