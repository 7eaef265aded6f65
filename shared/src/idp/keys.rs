//! An identity provider's published keys (JWKS): fetched from its `jwks_url` only where the egress
//! allows (checked on the URL and on every address its host resolves to, so a name that later
//! resolves to a private address is refused at the fetch too), without redirects or proxies, at
//! most 64 KiB, within 3 s. Each URL's set is a `Reloadable` (TTL `CONFIG_RELOAD_SECONDS`); a token
//! whose `kid` it lacks has it fetched again, at most once per `REFETCH_INTERVAL`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;

use crate::env::ConfigError;
use crate::identity::Egress;
use crate::reload::Reloadable;

/// An unknown `kid` has the keys fetched again at most this often per provider.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const MAX_JWKS_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The provider's keys could not be had (never fetched, or unreachable the first time): the
/// signal cannot be verified now, and the provider should retry.
#[derive(Debug, thiserror::Error)]
#[error("the identity provider's keys could not be fetched: {0}")]
pub struct KeysUnavailable(String);

/// Resolves a host only to the addresses the egress allows.
struct Checked(Egress);

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = self.0;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| egress.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err("the host resolves to no address the JWKS fetch may reach".into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
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
}

impl ProviderKeys {
    pub fn new(egress: Egress, ttl: Duration) -> Self {
        crate::config::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(Checked(egress)))
            .build()
            .unwrap_or_default();
        Self { egress, ttl, client, sets: Mutex::new(HashMap::new()) }
    }

    /// `IDP_ALLOW_LOOPBACK` and `CONFIG_RELOAD_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(Egress::from_env()?, crate::reload::ttl_from_env()?))
    }

    /// Keys known already for `url`, as if fetched from it (handler tests).
    #[cfg(any(test, feature = "test-utils"))]
    pub async fn with_keys(egress: Egress, url: &str, set: JwkSet) -> Self {
        let keys = Self::new(egress, Duration::from_secs(3600));
        let loaded = Reloadable::load("test JWKS", Duration::from_secs(3600), move || {
            let set = set.clone();
            async move { Ok(set) }
        })
        .await
        .expect("a fixed set loads");
        let entry = Arc::new(Entry { keys: loaded, last_refetch: Mutex::new(Some(Instant::now())) });
        keys.sets.lock().unwrap_or_else(|p| p.into_inner()).insert(url.to_owned(), entry);
        keys
    }

    pub fn egress(&self) -> Egress {
        self.egress
    }

    fn entry(&self, url: &str) -> Option<Arc<Entry>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner()).get(url).cloned()
    }

    /// The keys at `url`: cached, reloaded after the TTL, fetched on first use.
    pub async fn keys(&self, url: &str) -> Result<Arc<JwkSet>, KeysUnavailable> {
        if let Some(entry) = self.entry(url) {
            return Ok(entry.keys.current().await);
        }
        let (client, egress, owned) = (self.client.clone(), self.egress, url.to_owned());
        let keys =
            Reloadable::load("identity provider JWKS", self.ttl, move || fetch(client.clone(), egress, owned.clone()))
                .await
                .map_err(|e| KeysUnavailable(e.to_string()))?;
        let entry = Arc::new(Entry { keys, last_refetch: Mutex::new(Some(Instant::now())) });
        let entry =
            Arc::clone(self.sets.lock().unwrap_or_else(|p| p.into_inner()).entry(url.to_owned()).or_insert(entry));
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
    serde_json::from_slice(&body).map_err(|_| invalid("not a JWK Set".into()))
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
