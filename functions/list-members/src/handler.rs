use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, MembersQuery};
use active_sessions::SessionStore;
use lambda_http::{Body, Request, Response};

pub async fn handle<S: SessionStore>(store: &S, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, list(store, &req)).await
}

async fn list<S: SessionStore>(store: &S, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::GET, "GET")?;
    let now = service::now_ms();
    let (caller, query) = http::caller_and(store, req, now, || {
        Ok(MembersQuery { limit: http::page_size(req)?, cursor: http::cursor(req)? })
    })
    .await?;
    let token = caller.token;
    Ok(http::json(200, &service::list_members(store, &token, &query, now).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, Role, UserId, WorkspaceId};
    use active_sessions::store::DirectoryStore;
    use active_sessions::store::{MemoryStore, ProfileUpdate};
    use active_sessions::testing::{parts, request, sign_in, with_query};

    async fn member(store: &MemoryStore, user: &str, ws: &str, role: Role, sso: bool) {
        let update = ProfileUpdate {
            workspace_id: Some(WorkspaceId::parse(ws).unwrap()),
            role,
            sso_linked: sso,
            identifiers: vec![],
        };
        store.put_profile(&UserId::parse(user).unwrap(), &update).await.unwrap();
    }

    #[tokio::test]
    async fn an_admin_pages_through_their_workspace_only() {
        let store = MemoryStore::new();
        member(&store, "ada", "acme", Role::Admin, false).await;
        for u in ["bob", "cy", "dee"] {
            member(&store, u, "acme", Role::Member, u == "cy").await;
        }
        member(&store, "eve", "globex", Role::Member, false).await;
        let admin = sign_in(&store, "ada", ClientKind::Browser).await;
        let res =
            handle(&store, with_query(request("GET", "/v1/admin/members", Some(&admin.token)), &[("limit", "3")]))
                .await;
        let (status, _, body) = parts(&res);
        assert_eq!(status, 200, "{body}");
        let ids: Vec<&str> =
            body["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["ada", "bob", "cy"]);
        assert_eq!(
            (body["members"][0]["role"].as_str(), body["members"][2]["sso_linked"].as_bool()),
            (Some("admin"), Some(true))
        );
        let cursor = body["next_cursor"].as_str().expect("more").to_owned();
        let res =
            handle(&store, with_query(request("GET", "/v1/admin/members", Some(&admin.token)), &[("cursor", &cursor)]))
                .await;
        let (_, _, body) = parts(&res);
        let ids: Vec<&str> =
            body["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["dee"], "never another workspace's member");
        assert_eq!(body["next_cursor"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn members_and_the_unaffiliated_are_refused_and_bad_input_is_a_400_after_the_token() {
        let store = MemoryStore::new();
        member(&store, "bob", "acme", Role::Member, false).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let loner = sign_in(&store, "lone", ClientKind::Browser).await;
        for token in [&bob.token, &loner.token] {
            let res = handle(&store, request("GET", "/v1/admin/members", Some(token))).await;
            assert_eq!(parts(&res).0, 403);
        }
        let res = handle(&store, request("GET", "/v1/admin/members", None)).await;
        assert_eq!(parts(&res).0, 401);
        let res = handle(&store, with_query(request("GET", "/v1/admin/members", None), &[("limit", "0")])).await;
        assert_eq!(parts(&res).0, 401, "401 before 400");
        member(&store, "ada", "acme", Role::Admin, false).await;
        let ada = sign_in(&store, "ada", ClientKind::Browser).await;
        let res =
            handle(&store, with_query(request("GET", "/v1/admin/members", Some(&ada.token)), &[("cursor", "YWJj")]))
                .await;
        assert_eq!(parts(&res).0, 400);
        let res = handle(&store, request("DELETE", "/v1/admin/members", Some(&ada.token))).await;
        assert_eq!(parts(&res).0, 405);
    }
}
