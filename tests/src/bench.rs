//! What the benches share: quantiles, and introspection as a product calls it.

use std::time::Duration;

/// p50, p99 and max of `ds`, in ms (nearest rank); `None` when empty.
pub fn quantiles_ms(mut ds: Vec<Duration>) -> Option<(f64, f64, f64)> {
    ds.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ds[((ds.len() as f64 * q).ceil() as usize).clamp(1, ds.len()) - 1];
    (!ds.is_empty()).then(|| (ms(at(0.5)), ms(at(0.99)), ms(*ds.last().unwrap())))
}

/// Whether introspection over HTTP (`POST {base}/v1/internal/introspect`) says `token` is active.
pub async fn introspect_active(http: &reqwest::Client, base: &str, token: &str) -> bool {
    let res = http
        .post(format!("{base}/v1/internal/introspect"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("JSON");
    body["active"] == true
}
