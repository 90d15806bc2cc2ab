//! Connections' secrets ready for use: opened from their seal, with OAuth
//! access tokens refreshed first. Only `AccessInternal` hands them out, to
//! the gateway for the runtime; no public answer carries one.

use agentshare_kit::clock::duration_micros;
use std::sync::Arc;

use agentshare_kit::Error;

use crate::common::Storage;
use crate::connections::oauth::{self, TokenError, Tokens};
use crate::connections::providers::Providers;
use crate::connections::secrets::SecretBox;
use crate::connections::storage::{ConnectionRow, Kind, Material, Status};

/// The largest API key accepted.
const MAX_KEY_BYTES: usize = 8 * 1024;

/// A pasted API key: present, not too long, and one line of visible
/// characters (a stray newline or space is a copy-paste slip).
pub fn pasted_key(key: &str) -> Result<&str, Error> {
    if key.is_empty() {
        return Err(Error::invalid("api_key", "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid("api_key", "must be at most 8 KiB"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "api_key",
            "must not contain spaces, line breaks or control characters",
        ));
    }
    Ok(key)
}

/// What a test of a connection records: LIVE once the provider accepted
/// it; a connection that had expired stays EXPIRED, any other is FAILED.
pub fn checked_status(accepted: bool, before: Status) -> Status {
    match (accepted, before) {
        (true, _) => Status::Live,
        (false, Status::Expired) => Status::Expired,
        (false, _) => Status::Failed,
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub storage: Storage,
    pub secrets: SecretBox,
    pub providers: Arc<Providers>,
}

impl Credentials {
    /// Seals what a token exchange gave, for connection `id`.
    pub fn seal_tokens(
        &self,
        id: &str,
        tokens: &Tokens,
        scopes: &[String],
    ) -> Result<Material, Error> {
        let secret = self
            .secrets
            .seal(&tokens.access_token, &ConnectionRow::secret_context(id))?;
        let refresh = tokens
            .refresh_token
            .as_deref()
            .map(|token| {
                self.secrets
                    .seal(token, &ConnectionRow::refresh_context(id))
            })
            .transpose()?;
        let now = self.storage.clock.now_micros();
        Ok(Material {
            secret,
            refresh,
            access_expires_at: tokens
                .expires_in
                .map(|ttl| now.saturating_add(duration_micros(ttl))),
            expires_at: None,
            scopes: if tokens.scopes.is_empty() {
                scopes.to_vec()
            } else {
                tokens.scopes.clone()
            },
        })
    }

    /// The credential of a connection ready for use: an OAuth access token
    /// that has ended is refreshed first. A refresh the provider refuses
    /// marks the connection FAILED with "reconnect".
    pub async fn fresh_secret(&self, connection: &ConnectionRow) -> Result<String, Error> {
        let unsealable = |e: crate::connections::secrets::Unsealable| Error::internal(e);
        let now = self.storage.clock.now_micros();
        let ended = connection.access_expires_at.is_some_and(|at| at <= now);
        if connection.kind == Kind::OAuth
            && ended
            && let Some(refresh) = &connection.refresh
        {
            {
                let provider = self
                    .providers
                    .get(&connection.provider)
                    .and_then(|p| p.oauth.as_ref())
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "provider {} is no longer configured",
                            connection.provider
                        ))
                    })?;
                let token = self
                    .secrets
                    .open(refresh, &ConnectionRow::refresh_context(&connection.id))
                    .map_err(unsealable)?;
                return match oauth::refresh(provider, &token).await {
                    Ok(mut tokens) => {
                        // Providers that do not rotate refresh tokens send
                        // none back; the old one stays good.
                        if tokens.refresh_token.is_none() {
                            tokens.refresh_token = Some(token);
                        }
                        let material =
                            self.seal_tokens(&connection.id, &tokens, &connection.scopes)?;
                        self.storage
                            .connections
                            .replace_material(&connection.id, &material)
                            .await?;
                        Ok(tokens.access_token)
                    }
                    Err(TokenError::Refused(reason)) => {
                        let message = format!(
                            "{} refused the refresh token ({reason}): reconnect",
                            connection.provider
                        );
                        self.storage
                            .connections
                            .fail_connection(&connection.id, &message)
                            .await?;
                        Err(Error::FailedPrecondition(format!(
                            "reconnect {}: {message}",
                            connection.provider
                        )))
                    }
                    Err(TokenError::Unreachable(reason)) => Err(Error::Unavailable(format!(
                        "{} could not be reached to refresh the token ({reason}); retry later",
                        connection.provider
                    ))),
                };
            }
        }
        self.secrets
            .open(
                &connection.secret,
                &ConnectionRow::secret_context(&connection.id),
            )
            .map_err(unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_key_is_one_line_of_at_most_8_kib() {
        assert_eq!(pasted_key("sk_live_1").ok(), Some("sk_live_1"));
        for slip in ["", "sk live", "sk_live\n", "sk\u{7}"] {
            assert!(pasted_key(slip).is_err(), "{slip:?}");
        }
        assert!(pasted_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(pasted_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn a_test_records_live_expired_or_failed() {
        for before in [Status::Live, Status::Expired, Status::Failed] {
            assert_eq!(checked_status(true, before), Status::Live);
        }
        assert_eq!(checked_status(false, Status::Expired), Status::Expired);
        assert_eq!(checked_status(false, Status::Live), Status::Failed);
        assert_eq!(checked_status(false, Status::Failed), Status::Failed);
    }
}
