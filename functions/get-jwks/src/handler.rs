use active_sessions::http::{self, HttpMethod};
use lambda_http::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::{Body, Request, Response};

/// How long products and caches may keep the key set. A rotation publishes the next key at
/// least this long (plus the reload TTL) before it signs anything.
pub use active_sessions::jwks::MAX_AGE_SECS;

/// `GET /.well-known/jwks.json`: no token needed; cacheable.
/// An empty set (no published key yet) is not cacheable: a product that fetched it must not
/// keep refusing every logout for an hour once the keys are published.
pub fn handle(jwks: &str, cacheable: bool, req: &Request) -> Response<Body> {
    if let Err(e) = http::require_method(req, HttpMethod::GET, "GET") {
        return http::problem(e);
    }
    let mut res = Response::new(Body::Text(jwks.to_owned()));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    let policy = if cacheable { format!("public, max-age={MAX_AGE_SECS}") } else { "no-store".to_owned() };
    if let Ok(v) = HeaderValue::from_str(&policy) {
        res.headers_mut().insert(CACHE_CONTROL, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::testing::request;

    #[test]
    fn serves_the_keys_and_refuses_other_methods() {
        let jwks = r#"{"keys":[{"kty":"EC"}]}"#;
        let res = handle(jwks, true, &request("GET", "/.well-known/jwks.json", None));
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/jwk-set+json");
        assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=3600");
        let empty = handle(r#"{"keys":[]}"#, false, &request("GET", "/.well-known/jwks.json", None));
        assert_eq!(empty.headers()[CACHE_CONTROL], "no-store", "an empty set is not kept");
        let res = handle(jwks, true, &request("POST", "/.well-known/jwks.json", None));
        assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().unwrap()), (405, "GET"));
    }
}
