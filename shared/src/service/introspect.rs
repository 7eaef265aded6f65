//! Introspection (RFC 7662) for products, through the token caches, with its bookkeeping: the
//! session's last activity (at most once per interval) and the asking app.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate;
use crate::cache::TokenCache;
use crate::config::Policy;
use crate::domain::{AppId, SessionId, UserId};
use crate::error::ServiceError;
use crate::store::SessionsStore;
use crate::token::SessionToken;

/// How long introspection's bookkeeping (each write) may hold the answer back.
const BOOKKEEPING_BUDGET: Duration = Duration::from_millis(300);

async fn within_budget<T>(
    write: impl std::future::Future<Output = Result<T, crate::StoreError>>,
) -> Result<T, crate::StoreError> {
    tokio::time::timeout(BOOKKEEPING_BUDGET, write)
        .await
        .unwrap_or_else(|_| Err(crate::StoreError::OutOfTime("the bookkeeping budget")))
}

/// Remembers which sessions this instance marked active recently, so a hot session writes
/// `LastActiveAt` at most once per interval (`LAST_ACTIVE_INTERVAL_SECONDS`, 300).
pub struct ActivityTracker {
    interval_ms: i64,
    recent: moka::sync::Cache<SessionId, ()>,
}

impl ActivityTracker {
    /// Writes at most once per `policy.last_active_interval_secs`.
    pub fn for_policy(policy: &Policy) -> Self {
        Self::new(Duration::from_secs(policy.last_active_interval_secs.unsigned_abs()))
    }

    pub fn new(interval: Duration) -> Self {
        Self {
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            recent: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(interval).build(),
        }
    }

    /// Whether to write now; marks the session as written for one interval.
    fn claim(&self, session: SessionId) -> bool {
        if self.recent.contains_key(&session) {
            return false;
        }
        self.recent.insert(session, ());
        true
    }

    /// Forgets a claim whose write failed, so the next call tries again.
    fn release(&self, session: SessionId) {
        self.recent.invalidate(&session);
    }
}

/// The RFC 7662 request: `token`, and optionally the first-party `app` asking.
#[derive(Debug, Deserialize)]
pub struct IntrospectionRequest {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub app: Option<String>,
}

/// The RFC 7662 answer. Inactive tokens get `{"active": false}` and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<SessionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<AppId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl Introspection {
    fn inactive() -> Self {
        Self { active: false, sub: None, sid: None, exp: None, iat: None, apps: None, token_type: None }
    }
}

