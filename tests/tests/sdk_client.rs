//! The AWS SDK's HTTP client, as `StoreTimeouts::sdk_loader` picks it: the compiled-in AWS roots
//! by default, and the SDK's own client (the system's roots, the environment's proxy) when
//! `AWS_TLS_SYSTEM_ROOTS=true` or a proxy variable asks for it. A binary of its own: the test sets
//! the process's environment, which no other test may see.

use active_sessions::config::{system_roots_wanted, StoreTimeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY_VARS: [&str; 6] = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// A stand-in proxy: answers every request with a 503 and reports each request line it saw.
async fn proxy() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                let _ = seen.send(text.lines().next().unwrap_or_default().to_owned());
                let _ = socket.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
            });
        }
    });
    (url, heard)
}

/// One DynamoDB call to a host that does not resolve, through the loader as the functions build
/// it: only a proxy can carry it anywhere.
async fn call_dynamodb() {
    let timeouts = StoreTimeouts { max_attempts: 1, ..StoreTimeouts::default() };
    let config = timeouts.sdk_loader().endpoint_url("http://dynamodb.invalid:8000").load().await;
    let _ = aws_sdk_dynamodb::Client::new(&config).list_tables().send().await;
}

#[tokio::test]
async fn a_proxy_or_the_system_roots_flag_selects_the_sdk_client_and_the_proxy_carries_its_calls() {
    // Edition 2021: setting the environment is safe here, and this binary runs this test alone.
    for name in PROXY_VARS.iter().chain(&["AWS_TLS_SYSTEM_ROOTS", "NO_PROXY", "no_proxy"]) {
        std::env::remove_var(name);
    }
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    assert!(!system_roots_wanted(), "nothing asks for the SDK's client");
    std::env::set_var("AWS_TLS_SYSTEM_ROOTS", "true");
    assert!(system_roots_wanted(), "AWS_TLS_SYSTEM_ROOTS=true asks for it");
    std::env::set_var("AWS_TLS_SYSTEM_ROOTS", "false");
    assert!(!system_roots_wanted());
    std::env::remove_var("AWS_TLS_SYSTEM_ROOTS");
    for name in PROXY_VARS {
        std::env::set_var(name, "http://127.0.0.1:9");
        assert!(system_roots_wanted(), "{name} asks for it");
        std::env::remove_var(name);
    }

    let (url, mut heard) = proxy().await;
    // No proxy variable: the compiled-in client goes straight to the (unresolvable) host.
    call_dynamodb().await;
    assert!(heard.try_recv().is_err(), "nothing went through the proxy");
    // With one, the SDK's client sends the call to the proxy.
    std::env::set_var("HTTP_PROXY", &url);
    call_dynamodb().await;
    let line = tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv()).await.ok().flatten();
    assert_eq!(line.as_deref(), Some("POST http://dynamodb.invalid:8000/ HTTP/1.1"), "the proxy carried the call");
}
