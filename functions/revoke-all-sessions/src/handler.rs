use active_sessions::cache::WriteThrough;
use active_sessions::http::{self, HttpMethod};
use active_sessions::service;
use active_sessions::{Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `DELETE /v1/sessions[?scope=all|others]` and, for workspace admins (offboarding),
/// `DELETE /v1/admin/users/{user_id}/sessions[?reason=...]`.
/// With the write-through off: the stream alone tells the caches (tests, and deployments without
/// a cache).
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, req: Request) -> Response<Body> {
    handle_through(store, policy, &WriteThrough::off(), req).await
}

/// Once the watermark is committed, `caches` tells the token caches before the answer goes.
pub async fn handle_through<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caches: &WriteThrough,
    req: Request,
) -> Response<Body> {
    http::finish(http::API_DEADLINE, revoke_all(store, policy, caches, &req)).await
}

async fn revoke_all<S: SessionStore>(
    store: &S,
    policy: &Policy,
    caches: &WriteThrough,
    req: &Request,
) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::DELETE, "GET, DELETE")?;
    let now = service::now_ms();
    let (caller, (subject, scope, note)) =
        http::caller_and(store, req, now, || Ok((http::subject(req)?, http::revoke_scope(req)?, http::note(req)?)))
            .await?;
    let revoked = service::revoke_all(store, policy, &caller, &subject, scope, note, now).await?;
    if let Some(notice) = &revoked.notice {
        caches.tell(notice, service::now_ms()).await;
    }
    Ok(http::json(200, &revoked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, request, sign_in, with_query};

    #[tokio::test]
    async fn revokes_everything_including_the_current_session() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let other = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let (status, _, body) =
            parts(&handle(&store, &Policy::default(), request("DELETE", "/v1/sessions", Some(&me.token))).await);
        assert_eq!(status, 200);
        assert_eq!(body["revoked"], 2);
        for t in [&me.token, &other.token] {
            assert_eq!(
                handle(&store, &Policy::default(), request("DELETE", "/v1/sessions", Some(t))).await.status(),
                401
            );
        }
        assert_eq!(store.watermark(&UserId::parse("bob").unwrap()), None);
        let (status, _, body) =
            parts(&handle(&store, &Policy::default(), request("DELETE", "/v1/sessions", Some(&bob.token))).await);
        assert_eq!((status, body["revoked"].as_u64()), (200, Some(1)), "bob is untouched");
    }

    #[tokio::test]
    async fn others_keeps_the_current_session() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let a = sign_in(&store, "alice", ClientKind::MobileApp).await;
        sign_in(&store, "alice", ClientKind::Cli).await;
        let req = with_query(request("DELETE", "/v1/sessions", Some(&me.token)), &[("scope", "others")]);
        let (status, _, body) = parts(&handle(&store, &Policy::default(), req).await);
        assert_eq!((status, body["revoked"].as_u64()), (200, Some(2)));
        assert_eq!(
            handle(&store, &Policy::default(), request("DELETE", "/v1/sessions", Some(&a.token))).await.status(),
            401
        );
        // A second "others" revokes nothing more, and the caller is still signed in.
        let req = with_query(request("DELETE", "/v1/sessions", Some(&me.token)), &[("scope", "others")]);
        let (status, _, body) = parts(&handle(&store, &Policy::default(), req).await);
        assert_eq!((status, body["revoked"].as_u64()), (200, Some(0)));
    }

    #[tokio::test]
    async fn a_bad_scope_is_refused_and_writes_nothing() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let req = with_query(request("DELETE", "/v1/sessions", Some(&me.token)), &[("scope", "everything")]);
        let (status, ct, _) = parts(&handle(&store, &Policy::default(), req).await);
        assert_eq!((status, ct.as_str()), (400, "application/problem+json"));
        assert_eq!(handle(&store, &Policy::default(), request("DELETE", "/v1/sessions", None)).await.status(), 401);
        assert_eq!(
            handle(&store, &Policy::default(), request("PUT", "/v1/sessions", Some(&me.token))).await.status(),
            405
        );
        assert_eq!(store.writes(), 1, "only the sign-in");
    }
}
