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
use crate::connections::storage::{ConnectionRow, Kind, Material};

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
