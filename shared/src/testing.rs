//! Fixtures for handler tests (feature `test-utils`): sign-ins on any store, and `http::Request`s
//! shaped the way API Gateway (payload 2.0) delivers them.

use std::collections::HashMap;

use lambda_http::http::header;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::config::Policy;
use crate::domain::{ClientKind, SessionId, UserId};
use crate::service::{self, NewSession};
use crate::store::{AuditStore, DirectoryStore, ReceiptsStore, SessionStore, SessionsStore};

pub const CHROME_MAC: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A signed-in session: its id and its token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session_id: SessionId,
    pub token: String,
}

/// Signs `user` in through the real service, as the sign-in service would.
pub async fn sign_in<S: SessionStore>(store: &S, user: &str, client: ClientKind) -> SignedIn {
    sign_in_with(store, &Policy::default(), user, client).await
}

/// `sign_in` under a given policy (benchmarks raise the session limit to hold hundreds of sessions).
pub async fn sign_in_with<S: SessionStore>(store: &S, policy: &Policy, user: &str, client: ClientKind) -> SignedIn {
    let input = NewSession {
        user_id: UserId::parse(user).expect("test user id"),
        apps: vec![crate::domain::AppId::parse("chatgpt").expect("app id")],
        client,
        user_agent: CHROME_MAC.into(),
        ip: "203.0.113.9".into(),
        location: None,
        trusted: None,
        ttl_seconds: None,
    };
    let created = service::create_session(store, policy, input, service::now_ms()).await.expect("sign-in");
    SignedIn { session_id: created.session_id, token: created.token }
}

/// A request with an optional bearer token.
pub fn request(method: &str, path: &str, token: Option<&str>) -> Request {
    let mut builder = lambda_http::http::Request::builder().method(method).uri(format!("https://api.test{path}"));
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    builder.body(Body::Empty).expect("request")
}

/// A JSON request with a body.
pub fn json_request(method: &str, path: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://api.test{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body.to_owned()))
        .expect("request")
}

pub fn with_query(req: Request, pairs: &[(&str, &str)]) -> Request {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    req.with_query_string_parameters(map)
}

pub fn with_path(req: Request, pairs: &[(&str, &str)]) -> Request {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    req.with_path_parameters(map)
}

/// The request as API Gateway would deliver it from a client at `ip`.
pub fn with_source_ip(req: Request, ip: &str) -> Request {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use lambda_http::request::RequestContext;
    let mut ctx = ApiGatewayV2httpRequestContext::default();
    ctx.http.source_ip = Some(ip.to_owned());
    req.with_request_context(RequestContext::ApiGatewayV2(ctx))
}

/// Status, content type and parsed JSON body (Null when empty).
pub fn parts(res: &Response<Body>) -> (u16, String, serde_json::Value) {
    let ct = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes: &[u8] = res.body().as_ref();
    let json =
        if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(bytes).expect("JSON body") };
    (res.status().as_u16(), ct, json)
}

/// A store wrapper for tests of interleavings and faults: before each call it yields to the
/// scheduler a pseudo-random number of times (from `seed`), so concurrent operations interleave
/// differently from one seed to the next, and it fails the calls named in `failing` with a
/// throttling error, as DynamoDB does under load.
pub struct ChaosStore<S> {
    inner: std::sync::Arc<S>,
    rng: std::sync::Mutex<u64>,
    failing: std::sync::Mutex<std::collections::HashSet<&'static str>>,
    calls: std::sync::Mutex<Vec<&'static str>>,
    held: std::sync::Mutex<Option<std::sync::Arc<Hold>>>,
}

/// A read held between DynamoDB's answer and its caller (`ChaosStore::hold_reads`): the answer
/// is in flight while the test changes the world.
#[derive(Default)]
pub struct Hold {
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Hold {
    /// Waits until a read has its answer and is held.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held read return its (by now stale) answer.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl<S: SessionStore> ChaosStore<S> {
    /// Wraps a shared store, so that concurrent operations can each have a wrapper of their own.
    pub fn new(inner: std::sync::Arc<S>, seed: u64) -> Self {
        Self {
            inner,
            rng: std::sync::Mutex::new(seed | 1),
            failing: Default::default(),
            calls: Default::default(),
            held: Default::default(),
        }
    }

    /// Holds the next `read` once DynamoDB has answered, until the returned hold is released.
    pub fn hold_reads(&self) -> std::sync::Arc<Hold> {
        let hold = std::sync::Arc::new(Hold::default());
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::sync::Arc::clone(&hold));
        hold
    }

    /// Makes every later call of the named store method fail (`"touch_session"`, `"add_app"`, ...).
    pub fn fail(&self, method: &'static str) {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).insert(method);
    }

