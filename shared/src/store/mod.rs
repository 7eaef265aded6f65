//! The storage boundary. Handlers and services see only this trait; `DynamoStore` talks to
//! DynamoDB and `MemoryStore` (feature `test-utils`) stands in for it in handler tests.

use std::future::Future;

use crate::domain::{SessionId, UserId};
use crate::model::{Revocation, Session, Watermark};

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
}

/// What validation needs, read together in one strongly consistent request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthRecord {
    pub session: Option<Session>,
    pub watermark: Option<Watermark>,
}

/// One page of a user's session items, newest first, unfiltered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    /// The last session id the page read, when more items may follow.
    pub last_evaluated: Option<SessionId>,
}

/// The few attributes revoke-all needs to know which sessions a watermark newly covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub session_id: SessionId,
    pub signed_in_at: i64,
    pub expires_at: i64,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RevokeOutcome {
    /// It was active; this call revoked it. Carries the session as it was.
    Revoked(Box<Session>),
    /// It was revoked already (a repeated call): nothing changed.
    AlreadyRevoked,
    /// No such session for this user, or it has expired.
    NotFound,
}

pub trait SessionStore: Send + Sync {
    /// Writes a new session; fails with `AlreadyExists` rather than overwrite one.
    fn create_session(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session and the user's revoke-all watermark, in one strongly consistent read.
    fn load_auth(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> impl Future<Output = Result<AuthRecord, StoreError>> + Send;

    /// One Query: up to `limit` session items of the user, newest first, after `after`.
    fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> impl Future<Output = Result<SessionPage, StoreError>> + Send;

    /// The states of all the user's session items (a projected Query, paginated inside).
    fn session_states(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<SessionState>, StoreError>> + Send;

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
    /// who, when, why, and shortens `ExpiresAt` to at most `tombstone_secs` from now.
    fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send;

    /// Raises the user's revoke-all watermark to `watermark` (never lowers it: a later one in
    /// force is kept and the new one moves just past it). Returns the watermark now in force.
    fn raise_watermark(
        &self,
        user: &UserId,
        watermark: Watermark,
        revocation: &Revocation,
    ) -> impl Future<Output = Result<Watermark, StoreError>> + Send;
}
