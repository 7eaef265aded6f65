use active_sessions::logout::Backchannel;
use active_sessions::{telemetry, Config};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    // Only the public halves leave this function; the keys are read once, at start.
    let jwks = get_jwks::handler::body(&Backchannel::load(&config.timeouts).await?);
    let jwks = &jwks;
    telemetry::run_http(service_fn(move |req: Request| async move { Ok::<_, Error>(get_jwks::handle(jwks, &req)) }))
        .await
}
