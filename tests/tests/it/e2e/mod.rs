//! End-to-end: real HTTP through the local API Gateway (`local-gateway`: the template's routes,
//! payload 2.0 events as API Gateway builds them) and `cargo lambda watch` to the functions, on
//! DynamoDB Local. `infra/test.sh` starts them and sets `E2E_BASE_URL`.

use std::collections::BTreeSet;

use active_sessions::domain::SessionId;
use integration_tests::{e2e_base_url, openapi_routes, s, TestTable};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};

mod idp;
mod products;
use products::{jwks, verify_logout, wait_for_logouts};
mod routes;
mod traces;

struct Api {
    http: Client,
    base: String,
    /// (METHOD, documented path, status) seen so far.
    seen: BTreeSet<(String, String, u16)>,
}

struct Signed {
    id: String,
    token: String,
}

fn unique_user(tag: &str) -> String {
    format!("e2e-{tag}-{}", SessionId::new().to_string().to_lowercase())
}

impl Api {
    fn new() -> Self {
        active_sessions::config::install_crypto_provider();
        Self { http: Client::new(), base: e2e_base_url(), seen: BTreeSet::new() }
    }

    async fn call(
        &mut self,
        method: Method,
        route: &str,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value, HeaderMap) {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: is cargo lambda watch up? {e}"));
        let status = res.status().as_u16();
        self.seen.insert((method.as_str().to_owned(), route.to_owned(), status));
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if status >= 400 {
            assert_eq!(ct, "application/problem+json", "{method} {path} -> {status}");
        }
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        (status, value, headers)
    }

    async fn sign_in(&mut self, user: &str, client: &str) -> Signed {
        let body = json!({"user_id": user, "apps": ["chatgpt"], "client": client,
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "ip": "198.51.100.7", "location": {"city": "Lyon", "country": "FR"}});
        let (status, v, _) = self
            .call(Method::POST, "/v1/internal/sessions", "/v1/internal/sessions", None, Some(body.to_string()))
            .await;
        assert_eq!(status, 201, "{v}");
        Signed { id: v["session_id"].as_str().unwrap().to_owned(), token: v["token"].as_str().unwrap().to_owned() }
    }

    async fn list(&mut self, token: &str, query: &str) -> (u16, Value) {
        let (s, v, _) =
            self.call(Method::GET, "/v1/sessions", &format!("/v1/sessions{query}"), Some(token), None).await;
        (s, v)
    }

    async fn revoke(&mut self, token: &str, id: &str) -> (u16, Value, HeaderMap) {
        self.call(Method::DELETE, "/v1/sessions/{id}", &format!("/v1/sessions/{id}"), Some(token), None).await
    }

    async fn revoke_all(&mut self, token: &str, query: &str) -> (u16, Value) {
        let (s, v, _) =
            self.call(Method::DELETE, "/v1/sessions", &format!("/v1/sessions{query}"), Some(token), None).await;
        (s, v)
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["sessions"].as_array().expect("sessions").iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn list_revoke_and_revoke_all_over_http() {
    let mut api = Api::new();
    let user = unique_user("flow");
    let me = api.sign_in(&user, "browser").await;
    let phone = api.sign_in(&user, "mobile_app").await;
    let laptop = api.sign_in(&user, "desktop_app").await;

    let (status, page) = api.list(&me.token, "").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), [me.id.as_str(), &laptop.id, &phone.id]);
    assert_eq!(page["sessions"][0]["current"], true);
    assert_eq!(page["sessions"][0]["device"]["label"], "Chrome on macOS");
    assert_eq!(page["sessions"][0]["location"]["city"], "Lyon");

    // Revoke one: 204, and its token is dead on the very next request.
    assert_eq!(api.revoke(&me.token, &phone.id).await.0, 204);
    assert_eq!(api.list(&phone.token, "").await.0, 401);
    assert_eq!(ids(&api.list(&me.token, "").await.1), [me.id.as_str(), &laptop.id]);

    // The current session can't be revoked from its own row.
    let (status, problem, _) = api.revoke(&me.token, &me.id).await;
    assert_eq!(status, 409, "{problem}");

