//! Logging: the Lambda runtime's subscriber, JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`.

/// Call once at the top of `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}
