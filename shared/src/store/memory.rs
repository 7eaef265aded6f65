//! An in-memory `SessionStore` for handler tests: the same semantics as `DynamoStore`
//! (conditions, ordering, pagination, all-or-nothing audit writes), without AWS.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    AuditPage, AuditStore, Audited, DirectoryStore, Once, ProfileUpdate, ReadResult, ReadSet, ReceiptsStore,
    RevokeOutcome, SessionPage, SessionState, SessionsStore, StoreError,
};
use crate::domain::{Role, SessionId, UserId, WorkspaceId};
use crate::identity::{IdentityProvider, UserIdentifier};
use crate::model::{AuditEvent, Profile, Revocation, Session, SessionStatus, Watermark};

#[derive(Default, Debug)]
struct Inner {
    sessions: HashMap<UserId, BTreeMap<SessionId, Session>>,
    profiles: HashMap<UserId, Profile>,
    memberships: HashMap<(WorkspaceId, UserId), Role>,
    audit: HashMap<UserId, BTreeMap<ulid::Ulid, AuditEvent>>,
    providers: HashMap<WorkspaceId, IdentityProvider>,
    /// (issuer, audience) → the workspace holding it.
    pairs: HashMap<(String, String), WorkspaceId>,
    /// (workspace, identifier) → the member it names.
    identifiers: HashMap<(WorkspaceId, UserIdentifier), UserId>,
    /// (workspace, issuer, jti) of the signals acted on.
    signals: std::collections::HashSet<(WorkspaceId, String, String)>,
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
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a session as it is (tests use this to stage expired or revoked rows).
    pub fn insert(&self, session: Session) {
        let mut inner = self.lock();
        inner.sessions.entry(session.user_id.clone()).or_default().insert(session.session_id, session);
    }

    pub fn get(&self, user: &UserId, session: SessionId) -> Option<Session> {
        self.lock().sessions.get(user).and_then(|m| m.get(&session)).cloned()
    }

    pub fn profile(&self, user: &UserId) -> Option<Profile> {
        self.lock().profiles.get(user).cloned()
    }

    pub fn watermark(&self, user: &UserId) -> Option<Watermark> {
        self.profile(user).and_then(|p| p.watermark)
    }

    /// The user's audit events, oldest first.
    pub fn audit_events(&self, user: &UserId) -> Vec<AuditEvent> {
        self.lock().audit.get(user).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// How many writes succeeded, so tests can assert that a refused request wrote nothing.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }
}

fn state(s: &Session) -> SessionState {
    SessionState {
        session_id: s.session_id,
        signed_in_at: s.signed_in_at,
        last_active_at: s.last_active_at,
        expires_at: s.expires_at,
        active: s.status == SessionStatus::Active,
        device_label: s.device.label.clone(),
    }
}

impl SessionsStore for MemoryStore {
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

    async fn read(&self, set: &ReadSet) -> Result<ReadResult, StoreError> {
        let inner = self.lock();
        let mut out = ReadResult::default();
        for (user, id) in &set.sessions {
            if let Some(s) = inner.sessions.get(user).and_then(|m| m.get(id)) {
                out.sessions.insert((user.clone(), *id), s.clone());
            }
        }
        for user in &set.profiles {
            if let Some(p) = inner.profiles.get(user) {
                out.profiles.insert(user.clone(), p.clone());
            }
        }
        for key in &set.memberships {
            if let Some(role) = inner.memberships.get(key) {
                out.memberships.insert(key.clone(), *role);
            }
        }
        Ok(out)
    }

    async fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<SessionPage, StoreError> {
        let inner = self.lock();
        let Some(all) = inner.sessions.get(user) else { return Ok(SessionPage::default()) };
        let newest_first = all.values().rev().filter(|s| after.is_none_or(|a| s.session_id < a));
        let sessions: Vec<Session> = newest_first.take(limit as usize).cloned().collect();
        let more = sessions.len() == limit as usize;
        Ok(SessionPage { last_evaluated: if more { sessions.last().map(|s| s.session_id) } else { None }, sessions })
    }