    // Another user's session answers exactly like a missing one.
    let stranger = api.sign_in(&unique_user("stranger"), "browser").await;
    let (s1, foreign, _) = api.revoke(&me.token, &stranger.id).await;
    let (s2, missing, _) = api.revoke(&me.token, &SessionId::new().to_string()).await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(foreign, missing);
    assert_eq!(api.list(&stranger.token, "").await.0, 200, "the stranger is untouched");

    // Others, then all.
    assert_eq!(api.revoke_all(&me.token, "?scope=others").await, (200, json!({"revoked": 1})));
    assert_eq!(api.list(&laptop.token, "").await.0, 401);
    assert_eq!(ids(&api.list(&me.token, "").await.1), [me.id.as_str()]);
    assert_eq!(api.revoke_all(&me.token, "").await, (200, json!({"revoked": 1})));
    let (status, _, headers) = api.call(Method::GET, "/v1/sessions", "/v1/sessions", Some(&me.token), None).await;
    assert_eq!(status, 401);
    let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{challenge}");
}

/// A request with an explicit content type, recorded like `call` (for the 415 cases).
async fn raw(api: &mut Api, method: Method, route: &str, path: &str, token: Option<&str>, ct: &str, body: &str) {
    let mut req = api
        .http
        .request(method.clone(), format!("{}{path}", api.base))
        .header("content-type", ct)
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let status = req.send().await.expect("request").status().as_u16();
    api.seen.insert((method.as_str().to_owned(), route.to_owned(), status));
}

