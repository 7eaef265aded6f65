use active_sessions::cache::WriteThrough;
use active_sessions::domain::WorkspaceId;
use active_sessions::http::{self, HttpMethod};
use active_sessions::identity::subject_users;
use active_sessions::idp::{Kind, ProviderKeys, Rejection};
use active_sessions::model::RevokeReason;
use active_sessions::service::{self, SignalAuthError, SignalOutcome};
use active_sessions::{Policy, ServiceError, SessionStore};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

/// The request's body: the user, as an RFC 9493 subject identifier (`subject` is the name the
/// draft and Okta used before `sub_id`).
#[derive(Debug, Deserialize)]
struct GtrRequest {
    #[serde(default)]
    sub_id: Option<serde_json::Value>,
    #[serde(default)]
    subject: Option<serde_json::Value>,
}

/// With the write-through off: the stream alone tells the caches.
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, keys: &ProviderKeys, req: Request) -> Response<Body> {
    handle_through(store, policy, keys, &WriteThrough::off(), req).await
}

/// `POST /v1/workspaces/{workspace_id}/global-token-revocation`, authenticated by a JWT the
/// workspace's identity provider signed (`Authorization: Bearer`). `204` once every session of
/// the member it names is revoked (and `caches` told), or when it names nobody in the workspace
/// (nothing written: the answer must not tell who exists); `400` for a malformed request or
/// subject; `401` when the token does not verify or was used already.
pub async fn handle_through<S: SessionStore>(
    store: &S,
    policy: &Policy,
    keys: &ProviderKeys,
    caches: &WriteThrough,
    req: Request,
) -> Response<Body> {
    http::finish(http::API_DEADLINE, revoke(store, policy, keys, caches, &req)).await
}

