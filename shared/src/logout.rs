//! OIDC Back-Channel Logout: a signed `logout+jwt` POSTed to every configured product endpoint
//! when a session is revoked, so products end their own sessions at once.
//!
//! Configuration, from one of two places:
//! - deployed: a Secrets Manager secret (the template passes its ARN as `BACKCHANNEL_SECRET_ARN`;
//!   the fan-out reads it at start) holding JSON
//!   `{"endpoints": [{"aud": ..., "url": ...}], "issuer": ..., "signing_key_pem": ..., "key_id": ...}`,
//!   parsed by [`Backchannel::from_secret_json`];
//! - locally, the environment ([`Backchannel::from_env`], in `crate::config`):
//!   - `BACKCHANNEL_ENDPOINTS`: JSON `[{"aud": "<product client id>", "url": "https://.../logout"}]`;
//!     unset or `[]` turns back-channel logout off.
//!   - `LOGOUT_ISSUER`: the `iss` claim.
//!   - `LOGOUT_SIGNING_KEY_PEM`: an EC P-256 private key (PKCS#8 PEM); tokens are ES256.
//!   - `LOGOUT_KEY_ID`: the `kid` products find the public key under (optional).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::domain::{SessionId, UserId};

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

/// What the deployed secret holds (`BACKCHANNEL_SECRET_ARN`).
#[derive(Deserialize)]
struct BackchannelSecret {
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    signing_key_pem: String,
    #[serde(default)]
    key_id: Option<String>,
    /// The key products should be ready for: published in the JWKS, not signed with yet.
    #[serde(default)]
    next_signing_key_pem: Option<String>,
    #[serde(default)]
    next_key_id: Option<String>,
    /// Epoch s: when the next key was first published (`rotate stage`).
    #[serde(default)]
    next_since: Option<i64>,
    /// Epoch s: when the current key began signing (`rotate promote`).
    #[serde(default)]
    key_since: Option<i64>,
    /// Epoch s: when the current key was first published, as the next one.
    #[serde(default)]
    key_published_since: Option<i64>,
    /// The key that signed before the current one, public half only (a JWK with its `kid`): still
    /// published, for tokens it signed and instances not yet reloaded, until `keep_previous`.
    #[serde(default)]
    previous_key: Option<serde_json::Value>,
}

use crate::jwks::MAX_AGE_SECS as JWKS_MAX_AGE_SECS;

/// 2020-01-01 in epoch seconds: no rotation time is older.
const EPOCH_2020: i64 = 1_577_836_800;
/// How far ahead of this clock a rotation time may be.
const CLOCK_SKEW_SECS: i64 = 300;

/// The rotation's timing, from the JWKS max-age, the configuration's reload TTL and the logout
/// token's lifetime:
/// - a key is published (as the next one) at least `publish_ahead` before it signs: by then every
///   product's cached JWKS and every `get-jwks` instance has it;
/// - the key it replaces stays published at least `keep_previous` after: an instance still on the
///   old configuration signs with it for up to one reload TTL, a token it signed lives
///   `TOKEN_TTL_SECS`, and a product that refetched the JWKS for it may keep that JWKS for max-age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationRule {
    pub reload_ttl_secs: i64,
}

