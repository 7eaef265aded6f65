#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let egress = active_sessions::egress::Egress::from_env()?;
    active_sessions::runtime::http(move |store, _policy, req| put_identity_provider::handle(store, egress, req)).await
}
