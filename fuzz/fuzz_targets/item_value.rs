//! Workspace item values: what WorkspaceWrite accepts as a JSON or text
//! value, and the preview WorkspaceList shows of it. Input: a first byte
//! `j` for JSON (anything else for text), then the value.
//! An accepted value fits the limit and holds no U+0000 (PostgreSQL cannot
//! store it); every refusal is the client's to fix; a preview is the
//! value's start.
#![no_main]

use agentshare_kit::Error;
use agentshare_store::item_rules::{self, ContentType, Limits, PREVIEW_CHARS};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_value_bytes: 4096,
    max_items: 100,
    max_total_bytes: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let content_type = if kind == b'j' {
        ContentType::Json
    } else {
        ContentType::Text
    };
    match item_rules::check_value(value, content_type, &LIMITS) {
        Ok(()) => {
            assert!(item_rules::byte_len(value) <= LIMITS.max_value_bytes);
            assert!(!value.contains('\0'));
        }
        Err(Error::InvalidArgument(_) | Error::Quota(..)) => {}
        Err(other) => panic!("a value is refused as {other:?}, not as the client's mistake"),
    }
    let preview = item_rules::preview(value);
    assert!(preview.chars().count() <= PREVIEW_CHARS);
    assert!(value.starts_with(&preview));
});