    /// Lets the named method succeed again.
    pub fn heal(&self, method: &'static str) {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).remove(method);
    }

    /// The store methods called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn before(&self, method: &'static str) -> Result<(), crate::StoreError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(method);
        let yields = {
            let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            // xorshift64: cheap, deterministic for a seed.
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x % 4
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        if self.failing.lock().unwrap_or_else(|p| p.into_inner()).contains(method) {
            return Err(crate::StoreError::Throttled(format!("injected failure in {method}").into()));
        }
        Ok(())
    }
}

impl<S: SessionStore> SessionsStore for ChaosStore<S> {
    async fn create_session(&self, session: &crate::model::Session) -> Result<(), crate::StoreError> {
        self.before("create_session").await?;
        self.inner.create_session(session).await
    }

    async fn read(&self, set: &crate::store::ReadSet) -> Result<crate::store::ReadResult, crate::StoreError> {
        self.before("read").await?;
        let answer = self.inner.read(set).await;
        let hold = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(hold) = hold {
            hold.reached.notify_one();
            hold.release.notified().await;
        }
        answer
    }

    async fn query_sessions(
        &self,
        user: &UserId,
        after: Option<SessionId>,
        limit: u32,
    ) -> Result<crate::store::SessionPage, crate::StoreError> {
        self.before("query_sessions").await?;
        self.inner.query_sessions(user, after, limit).await
    }

    async fn session_states(&self, user: &UserId) -> Result<Vec<crate::store::SessionState>, crate::StoreError> {
        self.before("session_states").await?;
        self.inner.session_states(user).await
    }

    async fn count_newly_covered(
        &self,
        user: &UserId,
        new: crate::model::Watermark,
        previous: Option<crate::model::Watermark>,
        now_ms: i64,
    ) -> Result<u64, crate::StoreError> {
        self.before("count_newly_covered").await?;
        self.inner.count_newly_covered(user, new, previous, now_ms).await
    }

    async fn revoke_session(
        &self,
        user: &UserId,
        session: SessionId,
        revocation: &crate::model::Revocation,
        tombstone_secs: i64,
        audit: Option<crate::store::Audited<'_>>,
    ) -> Result<crate::store::RevokeOutcome, crate::StoreError> {
        self.before("revoke_session").await?;
        self.inner.revoke_session(user, session, revocation, tombstone_secs, audit).await
    }

    async fn swap_watermark(
        &self,
        user: &UserId,
        expected: Option<crate::model::Watermark>,
        new: crate::model::Watermark,
        revocation: &crate::model::Revocation,
        audit: &crate::model::AuditEvent,
        once: Option<&crate::store::Once>,
    ) -> Result<Result<(), Option<crate::model::Watermark>>, crate::StoreError> {
        self.before("swap_watermark").await?;
        self.inner.swap_watermark(user, expected, new, revocation, audit, once).await
    }

    async fn set_trusted(
        &self,
        user: &UserId,
        session: SessionId,
        trusted: bool,
        now_ms: i64,
    ) -> Result<Option<crate::model::Session>, crate::StoreError> {
        self.before("set_trusted").await?;
        self.inner.set_trusted(user, session, trusted, now_ms).await
    }

    async fn touch_session(
        &self,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<(), crate::StoreError> {
        self.before("touch_session").await?;
        self.inner.touch_session(user, session, now_ms, stale_before_ms).await
    }

    async fn add_app(
        &self,
        user: &UserId,
        session: SessionId,
        app: &crate::domain::AppId,
        now_ms: i64,
    ) -> Result<bool, crate::StoreError> {
        self.before("add_app").await?;
        self.inner.add_app(user, session, app, now_ms).await
    }
}

impl<S: SessionStore> ReceiptsStore for ChaosStore<S> {
    async fn tombstones(&self, user: &UserId) -> Result<Vec<crate::store::Tombstone>, crate::StoreError> {
        self.before("tombstones").await?;
        self.inner.tombstones(user).await
    }

    async fn receipts(
        &self,
        user: &UserId,
        session: SessionId,
    ) -> Result<std::collections::BTreeMap<String, crate::model::ProductReceipt>, crate::StoreError> {
        self.before("receipts").await?;
        self.inner.receipts(user, session).await
    }

    async fn advance_receipt(
        &self,
        user: &UserId,
        session: SessionId,
        aud: &str,
        from: &crate::model::ReceiptStep,
        receipt: &crate::model::ProductReceipt,
    ) -> Result<bool, crate::StoreError> {
        self.before("advance_receipt").await?;
        self.inner.advance_receipt(user, session, aud, from, receipt).await
    }

