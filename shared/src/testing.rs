//! Fixtures for handler tests (feature `test-utils`): sign-ins on any store, and `http::Request`s
//! shaped the way API Gateway (payload 2.0) delivers them.

use std::collections::HashMap;

use lambda_http::http::header;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::config::Policy;
use crate::domain::{ClientKind, SessionId, UserId};
use crate::service::{self, NewSession};
use crate::store::SessionStore;

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

/// Status, content type and parsed JSON body (Null when empty).
pub fn parts(res: &Response<Body>) -> (u16, String, serde_json::Value) {
    let ct = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes: &[u8] = res.body().as_ref();
    let json =
        if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(bytes).expect("JSON body") };
    (res.status().as_u16(), ct, json)
}