    async fn session_states(&self, user: &UserId) -> Result<Vec<SessionState>, StoreError> {
        let inner = self.lock();
        Ok(inner.sessions.get(user).map(|m| m.values().map(state).collect()).unwrap_or_default())
    }

    async fn count_newly_covered(
        &self,
        user: &UserId,
        new: Watermark,
        previous: Option<Watermark>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let inner = self.lock();
        let Some(sessions) = inner.sessions.get(user) else { return Ok(0) };
        Ok(sessions.values().filter(|s| s.is_active_at(now_ms, previous.as_ref()) && new.covers(s)).count() as u64)
    }

    async fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &Revocation,
        tombstone_secs: i64,
        audit: Option<Audited<'_>>,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut inner = self.lock();
        let watermark = inner.profiles.get(user).and_then(|p| p.watermark);
        let Some(stored) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) else {
            return Ok(RevokeOutcome::NotFound);
        };
        if stored.status == SessionStatus::Revoked {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        if stored.is_expired_at(revocation.at_ms) {
            return Ok(RevokeOutcome::NotFound);
        }
        if let (Some(a), Some(w)) = (&audit, watermark) {
            if w.covers_at(a.signed_in_at, session) {
                return Ok(RevokeOutcome::AlreadyRevoked);
            }
        }
        stored.status = SessionStatus::Revoked;
        stored.revoked_at = Some(revocation.at_ms);
        stored.revoked_by = Some(revocation.by());
        stored.revoke_reason = Some(revocation.reason);
        stored.expires_at = revocation.at_ms.div_euclid(1000) + tombstone_secs;
        if let Some(Audited { event, .. }) = audit {
            inner.audit.entry(event.target_user.clone()).or_default().insert(event.event_id, event.clone());
        }
        inner.writes += 1;
        Ok(RevokeOutcome::Revoked)
    }

    async fn swap_watermark(
        &self,
        user: &UserId,
        expected: Option<Watermark>,
        new: Watermark,
        _revocation: &Revocation,
        audit: &AuditEvent,
        once: Option<&Once>,
    ) -> Result<Result<(), Option<Watermark>>, StoreError> {
        let mut inner = self.lock();
        let signal = once.map(|o| (o.workspace.clone(), o.issuer.clone(), o.jti.clone()));
        if signal.as_ref().is_some_and(|s| inner.signals.contains(s)) {
            return Err(StoreError::Replayed);
        }
        let profile = inner.profiles.entry(user.clone()).or_default();
        if profile.watermark != expected {
            return Ok(Err(profile.watermark));
        }
        profile.watermark = Some(new);
        inner.signals.extend(signal);
        inner.audit.entry(audit.target_user.clone()).or_default().insert(audit.event_id, audit.clone());
        inner.writes += 1;
        Ok(Ok(()))
    }

