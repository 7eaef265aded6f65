use active_sessions::{runtime, telemetry};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    runtime::run_http(service_fn(|req: Request| async move { Ok::<_, Error>(web::handle(&req)) })).await
}
