//! The domain records and the pure rules over them (what is active, what a watermark covers).
//! Items ↔ structs go through `serde_dynamo`; attribute names are PascalCase, as in the table.

use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, Role, SessionId, UserId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Active,
    Revoked,
}

/// Why a session was revoked, as recorded on the tombstone and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    UserLogout,
    UserLogoutAll,
    UserLogoutOthers,
    AdminRevoke,
    AdminOffboard,
    SessionLimit,
    Expired,
    /// The workspace's identity provider ended the user's sessions (Global Token Revocation,
    /// Okta's Universal Logout).
    IdpLogout,
    /// A Shared Signals event from the workspace's identity provider: CAEP `session-revoked`.
    IdpSessionRevoked,
    /// CAEP `credential-change` (the credential revoked or deleted).
    IdpCredentialChange,
    /// RISC `account-disabled`.
    IdpAccountDisabled,
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    User,
    Admin,
    System,
    /// A workspace's identity provider (`actor_id`: its issuer).
    Idp,
}

/// Who revoked, when, why and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at_ms: i64,
    pub actor: Actor,
    /// The acting user's id (`system` for the system, the issuer for an identity provider).
    pub actor_id: String,
    pub reason: RevokeReason,
    pub source_ip: Option<String>,
}

impl Revocation {
    /// `user:<id>`, `admin:<id>`, `system` or `idp:<issuer>`: what `RevokedBy` records.
    pub fn by(&self) -> String {
        match self.actor {
            Actor::User => format!("user:{}", self.actor_id),
            Actor::Admin => format!("admin:{}", self.actor_id),
            Actor::System => "system".to_owned(),
            Actor::Idp => format!("idp:{}", self.actor_id),
        }
    }
}

/// What an audit event covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditScope {
    /// The sessions listed in `session_ids`.
    Sessions,
    /// Every session (`count` of them).
    All,
    /// Every session but the actor's current one (`count` of them).
    Others,
}

/// One revocation, as the audit trail keeps it (`USER#<target>` / `AUDIT#<ulid>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditEvent {
    pub event_id: ulid::Ulid,
    pub actor: Actor,
    pub actor_id: String,
    pub target_user: UserId,
    pub scope: AuditScope,
    pub session_ids: Vec<SessionId>,
    /// The revoked sessions' device labels, so the trail still reads after the sessions are gone.
    pub device_labels: Vec<String>,
    pub count: u64,
    pub reason: RevokeReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Epoch milliseconds.
    pub at: i64,
    /// Epoch seconds; the table's TTL attribute (audit events outlive sessions).
    pub expires_at: i64,
    /// An admin's workspace when they acted: a member's history names it even after the member
    /// moved on ("an admin of acme").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_workspace: Option<crate::domain::WorkspaceId>,
    /// A revoke-all: when the fan-out's sweep had revoked every session its watermark covers
    /// (epoch ms). Until then its receipts are not complete, whatever the swept sessions say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept_at: Option<i64>,
}

/// The most apps one session may name (sign-in's `apps`, and the ones introspection adds).
pub const MAX_APPS: usize = 16;

/// A session as stored (without its keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub apps: Vec<AppId>,
    pub client: ClientKind,
    pub user_agent: String,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub device: Device,
    pub trusted: bool,
    /// Epoch milliseconds.
    pub signed_in_at: i64,
    /// Epoch milliseconds.
    pub last_active_at: i64,
    pub status: SessionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<RevokeReason>,
    pub token_hash: String,
    /// Epoch seconds; the table's TTL attribute. Never later than the client kind's absolute
    /// lifetime after sign-in.
    pub expires_at: i64,
    /// Seconds without recorded activity after which the session stops validating: the client
    /// kind's idle timeout plus the interval at which introspection records activity (so a
    /// session in use is never cut), fixed at sign-in. Absent: no idle limit (sessions signed in
    /// before idle timeouts existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<i64>,
    /// Revoked sessions: when the token caches let go of it (epoch ms), as the fan-out records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches_invalidated_at: Option<i64>,
    /// Revoked sessions: who told the caches (absent on tombstones recorded before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches_invalidated_by: Option<CachesToldBy>,
    /// Revoked sessions: each product's back-channel logout (`aud` → receipt), as the fan-out
    /// records them on the tombstone; they live as long as it does.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub receipts: std::collections::BTreeMap<String, ProductReceipt>,
}

/// Who told the token caches a session ended, as its receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachesToldBy {
    /// The revoke itself, before it answered.
    WriteThrough,
    /// The stream's fan-out, behind the revoke (the write-through was off or failed).
    Stream,
    /// Nobody could reach Redis: the time is when the propagation window ends every cached entry.
    Window,
}

