//! The token caches' wire format: Redis keys, the invalidation messages on the channel, and the
//! MAC that authenticates every value and message (`MacKey`).

use crate::domain::{SessionId, UserId};
use crate::model::Watermark;

/// The channel the fan-out publishes invalidations on.
pub const CHANNEL: &str = "active-sessions:invalidations";

/// L2's key for a token (by its hash): a valid entry, or the revoked marker. The user is the key's
/// hash tag, so a user's token and watermark share a slot and one MGET or script reads both, on a
/// cluster (ElastiCache Serverless) as on one node. User ids hold no braces (`UserId::parse`).
pub fn token_key(user: &UserId, hash: &str) -> String {
    format!("as:{{{user}}}:tok:{hash}")
}

/// L2's key for a user's watermark.
pub fn watermark_key(user: &UserId) -> String {
    format!("as:{{{user}}}:wm")
}

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

/// Who told the caches a session ended: the revoke itself, before it answered (`WriteThrough`),
/// or the stream's fan-out behind it (`Stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teller {
    WriteThrough,
    Stream,
}

impl Teller {
    fn code(self) -> &'static str {
        match self {
            Self::WriteThrough => "w",
            Self::Stream => "s",
        }
    }

    fn from_code(raw: &str) -> Option<Self> {
        match raw {
            "w" => Some(Self::WriteThrough),
            "s" => Some(Self::Stream),
            _ => None,
        }
    }
}

/// When, and by whom, the caches were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Told {
    pub at_ms: i64,
    pub by: Teller,
}

/// The revoked marker L2 keeps under a revoked token's key for one window: `r|<at_ms>|<teller>`.
/// A fill never overwrites it (`scripts::FILL`), so no "valid" read before the revoke lands after it.
pub(super) fn encode_marker(told: Told) -> String {
    format!("r|{}|{}", told.at_ms, told.by.code())
}

/// `None` for anything that is not a marker (a valid entry's JSON starts with `{`).
pub(super) fn decode_marker(raw: &str) -> Option<Told> {
    let mut parts = raw.strip_prefix("r|")?.split('|');
    let at_ms = parts.next()?.parse().ok()?;
    let by = Teller::from_code(parts.next()?)?;
    Some(Told { at_ms, by })
}

/// A user's watermark as L2 keeps it: the invalidation's own encoding, then when and by whom it
/// was written (`u|<user>|<before_ms>|<keep>|<at_ms>|<teller>`). The invalidation's decoder reads
/// the first four fields, so a value written before the last two were added still reads.
pub(super) fn encode_watermark(user: &UserId, watermark: Watermark, told: Told) -> String {
    format!("{}|{}|{}", Invalidation::User { user: user.clone(), watermark }.encode(), told.at_ms, told.by.code())
}

pub(super) fn decode_watermark(raw: &str) -> Option<(Watermark, Option<Told>)> {
    let Some(Invalidation::User { watermark, .. }) = Invalidation::decode(raw) else { return None };
    let mut rest = raw.splitn(6, '|').skip(4);
    let told = match (rest.next(), rest.next()) {
        (Some(at), Some(by)) => Some(Told { at_ms: at.parse().ok()?, by: Teller::from_code(by)? }),
        _ => None,
    };
    Some((watermark, told))
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
        use hmac::{KeyInit, Mac};
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
    fn markers_and_watermarks_round_trip() {
        let told = Told { at_ms: 1_780_000_000_123, by: Teller::WriteThrough };
        assert_eq!(decode_marker(&encode_marker(told)), Some(told));
        let told = Told { by: Teller::Stream, ..told };
        assert_eq!(decode_marker(&encode_marker(told)), Some(told));
        assert_eq!(decode_marker(r#"{"user_id":"alice"}"#), None, "a valid entry is no marker");
        assert_eq!(decode_marker("r|12|x"), None);
        let user = UserId::parse("alice").unwrap();
        let watermark = Watermark { before_ms: 5, keep: Some(SessionId::new()) };
        assert_eq!(decode_watermark(&encode_watermark(&user, watermark, told)), Some((watermark, Some(told))));
        let bare = Invalidation::User { user, watermark }.encode();
        assert_eq!(decode_watermark(&bare), Some((watermark, None)), "one written without the time");
        assert_eq!(decode_watermark("t|ab"), None);
    }

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
