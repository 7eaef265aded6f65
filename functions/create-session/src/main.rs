#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    active_sessions::runtime::http(create_session::handle).await
}
