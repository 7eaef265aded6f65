//! Opaque listing cursors, bound to the user they were issued to.
//!
//! A cursor says where the next page starts. It is only ever applied to the caller's own partition,
//! so it can't reach another user's data; binding it to the user (a hash tag) makes a cursor pasted
//! into another account fail clearly instead of paging from an arbitrary point.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::domain::{InvalidValue, SessionId, UserId};

const VERSION: &str = "c1";
const MAX_LEN: usize = 200;

/// Where a page starts: at the top (after the current session was shown) or after a session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Top,
    After(SessionId),
}

fn user_tag(user: &UserId) -> String {
    let digest = Sha256::digest(format!("cursor:{}", user.as_str()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(user: &UserId, position: Position) -> String {
    let at = match position {
        Position::Top => "-".to_owned(),
        Position::After(id) => id.to_string(),
    };
    URL_SAFE_NO_PAD.encode(format!("{VERSION}.{}.{at}", user_tag(user)))
}

pub fn decode(raw: &str, user: &UserId) -> Result<Position, InvalidValue> {
    let bad =
        || InvalidValue("cursor is not valid for this listing; start again without it".into());
    if raw.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.split('.');
    let (Some(VERSION), Some(tag), Some(at), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if tag != user_tag(user) {
        return Err(bad());
    }
    match at {
        "-" => Ok(Position::Top),
        id => SessionId::parse(id).map(Position::After).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let u = UserId::parse("alice").unwrap();
        let id = SessionId::new();
        assert_eq!(
            decode(&encode(&u, Position::After(id)), &u),
            Ok(Position::After(id))
        );
        assert_eq!(decode(&encode(&u, Position::Top), &u), Ok(Position::Top));
    }

    #[test]
    fn another_users_cursor_is_refused() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert!(decode(&encode(&alice, Position::Top), &bob).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        let u = UserId::parse("alice").unwrap();
        for raw in [
            "",
            "!!!",
            "YWJj",
            &"A".repeat(500),
            &URL_SAFE_NO_PAD.encode("c1.x.y.z"),
        ] {
            assert!(decode(raw, &u).is_err(), "{raw}");
        }
    }
}
