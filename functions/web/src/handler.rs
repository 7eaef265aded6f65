use active_sessions::http::{self, HttpMethod};
use active_sessions::ServiceError;
use lambda_http::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use lambda_http::{Body, Request, Response};

const SESSIONS_HTML: &str = include_str!("../assets/sessions.html");
const ADMIN_HTML: &str = include_str!("../assets/admin.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The page's own origin only: no inline script or style, no third party, never framed (a
/// log-out button must not be clickjackable), no plugins, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// What a path serves: its body, media type and caching.
fn resource(path: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match path {
        "/settings/security/sessions" => (SESSIONS_HTML, "text/html; charset=utf-8", "no-store"),
        "/admin/members" => (ADMIN_HTML, "text/html; charset=utf-8", "no-store"),
        // Assets change with a deploy; a short cache keeps a new page from meeting an old script.
        "/assets/app.js" => (APP_JS, "text/javascript; charset=utf-8", "public, max-age=300"),
        "/assets/app.css" => (APP_CSS, "text/css; charset=utf-8", "public, max-age=300"),
        _ => return None,
    })
}

fn security_headers(res: &mut Response<Body>) {
    let h = res.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
}

/// `GET /` (a redirect to the sessions page), the two pages, and `GET /assets/{file}`.
pub fn handle(req: &Request) -> Response<Body> {
    let path = req.uri().path();
    let allow = "GET";
    if let Err(e) = http::require_method(req, HttpMethod::GET, allow) {
        let mut res = http::problem(e);
        security_headers(&mut res);
        return res;
    }
    let mut res = if path == "/" {
        let mut res = Response::new(Body::Empty);
        *res.status_mut() = lambda_http::http::StatusCode::SEE_OTHER;
        res.headers_mut().insert(LOCATION, HeaderValue::from_static("/settings/security/sessions"));
        res
    } else if let Some((body, media, cache)) = resource(path) {
        let mut res = Response::new(Body::Text(body.to_owned()));
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media));
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        res
    } else {
        http::problem(ServiceError::NotFound)
    };
    security_headers(&mut res);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::testing::request;

    #[test]
    fn pages_carry_a_strict_policy_and_are_never_cached() {
        for path in ["/settings/security/sessions", "/admin/members"] {
            let res = handle(&request("GET", path, None));
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers();
            assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        }
    }

    #[test]
    fn the_pages_have_no_inline_script_or_style_and_name_no_other_origin() {
        for page in [SESSIONS_HTML, ADMIN_HTML] {
            assert!(!page.contains("<script>") && !page.contains("style="), "inline script or style");
            assert!(!page.contains(" on") || !page.contains("onclick="), "inline handlers");
            assert!(!page.contains("http://") && !page.contains("https://"), "a third-party URL");
        }
        // The one URL in the script is the SVG namespace, an identifier never fetched.
        let script = APP_JS.replace("http://www.w3.org/2000/svg", "");
        assert!(!script.contains("http://") && !script.contains("https://"), "the script calls only its own origin");
        assert!(!APP_JS.contains("innerHTML"), "text only, never markup from data");
    }

    #[test]
    fn assets_root_unknown_paths_and_other_methods() {
        let js = handle(&request("GET", "/assets/app.js", None));
        assert_eq!(js.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        let root = handle(&request("GET", "/", None));
        assert_eq!(
            (root.status().as_u16(), root.headers()[LOCATION].to_str().unwrap()),
            (303, "/settings/security/sessions")
        );
        assert_eq!(handle(&request("GET", "/assets/../Cargo.toml", None)).status(), 404);
        assert_eq!(handle(&request("GET", "/assets/nope.js", None)).status(), 404);
        let post = handle(&request("POST", "/settings/security/sessions", None));
        assert_eq!((post.status().as_u16(), post.headers()["allow"].to_str().unwrap()), (405, "GET"));
    }
}
