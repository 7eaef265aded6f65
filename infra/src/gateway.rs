//! The local API Gateway: an HTTP API (payload format 2.0) in front of `cargo lambda watch`, so
//! that locally a request reaches a function as it does deployed.
//!
//! `cargo lambda watch` has an HTTP front of its own, but it answers a body that is not UTF-8
//! with its own `500 text/plain` before any function runs, where API Gateway hands the function
//! the body base64-encoded. So the local stack's public port is this gateway instead: it routes
//! by the template's `HttpApi` events (the deployed routes, nothing else), builds the event as API
//! Gateway does (lower-case headers, repeated ones joined with commas, the route key, the path
//! parameters, `isBase64Encoded` for anything that is not UTF-8 text), invokes the function
//! through the emulator's invoke endpoint, and turns the function's answer back into HTTP. An
//! unknown route answers `404 {"message":"Not Found"}`, as API Gateway does.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One route: `METHOD /path/{param}` → the function (its binary's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
    segments: Vec<Segment>,
}

impl Route {
    pub fn new(method: &str, path: &str, function: &str) -> Self {
        let segments = path
            .trim_start_matches('/')
            .split('/')
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            })
            .collect();
        Self { method: method.to_uppercase(), path: path.to_owned(), function: function.to_owned(), segments }
    }

    /// The path parameters (percent-decoded, as API Gateway passes them) if `path` matches.
    fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), percent_encoding::percent_decode_str(part).decode_utf8_lossy().into());
                }
            }
        }
        Some(params)
    }
}

/// The routes of every `AWS::Serverless::Function` with `HttpApi` events in the SAM template.
pub fn routes_from_template(template: &str) -> Result<Vec<Route>, String> {
    let doc: yaml_serde::Value = yaml_serde::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = doc["Resources"].as_mapping().ok_or("template.yaml has no Resources")?;
    let mut routes = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() else { continue };
        let Some(events) = resource["Properties"]["Events"].as_mapping() else { continue };
        for event in events.values().filter(|e| e["Type"].as_str() == Some("HttpApi")) {
            let (Some(path), Some(method)) =
                (event["Properties"]["Path"].as_str(), event["Properties"]["Method"].as_str())
            else {
                return Err(format!("{name:?}: an HttpApi event without Path and Method"));
            };
            routes.push(Route::new(method, path, binary));
        }
    }
    if routes.is_empty() {
        return Err("template.yaml defines no HttpApi routes".into());
    }
    Ok(routes)
}

/// The route a request takes, with its path parameters.
/// The most specific route: a path with literal segments wins over one with parameters
/// (`/v1/sessions/events` over `/v1/sessions/{id}`), then the very method over `ANY`.
pub fn route<'r>(routes: &'r [Route], method: &str, path: &str) -> Option<(&'r Route, BTreeMap<String, String>)> {
    routes
        .iter()
        .filter(|r| r.method == method || r.method == "ANY")
        .filter_map(|r| r.matches(path).map(|p| (r, p)))
        .min_by_key(|(r, p)| (p.len(), r.method == "ANY"))
}

/// A request as the gateway received it.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// (name, value) in the order received; names in any case.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub source_ip: String,
}

fn is_text(content_type: Option<&str>) -> bool {
    let essence = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(essence.as_str(), "application/json" | "application/x-www-form-urlencoded" | "application/xml")
        || essence.ends_with("+json")
}

