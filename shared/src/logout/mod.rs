//! OIDC Back-Channel Logout: a signed `logout+jwt` POSTed to every configured product endpoint
//! when a session is revoked, so products end their own sessions at once.
//!
//! Configuration, from one of two places:
//! - deployed: a Secrets Manager secret (the template passes its ARN as `BACKCHANNEL_SECRET_ARN`;
//!   the fan-out and `logout-retry` read it at start and again every `CONFIG_RELOAD_SECONDS`)
//!   holding JSON
//!   `{"endpoints": [{"aud": ..., "url": ...}], "issuer": ..., "signing_key_pem": ..., "key_id": ...}`,
//!   parsed by [`Backchannel::from_secret_json`];
//! - locally, the environment ([`Backchannel::from_env`]):
//!   - `BACKCHANNEL_ENDPOINTS`: JSON `[{"aud": "<product client id>", "url": "https://.../logout"}]`;
//!     unset or `[]` turns back-channel logout off.
//!   - `LOGOUT_ISSUER`: the `iss` claim.
//!   - `LOGOUT_SIGNING_KEY_PEM`: an EC P-256 private key (PKCS#8 PEM); tokens are ES256.
//!   - `LOGOUT_KEY_ID`: the `kid` products find the public key under (optional).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, UserId};

mod config;
mod retry;

pub use config::{public_jwks_of_secret, NextKey, RotationRule};
pub use retry::{RetryPolicy, RECEIPTS_LINGER_MS};

pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens are short-lived: a product must act on one at once.
const TOKEN_TTL_SECS: i64 = 120;
const POST_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Endpoint {
    pub aud: String,
    pub url: String,
}

/// The claims of a logout token (OIDC Back-Channel Logout 1.0, section 2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogoutClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sub: String,
    pub sid: String,
    pub events: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("signing the logout token failed")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("delivery to {aud} failed")]
    Delivery { aud: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{aud} answered {status}")]
    Refused { aud: String, status: u16 },
    /// A retry for a product no longer configured.
    #[error("{aud} is not configured")]
    Unconfigured { aud: String },
}

impl LogoutError {
    /// The failure's class for a receipt: `timeout`, `connect`, `transport`, `http_<status>`,
    /// `unconfigured` or `signing`. Never a body or a message from the product.
    pub fn class(&self) -> String {
        match self {
            Self::Sign(_) => "signing".into(),
            Self::Refused { status, .. } => format!("http_{status}"),
            Self::Unconfigured { .. } => "unconfigured".into(),
            Self::Delivery { source, .. } => match source.downcast_ref::<reqwest::Error>() {
                Some(e) if e.is_timeout() => "timeout".into(),
                Some(e) if e.is_connect() => "connect".into(),
                _ => "transport".into(),
            },
        }
    }
}

pub struct Backchannel {
    /// Epoch s from which the key before the current one may be unpublished (`key_since` +
    /// `RotationRule::keep_previous_secs`), if the secret says when the current one began.
    previous_droppable_at: Option<i64>,
    issuer: String,
    key: Option<EncodingKey>,
    kid: Option<String>,
    /// The verification keys products fetch (`GET /.well-known/jwks.json`): the current one, then
    /// the next one if any.
    jwks: jsonwebtoken::jwk::JwkSet,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
}

impl Backchannel {
    pub fn disabled() -> Self {
        Self {
            previous_droppable_at: None,
            issuer: String::new(),
            key: None,
            kid: None,
            jwks: jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            endpoints: Vec::new(),
            http: {
                crate::config::install_crypto_provider();
                reqwest::Client::new()
            },
        }
    }

    /// Whether any product is told of revocations.
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Whether `next` may replace this configuration in a warm instance: it must still publish the
    /// key this one signs with (as its current or previous key). A promotion that left out
    /// `previous_key`, or an edit that swapped the key without `key_since`, would otherwise make
    /// the tokens this instance signed until now unverifiable.
    pub fn may_be_replaced_by(&self, next: &Self) -> Result<(), String> {
        let Some(kid) = &self.kid else { return Ok(()) };
        if self.key.is_none() || next.jwks.find(kid).is_some() {
            return Ok(());
        }
        // Retired on time (an instance that could not reload for over an hour catches up).
        if next.previous_droppable_at.is_some_and(|at| now_secs() >= at) {
            return Ok(());
        }
        Err(format!("the new configuration no longer publishes the key this instance signs with ({kid})"))
    }