impl RotationRule {
    pub fn from_env() -> Result<Self, ConfigError> {
        let ttl = crate::reload::ttl_from_env()?;
        Ok(Self { reload_ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX) })
    }

    pub fn publish_ahead_secs(&self) -> i64 {
        JWKS_MAX_AGE_SECS + self.reload_ttl_secs
    }

    pub fn keep_previous_secs(&self) -> i64 {
        JWKS_MAX_AGE_SECS + self.reload_ttl_secs + TOKEN_TTL_SECS
    }

    /// Refuses a secret that signs with a key published too late, or drops the previous key too
    /// soon (the error says until when it must stay). Numbers only in errors, never a key.
    fn check(&self, secret: &BackchannelSecret, now_secs: i64) -> Result<(), String> {
        // Epoch seconds, from 2020 to a few minutes ahead: milliseconds, or a time in the
        // future, would pass the checks below without the waits they stand for.
        for (name, at) in [
            ("key_since", secret.key_since),
            ("key_published_since", secret.key_published_since),
            ("next_since", secret.next_since),
        ] {
            if at.is_some_and(|t| !(EPOCH_2020..=now_secs + CLOCK_SKEW_SECS).contains(&t)) {
                return Err(format!("{name} must be epoch seconds, not in the future"));
            }
        }
        let since = match (secret.key_since, secret.key_published_since) {
            (Some(since), Some(_)) => since,
            (None, None) => return Ok(()),
            _ => return Err("key_since and key_published_since go together (set both when promoting)".into()),
        };
        if let Some(published) = secret.key_published_since {
            if since - published < self.publish_ahead_secs() {
                return Err(format!(
                    "the current key began signing {} s after it was published; it must be published {} s first \
                     (JWKS max-age {JWKS_MAX_AGE_SECS} s + reload {} s)",
                    since - published,
                    self.publish_ahead_secs(),
                    self.reload_ttl_secs
                ));
            }
        }
        let keep_until = since + self.keep_previous_secs();
        if secret.previous_key.is_none() && now_secs < keep_until {
            return Err(format!(
                "previous_key was dropped too soon: keep it published until {keep_until} (epoch s; the current key \
                 began signing at {since}, + max-age {JWKS_MAX_AGE_SECS} s + reload {} s + token lifetime \
                 {TOKEN_TTL_SECS} s)",
                self.reload_ttl_secs
            ));
        }
        Ok(())
    }
}

/// The signing key products should be ready for before it becomes the current one.
pub struct NextKey {
    pub pem: String,
    pub kid: String,
}

/// How configuration errors name the secret.
const SECRET: &str = "BACKCHANNEL_SECRET_ARN";

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
            http: reqwest::Client::new(),
        }
    }

    /// Whether any product is told of revocations.
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// The secret's JSON (see the module docs). Errors name the field at fault, never its value:
    /// the secret holds a private key.
    pub fn from_secret_json(raw: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { name: SECRET, reason };
        let mut secret: BackchannelSecret = serde_json::from_str(raw).map_err(|e| {
            invalid(format!(
                "expected {{\"endpoints\": [{{\"aud\", \"url\"}}], \"issuer\", \"signing_key_pem\", \"key_id\"}} \
                 ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if secret.endpoints.is_empty() {
            return Ok(Self::disabled());
        }
        if secret.issuer.trim().is_empty() {
            return Err(invalid("issuer is empty".into()));
        }
        let rule = RotationRule::from_env()?;
        rule.check(&secret, now_secs()).map_err(invalid)?;
        // Reports when the rotation's next step may be taken (docs/deploy.md, Rotating the signing key).
        if let (Some(since), Some(_)) = (secret.key_since, &secret.previous_key) {
            let droppable = since + rule.keep_previous_secs();
            if now_secs() >= droppable {
                tracing::info!(
                    droppable_since = droppable,
                    "the previous logout signing key may be dropped from the secret"
                );
            }
        }
        if let (Some(published), Some(_)) = (secret.next_since, &secret.next_key_id) {
            let promotable = published + rule.publish_ahead_secs();
            if now_secs() >= promotable {
                tracing::info!(promotable_since = promotable, "the next logout signing key may be promoted");
            }
        }
        let next = secret.next_key()?;
        let previous = secret.previous_key.take();
        let mut built =
            Self::build(secret.endpoints, secret.issuer, &secret.signing_key_pem, secret.key_id, next, SECRET)?;
        add_previous(&mut built.jwks, previous.as_ref())?;
        built.previous_droppable_at = secret.key_since.map(|since| since + rule.keep_previous_secs());
        Ok(built)
    }

    pub(crate) fn build(
        endpoints: Vec<Endpoint>,
        issuer: String,
        pem: &str,
        kid: Option<String>,
        next: Option<NextKey>,
        source: &'static str,
    ) -> Result<Self, ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for ep in &endpoints {
            if ep.aud.trim().is_empty() || ep.aud.len() > 255 || !seen.insert(ep.aud.as_str()) {
                return Err(ConfigError::Invalid {
                    name: source,
                    reason: "each endpoint needs its own non-empty aud (at most 255 bytes)".into(),
                });
            }
            check_endpoint_url(&ep.url).map_err(|reason| ConfigError::Invalid {
                name: source,
                reason: format!("endpoint {:?}: {reason}", ep.aud),
            })?;
        }
        let (key, jwks) = key_set(pem, kid.as_deref(), next.as_ref(), source)?;
        // No redirects: a logout token goes to the configured URL or nowhere (a 3xx is a failed
        // delivery), so an endpoint that answers with a redirect cannot send it elsewhere, nor
        // downgrade it to plain HTTP. Every delivery is bounded: 1 s to connect, 3 s in all.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(POST_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::Invalid { name: source, reason: format!("HTTP client: {e}") })?;
        Ok(Self { previous_droppable_at: None, issuer, key: Some(key), kid, jwks, endpoints, http })
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

/// How a product that did not take a logout is retried (from the retry queue, by `logout-retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `LOGOUT_RETRY_HORIZON_SECONDS` (3600): from the revocation, how long a product is retried
    /// before its receipt says `failed`.
    pub horizon_ms: i64,
    /// `LOGOUT_RETRY_BACKOFF_MS` (30 000): the wait after the first failed attempt, doubled after
    /// each further one, up to `LOGOUT_RETRY_MAX_BACKOFF_MS` (600 000; at most 900 000, the
    /// longest an SQS message can be held back). Waits are whole seconds on the queue.
    pub backoff_ms: i64,
    pub max_backoff_ms: i64,
    /// `LOGOUT_INLINE_BUDGET_MS` (250): how long the fan-out waits for a product's first answer,
    /// from the moment its request can be sent. A product slower than this is handed to the
    /// retry queue, so it never holds the stream's shard (and with it every other product's next
    /// logout).
    pub inline_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            horizon_ms: 3_600_000,
            backoff_ms: 30_000,
            max_backoff_ms: 600_000,
            inline_budget: Duration::from_millis(250),
        }
    }
}

