use active_sessions::domain::WorkspaceId;
use active_sessions::egress::Egress;
use active_sessions::http::{self, HttpMethod};
use active_sessions::service::{self, ProviderInput};
use active_sessions::store::DirectoryStore;
use active_sessions::ServiceError;
use lambda_http::{Body, Request, Response};

/// `PUT /v1/internal/workspaces/{workspace_id}/identity-provider`: the identity system sets the
/// workspace's identity provider (IAM-authorised at the gateway, like the users route). `egress`:
/// which addresses its JWKS URL may reach.
pub async fn handle<S: DirectoryStore>(store: &S, egress: Egress, req: Request) -> Response<Body> {
    http::finish(http::API_DEADLINE, put(store, egress, &req)).await
}

async fn put<S: DirectoryStore>(store: &S, egress: Egress, req: &Request) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::PUT, "PUT")?;
    let raw = http::path_param(req, "workspace_id").ok_or(ServiceError::NotFound)?;
    let workspace = WorkspaceId::parse(&raw).map_err(|e| ServiceError::BadRequest(e.0))?;
    let input: ProviderInput = http::json_body(req)?;
    let view = service::put_identity_provider(store, &workspace, input, egress, service::now_ms()).await?;
    Ok(http::json(200, &view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::store::MemoryStore;
    use active_sessions::testing::{json_request, parts, with_path};

    fn put_req(ws: &str, body: &str) -> Request {
        let path = format!("/v1/internal/workspaces/{ws}/identity-provider");
        with_path(json_request("PUT", &path, body), &[("workspace_id", ws)])
    }

    fn body(issuer: &str, jwks: &str, aud: &str, format: &str) -> String {
        serde_json::json!({"issuer": issuer, "jwks_url": jwks, "audience": aud, "subject_format": format}).to_string()
    }

    const LOCAL: Egress = Egress { allow_loopback: true };

    #[tokio::test]
    async fn sets_the_provider_and_refuses_a_pair_another_workspace_holds() {
        let store = MemoryStore::new();
        let jwks = "http://127.0.0.1:9400/jwks.json";
        let res =
            handle(&store, LOCAL, put_req("acme", &body("http://127.0.0.1:9400", jwks, "acme-aud", "email"))).await;
        let (status, _, view) = parts(&res);
        assert_eq!(status, 200, "{view}");
        assert_eq!((view["workspace_id"].as_str(), view["subject_format"].as_str()), (Some("acme"), Some("email")));
        let ws = WorkspaceId::parse("acme").unwrap();
        assert_eq!(store.identity_provider(&ws).await.unwrap().unwrap().audience, "acme-aud");
        // Another workspace may share the issuer (as Google's do), with its own audience.
        let res =
            handle(&store, LOCAL, put_req("globex", &body("http://127.0.0.1:9400", jwks, "globex-aud", "iss_sub")));
        assert_eq!(res.await.status(), 200);
        // But not the pair.
        let res = handle(&store, LOCAL, put_req("initech", &body("http://127.0.0.1:9400", jwks, "acme-aud", "email")));
        let (status, ct, problem) = parts(&res.await);
        assert_eq!((status, ct.as_str()), (400, "application/problem+json"));
        assert!(problem["detail"].as_str().unwrap().contains("another workspace"), "{problem}");
        // acme moves to a new audience: its old pair is free again.
        let res = handle(&store, LOCAL, put_req("acme", &body("http://127.0.0.1:9400", jwks, "acme-2", "email")));
        assert_eq!(res.await.status(), 200);
        let res = handle(&store, LOCAL, put_req("initech", &body("http://127.0.0.1:9400", jwks, "acme-aud", "email")));
        assert_eq!(res.await.status(), 200);
    }

    #[tokio::test]
    async fn bad_configuration_is_refused_and_nothing_written() {
        let store = MemoryStore::new();
        let deployed = Egress::default();
        for (egress, ws, b) in [
            // Not https.
            (deployed, "acme", body("https://acme.okta.com", "http://acme.okta.com/keys", "a", "email")),
            // Loopback, without the local flag.
            (deployed, "acme", body("https://acme.okta.com", "https://127.0.0.1/keys", "a", "email")),
            (deployed, "acme", body("https://acme.okta.com", "https://localhost/keys", "a", "email")),
            // Private and link-local addresses, even with it.
            (LOCAL, "acme", body("https://acme.okta.com", "https://10.0.0.8/keys", "a", "email")),
            (LOCAL, "acme", body("https://acme.okta.com", "https://169.254.169.254/latest/meta-data", "a", "email")),
            (LOCAL, "acme", body("https://acme.okta.com", "https://[fd00::1]/keys", "a", "email")),
            // An unknown subject format; a missing field; an extra one.
            (LOCAL, "acme", body("http://127.0.0.1:1", "http://127.0.0.1:1/k", "a", "phone_number")),
            (LOCAL, "acme", r#"{"issuer":"http://127.0.0.1:1","jwks_url":"http://127.0.0.1:1/k","audience":"a"}"#.into()),
            (LOCAL, "acme", r#"{"issuer":"http://127.0.0.1:1","jwks_url":"http://127.0.0.1:1/k","audience":"a","subject_format":"email","x":1}"#.into()),
            // An issuer that is not a URL, an empty audience, a bad workspace id.
            (LOCAL, "acme", body("acme", "http://127.0.0.1:1/k", "a", "email")),
            (LOCAL, "acme", body("http://127.0.0.1:1", "http://127.0.0.1:1/k", " ", "email")),
            (LOCAL, "a#b", body("http://127.0.0.1:1", "http://127.0.0.1:1/k", "a", "email")),
        ] {
            let (status, ct, problem) = parts(&handle(&store, egress, put_req(ws, &b)).await);
            assert_eq!((status, ct.as_str()), (400, "application/problem+json"), "{b}: {problem}");
        }
        assert_eq!(store.writes(), 0);
    }
}
