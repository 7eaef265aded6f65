use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, SessionPatch};
use active_sessions::SessionStore;
use lambda_http::{Body, Request, Response};

/// `PATCH /v1/sessions/{id}` with `{"trusted": bool}`: "untrust this device" without logging it out.
pub async fn handle<S: SessionStore>(store: &S, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, update(store, &req)).await
}

async fn update<S: SessionStore>(store: &S, req: &Request) -> Result<Response<Body>, http::Refusal> {
    // The path also takes DELETE (revoke-session); any other method is routed here.
    http::require_method(req, HttpMethod::PATCH, "DELETE, PATCH")?;
    let now = service::now_ms();
    let (caller, (target, patch)) =
        http::caller_and(store, req, now, || Ok((http::session_id(req)?, http::json_body::<SessionPatch>(req)?)))
            .await?;
    let token = caller.token;
    let view = service::set_trusted(store, &token, target, patch, now).await?;
    Ok(http::json(200, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, sign_in, with_path};
    use lambda_http::http::header;

    fn patch(token: &str, id: &str, body: &str) -> Request {
        let req = lambda_http::http::Request::builder()
            .method("PATCH")
            .uri(format!("https://api.test/v1/sessions/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Text(body.to_owned()))
            .unwrap();
        with_path(req, &[("id", id)])
    }

    #[tokio::test]
    async fn untrusts_a_device_without_logging_it_out() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let phone = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let res = handle(&store, patch(&me.token, &phone.session_id.to_string(), r#"{"trusted":true}"#)).await;
        let (status, _, body) = parts(&res);
        assert_eq!(
            (status, &body["trusted"], &body["current"]),
            (200, &serde_json::json!(true), &serde_json::json!(false))
        );
        let res = handle(&store, patch(&me.token, &phone.session_id.to_string(), r#"{"trusted":false}"#)).await;
        assert_eq!(parts(&res).2["trusted"], false);
        let stored = store.get(&UserId::parse("alice").unwrap(), phone.session_id).unwrap();
        assert!(!stored.trusted);
        assert_eq!(stored.status, active_sessions::model::SessionStatus::Active, "still signed in");
    }

    #[tokio::test]
    async fn refuses_bad_bodies_and_foreign_sessions() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let writes = store.writes();
        let id = me.session_id.to_string();
        for (body, want) in
            [(r#"{"trusted":"no"}"#, 400), ("{}", 400), (r#"{"trusted":true,"x":1}"#, 400), ("nope", 400)]
        {
            assert_eq!(handle(&store, patch(&me.token, &id, body)).await.status(), want, "{body}");
        }
        let foreign = handle(&store, patch(&me.token, &bob.session_id.to_string(), r#"{"trusted":true}"#)).await;
        assert_eq!(foreign.status(), 404);
        assert_eq!(store.writes(), writes, "nothing written");
    }

    /// Deployed, API Gateway hands a body that is not UTF-8 to the function base64-encoded;
    /// the answer is a 400 problem and nothing is written.
    #[tokio::test]
    async fn a_base64_body_that_is_not_utf8_is_a_400_problem() {
        use base64::Engine;
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let body = base64::engine::general_purpose::STANDARD.encode(b"\xff\xfe{\"trusted\":true}");
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "PATCH /v1/sessions/{id}", "rawPath": "/v1/sessions/x", "rawQueryString": "",
            "headers": {"content-type": "application/json", "authorization": format!("Bearer {}", me.token)},
            "pathParameters": {"id": me.session_id.to_string()},
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
                "http": {"method": "PATCH", "path": "/v1/sessions/x", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "t"},
                "requestId": "r", "routeKey": "PATCH /v1/sessions/{id}", "stage": "$default", "time": "", "timeEpoch": 0},
            "body": body, "isBase64Encoded": true
        });
        let req = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event");
        let writes = store.writes();
        let (status, ct, problem) = parts(&handle(&store, req).await);
        assert_eq!((status, ct.as_str()), (400, "application/problem+json"), "{problem}");
        assert_eq!(store.writes(), writes);
    }
}