    /// The JWK Set products verify logout tokens with: public keys only.
    pub fn jwks(&self) -> &jsonwebtoken::jwk::JwkSet {
        &self.jwks
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// A signed logout token for one endpoint.
    pub fn token(&self, aud: &str, user: &UserId, session: SessionId, now_ms: i64) -> Result<String, LogoutError> {
        let Some(key) = &self.key else { return Ok(String::new()) };
        let iat = now_ms / 1000;
        let claims = LogoutClaims {
            iss: self.issuer.clone(),
            aud: aud.to_owned(),
            iat,
            exp: iat + TOKEN_TTL_SECS,
            jti: jti(aud, session),
            sub: user.to_string(),
            sid: session.to_string(),
            events: serde_json::json!({ EVENT: {} }),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("logout+jwt".into());
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &claims, key).map_err(LogoutError::Sign)
    }

    /// POSTs a logout token (`application/x-www-form-urlencoded`, `logout_token=...`), signed now,
    /// to one product's endpoint. Any answer but 2xx is a failure. The caller bounds how many are
    /// in flight per product (`breaker::ProductGuards`).
    pub async fn deliver_one(
        &self,
        aud: &str,
        user: &UserId,
        session: SessionId,
        now_ms: i64,
    ) -> Result<(), LogoutError> {
        let Some(ep) = self.endpoints.iter().find(|ep| ep.aud == aud) else {
            return Err(LogoutError::Unconfigured { aud: aud.to_owned() });
        };
        let token = self.token(&ep.aud, user, session, now_ms)?;
        let res = self
            .http
            .post(&ep.url)
            .form(&[("logout_token", token)])
            .send()
            .await
            .map_err(|e| LogoutError::Delivery { aud: ep.aud.clone(), source: Box::new(e) })?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(LogoutError::Refused { aud: ep.aud.clone(), status: res.status().as_u16() })
        }
    }
}

fn now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}

/// A logout token's `jti`: the same for every delivery of one session's logout to one product, so
/// a product that receives it twice (a redelivered stream record) can tell. Derived, not random:
/// a session is revoked once.
fn jti(aud: &str, session: SessionId) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("backchannel-logout|{session}|{aud}").as_bytes());
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::ConfigError;
    use jsonwebtoken::{DecodingKey, Validation};

    // A throwaway P-256 key for tests only.
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8/bL2AVkj2NPrp4B
vO/IRYw+K8SPoKvhTQDpXa8lc0KhRANCAASZed04bTb0nTqiWJ8lybHCaDPaE1pN
2i8U+9A5GvoZ+9zMN4JEFKFVpi+TCo13GJhBKFQxkshFeHE3RgA+2+un
-----END PRIVATE KEY-----";
    const TEST_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmXndOG029J06olifJcmxwmgz2hNa
