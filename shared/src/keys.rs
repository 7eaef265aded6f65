//! The one module that builds and reads table keys. Nothing else formats `PK`/`SK` strings.

use sha2::{Digest, Sha256};

use crate::domain::{SessionId, UserId, WorkspaceId};
use crate::identity::UserIdentifier;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
/// TTL attribute (epoch seconds), as configured on the table.
pub const EXPIRES_AT: &str = "ExpiresAt";

pub const PROFILE_SK: &str = "PROFILE";
pub const SESSION_PREFIX: &str = "SESSION#";
pub const AUDIT_PREFIX: &str = "AUDIT#";
const USER_PREFIX: &str = "USER#";
const WORKSPACE_PREFIX: &str = "WORKSPACE#";
const MEMBER_PREFIX: &str = "MEMBER#";
/// A workspace's identity provider, in the workspace's partition.
pub const IDP_SK: &str = "IDP";
/// The single sort key of the items that hold a name for one owner: an (issuer, audience) pair,
/// a user identifier, a signal's `jti`.
pub const CLAIM_SK: &str = "CLAIM";

/// The hex SHA-256 of `parts`, each ended by a NUL (which none may hold), so no two lists of parts
/// hash alike: keys of unbounded text stay short, and no address or subject is spelled out in a
/// key (the profile item holds them).
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// `IDPPAIR#<digest>`: who holds an (issuer, audience) pair, which identifies one workspace's
/// provider.
pub fn idp_pair_pk(issuer: &str, audience: &str) -> String {
    format!("IDPPAIR#{}", digest(&[issuer, audience]))
}

/// `IDENT#<ws>#email#<digest>` or `IDENT#<ws>#iss_sub#<digest>`: the member of a workspace an
/// identifier names (one per workspace: another workspace's user cannot hold it).
pub fn identifier_pk(workspace: &WorkspaceId, id: &UserIdentifier) -> String {
    let ws = workspace.as_str();
    match id {
        UserIdentifier::Email(email) => format!("IDENT#{ws}#email#{}", digest(&[email])),
        UserIdentifier::IssSub { iss, sub } => format!("IDENT#{ws}#iss_sub#{}", digest(&[iss, sub])),
    }
}

/// `JTI#<digest>`: a provider's signal (by workspace, issuer and `jti`) acted on already.
pub fn jti_pk(workspace: &WorkspaceId, issuer: &str, jti: &str) -> String {
    format!("JTI#{}", digest(&[workspace.as_str(), issuer, jti]))
}

/// `USER#<userId>`: the partition holding a user's profile and sessions.
pub fn user_pk(user: &UserId) -> String {
    format!("{USER_PREFIX}{}", user.as_str())
}

/// `SESSION#<sessionId>`.
pub fn session_sk(session: &SessionId) -> String {
    format!("{SESSION_PREFIX}{session}")
}

/// `AUDIT#<eventId>`: an audit event in the target user's partition, newest last.
pub fn audit_sk(event_id: &ulid::Ulid) -> String {
    format!("{AUDIT_PREFIX}{event_id}")
}

/// The event id inside an audit sort key, if it is one.
pub fn audit_id_from_sk(sk: &str) -> Option<ulid::Ulid> {
    sk.strip_prefix(AUDIT_PREFIX).and_then(|id| ulid::Ulid::from_string(id).ok())
}

/// `WORKSPACE#<ws>`: the partition holding a workspace's memberships.
pub fn workspace_pk(workspace: &WorkspaceId) -> String {
    format!("{WORKSPACE_PREFIX}{}", workspace.as_str())
}

/// `MEMBER#<userId>`.
pub fn member_sk(user: &UserId) -> String {
    format!("{MEMBER_PREFIX}{}", user.as_str())
}

/// The user id inside a membership sort key, if it is one.
pub fn user_id_from_member_sk(sk: &str) -> Option<UserId> {
    sk.strip_prefix(MEMBER_PREFIX).and_then(|id| UserId::parse(id).ok())
}

/// `MEMBER#`: the sort keys of a workspace's memberships begin with it.
pub const MEMBER_SK_PREFIX: &str = MEMBER_PREFIX;

/// The session id inside a session sort key, if it is one.
pub fn session_id_from_sk(sk: &str) -> Option<SessionId> {
    sk.strip_prefix(SESSION_PREFIX).and_then(|id| SessionId::parse(id).ok())
}

/// The user id inside a user partition key, if it is one.
pub fn user_id_from_pk(pk: &str) -> Option<UserId> {
    pk.strip_prefix(USER_PREFIX).and_then(|id| UserId::parse(id).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_user_partition_key() {
        let user = UserId::parse("u_alice").unwrap();
        assert_eq!(user_pk(&user), "USER#u_alice");
        assert_eq!(user_id_from_pk("USER#u_alice"), Some(user));
        assert_eq!(user_id_from_pk("WORKSPACE#u_alice"), None);
    }

    #[test]
    fn builds_session_sort_key_and_reads_it_back() {
        let id = SessionId::parse("01JD2Z5R8B3W4K9Q7N6M5X4Y3Z").unwrap();
        let sk = session_sk(&id);
        assert_eq!(sk, "SESSION#01JD2Z5R8B3W4K9Q7N6M5X4Y3Z");
        assert_eq!(session_id_from_sk(&sk), Some(id));
        assert_eq!(session_id_from_sk(PROFILE_SK), None);
        assert_eq!(session_id_from_sk("SESSION#not-a-ulid"), None);
    }

    #[test]
    fn builds_audit_and_membership_keys() {
        let id = ulid::Ulid::from_string("01JD2Z5R8B3W4K9Q7N6M5X4Y3Z").unwrap();
        assert_eq!(audit_sk(&id), "AUDIT#01JD2Z5R8B3W4K9Q7N6M5X4Y3Z");
        assert_eq!(audit_id_from_sk(&audit_sk(&id)), Some(id));
        assert_eq!(audit_id_from_sk("SESSION#01JD2Z5R8B3W4K9Q7N6M5X4Y3Z"), None);
        let ws = WorkspaceId::parse("acme").unwrap();
        assert_eq!(workspace_pk(&ws), "WORKSPACE#acme");
        assert_eq!(member_sk(&UserId::parse("bob").unwrap()), "MEMBER#bob");
    }

    #[test]
    fn claim_keys_keep_their_parts_apart() {
        assert_ne!(idp_pair_pk("https://a", "bc"), idp_pair_pk("https://ab", "c"));
        let (acme, globex) = (WorkspaceId::parse("acme").unwrap(), WorkspaceId::parse("globex").unwrap());
        let email = UserIdentifier::Email("ann@acme.example".into());
        let key = identifier_pk(&acme, &email);
        assert!(key.starts_with("IDENT#acme#email#") && !key.contains("ann"), "{key}");
        assert_ne!(key, identifier_pk(&globex, &email), "each workspace its own");
        let iss_sub = UserIdentifier::IssSub { iss: "https://idp".into(), sub: "00u1".into() };
        assert!(identifier_pk(&acme, &iss_sub).starts_with("IDENT#acme#iss_sub#"));
        assert_ne!(jti_pk(&acme, "https://a", "1"), jti_pk(&acme, "https://b", "1"));
        assert_ne!(jti_pk(&acme, "https://a", "1"), jti_pk(&globex, "https://a", "1"));
    }

    #[test]
    fn profile_sorts_before_sessions() {
        // Listing queries `begins_with(SK, "SESSION#")`; the profile must never fall in that range.
        assert!(!PROFILE_SK.starts_with(SESSION_PREFIX));
    }
}
