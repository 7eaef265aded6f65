#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    active_sessions::runtime::http(|store, _policy, req| put_user::handle(store, req)).await
}
