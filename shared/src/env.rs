//! Reading the environment: the error every loader returns, and the parsers of one variable
//! each. A leaf: each configuration type's loader sits beside its type (`config` for the table,
//! the policy and the DynamoDB timeouts; `cache::CacheConfig`, `logout::Backchannel`,
//! `queue`, `breaker`, `reload`) and reads its variables through these.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// `name`'s value, when it is set and not blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A whole number from `name` in `min..=max` (`default` when unset).
pub fn number_in(name: &'static str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => match raw.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::Invalid { name, reason: format!("expected a whole number in {min}-{max}") }),
        },
    }
}

/// A whole number from `name`, at least `min` (`default` when unset).
pub fn number(name: &'static str, default: i64, min: i64) -> Result<i64, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => match raw.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(v),
            _ => Err(ConfigError::Invalid { name, reason: format!("expected a whole number >= {min}") }),
        },
    }
}

/// `true`/`1` or `false`/`0`/blank/unset; anything else is refused.
pub fn flag(name: &'static str) -> Result<bool, ConfigError> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(_) | Ok("" | "false" | "0") => Ok(false),
        Ok("true" | "1") => Ok(true),
        Ok(_) => Err(ConfigError::Invalid { name, reason: "expected true or false".into() }),
    }
}

/// `AWS_LAMBDA_FUNCTION_NAME` (set by Lambda; `local` otherwise), read once: metrics and traces
/// carry it.
pub fn function_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into()))
}
