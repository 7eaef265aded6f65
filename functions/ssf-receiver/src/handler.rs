use active_sessions::cache::WriteThrough;
use active_sessions::domain::WorkspaceId;
use active_sessions::http::{self, EdgeRefusal, HttpMethod};
use active_sessions::identity::subject_users;
use active_sessions::idp::{Kind, ProviderKeys};
use active_sessions::model::RevokeReason;
use active_sessions::service::{self, SignalAuthError, SignalOutcome};
use active_sessions::{Policy, ServiceError, SessionStore};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// An RFC 8935 answer other than `202`: `{"err": code, "description": ...}` (`application/json`),
/// or, for the service's own failures, problem+json.
enum Refused {
    Set { status: u16, err: &'static str, description: String },
    Service(http::Refusal),
}

fn invalid_request(description: impl Into<String>) -> Refused {
    Refused::Set { status: 400, err: "invalid_request", description: description.into() }
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::BadRequest(detail) => invalid_request(detail),
            other => Refused::Service(other.into()),
        }
    }
}

impl From<EdgeRefusal> for Refused {
    fn from(e: EdgeRefusal) -> Self {
        match e {
            EdgeRefusal::PayloadTooLarge { .. } | EdgeRefusal::UnsupportedMediaType { .. } => {
                Refused::Set { status: e.status(), err: "invalid_request", description: e.problem().detail }
            }
            other => Refused::Service(other.into()),
        }
    }
}

/// With the write-through off: the stream alone tells the caches.
pub async fn handle<S: SessionStore>(store: &S, policy: &Policy, keys: &ProviderKeys, req: Request) -> Response<Body> {
    handle_through(store, policy, keys, &WriteThrough::off(), req).await
}

/// `POST /v1/workspaces/{workspace_id}/ssf/events` (`application/secevent+jwt`): `202` once the
/// SET is verified and acted on (a member's sessions revoked, and `caches` told), ignored (an
/// event type this service does not act on, a subject that names nobody in the workspace), or seen
/// already (the same `jti`: nothing changes); `400` with RFC 8935's error codes otherwise.
pub async fn handle_through<S: SessionStore>(
    store: &S,
    policy: &Policy,
    keys: &ProviderKeys,
    caches: &WriteThrough,
    req: Request,
) -> Response<Body> {
    let work = async {
        match receive(store, policy, keys, caches, &req).await {
            Ok(()) => {
                let mut res = Response::new(Body::Empty);
                *res.status_mut() = StatusCode::ACCEPTED;
                Ok(res)
            }
            Err(Refused::Set { status, err, description }) => {
                tracing::info!(status, err, "security event refused");
                let body = json!({ "err": err, "description": description }).to_string();
                let mut res = Response::new(Body::Text(body));
                *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(res)
            }
            Err(Refused::Service(r)) => Err(r),
        }
    };
    http::finish(http::API_DEADLINE, work).await
}

/// What an event asks of this service: to end the member's sessions, for this reason; `None` for
/// events it does not act on.
fn action(event_type: &str, event: &Value) -> Option<RevokeReason> {
    match event_type {
        SESSION_REVOKED => Some(RevokeReason::IdpSessionRevoked),
        CREDENTIAL_CHANGE => match event.get("change_type").and_then(Value::as_str) {
            Some("revoke" | "delete") => Some(RevokeReason::IdpCredentialChange),
            _ => None,
        },
        ACCOUNT_DISABLED => Some(RevokeReason::IdpAccountDisabled),
        _ => None,
    }
}