/// How long a tombstone keeps its receipts after the horizon at least: a `failed` receipt stays
/// readable, whatever `TOMBSTONE_TTL_SECONDS` says.
pub const RECEIPTS_LINGER_MS: i64 = 3_600_000;

impl RetryPolicy {
    pub fn from_env() -> Result<Self, ConfigError> {
        use crate::config::number_in as number;
        let d = Self::default();
        let horizon_secs = number("LOGOUT_RETRY_HORIZON_SECONDS", d.horizon_ms / 1000, 1, 7 * 86_400)?;
        let default_inline = i64::try_from(d.inline_budget.as_millis()).unwrap_or(250);
        let inline_ms = number("LOGOUT_INLINE_BUDGET_MS", default_inline, 10, 3_000)?;
        let max_delay = i64::try_from(crate::queue::MAX_DELAY.as_millis()).unwrap_or(900_000);
        Ok(Self {
            horizon_ms: horizon_secs * 1000,
            backoff_ms: number("LOGOUT_RETRY_BACKOFF_MS", d.backoff_ms, 100, max_delay)?,
            max_backoff_ms: number("LOGOUT_RETRY_MAX_BACKOFF_MS", d.max_backoff_ms, 100, max_delay)?,
            inline_budget: Duration::from_millis(inline_ms.unsigned_abs()),
        })
    }

    /// The wait before step `step` (1: after the first failed attempt): the backoff doubled per
    /// step, capped.
    pub fn backoff(&self, step: u32) -> i64 {
        let doublings = step.saturating_sub(1).min(30);
        self.backoff_ms.saturating_mul(1_i64 << doublings).min(self.max_backoff_ms)
    }

    /// When to try again after `attempts` failed attempts, at `now_ms`: the backoff, never past
    /// the horizon (so the last attempt is at the horizon). `None`: the horizon has passed; give up.
    pub fn next_due(&self, attempts: u32, now_ms: i64, give_up_at: i64) -> Option<i64> {
        if now_ms >= give_up_at {
            return None;
        }
        Some(now_ms.saturating_add(self.backoff(attempts)).min(give_up_at))
    }

    /// Until when (epoch seconds) a tombstone revoked at `started_ms` must keep its receipts:
    /// past the horizon, by `RECEIPTS_LINGER_MS`.
    pub fn receipts_until_secs(&self, started_ms: i64) -> i64 {
        (started_ms + self.horizon_ms + RECEIPTS_LINGER_MS) / 1000
    }
}

