//! An in-memory `SessionStore` for handler tests: the same semantics as `DynamoStore`
//! (conditions, ordering, pagination), without AWS.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{AuthRecord, RevokeOutcome, SessionPage, SessionState, SessionStore, StoreError};
use crate::domain::{SessionId, UserId};
use crate::model::{Revocation, Session, SessionStatus, Watermark};

#[derive(Default, Debug)]
struct Inner {
    sessions: HashMap<UserId, BTreeMap<SessionId, Session>>,
    watermarks: HashMap<UserId, Watermark>,
    writes: usize,
}

#[derive(Default, Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a session as it is (tests use this to stage expired or revoked rows).
    pub fn insert(&self, session: Session) {
        let mut inner = self.lock();
        inner
            .sessions
            .entry(session.user_id.clone())
            .or_default()
            .insert(session.session_id, session);
    }

    pub fn get(&self, user: &UserId, session: SessionId) -> Option<Session> {
        self.lock()
            .sessions
            .get(user)
            .and_then(|m| m.get(&session))
            .cloned()
    }

    pub fn watermark(&self, user: &UserId) -> Option<Watermark> {
        self.lock().watermarks.get(user).copied()
    }

    /// How many writes succeeded, so tests can assert that a refused request wrote nothing.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }
}

impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let sessions = inner.sessions.entry(session.user_id.clone()).or_default();
        if sessions.contains_key(&session.session_id) {
            return Err(StoreError::AlreadyExists);
        }
        sessions.insert(session.session_id, session.clone());
        inner.writes += 1;
        Ok(())
    }

    async fn load_auth(&self, user: &UserId, session: SessionId) -> Result<AuthRecord, StoreError> {
        let inner = self.lock();
        Ok(AuthRecord {
            session: inner
                .sessions
                .get(user)
                .and_then(|m| m.get(&session))
                .cloned(),
            watermark: inner.watermarks.get(user).copied(),
        })
    }

    async fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<SessionPage, StoreError> {
        let inner = self.lock();
        let Some(all) = inner.sessions.get(user) else {
            return Ok(SessionPage::default());
        };
        let newest_first = all
            .values()
            .rev()
            .filter(|s| after.is_none_or(|a| s.session_id < a));
        let sessions: Vec<Session> = newest_first.take(limit as usize).cloned().collect();
        let more = sessions.len() == limit as usize;
        Ok(SessionPage {
            last_evaluated: if more {
                sessions.last().map(|s| s.session_id)
            } else {
                None
            },
            sessions,
        })
    }

    async fn session_states(&self, user: &UserId) -> Result<Vec<SessionState>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .sessions
            .get(user)
            .map(|m| {
                m.values()
                    .map(|s| SessionState {
                        session_id: s.session_id,
                        signed_in_at: s.signed_in_at,
                        expires_at: s.expires_at,
                        active: s.status == SessionStatus::Active,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn count_newly_covered(
        &self,
        user: &UserId,
        new: Watermark,
        previous: Option<Watermark>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let inner = self.lock();
        let Some(sessions) = inner.sessions.get(user) else {
            return Ok(0);
        };
        Ok(sessions
            .values()
            .filter(|s| s.is_active_at(now_ms, previous.as_ref()) && new.covers(s))
            .count() as u64)
    }

    async fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner
            .sessions
            .get_mut(user)
            .and_then(|m| m.get_mut(&session))
        else {
            return Ok(RevokeOutcome::NotFound);
        };
        if stored.status == SessionStatus::Revoked {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        if stored.is_expired_at(revocation.at_ms) {
            return Ok(RevokeOutcome::NotFound);
        }
        let old = stored.clone();
        stored.status = SessionStatus::Revoked;
        stored.revoked_at = Some(revocation.at_ms);
        stored.revoked_by = Some(revocation.by.clone());
        stored.revoke_reason = Some(revocation.reason);
        stored.expires_at = revocation.at_ms.div_euclid(1000) + tombstone_secs;
        inner.writes += 1;
        Ok(RevokeOutcome::Revoked(Box::new(old)))
    }

    async fn raise_watermark(
        &self,
        user: &UserId,
        watermark: Watermark,
        _revocation: &Revocation,
    ) -> Result<Watermark, StoreError> {
        let mut inner = self.lock();
        let mut wanted = watermark;
        if let Some(current) = inner.watermarks.get(user) {
            wanted.before_ms = wanted.before_ms.max(current.before_ms + 1);
        }
        inner.watermarks.insert(user.clone(), wanted);
        inner.writes += 1;
        Ok(wanted)
    }
}
