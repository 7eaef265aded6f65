//! The storage boundary. Handlers and services see only this trait; `DynamoStore` talks to
//! DynamoDB and `MemoryStore` (feature `test-utils`) stands in for it in handler tests.

use std::collections::HashMap;
use std::future::Future;

use crate::domain::{Role, SessionId, UserId, WorkspaceId};
use crate::identity::{IdentityProvider, UserIdentifier};
use crate::model::{AuditEvent, Profile, Revocation, Session, Watermark};

mod dynamo;
#[cfg(any(test, feature = "test-utils"))]
mod memory;

pub use dynamo::DynamoStore;
#[cfg(any(test, feature = "test-utils"))]
pub use memory::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused for capacity; the caller may retry later.
    #[error("DynamoDB throttled the request")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("DynamoDB request failed")]
    Sdk(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An item in the table doesn't have the shape this code writes.
    #[error("stored item is malformed")]
    Corrupt(#[source] serde_dynamo::Error),
    #[error("a session with this id already exists")]
    AlreadyExists,
    /// A name only one owner may hold (an identity provider's issuer and audience, a user's email
    /// or subject) is another's: nothing is written.
    #[error("{0}")]
    Taken(&'static str),
    /// A signal's `jti` is on record already: it was acted on, and nothing is written again.
    #[error("this signal was acted on already")]
    Replayed,
    /// A concurrent write changed what this one was conditioned on; the caller may retry.
    #[error("a concurrent update won")]
    Conflict,
    /// DynamoDB did not answer in time, or could not be reached (after the bounded retries).
    #[error("DynamoDB did not answer in time")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The caller's own deadline passed first (the request's, or a budget such as introspection's
    /// bookkeeping): the store may still answer, nobody waits for it.
    #[error("{0} passed before the store answered")]
    OutOfTime(&'static str),
}

/// A revocation of one session on its own (revoke-one, admin revoke, eviction), as opposed to a
/// watermark's sweep: it is written with its audit event, and only while no watermark covers the
/// session, so a session a revoke-all covered already gets no second event.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    pub event: &'a AuditEvent,
    /// The session's sign-in time (epoch ms), what a watermark is compared with.
    pub signed_in_at: i64,
}

/// Items to read together in one strongly consistent request (at most 100 keys).
#[derive(Debug, Clone, Default)]
pub struct ReadSet {
    pub sessions: Vec<(UserId, SessionId)>,
    pub profiles: Vec<UserId>,
    pub memberships: Vec<(WorkspaceId, UserId)>,
}

/// What a `ReadSet` found. Missing items are simply absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadResult {
    pub sessions: HashMap<(UserId, SessionId), Session>,
    pub profiles: HashMap<UserId, Profile>,
    pub memberships: HashMap<(WorkspaceId, UserId), Role>,
}

/// One page of a user's session items, newest first, unfiltered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    /// The last session id the page read, when more items may follow.
    pub last_evaluated: Option<SessionId>,
}

/// One page of a user's audit events, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub last_evaluated: Option<ulid::Ulid>,
}

/// One page of a workspace's members, by user id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberPage {
    pub members: Vec<(UserId, Role)>,
    /// The last member the page read, when more may follow.
    pub last_evaluated: Option<UserId>,
}

/// A revoked session's tombstone, as the audit trail's receipt summaries read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub session_id: SessionId,
    /// Epoch ms: the revocation's time, which its audit event carries too.
    pub revoked_at: i64,
    pub caches_invalidated_at: Option<i64>,
    pub receipts: std::collections::BTreeMap<String, crate::model::ProductReceipt>,
}

/// The few attributes sweeps and the session limit need about every session of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub session_id: SessionId,
    pub signed_in_at: i64,
    pub last_active_at: i64,
    pub expires_at: i64,
    pub active: bool,
    pub device_label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RevokeOutcome {
    /// It was active; this call revoked it.
    Revoked,
    /// It was revoked already (a repeated call): nothing changed.
    AlreadyRevoked,
    /// No such session for this user, or it has expired.
    NotFound,
}

