//! A `lambda_http` hello world, built like the functions: the baseline of the cold-start bench
//! (`tests/benches/coldstart.rs`).

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_req: Request| async { Ok::<_, Error>(Response::new(Body::from("hello"))) })).await
}
