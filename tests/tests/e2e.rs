//! End-to-end: real HTTP through `cargo lambda watch` (API Gateway v2 events from its router) to
//! the functions, on DynamoDB Local. `infra/test.sh` starts both and sets `E2E_BASE_URL`.

use std::collections::BTreeSet;

use active_sessions::domain::SessionId;
use integration_tests::{e2e_base_url, openapi_routes};
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

#[tokio::test]
async fn every_documented_route_and_status_is_served() {
    let mut api = Api::new();
    let user = unique_user("tour");
    let me = api.sign_in(&user, "browser").await;
    let other = api.sign_in(&user, "browser").await;

    // POST /v1/internal/sessions: 201 (above), 400, 413, 415.
    let route = "/v1/internal/sessions";
    api.call(Method::POST, route, route, None, Some(r#"{"user_id":"x","apps":[]}"#.into())).await;
    api.call(Method::POST, route, route, None, Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(17_000)))).await;
    let res = api
        .http
        .post(format!("{}{route}", api.base))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    api.seen.insert(("POST".into(), route.into(), res.status().as_u16()));

    // GET /v1/sessions: 200, 400, 401.
    api.list(&me.token, "?limit=1").await;
    api.list(&me.token, "?limit=0").await;
    api.list("not-a-token", "").await;

    // DELETE /v1/sessions/{id}: 204, 400, 401, 404, 409.
    api.revoke(&me.token, &other.id).await;
    api.revoke(&me.token, "not-an-id").await;
    api.revoke("not-a-token", &other.id).await;
    api.revoke(&me.token, &SessionId::new().to_string()).await;
    api.revoke(&me.token, &me.id).await;

    // DELETE /v1/sessions: 400, 401, 200 (last: it ends the session).
    api.revoke_all(&me.token, "?scope=nope").await;
    api.revoke_all("not-a-token", "").await;
    api.revoke_all(&me.token, "").await;

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
