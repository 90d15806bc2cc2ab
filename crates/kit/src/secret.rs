//! Secrets held in configuration and read from key files: database URLs
//! with their passwords, sealing keys, OAuth client secrets, HS256 key
//! material. A [`Secret`] prints as `[redacted]` through both `Debug` and
//! `Display`, so no log line or error message that formats a setting, or the
//! config that holds it, can carry the value. The value is read only through
//! [`Secret::expose`], which keeps every use of it one search away, and it is
//! wiped from memory when dropped (secrecy's `SecretBox` over zeroize).
//!
//! A secret cannot be serialized or compared either: nothing writes a config
//! back out, and a comparison of secrets would be a timing oracle.

use std::fmt;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretBox};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// What a secret prints as.
const REDACTED: &str = "[redacted]";

/// A secret string (`Secret`) or key material (`Secret<[u8]>`).
pub struct Secret<T: ?Sized + Zeroize = str>(SecretBox<T>);

impl<T: ?Sized + Zeroize> Secret<T> {
    /// The value itself, for the one place that has to use it.
    pub fn expose(&self) -> &T {
        self.0.expose_secret()
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretBox::from(value.into()))
    }

    /// Whether the secret is unset. Settings treat empty as "not
    /// configured", and emptiness tells nothing about the value.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl<T: ?Sized + Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: ?Sized + Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: ?Sized + Zeroize> Clone for Secret<T>
where
    SecretBox<T>: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Default for Secret {
    fn default() -> Self {
        Self::new(String::new())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<Vec<u8>> for Secret<[u8]> {
    fn from(bytes: Vec<u8>) -> Self {
        Self(SecretBox::from(bytes))
    }
}

/// For command-line flags that carry a secret (`--database-url`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

/// Accepts a string only. serde's usual type error quotes the value it
/// found (a secret that happens to look like a number or a boolean, once
/// the environment provider has parsed it), so this one names the type it
/// found and never the value. `deserialize_any`, because a format asked for
/// a string reports a mismatch itself, with the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

/// The visitor methods that refuse a value of one type, naming the type.
macro_rules! refuse_scalars {
    ($($visit:ident($type:ty) => $found:literal,)*) => {$(
        fn $visit<E: de::Error>(self, _: $type) -> Result<Secret, E> {
            Err(Self::not_a_string($found))
        }
    )*};
}

impl SecretVisitor {
    fn not_a_string<E: de::Error>(found: &str) -> E {
        E::custom(format!(
            "expected a string, found {found} (the value is a secret and is not shown)"
        ))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_char<E: de::Error>(self, value: char) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    // The narrower numbers reach these through serde's default methods.
    refuse_scalars! {
        visit_bool(bool) => "a boolean",
        visit_i64(i64) => "a number",
        visit_i128(i128) => "a number",
        visit_u64(u64) => "a number",
        visit_u128(u128) => "a number",
        visit_f64(f64) => "a number",
        visit_bytes(&[u8]) => "bytes",
    }

    fn visit_none<E: de::Error>(self) -> Result<Secret, E> {
        Err(Self::not_a_string("nothing"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
        Err(Self::not_a_string("nothing"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::not_a_string("a list"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::not_a_string("a table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_print_redacted_and_expose_gives_the_value() {
        let secret = Secret::new("postgres://app:hunter2@db/agentshare");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/agentshare");
        assert!(!secret.is_empty());
        assert!(Secret::default().is_empty());

        let key = Secret::<[u8]>::from(b"hs256-key-material".to_vec());
        assert_eq!(format!("{key:?} {key}"), "[redacted] [redacted]");
        assert_eq!(key.expose(), b"hs256-key-material");
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_without_being_quoted() {
        let secret: Secret = serde_json::from_str("\"s3cret\"").expect("a string");
        assert_eq!(secret.expose(), "s3cret");
        for (json, value, found) in [
            ("918273645", "918273645", "a number"),
            ("true", "true", "a boolean"),
            ("[\"s3cret-in-a-list\"]", "s3cret-in-a-list", "a list"),
        ] {
            let err = serde_json::from_str::<Secret>(json)
                .expect_err("not a string")
                .to_string();
            assert!(err.contains(found), "{err}");
            assert!(!err.contains(value), "{err}");
        }
    }
}
