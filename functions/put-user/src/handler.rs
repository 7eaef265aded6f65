use active_sessions::domain::UserId;
use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, UserProfileInput};
use active_sessions::{ServiceError, SessionStore};
use lambda_http::{Body, Request, Response};

/// `PUT /v1/internal/users/{user_id}`: the identity system sets a user's workspace, role and SSO
/// link (IAM-authorised at the gateway, like session creation).
pub async fn handle<S: SessionStore>(store: &S, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, put(store, &req)).await
}

async fn put<S: SessionStore>(store: &S, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::PUT, "PUT")?;
    let raw = http::path_param(req, "user_id").ok_or(ServiceError::NotFound)?;
    let user = UserId::parse(&raw).map_err(|e| ServiceError::BadRequest(e.0))?;
    let input: UserProfileInput = http::json_body(req)?;
    let view = service::put_user(store, &user, input).await?;
    Ok(http::json(200, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{Role, WorkspaceId};
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{json_request, parts, with_path};

    fn put_req(user: &str, body: &str) -> Request {
        with_path(json_request("PUT", &format!("/v1/internal/users/{user}"), body), &[("user_id", user)])
    }

    #[tokio::test]
    async fn sets_the_profile_and_moves_the_membership() {
        let store = MemoryStore::new();
        let res = handle(&store, put_req("bob", r#"{"workspace_id":"acme","role":"admin","sso_linked":true}"#)).await;
        let (status, _, body) = parts(&res);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], "admin");
        let bob = UserId::parse("bob").unwrap();
        let p = store.profile(&bob).unwrap();
        assert_eq!(p.workspace_id, Some(WorkspaceId::parse("acme").unwrap()));
        assert_eq!(p.role, Some(Role::Admin));
        assert!(p.is_sso_linked());
        let res = handle(&store, put_req("bob", r#"{"workspace_id":"globex"}"#)).await;
        assert_eq!(parts(&res).2["role"], "member");
        assert!(!store.profile(&bob).unwrap().is_sso_linked());
    }

    #[tokio::test]
    async fn refuses_bad_input_and_writes_nothing() {
        let store = MemoryStore::new();
        for (user, body) in [
            ("bob", r#"{"role":"admin"}"#),
            ("bob", r#"{"workspace_id":"a#b"}"#),
            ("bob", r#"{"workspace_id":"acme","role":"owner"}"#),
            ("bob", r#"{"sso_linked":"yes"}"#),
            ("bob", r#"{"extra":1}"#),
            ("a/b", r#"{}"#),
        ] {
            let (status, ct, _) = parts(&handle(&store, put_req(user, body)).await);
            assert_eq!((status, ct.as_str()), (400, "application/problem+json"), "{body}");
        }
        assert_eq!(store.writes(), 0);
    }
}
