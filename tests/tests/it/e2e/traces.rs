//! End to end, traces: a revoke's spans with its DynamoDB calls, and no secret in any of them.

use super::*;

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
