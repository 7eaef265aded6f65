//! `trace-collector`: a stand-in for the collector extension (the ADOT collector layer) that the
//! deployed functions export their spans to. It takes OTLP/HTTP protobuf on `POST /v1/traces`,
//! as the collector does on `localhost:4318`, keeps every span, and answers `GET /spans` with
//! them as JSON, flattened so a test can read them: trace and span ids in hex, the span's name,
//! the `service.name` of its resource, its attributes, its events' and links' names and
//! attributes (every value as a string), its status, its scope and the resource: all that OTLP
//! carries, so a test of what spans may hold sees every part. It keeps the latest 20 000 spans (the local drain alone makes three a
//! second).
//!
//! Usage: trace-collector --port PORT

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{json, Map, Value};

/// Spans kept: older ones are dropped first.
const KEEP: usize = 20_000;

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(|v| text(Some(v))).collect::<Vec<_>>().join(","),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(attributes(&l.values)).to_string(),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter().map(|kv| (kv.key.clone(), Value::String(text(kv.value.as_ref())))).collect()
}

/// Every span of one export request, flattened.
fn flatten(request: &ExportTraceServiceRequest) -> Vec<Value> {
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or(Value::Null);
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .as_ref()
                .map(|s| json!({ "name": s.name, "version": s.version, "attributes": attributes(&s.attributes) }));
            for span in &scope_spans.spans {
                let events: Vec<Value> = span
                    .events
                    .iter()
                    .map(|e| json!({ "name": e.name, "attributes": attributes(&e.attributes) }))
                    .collect();
                spans.push(json!({
                    "trace_id": hex::encode(&span.trace_id),
                    "span_id": hex::encode(&span.span_id),
                    "parent_span_id": hex::encode(&span.parent_span_id),
                    "name": span.name,
                    "kind": span.kind,
                    "service": service,
                    "resource": resource,
                    "attributes": attributes(&span.attributes),
                    "events": events,
                    "links": span.links.iter().map(|l| json!({
                        "trace_id": hex::encode(&l.trace_id),
                        "span_id": hex::encode(&l.span_id),
                        "trace_state": l.trace_state,
                        "attributes": attributes(&l.attributes),
                    })).collect::<Vec<_>>(),
                    "trace_state": span.trace_state,
                    "status": span.status.as_ref().map(|st| json!({ "code": st.code, "message": st.message })),
                    "scope": scope,
                    "schema_url": scope_spans.schema_url,
                }));
            }
        }
    }
    spans
}

async fn serve(
    spans: Arc<Mutex<VecDeque<Value>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: Bytes| {
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            res.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        Ok(res)
    };
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/traces") => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            match ExportTraceServiceRequest::decode(body) {
                Ok(request) => {
                    let mut kept = spans.lock().unwrap_or_else(|p| p.into_inner());
                    kept.extend(flatten(&request));
                    let excess = kept.len().saturating_sub(KEEP);
                    kept.drain(..excess);
                    // An empty ExportTraceServiceResponse: everything accepted.
                    reply(StatusCode::OK, "application/x-protobuf", Bytes::new())
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", Bytes::from(format!("not OTLP protobuf: {e}"))),
            }
        }
        (&Method::GET, "/spans") => {
            let all = Value::Array(spans.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect());
            reply(StatusCode::OK, "application/json", Bytes::from(all.to_string()))
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 =
        args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).ok_or("--port PORT")?.parse()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("trace-collector: listening on 127.0.0.1:{port}");
    let spans = Arc::new(Mutex::new(VecDeque::new()));
    loop {
        let (stream, _) = listener.accept().await?;
        let spans = Arc::clone(&spans);
        tokio::spawn(async move {
            let service = service_fn(move |req| serve(Arc::clone(&spans), req));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("trace-collector: {e}");
            }
        });
    }
}
