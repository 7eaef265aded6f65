//! A stand-in identity provider, for the local stack and the tests: an EC P-256 key pair (the
//! private key from a PEM file), its JWKS served on 127.0.0.1, and, on command, the signed
//! requests a workspace's provider sends: Global Token Revocation's bearer JWT (as Okta's
//! Universal Logout signs it: `typ` `global-token-revocation+jwt`, `aud` the endpoint's URL, five
//! minutes' life) and Shared Signals' Security Event Tokens (`typ` `secevent+jwt`, no `exp`).

use std::convert::Infallible;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// The CAEP and RISC event types the receiver acts on.
pub const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const CREDENTIAL_CHANGE: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const ACCOUNT_DISABLED: &str = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

pub struct StandInIdp {
    key: EncodingKey,
    kid: String,
    pub issuer: String,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A fresh `jti`: 128 random bits.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS's random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl StandInIdp {
    pub fn new(key_pem: &str, kid: &str, issuer: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        active_sessions::config::install_crypto_provider();
        Ok(Self { key: EncodingKey::from_ec_pem(key_pem.as_bytes())?, kid: kid.into(), issuer: issuer.into() })
    }

    /// `{"keys": [...]}`: the public half, with its kid.
    pub fn jwks(&self) -> Value {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.key, Algorithm::ES256).expect("an EC key");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        json!({ "keys": [jwk] })
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": typ});
        let signing =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(signing.as_bytes(), &self.key, Algorithm::ES256).expect("signs");
        format!("{signing}.{sig}")
    }

    /// The bearer JWT of a Global Token Revocation request to `audience` (the endpoint's URL).
    pub fn gtr_token(&self, audience: &str) -> String {
        let now = now_secs();
        let claims = json!({"iss": self.issuer, "aud": audience, "sub": "stand-in-app", "iat": now, "nbf": now,
            "exp": now + 300, "jti": jti()});
        self.sign("global-token-revocation+jwt", &claims)
    }

    /// A SET carrying one event (`event_type` with its members) about `sub_id`, for `audience`.
    pub fn set(&self, audience: &str, event_type: &str, event: Value, sub_id: Value) -> String {
        let claims = json!({"iss": self.issuer, "aud": audience, "iat": now_secs(), "jti": jti(),
            "txn": jti(), "sub_id": sub_id, "events": { event_type: event }});
        self.sign("secevent+jwt", &claims)
    }

    /// The SET of one of the events this stand-in sends by name (`session-revoked`,
    /// `credential-change`, `account-disabled`, `verification`), about the user with `email`.
    pub fn named_set(&self, audience: &str, event: &str, email: &str) -> Option<String> {
        let user = json!({"format": "email", "email": email});
        let (event_type, body, sub_id) = match event {
            "session-revoked" => {
                (SESSION_REVOKED, json!({"event_timestamp": now_secs()}), json!({"format": "complex", "user": user}))
            }
            "credential-change" => {
                (CREDENTIAL_CHANGE, json!({"credential_type": "password", "change_type": "revoke"}), user)
            }
            "account-disabled" => (ACCOUNT_DISABLED, json!({"reason": "bulk-account"}), user),
            "verification" => (VERIFICATION, json!({"state": jti()}), json!({"format": "opaque", "id": "stream"})),
            _ => return None,
        };
        Some(self.set(audience, event_type, body, sub_id))
    }

    fn answer(&self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        let param = |name: &str| {
            query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(
                |(_, v)| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned(),
            )
        };
        let text = |status: StatusCode, content_type: &str, body: String| {
            Response::builder().status(status).header("content-type", content_type).body(Full::new(Bytes::from(body)))
        };
        let res = match (path, param("audience")) {
            ("/jwks.json", _) => text(StatusCode::OK, "application/jwk-set+json", self.jwks().to_string()),
            ("/sign/gtr", Some(aud)) => text(StatusCode::OK, "application/jwt", self.gtr_token(&aud)),
            ("/sign/set", Some(aud)) => {
                let event = param("event").unwrap_or_else(|| "session-revoked".into());
                match self.named_set(&aud, &event, &param("email").unwrap_or_default()) {
                    Some(set) => text(StatusCode::OK, "application/secevent+jwt", set),
                    None => text(StatusCode::BAD_REQUEST, "text/plain", format!("unknown event {event}")),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", String::new()),
        };
        res.expect("a response")
    }

    /// Serves on 127.0.0.1:`port` (0: any free port) until the task is dropped, and returns the
    /// port: `GET /jwks.json`, its keys; `GET /sign/gtr?audience=URL`, a GTR bearer JWT;
    /// `GET /sign/set?audience=URL&event=NAME&email=ADDRESS`, a SET (`named_set`).
    pub async fn serve(self: Arc<Self>, port: u16) -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let idp = Arc::clone(&self);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let res = idp.answer(req.uri().path(), req.uri().query());
                        async move { Ok::<_, Infallible>(res) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok((port, task))
    }
}
