//! HTTP edge helpers shared by every function: the caller and its inputs, 401 before 400
//! (`caller_and`), bounded JSON bodies, query and path parameters, and responses (JSON, or RFC
//! 9457 problem+json for every error).

use lambda_http::http::{header, HeaderValue, Method, StatusCode};

/// `Method` re-exported so function crates need no `http` dependency of their own.
pub use lambda_http::http::Method as HttpMethod;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ServiceError;
use crate::token::SessionToken;

mod refusal;

pub use refusal::{EdgeRefusal, Refusal};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
const REALM: &str = "active-sessions";

fn response(status: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Session data is personal: no shared or browser cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => response(status, "application/json", Body::Binary(bytes)),
        Err(e) => problem(ServiceError::Internal(Box::new(e))),
    }
}

pub fn no_content() -> Response<Body> {
    let mut res = Response::new(Body::Empty);
    *res.status_mut() = StatusCode::NO_CONTENT;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The problem+json response for a refusal (the preflight: `204` with `Allow`); server-side
/// failures are logged with their cause.
pub fn problem(refusal: impl Into<Refusal>) -> Response<Body> {
    let refusal = refusal.into();
    if let Refusal::Edge(EdgeRefusal::Preflight { allow }) = refusal {
        let mut res = no_content();
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        return res;
    }
    let p = match &refusal {
        Refusal::Edge(edge) => edge.problem(),
        Refusal::Service(err) => err.problem(),
    };
    match &refusal {
        Refusal::Service(err) if p.status >= 500 => {
            // The cause's own text only: an SDK error's Debug form can carry the raw response.
            let cause = std::error::Error::source(err).map(|s| s.to_string()).unwrap_or_default();
            tracing::error!(status = p.status, error = %err, cause = %cause, "request failed");
        }
        _ => tracing::info!(status = p.status, problem = %p.kind, "request refused"),
    }
    let body = serde_json::to_vec(&p).unwrap_or_default();
    let mut res = response(p.status, "application/problem+json", Body::Binary(body));
    let headers = res.headers_mut();
    match refusal {
        Refusal::Edge(edge) => {
            if let Some(allow) = edge.allow() {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
        }
        Refusal::Service(ServiceError::MissingToken) => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"active-sessions\""));
        }
        Refusal::Service(ServiceError::InvalidToken | ServiceError::SignalRefused(_) | ServiceError::Replayed) => {
            let v = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"");
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        Refusal::Service(ServiceError::Unavailable(_) | ServiceError::DependencyUnavailable(_)) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_SECS));
        }
        Refusal::Service(_) => {}
    }
    res
}

/// How long an API function's request may run before it answers `503` itself: below the
/// function's timeout (10 s), so API Gateway never answers with its own bare 503.
pub const API_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);
/// The same for introspection (its function's timeout is 5 s).
pub const INTROSPECT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);

/// Runs a handler within `deadline` and turns its result into the response: past the deadline
/// (DynamoDB slow rather than stalled, call after call), a `503` problem with `Retry-After`.
pub async fn finish(
    deadline: std::time::Duration,
    work: impl std::future::Future<Output = Result<Response<Body>, Refusal>>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| Err(crate::StoreError::OutOfTime("the request's deadline").into()));
    let res = result.unwrap_or_else(problem);
    // The status and the time only: never a header, a body or the event.
    tracing::debug!(status = res.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "answered");
    res
}

/// Refuses any method but `allowed` with 405 and an `Allow` header (`allow`: the path's methods,
/// since API Gateway's `ANY` route sends every other method of the path to one function).
/// `OPTIONS` is the exception: a CORS preflight that reaches a function (an `ANY` route also
/// catches it) gets `204` with `Allow`, and API Gateway adds the configured CORS headers.
pub fn require_method(req: &Request, allowed: Method, allow: &'static str) -> Result<(), EdgeRefusal> {
    if req.method() == Method::OPTIONS {
        return Err(EdgeRefusal::Preflight { allow });
    }
    // `/v1/sessions/events` also matches `/v1/sessions/{id}`: whichever route API Gateway picks
    // for a method the events resource lacks, the answer is that resource's own 405.
    if req.uri().path().trim_end_matches('/') == "/v1/sessions/events" && req.method() != Method::GET {
        return Err(EdgeRefusal::MethodNotAllowed { allow: "GET" });
    }
    if req.method() == allowed {
        Ok(())
    } else {
        Err(EdgeRefusal::MethodNotAllowed { allow })
    }
}

