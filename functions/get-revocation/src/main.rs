#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    active_sessions::runtime::http(get_revocation::handle).await
}