async fn revoke<S: SessionStore>(
    store: &S,
    policy: &Policy,
    keys: &ProviderKeys,
    caches: &WriteThrough,
    req: &Request,
) -> Result<Response<Body>, http::Refusal> {
    http::require_method(req, HttpMethod::POST, "POST")?;
    // An unknown workspace, or one without a provider, answers as a token of the wrong issuer.
    let no_provider = || ServiceError::SignalRefused(Rejection::Issuer.describe());
    let raw = http::path_param(req, "workspace_id").ok_or(ServiceError::NotFound)?;
    let workspace = WorkspaceId::parse(&raw).map_err(|_| no_provider())?;
    let missing = || ServiceError::SignalRefused("send the provider's JWT as `Authorization: Bearer <jwt>`");
    let token = http::authorization_bearer(req).map_err(|_| missing())?.ok_or_else(missing)?;
    let now = service::now_ms();
    let (provider, verified) =
        match service::authenticate_signal(store, keys, &workspace, token, Kind::Bearer, now / 1000).await {
            Ok(found) => found,
            Err(SignalAuthError::NoProvider) => return Err(no_provider().into()),
            Err(SignalAuthError::Rejected(r)) => return Err(ServiceError::SignalRefused(r.describe()).into()),
            Err(SignalAuthError::KeysUnavailable(_)) => {
                return Err(ServiceError::DependencyUnavailable("The identity provider's keys").into());
            }
            Err(SignalAuthError::Store(e)) => return Err(ServiceError::from(e).into()),
        };
    let body: GtrRequest = http::json_body(req)?;
    let subject = body
        .sub_id
        .or(body.subject)
        .ok_or_else(|| ServiceError::BadRequest("the body needs sub_id, a subject identifier".into()))?;
    let subjects = subject_users(&subject).map_err(ServiceError::BadRequest)?;
    let once = verified.once(&provider);
    match service::revoke_for_provider(store, policy, &provider, &subjects, RevokeReason::IdpLogout, &once, now).await?
    {
        SignalOutcome::Revoked { count, .. } => {
            if let Some(notice) = &count.notice {
                caches.tell(notice, service::now_ms()).await;
            }
        }
        SignalOutcome::NoSuchMember => {}
    }
    Ok(http::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, Role, UserId};
    use active_sessions::egress::Egress;
    use active_sessions::identity::{IdentityProvider, SubjectFormat};
    use active_sessions::model::Actor;
    use active_sessions::service::{put_user, UserProfileInput};
    use active_sessions::store::{DirectoryStore, MemoryStore};
    use active_sessions::testing::{idp_jwks, idp_token, parts, request, sign_in, with_path, IDP_KEY, IDP_OTHER_KEY};
    use lambda_http::http::header;
    use serde_json::json;

    const ISS: &str = "https://acme.idp.example";
    const JWKS: &str = "https://acme.idp.example/keys";
    const AUD: &str = "https://api.example/v1/workspaces/acme/global-token-revocation";

    async fn keys() -> ProviderKeys {
        ProviderKeys::with_keys(Egress::default(), JWKS, idp_jwks(&[(IDP_KEY, "k1")])).await
    }

    /// acme's provider (by email), with ann@acme (a member, two sessions) and bob@globex.
    async fn setup(store: &MemoryStore) {
        for (ws, aud) in [("acme", AUD), ("globex", "https://api.example/v1/workspaces/globex/gtr")] {
            let provider = IdentityProvider {
                workspace_id: WorkspaceId::parse(ws).unwrap(),
                issuer: ISS.into(),
                jwks_url: JWKS.into(),
                audience: aud.into(),
                subject_format: SubjectFormat::Email,
                updated_at: 0,
            };
            store.put_identity_provider(&provider).await.unwrap();
        }
        for (user, ws, email) in [("ann", "acme", "Ann@Acme.example"), ("bob", "globex", "bob@globex.example")] {
            let input: UserProfileInput = serde_json::from_value(
                json!({"workspace_id": ws, "role": Role::Member, "sso_linked": true, "email": email}),
            )
            .unwrap();
            put_user(store, &UserId::parse(user).unwrap(), input).await.unwrap();
        }
    }

    fn claims(jti: &str) -> serde_json::Value {
        let now = service::now_ms() / 1000;
        json!({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": jti, "sub": "client-1"})
    }

    fn gtr(ws: &str, token: Option<&str>, body: &str) -> Request {
        let mut req = with_path(
            request("POST", &format!("/v1/workspaces/{ws}/global-token-revocation"), None),
            &[("workspace_id", ws)],
        );
        *req.body_mut() = Body::Text(body.into());
        req.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        if let Some(t) = token {
            req.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        req
    }

    fn signed(jti: &str) -> String {
        idp_token(IDP_KEY, json!({"kid": "k1", "typ": "global-token-revocation+jwt"}), &claims(jti))
    }

    const ANN: &str = r#"{"sub_id":{"format":"email","email":"ann@acme.example"}}"#;

    #[tokio::test]
    async fn the_provider_ends_every_session_of_the_member_it_names() {
        let store = MemoryStore::new();
        setup(&store).await;
        let a = sign_in(&store, "ann", ClientKind::Browser).await;
        let b = sign_in(&store, "ann", ClientKind::MobileApp).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let res = handle(&store, &Policy::default(), &keys().await, gtr("acme", Some(&signed("j1")), ANN)).await;
        assert_eq!(res.status(), 204, "{:?}", parts(&res).2);
        for t in [&a.token, &b.token] {
            let res = active_sessions::service::authenticate(
                &store,
                &active_sessions::token::SessionToken::parse(t).unwrap(),
                service::now_ms(),
            )
            .await;
            assert!(res.is_err(), "ann's sessions end");
        }
        let ann = UserId::parse("ann").unwrap();
        let events = store.audit_events(&ann);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].actor, events[0].actor_id.as_str()), (Actor::Idp, ISS));
        assert_eq!((events[0].reason, events[0].count), (RevokeReason::IdpLogout, 2));
        let bob_token = active_sessions::token::SessionToken::parse(&bob.token).unwrap();
        assert!(active_sessions::service::authenticate(&store, &bob_token, service::now_ms()).await.is_ok());
    }

    #[tokio::test]
    async fn a_replayed_token_is_refused_and_writes_nothing() {
        let store = MemoryStore::new();
        setup(&store).await;
        sign_in(&store, "ann", ClientKind::Browser).await;
        let keys = keys().await;
        let token = signed("j-replay");
        assert_eq!(handle(&store, &Policy::default(), &keys, gtr("acme", Some(&token), ANN)).await.status(), 204);
        let writes = store.writes();
        let (status, ct, problem) =
            parts(&handle(&store, &Policy::default(), &keys, gtr("acme", Some(&token), ANN)).await);
        assert_eq!((status, ct.as_str()), (401, "application/problem+json"), "{problem}");
        assert!(problem["type"].as_str().unwrap().ends_with("signal-replayed"), "{problem}");
        assert_eq!(store.writes(), writes);
    }

    #[tokio::test]
    async fn a_member_of_another_workspace_or_nobody_answers_alike_and_nothing_is_written() {
        let store = MemoryStore::new();
        setup(&store).await;
        let bob = sign_in(&store, "bob", ClientKind::Browser).await;
        let keys = keys().await;
        let writes = store.writes();
        for (jti, body) in [
            ("j-bob", r#"{"sub_id":{"format":"email","email":"bob@globex.example"}}"#),
            ("j-nobody", r#"{"sub_id":{"format":"email","email":"nobody@acme.example"}}"#),
        ] {
            let res = handle(&store, &Policy::default(), &keys, gtr("acme", Some(&signed(jti)), body)).await;
            assert_eq!(res.status(), 204, "{body}");
        }
        assert_eq!(store.writes(), writes, "nothing written");
        let bob_token = active_sessions::token::SessionToken::parse(&bob.token).unwrap();
        assert!(active_sessions::service::authenticate(&store, &bob_token, service::now_ms()).await.is_ok());
    }

    #[tokio::test]
    async fn failed_authentication_is_401_and_a_bad_body_400_and_neither_writes() {
        let store = MemoryStore::new();
        setup(&store).await;
        sign_in(&store, "ann", ClientKind::Browser).await;
        let keys = keys().await;
        let writes = store.writes();
        let forged =
            idp_token(IDP_OTHER_KEY, json!({"kid": "k1", "typ": "global-token-revocation+jwt"}), &claims("j-forged"));
        for (ws, token) in [
            ("acme", None),
            ("acme", Some(forged.as_str())),
            ("acme", Some("not-a-jwt")),
            // A token for acme's audience, sent to globex's route.
            ("globex", Some(signed("j-globex").as_str())),
            ("initech", Some(signed("j-initech").as_str())),
        ]
        .map(|(ws, t)| (ws, t.map(str::to_owned)))
        {
            let res = handle(&store, &Policy::default(), &keys, gtr(ws, token.as_deref(), ANN)).await;
            let (status, ct, problem) = parts(&res);
            assert_eq!((status, ct.as_str()), (401, "application/problem+json"), "{ws} {problem}");
        }
        for body in [
            "",
            "{}",
            r#"{"sub_id":"ann@acme.example"}"#,
            r#"{"sub_id":{"format":"email","email":"not an address"}}"#,
            r#"{"sub_id":{"format":"iss_sub","iss":"https://acme.idp.example","sub":"00u1"}}"#,
        ] {
            let res = handle(&store, &Policy::default(), &keys, gtr("acme", Some(&signed("j-bad")), body)).await;
            assert_eq!(res.status(), 400, "{body}: {:?}", parts(&res).2);
        }
        let huge =
            format!(r#"{{"sub_id":{{"format":"email","email":"ann@acme.example"}},"pad":"{}"}}"#, "x".repeat(20_000));
        let res = handle(&store, &Policy::default(), &keys, gtr("acme", Some(&signed("j-huge")), &huge)).await;
        assert_eq!(res.status(), 413);
        assert_eq!(store.writes(), writes);
    }
}