/// What a committed revocation tells the token caches: one token (by its hash), or every session
/// a user's watermark covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheNotice {
    Token { user: UserId, token_hash: String },
    User { user: UserId, watermark: Watermark },
}

/// Where a product's back-channel logout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet (being tried, or retried after a failure).
    Pending,
    Delivered,
    /// Given up on.
    Failed,
}

impl ProductReceipt {
    /// `pending`, not tried yet.
    pub fn not_tried() -> Self {
        Self {
            status: DeliveryStatus::Pending,
            attempts: 0,
            delivered_at: None,
            last_attempt_at: None,
            error: None,
            link: None,
        }
    }
}

/// One product's receipt for one revoked session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProductReceipt {
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// Epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<i64>,
    /// The class of the last failure (`timeout`, `connect`, `http_503`, ...), never a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While `pending` after a first step: the id of the one queued retry allowed to make the next
    /// attempt. A retry that names another link is stale (a second chain) and is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Where a receipt stood when an attempt was decided: it advances only from there, so two
/// deliveries of one step (a redelivered record, a duplicated message) never both advance it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptStep {
    /// Attempts made so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl ReceiptStep {
    /// A receipt no attempt and no retry has touched yet.
    pub fn first() -> Self {
        Self { attempts: 0, link: None }
    }

    /// Whether `receipt` is still `pending` at this step.
    pub fn matches(&self, receipt: &ProductReceipt) -> bool {
        receipt.status == DeliveryStatus::Pending && receipt.attempts == self.attempts && receipt.link == self.link
    }
}

/// "Every session signed in at or before `before_ms` is revoked, except `keep`": written by
/// revoke-all before any per-session revoke, and honoured by validation at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Watermark {
    #[serde(rename = "RevokedBefore")]
    pub before_ms: i64,
    #[serde(rename = "RevokeKeep", default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<SessionId>,
}

impl Watermark {
    pub fn covers(&self, session: &Session) -> bool {
        self.covers_at(session.signed_in_at, session.session_id)
    }

    /// Whether a session signed in at `signed_in_at` (epoch ms) with this id falls under it.
    pub fn covers_at(&self, signed_in_at: i64, session: SessionId) -> bool {
        signed_in_at <= self.before_ms && self.keep != Some(session)
    }

    /// Whether this watermark covers every session `other` covers, whatever their sign-in times.
    pub fn covers_all_of(&self, other: &Watermark) -> bool {
        self.before_ms >= other.before_ms && (self.keep.is_none() || self.keep == other.keep)
    }

    /// Of two watermarks, the later one (on a tie, `other`): its `keep` is the only one a union
    /// can keep.
    pub fn later(self, other: Watermark) -> Watermark {
        if self.before_ms > other.before_ms {
            self
        } else {
            other
        }
    }

    /// The one watermark that covers every session that `self` or `other` covers, and no other:
    /// concurrent revoke-alls combine this way, so none undoes what another revoked.
    ///
    /// It runs to the later `before_ms`. The later one's kept session stays kept only if the
    /// earlier one does not cover it: it keeps it too, or the kept session signed in after it.
    /// `later_keep_signed_in_at` is that session's sign-in time (epoch ms); `None` (unknown, or the
    /// session is gone) keeps nothing, which can only revoke more.
    pub fn union(self, other: Watermark, later_keep_signed_in_at: Option<i64>) -> Watermark {
        let (early, late) = if self.before_ms > other.before_ms { (other, self) } else { (self, other) };
        let keep = late
            .keep
            .filter(|k| early.keep == Some(*k) || later_keep_signed_in_at.is_some_and(|t| t > early.before_ms));
        Watermark { before_ms: late.before_ms, keep }
    }
}

/// Whether an item with this `ExpiresAt` (epoch seconds) has expired at `now_ms`.
pub fn expired(expires_at: i64, now_ms: i64) -> bool {
    expires_at.saturating_mul(1000) <= now_ms
}

/// The per-user profile item: workspace membership, SSO link and the revoke-all watermark.
/// A profile may hold only a watermark (revoke-all by a user never set up by `PUT /v1/internal/users`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<WorkspaceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Absent means not linked: such profiles predate any `PUT /v1/internal/users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_linked: Option<bool>,
    /// The identifiers the workspace's identity provider may name the user by (each also held
    /// under its own key, `keys::identifier_pk`): the email address, lower-cased...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// ... and the issuer and subject at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_subject: Option<String>,
    #[serde(flatten)]
    pub watermark: Option<Watermark>,
}

