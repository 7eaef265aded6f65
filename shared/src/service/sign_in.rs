//! Sign-in: create a session, then hold the per-user session cap.

use serde::Deserialize;

use super::auth::audit_event;
use super::views::CreatedSession;
use super::{bad, internal, rfc3339_ms, MAX_APPS, MAX_USER_AGENT_LEN};
use crate::config::Policy;
use crate::device::Device;
use crate::domain::{AppId, ClientKind, Location, SessionId, UserId};
use crate::error::ServiceError;
use crate::model::{Actor, AuditScope, Revocation, RevokeReason, Session, SessionStatus};
use crate::store::SessionsStore;
use crate::store::{Audited, ReadSet, StoreError};
use crate::token::SessionToken;

/// The sign-in service's request. Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub user_id: UserId,
    pub apps: Vec<AppId>,
    pub client: ClientKind,
    pub user_agent: String,
    pub ip: String,
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub location: Option<Location>,
    #[serde(default, deserialize_with = "crate::domain::body::not_null")]
    pub trusted: Option<bool>,
    #[serde(default, deserialize_with = "crate::domain::body::integer")]
    pub ttl_seconds: Option<i64>,
}

#[tracing::instrument(skip_all, fields(user_id = %input.user_id, client = ?input.client))]
pub async fn create_session<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    input: NewSession,
    now_ms: i64,
) -> Result<CreatedSession, ServiceError> {
    let mut apps = input.apps;
    if apps.is_empty() {
        return Err(bad("apps must list at least one first-party app"));
    }
    apps.sort();
    apps.dedup();
    if apps.len() > MAX_APPS {
        return Err(bad(format!("apps may list at most {MAX_APPS} apps")));
    }
    if let Some(Err(e)) = apps.iter().map(|app| policy.apps.check(app)).find(Result::is_err) {
        return Err(bad(e.0));
    }
    if input.user_agent.chars().count() > MAX_USER_AGENT_LEN || !crate::domain::is_plain_text(&input.user_agent) {
        return Err(bad(format!("user_agent must be at most {MAX_USER_AGENT_LEN} printable characters")));
    }
    let ip: std::net::IpAddr = input.ip.trim().parse().map_err(|_| bad("ip must be an IPv4 or IPv6 address"))?;
    let location = input.location.map(Location::validated).transpose().map_err(|e| bad(e.0))?.flatten();
    let ttl = input.ttl_seconds.unwrap_or(policy.session_ttl_secs);
    if !(60..=policy.max_session_ttl_secs).contains(&ttl) {
        return Err(bad(format!("ttl_seconds must be between 60 and {}", policy.max_session_ttl_secs)));
    }
    // The client kind's absolute lifetime caps whatever was asked for (ASVS 7.3.2); its idle
    // timeout, plus the interval at which use is recorded, bounds time unused (ASVS 7.3.1).
    let lifetime = policy.lifetimes.of(input.client);
    let ttl = ttl.min(lifetime.absolute_secs);

    let session_id = SessionId::generate(now_ms).map_err(internal)?;
    let token = SessionToken::generate(&input.user_id, session_id).map_err(internal)?;
    let session = Session {
        user_id: input.user_id,
        session_id,
        apps,
        client: input.client,
        device: Device::from_user_agent(&input.user_agent, input.client),
        user_agent: input.user_agent,
        ip: ip.to_string(),
        location,
        trusted: input.trusted.unwrap_or(false),
        signed_in_at: now_ms,
        last_active_at: now_ms,
        status: SessionStatus::Active,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
        token_hash: token.hash().as_str().to_owned(),
        expires_at: now_ms / 1000 + ttl,
        idle_timeout_secs: Some(lifetime.idle_secs.saturating_add(policy.last_active_interval_secs)),
        caches_invalidated_at: None,
        caches_invalidated_by: None,
        receipts: Default::default(),
    };
    match store.create_session(&session).await {
        Ok(()) => {}
        // A retried PutItem whose first attempt had committed (it timed out on the way back):
        // the session there is this one if it holds this token's hash.
        Err(StoreError::AlreadyExists) if written_already(store, &session).await? => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(session_id = %session_id, "session created");
    // After the write, so a sign-in that fails evicts nothing. A failed eviction leaves the user
    // above the cap until the next sign-in evicts; the sign-in itself has succeeded.
    if let Err(e) = enforce_session_limit(store, policy, &session.user_id, session_id, now_ms).await {
        tracing::warn!(error = %e, "session limit not enforced; the next sign-in will");
    }
    Ok(CreatedSession {
        session_id,
        token: token.expose().to_owned(),
        expires_at: rfc3339_ms(session.expires_at * 1000),
    })
}

async fn written_already<S: SessionsStore>(store: &S, session: &Session) -> Result<bool, ServiceError> {
    let key = (session.user_id.clone(), session.session_id);
    let read = store.read(&ReadSet { sessions: vec![key.clone()], ..Default::default() }).await?;
    Ok(read.sessions.get(&key).is_some_and(|stored| stored.token_hash == session.token_hash))
}

/// Above `max_sessions` active sessions, revokes the least recently active ones (reason
/// `session_limit`, by the system) until the cap holds again.
///
/// It runs after the new session `own` is written (so a sign-in that fails evicts nothing). Its
/// own session and any signed in after it (concurrent sign-ins, which hold the cap themselves)
/// are kept; of the others, the most recently active fill the places left and the rest are
/// evicted. A sign-in never evicts a newer session, so two sign-ins at once never evict each other
/// and the newest always survives. The bound: a sign-in does not see sessions written after it
/// read, so after a burst of N sign-ins at once up to N - 1 sessions above the cap may remain; the
/// next sign-in, on its own, restores the cap exactly. Evicting twice is harmless: the second
/// revoke finds the session revoked and writes nothing.
async fn enforce_session_limit<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    user: &UserId,
    own: SessionId,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let profile_read = ReadSet { profiles: vec![user.clone()], ..Default::default() };
    let (read, states) = tokio::try_join!(store.read(&profile_read), store.session_states(user))?;
    let watermark = read.profiles.get(user).and_then(|p| p.watermark);
    let active: Vec<_> = states
        .into_iter()
        .filter(|st| {
            st.active
                && !crate::model::expired(st.expires_at, now_ms)
                && !watermark.is_some_and(|w| w.covers_at(st.signed_in_at, st.session_id))
        })
        .collect();
    let (kept, mut older): (Vec<_>, Vec<_>) = active.into_iter().partition(|st| st.session_id >= own);
    older.sort_by_key(|st| std::cmp::Reverse((st.last_active_at, st.session_id)));
    let places = (policy.max_sessions as usize).saturating_sub(kept.len());
    for st in older.iter().skip(places) {
        let revocation = Revocation {
            at_ms: now_ms,
            actor: Actor::System,
            actor_id: "system".into(),
            reason: RevokeReason::SessionLimit,
            source_ip: None,
        };
        let mut event = audit_event(policy, user, &revocation, AuditScope::Sessions)?;
        event.session_ids = vec![st.session_id];
        event.device_labels = vec![st.device_label.clone()];
        event.count = 1;
        let audited = Audited { event: &event, signed_in_at: st.signed_in_at };
        let outcome =
            store.revoke_session(user, st.session_id, &revocation, policy.tombstone_secs, Some(audited)).await?;
        tracing::info!(evicted = %st.session_id, ?outcome, "session limit reached");
    }
    Ok(())
}
