//! Where an MCP client learns how to authenticate: OAuth 2.0 Protected
//! Resource Metadata (RFC 9728), and the `WWW-Authenticate` challenge of a
//! 401 that points at it (RFC 6750, as the MCP specification's
//! authorization section asks).

use bytes::Bytes;
use serde_json::json;

/// Where the metadata of the whole gateway is served; the metadata of one
/// endpoint is at this path followed by the endpoint's path (RFC 9728 §3.1).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The gateway as a protected resource.
pub struct Resource {
    /// The gateway's public URL, without a trailing slash.
    base: String,
    /// The identity provider that issues session tokens (`auth.issuer`).
    issuer: String,
}

impl Resource {
    pub fn new(base: &str, issuer: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            issuer: issuer.to_string(),
        }
    }

    /// The metadata document served at `path`, if `path` is one of ours:
    /// the gateway's own (`/.well-known/oauth-protected-resource`) or an
    /// endpoint's (`…/mcp`, `…/mcp/run`).
    pub fn document(&self, path: &str) -> Option<Bytes> {
        let endpoint = path.strip_prefix(WELL_KNOWN)?;
        if !matches!(endpoint, "" | super::AGENTS_PATH | super::RUN_PATH) {
            return None;
        }
        let document = json!({
            "resource": format!("{}{endpoint}", self.base),
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "agentshare",
            "resource_documentation": format!("{}/api/v1/openapi.json", self.base),
        });
        Some(Bytes::from(document.to_string()))
    }

    /// Where the metadata of `endpoint` is served.
    pub fn metadata_url(&self, endpoint: &str) -> String {
        format!("{}{WELL_KNOWN}{endpoint}", self.base)
    }

    /// The challenge of a 401 from `endpoint`: where its metadata is, and,
    /// when a credential was sent but refused, why (`invalid_token`).
    pub fn challenge(&self, endpoint: &str, refused: Option<&str>) -> String {
        let metadata = self.metadata_url(endpoint);
        match refused {
            None => format!("Bearer resource_metadata=\"{metadata}\""),
            Some(why) => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{metadata}\"",
                quoted(why)
            ),
        }
    }
}

/// `text` as the inside of a quoted string (RFC 9110 §5.6.4): no quotes,
/// backslashes or control characters.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_control() || !c.is_ascii() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_names_itself_as_the_resource() {
        let resource = Resource::new("https://gw.example.com/", "https://idp.example.com");
        let document: serde_json::Value = serde_json::from_slice(
            &resource
                .document("/.well-known/oauth-protected-resource/mcp")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(document["resource"], "https://gw.example.com/mcp");
        assert_eq!(
            document["authorization_servers"][0],
            "https://idp.example.com"
        );
        assert!(
            resource
                .document("/.well-known/oauth-protected-resource/other")
                .is_none()
        );
    }

    #[test]
    fn a_refused_token_says_why_without_breaking_the_header() {
        let resource = Resource::new("http://127.0.0.1:7000", "agentshare-dev");
        let challenge = resource.challenge("/mcp", Some("share token rejected: \"revoked\"\n"));
        assert_eq!(
            challenge,
            "Bearer error=\"invalid_token\", error_description=\"share token rejected: 'revoked' \", \
             resource_metadata=\"http://127.0.0.1:7000/.well-known/oauth-protected-resource/mcp\""
        );
        assert!(http::HeaderValue::from_str(&challenge).is_ok());
    }
}
