use active_sessions::http::{self, HttpMethod};
use active_sessions::{service, Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `GET /v1/sessions/events` (your own) and `GET /v1/admin/users/{user_id}/events` (a member's,
/// for workspace admins): revocations, newest first, `?limit=&cursor=`.
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, list(store, policy, &req)).await
}

async fn list<S: SessionStore>(store: &S, policy: &Policy, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::GET, "GET")?;
    let now = service::now_ms();
    let (caller, (subject, limit, cursor)) =
        http::caller_and(store, req, now, || Ok((http::subject(req)?, http::page_size(req)?, http::cursor(req)?)))
            .await?;
    let token = caller.token;
    let events = service::list_events(store, policy, &token, &subject, limit, cursor.as_ref(), now).await?;
    Ok(http::json(200, &events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::ClientKind;
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{parts, request, sign_in, with_path, with_query};

    #[tokio::test]
    async fn shows_my_revocations_newest_first_with_a_summary() {
        let store = MemoryStore::new();
        let policy = Policy::default();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let phone = sign_in(&store, "alice", ClientKind::MobileApp).await;
        sign_in(&store, "alice", ClientKind::DesktopApp).await;
        let caller = service::Caller {
            token: active_sessions::token::SessionToken::parse(&me.token).unwrap(),
            source_ip: Some("192.0.2.1".into()),
        };
        let own = service::Subject::Own;
        service::revoke_session(&store, &policy, &caller, &own, phone.session_id, service::now_ms()).await.unwrap();
        service::revoke_all(&store, &policy, &caller, &own, service::RevokeScope::Others, None, service::now_ms() + 1)
            .await
            .unwrap();

        let (status, _, body) =
            parts(&handle(&store, &Policy::default(), request("GET", "/v1/sessions/events", Some(&me.token))).await);
        assert_eq!(status, 200);
        let events = body["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["reason"], "user_logout_others");
        assert_eq!(events[0]["count"], 1);
        assert_eq!(events[1]["reason"], "user_logout");
        assert_eq!(events[1]["summary"], "Mobile app on macOS signed out by you");
        assert_eq!(events[1]["source_ip"], "192.0.2.1");
        assert_eq!(events[1]["sessions"][0]["id"], phone.session_id.to_string());

        let (_, _, page) = parts(
            &handle(
                &store,
                &Policy::default(),
                with_query(request("GET", "/v1/sessions/events", Some(&me.token)), &[("limit", "1")]),
            )
            .await,
        );
        assert_eq!(page["events"].as_array().unwrap().len(), 1);
        assert!(page["next_cursor"].is_string());
    }

    #[tokio::test]
    async fn strangers_get_404_for_someone_elses_events() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        sign_in(&store, "bob", ClientKind::Browser).await;
        let req = with_path(request("GET", "/v1/admin/users/bob/events", Some(&me.token)), &[("user_id", "bob")]);
        assert_eq!(handle(&store, &Policy::default(), req).await.status(), 404);
    }
}
