//! The outside services users connect to, from config, and how a credential
//! of each is checked when a user tests their connection.

use std::collections::BTreeMap;

use agentshare_kit::config::{BadSetting, Config};

use crate::connections::oauth::OAuthProvider;
use crate::connections::storage::Kind;

/// Checks one credential against its provider.
#[tonic::async_trait]
pub trait CredentialCheck: Send + Sync {
    /// `Err` carries what the check found, saying what to do; never the
    /// secret.
    async fn check(&self, secret: &str) -> Result<(), String>;
}

/// The built-in `static` check: the secret's shape only, so it needs no
/// network.
pub struct StaticShape {
    pub provider: String,
    pub prefix: String,
}

/// The shortest secret any provider issues.
const MIN_SECRET_CHARS: usize = 8;

#[tonic::async_trait]
impl CredentialCheck for StaticShape {
    async fn check(&self, secret: &str) -> Result<(), String> {
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "the {} credential is too short to be real: reconnect with a new one",
                self.provider
            ));
        }
        if !self.prefix.is_empty() && !secret.starts_with(&self.prefix) {
            return Err(format!(
                "this is not a {} key (they start with {:?}): reconnect with the right key",
                self.provider, self.prefix
            ));
        }
        Ok(())
    }
}

pub struct Provider {
    pub key: String,
    pub kind: Kind,
    pub check: Box<dyn CredentialCheck>,
    /// Set for OAuth providers.
    pub oauth: Option<OAuthProvider>,
}

pub struct Providers {
    by_key: BTreeMap<String, Provider>,
}

impl Providers {
    pub fn from_config(config: &Config) -> Result<Self, BadSetting> {
        config.validate()?;
        let connections = &config.connections;
        let mut by_key = BTreeMap::new();
        for (key, provider) in &connections.providers {
            let kind = if provider.kind == "oauth" {
                Kind::OAuth
            } else {
                Kind::ApiKey
            };
            let oauth = (kind == Kind::OAuth).then(|| OAuthProvider {
                key: key.clone(),
                authorize_url: provider.authorize_url.clone(),
                token_url: provider.token_url.clone(),
                client_id: provider.client_id.clone(),
                client_secret: provider.client_secret.clone(),
                scopes: provider.scopes.clone(),
                redirect_url: connections.oauth_redirect_url.clone(),
            });
            by_key.insert(
                key.clone(),
                Provider {
                    key: key.clone(),
                    kind,
                    check: Box::new(StaticShape {
                        provider: key.clone(),
                        prefix: provider.key_prefix.clone(),
                    }),
                    oauth,
                },
            );
        }
        Ok(Self { by_key })
    }

    pub fn get(&self, key: &str) -> Option<&Provider> {
        self.by_key.get(key)
    }

    /// The configured keys, for messages that say what exists.
    pub fn keys(&self) -> String {
        let keys: Vec<&str> = self.by_key.keys().map(String::as_str).collect();
        if keys.is_empty() {
            "none is configured (see connections.providers)".into()
        } else {
            keys.join(", ")
        }
    }
}
