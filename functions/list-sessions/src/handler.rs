use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, ListQuery};
use active_sessions::SessionStore;
use lambda_http::{Body, Request, Response};

/// `GET /v1/sessions?limit=&cursor=&include_cli=` and, for workspace admins,
/// `GET /v1/admin/users/{user_id}/sessions` (same shape, no current session).
pub async fn handle<S: SessionStore>(store: &S, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, list(store, &req)).await
}

async fn list<S: SessionStore>(store: &S, req: &Request) -> Result<Response<Body>, http::Refusal> {
    // Both its paths also take DELETE (revoke-all-sessions); any other method is routed here.
    http::require_method(req, HttpMethod::GET, "GET, DELETE")?;
    let now = service::now_ms();
    let (caller, (subject, query)) = http::caller_and(store, req, now, || {
        let query = ListQuery {
            limit: http::page_size(req)?,
            cursor: http::cursor(req)?,
            include_cli: http::flag(req, "include_cli")?,
        };
        Ok((http::subject(req)?, query))
    })
    .await?;
    let token = caller.token;
    let listing = service::list_sessions(store, &token, &subject, &query, now).await?;
    Ok(http::json(200, &listing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, SessionId, UserId};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, request, sign_in, with_query};
    use active_sessions::token::SessionToken;

    #[tokio::test]
    async fn lists_current_first_then_newest() {
        let store = MemoryStore::new();
        let a = sign_in(&store, "alice", ClientKind::Browser).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let b = sign_in(&store, "alice", ClientKind::DesktopApp).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let c = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let _other_user = sign_in(&store, "bob", ClientKind::Browser).await;

        let res = handle(&store, request("GET", "/v1/sessions", Some(&a.token))).await;
        let (status, ct, body) = parts(&res);
        assert_eq!(status, 200);
        assert_eq!(ct, "application/json");
        let ids: Vec<&str> = body["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [a.session_id.to_string(), c.session_id.to_string(), b.session_id.to_string()]);
        assert_eq!(body["sessions"][0]["current"], true);
        assert_eq!(body["sessions"][1]["current"], false);
        assert_eq!(body["sessions"][0]["device"]["label"], "Chrome on macOS");
        assert_eq!(body["sessions"][0]["location"], serde_json::Value::Null);
        assert_eq!(body["next_cursor"], serde_json::Value::Null);
        assert!(body["sessions"][0].get("token_hash").is_none());
    }

    #[tokio::test]
    async fn hides_cli_and_third_party_sessions_unless_asked() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        sign_in(&store, "alice", ClientKind::Cli).await;
        sign_in(&store, "alice", ClientKind::ThirdParty).await;
        sign_in(&store, "alice", ClientKind::ConnectedApp).await;
        let (_, _, body) = parts(&handle(&store, request("GET", "/v1/sessions", Some(&me.token))).await);
        assert_eq!(body["sessions"].as_array().unwrap().len(), 1);
        let req = with_query(request("GET", "/v1/sessions", Some(&me.token)), &[("include_cli", "true")]);
        let (_, _, body) = parts(&handle(&store, req).await);
        assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn pages_with_an_opaque_cursor() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        for _ in 0..5 {
            sign_in(&store, "alice", ClientKind::Browser).await;
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let mut q = vec![("limit", "2")];
            if let Some(c) = &cursor {
                q.push(("cursor", c.as_str()));
            }
            let (status, _, body) =
                parts(&handle(&store, with_query(request("GET", "/v1/sessions", Some(&me.token)), &q)).await);
            assert_eq!(status, 200);
            for s in body["sessions"].as_array().unwrap() {
                seen.push(s["id"].as_str().unwrap().to_owned());
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6, "no duplicates across pages");
    }

    #[tokio::test]
    async fn refuses_bad_parameters_and_foreign_cursors() {
        let store = MemoryStore::new();
        let alice = sign_in(&store, "alice", ClientKind::Browser).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        for q in [("limit", "0"), ("limit", "101"), ("limit", "ten"), ("cursor", "???"), ("include_cli", "yes")] {
            let res = handle(&store, with_query(request("GET", "/v1/sessions", Some(&alice.token)), &[q])).await;
            let (status, ct, body) = parts(&res);
            assert_eq!(status, 400, "{q:?}");
            assert_eq!(ct, "application/problem+json");
            assert_eq!(body["status"], 400);
        }
        // Bob's cursor doesn't work for Alice.
        sign_in(&store, "bob", ClientKind::Browser).await;
        let (_, _, page) = parts(
            &handle(&store, with_query(request("GET", "/v1/sessions", Some(&bob.token)), &[("limit", "1")])).await,
        );
        let bobs_cursor = page["next_cursor"].as_str().unwrap().to_owned();
        let req = with_query(request("GET", "/v1/sessions", Some(&alice.token)), &[("cursor", &bobs_cursor)]);
        assert_eq!(parts(&handle(&store, req).await).0, 400);
    }

    /// 401 before 400: a caller without a valid token learns nothing about its parameters.
    #[tokio::test]
    async fn a_bad_token_is_401_whatever_the_parameters() {
        let store = MemoryStore::new();
        let alice = sign_in(&store, "alice", ClientKind::Browser).await;
        let forged = SessionToken::generate(&UserId::parse("alice").unwrap(), SessionId::new()).unwrap();
        for q in [("limit", "0"), ("cursor", "???"), ("cursor", "QUJD"), ("include_cli", "yes")] {
            let req = with_query(request("GET", "/v1/sessions", Some(forged.expose())), &[q]);
            assert_eq!(parts(&handle(&store, req).await).0, 401, "{q:?}");
            let req = with_query(request("GET", "/v1/sessions", Some(&alice.token)), &[q]);
            assert_eq!(parts(&handle(&store, req).await).0, 400, "{q:?}");
        }
        let req = request("GET", "/v1/admin/users/a%23b/sessions", Some(forged.expose()));
        let req = active_sessions::testing::with_path(req, &[("user_id", "a#b")]);
        assert_eq!(parts(&handle(&store, req).await).0, 401, "a malformed user id too");
    }

    /// A forged token for a known user and session is refused before anything of the
    /// user's partition is read (not even alongside the token check).
    #[tokio::test]
    async fn a_forged_token_never_reads_the_partition() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let alice = sign_in(&*store, "alice", ClientKind::Browser).await;
        let known = SessionToken::parse(&alice.token).unwrap();
        let forged = SessionToken::generate(known.user_id(), known.session_id()).unwrap();
        for seed in 1..20 {
            let chaos = active_sessions::testing::ChaosStore::new(std::sync::Arc::clone(&store), seed);
            let res = handle(&chaos, request("GET", "/v1/sessions", Some(forged.expose()))).await;
            assert_eq!(res.status(), 401);
            assert_eq!(chaos.calls(), ["read"], "seed {seed}: only the token's own items are read");
        }
        // A good token still lists, with the current session first.
        let chaos = active_sessions::testing::ChaosStore::new(std::sync::Arc::clone(&store), 1);
        let (status, _, body) = parts(&handle(&chaos, request("GET", "/v1/sessions", Some(&alice.token))).await);
        assert_eq!((status, body["sessions"][0]["current"].as_bool()), (200, Some(true)));
    }

    #[tokio::test]
    async fn needs_a_valid_token() {
        let store = MemoryStore::new();
        let res = handle(&store, request("GET", "/v1/sessions", None)).await;
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let res = handle(&store, request("GET", "/v1/sessions", Some("not-a-token"))).await;
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
        let res = handle(&store, request("POST", "/v1/sessions", None)).await;
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()["allow"], "GET, DELETE", "the path's methods: DELETE is revoke-all's");
    }
}