/// The signing key, and the public keys products verify with: the current one, then the next one
/// if any.
fn key_set(
    pem: &str,
    kid: Option<&str>,
    next: Option<&NextKey>,
    source: &'static str,
) -> Result<(EncodingKey, jsonwebtoken::jwk::JwkSet), ConfigError> {
    let bad_key = || ConfigError::Invalid { name: source, reason: "expected an EC P-256 private key in PEM".into() };
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| bad_key())?;
    if next.is_some_and(|n| kid.is_none() || kid == Some(n.kid.as_str())) {
        return Err(ConfigError::Invalid {
            name: source,
            reason: "with a next key, both keys need a key id, and different ones".into(),
        });
    }
    let mut jwks = jsonwebtoken::jwk::JwkSet { keys: vec![public_jwk(&key, kid).ok_or_else(bad_key)?] };
    if let Some(next) = next {
        let next_key = EncodingKey::from_ec_pem(next.pem.as_bytes()).map_err(|_| bad_key())?;
        jwks.keys.push(public_jwk(&next_key, Some(&next.kid)).ok_or_else(bad_key)?);
    }
    Ok((key, jwks))
}

/// The public JWK Set for a back-channel secret (its keys only; endpoints may be empty): the
/// previous key if any, the current one, the next one if any. What `rotate jwks` publishes for
/// `get-jwks`, after the same rotation check the signing functions make. Errors name the field at
/// fault, never its value.
pub fn public_jwks_of_secret(raw: &str) -> Result<jsonwebtoken::jwk::JwkSet, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { name: SECRET, reason };
    let secret: BackchannelSecret = serde_json::from_str(raw)
        .map_err(|e| invalid(format!("not the back-channel secret's JSON ({:?} error)", e.classify())))?;
    RotationRule::from_env()?.check(&secret, now_secs()).map_err(invalid)?;
    let next = secret.next_key()?;
    let mut set = key_set(&secret.signing_key_pem, secret.key_id.as_deref(), next.as_ref(), SECRET)?.1;
    add_previous(&mut set, secret.previous_key.as_ref())?;
    Ok(set)
}

impl BackchannelSecret {
    /// The next key, when the secret names one (its PEM and its kid go together).
    fn next_key(&self) -> Result<Option<NextKey>, ConfigError> {
        match (&self.next_signing_key_pem, &self.next_key_id) {
            (Some(pem), Some(kid)) => Ok(Some(NextKey { pem: pem.clone(), kid: kid.clone() })),
            (None, None) => Ok(None),
            _ => Err(ConfigError::Invalid {
                name: SECRET,
                reason: "next_signing_key_pem and next_key_id go together".into(),
            }),
        }
    }
}

/// Publishes the secret's previous key first in `set`, checked to be a public EC P-256 signing
/// key whose kid is neither the current nor the next key's.
fn add_previous(set: &mut jsonwebtoken::jwk::JwkSet, previous: Option<&serde_json::Value>) -> Result<(), ConfigError> {
    let Some(previous) = previous else { return Ok(()) };
    let invalid = |reason: &str| ConfigError::Invalid { name: SECRET, reason: reason.into() };
    crate::jwks::PublishedJwks::parse(&serde_json::json!({ "keys": [previous] }).to_string(), SECRET)?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(previous.clone()).map_err(|_| invalid("previous_key is not a JWK"))?;
    if set.keys.iter().any(|k| k.common.key_id == jwk.common.key_id) {
        return Err(invalid("previous_key's kid is the current or the next key's"));
    }
    set.keys.insert(0, jwk);
    Ok(())
}

fn now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}

/// The public half of a signing key as a JWK (`kty` EC, `crv` P-256, `x`, `y`, `alg` ES256, `use`
/// sig, `kid`): never the private scalar.
fn public_jwk(key: &EncodingKey, kid: Option<&str>) -> Option<jsonwebtoken::jwk::Jwk> {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, Algorithm::ES256).ok()?;
    jwk.common.key_id = kid.map(str::to_owned);
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    Some(jwk)
}

/// An endpoint must be `https`, except on a loopback address (the local stand-in product):
/// logout tokens name the user and session, and must not cross a network in the clear.
fn check_endpoint_url(raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL".into());
    }
    let host = url.host_str().ok_or("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https (plain http only to a loopback address)".into()),
        other => Err(format!("scheme {other} is not https")),
    }
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

    /// #12 (4): the JWKS carries the current key and the next one, public halves only; a token is
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

    /// #10 (4): only https, or plain http to a loopback address. On main any URL was accepted.
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

    /// #10 (4): a redirect is not followed; the delivery counts as failed. On main reqwest followed
    /// up to 10 redirects, so a product endpoint could send logout tokens anywhere.
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
            http: reqwest::Client::new(),
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
