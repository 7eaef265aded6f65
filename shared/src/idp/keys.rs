//! An identity provider's published keys (JWKS): fetched from its `jwks_url` only where the egress
//! allows (`Egress`: the URL's form, and every address its host resolves to, at each connection,
//! so a name later pointed at a private address is refused at the fetch too), without redirects or
//! proxies, at most 64 KiB, within 3 s. Each URL's set is a `Reloadable` (TTL
//! `CONFIG_RELOAD_SECONDS`); a token whose `kid` it lacks has it fetched again, at most once per
//! `REFETCH_INTERVAL` (the first fetch does not count). A first fetch that fails is not tried again
//! for `reload::RETRY_AFTER`, so requests for a provider whose keys are down cost no fetch each.
//! Keys this service cannot use (another key type, a curve it does not know) are skipped, not
//! fatal to the set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;

use crate::egress::Egress;
use crate::env::ConfigError;
use crate::reload::{Reloadable, RETRY_AFTER};

/// An unknown `kid` has the keys fetched again at most this often per provider.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const MAX_JWKS_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Providers' key sets one instance keeps at most (each at most 64 KiB); past it, they are
/// dropped and fetched again on use.
const MAX_SETS: usize = 256;

/// The provider's keys could not be had (never fetched, or unreachable the first time): the
/// signal cannot be verified now, and the provider should retry.
#[derive(Debug, thiserror::Error)]
#[error("the identity provider's keys could not be fetched: {0}")]
pub struct KeysUnavailable(String);

/// Resolves a host only where every address it has is one the egress allows.
struct Checked(Egress);

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.0;
        Box::pin(async move {
            let found = egress.resolve(name.as_str(), 0).await?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

struct Entry {
    keys: Reloadable<JwkSet>,
    last_refetch: Mutex<Option<Instant>>,
}

/// Every provider's keys this instance has used, by JWKS URL.
pub struct ProviderKeys {
    egress: Egress,
    ttl: Duration,
    client: reqwest::Client,
    sets: Mutex<HashMap<String, Arc<Entry>>>,
    /// URLs whose first fetch failed, and when.
    failed: Mutex<HashMap<String, Instant>>,
}

impl ProviderKeys {
    /// Fails (and with it the function's start) if the guarded HTTP client cannot be built: never a
    /// client without the egress rule.
    pub fn new(egress: Egress, ttl: Duration) -> Result<Self, ConfigError> {
        crate::config::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(Checked(egress)))
            .build()
            .map_err(|e| ConfigError::Invalid { name: "the JWKS client", reason: e.to_string() })?;
        Ok(Self { egress, ttl, client, sets: Mutex::new(HashMap::new()), failed: Mutex::new(HashMap::new()) })
    }

    /// `IDP_ALLOW_LOOPBACK` and `CONFIG_RELOAD_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(Egress::from_env()?, crate::reload::ttl_from_env()?)
    }

    /// Keys known already for `url`, as if fetched from it (handler tests).
    #[cfg(any(test, feature = "test-utils"))]
    pub async fn with_keys(egress: Egress, url: &str, set: JwkSet) -> Self {
        let keys = Self::new(egress, Duration::from_secs(3600)).expect("the client builds");
        let loaded = Reloadable::load("test JWKS", Duration::from_secs(3600), move || {
            let set = set.clone();
            async move { Ok(set) }
        })
        .await
        .expect("a fixed set loads");
        let entry = Arc::new(Entry { keys: loaded, last_refetch: Mutex::new(None) });
        keys.sets.lock().unwrap_or_else(|p| p.into_inner()).insert(url.to_owned(), entry);
        keys
    }

    pub fn egress(&self) -> Egress {
        self.egress
    }

    fn entry(&self, url: &str) -> Option<Arc<Entry>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner()).get(url).cloned()
    }

    /// The keys at `url`: cached, reloaded after the TTL, fetched on first use (a first fetch that
    /// failed less than `RETRY_AFTER` ago is not tried again).
    pub async fn keys(&self, url: &str) -> Result<Arc<JwkSet>, KeysUnavailable> {
        if let Some(entry) = self.entry(url) {
            return Ok(entry.keys.current().await);
        }
        {
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if failed.get(url).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                return Err(KeysUnavailable("the last fetch failed; not tried again yet".into()));
            }
        }
        let (client, egress, owned) = (self.client.clone(), self.egress, url.to_owned());
        let loaded =
            Reloadable::load("identity provider JWKS", self.ttl, move || fetch(client.clone(), egress, owned.clone()))
                .await;
        let keys = match loaded {
            Ok(keys) => keys.with_failure_metric("IdpKeysFetchFailed"),
            Err(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                if failed.len() >= MAX_SETS {
                    failed.clear();
                }
                failed.insert(url.to_owned(), Instant::now());
                crate::telemetry::emit_metric("IdpKeysFetchFailed", "Count", 1, None);
                return Err(KeysUnavailable(e.to_string()));
            }
        };
        // The first fetch does not count against the refetch interval: a key rotated just after
        // it is fetched at once.
        let entry = Arc::new(Entry { keys, last_refetch: Mutex::new(None) });
        let entry = {
            let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
            if sets.len() >= MAX_SETS && !sets.contains_key(url) {
                sets.clear();
            }
            Arc::clone(sets.entry(url.to_owned()).or_insert(entry))
        };
        Ok(entry.keys.current().await)
    }

    /// The keys at `url` fetched again now, because a token named a key they lack; `None` when
    /// they were fetched less than `REFETCH_INTERVAL` ago (the token is refused on what is known).
    pub async fn refetch(&self, url: &str) -> Option<Arc<JwkSet>> {
        let entry = self.entry(url)?;
        {
            let mut last = entry.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return None;
            }
            *last = Some(Instant::now());
        }
        Some(entry.keys.reload_now().await)
    }
}