/// The browser's session cookie: `__Host-` (Secure, `Path=/`, no `Domain`, so only this exact
/// origin sets or receives it), `HttpOnly` (page script never sees the token), `SameSite=Strict`.
pub const SESSION_COOKIE: &str = "__Host-as_session";

/// The session token the request presents: `Authorization: Bearer <token>` or, from a browser,
/// the session cookie, parsed (not yet validated). The header wins when both are present. A
/// state-changing request that presents the cookie must show it comes from this site's own pages
/// (`same_origin`), else it is refused here.
fn presented_token(req: &Request) -> Result<SessionToken, Refusal> {
    let Some(token) = authorization_bearer(req)? else {
        let token = session_cookie(req)?.ok_or(ServiceError::MissingToken)?;
        if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            same_origin(req)?;
        }
        return SessionToken::parse(&token).map_err(|_| ServiceError::InvalidToken.into());
    };
    SessionToken::parse(token).map_err(|_| ServiceError::InvalidToken.into())
}

/// The credential of `Authorization: Bearer <credential>`, not yet checked; `None` without the
/// header. Any other scheme, a malformed value, or the header given twice: `InvalidToken`.
pub fn authorization_bearer(req: &Request) -> Result<Option<&str>, ServiceError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ServiceError::InvalidToken);
    }
    let value = value.to_str().map_err(|_| ServiceError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ServiceError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ServiceError::InvalidToken);
    }
    Ok(Some(token.trim()))
}

/// The session cookie's value, if the request carries it (in one `Cookie` header or several: API
/// Gateway's payload 2.0 `cookies`, which lambda_http joins). Given twice, it is refused.
fn session_cookie(req: &Request) -> Result<Option<String>, ServiceError> {
    let mut found = None;
    for header in req.headers().get_all(header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == SESSION_COOKIE {
                    if found.is_some() {
                        return Err(ServiceError::InvalidToken);
                    }
                    found = Some(value.trim().to_owned());
                }
            }
        }
    }
    Ok(found)
}

/// CSRF: a cookie-authenticated request that changes state must come from this origin's pages.
/// Browsers say so with Fetch Metadata (`Sec-Fetch-Site: same-origin`); without it, `Origin` must
/// be the configured origin (`WEB_ORIGIN`). A token in the `Authorization` header needs neither:
/// a browser never adds it on its own.
fn same_origin(req: &Request) -> Result<(), EdgeRefusal> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-site") {
        Some("same-origin") => Ok(()),
        Some(_) => Err(EdgeRefusal::CrossSite),
        None => {
            let origin = crate::config::web_origin();
            match (header("origin"), origin) {
                (Some(sent), Some(ours)) if sent != "null" && sent.eq_ignore_ascii_case(ours) => Ok(()),
                _ => Err(EdgeRefusal::CrossSite),
            }
        }
    }
}

/// The body's bytes, if it fits in `MAX_BODY_BYTES` and is of the `expected` media type.
pub fn body_of<'r>(req: &'r Request, expected: &'static str) -> Result<&'r [u8], EdgeRefusal> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(EdgeRefusal::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(expected) {
        return Err(EdgeRefusal::UnsupportedMediaType { expected });
    }
    Ok(bytes)
}

/// A JSON body: `application/json`, at most `MAX_BODY_BYTES`, deserialized strictly.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, Refusal> {
    let bytes = body_of(req, "application/json")?;
    if bytes.is_empty() {
        return Err(ServiceError::BadRequest("the request body is empty; send a JSON object".into()).into());
    }
    serde_json::from_slice(bytes).map_err(|e| ServiceError::BadRequest(format!("invalid JSON body: {e}")).into())
}

/// A form body (`application/x-www-form-urlencoded`, at most `MAX_BODY_BYTES`), as RFC 7662 sends.
pub fn form_body<T: DeserializeOwned>(req: &Request) -> Result<T, Refusal> {
    use lambda_http::RequestPayloadExt;
    body_of(req, "application/x-www-form-urlencoded")?;
    match req.payload::<T>() {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(ServiceError::BadRequest("the request body is empty".into()).into()),
        Err(e) => Err(ServiceError::BadRequest(format!("invalid form body: {e}")).into()),
    }
}

