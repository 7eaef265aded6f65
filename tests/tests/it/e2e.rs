//! End-to-end: real HTTP through the local API Gateway (`local-gateway`: the template's routes,
//! payload 2.0 events as API Gateway builds them) and `cargo lambda watch` to the functions, on
//! DynamoDB Local. `infra/test.sh` starts them and sets `E2E_BASE_URL`.

use std::collections::BTreeSet;

use active_sessions::domain::SessionId;
use integration_tests::{e2e_base_url, openapi_routes, s, TestTable};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};

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

#[tokio::test]
async fn every_documented_route_and_status_is_served() {
    let mut api = Api::new();
    let tag = SessionId::new().to_string().to_lowercase();
    let (ws, other_ws) = (format!("ws-{tag}"), format!("wsb-{tag}"));
    let (admin, member, sso, stranger) =
        (format!("adm-{tag}"), format!("mem-{tag}"), format!("sso-{tag}"), format!("str-{tag}"));

    // PUT /v1/internal/users/{user_id}: 200, 400, 415.
    let users = "/v1/internal/users/{user_id}";
    for (u, body) in [
        (&admin, json!({"workspace_id": ws, "role": "admin"})),
        (&member, json!({"workspace_id": ws})),
        (&sso, json!({"workspace_id": ws, "sso_linked": true})),
        (&stranger, json!({"workspace_id": other_ws, "role": "admin"})),
    ] {
        let (status, v, _) =
            api.call(Method::PUT, users, &format!("/v1/internal/users/{u}"), None, Some(body.to_string())).await;
        assert_eq!(status, 200, "{v}");
    }
    api.call(Method::PUT, users, &format!("/v1/internal/users/{member}"), None, Some(r#"{"role":"boss"}"#.into()))
        .await;
    raw(&mut api, Method::PUT, users, &format!("/v1/internal/users/{member}"), None, "text/plain", "{}").await;

    // POST /v1/internal/sessions: 201, 400, 413, 415.
    let me = api.sign_in(&member, "browser").await;
    let other = api.sign_in(&member, "browser").await;
    let third = api.sign_in(&member, "mobile_app").await;
    let boss = api.sign_in(&admin, "browser").await;
    let sso_s = api.sign_in(&sso, "browser").await;
    let str_s = api.sign_in(&stranger, "browser").await;
    let route = "/v1/internal/sessions";
    api.call(Method::POST, route, route, None, Some(r#"{"user_id":"x","apps":[]}"#.into())).await;
    api.call(Method::POST, route, route, None, Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(17_000)))).await;
    raw(&mut api, Method::POST, route, route, None, "text/plain", "hi").await;

    // GET /v1/sessions: 200, 400, 401, 403.
    api.list(&me.token, "?limit=1").await;
    api.list(&me.token, "?limit=0").await;
    api.list("not-a-token", "").await;
    api.list(&sso_s.token, "").await;

    // PATCH /v1/sessions/{id}: 200, 400, 401, 403, 404, 415.
    let patch = "/v1/sessions/{id}";
    let other_path = format!("/v1/sessions/{}", other.id);
    api.call(Method::PATCH, patch, &other_path, Some(&me.token), Some(r#"{"trusted":true}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some(&me.token), Some(r#"{"trusted":"yes"}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some("not-a-token"), Some(r#"{"trusted":true}"#.into())).await;
    api.call(Method::PATCH, patch, &other_path, Some(&sso_s.token), Some(r#"{"trusted":true}"#.into())).await;
    let missing = format!("/v1/sessions/{}", SessionId::new());
    api.call(Method::PATCH, patch, &missing, Some(&me.token), Some(r#"{"trusted":true}"#.into())).await;
    raw(&mut api, Method::PATCH, patch, &other_path, Some(&me.token), "text/plain", "x").await;

    // DELETE /v1/sessions/{id}: 204, 400, 401, 403, 404, 409.
    api.revoke(&me.token, &other.id).await;
    api.revoke(&me.token, "not-an-id").await;
    api.revoke("not-a-token", &other.id).await;
    api.revoke(&sso_s.token, &other.id).await;
    api.revoke(&me.token, &SessionId::new().to_string()).await;
    api.revoke(&me.token, &me.id).await;

    // GET /v1/sessions/{id}/revocation: 200, 400, 401, 403, 404, 409.
    let rcpt = "/v1/sessions/{id}/revocation";
    let rcpt_path = format!("/v1/sessions/{}/revocation", other.id);
    api.call(Method::GET, rcpt, &rcpt_path, Some(&me.token), None).await;
    api.call(Method::GET, rcpt, "/v1/sessions/not-an-id/revocation", Some(&me.token), None).await;
    api.call(Method::GET, rcpt, &rcpt_path, Some("not-a-token"), None).await;
    api.call(Method::GET, rcpt, &rcpt_path, Some(&sso_s.token), None).await;
    api.call(Method::GET, rcpt, &format!("/v1/sessions/{}/revocation", SessionId::new()), Some(&me.token), None).await;
    api.call(Method::GET, rcpt, &format!("/v1/sessions/{}/revocation", me.id), Some(&me.token), None).await;

    // GET /v1/sessions/events: 200, 400, 401, 403.
    let ev = "/v1/sessions/events";
    api.call(Method::GET, ev, ev, Some(&me.token), None).await;
    api.call(Method::GET, ev, &format!("{ev}?limit=0"), Some(&me.token), None).await;
    api.call(Method::GET, ev, ev, Some("not-a-token"), None).await;
    api.call(Method::GET, ev, ev, Some(&sso_s.token), None).await;

    // Admin routes: 200/204, 400, 401, 403 (a member posing as admin), 404 (another workspace's admin).
    let list_r = "/v1/admin/users/{user_id}/sessions";
    let member_sessions = format!("/v1/admin/users/{member}/sessions");
    api.call(Method::GET, list_r, &member_sessions, Some(&boss.token), None).await;
    api.call(Method::GET, list_r, &format!("{member_sessions}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, list_r, &member_sessions, Some("not-a-token"), None).await;
    api.call(Method::GET, list_r, &format!("/v1/admin/users/{admin}/sessions"), Some(&me.token), None).await;
    api.call(Method::GET, list_r, &member_sessions, Some(&str_s.token), None).await;

    let ev_r = "/v1/admin/users/{user_id}/events";
    let member_events = format!("/v1/admin/users/{member}/events");
    let (status, trail, _) = api.call(Method::GET, ev_r, &member_events, Some(&boss.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(trail["events"][0]["reason"], "user_logout", "{trail}");
    api.call(Method::GET, ev_r, &format!("{member_events}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, ev_r, &member_events, Some("not-a-token"), None).await;
    api.call(Method::GET, ev_r, &format!("/v1/admin/users/{admin}/events"), Some(&me.token), None).await;
    api.call(Method::GET, ev_r, &member_events, Some(&str_s.token), None).await;

    let one_r = "/v1/admin/users/{user_id}/sessions/{id}";
    let third_path = format!("/v1/admin/users/{member}/sessions/{}", third.id);
    api.call(Method::DELETE, one_r, &format!("/v1/admin/users/{member}/sessions/bad"), Some(&boss.token), None).await;
    api.call(Method::DELETE, one_r, &third_path, Some("not-a-token"), None).await;
    api.call(Method::DELETE, one_r, &format!("/v1/admin/users/{admin}/sessions/{}", boss.id), Some(&me.token), None)
        .await;
    api.call(Method::DELETE, one_r, &third_path, Some(&str_s.token), None).await;
    let (status, _, _) = api.call(Method::DELETE, one_r, &third_path, Some(&boss.token), None).await;
    assert_eq!(status, 204);
    assert_eq!(api.list(&third.token, "").await.0, 401, "revoked by the admin");

    let arc = "/v1/admin/users/{user_id}/sessions/{id}/revocation";
    let arc_path = format!("{third_path}/revocation");
    api.call(Method::GET, arc, &arc_path, Some(&boss.token), None).await;
    api.call(Method::GET, arc, &format!("/v1/admin/users/{member}/sessions/bad/revocation"), Some(&boss.token), None)
        .await;
    api.call(Method::GET, arc, &arc_path, Some("not-a-token"), None).await;
    api.call(
        Method::GET,
        arc,
        &format!("/v1/admin/users/{admin}/sessions/{}/revocation", boss.id),
        Some(&me.token),
        None,
    )
    .await;
    api.call(Method::GET, arc, &arc_path, Some(&str_s.token), None).await;
    api.call(
        Method::GET,
        arc,
        &format!("/v1/admin/users/{member}/sessions/{}/revocation", me.id),
        Some(&boss.token),
        None,
    )
    .await;

    api.call(Method::DELETE, list_r, &format!("{member_sessions}?scope=others"), Some(&boss.token), None).await;
    api.call(Method::DELETE, list_r, &member_sessions, Some("not-a-token"), None).await;
    api.call(Method::DELETE, list_r, &format!("/v1/admin/users/{admin}/sessions"), Some(&me.token), None).await;
    api.call(Method::DELETE, list_r, &member_sessions, Some(&str_s.token), None).await;

    // GET /.well-known/jwks.json: 200, 405.
    let jw = "/.well-known/jwks.json";
    let (status, keys, _) = api.call(Method::GET, jw, jw, None, None).await;
    assert_eq!((status, keys["keys"][0]["crv"].as_str()), (200, Some("P-256")), "{keys}");
    // The 405 documented on the path's one operation: any other method.
    let res = api.http.delete(format!("{}{jw}", api.base)).send().await.expect("the JWKS route");
    let status = res.status().as_u16();
    assert_eq!((status, res.headers()["allow"].to_str().unwrap()), (405, "GET"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    api.seen.insert(("GET".to_owned(), jw.to_owned(), status));

    // GET /v1/admin/members: 200, 400, 401, 403, 405.
    let mr = "/v1/admin/members";
    let (status, body, _) = api.call(Method::GET, mr, mr, Some(&boss.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["members"].as_array().unwrap().iter().any(|m| m["user_id"] == member.as_str()), "{body}");
    api.call(Method::GET, mr, &format!("{mr}?limit=0"), Some(&boss.token), None).await;
    api.call(Method::GET, mr, mr, Some("not-a-token"), None).await;
    assert_eq!(api.call(Method::GET, mr, mr, Some(&me.token), None).await.0, 403, "a member is not an admin");
    let res = api.http.post(format!("{}{mr}", api.base)).bearer_auth(&boss.token).send().await.expect("members");
    assert_eq!(res.status().as_u16(), 405);
    api.seen.insert(("GET".to_owned(), mr.to_owned(), 405));

    // The pages: GET /, the two pages and the assets (200, 303, 404, 405); no token needed.
    active_sessions::config::install_crypto_provider();
    let pages = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (route, path, expected) in [
        ("/", "/", 303),
        ("/settings/security/sessions", "/settings/security/sessions", 200),
        ("/admin/members", "/admin/members", 200),
        ("/assets/{file}", "/assets/app.js", 200),
        ("/assets/{file}", "/assets/nope.css", 404),
    ] {
        let res = pages.get(format!("{}{path}", api.base)).send().await.expect("a page");
        assert_eq!(res.status().as_u16(), expected, "{path}");
        assert!(
            res.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"),
            "{path}"
        );
        api.seen.insert(("GET".to_owned(), route.to_owned(), expected));
        let res = pages.delete(format!("{}{path}", api.base)).send().await.expect("a page");
        assert_eq!(res.status().as_u16(), 405, "{path}");
        api.seen.insert(("GET".to_owned(), route.to_owned(), 405));
    }

    // POST /v1/internal/introspect: 200, 400, 415.
    let intro = "/v1/internal/introspect";
    raw(
        &mut api,
        Method::POST,
        intro,
        intro,
        None,
        "application/x-www-form-urlencoded",
        &format!("token={}", boss.token),
    )
    .await;
    raw(&mut api, Method::POST, intro, intro, None, "application/x-www-form-urlencoded", "app=codex").await;
    raw(&mut api, Method::POST, intro, intro, None, "application/json", "{}").await;

    // DELETE /v1/sessions: 400, 401, 403, then 200.
    api.revoke_all(&me.token, "?scope=nope").await;
    api.revoke_all("not-a-token", "").await;
    api.revoke_all(&sso_s.token, "").await;
    api.revoke_all(&boss.token, "?scope=others").await;
    // Offboarding last: it ends the member's sessions.
    let (status, body, _) = api
        .call(Method::DELETE, list_r, &format!("{member_sessions}?reason=offboarded"), Some(&boss.token), None)
        .await;
    assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(api.list(&me.token, "").await.0, 401);

    let documented: BTreeSet<(String, String, u16)> = openapi_routes()
        .into_iter()
        .flat_map(|((m, p), statuses): ((String, String), BTreeSet<u16>)| {
            statuses.into_iter().map(move |s| (m.clone(), p.clone(), s))
        })
        .collect();
    let missing: Vec<_> = documented.difference(&api.seen).collect();
    assert!(missing.is_empty(), "documented but never answered: {missing:?}");
    let undocumented: Vec<_> = api.seen.difference(&documented).collect();
    assert!(undocumented.is_empty(), "answered but not documented: {undocumented:?}");
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

/// The logout deliveries the stand-in product received for a session, once there are `n`.
async fn wait_for_logouts(sid: &str, n: usize) -> Vec<Value> {
    let url = format!("{}/received", std::env::var("E2E_RECEIVER_URL").expect("E2E_RECEIVER_URL: run infra/test.sh"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let keys = jwks().await;
    loop {
        let all: Vec<Value> = reqwest::get(&url).await.expect("receiver").json().await.expect("JSON");
        let mine: Vec<Value> = all
            .into_iter()
            .filter(|d| d["token"].as_str().map(|t| verify_logout(t, &keys)).is_some_and(|c| c.sid == sid))
            .collect();
        if mine.len() >= n {
            // The stand-in product verified each one itself, through the JWKS.
            assert!(mine.iter().all(|d| d["verified"] == true), "{mine:?}");
            return mine;
        }
        assert!(std::time::Instant::now() < deadline, "only {} logout deliveries for {sid}", mine.len());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The logout verification keys, as a product fetches them: `GET /.well-known/jwks.json`.
async fn jwks() -> jsonwebtoken::jwk::JwkSet {
    let res = reqwest::get(format!("{}/.well-known/jwks.json", e2e_base_url())).await.expect("the JWKS route");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jwk-set+json");
    res.json().await.expect("a JWK Set")
}

/// Verifies a logout token as a product must (docs/deploy.md): the key its `kid` names in the JWKS,
/// `typ`, `iss`, `aud`, `exp`, `iat`, `sub`, and the event.
fn verify_logout(jwt: &str, jwks: &jsonwebtoken::jwk::JwkSet) -> active_sessions::logout::LogoutClaims {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(jwt).expect("JWT header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwk = jwks.find(header.kid.as_deref().expect("a kid")).expect("the kid is in the JWKS");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["local-product"]);
    v.set_issuer(&["http://127.0.0.1"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims: active_sessions::logout::LogoutClaims =
        decode(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &v).expect("the logout token verifies").claims;
    assert!(claims.events.get(active_sessions::logout::EVENT).is_some(), "the back-channel logout event");
    claims
}

#[tokio::test]
async fn a_product_answering_500_gets_the_logout_again() {
    let mut api = Api::new();
    let user = format!("flaky-{}", SessionId::new().to_string().to_lowercase());
    let me = api.sign_in(&user, "browser").await;
    let other = api.sign_in(&user, "browser").await;
    assert_eq!(api.revoke(&me.token, &other.id).await.0, 204);
    // The first delivery is refused (500): a message on the retry queue has it tried again
    // (logout-retry, which the local poller hands the queue's messages), with the same jti.
    let deliveries = wait_for_logouts(&other.id, 2).await;
    let statuses: Vec<i64> = deliveries.iter().map(|d| d["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses[0], 500, "{statuses:?}");
    assert!(statuses[1..].contains(&200), "{statuses:?}");
}

/// Whatever the body's bytes, a client gets a 400 problem, never the local stack's
/// `500 text/plain` (`cargo lambda watch` itself refuses a JSON or form body that is not UTF-8
/// before any function runs). Through the local gateway the function gets the body base64-encoded,
/// as from API Gateway.
#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_400_problem_on_every_route_that_takes_one() {
    let mut api = Api::new();
    let me = api.sign_in(&unique_user("bytes"), "browser").await;
    let bytes: &[u8] = b"\xff\xfe{\"trusted\": \xc3\x28}";
    let routes = [
        ("PATCH", format!("/v1/sessions/{}", me.id), "application/json", Some(me.token.as_str())),
        ("POST", "/v1/internal/sessions".to_owned(), "application/json", None),
        ("PUT", "/v1/internal/users/bytes-user".to_owned(), "application/json", None),
        ("POST", "/v1/internal/introspect".to_owned(), "application/x-www-form-urlencoded", None),
    ];
    for (method, path, content_type, token) in routes {
        let mut req = api
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", api.base))
            .header("content-type", content_type)
            .body(bytes.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("the local API");
        let status = res.status().as_u16();
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = res.text().await.unwrap_or_default();
        assert_eq!((status, ct.as_str()), (400, "application/problem+json"), "{method} {path}: {body}");
    }
}

/// After a revoke, the session's receipt shows the caches let go and the stand-in product
/// told, then `complete`, through the real stack (gateway, functions, stream poller, fan-out).
#[tokio::test]
async fn a_revocation_receipt_completes_once_caches_and_products_let_go() {
    let mut api = Api::new();
    let user = unique_user("receipt");
    let me = api.sign_in(&user, "browser").await;
    let victim = api.sign_in(&user, "mobile_app").await;
    let revoked_at = std::time::Instant::now();
    assert_eq!(api.revoke(&me.token, &victim.id).await.0, 204);
    let path = format!("/v1/sessions/{}/revocation", victim.id);
    let route = "/v1/sessions/{id}/revocation";
    let deadline = revoked_at + std::time::Duration::from_secs(20);
    let receipt = loop {
        let (status, body, _) = api.call(Method::GET, route, &path, Some(&me.token), None).await;
        assert_eq!(status, 200, "{body}");
        if body["complete"] == true {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never complete: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    eprintln!("receipt complete {:?} after the revoke returned: {receipt}", revoked_at.elapsed());
    assert_eq!(receipt["reason"], "user_logout");
    assert!(receipt["caches_invalidated_at"].as_str().unwrap() >= receipt["revoked_at"].as_str().unwrap());
    // The revoke told the caches itself, before it answered; the fan-out found its marker.
    assert_eq!(receipt["caches_invalidated_by"], "write_through", "{receipt}");
    let products = receipt["products"].as_array().unwrap();
    assert_eq!(products.len(), 1, "{receipt}");
    assert_eq!(
        (products[0]["product"].as_str(), products[0]["status"].as_str()),
        (Some("local-product"), Some("delivered"))
    );
    assert_eq!(products[0]["attempts"], 1);
}

/// Polls a revoked session's receipt until `done` says so (or 30 s), and returns every distinct
/// state of the one product seen on the way.
async fn watch_receipt(api: &mut Api, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let path = format!("/v1/sessions/{id}/revocation");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let (status, body, _) = api.call(Method::GET, "/v1/sessions/{id}/revocation", &path, Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        let product = body["products"][0].clone();
        if seen.last() != Some(&product) {
            seen.push(product);
        }
        if done(&body) {
            return seen;
        }
        assert!(std::time::Instant::now() < deadline, "not done: {body}; seen {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The product is down for a while (503 for 2 s from its first delivery, `outage-`
/// users), then back: its receipt goes `pending` (with the failure's class) → `delivered`, by
/// `logout-retry` from the retry queue, and the revoke-one's event summary completes.
#[tokio::test]
async fn a_product_down_for_a_while_ends_delivered() {
    let mut api = Api::new();
    let user = format!("outage-{}", SessionId::new().to_string().to_lowercase());
    let me = api.sign_in(&user, "browser").await;
    let victim = api.sign_in(&user, "mobile_app").await;
    assert_eq!(api.revoke(&me.token, &victim.id).await.0, 204);
    let seen = watch_receipt(&mut api, &me.token, &victim.id, |r| r["complete"] == true).await;
    let statuses: Vec<&str> = seen.iter().filter_map(|p| p["status"].as_str()).collect();
    assert!(statuses.contains(&"pending"), "{seen:?}");
    assert_eq!(statuses.last(), Some(&"delivered"), "{seen:?}");
    let pending = seen.iter().find(|p| p["status"] == "pending" && p["attempts"].as_i64() >= Some(1));
    assert!(pending.is_some_and(|p| p["last_attempt_at"].is_string()), "a failed attempt on record: {seen:?}");
    let last = seen.last().unwrap();
    assert!(last["attempts"].as_i64().unwrap() >= 2, "{last}");
    assert!(last["delivered_at"].is_string(), "{last}");
    let deliveries = wait_for_logouts(&victim.id, 2).await;
    let statuses: Vec<i64> = deliveries.iter().map(|d| d["status"].as_i64().unwrap()).collect();
    assert_eq!((statuses.first(), statuses.last()), (Some(&503), Some(&200)), "{statuses:?}");
    let (status, events, _) =
        api.call(Method::GET, "/v1/sessions/events", "/v1/sessions/events", Some(&me.token), None).await;
    assert_eq!(status, 200);
    let summary = &events["events"][0]["receipts"];
    assert_eq!((summary["delivered"].as_i64(), summary["pending"].as_i64()), (Some(1), Some(0)), "{events}");
}

/// The product never comes back (`dead-` users): retried until the horizon (8 s on the
/// test stack), then the receipt says `failed`, and logout-retry emits the LogoutDeliveryFailed
/// metric (an EMF line in its log, which CloudWatch turns into the metric the alarm watches).
#[tokio::test]
async fn a_product_that_never_comes_back_ends_failed_with_the_metric() {
    let mut api = Api::new();
    let user = format!("dead-{}", SessionId::new().to_string().to_lowercase());
    let me = api.sign_in(&user, "browser").await;
    let victim = api.sign_in(&user, "mobile_app").await;
    assert_eq!(api.revoke(&me.token, &victim.id).await.0, 204);
    let seen = watch_receipt(&mut api, &me.token, &victim.id, |r| r["products"][0]["status"] == "failed").await;
    let last = seen.last().unwrap();
    assert!(last["attempts"].as_i64().unwrap() >= 3, "retried with backoff first: {seen:?}");
    assert!(seen.iter().any(|p| p["status"] == "pending"), "{seen:?}");
    let log = std::env::var("E2E_FUNCTIONS_LOG").expect("E2E_FUNCTIONS_LOG: run infra/test.sh");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let given_up = text.lines().any(|l| l.contains("given up at the horizon") && l.contains(&victim.id));
        let metric = text.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).any(|m| {
            m["LogoutDeliveryFailed"] == 1
                && m["Product"] == "local-product"
                && m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ActiveSessions"
        });
        if given_up && metric {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no LogoutDeliveryFailed metric (given up: {given_up}) in {log}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, events, _) =
        api.call(Method::GET, "/v1/sessions/events", "/v1/sessions/events", Some(&me.token), None).await;
    assert_eq!(status, 200);
    let summary = &events["events"][0]["receipts"];
    assert_eq!(summary["failed"].as_i64(), Some(1), "{events}");
    assert!(summary["completed_at"].is_null(), "a failed product never completes: {events}");
}

/// Every span the stand-in collector has received (`infra/test.sh` sets `E2E_COLLECTOR_URL`).
async fn exported_spans() -> Vec<Value> {
    let url = format!("{}/spans", integration_tests::required_env("E2E_COLLECTOR_URL"));
    reqwest::get(&url).await.expect("the trace collector").json().await.expect("JSON spans")
}

/// The collector's spans once `done` says they hold what a test waits for (or 10 s: `what` failed).
async fn spans_until(what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let spans = exported_spans().await;
        if done(&spans) {
            return spans;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Everything a span carries, as the collector received it: name, attributes, events, links,
/// status, scope and resource, as one JSON text.
fn span_text(span: &Value) -> String {
    span.to_string()
}

#[tokio::test]
async fn a_revoke_is_traced_with_its_dynamodb_calls_and_no_secret_in_any_span() {
    use base64::Engine;
    use sha2::Digest;
    let mut api = Api::new();
    let user = unique_user("traced");
    let me = api.sign_in(&user, "browser").await;
    let other = api.sign_in(&user, "mobile_app").await;
    // The token travels in a form body here, in a cookie next, and in a JSON response body at
    // sign-in.
    assert_eq!(introspect(&api, &me.token).await["active"], true);
    let by_cookie = api
        .http
        .get(format!("{}/v1/sessions", api.base))
        .header("cookie", format!("__Host-as_session={}", me.token))
        .send()
        .await
        .expect("list by cookie");
    assert_eq!(by_cookie.status(), 200);
    let (status, _, _) = api.revoke(&me.token, &other.id).await;
    assert_eq!(status, 204);

    // The revoke's trace: found by the span of our service code that names the user.
    let is_revoke = |s: &Value| s["name"] == "revoke_session" && s["attributes"]["user_id"] == user.as_str();
    // And the fan-out's, which reads the revoked session (its hash) and invalidates the caches.
    let is_fanout = |s: &Value| {
        s["service"] == "revocation-fanout"
            && s["events"].as_array().into_iter().flatten().any(|e| e["attributes"]["session_id"] == other.id.as_str())
    };
    let spans = spans_until("the revoke's and the fan-out's spans reach the collector", |all| {
        all.iter().any(is_revoke) && all.iter().any(is_fanout)
    })
    .await;
    let revoke = spans.iter().find(|s| is_revoke(s)).unwrap();
    let trace: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == revoke["trace_id"]).collect();
    let by_id = |id: &Value| trace.iter().find(|s| s["span_id"] == *id).copied();
    // The invocation span (faas.*), whose parent is Lambda's (the invocation's X-Ray header):
    // the trace hangs under the function's segment.
    let function = by_id(&revoke["parent_span_id"]).expect("the invocation span");
    assert_eq!(function["name"], "revoke-session");
    assert_eq!(function["attributes"]["faas.trigger"], "http");
    assert_eq!(function["service"], "revoke-session");
    assert_ne!(function["parent_span_id"], "", "parented on the invocation's X-Ray header");
    assert!(by_id(&function["parent_span_id"]).is_none(), "that parent is Lambda's segment, not ours");
    let dynamodb: Vec<&str> = trace
        .iter()
        .filter(|s| s["parent_span_id"] == revoke["span_id"] && s["attributes"]["rpc.service"] == "DynamoDB")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(dynamodb.contains(&"DynamoDB.TransactWriteItems"), "the revoke's write is a child span: {dynamodb:?}");

    // No span anywhere, of any function, carries a token, its secret part, its hash or a body.
    let mut secrets = Vec::new();
    for token in [&me.token, &other.token] {
        let digest = sha2::Sha256::digest(token.as_bytes());
        secrets.push(token.clone());
        secrets.push(token.rsplit('.').next().unwrap().to_owned());
        secrets.push(hex::encode(digest));
        secrets.push(hex::encode_upper(digest));
        secrets.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(digest));
    }
    secrets.push("app=codex".to_owned()); // the introspection body's other field
    secrets.push("198.51.100.7".to_owned()); // the sign-in body's address
    let mut checked = 0;
    for span in &spans {
        let text = span_text(span);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "span {} of {} carries {secret:.12}…:\n{text}",
                span["name"],
                span["service"]
            );
        }
        for key in span["attributes"].as_object().into_iter().flatten().map(|(k, _)| k.to_lowercase()) {
            assert!(!key.contains("body") && !key.contains("token") && !key.contains("hash"), "attribute {key}");
        }
        checked += 1;
    }
    // The stack runs at INFO: our DEBUG events (each response's `answered`) stay out of traces too.
    let verbose: Vec<String> = spans
        .iter()
        .flat_map(|s| s["events"].as_array().into_iter().flatten().map(move |e| (s, e)))
        .filter(|(_, e)| matches!(e["attributes"]["level"].as_str(), Some("DEBUG" | "TRACE")))
        .map(|(s, e)| format!("{} in {} of {}", e["name"], s["name"], s["service"]))
        .collect();
    assert!(verbose.is_empty(), "events below the log level were exported: {verbose:?}");
    for service in ["introspect-token", "list-sessions", "create-session", "revocation-fanout"] {
        assert!(spans.iter().any(|s| s["service"] == service), "{service} was traced too");
    }
    assert!(checked >= trace.len());
}
