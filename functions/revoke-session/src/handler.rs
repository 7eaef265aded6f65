use active_sessions::cache::WriteThrough;
use active_sessions::http::{self, HttpMethod};
use active_sessions::{service, Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `DELETE /v1/sessions/{id}` and, for workspace admins, `DELETE /v1/admin/users/{user_id}/sessions/{id}`.
/// With the write-through off: the stream alone tells the caches (tests, and deployments without
/// a cache).
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, req: Request) -> Response<Body> {
    handle_through(store, policy, &WriteThrough::off(), req).await
}

/// Once the revocation is committed, `caches` tells the token caches before the answer goes.
pub async fn handle_through<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caches: &WriteThrough,
    req: Request,
) -> Response<Body> {
    http::finish(http::API_DEADLINE, revoke(store, policy, caches, &req)).await
}

async fn revoke<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caches: &WriteThrough,
    req: &Request,
) -> Result<Response<Body>, http::Refusal> {
    // Your own session's path also takes PATCH (update-session); an admin's, DELETE only (any
    // other method on it is routed here).
    let allow = if req.uri().path().starts_with("/v1/admin/") { "DELETE" } else { "DELETE, PATCH" };
    http::require_method(req, HttpMethod::DELETE, allow)?;
    let now = service::now_ms();
    let (caller, (subject, target)) =
        http::caller_and(store, req, now, || Ok((http::subject(req)?, http::session_id(req)?))).await?;
    if let Some(notice) = service::revoke_session(store, policy, &caller, &subject, target, now).await? {
        caches.tell(&notice, service::now_ms()).await;
    }
    Ok(http::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, SessionId, UserId};
    use active_sessions::model::{RevokeReason, SessionStatus};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, request, sign_in, with_path};

    fn delete(token: &str, id: &str) -> Request {
        with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(token)), &[("id", id)])
    }

    /// A browser request: the session cookie instead of the header, with `headers`.
    fn from_browser(method: &str, path: &str, token: &str, headers: &[(&'static str, &str)]) -> Request {
        let mut req = request(method, path, None);
        let h = req.headers_mut();
        h.insert("cookie", format!("theme=dark; __Host-as_session={token}").parse().unwrap());
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        req
    }

    /// The page's cookie authenticates like the header, but a change it authenticates must
    /// come from this origin's own pages (Fetch Metadata); cross-site, nothing is written.
    #[tokio::test]
    async fn a_cookie_revokes_only_from_the_same_origin() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let other = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let path = format!("/v1/sessions/{}", other.session_id);
        let id = other.session_id.to_string();
        for headers in [
            vec![("sec-fetch-site", "same-site"), ("origin", "http://127.0.0.1:4444")],
            vec![("sec-fetch-site", "cross-site")],
            vec![],
            vec![("origin", "https://evil.example")],
        ] {
            let req = with_path(from_browser("DELETE", &path, &me.token, &headers), &[("id", &id)]);
            let writes = store.writes();
            let res = handle(&store, &policy, req).await;
            let (status, _, body) = parts(&res);
            assert_eq!(status, 403, "{headers:?}");
            assert!(body["type"].as_str().unwrap().ends_with("cross-site-request"), "{body}");
            assert_eq!(store.writes(), writes, "nothing written for {headers:?}");
        }
        let alice = UserId::parse("alice").unwrap();
        assert_eq!(store.get(&alice, other.session_id).unwrap().status, SessionStatus::Active);
        let req =
            with_path(from_browser("DELETE", &path, &me.token, &[("sec-fetch-site", "same-origin")]), &[("id", &id)]);
        assert_eq!(handle(&store, &policy, req).await.status(), 204);
        assert_eq!(store.get(&alice, other.session_id).unwrap().status, SessionStatus::Revoked);
        // A token in the header is no browser's doing: no origin check.
        let third = sign_in(&store, "alice", ClientKind::Cli).await;
        let mut req = request("DELETE", &format!("/v1/sessions/{}", third.session_id), Some(&me.token));
        req.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
        let req = with_path(req, &[("id", &third.session_id.to_string())]);
        assert_eq!(handle(&store, &policy, req).await.status(), 204);
        // A revoked cookie is a 401 like a revoked header token.
        let res = handle(
            &store,
            &policy,
            with_path(
                from_browser(
                    "DELETE",
                    &path,
                    "ast1.bm9wZQ.01JD2Z5R8B3W4K9Q7N6M5X4Y3Z.eA",
                    &[("sec-fetch-site", "same-origin")],
                ),
                &[("id", &id)],
            ),
        )
        .await;
        assert_eq!(res.status(), 401);
    }

    #[tokio::test]
    async fn revokes_another_of_my_sessions_softly() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let laptop = sign_in(&store, "alice", ClientKind::DesktopApp).await;
        let res = handle(&store, &policy, delete(&me.token, &laptop.session_id.to_string())).await;
        assert_eq!(res.status(), 204);
        let stored = store.get(&UserId::parse("alice").unwrap(), laptop.session_id).unwrap();
        assert_eq!(stored.status, SessionStatus::Revoked);
        assert_eq!(stored.revoke_reason, Some(RevokeReason::UserLogout));
        assert_eq!(stored.revoked_by.as_deref(), Some("user:alice"));
        assert!(stored.expires_at <= stored.revoked_at.unwrap() / 1000 + policy.tombstone_secs);
        // The revoked token is dead on the next request, and a repeat is still 204.
        let res = handle(&store, &policy, delete(&laptop.token, &me.session_id.to_string())).await;
        assert_eq!(res.status(), 401);
        let res = handle(&store, &policy, delete(&me.token, &laptop.session_id.to_string())).await;
        assert_eq!(res.status(), 204);
    }

    #[tokio::test]
    async fn the_current_session_is_a_conflict() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let res = handle(&store, &Policy::default(), delete(&me.token, &me.session_id.to_string())).await;
        let (status, ct, body) = parts(&res);
        assert_eq!(status, 409);
        assert_eq!(ct, "application/problem+json");
        assert!(body["detail"].as_str().unwrap().contains("log out of all"));
        assert_eq!(store.writes(), 1, "only the sign-in");
    }

    #[tokio::test]
    async fn someone_elses_session_answers_exactly_like_a_missing_one() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let alice = sign_in(&store, "alice", ClientKind::Browser).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let foreign = handle(&store, &policy, delete(&alice.token, &bob.session_id.to_string())).await;
        let missing = handle(&store, &policy, delete(&alice.token, &SessionId::new().to_string())).await;
        assert_eq!(foreign.status(), 404);
        assert_eq!(parts(&foreign), parts(&missing));
        assert_eq!(foreign.headers(), missing.headers());
        let bobs = store.get(&UserId::parse("bob").unwrap(), bob.session_id).unwrap();
        assert_eq!(bobs.status, SessionStatus::Active);
    }

    #[tokio::test]
    async fn bad_ids_and_tokens_are_refused() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        assert_eq!(handle(&store, &policy, delete(&me.token, "not-a-ulid")).await.status(), 400);
        assert_eq!(handle(&store, &policy, delete("garbage", &me.session_id.to_string())).await.status(), 401);
        // 401 before 400: a malformed id with a token that is not valid.
        let forged = active_sessions::token::SessionToken::generate(&UserId::parse("alice").unwrap(), SessionId::new());
        assert_eq!(handle(&store, &policy, delete(forged.unwrap().expose(), "not-a-ulid")).await.status(), 401);
        let no_token = with_path(request("DELETE", "/v1/sessions/x", None), &[("id", "x")]);
        assert_eq!(handle(&store, &policy, no_token).await.status(), 401);
        assert_eq!(store.writes(), 1);
    }
}