/// The payload 2.0 event API Gateway would send for `req` on `route`.
pub fn event(route: &Route, params: &BTreeMap<String, String>, req: &HttpRequest<'_>, now_ms: i64) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &req.headers {
        // Payload 2.0 moves cookies out of the headers into `cookies`, one entry per cookie.
        if name.eq_ignore_ascii_case("cookie") {
            cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
            continue;
        }
        headers.entry(name.to_ascii_lowercase()).and_modify(|v| *v = format!("{v},{value}")).or_insert(value.clone());
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in form_urlencoded(req.query.unwrap_or("")) {
        query.entry(name).and_modify(|v| *v = format!("{v},{value}")).or_insert(value);
    }
    let text = std::str::from_utf8(req.body).ok().filter(|_| is_text(headers.get("content-type").map(String::as_str)));
    let (body, base64) = match (req.body.is_empty(), text) {
        (true, _) => (Value::Null, false),
        (false, Some(text)) => (Value::String(text.to_owned()), false),
        (false, None) => (Value::String(STANDARD.encode(req.body)), true),
    };
    let route_key = format!("{} {}", route.method, route.path);
    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(route_key));
    event.insert("rawPath".into(), json!(req.path));
    event.insert("rawQueryString".into(), json!(req.query.unwrap_or("")));
    event.insert("headers".into(), json!(headers));
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), json!(query));
    }
    if !params.is_empty() {
        event.insert("pathParameters".into(), json!(params));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": format!("local-{now_ms}"),
            "routeKey": route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": now_ms,
        }),
    );
    event.insert("body".into(), body);
    event.insert("isBase64Encoded".into(), json!(base64));
    Value::Object(event)
}

fn form_urlencoded(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// An HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// What API Gateway answers itself (unknown route, a function that failed).
    pub fn gateway(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "message": message }).to_string().into_bytes(),
        }
    }
}

/// The local stack's sign-in link (`GET /local/sign-in?token=...&next=/path`): what the sign-in
/// service does deployed, set the session cookie and send the browser to the page. It exists only
/// here, in the local gateway: `template.yaml` has no such route (a test checks it).
pub fn local_sign_in(query: Option<&str>) -> HttpResponse {
    let params: BTreeMap<String, String> = form_urlencoded(query.unwrap_or("")).into_iter().collect();
    let token = params.get("token").map(String::as_str).unwrap_or("");
    // A session token is `ast1.<base64url>.<ulid>.<base64url>`: no character a cookie can't carry.
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return HttpResponse::gateway(400, "token is required");
    }
    // Only a path on this origin: never an open redirect.
    let next = params
        .get("next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control))
        .map_or("/settings/security/sessions", String::as_str);
    HttpResponse {
        status: 303,
        headers: vec![
            ("location".into(), next.to_owned()),
            ("set-cookie".into(), format!("__Host-as_session={token}; Path=/; Secure; HttpOnly; SameSite=Strict")),
            ("cache-control".into(), "no-store".into()),
        ],
        body: Vec::new(),
    }
}

