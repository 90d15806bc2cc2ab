//! The Principal decoder: the `x-agentshare-principal` and
//! `x-agentshare-service` tokens every service verifies, and run tokens.
//! Input:
//! - a JSON object: claims signed with the gateway's real key, so the
//!   fuzzer reaches the Principal's decoding behind the signature;
//! - anything else: a token as received, and JSON read as a Principal.
//! A verified Principal carries its token and prints back to itself, as
//! a service that passes it on needs.
#![no_main]

use std::sync::OnceLock;

use agentshare_kit::clock::Clock;
use agentshare_kit::identity::{
    Identity, KeyRing, Principal, RUN_TOKEN_PREFIX, ServiceName, generate_missing_keys,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

/// 2023-11-14T22:13:20Z; the seeds' claims are issued at it.
const NOW_SECS: i64 = 1_700_000_000;

struct Keys {
    /// The store, receiving.
    store: Identity,
    /// The gateway's signing key, to sign whatever claims the fuzzer makes.
    gateway: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir").keep();
        generate_missing_keys(&dir).expect("keys");
        let ring = KeyRing::load(&dir, ServiceName::Store).expect("the store's key ring");
        let pem = std::fs::read(dir.join("gateway.key")).expect("the gateway's key");
        Keys {
            store: Identity::new(ring, Clock::manual(NOW_SECS * 1_000_000)),
            gateway: EncodingKey::from_ed_pem(&pem).expect("an Ed25519 key"),
        }
    })
}

/// A Principal survives the trip a service makes when it passes one on.
fn prints_back(principal: &Principal) {
    let json = serde_json::to_string(principal).expect("a Principal prints");
    let mut again: Principal = serde_json::from_str(&json).expect("a printed Principal reads back");
    again.token.clone_from(&principal.token);
    assert_eq!(&again, principal);
}

fn verify_all(keys: &Keys, token: &str) {
    if let Ok(principal) = keys.store.verify_principal(token) {
        assert_eq!(principal.token, token);
        prints_back(&principal);
    }
    let _ = keys.store.verify_service(token);
    let _ = keys.store.verify_run_token(token);
    let _ = keys
        .store
        .verify_run_token(&format!("{RUN_TOKEN_PREFIX}{token}"));
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    if let Ok(claims @ serde_json::Value::Object(_)) = serde_json::from_slice(data) {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &keys.gateway)
            .expect("EdDSA signs any JSON object");
        verify_all(keys, &token);
        if let Ok(principal) = serde_json::from_value::<Principal>(claims) {
            prints_back(&principal);
        }
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        verify_all(keys, text);
    }
});
