use active_sessions::http::{self, HttpMethod};
use active_sessions::{service, Policy, SessionStore};
use lambda_http::{Body, Request, Response};

/// `GET /v1/sessions/{id}/revocation` (your own) and
/// `GET /v1/admin/users/{user_id}/sessions/{id}/revocation` (a member's, for workspace admins).
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, get(store, policy, &req)).await
}

async fn get<S: SessionStore>(store: &S, policy: &Policy, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::GET, "GET")?;
    let now = service::now_ms();
    let (caller, (subject, id)) =
        http::caller_and(store, req, now, || Ok((http::subject(req)?, http::session_id(req)?))).await?;
    let token = caller.token;
    let view = service::revocation(store, policy, &token, &subject, id, now).await?;
    Ok(http::json(200, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, UserId};
    use active_sessions::model::{CachesToldBy, DeliveryStatus, ProductReceipt, ReceiptStep};
    use active_sessions::store::MemoryStore;
    use active_sessions::store::ReceiptsStore;
    use active_sessions::testing::{parts, request, sign_in, with_path};

    fn get_req(token: &str, id: &str) -> Request {
        with_path(request("GET", &format!("/v1/sessions/{id}/revocation"), Some(token)), &[("id", id)])
    }

    #[tokio::test]
    async fn a_revoked_session_shows_its_receipts() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let other = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let id = other.session_id.to_string();
        // Active: 409.
        let (status, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert_eq!(status, 409, "{body}");
        let revoke = with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(&me.token)), &[("id", &id)]);
        assert_eq!(service_revoke(&store, revoke).await, 204);
        // Revoked, before the fan-out: not complete, no products yet.
        let (status, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["reason"].as_str(), body["complete"].as_bool()), (Some("user_logout"), Some(false)));
        assert_eq!(body["revoked_by"], serde_json::json!({"type": "user", "id": "alice"}));
        assert!(body["caches_invalidated_at"].is_null());
        assert!(body["caches_invalidated_by"].is_null());
        // The fan-out's receipts: caches, one product delivered, one pending.
        let user = UserId::parse("alice").unwrap();
        // The caches let go; the products are on record before any is told: not complete.
        let products = ["chat-web".to_owned(), "codex".to_owned()];
        store
            .record_caches_invalidated(
                &user,
                other.session_id,
                service::now_ms(),
                CachesToldBy::WriteThrough,
                &products,
                0,
            )
            .await
            .unwrap();
        let (_, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert_eq!(body["complete"], false, "{body}");
        assert_eq!(body["caches_invalidated_by"], "write_through", "{body}");
        assert_eq!(body["products"].as_array().unwrap().len(), 2);
        assert_eq!(
            (body["products"][0]["status"].as_str(), body["products"][0]["attempts"].as_u64()),
            (Some("pending"), Some(0))
        );
        let delivered = ProductReceipt {
            status: DeliveryStatus::Delivered,
            attempts: 1,
            delivered_at: Some(service::now_ms()),
            last_attempt_at: Some(service::now_ms()),
            error: None,
            link: None,
        };
        let pending = ProductReceipt {
            status: DeliveryStatus::Pending,
            attempts: 2,
            delivered_at: None,
            last_attempt_at: Some(service::now_ms()),
            error: Some("http_503".into()),
            link: Some("a-link".into()),
        };
        let first = ReceiptStep::first();
        assert!(store.advance_receipt(&user, other.session_id, "chat-web", &first, &delivered).await.unwrap());
        assert!(store.advance_receipt(&user, other.session_id, "codex", &first, &pending).await.unwrap());
        let (_, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert!(body["caches_invalidated_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["products"][0]["product"], "chat-web");
        assert_eq!(body["products"][1]["status"], "pending");
        assert_eq!(body["products"][1]["attempts"], 2);
        assert!(body["products"][1].get("error").is_none(), "the error class stays internal");
        assert!(body["products"][1].get("link").is_none(), "the link stays internal");
        assert_eq!(body["complete"], false);
        let step = ReceiptStep { attempts: 2, link: Some("a-link".into()) };
        assert!(!store.advance_receipt(&user, other.session_id, "codex", &first, &delivered).await.unwrap(), "stale");
        assert!(store.advance_receipt(&user, other.session_id, "codex", &step, &delivered).await.unwrap());
        let (_, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert_eq!(body["complete"], true, "{body}");
    }

    async fn service_revoke(store: &MemoryStore, req: Request) -> u16 {
        // Through the service, as revoke-session does.
        let caller = active_sessions::http::caller(&req).unwrap();
        let id = active_sessions::http::session_id(&req).unwrap();
        let subject = active_sessions::service::Subject::Own;
        match service::revoke_session(store, &Policy::default(), &caller, &subject, id, service::now_ms()).await {
            Ok(_) => 204,
            Err(e) => e.status(),
        }
    }

    /// With Redis down the caches' time is the window's end, still ahead: not complete before it.
    #[tokio::test]
    async fn not_complete_before_the_caches_time() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let other = sign_in(&store, "alice", ClientKind::MobileApp).await;
        let id = other.session_id.to_string();
        let revoke = with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(&me.token)), &[("id", &id)]);
        assert_eq!(service_revoke(&store, revoke).await, 204);
        let user = UserId::parse("alice").unwrap();
        store
            .record_caches_invalidated(
                &user,
                other.session_id,
                service::now_ms() + 60_000,
                CachesToldBy::Window,
                &[],
                0,
            )
            .await
            .unwrap();
        let (_, _, body) = parts(&handle(&store, &Policy::default(), get_req(&me.token, &id)).await);
        assert_eq!(body["complete"], false, "{body}");
    }

    #[tokio::test]
    async fn unknown_foreign_and_malformed_ids() {
        let store = MemoryStore::new();
        let me = sign_in(&store, "alice", ClientKind::Browser).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let unknown = active_sessions::domain::SessionId::new().to_string();
        let foreign = bob.session_id.to_string();
        let a = parts(&handle(&store, &Policy::default(), get_req(&me.token, &unknown)).await);
        let b = parts(&handle(&store, &Policy::default(), get_req(&me.token, &foreign)).await);
        assert_eq!(a.0, 404);
        assert_eq!(
            (a.0, a.2["detail"].clone()),
            (b.0, b.2["detail"].clone()),
            "another user's answers like a missing one"
        );
        assert_eq!(parts(&handle(&store, &Policy::default(), get_req(&me.token, "nope")).await).0, 400);
        assert_eq!(parts(&handle(&store, &Policy::default(), get_req("forged", &unknown)).await).0, 401);
        let post = with_path(request("POST", "/v1/sessions/x/revocation", Some(&me.token)), &[("id", &unknown)]);
        assert_eq!(parts(&handle(&store, &Policy::default(), post).await).0, 405);
    }
}
