//! `backchannel-receiver`: a stand-in product endpoint for the local stack and the tests. It
//! accepts OIDC back-channel logout POSTs (`logout_token=<jwt>`) on `/logout`, keeps them in
//! memory, and lists them on `GET /received` (JSON array of `{"token", "status"}`). To exercise
//! re-delivery, it answers 500 to the first delivery for any session whose user id starts with
//! `flaky-` (read from the token's payload; the signature is the receiving test's to verify).
//!
//! Usage: backchannel-receiver --port PORT   (binds 127.0.0.1 only)

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    received: Vec<Value>,
    failed_once: HashSet<String>,
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

async fn serve(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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
            let sub = claims(&token).and_then(|c| c["sub"].as_str().map(str::to_owned)).unwrap_or_default();
            let sid = claims(&token).and_then(|c| c["sid"].as_str().map(str::to_owned)).unwrap_or_default();
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            let fail = sub.starts_with("flaky-") && s.failed_once.insert(sid);
            let status = if fail { 500 } else { 200 };
            s.received.push(json!({ "token": token, "status": status }));
            if fail {
                reply(StatusCode::INTERNAL_SERVER_ERROR, "try again".into())
            } else {
                reply(StatusCode::OK, String::new())
            }
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
    let port: u16 =
        args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).ok_or("--port PORT")?.parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("backchannel-receiver: listening on 127.0.0.1:{port}");
    let state = Arc::new(Mutex::new(State::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| serve(Arc::clone(&state), req));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("backchannel-receiver: {e}");
            }
        });
    }
}