async fn fetch(client: reqwest::Client, egress: Egress, url: String) -> Result<JwkSet, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { name: "jwks_url", reason };
    egress.check_url(&url).map_err(invalid)?;
    // An address host never reaches the resolver: checked here, as the client parses it (a URL
    // parser turns numeric forms such as `2130706433` into a dotted address).
    let parsed = reqwest::Url::parse(&url).map_err(|_| invalid("not a URL".into()))?;
    let host = parsed.host_str().ok_or_else(|| invalid("no host".into()))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok();
    if literal.is_some_and(|ip| !egress.allows(ip)) {
        return Err(invalid("an address the egress does not allow".into()));
    }
    let mut res = client
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
        .send()
        .await
        .map_err(|e| invalid(format!("fetch failed ({})", fetch_error_class(&e))))?;
    if !res.status().is_success() {
        return Err(invalid(format!("answered {}", res.status().as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        res.chunk().await.map_err(|e| invalid(format!("read failed ({})", fetch_error_class(&e))))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(invalid(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    usable_keys(&body).ok_or_else(|| invalid("not a JWK Set with a key this service can use".into()))
}

/// The keys of a JWK Set this service can read (others, of types or curves it does not know, are
/// skipped); `None` when there are none.
fn usable_keys(body: &[u8]) -> Option<JwkSet> {
    let set: serde_json::Value = serde_json::from_slice(body).ok()?;
    let keys: Vec<Jwk> =
        set.get("keys")?.as_array()?.iter().filter_map(|k| serde_json::from_value(k.clone()).ok()).collect();
    (!keys.is_empty()).then_some(JwkSet { keys })
}

fn fetch_error_class(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_this_service_cannot_read_does_not_spoil_the_set() {
        let jwks = crate::testing::idp_jwks(&[(crate::testing::IDP_KEY, "k1")]);
        let mut set = serde_json::to_value(&jwks).unwrap();
        set["keys"]
            .as_array_mut()
            .unwrap()
            .insert(0, serde_json::json!({"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq"}));
        let usable = usable_keys(set.to_string().as_bytes()).unwrap();
        assert_eq!(usable.keys.len(), 1);
        assert!(usable_keys(br#"{"keys": [{"kty": "AKP"}]}"#).is_none());
        assert!(usable_keys(b"[]").is_none());
    }
}
