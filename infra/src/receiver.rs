//! `backchannel-receiver`: a stand-in product endpoint for the local stack and the tests. It
//! accepts OIDC back-channel logout POSTs (`logout_token=<jwt>`) on `/logout`, keeps them in
//! memory, and lists them on `GET /received` (JSON array of `{"token", "status"}`). To exercise
//! retries, by the user id in the token's payload:
//! - `flaky-`: 500 to the first delivery of each session;
//! - `outage-`: 503 for `OUTAGE` (2 s) from the first delivery of each session, then 200 (a
//!   product down for a while);
//! - `dead-`: 503 always (a product that never comes back).
//!
//! For the benches, one receiver can also play a slow product (`--delay-ms`: every answer that
//! late), a flaky one (`--fail-first N`: 503 to the first N deliveries of each session), or one
//! that is down at first (`--closed-for-ms N`: its port is not bound, so connections are refused,
//! for N ms from its start; `GET /status` then says since when it listens, epoch ms). Each
//! delivery is listed with the epoch ms it arrived at (`at_ms`).
//!
//! As a product must (docs/deploy.md), it verifies each token with the key its `kid` names in the
//! service's JWKS (`--jwks-url`, fetched on first use and again for an unknown `kid`), for its
//! audience (`--aud`), and answers 400 to a token that does not verify; each delivery is listed
//! with `verified`.
//!
//! Usage: backchannel-receiver --port PORT [--jwks-url URL --aud AUD] [--delay-ms N] [--fail-first N]
//! [--closed-for-ms N]
//! (binds 127.0.0.1 only)

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// How long an `outage-` user's sessions find the product down.
const OUTAGE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    received: Vec<Value>,
    /// Epoch ms since when the port is bound.
    listening_since_ms: i64,
    failed_once: HashSet<String>,
    /// Per session: the first delivery's time and the deliveries so far.
    seen: HashMap<String, (Instant, u32)>,
}

/// How this receiver plays its product.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    delay: Duration,
    fail_first: u32,
}

/// How the receiver verifies what it receives.
struct Verifier {
    jwks_url: String,
    aud: String,
    http: reqwest::Client,
    jwks: tokio::sync::Mutex<Option<jsonwebtoken::jwk::JwkSet>>,
}

impl Verifier {
    async fn fetch(&self) -> Result<jsonwebtoken::jwk::JwkSet, reqwest::Error> {
        self.http.get(&self.jwks_url).send().await?.json().await
    }

    /// Fetches the JWKS ahead of the first delivery, retrying until the API is up, so a first
    /// delivery does not wait for it.
    async fn prefetch(self: Arc<Self>) {
        loop {
            if let Ok(set) = self.fetch().await {
                let mut jwks = self.jwks.lock().await;
                jwks.get_or_insert(set);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    async fn verify(&self, token: &str) -> bool {
        let Ok(header) = jsonwebtoken::decode_header(token) else { return false };
        let Some(kid) = header.kid else { return false };
        let mut jwks = self.jwks.lock().await;
        if jwks.as_ref().is_none_or(|set| set.find(&kid).is_none()) {
            match self.fetch().await {
                Ok(set) => *jwks = Some(set),
                Err(e) => {
                    eprintln!("backchannel-receiver: JWKS not fetched: {e}");
                    return false;
                }
            }
        }
        let Some(jwk) = jwks.as_ref().and_then(|set| set.find(&kid)) else { return false };
        let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(jwk) else { return false };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[&self.aud]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        header.typ.as_deref() == Some("logout+jwt")
            && jsonwebtoken::decode::<Value>(token, &key, &v).is_ok_and(|d| {
                d.claims["events"].get("http://schemas.openid.net/event/backchannel-logout").is_some()
                    && d.claims["sid"].is_string()
            })
    }
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    // The body is `logout_token=<jwt>`; a JWT holds only URL-safe characters and dots.
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

async fn serve(
    state: Arc<Mutex<State>>,
    verifier: Option<Arc<Verifier>>,
    behaviour: Behaviour,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        Ok(res)
    };
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/logout") => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let Some(token) = form_value(&body, "logout_token") else {
                return reply(StatusCode::BAD_REQUEST, "logout_token is required".into());
            };
            let verified = match &verifier {
                Some(v) => v.verify(&token).await,
                None => false,
            };
            if verifier.is_some() && !verified {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                s.received.push(json!({ "token": token, "status": 400, "verified": false, "at_ms": epoch_ms() }));
                return reply(StatusCode::BAD_REQUEST, "the logout token does not verify".into());
            }
            let sub = claims(&token).and_then(|c| c["sub"].as_str().map(str::to_owned)).unwrap_or_default();
            let sid = claims(&token).and_then(|c| c["sid"].as_str().map(str::to_owned)).unwrap_or_default();
            let status = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let (first, n) = *s.seen.entry(sid.clone()).and_modify(|(_, n)| *n += 1).or_insert((Instant::now(), 1));
                let status = if sub.starts_with("flaky-") && s.failed_once.insert(sid) {
                    500
                } else if sub.starts_with("dead-")
                    || (sub.starts_with("outage-") && first.elapsed() < OUTAGE)
                    || n <= behaviour.fail_first
                {
                    503
                } else {
                    200
                };
                s.received.push(json!({ "token": token, "status": status, "verified": verified, "at_ms": epoch_ms() }));
                status
            };
            tokio::time::sleep(behaviour.delay).await;
            reply(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), String::new())
        }
        (&Method::GET, "/status") => {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            reply(StatusCode::OK, json!({ "listening_since_ms": s.listening_since_ms }).to_string())
        }
        (&Method::GET, "/received") => {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            reply(StatusCode::OK, Value::Array(s.received.clone()).to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = arg("--port").ok_or("--port PORT")?.parse()?;
    active_sessions::config::install_crypto_provider();
    let verifier = match (arg("--jwks-url"), arg("--aud")) {
        (Some(jwks_url), Some(aud)) => Some(Arc::new(Verifier {
            jwks_url,
            aud,
            http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?,
            jwks: tokio::sync::Mutex::new(None),
        })),
        (None, None) => None,
        _ => return Err("--jwks-url and --aud go together".into()),
    };
    if let Some(v) = &verifier {
        tokio::spawn(Arc::clone(v).prefetch());
    }
    let number = |name: &str| arg(name).map(|v| v.parse::<u32>()).transpose();
    let behaviour = Behaviour {
        delay: Duration::from_millis(number("--delay-ms")?.unwrap_or(0).into()),
        fail_first: number("--fail-first")?.unwrap_or(0),
    };
    // Down at first: nothing listens on the port, so every connection is refused.
    tokio::time::sleep(Duration::from_millis(number("--closed-for-ms")?.unwrap_or(0).into())).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("backchannel-receiver: listening on 127.0.0.1:{port}");
    let state = Arc::new(Mutex::new(State { listening_since_ms: epoch_ms(), ..State::default() }));
    loop {
        let (stream, _) = listener.accept().await?;
        let (state, verifier) = (Arc::clone(&state), verifier.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| serve(Arc::clone(&state), verifier.clone(), behaviour, req));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("backchannel-receiver: {e}");
            }
        });
    }
}
