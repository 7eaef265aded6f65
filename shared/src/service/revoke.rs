//! Revocation: one session, all of them (or all others) through the watermark, the fan-out's sweep
//! of a watermark, and the record of a TTL expiry.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::auth::{audit_event, authorize, Caller, Subject};
use super::{bad, MAX_NOTE_LEN, SWEEP_CONCURRENCY, WATERMARK_RETRIES};
use crate::config::Policy;
use crate::domain::{SessionId, UserId};
use crate::error::ServiceError;
use crate::model::{
    Actor, AuditEvent, AuditScope, CacheNotice, Revocation, RevokeReason, Session, SessionStatus, Watermark,
};
use crate::store::{AuditStore, ReceiptsStore, SessionsStore};
use crate::store::{Audited, Once, ReadSet, RevokeOutcome, StoreError};

/// Revokes one session of the subject (never the caller's current one), with its audit event in
/// the same transaction. Returns what the token caches must hear once it is committed; a repeat
/// (revoked already, or covered by a revoke-all) writes nothing and still returns it, so that a
/// client retrying a revoke whose first answer was lost has the caches told again.
#[tracing::instrument(skip_all, fields(user_id = %caller.token.user_id(), subject = ?subject))]
pub async fn revoke_session<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    caller: &Caller,
    subject: &Subject,
    target: SessionId,
    now_ms: i64,
) -> Result<Option<CacheNotice>, ServiceError> {
    let auth = authorize(store, &caller.token, subject, Some(target), now_ms).await?;
    if !auth.admin && target == auth.principal.session.session_id {
        return Err(ServiceError::CurrentSession);
    }
    let Some(session) = auth.session(target) else { return Err(ServiceError::NotFound) };
    let token_notice = || CacheNotice::Token { user: auth.target.clone(), token_hash: session.token_hash.clone() };
    if session.status == SessionStatus::Revoked {
        return Ok(Some(token_notice())); // a repeat: nothing to write
    }
    if let Some(watermark) = auth.watermark().filter(|w| w.covers(session)) {
        return Ok(Some(CacheNotice::User { user: auth.target.clone(), watermark }));
    }
    if session.is_expired_at(now_ms) {
        return Err(ServiceError::NotFound);
    }
    let reason = if auth.admin { RevokeReason::AdminRevoke } else { RevokeReason::UserLogout };
    let revocation = auth.revocation(caller, reason, now_ms);
    let mut event = audit_event(policy, &auth.target, &revocation, AuditScope::Sessions)?;
    event.actor_workspace = auth.admin_workspace();
    event.session_ids = vec![target];
    event.device_labels = vec![session.device.label.clone()];
    event.count = 1;
    let audited = Audited { event: &event, signed_in_at: session.signed_in_at };
    match store.revoke_session(&auth.target, target, &revocation, policy.tombstone_secs, Some(audited)).await? {
        RevokeOutcome::Revoked => {
            tracing::info!(target_session = %target, reason = ?reason, "session revoked");
            Ok(Some(token_notice()))
        }
        RevokeOutcome::AlreadyRevoked => Ok(Some(token_notice())),
        RevokeOutcome::NotFound => Err(ServiceError::NotFound),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeScope {
    All,
    Others,
}

impl RevokeScope {
    pub fn parse(raw: Option<&str>) -> Result<Self, ServiceError> {
        match raw {
            None | Some("all") => Ok(Self::All),
            Some("others") => Ok(Self::Others),
            Some(_) => Err(bad("scope must be `all` or `others`")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedCount {
    pub revoked: u64,
    /// What the token caches must hear: the watermark written, or on a repeat the one in force
    /// (`None`: there is none).
    #[serde(skip)]
    pub notice: Option<CacheNotice>,
}

/// An admin's free-text reason, checked: at most 200 characters of plain text (`is_plain_text`).
pub fn parse_note(raw: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(raw) = raw else { return Ok(None) };
    // Checked as sent, then trimmed: what the contract refuses is refused.
    if raw.chars().count() > MAX_NOTE_LEN || !crate::domain::is_plain_text(raw) {
        return Err(bad(format!("reason must be at most {MAX_NOTE_LEN} printable characters")));
    }
    let raw = raw.trim();
    Ok((!raw.is_empty()).then(|| raw.to_owned()))
}

/// Revokes all the subject's sessions (or, self-service, all but the current one): counts what
/// it newly covers, then writes the watermark and one audit event (with the count) in one
/// transaction. The per-session soft revokes follow from the watermark's stream record
/// (`sweep_watermark`), so each session still gets its own MODIFY for the fan-out.
///
/// The watermark only ever grows in what it covers: the one written is the union of the one in
/// force and this request's (`Watermark::union`), swapped in only if the one in force is still
/// the one read, so two revoke-alls at once each keep what the other revoked. When nothing active
/// is newly covered (a repeat), nothing is written and the answer is `{"revoked": 0}`, except for
/// an admin's offboarding, whose watermark also covers sign-ins still in flight. The count is what
/// the watermark newly covered when counted: a session revoked on its own meanwhile may be in both
/// events.
#[tracing::instrument(skip_all, fields(user_id = %caller.token.user_id(), subject = ?subject))]
pub async fn revoke_all<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    caller: &Caller,
    subject: &Subject,
    scope: RevokeScope,
    note: Option<String>,
    now_ms: i64,
) -> Result<RevokedCount, ServiceError> {
    let auth = authorize(store, &caller.token, subject, None, now_ms).await?;
    let (keep, reason, audit_scope) = match (auth.admin, scope) {
        (true, RevokeScope::All) => (None, RevokeReason::AdminOffboard, AuditScope::All),
        (true, RevokeScope::Others) => return Err(bad("scope=others is for your own sessions")),
        (false, RevokeScope::All) => (None, RevokeReason::UserLogoutAll, AuditScope::All),
        (false, RevokeScope::Others) => {
            (Some(auth.principal.session.session_id), RevokeReason::UserLogoutOthers, AuditScope::Others)
        }
    };
    let revocation = auth.revocation(caller, reason, now_ms);
    let wanted = Watermark { before_ms: now_ms, keep };
    let mut event = audit_event(policy, &auth.target, &revocation, audit_scope)?;
    event.actor_workspace = auth.admin_workspace();
    event.note = note;
    let own = Some(&auth.principal.session);
    write_watermark(store, &auth.target, own, auth.watermark(), wanted, auth.admin, &revocation, event, None).await
}

/// Writes `wanted` united with the watermark in force (`current`, as read), with `event` (its count
/// set to what the new watermark newly covers) and `once`, in one transaction; on a race, unites
/// with the winner's and tries again. When nothing active is newly covered, nothing is written,
/// unless `offboarding`: an offboarding's watermark also covers sign-ins still in flight. `own`:
/// the caller's session, whose sign-in time a kept session may need. With `once` on record
/// already, the store's `Replayed` (as `ServiceError::Replayed`) and nothing written.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_watermark<S: SessionsStore>(
    store: &S,
    target: &UserId,
    own: Option<&Session>,
    mut current: Option<Watermark>,
    wanted: Watermark,
    offboarding: bool,
    revocation: &Revocation,
    mut event: AuditEvent,
    once: Option<&Once>,
) -> Result<RevokedCount, ServiceError> {
    let now_ms = revocation.at_ms;
    for _ in 0..WATERMARK_RETRIES {
        let new = match current {
            None => wanted,
            Some(cur) => {
                let signed_in = kept_signed_in_at(store, target, own, cur.later(wanted).keep).await?;
                cur.union(wanted, signed_in)
            }
        };
        let revoked =
            if Some(new) == current { 0 } else { store.count_newly_covered(target, new, current, now_ms).await? };
        // A signal (`once`) is always recorded, so that its replay is known, even when the
        // watermark in force already covers everything (a second signal within the millisecond).
        if revoked == 0 && (!offboarding || (Some(new) == current && once.is_none())) {
            tracing::info!("revoke-all covers nothing new; nothing written");
            // The watermark in force is told again: a retry whose first answer was lost.
            let notice = current.map(|watermark| CacheNotice::User { user: target.clone(), watermark });
            return Ok(RevokedCount { revoked: 0, notice });
        }
        event.count = revoked;
        match store.swap_watermark(target, current, new, revocation, &event, once).await? {
            Ok(()) => {
                tracing::info!(revoked, watermark = new.before_ms, "revoke-all watermark written");
                let notice = CacheNotice::User { user: target.clone(), watermark: new };
                return Ok(RevokedCount { revoked, notice: Some(notice) });
            }
            Err(in_force) => current = in_force,
        }
    }
    Err(StoreError::Conflict.into())
}

/// The sign-in time of a watermark's kept session: the caller's own (`own`) from what was read,
/// any other (only after a race or a skewed clock) read from the store; `None` if it is gone.
async fn kept_signed_in_at<S: SessionsStore>(
    store: &S,
    target: &UserId,
    own: Option<&Session>,
    keep: Option<SessionId>,
) -> Result<Option<i64>, ServiceError> {
    let Some(keep) = keep else { return Ok(None) };
    if let Some(own) = own.filter(|own| own.session_id == keep && own.user_id == *target) {
        return Ok(Some(own.signed_in_at));
    }
    let read = store.read(&ReadSet { sessions: vec![(target.clone(), keep)], ..Default::default() }).await?;
    Ok(read.sessions.get(&(target.clone(), keep)).map(|s| s.signed_in_at))
}

/// Soft-revokes every still-active session a watermark covers, so each gets its tombstone and its
/// own stream record, then marks the revoke-all's audit event (`event`, when the watermark names
/// it) swept: its receipts are complete only from then on. Idempotent: a session revoked already
/// is left as it is. The revoke-all's own audit event covers these; no more are written. Run by
/// the stream consumer on the watermark's record.
#[tracing::instrument(skip_all, fields(user_id = %user, watermark = watermark.before_ms))]
pub async fn sweep_watermark<S: SessionsStore + AuditStore>(
    store: &S,
    policy: &Policy,
    user: &UserId,
    watermark: Watermark,
    revocation: &Revocation,
    event: Option<ulid::Ulid>,
) -> Result<u64, StoreError> {
    let states = store.session_states(user).await?;
    let targets = states
        .into_iter()
        .filter(|st| st.active && watermark.covers_at(st.signed_in_at, st.session_id))
        .map(|st| st.session_id);
    let revoked = stream::iter(targets)
        .map(|id| store.revoke_session(user, id, revocation, policy.tombstone_secs, None))
        .buffer_unordered(SWEEP_CONCURRENCY)
        .try_fold(0u64, |n, outcome| async move { Ok(n + u64::from(outcome == RevokeOutcome::Revoked)) })
        .await?;
    if let Some(event) = event {
        store.mark_swept(user, event, super::now_ms()).await?;
    }
    tracing::info!(revoked, "watermark swept");
    Ok(revoked)
}

/// Records that TTL removed a still-active session: an audit event by the system, reason
/// `expired`, and a tombstone in its place (revoked by the system, reason `expired`), which holds
/// the receipts of the back-channel logout that follows; it lives `tombstone_secs`, and at least
/// until `keep_until_secs` (epoch seconds). The event's id is derived from the session, and the
/// tombstone is written only where nothing is, so a redelivered record writes nothing new.
pub async fn record_expiry<S: SessionsStore + AuditStore + ReceiptsStore>(
    store: &S,
    policy: &Policy,
    session: &Session,
    keep_until_secs: i64,
) -> Result<(), StoreError> {
    let expired_at_ms = session.expires_at.saturating_mul(1000);
    let event = AuditEvent {
        event_id: ulid::Ulid::from_parts(u64::try_from(expired_at_ms).unwrap_or(0), session.session_id.ulid().random()),
        actor: Actor::System,
        actor_id: "system".into(),
        target_user: session.user_id.clone(),
        scope: AuditScope::Sessions,
        session_ids: vec![session.session_id],
        device_labels: vec![session.device.label.clone()],
        count: 1,
        reason: RevokeReason::Expired,
        source_ip: None,
        note: None,
        at: expired_at_ms,
        expires_at: expired_at_ms / 1000 + policy.audit_ttl_secs,
        actor_workspace: None,
        swept_at: None,
    };
    let now_secs = super::now_ms() / 1000;
    let tombstone = Session {
        status: SessionStatus::Revoked,
        revoked_at: Some(expired_at_ms),
        revoked_by: Some("system".into()),
        revoke_reason: Some(RevokeReason::Expired),
        expires_at: (now_secs + policy.tombstone_secs).max(keep_until_secs),
        caches_invalidated_at: None,
        caches_invalidated_by: None,
        receipts: Default::default(),
        ..session.clone()
    };
    store.create_tombstone(&tombstone).await?;
    store.put_audit(&event).await
}

#[cfg(test)]
mod tests {
    use super::parse_note;

    #[test]
    fn a_reason_that_misleads_the_reader_is_refused() {
        assert_eq!(
            parse_note(Some("  Offboarding: left the company ")).unwrap().as_deref(),
            Some("Offboarding: left the company")
        );
        assert_eq!(parse_note(Some("Départ — équipe 東京")).unwrap().as_deref(), Some("Départ — équipe 東京"));
        for bad in
            ["Routine\u{202E}deppots", "left\u{2028}Signed out by: you", "x\u{200B}y", "\u{2066}a\u{2069}", "tab\there"]
        {
            assert!(parse_note(Some(bad)).is_err(), "{bad:?} should be refused");
        }
    }
}
