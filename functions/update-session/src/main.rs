#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    active_sessions::runtime::http(|store, _policy, req| update_session::handle(store, req)).await
}