#[tokio::test]
async fn revoke_all_becomes_per_session_tombstones_through_the_stream() {
    let mut api = Api::new();
    let table = TestTable::e2e().await;
    let user = unique_user("sweep");
    let me = api.sign_in(&user, "browser").await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(api.sign_in(&user, "mobile_app").await);
    }
    assert_eq!(api.revoke_all(&me.token, "?scope=others").await, (200, json!({"revoked": 5})));
    // The watermark refuses the tokens at once; the consumer (stream poller -> cargo lambda watch
    // -> revocation-fanout) then soft-revokes each session, within seconds.
    for o in &others {
        assert_eq!(api.list(&o.token, "").await.0, 401);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut statuses = Vec::new();
        for o in &others {
            let item = table.get(&format!("USER#{user}"), &format!("SESSION#{}", o.id)).await.expect("session item");
            statuses.push((s(&item, "Status"), item.get("RevokeReason").map(|_| s(&item, "RevokeReason"))));
        }
        if statuses.iter().all(|(st, why)| st == "revoked" && why.as_deref() == Some("user_logout_others")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not swept within 30 s: {statuses:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mine = table.get(&format!("USER#{user}"), &format!("SESSION#{}", me.id)).await.unwrap();
    assert_eq!(s(&mine, "Status"), "active", "the kept session is left alone");
}

/// Introspection over HTTP, as a product calls it.
async fn introspect(api: &Api, token: &str) -> Value {
    let res = api
        .http
        .post(format!("{}/v1/internal/introspect", api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&app=codex"))
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), 200);
    res.json().await.expect("JSON")
}

#[tokio::test]
async fn a_revoked_token_leaves_every_cache_within_the_window() {
    use active_sessions::cache::TokenCache;
    use active_sessions::service::validate;
    use active_sessions::token::SessionToken;
    use redis::AsyncCommands;

    let mut api = Api::new();
    let table = TestTable::e2e().await;
    let config = integration_tests::stack_cache();
    // A long-running validator in this process: warm L1, subscribed to invalidations.
    let validator = std::sync::Arc::new(TokenCache::new(&config).await.expect("cache"));
    validator.subscribe().await.expect("subscribed");

    let user = unique_user("cache");
    let me = api.sign_in(&user, "browser").await;
    let victim = api.sign_in(&user, "mobile_app").await;
    let token = SessionToken::parse(&victim.token).unwrap();
    let now = active_sessions::service::now_ms();
    validate(&table.store, &validator, &token, now).await.expect("valid at first");
    assert!(validator.l1_contains(&token.hash(), now), "warm L1");
    let mut redis = integration_tests::stack_redis().await;
    let l2_key = active_sessions::cache::token_key(token.user_id(), token.hash().as_str());
    assert!(redis.get::<_, Option<String>>(&l2_key).await.unwrap().is_some(), "L2 filled");
    let before = introspect(&api, &victim.token).await;
    assert_eq!(before["active"], true, "{before}");
    assert_eq!(before["apps"], json!(["chatgpt", "codex"]));

    let revoked_at = std::time::Instant::now();
    assert_eq!(api.revoke(&me.token, &victim.id).await.0, 204);
    let deadline = revoked_at + std::time::Duration::from_secs(10);
    let (mut l1_gone, mut l2_gone) = (None, None);
    while l1_gone.is_none() || l2_gone.is_none() {
        let now = active_sessions::service::now_ms();
        if l1_gone.is_none() && !validator.l1_contains(&token.hash(), now) {
            l1_gone = Some(revoked_at.elapsed());
        }
        if l2_gone.is_none() && !integration_tests::l2_valid(redis.get(&l2_key).await.unwrap()) {
            l2_gone = Some(revoked_at.elapsed());
        }
        assert!(std::time::Instant::now() < deadline, "caches still hold the token: L1 {l1_gone:?} L2 {l2_gone:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("revoked token left L1 after {l1_gone:?}, L2 after {l2_gone:?}");
    assert!(validate(&table.store, &validator, &token, active_sessions::service::now_ms()).await.is_err());
    assert_eq!(introspect(&api, &victim.token).await, json!({"active": false}));

    // The product endpoint got a logout token for the session, and it verifies.
    let deliveries = wait_for_logouts(&victim.id, 1).await;
    let claims = verify_logout(deliveries[0]["token"].as_str().unwrap(), &jwks().await);
    assert_eq!((claims.sub.as_str(), claims.aud.as_str()), (user.as_str(), "local-product"));
    assert!(claims.events.get(active_sessions::logout::EVENT).is_some());
}

/// Write-through: once a revoke has answered, no check started after it answers "valid" from any
/// cache: not a warm L1 in another process (this one, subscribed), not L2, not introspection. The
/// stream's fan-out is still running behind it, but nothing here waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_answers_valid_once_the_revoke_has_answered() {
    use active_sessions::cache::TokenCache;
    use active_sessions::service::validate;
    use active_sessions::token::SessionToken;

    let mut api = Api::new();
    let table = TestTable::e2e().await;
    let config = integration_tests::stack_cache();
    let validator = std::sync::Arc::new(TokenCache::new(&config).await.expect("cache"));
    validator.subscribe().await.expect("subscribed");
    // Another process's caches: no L1, so what it answers comes from L2 or DynamoDB.
    let l2_only = TokenCache::new(&active_sessions::cache::CacheConfig { l1_capacity: 0, ..config.clone() })
        .await
        .expect("cache");

    let user = unique_user("through");
    let me = api.sign_in(&user, "browser").await;
    let mut victims = Vec::new();
    for _ in 0..3 {
        victims.push(api.sign_in(&user, "mobile_app").await);
    }
    for v in &victims {
        let token = SessionToken::parse(&v.token).unwrap();
        let now = active_sessions::service::now_ms();
        validate(&table.store, &validator, &token, now).await.expect("valid at first");
        validate(&table.store, &l2_only, &token, now).await.expect("valid at first");
        assert!(validator.l1_contains(&token.hash(), now), "warm L1");
        assert_eq!(introspect(&api, &v.token).await["active"], true);
    }
    async fn refused_everywhere(api: &Api, table: &TestTable, caches: [&TokenCache; 2], v: &Signed, what: &str) {
        let token = SessionToken::parse(&v.token).unwrap();
        let now = active_sessions::service::now_ms();
        assert!(validate(&table.store, caches[0], &token, now).await.is_err(), "{what}: a warm L1 said valid");
        assert!(validate(&table.store, caches[1], &token, now).await.is_err(), "{what}: L2 said valid");
        assert_eq!(introspect(api, &v.token).await, json!({"active": false}), "{what}: introspection");
    }

    // One session.
    assert_eq!(api.revoke(&me.token, &victims[0].id).await.0, 204);
    refused_everywhere(&api, &table, [&validator, &l2_only], &victims[0], "revoke one").await;
    // All the others: the watermark.
    assert_eq!(api.revoke_all(&me.token, "?scope=others").await, (200, json!({"revoked": 2})));
    for v in &victims[1..] {
        refused_everywhere(&api, &table, [&validator, &l2_only], v, "revoke others").await;
    }
    assert_eq!(introspect(&api, &me.token).await["active"], true, "the current session is kept");
}
