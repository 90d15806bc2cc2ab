//! Identifiers and keys: the ids clients send back, the store's item keys
//! and prefixes, the names enums are stored by, and page tokens. Input:
//! any text, read as each; for page tokens the first line is the token and
//! the rest the key it pages after.
#![no_main]

use agentshare_kit::identity::{OrgRole, ServiceName};
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_store::item_rules::{self, MAX_KEY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // An id comes back in the stored form, which parses to itself.
    if let Ok(id) = ids::parse("agent_id", text) {
        assert_eq!(id.len(), 36);
        assert_eq!(ids::parse("agent_id", &id), Ok(id.clone()));
        assert_eq!(ids::parse_optional("agent_id", text), Ok(id));
    }

    // A key the store accepts is one it can store and list by.
    let key_ok = item_rules::check_key("key", text).is_ok();
    if key_ok {
        assert!(!text.is_empty() && text.len() <= MAX_KEY_BYTES);
        assert!(!text.chars().any(char::is_control));
    }
    assert_eq!(
        item_rules::check_prefix("key_prefix", text).is_ok(),
        key_ok || text.is_empty()
    );

    // Stored names parse back to the variant that prints them.
    if let Some(role) = OrgRole::parse(text) {
        assert_eq!(role.as_str(), text);
    }
    if let Some(service) = ServiceName::parse(text) {
        assert_eq!(service.as_str(), text);
    }

    // A page token is opaque to the client: any token is read or refused,
    // and one the server issued reads back to the key it was made from.
    let (token, key) = text.split_once('\n').unwrap_or((text, ""));
    let listing = "items:fuzz";
    let _ = Page::keyed(10, token, listing, 1);
    // Keys are ids, times and item keys: never empty, never U+0000, which
    // the token uses as its separator.
    let parts: Vec<String> = key.split('\n').map(str::to_string).collect();
    let storable = parts.iter().all(|p| !p.is_empty() && !p.contains('\0'));
    if storable && let Ok(page) = Page::keyed(10, "", listing, parts.len()) {
        let issued = page.token_after(&parts);
        let next = Page::keyed(10, &issued, listing, parts.len())
            .expect("a token the server issued reads back");
        assert_eq!(next.after_parts(), Some(parts.as_slice()));
        assert!(Page::keyed(10, &issued, "items:other", parts.len()).is_err());
    }
});
