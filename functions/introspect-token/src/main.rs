use std::sync::Arc;

use active_sessions::cache::{CacheConfig, TokenCache};
use active_sessions::runtime;
use active_sessions::service::ActivityTracker;
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runtime::Started { config, store } = runtime::start().await?;
    let cache = Arc::new(TokenCache::new(&CacheConfig::load(&config.timeouts).await?).await?);
    // A long-running validator: drop L1 entries as soon as the fan-out publishes. It keeps
    // (re)subscribing; L1 answers only while the channel is live.
    cache.subscribe().await?;
    let activity = ActivityTracker::for_policy(&config.policy);
    let (policy, cache, activity) = (&config.policy, cache.as_ref(), &activity);
    runtime::run_http(service_fn(move |req: Request| async move {
        Ok::<_, Error>(introspect_token::handle(store, policy, cache, activity, req).await)
    }))
    .await
}
