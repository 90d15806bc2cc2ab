//! Sealing connections' secrets at rest (DESIGN.md, "Identity and trust"):
//! XChaCha20-Poly1305 under a key from config, with the key id stored beside
//! every sealed value so keys can rotate. The associated data binds each
//! sealed value to its row and field, so a value copied into another row
//! does not open.

use std::collections::BTreeMap;
use std::path::Path;

use agentshare_kit::config::{BadSetting, Config};
use agentshare_kit::identity::CONNECTIONS_KEY_FILE;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// The id of the embedded mode's generated key.
const LOCAL_KEY_ID: &str = "local";

/// A value sealed under one key: the key's id and `nonce ‖ ciphertext`,
/// base64. Read from a row's `key_id` and `blob` columns.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Sealed {
    pub key_id: String,
    pub blob: String,
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error)]
pub enum Unsealable {
    #[error("sealing key {0:?} is not configured; add it back to connections.secret_keys")]
    UnknownKey(String),
    #[error("a sealed secret is corrupt or belongs elsewhere")]
    Corrupt,
}

#[derive(Clone)]
pub struct SecretBox {
    keys: BTreeMap<String, XChaCha20Poly1305>,
    active: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: the keys never reach a log.
        f.debug_struct("SecretBox")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

fn cipher(id: &str, encoded: &str, setting: &str) -> Result<XChaCha20Poly1305, BadSetting> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| BadSetting::new(setting, format!("key {id:?} is not base64")))?;
    XChaCha20Poly1305::new_from_slice(&bytes)
        .map_err(|_| BadSetting::new(setting, format!("key {id:?} must be 32 bytes")))
}

impl SecretBox {
    /// The keys of `config`, or the embedded mode's generated key file.
    pub fn from_config(config: &Config) -> Result<Self, BadSetting> {
        let connections = &config.connections;
        if connections.secret_keys.is_empty() {
            return Self::from_key_file(&config.keys_dir().join(CONNECTIONS_KEY_FILE));
        }
        let mut keys = BTreeMap::new();
        for (id, encoded) in &connections.secret_keys {
            keys.insert(
                id.clone(),
                cipher(id, encoded.expose(), "connections.secret_keys")?,
            );
        }
        // The embedded mode's generated key keeps opening what it sealed
        // until `rotate-secrets` has moved everything to a configured key.
        let local = config.keys_dir().join(CONNECTIONS_KEY_FILE);
        if !keys.contains_key(LOCAL_KEY_ID)
            && let Ok(encoded) = std::fs::read_to_string(&local)
        {
            keys.insert(
                LOCAL_KEY_ID.to_string(),
                cipher(LOCAL_KEY_ID, &encoded, "connections.secret_keys")?,
            );
        }
        Ok(Self {
            keys,
            active: connections.active_secret_key.clone(),
        })
    }

    fn from_key_file(path: &Path) -> Result<Self, BadSetting> {
        let setting = "connections.secret_keys";
        let encoded = std::fs::read_to_string(path).map_err(|e| {
            BadSetting::new(
                setting,
                format!(
                    "no key configured and {} cannot be read ({e}); configure connections.secret_keys and connections.active_secret_key",
                    path.display()
                ),
            )
        })?;
        let mut keys = BTreeMap::new();
        keys.insert(
            LOCAL_KEY_ID.to_string(),
            cipher(LOCAL_KEY_ID, &encoded, setting)?,
        );
        Ok(Self {
            keys,
            active: LOCAL_KEY_ID.into(),
        })
    }

    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Seals `plaintext` under the active key, bound to `context` (the row
    /// and field it is stored in).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<Sealed, agentshare_kit::Error> {
        let cipher = self.keys.get(&self.active).ok_or_else(|| {
            agentshare_kit::Error::internal("the active sealing key is not loaded")
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(agentshare_kit::Error::internal)?;
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| agentshare_kit::Error::internal("sealing failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        Ok(Sealed {
            key_id: self.active.clone(),
            blob: STANDARD.encode(blob),
        })
    }

    /// Opens a value sealed by [`seal`](Self::seal) with the same context.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<String, Unsealable> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| Unsealable::UnknownKey(sealed.key_id.clone()))?;
        let blob = STANDARD
            .decode(&sealed.blob)
            .map_err(|_| Unsealable::Corrupt)?;
        if blob.len() < NONCE_LEN {
            return Err(Unsealable::Corrupt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Unsealable::Corrupt)?;
        let plaintext = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Unsealable::Corrupt)?;
        String::from_utf8(plaintext).map_err(|_| Unsealable::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_box(active: &str) -> SecretBox {
        let mut keys = BTreeMap::new();
        for (id, byte) in [("k1", 1u8), ("k2", 2u8)] {
            keys.insert(
                id.to_string(),
                XChaCha20Poly1305::new_from_slice(&[byte; 32]).expect("key"),
            );
        }
        SecretBox {
            keys,
            active: active.into(),
        }
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_context_and_under_its_own_key() {
        let old = secret_box("k1");
        let sealed = old
            .seal("sk-live-123", "connection/a/secret")
            .expect("seal");
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.blob.contains("sk-live"));
        assert_eq!(
            old.open(&sealed, "connection/a/secret").expect("open"),
            "sk-live-123"
        );
        assert!(matches!(
            old.open(&sealed, "connection/b/secret"),
            Err(Unsealable::Corrupt)
        ));
        // After rotation the new key seals; the old one still opens.
        let rotated = secret_box("k2");
        assert_eq!(
            rotated.open(&sealed, "connection/a/secret").expect("open"),
            "sk-live-123"
        );
        assert_eq!(rotated.seal("x", "c").expect("seal").key_id, "k2");
        let mut gone = secret_box("k2");
        gone.keys.remove("k1");
        assert!(matches!(
            gone.open(&sealed, "connection/a/secret"),
            Err(Unsealable::UnknownKey(_))
        ));
    }
}