/// Introspects a token through the caches; records the asking app and (at most once per
/// interval) the session's last activity.
#[tracing::instrument(skip_all)]
pub async fn introspect<S: SessionsStore>(
    store: &S,
    policy: &Policy,
    cache: &TokenCache,
    activity: &ActivityTracker,
    request: IntrospectionRequest,
    now_ms: i64,
) -> Result<Introspection, ServiceError> {
    let raw =
        request.token.filter(|t| !t.is_empty()).ok_or_else(|| ServiceError::BadRequest("token is required".into()))?;
    // Only a configured first-party app is recorded on a session (and at most `MAX_APPS` of them).
    let app = request
        .app
        .as_deref()
        .map(|raw| AppId::parse(raw).and_then(|app| policy.apps.check(&app).map(|()| app)))
        .transpose()
        .map_err(|e| ServiceError::BadRequest(e.0))?;
    let Ok(token) = SessionToken::parse(&raw) else { return Ok(Introspection::inactive()) };
    let mut entry = match validate(store, cache, &token, now_ms).await {
        Ok(entry) => Arc::unwrap_or_clone(entry),
        Err(ServiceError::InvalidToken) => return Ok(Introspection::inactive()),
        Err(other) => return Err(other),
    };
    // Bookkeeping is best effort: it never changes the answer, and it may hold the answer back
    // `BOOKKEEPING_BUDGET` at most (a DynamoDB that is slow or stalled would otherwise hold every
    // cached answer too). A write that fails or runs out of time is retried on a later call (the
    // claim is released, and a missing app is still missing).
    if activity.claim(entry.session_id) {
        let stale_before = now_ms - activity.interval_ms;
        let touch = store.touch_session(&entry.user_id, entry.session_id, now_ms, stale_before);
        if let Err(e) = within_budget(touch).await {
            activity.release(entry.session_id);
            tracing::warn!(error = %e, session_id = %entry.session_id, "last activity not recorded; retried later");
        }
    }
    if let Some(app) = app.filter(|a| !entry.apps.contains(a) && entry.apps.len() < super::MAX_APPS) {
        match within_budget(store.add_app(&entry.user_id, entry.session_id, &app, now_ms)).await {
            // Refused (the bound, or the session just ended): the answer stays as read.
            Ok(false) => {}
            Ok(true) => {
                entry.apps.push(app);
                // Both levels learn the app (the entry keeps its `cached_until_ms`), so the same
                // write is not repeated on every call for the rest of the window.
                cache.fill(token.hash().as_str(), &entry, now_ms).await;
            }
            Err(e) => tracing::warn!(error = %e, session_id = %entry.session_id, "app not recorded; retried later"),
        }
    }
    Ok(Introspection {
        active: true,
        sub: Some(entry.user_id),
        sid: Some(entry.session_id),
        exp: Some(entry.expires_at),
        iat: Some(entry.signed_in_at / 1000),
        apps: Some(entry.apps),
        token_type: Some("bearer"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;
    use crate::domain::ClientKind;
    use crate::store::MemoryStore;

    async fn cache(capacity: u64, window: Duration) -> TokenCache {
        TokenCache::new(&CacheConfig { window, l1_capacity: capacity, ..CacheConfig::default() }).await.unwrap()
    }

    fn introspection(token: &str, app: Option<&str>) -> IntrospectionRequest {
        IntrospectionRequest { token: Some(token.into()), token_type_hint: None, app: app.map(Into::into) }
    }

    #[tokio::test]
    async fn failed_bookkeeping_never_fails_a_valid_token_and_is_retried() {
        let store = Arc::new(MemoryStore::new());
        let signed = crate::testing::sign_in(&*store, "alice", ClientKind::Browser).await;
        let chaos = crate::testing::ChaosStore::new(Arc::clone(&store), 7);
        chaos.fail("touch_session");
        chaos.fail("add_app");
        let c = cache(10, Duration::from_secs(60)).await;
        let activity = ActivityTracker::new(Duration::from_secs(300));
        // Past the last-activity interval, so a touch is due.
        let now = crate::service::now_ms() + 400_000;
        let answer =
            introspect(&chaos, &Policy::default(), &c, &activity, introspection(&signed.token, Some("codex")), now)
                .await;
        let answer = answer.expect("a valid token stays valid when bookkeeping fails");
        assert!(answer.active);
        let user = UserId::parse("alice").unwrap();
        let stored = store.get(&user, signed.session_id).unwrap();
        assert_eq!(stored.apps, vec![AppId::parse("chatgpt").unwrap()], "the failed write wrote nothing");
        assert!(stored.last_active_at < now);
        // DynamoDB recovers: the next call writes both.
        chaos.heal("touch_session");
        chaos.heal("add_app");
        let answer =
            introspect(&chaos, &Policy::default(), &c, &activity, introspection(&signed.token, Some("codex")), now)
                .await
                .unwrap();
        assert!(answer.apps.unwrap().contains(&AppId::parse("codex").unwrap()));
        let stored = store.get(&user, signed.session_id).unwrap();
        assert!(stored.apps.contains(&AppId::parse("codex").unwrap()));
        assert_eq!(stored.last_active_at, now, "the failed touch was retried");
    }

    #[tokio::test]
    async fn an_added_app_is_cached_so_the_write_is_not_repeated() {
        let store = MemoryStore::new();
        let signed = crate::testing::sign_in(&store, "alice", ClientKind::Browser).await;
        let c = cache(10, Duration::from_secs(60)).await;
        let activity = ActivityTracker::new(Duration::from_secs(300));
        let now = crate::service::now_ms();
        introspect(&store, &Policy::default(), &c, &activity, introspection(&signed.token, Some("codex")), now)
            .await
            .unwrap();
        let hash = SessionToken::parse(&signed.token).unwrap().hash();
        let entry = c.l1_valid(hash.as_str()).expect("the entry stays cached after the app is added");
        assert!(entry.apps.contains(&AppId::parse("codex").unwrap()), "and knows the app");
        let writes = store.writes();
        for _ in 0..3 {
            let answer =
                introspect(&store, &Policy::default(), &c, &activity, introspection(&signed.token, Some("codex")), now)
                    .await;
            assert!(answer.unwrap().apps.unwrap().contains(&AppId::parse("codex").unwrap()));
        }
        assert_eq!(store.writes(), writes, "no second write");
    }

    /// The 16-app bound holds on introspection's path too, and an app the store refused is not
    /// reported (nor cached) as recorded.
    #[tokio::test]
    async fn an_app_past_the_bound_is_neither_recorded_nor_reported() {
        let names: Vec<String> = (0..=crate::service::MAX_APPS).map(|i| format!("app{i:02}")).collect();
        let policy =
            Policy { apps: crate::config::FirstPartyApps::parse(&names.join(",")).unwrap(), ..Policy::default() };
        let store = MemoryStore::new();
        let input = crate::service::NewSession {
            user_id: UserId::parse("alice").unwrap(),
            apps: names[..crate::service::MAX_APPS].iter().map(|a| AppId::parse(a).unwrap()).collect(),
            client: ClientKind::Browser,
            user_agent: "Mozilla/5.0".into(),
            ip: "198.51.100.1".into(),
            location: None,
            trusted: None,
            ttl_seconds: None,
        };
        let now = crate::service::now_ms();
        let created = crate::service::create_session(&store, &policy, input, now).await.unwrap();
        let (c, activity) = (cache(10, Duration::from_secs(60)).await, ActivityTracker::new(Duration::from_secs(300)));
        let last = names[crate::service::MAX_APPS].as_str();
        let answer = introspect(&store, &policy, &c, &activity, introspection(&created.token, Some(last)), now).await;
        let apps = answer.unwrap().apps.unwrap();
        assert_eq!(apps.len(), crate::service::MAX_APPS, "{apps:?}");
        assert!(!apps.contains(&AppId::parse(last).unwrap()));
        let stored = store.get(&UserId::parse("alice").unwrap(), created.session_id).unwrap();
        assert_eq!(stored.apps.len(), crate::service::MAX_APPS);
    }
}
