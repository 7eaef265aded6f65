//! The public JWK Set products verify logout tokens with, as `get-jwks` serves it. It is published
//! on its own (deployed: the Secrets Manager secret `BACKCHANNEL_JWKS_SECRET_ARN`, written by
//! `infra`'s `rotate jwks` from the back-channel secret; locally: `BACKCHANNEL_JWKS`), so that the
//! public function never reads a private key. Whatever it is given, it publishes only EC P-256
//! public keys: a set with a private member (`d`) or anything but a public signing key is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::env::ConfigError;

/// How long products may keep the JWKS (`get-jwks`'s `Cache-Control: public, max-age`): the
/// rotation's timing counts from it (`logout::RotationRule`).
pub const MAX_AGE_SECS: i64 = 3600;

/// A checked public JWK Set and the body `get-jwks` answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedJwks {
    body: String,
    kids: Vec<String>,
}

/// The members a published key may have.
const PUBLIC_MEMBERS: [&str; 7] = ["kty", "crv", "x", "y", "kid", "alg", "use"];

impl PublishedJwks {
    pub fn empty() -> Self {
        Self { body: r#"{"keys":[]}"#.into(), kids: Vec::new() }
    }

    /// `{"keys": [...]}` of EC P-256 public keys, each with its own `kid`. Errors name the fault
    /// (never a value).
    pub fn parse(raw: &str, source: &'static str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid { name: source, reason: reason.into() };
        let set: Value = serde_json::from_str(raw).map_err(|_| invalid("expected a JWK Set (JSON)"))?;
        let keys = set.get("keys").and_then(Value::as_array).ok_or_else(|| invalid("expected {\"keys\": [...]}"))?;
        let mut kids = Vec::new();
        let mut published = Vec::new();
        for key in keys {
            let obj = key.as_object().ok_or_else(|| invalid("a key is not an object"))?;
            if obj.contains_key("d") {
                return Err(invalid("a key holds a private member (d): only public keys are published"));
            }
            if let Some(other) = obj.keys().find(|k| !PUBLIC_MEMBERS.contains(&k.as_str())) {
                let _ = other; // not echoed: a member's name could be anything
                return Err(invalid("a key has a member a public EC signing key does not"));
            }
            let text = |name: &str| obj.get(name).and_then(Value::as_str);
            if text("kty") != Some("EC") || text("crv") != Some("P-256") || text("x").is_none() || text("y").is_none() {
                return Err(invalid("every key must be an EC P-256 public key (kty, crv, x, y)"));
            }
            // A P-256 point's coordinates: 32 bytes each, base64url without padding.
            let coordinate = |name: &str| {
                text(name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok()).is_some_and(|bytes| bytes.len() == 32)
            };
            if !coordinate("x") || !coordinate("y") {
                return Err(invalid("x and y must be a P-256 point's 32-byte coordinates (base64url)"));
            }
            let optional = |name: &str, want: &str| obj.get(name).is_none_or(|v| v.as_str() == Some(want));
            if !optional("alg", "ES256") || !optional("use", "sig") {
                return Err(invalid("every key must be for ES256 signatures"));
            }
            let kid = text("kid").filter(|k| !k.is_empty()).ok_or_else(|| invalid("every key needs a kid"))?;
            if kids.iter().any(|k| k == kid) {
                return Err(invalid("two keys share a kid"));
            }
            kids.push(kid.to_owned());
            published.push(key.clone());
        }
        let body = serde_json::json!({ "keys": published }).to_string();
        Ok(Self { body, kids })
    }

    /// The response body: `{"keys": [...]}`.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The key ids published, in order.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// Deployed, the secret `BACKCHANNEL_JWKS_SECRET_ARN`; locally, `BACKCHANNEL_JWKS`; neither:
    /// an empty set (no back-channel logout).
    #[cfg(feature = "secrets")]
    pub async fn load(timeouts: &crate::config::StoreTimeouts) -> Result<Self, ConfigError> {
        const ARN: &str = "BACKCHANNEL_JWKS_SECRET_ARN";
        if let Some(arn) = std::env::var(ARN).ok().filter(|v| !v.trim().is_empty()) {
            return Self::parse(&crate::config::read_secret(ARN, &arn, timeouts).await?, ARN);
        }
        Self::from_env()
    }

    /// Locally: `BACKCHANNEL_JWKS` (unset or empty: an empty set).
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("BACKCHANNEL_JWKS").ok().filter(|v| !v.trim().is_empty()) {
            Some(raw) => Self::parse(&raw, "BACKCHANNEL_JWKS"),
            None => Ok(Self::empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes, base64url: a coordinate's shape.
    const COORD: &str = "7NOQLvWeQRVsFlq1cemV3gvDJAAkKnaxL1ZNXL_9Ubs";

    fn key(kid: &str) -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": COORD, "y": COORD, "kid": kid, "alg": "ES256", "use": "sig"})
    }

    #[test]
    fn public_keys_are_published_as_given() {
        let raw = serde_json::json!({ "keys": [key("2026-10"), key("2026-11"), key("2026-12")] }).to_string();
        let jwks = PublishedJwks::parse(&raw, "T").unwrap();
        assert_eq!(jwks.kids(), ["2026-10", "2026-11", "2026-12"]);
        let body: Value = serde_json::from_str(jwks.body()).unwrap();
        assert_eq!(body["keys"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_private_key_or_anything_else_is_refused_without_echoing_it() {
        let mut private = key("k");
        private["d"] = "c2VjcmV0LXNjYWxhcg".into();
        let cases = [
            serde_json::json!({ "keys": [private] }).to_string(),
            serde_json::json!({ "keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "kid": "r"}] }).to_string(),
            serde_json::json!({ "keys": [key("a"), key("a")] }).to_string(),
            serde_json::json!({ "keys": [{"kty": "EC", "crv": "P-256", "x": COORD, "y": COORD}] }).to_string(),
            serde_json::json!({ "keys": [{"kty": "EC", "crv": "P-256", "x": COORD, "y": COORD, "kid": "k", "p": "secret"}] })
                .to_string(),
            // Not a point's coordinates, or an algorithm that is not a string.
            serde_json::json!({ "keys": [{"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ", "kid": "short"}] }).to_string(),
            serde_json::json!({ "keys": [{"kty": "EC", "crv": "P-256", "x": COORD, "y": COORD, "kid": "k", "alg": 7}] })
                .to_string(),
            "{\"signing_key_pem\": \"-----BEGIN PRIVATE KEY-----\"}".into(),
            "not json".into(),
        ];
        for raw in cases {
            let err = PublishedJwks::parse(&raw, "T").unwrap_err().to_string();
            assert!(!err.contains("c2VjcmV0") && !err.contains("secret") && !err.contains("BEGIN"), "{err}");
        }
    }
}