impl Profile {
    /// The identifiers the profile holds (email first).
    pub fn identifiers(&self) -> Vec<crate::identity::UserIdentifier> {
        use crate::identity::UserIdentifier;
        let mut ids: Vec<UserIdentifier> = self.email.iter().map(|e| UserIdentifier::Email(e.clone())).collect();
        if let (Some(iss), Some(sub)) = (&self.idp_issuer, &self.idp_subject) {
            ids.push(UserIdentifier::IssSub { iss: iss.clone(), sub: sub.clone() });
        }
        ids
    }

    pub fn is_sso_linked(&self) -> bool {
        self.sso_linked == Some(true)
    }

    /// Whether this user administers `workspace`.
    pub fn is_admin_of(&self, workspace: &WorkspaceId) -> bool {
        self.role == Some(Role::Admin) && self.workspace_id.as_ref() == Some(workspace)
    }
}

impl Session {
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        expired(self.expires_at, now_ms)
    }

    /// Active: not revoked (by itself or by a watermark) and not expired. TTL deletes lazily,
    /// so every read goes through this.
    pub fn is_active_at(&self, now_ms: i64, watermark: Option<&Watermark>) -> bool {
        self.status == SessionStatus::Active
            && !self.is_expired_at(now_ms)
            && !self.is_idle_at(now_ms)
            && !watermark.is_some_and(|w| w.covers(self))
    }

    /// When the session times out for want of use, as last recorded (epoch ms).
    pub fn idle_deadline_ms(&self) -> Option<i64> {
        self.idle_timeout_secs.map(|secs| self.last_active_at.saturating_add(secs.saturating_mul(1000)))
    }

    /// Whether the session has gone unused for longer than its idle timeout.
    pub fn is_idle_at(&self, now_ms: i64) -> bool {
        self.idle_deadline_ms().is_some_and(|deadline| deadline <= now_ms)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;

    pub fn session(user: &str, signed_in_at: i64) -> Session {
        Session {
            user_id: UserId::parse(user).unwrap(),
            session_id: SessionId::new(),
            apps: vec![AppId::parse("chatgpt").unwrap()],
            client: ClientKind::Browser,
            user_agent: "Mozilla/5.0".into(),
            ip: "203.0.113.7".into(),
            location: Some(Location { city: Some("Lyon".into()), region: None, country: Some("FR".into()) }),
            device: Device::from_user_agent("Mozilla/5.0", ClientKind::Browser),
            trusted: false,
            signed_in_at,
            last_active_at: signed_in_at,
            status: SessionStatus::Active,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            token_hash: "ab".repeat(32),
            expires_at: signed_in_at / 1000 + 3600,
            idle_timeout_secs: None,
            caches_invalidated_at: None,
            caches_invalidated_by: None,
            receipts: Default::default(),
        }
    }

    #[test]
    fn item_round_trip_keeps_every_field() {
        let mut s = session("u1", 1_700_000_000_000);
        s.revoked_at = Some(1_700_000_100_000);
        s.revoke_reason = Some(RevokeReason::UserLogout);
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&s).unwrap();
        assert_eq!(item["ExpiresAt"], AttributeValue::N("1700003600".into()));
        assert_eq!(item["Status"], AttributeValue::S("active".into()));
        assert_eq!(item["RevokeReason"], AttributeValue::S("user_logout".into()));
        assert!(!item.contains_key("RevokedBy"), "absent options are not written as NULL");
        let back: Session = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_missing_required_field_is_an_error_not_a_default() {
        let s = session("u1", 1_700_000_000_000);
        let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&s).unwrap();
        item.remove("TokenHash");
        assert!(serde_dynamo::from_item::<_, Session>(item).is_err());
    }

    #[test]
    fn profile_round_trip() {
        let p = Profile {
            workspace_id: Some(WorkspaceId::parse("acme").unwrap()),
            role: Some(Role::Admin),
            sso_linked: Some(true),
            email: Some("ann@acme.example".into()),
            idp_issuer: Some("https://idp.example".into()),
            idp_subject: Some("00u1".into()),
            watermark: Some(Watermark { before_ms: 5, keep: Some(SessionId::new()) }),
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&p).unwrap();
        assert!(item.contains_key("RevokedBefore"));
        assert_eq!(serde_dynamo::from_item::<_, Profile>(item).unwrap(), p);
        let empty: Profile = serde_dynamo::from_item(HashMap::<String, AttributeValue>::new()).unwrap();
        assert_eq!(empty.watermark, None);
        assert!(!empty.is_sso_linked());
    }

    #[test]
    fn audit_event_round_trip() {
        let e = AuditEvent {
            event_id: ulid::Ulid::from_parts(1_700_000_000_000, 7),
            actor: Actor::Admin,
            actor_id: "root".into(),
            target_user: UserId::parse("bob").unwrap(),
            scope: AuditScope::Sessions,
            session_ids: vec![SessionId::new()],
            device_labels: vec!["Chrome on macOS".into()],
            count: 1,
            reason: RevokeReason::AdminRevoke,
            source_ip: Some("192.0.2.1".into()),
            note: None,
            at: 1_700_000_000_000,
            expires_at: 1_700_000_000 + 400 * 86_400,
            actor_workspace: None,
            swept_at: Some(1_700_000_001_000),
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&e).unwrap();
        assert_eq!(item["Reason"], AttributeValue::S("admin_revoke".into()));
        assert_eq!(serde_dynamo::from_item::<_, AuditEvent>(item).unwrap(), e);
    }

    #[test]
    fn revocation_names_its_actor() {
        let r = |actor| Revocation {
            at_ms: 0,
            actor,
            actor_id: "alice".into(),
            reason: RevokeReason::UserLogout,
            source_ip: None,
        };
        assert_eq!(r(Actor::User).by(), "user:alice");
        assert_eq!(r(Actor::Admin).by(), "admin:alice");
        assert_eq!(r(Actor::System).by(), "system");
    }

    #[test]
    fn activity_rules() {
        let now = 1_700_000_000_000;
        let s = session("u1", now - 10_000);
        assert!(s.is_active_at(now, None));
        assert!(!s.is_active_at(s.expires_at * 1000, None), "expired at ExpiresAt");
        let mut revoked = s.clone();
        revoked.status = SessionStatus::Revoked;
        assert!(!revoked.is_active_at(now, None));
    }

    #[test]
    fn watermark_covers_older_sessions_except_the_kept_one() {
        let now = 1_700_000_000_000;
        let old = session("u1", now - 1000);
        let new = session("u1", now + 1);
        let wm = Watermark { before_ms: now, keep: None };
        assert!(wm.covers(&old));
        assert!(!wm.covers(&new));
        assert!(!old.is_active_at(now, Some(&wm)));
        let keep = Watermark { before_ms: now, keep: Some(old.session_id) };
        assert!(!keep.covers(&old));
    }

    #[test]
    fn an_unused_session_times_out_and_use_keeps_it_alive() {
        let now = 1_700_000_000_000;
        let mut s = session("u1", now);
        s.idle_timeout_secs = Some(600);
        assert!(s.is_active_at(now + 599_999, None));
        assert!(!s.is_active_at(now + 600_000, None), "idle at the timeout");
        s.last_active_at = now + 500_000;
        assert!(s.is_active_at(now + 1_000_000, None), "recorded use pushes the deadline");
        assert!(!s.is_active_at(now + 1_100_000, None));
        s.idle_timeout_secs = None;
        assert!(s.is_active_at(now + 3_000_000, None), "no idle limit on older sessions");
    }

    /// Every (signed-in time, session) pair the union covers is covered by one of the two, and
    /// the other way round: over a grid of times and kept sessions, both orders.
    #[test]
    fn a_union_covers_exactly_what_either_covers() {
        let ids: Vec<SessionId> = (0..3).map(|_| SessionId::new()).collect();
        let signed_in = |id: SessionId| 100 * (ids.iter().position(|x| *x == id).unwrap() as i64 + 1);
        let keeps = [None, Some(ids[0]), Some(ids[1]), Some(ids[2])];
        for a_before in [50, 100, 150, 200, 300, 400] {
            for b_before in [50, 100, 150, 200, 300, 400] {
                for a_keep in keeps {
                    for b_keep in keeps {
                        let a = Watermark { before_ms: a_before, keep: a_keep };
                        let b = Watermark { before_ms: b_before, keep: b_keep };
                        let late_keep_t = a.later(b).keep.map(signed_in);
                        for u in [a.union(b, late_keep_t), b.union(a, b.later(a).keep.map(signed_in))] {
                            for id in &ids {
                                let either = a.covers_at(signed_in(*id), *id) || b.covers_at(signed_in(*id), *id);
                                assert_eq!(u.covers_at(signed_in(*id), *id), either, "{a:?} ∪ {b:?} = {u:?} on {id}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_later_others_does_not_revive_what_an_offboard_revoked() {
        let kept = SessionId::new();
        let offboard = Watermark { before_ms: 2_000, keep: None };
        let others = Watermark { before_ms: 1_000, keep: Some(kept) };
        assert_eq!(others.union(offboard, None), offboard);
        // Moving past the offboard with its own keep (what main did) would revive `kept`.
        let moved_past = Watermark { before_ms: 2_001, keep: Some(kept) };
        assert!(!moved_past.covers_at(500, kept));
        assert!(others.union(offboard, None).covers_at(500, kept));
    }
}
