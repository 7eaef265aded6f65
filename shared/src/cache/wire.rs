//! The token caches' wire format: Redis keys, the invalidation messages on the channel, and the
//! MAC that authenticates every value and message (`MacKey`).

use crate::domain::{SessionId, UserId};
use crate::model::Watermark;

/// The channel the fan-out publishes invalidations on.
pub const CHANNEL: &str = "active-sessions:invalidations";
pub(super) const TOKEN_KEY: &str = "as:tok:";
pub(super) const WATERMARK_KEY: &str = "as:wm:";

/// An invalidation message: one token, or every session of a user a watermark covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Token(String),
    User { user: UserId, watermark: Watermark },
}

impl Invalidation {
    pub fn encode(&self) -> String {
        match self {
            Self::Token(hash) => format!("t|{hash}"),
            Self::User { user, watermark } => format!(
                "u|{user}|{}|{}",
                watermark.before_ms,
                watermark.keep.map(|k| k.to_string()).unwrap_or_default()
            ),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.split('|');
        match parts.next()? {
            "t" => Some(Self::Token(parts.next()?.to_owned())),
            "u" => {
                let user = UserId::parse(parts.next()?).ok()?;
                let before_ms = parts.next()?.parse().ok()?;
                let keep = match parts.next()? {
                    "" => None,
                    id => Some(SessionId::parse(id).ok()?),
                };
                Some(Self::User { user, watermark: Watermark { before_ms, keep } })
            }
            _ => None,
        }
    }
}

/// The key that authenticates every L2 entry and every invalidation message (HMAC-SHA256), from
/// the cache's secret. Anyone who can reach Redis can write to it; without this key, what they
/// write is refused: a forged or altered entry is a cache miss, a forged message is dropped.
///
/// A sealed value is `<tag>.<payload>`, the tag (base64url) over a context and the payload. An
/// entry's context is its own Redis key, so a genuine entry copied under another key is refused
/// too; a message's is the channel.
#[derive(Clone)]
pub struct MacKey(std::sync::Arc<[u8]>);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl MacKey {
    /// At least 256 bits.
    pub const MIN_LEN: usize = 32;

    /// From base64 (standard or URL-safe, padded or not). The error never quotes the value.
    pub fn from_base64(raw: &str) -> Result<Self, crate::domain::InvalidValue> {
        use base64::Engine;
        let raw = raw.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')))
            .map_err(|_| crate::domain::InvalidValue("the MAC key must be base64".into()))?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::domain::InvalidValue> {
        if bytes.len() < Self::MIN_LEN {
            return Err(crate::domain::InvalidValue(format!("the MAC key must be at least {} bytes", Self::MIN_LEN)));
        }
        Ok(Self(bytes.into()))
    }

    fn mac(&self, context: &str, payload: &str) -> HmacSha256 {
        use hmac::Mac;
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(payload.as_bytes());
        mac
    }

    /// `payload`, authenticated for `context`.
    pub fn seal(&self, context: &str, payload: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let tag = self.mac(context, payload).finalize().into_bytes();
        format!("{}.{payload}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag))
    }

    /// The payload of a value sealed for `context` with this key; `None` for anything else. The
    /// tag is compared in constant time.
    pub fn open<'a>(&self, context: &str, sealed: &'a str) -> Option<&'a str> {
        use base64::Engine;
        use hmac::Mac;
        let (tag, payload) = sealed.split_once('.')?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(context, payload).verify_slice(&tag).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_sealed_for_the_context_with_the_key_opens() {
        let key = MacKey::from_bytes(&[7; 32]).unwrap();
        let other = MacKey::from_bytes(&[8; 32]).unwrap();
        let sealed = key.seal("as:tok:ab", r#"{"user_id":"alice"}"#);
        assert_eq!(key.open("as:tok:ab", &sealed), Some(r#"{"user_id":"alice"}"#));
        assert_eq!(key.open("as:tok:cd", &sealed), None, "moved under another key");
        assert_eq!(other.open("as:tok:ab", &sealed), None, "another key");
        assert_eq!(key.open("as:tok:ab", &sealed.replace("alice", "mallory")), None, "altered");
        assert_eq!(key.open("as:tok:ab", r#"{"user_id":"alice"}"#), None, "unsealed");
        assert_eq!(key.open("as:tok:ab", "x.y"), None);
        assert!(MacKey::from_bytes(&[1; 31]).is_err(), "too short");
        assert!(MacKey::from_base64("not base64!").is_err());
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert!(MacKey::from_base64(b64).is_ok());
        assert!(!format!("{:?}", MacKey::from_base64(b64).unwrap()).contains("AAEC"));
    }
}