    async fn set_trusted(
        &self,
        user: &UserId,
        session: SessionId,
        trusted: bool,
        now_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) else { return Ok(None) };
        if stored.status != SessionStatus::Active || stored.is_expired_at(now_ms) {
            return Ok(None);
        }
        stored.trusted = trusted;
        let updated = stored.clone();
        inner.writes += 1;
        Ok(Some(updated))
    }

    async fn touch_session(
        &self,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) {
            if s.status == SessionStatus::Active && !s.is_expired_at(now_ms) && s.last_active_at < stale_before_ms {
                s.last_active_at = now_ms;
                inner.writes += 1;
            }
        }
        Ok(())
    }

    async fn add_app(
        &self,
        user: &UserId,
        session: SessionId,
        app: &crate::domain::AppId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) {
            if s.status == SessionStatus::Active
                && !s.is_expired_at(now_ms)
                && !s.apps.contains(app)
                && s.apps.len() < crate::model::MAX_APPS
            {
                s.apps.push(app.clone());
                inner.writes += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl ReceiptsStore for MemoryStore {
    async fn tombstones(&self, user: &UserId) -> Result<Vec<super::Tombstone>, StoreError> {
        let inner = self.lock();
        let revoked = |s: &&Session| s.status == SessionStatus::Revoked;
        Ok(inner
            .sessions
            .get(user)
            .map(|m| {
                m.values()
                    .filter(revoked)
                    .map(|s| super::Tombstone {
                        session_id: s.session_id,
                        revoked_at: s.revoked_at.unwrap_or(0),
                        caches_invalidated_at: s.caches_invalidated_at,
                        receipts: s.receipts.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn receipts(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> Result<std::collections::BTreeMap<String, crate::model::ProductReceipt>, StoreError> {
        let inner = self.lock();
        Ok(inner.sessions.get(user).and_then(|m| m.get(&session)).map(|s| s.receipts.clone()).unwrap_or_default())
    }

    async fn advance_receipt(
        &self,
        user: &UserId,
        session: SessionId,
        aud: &str,
        from: &crate::model::ReceiptStep,
        receipt: &crate::model::ProductReceipt,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) else { return Ok(false) };
        let at_step = match s.receipts.get(aud) {
            Some(r) => from.matches(r),
            None => *from == crate::model::ReceiptStep::first(),
        };
        if s.status != SessionStatus::Revoked || s.receipts.is_empty() || !at_step {
            return Ok(false);
        }
        s.receipts.insert(aud.to_owned(), receipt.clone());
        inner.writes += 1;
        Ok(true)
    }

    async fn record_caches_invalidated(
        &self,
        user: &UserId,
        session: SessionId,
        at_ms: i64,
        by: crate::model::CachesToldBy,
        products: &[String],
        keep_until_secs: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(user).and_then(|m| m.get_mut(&session)) {
            if s.status == SessionStatus::Revoked {
                if s.caches_invalidated_at.is_none() {
                    s.caches_invalidated_at = Some(at_ms);
                    s.caches_invalidated_by = Some(by);
                }
                s.expires_at = s.expires_at.max(keep_until_secs);
                if s.receipts.is_empty() {
                    s.receipts =
                        products.iter().map(|p| (p.clone(), crate::model::ProductReceipt::not_tried())).collect();
                }
            }
        }
        Ok(())
    }

    async fn create_tombstone(&self, tombstone: &Session) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let sessions = inner.sessions.entry(tombstone.user_id.clone()).or_default();
        if sessions.contains_key(&tombstone.session_id) {
            return Ok(false);
        }
        sessions.insert(tombstone.session_id, tombstone.clone());
        inner.writes += 1;
        Ok(true)
    }
}

impl DirectoryStore for MemoryStore {
    async fn query_members(
        &self,
        workspace: &WorkspaceId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<super::MemberPage, StoreError> {
        let inner = self.lock();
        let mut all: Vec<(UserId, Role)> =
            inner.memberships.iter().filter(|((w, _), _)| w == workspace).map(|((_, u), r)| (u.clone(), *r)).collect();
        all.sort_by_key(|a| crate::keys::member_sk(&a.0));
        // As DynamoDB's ExclusiveStartKey: after the cursor's key, whether or not it still exists.
        let start = after.map_or(0, |a| {
            let key = crate::keys::member_sk(&a);
            all.iter().take_while(|(u, _)| crate::keys::member_sk(u) <= key).count()
        });
        let members: Vec<(UserId, Role)> = all.into_iter().skip(start).take(limit as usize + 1).collect();
        let more = members.len() > limit as usize;
        let members: Vec<(UserId, Role)> = members.into_iter().take(limit as usize).collect();
        let last_evaluated = if more { members.last().map(|(u, _)| u.clone()) } else { None };
        Ok(super::MemberPage { members, last_evaluated })
    }

    async fn put_profile(&self, user: &UserId, update: &ProfileUpdate) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let claims: Vec<(WorkspaceId, UserIdentifier)> = match &update.workspace_id {
            Some(ws) => update.identifiers.iter().map(|id| (ws.clone(), id.clone())).collect(),
            None => Vec::new(),
        };
        if claims.iter().any(|c| inner.identifiers.get(c).is_some_and(|owner| owner != user)) {
            return Err(StoreError::Taken("This email address or subject is another member's of this workspace."));
        }
        if let Some(old) = inner.profiles.get(user).cloned() {
            for gone in old.workspace_id.iter().flat_map(|ws| old.identifiers().into_iter().map(|id| (ws.clone(), id)))
            {
                inner.identifiers.remove(&gone);
            }
        }
        for claim in claims {
            inner.identifiers.insert(claim, user.clone());
        }
        let profile = inner.profiles.entry(user.clone()).or_default();
        profile.email = None;
        (profile.idp_issuer, profile.idp_subject) = (None, None);
        for id in &update.identifiers {
            match id {
                UserIdentifier::Email(e) => profile.email = Some(e.clone()),
                UserIdentifier::IssSub { iss, sub } => {
                    (profile.idp_issuer, profile.idp_subject) = (Some(iss.clone()), Some(sub.clone()))
                }
            }
        }
        let old_workspace = profile.workspace_id.clone();
        profile.workspace_id = update.workspace_id.clone();
        profile.role = update.workspace_id.as_ref().map(|_| update.role);
        profile.sso_linked = Some(update.sso_linked);
        if let Some(old) = old_workspace {
            inner.memberships.remove(&(old, user.clone()));
        }
        if let Some(ws) = &update.workspace_id {
            inner.memberships.insert((ws.clone(), user.clone()), update.role);
        }
        inner.writes += 1;
        Ok(())
    }

    async fn put_identity_provider(&self, provider: &IdentityProvider) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let pair = (provider.issuer.clone(), provider.audience.clone());
        if inner.pairs.get(&pair).is_some_and(|ws| *ws != provider.workspace_id) {
            return Err(StoreError::Taken("This issuer and audience are another workspace's identity provider's."));
        }
        if let Some(old) = inner.providers.insert(provider.workspace_id.clone(), provider.clone()) {
            inner.pairs.remove(&(old.issuer, old.audience));
        }
        inner.pairs.insert(pair, provider.workspace_id.clone());
        inner.writes += 1;
        Ok(())
    }

    async fn identity_provider(&self, workspace: &WorkspaceId) -> Result<Option<IdentityProvider>, StoreError> {
        Ok(self.lock().providers.get(workspace).cloned())
    }

    async fn user_by_identifier(
        &self,
        workspace: &WorkspaceId,
        id: &UserIdentifier,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock().identifiers.get(&(workspace.clone(), id.clone())).cloned())
    }
}

impl AuditStore for MemoryStore {
    async fn put_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let events = inner.audit.entry(event.target_user.clone()).or_default();
        if let std::collections::btree_map::Entry::Vacant(slot) = events.entry(event.event_id) {
            slot.insert(event.clone());
            inner.writes += 1;
        }
        Ok(())
    }

    async fn mark_swept(&self, user: &UserId, event_id: ulid::Ulid, at_ms: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(event) = inner.audit.get_mut(user).and_then(|events| events.get_mut(&event_id)) {
            event.swept_at.get_or_insert(at_ms);
            inner.writes += 1;
        }
        Ok(())
    }

    async fn query_audit(&self, user: &UserId, after: Option<ulid::Ulid>, limit: u32) -> Result<AuditPage, StoreError> {
        let inner = self.lock();
        let Some(all) = inner.audit.get(user) else { return Ok(AuditPage::default()) };
        let events: Vec<AuditEvent> =
            all.values().rev().filter(|e| after.is_none_or(|a| e.event_id < a)).take(limit as usize).cloned().collect();
        let more = events.len() == limit as usize;
        Ok(AuditPage { last_evaluated: if more { events.last().map(|e| e.event_id) } else { None }, events })
    }
}
