//! The outside services users connect to, from config, and how a credential
//! of each is checked when a user tests their connection.

use std::collections::BTreeMap;

use agentshare_kit::Error;
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

    /// The provider a client named to connect by `kind`: INVALID_ARGUMENT
    /// naming the configured ones, or the call that connects this one.
    pub fn of_kind(&self, key: &str, kind: Kind) -> Result<&Provider, Error> {
        let provider = self.get(key).ok_or_else(|| {
            Error::invalid(
                "provider",
                format!("is not a configured provider; use one of: {}", self.keys()),
            )
        })?;
        if provider.kind != kind {
            return Err(Error::invalid(
                "provider",
                match kind {
                    Kind::ApiKey => format!("{key} connects with OAuth: use StartOAuthConnection"),
                    Kind::OAuth => format!("{key} takes an API key: use CreateApiKeyConnection"),
                },
            ));
        }
        Ok(provider)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(key: &str, kind: Kind) -> (String, Provider) {
        let check = Box::new(StaticShape {
            provider: key.into(),
            prefix: String::new(),
        });
        let provider = Provider {
            key: key.into(),
            kind,
            check,
            oauth: None,
        };
        (key.into(), provider)
    }

    #[test]
    fn a_provider_is_named_with_the_call_that_connects_it() {
        let providers = Providers {
            by_key: [
                provider("brave", Kind::ApiKey),
                provider("gmail", Kind::OAuth),
            ]
            .into(),
        };
        assert!(providers.of_kind("brave", Kind::ApiKey).is_ok());
        assert!(providers.of_kind("gmail", Kind::OAuth).is_ok());
        let refusal = |key, kind| match providers.of_kind(key, kind) {
            Err(Error::InvalidArgument(violations)) => violations[0].description.clone(),
            _ => panic!("{key} is refused"),
        };
        assert!(refusal("gmail", Kind::ApiKey).contains("StartOAuthConnection"));
        assert!(refusal("brave", Kind::OAuth).contains("CreateApiKeyConnection"));
        assert!(refusal("crm", Kind::ApiKey).ends_with("use one of: brave, gmail"));
    }

    #[tokio::test]
    async fn the_static_check_looks_at_the_shape_only() {
        let check = StaticShape {
            provider: "brave".into(),
            prefix: "bsk_".into(),
        };
        assert!(check.check("bsk_12345678").await.is_ok());
        assert!(check.check("bsk_1").await.is_err());
        assert!(check.check("sk_123456789").await.is_err());
    }
}
