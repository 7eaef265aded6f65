use std::sync::Arc;

use active_sessions::jwks::PublishedJwks;
use active_sessions::reload::{self, Reloadable};
use active_sessions::{runtime, telemetry, Config};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // No store: the keys are all it serves.
    telemetry::init();
    let config = Config::from_env()?;
    // The published public keys only (never the signing secret), read again every
    // CONFIG_RELOAD_SECONDS: a rotation reaches every instance within that.
    let timeouts = config.timeouts;
    let jwks = Arc::new(
        Reloadable::load("jwks", reload::ttl_from_env()?, move || async move { PublishedJwks::load(&timeouts).await })
            .await?,
    );
    let jwks = &jwks;
    runtime::run_http(service_fn(move |req: Request| async move {
        let current = jwks.current().await;
        Ok::<_, Error>(get_jwks::handle(current.body(), !current.kids().is_empty(), &req))
    }))
    .await
}
