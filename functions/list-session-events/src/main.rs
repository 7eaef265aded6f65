#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    active_sessions::runtime::http(list_session_events::handle).await
}
