//! `local-gateway`: the local stack's API Gateway (see `local_stack::gateway`), on the public
//! port, in front of `cargo lambda watch`.
//!
//! Usage: local-gateway --port PORT --functions-port FUNCTIONS_PORT --template template.yaml (binds 127.0.0.1)

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use local_stack::gateway::{event, route, routes_from_template, HttpRequest, HttpResponse, Route};

/// API Gateway's payload limit for HTTP APIs is 10 MB; the functions refuse far less.
const MAX_BODY: usize = 10 * 1024 * 1024;

struct Gateway {
    routes: Vec<Route>,
    http: reqwest::Client,
    watch: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn handle(gw: &Gateway, req: Request<Incoming>, peer: std::net::IpAddr) -> HttpResponse {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/local/sign-in" && parts.method == hyper::Method::GET {
        return local_stack::gateway::local_sign_in(parts.uri.query());
    }
    let Some((route, params)) = route(&gw.routes, parts.method.as_str(), parts.uri.path()) else {
        return HttpResponse::gateway(404, "Not Found");
    };
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return HttpResponse::gateway(413, "Request Entity Too Large"),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let request = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers,
        body: &body,
        source_ip: peer.to_string(),
    };
    let event = event(route, &params, &request, now_ms());
    let url = format!("{}/2015-03-31/functions/{}/invocations", gw.watch, route.function);
    match gw.http.post(url).json(&event).send().await {
        Ok(res) if res.status().is_success() => match res.bytes().await {
            Ok(answer) => local_stack::gateway::response(&answer),
            Err(_) => HttpResponse::gateway(500, "Internal Server Error"),
        },
        Ok(res) => {
            eprintln!("local-gateway: {} answered {} (the function failed)", route.function, res.status());
            HttpResponse::gateway(500, "Internal Server Error")
        }
        Err(e) => {
            eprintln!("local-gateway: invoking {} failed: {e}", route.function);
            HttpResponse::gateway(503, "Service Unavailable")
        }
    }
}

fn to_hyper(r: HttpResponse) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(r.body)));
    *res.status_mut() = hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (hyper::header::HeaderName::try_from(k), hyper::header::HeaderValue::try_from(v)) {
            res.headers_mut().append(k, v);
        }
    }
    res
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: local-gateway --port PORT --functions-port FUNCTIONS_PORT --template template.yaml";
    let port: u16 = arg(&args, "--port").ok_or(usage)?.parse()?;
    let functions_port: u16 = arg(&args, "--functions-port").ok_or(usage)?.parse()?;
    let routes = routes_from_template(&std::fs::read_to_string(arg(&args, "--template").ok_or(usage)?)?)?;
    // The emulator runs one request per function at a time; a first call also builds and starts
    // the function, so allow it a while.
    // No pooled connections: `cargo lambda watch` closes idle ones, and a request sent on one it
    // is closing fails with "connection closed before message completed" before any function
    // sees it (a DELETE lost that way failed a browser test once). A fresh loopback connection
    // per request costs well under a millisecond.
    active_sessions::config::install_crypto_provider();
    let http =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).pool_max_idle_per_host(0).build()?;
    let gw = Arc::new(Gateway { routes, http, watch: format!("http://127.0.0.1:{functions_port}") });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("local-gateway: {} routes on 127.0.0.1:{port}, functions on 127.0.0.1:{functions_port}", gw.routes.len());
    loop {
        let (stream, peer) = listener.accept().await?;
        let gw = Arc::clone(&gw);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let gw = Arc::clone(&gw);
                async move { Ok::<_, Infallible>(to_hyper(handle(&gw, req, peer.ip()).await)) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("local-gateway: {e}");
            }
        });
    }
}