/// The function's payload 2.0 answer as HTTP. An answer that is not one is API Gateway's 500.
pub fn response(answer: &[u8]) -> HttpResponse {
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(answer) else {
        return HttpResponse::gateway(500, "Internal Server Error");
    };
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok()) else {
        return HttpResponse::gateway(500, "Internal Server Error");
    };
    let mut headers = Vec::new();
    if let Some(Value::Object(h)) = answer.get("headers") {
        headers.extend(h.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))));
    }
    if let Some(Value::Object(h)) = answer.get("multiValueHeaders") {
        for (k, values) in h {
            for v in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
                headers.push((k.clone(), v.to_owned()));
            }
        }
    }
    let raw = answer.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if answer.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        match STANDARD.decode(raw) {
            Ok(b) => b,
            Err(_) => return HttpResponse::gateway(500, "Internal Server Error"),
        }
    } else {
        raw.as_bytes().to_vec()
    };
    HttpResponse { status, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        routes_from_template(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn routes_come_from_the_template() {
        let routes = routes();
        let (r, params) =
            route(&routes, "DELETE", "/v1/admin/users/a%40b.c/sessions/01M8DX495970Y9M04ZPN25BJFJ").unwrap();
        assert_eq!(r.function, "revoke-session");
        assert_eq!(params["user_id"], "a@b.c", "decoded");
        assert_eq!(params["id"], "01M8DX495970Y9M04ZPN25BJFJ");
        assert_eq!(route(&routes, "GET", "/v1/sessions").unwrap().0.function, "list-sessions");
        assert_eq!(route(&routes, "GET", "/v1/sessions/events").unwrap().0.function, "list-session-events");
        assert_eq!(route(&routes, "POST", "/v1/sessions").unwrap().0.method, "ANY", "other methods: the path's ANY");
        assert_eq!(route(&routes, "DELETE", "/v1/sessions").unwrap().0.function, "revoke-all-sessions");
        assert!(route(&routes, "GET", "/v1/nope").is_none());
        let (r, _) = route(&routes, "PATCH", "/v1/sessions/events").unwrap();
        assert_eq!((r.method.as_str(), r.function.as_str()), ("ANY", "list-session-events"), "the literal path first");
        assert!(route(&routes, "DELETE", "/v1/sessions/").is_none(), "an empty parameter");
    }

    #[test]
    fn a_body_that_is_not_utf8_text_is_delivered_base64_encoded() {
        let routes = routes();
        let (r, params) = route(&routes, "PATCH", "/v1/sessions/x").unwrap();
        let req = |body: &'static [u8], ct: &str| HttpRequest {
            method: "PATCH",
            path: "/v1/sessions/x",
            query: Some("a=1&a=2&b=x%20y"),
            headers: vec![
                ("Content-Type".into(), ct.into()),
                ("X-Twice".into(), "1".into()),
                ("x-twice".into(), "2".into()),
            ],
            body,
            source_ip: "127.0.0.1".into(),
        };
        let e = event(r, &params, &req(b"\xff\xfe&", "application/json"), 0);
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(STANDARD.decode(e["body"].as_str().unwrap()).unwrap(), b"\xff\xfe&");
        assert_eq!(e["headers"]["x-twice"], "1,2");
        assert_eq!(e["queryStringParameters"]["a"], "1,2");
        assert_eq!(e["queryStringParameters"]["b"], "x y");
        assert_eq!(e["pathParameters"]["id"], "x");
        assert_eq!(e["routeKey"], "PATCH /v1/sessions/{id}");
        let e = event(r, &params, &req(b"{\"trusted\":true}", "application/json"), 0);
        assert_eq!((e["isBase64Encoded"].as_bool(), e["body"].as_str()), (Some(false), Some("{\"trusted\":true}")));
    }

    #[test]
    fn answers_become_http() {
        let r = response(br#"{"statusCode":204,"headers":{"x-a":"1"},"body":"","isBase64Encoded":false}"#);
        assert_eq!((r.status, r.headers[0].clone(), r.body.len()), (204, ("x-a".into(), "1".into()), 0));
        let r = response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#);
        assert_eq!(r.body, b"hi");
        assert_eq!(response(b"not json").status, 500);
    }

    #[test]
    fn the_local_sign_in_link_sets_the_cookie_and_redirects_on_this_origin_only() {
        let r = local_sign_in(Some("token=ast1.YWxpY2U.01JD2Z5R8B3W4K9Q7N6M5X4Y3Z.c2VjcmV0&next=%2Fadmin%2Fmembers"));
        assert_eq!(r.status, 303);
        assert!(r.headers.contains(&("location".into(), "/admin/members".into())));
        let cookie = &r.headers.iter().find(|(k, _)| k == "set-cookie").unwrap().1;
        assert!(
            cookie.starts_with("__Host-as_session=ast1.")
                && cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
        );
        for next in ["https://evil.example/", "//evil.example/", "/%09/evil.example/", "/\\evil.example"] {
            let r = local_sign_in(Some(&format!("token=ast1.x&next={next}")));
            assert!(r.headers.contains(&("location".into(), "/settings/security/sessions".into())), "{next}");
        }
        assert_eq!(local_sign_in(Some("token=a%3Bb")).status, 400, "no cookie injection");
        assert_eq!(local_sign_in(None).status, 400);
    }

    #[test]
    fn cookies_travel_as_payload_2_cookies() {
        let route = Route::new("GET", "/v1/sessions", "list-sessions");
        let req = HttpRequest {
            method: "GET",
            path: "/v1/sessions",
            query: None,
            headers: vec![("Cookie".into(), "a=1; __Host-as_session=t".into())],
            body: b"",
            source_ip: "127.0.0.1".into(),
        };
        let e = event(&route, &BTreeMap::new(), &req, 0);
        assert_eq!(e["cookies"], json!(["a=1", "__Host-as_session=t"]));
        assert!(e["headers"].get("cookie").is_none());
    }
}
