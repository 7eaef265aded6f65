use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, NewSession};
use active_sessions::{Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `POST /v1/internal/sessions`: called by the sign-in service (IAM-authorised at the gateway).
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, create(store, policy, &req)).await
}

async fn create<S: SessionStore>(store: &S, policy: &Policy, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::POST, "POST")?;
    let input: NewSession = http::json_body(req)?;
    let created = service::create_session(store, policy, input, service::now_ms()).await?;
    Ok(http::json(201, &created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::UserId;
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{json_request, parts, request, CHROME_MAC};
    use active_sessions::token::SessionToken;

    fn body(extra: &str) -> String {
        format!(
            r#"{{"user_id":"alice","apps":["chatgpt","codex"],"client":"browser","user_agent":"{CHROME_MAC}","ip":"198.51.100.4"{extra}}}"#
        )
    }

    #[tokio::test]
    async fn creates_a_session_and_shows_the_token_once() {
        let store = MemoryStore::new();
        let req = json_request(
            "POST",
            "/v1/internal/sessions",
            &body(r#","location":{"city":"Lyon","country":"FR"},"trusted":true,"ttl_seconds":3600"#),
        );
        let res = handle(&store, &Policy::default(), req).await;
        let (status, ct, json) = parts(&res);
        assert_eq!(status, 201, "{json}");
        assert_eq!(ct, "application/json");
        let token = SessionToken::parse(json["token"].as_str().unwrap()).unwrap();
        assert_eq!(token.session_id().to_string(), json["session_id"]);
        let stored = store.get(&UserId::parse("alice").unwrap(), token.session_id()).unwrap();
        assert_eq!(stored.token_hash, token.hash().as_str(), "only the hash is stored");
        assert!(!format!("{stored:?}").contains(token.expose()));
        assert!(stored.trusted);
        assert_eq!(stored.device.label, "Chrome on macOS");
        assert_eq!(stored.location.unwrap().city.as_deref(), Some("Lyon"));
        assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn bad_input_is_a_4xx_and_writes_nothing() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let cases = [
            // A trailing comma, then a stray closing brace.
            (body(","), 400),
            (body("").replace("\"}", "\"}}"), 400),
            ("{not json".to_owned(), 400),
            (body(r#","ttl_seconds":"soon""#), 400),
            (body("").replace("\"browser\"", "\"toaster\""), 400),
            (body("").replace("[\"chatgpt\",\"codex\"]", "[]"), 400),
            (body("").replace("\"alice\"", "\"a#b\""), 400),
            (body("").replace("198.51.100.4", "not-an-ip"), 400),
            (body(r#","admin":true"#), 400),
            (body(r#","ttl_seconds":5"#), 400),
            (body(r#","location":{"city":7}"#), 400),
            // Text that misleads whoever reads it on the sessions page (bidi override, zero-width).
            (body(r#","location":{"city":"Par\u200bis"}"#), 400),
            (body(r#","location":{"region":"\u202egnp.exe"}"#), 400),
            (body("").replace("Mozilla", "Mozilla\\u2028"), 400),
            // Only the configured first-party apps.
            (body("").replace("\"codex\"", "\"minecraft\""), 400),
            (format!(r#"{{"user_id":"alice","pad":"{}"}}"#, "x".repeat(17 * 1024)), 413),
            ("".to_owned(), 400),
        ];
        for (payload, want) in cases {
            let res = handle(&store, &policy, json_request("POST", "/v1/internal/sessions", &payload)).await;
            let (status, ct, json) = parts(&res);
            assert_eq!(status, want, "{payload:.80}: {json}");
            assert_eq!(ct, "application/problem+json");
            assert!(json["detail"].is_string() && json["title"].is_string() && json["type"].is_string());
        }
        let mut wrong_type = json_request("POST", "/v1/internal/sessions", &body(""));
        wrong_type.headers_mut().insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(handle(&store, &policy, wrong_type).await.status(), 415);
        assert_eq!(handle(&store, &policy, request("GET", "/v1/internal/sessions", None)).await.status(), 405);
        assert_eq!(store.writes(), 0, "nothing written on a refused request");
    }
}
