//! Opaque listing cursors, bound to the user and the listing they were issued for.
//!
//! A cursor says where the next page starts. It is only ever applied to the subject's own
//! partition, so it can't reach another user's data; binding it to the user and the listing
//! (sessions or events) makes a cursor pasted elsewhere fail clearly instead of paging from an
//! arbitrary point.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::domain::{InvalidValue, UserId, WorkspaceId};

const VERSION: &str = "c1";
const MAX_LEN: usize = 200;

/// Which listing a cursor pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Sessions,
    Events,
}

/// Where a page starts: at the top (after the current session was shown) or after an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Top,
    After(Ulid),
}

fn tag(user: &UserId, listing: Listing) -> String {
    let kind = match listing {
        Listing::Sessions => "sessions",
        Listing::Events => "events",
    };
    let digest = Sha256::digest(format!("cursor:{kind}:{}", user.as_str()).as_bytes());
    hex::encode(&digest[..8])
}

/// A cursor as a request brings it: checked for shape at the edge, decoded (and bound to the
/// listing's user) by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue("cursor is not valid for this listing; start again without it".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn encode(user: &UserId, listing: Listing, position: Position) -> String {
    let at = match position {
        Position::Top => "-".to_owned(),
        Position::After(id) => id.to_string(),
    };
    URL_SAFE_NO_PAD.encode(format!("{VERSION}.{}.{at}", tag(user, listing)))
}

pub fn decode(raw: &str, user: &UserId, listing: Listing) -> Result<Position, InvalidValue> {
    let bad = || InvalidValue("cursor is not valid for this listing; start again without it".into());
    if raw.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.split('.');
    let (Some(VERSION), Some(t), Some(at), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if t != tag(user, listing) {
        return Err(bad());
    }
    match at {
        "-" => Ok(Position::Top),
        id if id.len() == 26 => Ulid::from_string(id).map(Position::After).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A member listing's cursor: after which member (by user id) the next page starts, bound to the
/// workspace it pages.
pub fn encode_member(workspace: &WorkspaceId, after: &UserId) -> String {
    URL_SAFE_NO_PAD.encode(format!("m1.{}.{}", member_tag(workspace), after.as_str()))
}

pub fn decode_member(raw: &str, workspace: &WorkspaceId) -> Result<UserId, InvalidValue> {
    let bad = || InvalidValue("cursor is not valid for this listing; start again without it".into());
    if raw.len() > MAX_LEN {
        return Err(bad());
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '.');
    let (Some("m1"), Some(t), Some(user)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    if t != member_tag(workspace) {
        return Err(bad());
    }
    UserId::parse(user).map_err(|_| bad())
}

fn member_tag(workspace: &WorkspaceId) -> String {
    let digest = Sha256::digest(format!("cursor:members:{}", workspace.as_str()).as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_cursor_round_trips_for_its_workspace_only() {
        let acme = WorkspaceId::parse("acme").unwrap();
        let other = WorkspaceId::parse("other").unwrap();
        let user = UserId::parse("a.b@c.d").unwrap();
        let c = encode_member(&acme, &user);
        assert!(Cursor::parse(&c).is_ok(), "{c}");
        assert_eq!(decode_member(&c, &acme), Ok(user));
        assert!(decode_member(&c, &other).is_err());
        assert!(decode_member("YWJj", &acme).is_err());
    }

    #[test]
    fn round_trip() {
        let u = UserId::parse("alice").unwrap();
        let id = Ulid::from_parts(1_700_000_000_000, 42);
        assert_eq!(
            decode(&encode(&u, Listing::Sessions, Position::After(id)), &u, Listing::Sessions),
            Ok(Position::After(id))
        );
        assert_eq!(decode(&encode(&u, Listing::Events, Position::Top), &u, Listing::Events), Ok(Position::Top));
    }

    #[test]
    fn another_users_or_another_listings_cursor_is_refused() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert!(decode(&encode(&alice, Listing::Sessions, Position::Top), &bob, Listing::Sessions).is_err());
        assert!(decode(&encode(&alice, Listing::Sessions, Position::Top), &alice, Listing::Events).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        let u = UserId::parse("alice").unwrap();
        for raw in ["", "!!!", "YWJj", &"A".repeat(500), &URL_SAFE_NO_PAD.encode("c1.x.y.z")] {
            assert!(decode(raw, &u, Listing::Sessions).is_err(), "{raw}");
        }
    }
}