async fn receive<S: SessionStore>(
    store: &S,
    policy: &Policy,
    keys: &ProviderKeys,
    caches: &WriteThrough,
    req: &Request,
) -> Result<(), Refused> {
    http::require_method(req, HttpMethod::POST, "POST")?;
    let raw = http::path_param(req, "workspace_id").ok_or(ServiceError::NotFound)?;
    let auth_failed = || Refused::Set {
        status: 400,
        err: "authentication_failed",
        description: "this workspace has no identity provider".into(),
    };
    let workspace = WorkspaceId::parse(&raw).map_err(|_| auth_failed())?;
    let bytes = http::body_of(req, "application/secevent+jwt")?;
    let token = std::str::from_utf8(bytes).map_err(|_| invalid_request("the body is not a JWT"))?.trim();
    let now = service::now_ms();
    let (provider, verified) =
        match service::authenticate_signal(store, keys, &workspace, token, Kind::SecurityEvent, now / 1000).await {
            Ok(found) => found,
            Err(SignalAuthError::NoProvider) => return Err(auth_failed()),
            Err(SignalAuthError::Rejected(r)) => {
                return Err(Refused::Set { status: 400, err: r.set_error(), description: r.describe().into() })
            }
            Err(SignalAuthError::KeysUnavailable(_)) => {
                return Err(ServiceError::DependencyUnavailable("The identity provider's keys").into());
            }
            Err(SignalAuthError::Store(e)) => return Err(ServiceError::from(e).into()),
        };
    let events = match verified.claims.get("events") {
        Some(Value::Object(events)) if !events.is_empty() => events,
        _ => return Err(invalid_request("the SET carries no events")),
    };
    if events.contains_key(VERIFICATION) {
        // The transmitter checks the stream end to end; a verified SET is all it asks for.
        tracing::info!("stream verification event received");
        return Ok(());
    }
    let Some((reason, event)) = events.iter().find_map(|(t, e)| action(t, e).map(|r| (r, e))) else {
        tracing::info!("security event of a type this service does not act on; ignored");
        return Ok(());
    };
    // SSF 1.0 puts the subject at the top (`sub_id`); the drafts before it, in the event.
    let subject = verified
        .claims
        .get("sub_id")
        .or_else(|| event.get("subject"))
        .ok_or_else(|| invalid_request("the SET names no subject (sub_id)"))?;
    let subjects = subject_users(subject).map_err(invalid_request)?;
    let once = verified.once(&provider);
    match service::revoke_for_provider(store, policy, &provider, &subjects, reason, &once, now).await {
        Ok(SignalOutcome::Revoked { count, .. }) => {
            if let Some(notice) = &count.notice {
                caches.tell(notice, service::now_ms()).await;
            }
            Ok(())
        }
        Ok(SignalOutcome::NoSuchMember) => Ok(()),
        // Delivered twice: the first one acted, this one changes nothing.
        Err(ServiceError::Replayed) => {
            tracing::info!("security event seen already; nothing changes");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use active_sessions::domain::{ClientKind, Role, UserId};
    use active_sessions::egress::Egress;
    use active_sessions::identity::{IdentityProvider, SubjectFormat};
    use active_sessions::service::{put_user, UserProfileInput};
    use active_sessions::store::{DirectoryStore, MemoryStore};
    use active_sessions::testing::{idp_jwks, idp_token, parts, request, sign_in, with_path, IDP_KEY, IDP_OTHER_KEY};
    use active_sessions::token::SessionToken;

    const ISS: &str = "https://acme.idp.example";
    const JWKS: &str = "https://acme.idp.example/keys";
    const AUD: &str = "https://api.example/v1/workspaces/acme/ssf/events";

    async fn setup() -> (MemoryStore, ProviderKeys) {
        let store = MemoryStore::new();
        let provider = IdentityProvider {
            workspace_id: WorkspaceId::parse("acme").unwrap(),
            issuer: ISS.into(),
            jwks_url: JWKS.into(),
            audience: AUD.into(),
            subject_format: SubjectFormat::Email,
            updated_at: 0,
        };
        store.put_identity_provider(&provider).await.unwrap();
        let input: UserProfileInput =
            serde_json::from_value(json!({"workspace_id": "acme", "role": Role::Member, "email": "ann@acme.example"}))
                .unwrap();
        put_user(&store, &UserId::parse("ann").unwrap(), input).await.unwrap();
        let keys = ProviderKeys::with_keys(Egress::default(), JWKS, idp_jwks(&[(IDP_KEY, "k1")])).await;
        (store, keys)
    }

    fn set_with(key: &str, aud: &str, jti: &str, events: Value, sub_id: Value) -> String {
        let now = service::now_ms() / 1000;
        let claims = json!({"iss": ISS, "aud": aud, "iat": now, "jti": jti, "sub_id": sub_id, "events": events});
        idp_token(key, json!({"kid": "k1", "typ": "secevent+jwt"}), &claims)
    }

    fn set(jti: &str, event_type: &str, event: Value) -> String {
        let ann = json!({"format": "complex", "user": {"format": "email", "email": "ann@acme.example"}});
        set_with(IDP_KEY, AUD, jti, json!({ event_type: event }), ann)
    }

    fn push(body: &str, content_type: &str) -> Request {
        let mut req = with_path(request("POST", "/v1/workspaces/acme/ssf/events", None), &[("workspace_id", "acme")]);
        *req.body_mut() = Body::Text(body.into());
        req.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        req
    }

    async fn signed_in(store: &MemoryStore, token: &str) -> bool {
        let token = SessionToken::parse(token).unwrap();
        service::authenticate(store, &token, service::now_ms()).await.is_ok()
    }

    #[tokio::test]
    async fn each_event_that_ends_access_revokes_the_member_and_a_second_delivery_changes_nothing() {
        for (i, (event_type, event, reason)) in [
            (SESSION_REVOKED, json!({}), RevokeReason::IdpSessionRevoked),
            (
                CREDENTIAL_CHANGE,
                json!({"change_type": "revoke", "credential_type": "password"}),
                RevokeReason::IdpCredentialChange,
            ),
            (
                CREDENTIAL_CHANGE,
                json!({"change_type": "delete", "credential_type": "fido2-roaming"}),
                RevokeReason::IdpCredentialChange,
            ),
            (ACCOUNT_DISABLED, json!({"reason": "hijacking"}), RevokeReason::IdpAccountDisabled),
        ]
        .into_iter()
        .enumerate()
        {
            let (store, keys) = setup().await;
            let ann = sign_in(&store, "ann", ClientKind::Browser).await;
            let body = set(&format!("j{i}"), event_type, event);
            let res = handle(&store, &Policy::default(), &keys, push(&body, "application/secevent+jwt")).await;
            assert_eq!(res.status(), 202, "{event_type}: {:?}", parts(&res).2);
            assert!(!signed_in(&store, &ann.token).await, "{event_type}");
            let events = store.audit_events(&UserId::parse("ann").unwrap());
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].reason, reason);
            let writes = store.writes();
            let res = handle(&store, &Policy::default(), &keys, push(&body, "application/secevent+jwt")).await;
            assert_eq!(res.status(), 202, "a duplicate is accepted");
            assert_eq!(store.writes(), writes, "and changes nothing");
        }
    }

    #[tokio::test]
    async fn other_events_are_accepted_and_ignored() {
        let (store, keys) = setup().await;
        let ann = sign_in(&store, "ann", ClientKind::Browser).await;
        let writes = store.writes();
        for (jti, event_type, event) in [
            ("i1", CREDENTIAL_CHANGE, json!({"change_type": "update", "credential_type": "password"})),
            ("i2", "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change", json!({})),
            ("i3", VERIFICATION, json!({"state": "abc"})),
        ] {
            let req = push(&set(jti, event_type, event), "application/secevent+jwt");
            assert_eq!(handle(&store, &Policy::default(), &keys, req).await.status(), 202, "{event_type}");
        }
        assert!(signed_in(&store, &ann.token).await);
        assert_eq!(store.writes(), writes);
    }

    #[tokio::test]
    async fn refusals_carry_rfc_8935_codes_and_write_nothing() {
        let (store, keys) = setup().await;
        let ann = sign_in(&store, "ann", ClientKind::Browser).await;
        let writes = store.writes();
        let ann_id = json!({"format": "email", "email": "ann@acme.example"});
        let revoked = json!({ SESSION_REVOKED: {} });
        let now = service::now_ms() / 1000;
        let wrong_iss = idp_token(
            IDP_KEY,
            json!({"kid": "k1", "typ": "secevent+jwt"}),
            &json!({"iss": "https://evil.example", "aud": AUD, "iat": now, "jti": "x", "sub_id": ann_id, "events": revoked}),
        );
        for (body, content_type, status, err) in [
            (
                set_with(IDP_OTHER_KEY, AUD, "a", revoked.clone(), ann_id.clone()),
                "application/secevent+jwt",
                400,
                "invalid_key",
            ),
            (
                set_with(IDP_KEY, "https://api.example/other", "b", revoked.clone(), ann_id.clone()),
                "application/secevent+jwt",
                400,
                "invalid_audience",
            ),
            (wrong_iss, "application/secevent+jwt", 400, "invalid_issuer"),
            ("not a jwt".into(), "application/secevent+jwt", 400, "invalid_request"),
            (
                set_with(IDP_KEY, AUD, "c", json!({}), ann_id.clone()),
                "application/secevent+jwt",
                400,
                "invalid_request",
            ),
            (
                set_with(IDP_KEY, AUD, "d", revoked.clone(), json!({"format": "email"})),
                "application/secevent+jwt",
                400,
                "invalid_request",
            ),
            (set("e", SESSION_REVOKED, json!({})), "application/json", 415, "invalid_request"),
            ("x".repeat(20_000), "application/secevent+jwt", 413, "invalid_request"),
        ] {
            let res = handle(&store, &Policy::default(), &keys, push(&body, content_type)).await;
            let (got, ct, json) = parts(&res);
            assert_eq!((got, ct.as_str(), json["err"].as_str()), (status, "application/json", Some(err)), "{json}");
            assert!(json["description"].is_string());
        }
        assert!(signed_in(&store, &ann.token).await);
        assert_eq!(store.writes(), writes);
    }
}
