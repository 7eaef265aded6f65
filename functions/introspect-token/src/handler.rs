use active_sessions::cache::TokenCache;
use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{ActivityTracker, IntrospectionRequest};
use active_sessions::{service, Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `POST /v1/internal/introspect` with a form body: `token`, optionally `app` (RFC 7662).
/// Products call it (IAM-authorised at the gateway) and cache its answers.
pub async fn handle<S: SessionStore>(
    store: &S,
    policy: &Policy,
    cache: &TokenCache,
    activity: &ActivityTracker,
    req: Request,
) -> Response<Body> {
    http::finish(http::INTROSPECT_DEADLINE, introspect(store, policy, cache, activity, &req)).await
}

async fn introspect<S: SessionStore>(
    store: &S,
    policy: &Policy,
    cache: &TokenCache,
    activity: &ActivityTracker,
    req: &Request,
) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::POST, "POST")?;
    let form: IntrospectionRequest = http::form_body(req)?;
    let answer = service::introspect(store, policy, cache, activity, form, service::now_ms()).await?;
    Ok(http::json(200, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::cache::CacheConfig;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, sign_in};
    use lambda_http::http::header;
    use std::time::Duration;

    fn form(body: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("POST")
            .uri("https://api.test/v1/internal/introspect")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::Text(body.to_owned()))
            .unwrap()
    }

    async fn cache() -> TokenCache {
        TokenCache::new(&CacheConfig::default()).await.unwrap()
    }

    #[tokio::test]
    async fn an_active_token_is_described_and_records_the_app() {
        let store = MemoryStore::new();
        let (c, activity) = (cache().await, ActivityTracker::new(Duration::from_secs(300)));
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let res =
            handle(&store, &Policy::default(), &c, &activity, form(&format!("token={}&app=codex", me.token))).await;
        let (status, _, body) = parts(&res);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["active"], true);
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["sid"], me.session_id.to_string());
        assert_eq!(body["apps"], serde_json::json!(["chatgpt", "codex"]));
        assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
        let stored = store.get(&UserId::parse("alice").unwrap(), me.session_id).unwrap();
        assert_eq!(stored.apps.len(), 2, "the app is recorded on the session");
    }

    #[tokio::test]
    async fn last_activity_is_written_at_most_once_per_interval() {
        let store = MemoryStore::new();
        let (c, activity) = (cache().await, ActivityTracker::new(Duration::from_secs(300)));
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        // Make the session look idle for an hour, so the first call has something to write.
        let mut s = store.get(&UserId::parse("alice").unwrap(), me.session_id).unwrap();
        s.last_active_at -= 3_600_000;
        store.insert(s);
        let writes = store.writes();
        for _ in 0..20 {
            let res = handle(&store, &Policy::default(), &c, &activity, form(&format!("token={}", me.token))).await;
            assert_eq!(parts(&res).2["active"], true);
        }
        assert_eq!(store.writes(), writes + 1, "one write for twenty calls");
    }

    #[tokio::test]
    async fn unknown_malformed_and_revoked_tokens_are_inactive() {
        let store = MemoryStore::new();
        let (c, activity) = (cache().await, ActivityTracker::new(Duration::from_secs(300)));
        for token in ["garbage", "ast1.YWxpY2U.01M8CPVF8A7ZAP09JVSBBWZEQF.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
        {
            let (status, _, body) =
                parts(&handle(&store, &Policy::default(), &c, &activity, form(&format!("token={token}"))).await);
            assert_eq!((status, body), (200, serde_json::json!({"active": false})));
        }
    }

    #[tokio::test]
    async fn bad_requests_are_problems() {
        let store = MemoryStore::new();
        let (c, activity) = (cache().await, ActivityTracker::new(Duration::from_secs(300)));
        assert_eq!(handle(&store, &Policy::default(), &c, &activity, form("")).await.status(), 400);
        assert_eq!(handle(&store, &Policy::default(), &c, &activity, form("app=codex")).await.status(), 400);
        assert_eq!(
            handle(&store, &Policy::default(), &c, &activity, form("token=x&app=Not%20An%20App")).await.status(),
            400
        );
        // A well-formed app id that is not a configured first-party app, with a valid token.
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let writes = store.writes();
        let unknown = form(&format!("token={}&app=minecraft", me.token));
        let (status, _, body) = parts(&handle(&store, &Policy::default(), &c, &activity, unknown).await);
        assert_eq!(status, 400, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("first-party"), "{body}");
        assert_eq!(store.writes(), writes, "the unknown app is not recorded");
        let stored = store.get(&UserId::parse("alice").unwrap(), me.session_id).unwrap();
        assert_eq!(stored.apps, vec![active_sessions::domain::AppId::parse("chatgpt").unwrap()]);
        let mut json = form("{}");
        json.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(handle(&store, &Policy::default(), &c, &activity, json).await.status(), 415);
    }
}