/// A profile as `PUT /v1/internal/users/{id}` sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub workspace_id: Option<WorkspaceId>,
    pub role: Role,
    pub sso_linked: bool,
    /// What the workspace's identity provider may name the user by: at most one of each format.
    pub identifiers: Vec<UserIdentifier>,
}

/// A signal from an identity provider, to act on at most once: written with what it does, in the
/// same transaction, and kept until `keep_until_secs` (epoch seconds; TTL), past which the signal
/// itself is refused as too old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    pub workspace: WorkspaceId,
    pub issuer: String,
    pub jti: String,
    pub keep_until_secs: i64,
}

/// Sessions and what decides them: sign-in, the reads authorisation makes (sessions, profiles,
/// memberships), listing, the revocations and the watermark, trust, and introspection's
/// bookkeeping.
pub trait SessionsStore: Send + Sync {
    /// Writes a new session; fails with `AlreadyExists` rather than overwrite one.
    fn create_session(&self, session: &Session) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sessions, profiles and memberships, in one strongly consistent read.
    fn read(&self, set: &ReadSet) -> impl Future<Output = Result<ReadResult, StoreError>> + Send;

    /// One Query: up to `limit` session items of the user, newest first, after `after`.
    fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> impl Future<Output = Result<SessionPage, StoreError>> + Send;

    /// The states of all the user's session items (a projected Query, paginated inside).
    fn session_states(&self, user: &UserId) -> impl Future<Output = Result<Vec<SessionState>, StoreError>> + Send;