    async fn record_caches_invalidated(
        &self,
        user: &UserId,
        session: SessionId,
        at_ms: i64,
        by: crate::model::CachesToldBy,
        products: &[String],
        keep_until_secs: i64,
    ) -> Result<(), crate::StoreError> {
        self.before("record_caches_invalidated").await?;
        self.inner.record_caches_invalidated(user, session, at_ms, by, products, keep_until_secs).await
    }

    async fn create_tombstone(&self, tombstone: &crate::model::Session) -> Result<bool, crate::StoreError> {
        self.before("create_tombstone").await?;
        self.inner.create_tombstone(tombstone).await
    }
}

impl<S: SessionStore> DirectoryStore for ChaosStore<S> {
    async fn put_identity_provider(
        &self,
        provider: &crate::identity::IdentityProvider,
    ) -> Result<(), crate::StoreError> {
        self.before("put_identity_provider").await?;
        self.inner.put_identity_provider(provider).await
    }

    async fn identity_provider(
        &self,
        workspace: &crate::domain::WorkspaceId,
    ) -> Result<Option<crate::identity::IdentityProvider>, crate::StoreError> {
        self.before("identity_provider").await?;
        self.inner.identity_provider(workspace).await
    }

    async fn user_by_identifier(
        &self,
        workspace: &crate::domain::WorkspaceId,
        id: &crate::identity::UserIdentifier,
    ) -> Result<Option<UserId>, crate::StoreError> {
        self.before("user_by_identifier").await?;
        self.inner.user_by_identifier(workspace, id).await
    }

    async fn put_profile(&self, user: &UserId, update: &crate::store::ProfileUpdate) -> Result<(), crate::StoreError> {
        self.before("put_profile").await?;
        self.inner.put_profile(user, update).await
    }

    async fn query_members(
        &self,
        workspace: &crate::domain::WorkspaceId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<crate::store::MemberPage, crate::StoreError> {
        self.before("query_members").await?;
        self.inner.query_members(workspace, after, limit).await
    }
}

impl<S: SessionStore> AuditStore for ChaosStore<S> {
    async fn put_audit(&self, event: &crate::model::AuditEvent) -> Result<(), crate::StoreError> {
        self.before("put_audit").await?;
        self.inner.put_audit(event).await
    }

    async fn mark_swept(&self, user: &UserId, event_id: ulid::Ulid, at_ms: i64) -> Result<(), crate::StoreError> {
        self.before("mark_swept").await?;
        self.inner.mark_swept(user, event_id, at_ms).await
    }

    async fn query_audit(
        &self,
        user: &UserId,
        after: Option<ulid::Ulid>,
        limit: u32,
    ) -> Result<crate::store::AuditPage, crate::StoreError> {
        self.before("query_audit").await?;
        self.inner.query_audit(user, after, limit).await
    }
}

/// A stand-in identity provider's signing key (EC P-256, PKCS#8), for tests only.
#[cfg(feature = "idp")]
pub const IDP_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbFpCqkQgOYk9eIhI\nYfPpjr+kMMNRlLP82XupybEaom6hRANCAATUY2D+oPjv+5EoWsR4twXMQ+S9s1a/\nsNdVOzgBWWS+qyvaww80nwfwv3vKh8W3jRrgA6R6G76eXDg8k7v7D6Gd\n-----END PRIVATE KEY-----";
/// Another key, which the provider never published.
#[cfg(feature = "idp")]
pub const IDP_OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUF3lQ2W66ZVyfiWR\nVindTDIutrijPjomD5AIQb6eNBahRANCAASaPnSV4bI6giixmXlZ2oYT7gWm7Czx\neGxkmoDy/ifkWKKLVkWvfsM6ucR8XKFgBrGSZYvUiK9RrWimWY4cGOJa\n-----END PRIVATE KEY-----";

/// The JWKS publishing the public halves of `keys` (PEM, kid).
#[cfg(feature = "idp")]
pub fn idp_jwks(keys: &[(&str, &str)]) -> jsonwebtoken::jwk::JwkSet {
    let keys = keys
        .iter()
        .map(|(pem, kid)| {
            let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("an EC key");
            let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256).unwrap();
            jwk.common.key_id = Some((*kid).to_owned());
            jwk
        })
        .collect();
    jsonwebtoken::jwk::JwkSet { keys }
}

/// A JWT signed ES256 with `pem`, with this header (`alg` and `kid` set unless it has them) and
/// claims.
#[cfg(feature = "idp")]
pub fn idp_token(pem: &str, header: serde_json::Value, claims: &serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut header = header;
    header.as_object_mut().unwrap().entry("alg").or_insert("ES256".into());
    let signing =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("an EC key");
    let signature = jsonwebtoken::crypto::sign(signing.as_bytes(), &key, jsonwebtoken::Algorithm::ES256).unwrap();
    format!("{signing}.{signature}")
}
