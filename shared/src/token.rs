//! Session tokens: opaque bearer strings shown once at sign-in and stored only as SHA-256 hashes.
//!
//! Shape: `ast1.<base64url(user id)>.<session id>.<base64url(32 random bytes)>`. The user and session
//! ids let validation reach the session item with one strongly consistent read (no GSI, no Scan);
//! the 256 random bits from the OS CSPRNG are what make the token unguessable. The stored hash
//! covers the whole string, so no part of a token can be altered without failing the comparison.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{SessionId, UserId};

const PREFIX: &str = "ast1";
const SECRET_BYTES: usize = 32;
/// Longest token we will even try to parse (a 128-char user id gives about 250).
pub const MAX_TOKEN_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the system random generator failed")]
    Rng,
}

/// A bearer token, parsed. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    raw: String,
    user_id: UserId,
    session_id: SessionId,
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionToken")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// SHA-256 of a token, hex-encoded: the only form in which a token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time equality, so a timing side channel can't reveal how much of a hash matched.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl SessionToken {
    /// Mints a new token for a session, from 256 bits of OS randomness.
    pub fn generate(user_id: &UserId, session_id: SessionId) -> Result<Self, TokenError> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(|_| TokenError::Rng)?;
        let raw = format!(
            "{PREFIX}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(user_id.as_str()),
            session_id,
            URL_SAFE_NO_PAD.encode(secret)
        );
        Ok(Self { raw, user_id: user_id.clone(), session_id })
    }

    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        if raw.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = raw.split('.');
        let (Some(prefix), Some(user), Some(session), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        let user = URL_SAFE_NO_PAD.decode(user).map_err(|_| TokenError::Malformed)?;
        let user = std::str::from_utf8(&user).map_err(|_| TokenError::Malformed)?;
        let user_id = UserId::parse(user).map_err(|_| TokenError::Malformed)?;
        let session_id = SessionId::parse(session).map_err(|_| TokenError::Malformed)?;
        let secret_ok = URL_SAFE_NO_PAD.decode(secret).is_ok_and(|bytes| bytes.len() == SECRET_BYTES);
        if !secret_ok {
            return Err(TokenError::Malformed);
        }
        Ok(Self { raw: raw.to_owned(), user_id, session_id })
    }

    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    pub fn hash(&self) -> TokenHash {
        let digest = Sha256::digest(self.raw.as_bytes());
        TokenHash(hex::encode(digest))
    }

    /// The token itself, for the one response that shows it. Never log this.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("alice@example.com").unwrap()
    }

    #[test]
    fn round_trips_and_binds_ids() {
        let sid = SessionId::new();
        let t = SessionToken::generate(&user(), sid).unwrap();
        let parsed = SessionToken::parse(t.expose()).unwrap();
        assert_eq!(parsed.user_id(), &user());
        assert_eq!(parsed.session_id(), sid);
        assert!(parsed.hash().matches(&t.hash()));
    }

    #[test]
    fn tokens_are_unique_and_long() {
        let a = SessionToken::generate(&user(), SessionId::new()).unwrap();
        let b = SessionToken::generate(&user(), a.session_id()).unwrap();
        assert_ne!(a.expose(), b.expose(), "same session, different secret");
        assert!(!a.hash().matches(&b.hash()));
        let secret = a.expose().rsplit('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len() * 8, 256);
    }

    #[test]
    fn hash_is_sha256_hex_and_not_the_token() {
        let t = SessionToken::generate(&user(), SessionId::new()).unwrap();
        let h = t.hash();
        assert_eq!(h.as_str().len(), 64);
        assert!(!h.as_str().contains(t.expose()));
    }

    #[test]
    fn refuses_malformed_tokens() {
        let t = SessionToken::generate(&user(), SessionId::new()).unwrap();
        let raw = t.expose();
        for bad in [
            "",
            "Bearer x",
            "ast1.x.y.z",
            &raw.replacen("ast1", "ast2", 1),
            &format!("{raw}.extra"),
            &raw[..raw.len() - 2],
            &format!("{raw}{}", "A".repeat(600)),
        ] {
            assert_eq!(SessionToken::parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_tampered_secret_does_not_match() {
        let t = SessionToken::generate(&user(), SessionId::new()).unwrap();
        let raw = t.expose();
        // Flip the secret's first character (all six of its bits count), keeping it base64url.
        let at = raw.rfind('.').unwrap() + 1;
        let first = raw.as_bytes()[at];
        let flipped = format!("{}{}{}", &raw[..at], if first == b'A' { 'B' } else { 'A' }, &raw[at + 1..]);
        let other = SessionToken::parse(&flipped).expect("still a well-formed token");
        assert_eq!(other.session_id(), t.session_id());
        assert!(!other.hash().matches(&t.hash()), "a different secret must not match");
        assert!(t.hash().matches(&SessionToken::parse(raw).unwrap().hash()), "the same one does");
    }

    #[test]
    fn debug_redacts_the_secret() {
        let t = SessionToken::generate(&user(), SessionId::new()).unwrap();
        let secret = t.expose().rsplit('.').next().unwrap().to_owned();
        assert!(!format!("{t:?}").contains(&secret));
    }
}