    /// How many of the user's sessions are active and unexpired at `now_ms`, covered by `new`, and
    /// not covered by `previous` (they were revoked already): what a revoke-all newly revokes.
    /// Counted by the store (DynamoDB: a `Select=COUNT` Query), so no item crosses the wire.
    fn count_newly_covered(
        &self,
        user: &UserId,
        new: Watermark,
        previous: Option<Watermark>,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Soft-revokes one session if it is active and unexpired at `revocation.at_ms`: sets status,
    /// who, when, why, and sets `ExpiresAt` to `tombstone_secs` from now. With `audit`, the audit
    /// event is written in the same transaction (both or neither), and only if the user's
    /// watermark does not cover the session (else `AlreadyRevoked`, nothing written); without
    /// it (a watermark's sweep), the session is revoked whatever the watermark.
    fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
        audit: Option<Audited<'_>>,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send;

    /// Replaces the user's revoke-all watermark, if it is still `expected` (`None`: there is
    /// none), with `new`, writing `audit` in the same transaction. `Ok(Err(current))` when another
    /// write got there first: nothing is written, and `current` is the watermark now in force.
    /// (Callers combine the two with `Watermark::union` and try again.) With `once`, its record is
    /// written in the same transaction, and `Err(Replayed)` (nothing written) if it is there.
    fn swap_watermark(
        &self,
        user: &UserId,
        expected: Option<Watermark>,
        new: Watermark,
        revocation: &Revocation,
        audit: &AuditEvent,
        once: Option<&Once>,
    ) -> impl Future<Output = Result<Result<(), Option<Watermark>>, StoreError>> + Send;

    /// Sets an active, unexpired session's trusted flag; `None` if there is no such session.
    fn set_trusted(
        &self,
        user: &UserId,
        session: SessionId,
        trusted: bool,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Sets an active session's `LastActiveAt` to `now_ms` if it is older than `stale_before_ms`
    /// (a conditional write; a fresher value or an inactive session is left as it is).
    fn touch_session(
        &self,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a first-party app to an active session's `Apps` unless it is there already or the
    /// session holds `MAX_APPS`. `true` when this call added it.
    fn add_app(
        &self,
        user: &UserId,
        session: SessionId,
        app: &crate::domain::AppId,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Revoked sessions' tombstones and their receipts: what the fan-out and the retries record,
/// and what the audit trail and the revocation route read.
pub trait ReceiptsStore: Send + Sync {
    /// The user's revoked sessions still kept as tombstones, with their receipts (a projected,
    /// filtered Query, paginated inside): what the audit trail's receipt summaries are made of.
    fn tombstones(&self, user: &UserId) -> impl Future<Output = Result<Vec<Tombstone>, StoreError>> + Send;

    /// A revoked session's receipts by product (`aud`), as recorded on its tombstone by
    /// `record_receipt` (strongly consistent), so a redelivered stream record tells only the
    /// products not told yet and counts attempts on.
    fn receipts(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<String, crate::model::ProductReceipt>, StoreError>> + Send;

    /// Replaces a product's receipt on a revoked session's tombstone with `receipt`, only while it
    /// is still at step `from` (pending, with those attempts and that link; at the first step, a
    /// product with no receipt yet counts too). `false` when another attempt moved it first, or
    /// the item is not a tombstone (never recreating one TTL removed). A write to a revoked
    /// session: the stream filter lets it pass to no one.
    fn advance_receipt(
        &self,
        user: &UserId,
        session: SessionId,
        aud: &str,
        from: &crate::model::ReceiptStep,
        receipt: &crate::model::ProductReceipt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records when the token caches let go of a revoked session, and who told them (the first
    /// time only) and, in
    /// the same write, a `pending` receipt with no attempt for each of `products` if the
    /// tombstone has no receipts yet: from then on, the products still to tell are on record. The
    /// tombstone is kept at least until `keep_until_secs` (epoch seconds), so that what is owed
    /// outlives its retries whatever the tombstone's own lifetime.
    fn record_caches_invalidated(
        &self,
        user: &UserId,
        session: SessionId,
        at_ms: i64,
        by: crate::model::CachesToldBy,
        products: &[String],
        keep_until_secs: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes the tombstone of a session that TTL removed while it was still active (a revoked
    /// session, reason `expired`), so that its receipts have a home. `false` when the item exists
    /// already (a redelivered record): nothing is written.
    fn create_tombstone(&self, tombstone: &Session) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Users and workspaces: the profile the identity system sets, a workspace's members, and its
/// identity provider.
pub trait DirectoryStore: Send + Sync {
    /// Sets the user's workspace, role, SSO link and identifiers, keeping the membership and
    /// identifier items in step: the identifiers are claimed in the user's workspace (none without
    /// one). `Taken` when one names another member of it (nothing written).
    fn put_profile(&self, user: &UserId, update: &ProfileUpdate)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One Query: up to `limit` of a workspace's members in user id order, after `after`.
    fn query_members(
        &self,
        workspace: &WorkspaceId,
        after: Option<UserId>,
        limit: u32,
    ) -> impl Future<Output = Result<MemberPage, StoreError>> + Send;

    /// Sets a workspace's identity provider, and claims its (issuer, audience) pair for the
    /// workspace (freeing the one it held before). `Taken` when another workspace holds the pair:
    /// nothing is written.
    fn put_identity_provider(&self, provider: &IdentityProvider)
        -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A workspace's identity provider, if one is set (strongly consistent).
    fn identity_provider(
        &self,
        workspace: &WorkspaceId,
    ) -> impl Future<Output = Result<Option<IdentityProvider>, StoreError>> + Send;

    /// The member of `workspace` an identifier names, if any: one read.
    fn user_by_identifier(
        &self,
        workspace: &WorkspaceId,
        id: &UserIdentifier,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;
}

/// The audit trail: events written on their own, a revoke-all's sweep, and the history pages.
pub trait AuditStore: Send + Sync {
    /// Writes an audit event on its own (events the system records, such as expiries). Writing
    /// the same event id twice is not an error and changes nothing: redelivery is harmless.
    fn put_audit(&self, event: &AuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records on a revoke-all's audit event that its sweep is done (the first time only). An
    /// event that is gone is left gone.
    fn mark_swept(
        &self,
        user: &UserId,
        event_id: ulid::Ulid,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One Query: up to `limit` of the user's audit events, newest first, after `after`.
    fn query_audit(
        &self,
        user: &UserId,
        after: Option<ulid::Ulid>,
        limit: u32,
    ) -> impl Future<Output = Result<AuditPage, StoreError>> + Send;
}

/// Everything the service asks of a store: the four traits above, which every store implements
/// (DynamoDB, memory, and the fault-injecting wrapper). Code that needs one part may ask for it
/// alone.
pub trait SessionStore: SessionsStore + ReceiptsStore + DirectoryStore + AuditStore {}

impl<T: SessionsStore + ReceiptsStore + DirectoryStore + AuditStore> SessionStore for T {}