/// A query-string parameter. A parameter given twice is refused rather than guessed at.
pub fn query_param(req: &Request, name: &str) -> Result<Option<String>, ServiceError> {
    let params = req.query_string_parameters_ref();
    let values: Vec<&str> = params.and_then(|p| p.all(name)).unwrap_or_default();
    match values.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        _ => Err(ServiceError::BadRequest(format!("query parameter `{name}` is given more than once"))),
    }
}

/// `limit`: a page size (20 when absent).
pub fn page_size(req: &Request) -> Result<crate::domain::PageSize, ServiceError> {
    match query_param(req, "limit")? {
        None => Ok(crate::domain::PageSize::default()),
        Some(raw) => crate::domain::PageSize::parse(&raw).map_err(|e| ServiceError::BadRequest(e.0)),
    }
}

/// `cursor`, checked for shape (the service binds it to the listing).
pub fn cursor(req: &Request) -> Result<Option<crate::cursor::Cursor>, ServiceError> {
    query_param(req, "cursor")?
        .map(|raw| crate::cursor::Cursor::parse(&raw).map_err(|e| ServiceError::BadRequest(e.0)))
        .transpose()
}

/// A `true`/`false` query flag, false when absent.
pub fn flag(req: &Request, name: &str) -> Result<bool, ServiceError> {
    match query_param(req, name)?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ServiceError::BadRequest(format!("{name} must be true or false"))),
    }
}

/// The session id in the path (`{id}`): absent is 404, malformed 400.
pub fn session_id(req: &Request) -> Result<crate::domain::SessionId, ServiceError> {
    let raw = path_param(req, "id").ok_or(ServiceError::NotFound)?;
    crate::domain::SessionId::parse(&raw).map_err(|e| ServiceError::BadRequest(e.0))
}

/// `scope`: `all` (the default) or `others`.
pub fn revoke_scope(req: &Request) -> Result<crate::service::RevokeScope, ServiceError> {
    crate::service::RevokeScope::parse(query_param(req, "scope")?.as_deref())
}

/// `reason`: an admin's note for the audit trail, checked.
pub fn note(req: &Request) -> Result<Option<String>, ServiceError> {
    crate::service::parse_note(query_param(req, "reason")?.as_deref())
}

/// A path parameter filled in by the router (`{id}`).
pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters_ref().and_then(|p| p.first(name)).map(str::to_owned)
}

/// The client's IP as API Gateway saw it (`requestContext.http.sourceIp`), for the audit trail.
pub fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    }
}

/// Whose sessions the route acts on: the caller's own, or (admin routes, `{user_id}` in the
/// path) a member's. A malformed user id answers like an unknown one.
pub fn subject(req: &Request) -> Result<crate::service::Subject, ServiceError> {
    match path_param(req, "user_id") {
        None => Ok(crate::service::Subject::Own),
        Some(raw) => {
            crate::domain::UserId::parse(&raw).map(crate::service::Subject::Member).map_err(|_| ServiceError::NotFound)
        }
    }
}

/// The caller: the token the request presents (`presented_token`) and the source IP.
pub fn caller(req: &Request) -> Result<crate::service::Caller, Refusal> {
    Ok(crate::service::Caller { token: presented_token(req)?, source_ip: source_ip(req) })
}

/// Who is calling and what they asked, in the order every route answers: the token first (`401`
/// when missing or malformed, `403` for a cookie from another site), then the inputs `parse`
/// reads from the request. An input that fails is refused (`400`, or `404` for a malformed id)
/// only once the token is known to be good (`service::after_token`), so a caller without a valid
/// token learns nothing about the inputs it sent. Every authenticated route goes through here.
pub async fn caller_and<S: crate::SessionStore, T>(
    store: &S,
    req: &Request,
    now_ms: i64,
    parse: impl FnOnce() -> Result<T, Refusal>,
) -> Result<(crate::service::Caller, T), Refusal> {
    let caller = caller(req)?;
    let inputs = crate::service::after_token(store, &caller.token, parse(), now_ms).await?;
    Ok((caller, inputs))
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[tokio::test]
    async fn a_request_past_its_deadline_is_a_503_with_retry_after() {
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Ok(no_content())
        };
        let started = std::time::Instant::now();
        let res = finish(std::time::Duration::from_millis(50), slow).await;
        assert!(started.elapsed() < std::time::Duration::from_millis(400));
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let fast = finish(std::time::Duration::from_millis(50), async { Ok(no_content()) }).await;
        assert_eq!(fast.status(), 204);
    }
}