TdovFPvQORr6GfvczDeCRBShVaYvkwqNdxiYQShUMZLIRXhxN0YAPtvrpw==
-----END PUBLIC KEY-----";

    #[test]
    fn the_secret_configures_endpoints_issuer_key_and_kid() {
        let raw = serde_json::json!({
            "endpoints": [{"aud": "chat-web", "url": "https://chat.example/logout"}],
            "issuer": "https://sessions.example",
            "signing_key_pem": TEST_KEY,
            "key_id": "k1",
        })
        .to_string();
        let bc = Backchannel::from_secret_json(&raw).unwrap();
        assert_eq!(bc.endpoints(), [Endpoint { aud: "chat-web".into(), url: "https://chat.example/logout".into() }]);
        let jwt = bc.token("chat-web", &UserId::parse("alice").unwrap(), SessionId::new(), 1_795_000_000_000).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().kid.as_deref(), Some("k1"));
        // No endpoints: off, whatever else is there.
        assert!(Backchannel::from_secret_json(r#"{"endpoints": []}"#).unwrap().endpoints().is_empty());
    }

    #[test]
    fn a_bad_secret_is_refused_without_echoing_it() {
        let no_issuer = serde_json::json!({
            "endpoints": [{"aud": "a", "url": "https://a.example/logout"}],
            "signing_key_pem": TEST_KEY,
        });
        let bad_key = serde_json::json!({
            "endpoints": [{"aud": "a", "url": "https://a.example/logout"}],
            "issuer": "https://sessions.example",
            "signing_key_pem": "-----BEGIN PRIVATE KEY-----\nSECRET-MATERIAL\n-----END PRIVATE KEY-----",
        });
        // A key where a list belongs: serde would quote the value in its message.
        let wrong_shape = r#"{"endpoints": "SECRET-MATERIAL"}"#;
        for raw in [no_issuer.to_string(), bad_key.to_string(), wrong_shape.to_string(), "not json".into()] {
            let err = Backchannel::from_secret_json(&raw).err().expect("refused").to_string();
            assert!(err.contains("BACKCHANNEL_SECRET_ARN"), "{err}");
            assert!(!err.contains("SECRET-MATERIAL") && !err.contains("PRIVATE KEY"), "leaks the secret: {err}");
        }
    }

    fn with_endpoint(url: &str) -> Result<Backchannel, ConfigError> {
        let ep = Endpoint { aud: "chat-web".into(), url: url.into() };
        Backchannel::build(vec![ep], "https://sessions.example".into(), TEST_KEY, None, None, "BACKCHANNEL_ENDPOINTS")
    }

    /// The JWKS carries the current key and the next one, public halves only; a token is
    /// signed with the current one and verifies with the JWKS entry its `kid` names.
    #[test]
    fn the_jwks_publishes_current_and_next_keys_and_tokens_verify_with_it() {
        const NEXT_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNEv0X9hFvGEUgAF8
VImcX9XZUo5M5gA5m3lxmnpIUKehRANCAAQgkLVRTBo6bUc8FK7p/hDr9N7cbj9k
3uaYPdPlJ/mJvBEbR8hkaVZqwK4ZXxlwieLyHKfzcCqxYi0diCTPazwK
-----END PRIVATE KEY-----";
        let ep = Endpoint { aud: "chat-web".into(), url: "https://chat.example/logout".into() };
        let next = NextKey { pem: NEXT_KEY.into(), kid: "k2".into() };
        let bc = Backchannel::build(
            vec![ep],
            "https://sessions.example".into(),
            TEST_KEY,
            Some("k1".into()),
            Some(next),
            "T",
        )
        .unwrap();
        let jwks = bc.jwks();
        let kids: Vec<_> = jwks.keys.iter().map(|k| k.common.key_id.clone().unwrap()).collect();
        assert_eq!(kids, ["k1", "k2"]);
        let json = serde_json::to_value(jwks).unwrap();
        assert_eq!((json["keys"][0]["kty"].as_str(), json["keys"][0]["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert!(json["keys"][0].get("d").is_none(), "never the private scalar: {json}");
        let jwt = bc.token("chat-web", &UserId::parse("alice").unwrap(), SessionId::new(), 1_795_000_000_000).unwrap();
        let kid = jsonwebtoken::decode_header(&jwt).unwrap().kid.unwrap();
        assert_eq!(kid, "k1", "signed with the current key");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["chat-web"]);
        v.validate_exp = false;
        let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<LogoutClaims>(&jwt, &key, &v).is_ok());
        let other = DecodingKey::from_jwk(jwks.find("k2").unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<LogoutClaims>(&jwt, &other, &v).is_err(), "the next key did not sign it");
        // A next key needs both keys to have distinct ids.
        let ep = Endpoint { aud: "a".into(), url: "https://a.example/l".into() };
        let same = NextKey { pem: NEXT_KEY.into(), kid: "k1".into() };
        assert!(Backchannel::build(vec![ep], "i".into(), TEST_KEY, Some("k1".into()), Some(same), "T").is_err());
    }

    /// What `rotate jwks` publishes for get-jwks: the secret's public keys, in a set get-jwks takes
    /// (no private member), the same as the signing functions' own.
    #[test]
    fn the_published_jwks_is_the_secret_public_keys() {
        let raw = serde_json::json!({
            "endpoints": [], "issuer": "", "signing_key_pem": TEST_KEY, "key_id": "k1",
        })
        .to_string();
        let set = public_jwks_of_secret(&raw).unwrap();
        let body = serde_json::to_string(&set).unwrap();
        assert!(!body.contains("\"d\""), "{body}");
        let published = crate::jwks::PublishedJwks::parse(&body, "T").unwrap();
        assert_eq!(published.kids(), ["k1"]);
        let err = public_jwks_of_secret(&raw.replace("k1", "k1\", \"next_key_id\": \"k2")).unwrap_err().to_string();
        assert!(!err.contains("PRIVATE"), "{err}");
    }

    /// Only https, or plain http to a loopback address.
    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        for ok in ["https://chat.example/logout", "http://127.0.0.1:9/logout", "http://[::1]:9/x", "http://localhost/x"]
        {
            assert!(with_endpoint(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "http://chat.example/logout",
            "http://10.0.0.5/logout",
            "ftp://chat.example/logout",
            "https://user:pass@chat.example/logout",
            "not a url",
        ] {
            let err = with_endpoint(bad).err().unwrap_or_else(|| panic!("{bad} should be refused")).to_string();
            assert!(err.contains("chat-web"), "{err}");
        }
    }

    /// A redirect is not followed; the delivery counts as failed: reqwest's default follows up to
    /// 10, so a product endpoint could send logout tokens anywhere.
    #[tokio::test]
    async fn a_redirect_is_a_failed_delivery_and_is_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let elsewhere_port = elsewhere.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut con, _)) = elsewhere.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = con.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let product = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let product_port = product.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut con, _)) = product.accept().await {
                let mut buf = vec![0u8; 8192];
                let _ = con.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere_port}/steal\r\ncontent-length: 0\r\n\r\n"
                );
                let _ = con.write_all(answer.as_bytes()).await;
            }
        });
        let bc = with_endpoint(&format!("http://127.0.0.1:{product_port}/logout")).unwrap();
        let user = UserId::parse("alice").unwrap();
        let outcome = bc.deliver_one("chat-web", &user, SessionId::new(), 1_795_000_000_000).await;
        assert!(
            matches!(outcome, Err(LogoutError::Refused { status: 307, .. })),
            "a redirect must fail the delivery: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect was followed");
    }

    /// SQS holds a message back at most 900 s: a longer step could not be a message's delay.
    #[test]
    fn a_backoff_longer_than_sqs_can_delay_is_refused() {
        std::env::set_var("LOGOUT_RETRY_MAX_BACKOFF_MS", "900001");
        let refused = RetryPolicy::from_env();
        std::env::set_var("LOGOUT_RETRY_MAX_BACKOFF_MS", "900000");
        let longest = RetryPolicy::from_env();
        std::env::remove_var("LOGOUT_RETRY_MAX_BACKOFF_MS");
        assert!(
            matches!(refused, Err(ConfigError::Invalid { name: "LOGOUT_RETRY_MAX_BACKOFF_MS", .. })),
            "{refused:?}"
        );
        assert_eq!(longest.map(|p| p.max_backoff_ms).ok(), Some(900_000));
    }

    #[test]
    fn retries_back_off_and_stop_at_the_horizon() {
        let p = RetryPolicy { backoff_ms: 1_000, max_backoff_ms: 5_000, ..RetryPolicy::default() };
        assert_eq!((p.backoff(1), p.backoff(2), p.backoff(3), p.backoff(99)), (1_000, 2_000, 4_000, 5_000));
        let give_up = 100_000;
        assert_eq!(p.next_due(1, 0, give_up), Some(1_000));
        assert_eq!(p.next_due(2, 0, give_up), Some(2_000));
        assert_eq!(p.next_due(3, 0, give_up), Some(4_000));
        assert_eq!(p.next_due(4, 0, give_up), Some(5_000), "capped");
        assert_eq!(p.next_due(60, 0, give_up), Some(5_000), "no overflow");
        assert_eq!(p.next_due(4, 98_000, give_up), Some(give_up), "the last attempt is at the horizon");
        assert_eq!(p.next_due(5, give_up, give_up), None, "past it: given up");
    }

    #[test]
    fn a_logout_token_has_every_claim_and_verifies() {
        let bc = Backchannel {
            previous_droppable_at: None,
            issuer: "https://sessions.example".into(),
            key: Some(EncodingKey::from_ec_pem(TEST_KEY.as_bytes()).unwrap()),
            kid: Some("k1".into()),
            jwks: jsonwebtoken::jwk::JwkSet { keys: vec![] },
            endpoints: vec![],
            http: {
                crate::config::install_crypto_provider();
                reqwest::Client::new()
            },
        };
        let user = UserId::parse("alice").unwrap();
        let sid = SessionId::new();
        let jwt = bc.token("chat-web", &user, sid, 1_795_000_000_000).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["chat-web"]);
        v.set_issuer(&["https://sessions.example"]);
        v.validate_exp = false;
        let claims =
            jsonwebtoken::decode::<LogoutClaims>(&jwt, &DecodingKey::from_ec_pem(TEST_PUB.as_bytes()).unwrap(), &v)
                .unwrap()
                .claims;
        assert_eq!((claims.sub.as_str(), claims.sid), ("alice", sid.to_string()));
        assert_eq!(claims.exp - claims.iat, TOKEN_TTL_SECS);
        assert!(claims.events.get(EVENT).is_some());
        assert_eq!(claims.jti.len(), 32);
        let again = jsonwebtoken::decode::<LogoutClaims>(
            &bc.token("chat-web", &user, sid, 1_795_000_100_000).unwrap(),
            &DecodingKey::from_ec_pem(TEST_PUB.as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(again.jti, claims.jti, "a redelivery carries the same jti");
        let other = bc.token("codex", &user, sid, 1_795_000_000_000).unwrap();
        assert_ne!(
            jsonwebtoken::dangerous::insecure_decode::<LogoutClaims>(&other).map(|d| d.claims.jti).ok(),
            Some(claims.jti)
        );
    }
}
