//! End to end, what products see: back-channel logouts, their retries, and the receipts.

use super::*;

/// The logout deliveries the stand-in product received for a session, once there are `n`.
pub(super) async fn wait_for_logouts(sid: &str, n: usize) -> Vec<Value> {
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
pub(super) async fn jwks() -> jsonwebtoken::jwk::JwkSet {
    let res = reqwest::get(format!("{}/.well-known/jwks.json", e2e_base_url())).await.expect("the JWKS route");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jwk-set+json");
    res.json().await.expect("a JWK Set")
}

/// Verifies a logout token as a product must (docs/deploy.md): the key its `kid` names in the JWKS,
/// `typ`, `iss`, `aud`, `exp`, `iat`, `sub`, and the event.
pub(super) fn verify_logout(jwt: &str, jwks: &jsonwebtoken::jwk::JwkSet) -> active_sessions::logout::LogoutClaims {
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
