//! Back-channel logout's configuration: the deployed secret (endpoints, issuer, signing keys and
//! the rotation's times), checked against the rotation's timing, or locally the environment.

use std::env;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Deserialize;

use super::{now_secs, Backchannel, Endpoint, CONNECT_TIMEOUT, POST_TIMEOUT, TOKEN_TTL_SECS};
use crate::config::{read_secret, StoreTimeouts};
use crate::env::{var, ConfigError};

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

impl Backchannel {
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
        crate::config::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(POST_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::Invalid { name: source, reason: format!("HTTP client: {e}") })?;
        Ok(Self { previous_droppable_at: None, issuer, key: Some(key), kid, jwks, endpoints, http })
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

impl Backchannel {
    /// Locally: `BACKCHANNEL_ENDPOINTS` (unset or `[]`: off), then `LOGOUT_ISSUER`,
    /// `LOGOUT_SIGNING_KEY_PEM` and `LOGOUT_KEY_ID`. Deployed, see `load`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw = env::var("BACKCHANNEL_ENDPOINTS").unwrap_or_default();
        let endpoints: Vec<Endpoint> = if raw.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&raw).map_err(|e| ConfigError::Invalid {
                name: "BACKCHANNEL_ENDPOINTS",
                reason: format!("expected [{{\"aud\": ..., \"url\": ...}}]: {e}"),
            })?
        };
        if endpoints.is_empty() {
            return Ok(Self::disabled());
        }
        let issuer = env::var("LOGOUT_ISSUER").map_err(|_| ConfigError::Missing("LOGOUT_ISSUER"))?;
        let pem = env::var("LOGOUT_SIGNING_KEY_PEM").map_err(|_| ConfigError::Missing("LOGOUT_SIGNING_KEY_PEM"))?;
        let next = match (env::var("LOGOUT_NEXT_SIGNING_KEY_PEM").ok(), env::var("LOGOUT_NEXT_KEY_ID").ok()) {
            (Some(pem), Some(kid)) => Some(NextKey { pem, kid }),
            (None, None) => None,
            _ => return Err(ConfigError::Missing("LOGOUT_NEXT_SIGNING_KEY_PEM and LOGOUT_NEXT_KEY_ID")),
        };
        Self::build(endpoints, issuer, &pem, env::var("LOGOUT_KEY_ID").ok(), next, "LOGOUT_SIGNING_KEY_PEM")
    }
}

impl Backchannel {
    /// Deployed, from the Secrets Manager secret whose ARN is `BACKCHANNEL_SECRET_ARN` (read once,
    /// at start); locally, from the environment (`from_env`). Nothing of the secret's value is
    /// ever logged or put in an error.
    pub async fn load(timeouts: &StoreTimeouts) -> Result<Self, ConfigError> {
        let Some(arn) = backchannel_secret_arn() else {
            return Self::from_env();
        };
        let raw = read_secret("BACKCHANNEL_SECRET_ARN", &arn, timeouts).await?;
        Self::from_secret_json(&raw)
    }

    /// `load` now, and again every `CONFIG_RELOAD_SECONDS` (300): a product added to the secret, or
    /// a rotated key, reaches every warm instance within that, without a redeploy. A failed
    /// reload keeps the last good configuration.
    pub async fn reloadable(timeouts: &StoreTimeouts) -> Result<crate::reload::Reloadable<Self>, ConfigError> {
        let timeouts = *timeouts;
        let ttl = crate::reload::ttl_from_env()?;
        let config =
            crate::reload::Reloadable::load("backchannel", ttl, move || async move { Self::load(&timeouts).await })
                .await?;
        // A warm instance never moves to a secret that unpublishes the key it signs with too soon.
        Ok(config.with_check(|in_use: &Self, fresh: &Self| in_use.may_be_replaced_by(fresh)))
    }
}

/// `BACKCHANNEL_SECRET_ARN`: deployed, the Secrets Manager secret holding the back-channel
/// configuration (it replaces the variables `Backchannel::from_env` reads).
fn backchannel_secret_arn() -> Option<String> {
    var("BACKCHANNEL_SECRET_ARN")
}
