//! Offboarding by the identity provider against an admin's offboarding, over the local stack's
//! HTTP API, interleaved in one run: `BENCH_OFFBOARDINGS` (200) members of a workspace whose
//! provider is the stand-in (`E2E_IDP_URL`), each with two sessions whose tokens introspection has
//! cached as valid; every other member offboarded by the provider (Global Token Revocation), the
//! rest by an admin (`DELETE /v1/admin/users/{id}/sessions`). For each path, from the request's
//! start: its answer; until both tokens are refused by introspection (polled from the answer on);
//! and until the stand-in product has taken both sessions' back-channel logouts (the receipts'
//! `DeliveredAt`). p50, p99 and max, and the raw DynamoDB PutItem p50 of the same run.
//!
//! Run by `infra/bench.sh idp` (the full local stack, release builds).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{e2e_base_url, introspect_active, quantiles_ms, TestTable};
use serde_json::{json, Value};

#[derive(Default)]
struct Path {
    answer: Vec<Duration>,
    refused: Vec<Duration>,
    delivered: Vec<Duration>,
    /// (member, epoch ms at the request's start, its session ids).
    started: Vec<(String, i64, Vec<String>)>,
}

fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn json_ok(res: reqwest::Response) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// When the product took the session's logout (epoch ms), once the receipt says so.
fn delivered_at(item: &std::collections::HashMap<String, AttributeValue>) -> Option<i64> {
    let receipts = item.get("Receipts")?.as_m().ok()?;
    receipts
        .values()
        .map(|r| r.as_m().ok()?.get("DeliveredAt")?.as_n().ok()?.parse().ok())
        .collect::<Option<Vec<i64>>>()?
        .into_iter()
        .max()
}

fn print(name: &str, what: &str, ds: Vec<Duration>, raw_p50: f64) {
    if let Some((p50, p99, max)) = quantiles_ms(ds.clone()) {
        println!(
            "  {name:<22} {what:<40} n={:<4} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms  max {max:>8.1} ms  p50/PutItem {:>6.1}x",
            ds.len(),
            p50 / raw_p50
        );
    }
}

#[tokio::main]
async fn main() {
    active_sessions::config::install_crypto_provider();
    let n: usize = std::env::var("BENCH_OFFBOARDINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let base = e2e_base_url();
    let idp = std::env::var("E2E_IDP_URL").expect("E2E_IDP_URL");
    let http = reqwest::Client::new();
    let tag = active_sessions::domain::SessionId::new().to_string().to_lowercase();
    let ws = format!("bench-{tag}");
    let gtr = format!("{base}/v1/workspaces/{ws}/global-token-revocation");
    let provider =
        json!({"issuer": idp, "jwks_url": format!("{idp}/jwks.json"), "audience": gtr, "subject_format": "email"});
    json_ok(
        http.put(format!("{base}/v1/internal/workspaces/{ws}/identity-provider")).json(&provider).send().await.unwrap(),
    )
    .await;
    let admin = format!("adm-{tag}");
    json_ok(
        http.put(format!("{base}/v1/internal/users/{admin}"))
            .json(&json!({"workspace_id": ws, "role": "admin"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sign_in = |user: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let body = json!({"user_id": user, "apps": ["chatgpt"], "client": "browser", "user_agent": "Mozilla/5.0 bench", "ip": "198.51.100.9"});
            let v = json_ok(http.post(format!("{base}/v1/internal/sessions")).json(&body).send().await.unwrap()).await;
            (v["session_id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
        }
    };
    let (_, admin_token) = sign_in(admin.clone()).await;
    let table = TestTable::e2e().await;

    let (mut by_idp, mut by_admin) = (Path::default(), Path::default());
    for i in 0..n * 2 {
        let member = format!("m{i}-{tag}");
        let email = format!("{member}@bench.example");
        json_ok(
            http.put(format!("{base}/v1/internal/users/{member}"))
                .json(&json!({"workspace_id": ws, "email": email}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let sessions = [sign_in(member.clone()).await, sign_in(member.clone()).await];
        for (_, token) in &sessions {
            assert!(introspect_active(&http, &base, token).await, "cached valid first");
        }
        let idp_path = i % 2 == 0;
        // Signing is the provider's work, before its request: not counted.
        let request = if idp_path {
            let token = http
                .get(format!("{idp}/sign/gtr"))
                .query(&[("audience", &gtr)])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let body = json!({"sub_id": {"format": "email", "email": email}});
            http.post(&gtr).bearer_auth(token).json(&body)
        } else {
            http.delete(format!("{base}/v1/admin/users/{member}/sessions")).bearer_auth(&admin_token)
        };
        let (started, started_ms) = (Instant::now(), epoch_ms());
        let res = request.send().await.unwrap();
        let answer = started.elapsed();
        assert!(res.status().is_success(), "{}", res.status());
        let path = if idp_path { &mut by_idp } else { &mut by_admin };
        for (_, token) in &sessions {
            while introspect_active(&http, &base, token).await {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        path.answer.push(answer);
        path.refused.push(started.elapsed());
        path.started.push((member, started_ms, sessions.iter().map(|(id, _)| id.clone()).collect()));
    }
    // The products' logouts: every session's receipt, once delivered.
    let deadline = Instant::now() + Duration::from_secs(300);
    for path in [&mut by_idp, &mut by_admin] {
        for (member, started_ms, ids) in &path.started {
            let mut last = 0;
            for id in ids {
                loop {
                    let item = table.get(&format!("USER#{member}"), &format!("SESSION#{id}")).await;
                    if let Some(at) = item.as_ref().and_then(delivered_at) {
                        last = last.max(at);
                        break;
                    }
                    assert!(Instant::now() < deadline, "no delivery for {member}/{id} in 300 s");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            path.delivered.push(Duration::from_millis((last - started_ms).max(0) as u64));
        }
    }
    // The raw DynamoDB operation of the same run: a PutItem on the same table.
    let mut raw = Vec::new();
    for i in 0..200 {
        let item = [("PK", format!("BENCH#{tag}")), ("SK", format!("{i}"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
            .collect();
        let started = Instant::now();
        table.put(item).await;
        raw.push(started.elapsed());
    }
    let raw_p50 = quantiles_ms(raw).unwrap().0;
    println!(
        "offboarding, {n} by the identity provider and {n} by an admin, interleaved (raw PutItem p50 {raw_p50:.2} ms)"
    );
    for (name, path) in [("identity provider", by_idp), ("admin (API)", by_admin)] {
        print(name, "request answered", path.answer, raw_p50);
        print(name, "both tokens refused by introspection", path.refused, raw_p50);
        print(name, "both logouts delivered to the product", path.delivered, raw_p50);
    }
}
