//! The token caches' wire format: Redis keys and the invalidation messages on the channel.

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
