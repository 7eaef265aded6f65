//! Typed configuration, read once at init; a missing required variable fails init. Here: the
//! table and policy (`Config`), the DynamoDB timeouts and the AWS SDK's client (`StoreTimeouts`),
//! Secrets Manager reads, and the pages' origin. The token caches' settings are read beside
//! `cache::CacheConfig`, back-channel logout's beside `logout::Backchannel`; docs/configuration.md
//! lists every variable.

use std::env;

use crate::domain::{AppId, ClientKind, InvalidValue};
pub use crate::env::ConfigError;
use crate::env::{flag, number};

/// How long a session of one client kind may live: unused (idle), and at all (absolute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// A session unused this long stops validating (ASVS 7.3.1).
    pub idle_secs: i64,
    /// A session this old stops validating, however much it is used (ASVS 7.3.2).
    pub absolute_secs: i64,
}

/// The lifetimes per client kind (`<KIND>_IDLE_TIMEOUT_SECONDS`, `<KIND>_MAX_LIFETIME_SECONDS`,
/// e.g. `BROWSER_IDLE_TIMEOUT_SECONDS`). The defaults and their reasons are in docs/configuration.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub browser: Lifetime,
    pub desktop_app: Lifetime,
    pub mobile_app: Lifetime,
    pub cli: Lifetime,
    pub third_party: Lifetime,
    pub connected_app: Lifetime,
}

const DAY: i64 = 86_400;

impl Default for Lifetimes {
    fn default() -> Self {
        // A browser may be shared or left signed in on a machine someone else uses: two weeks
        // unused, thirty days at most. Installed apps and the CLI sit on the user's own device
        // and are used in bursts: thirty days unused, ninety at most.
        let browser = Lifetime { idle_secs: 14 * DAY, absolute_secs: 30 * DAY };
        let device = Lifetime { idle_secs: 30 * DAY, absolute_secs: 90 * DAY };
        Self {
            browser,
            desktop_app: device,
            mobile_app: device,
            cli: device,
            third_party: device,
            connected_app: device,
        }
    }
}

impl Lifetimes {
    pub fn of(&self, kind: ClientKind) -> Lifetime {
        match kind {
            ClientKind::Browser => self.browser,
            ClientKind::DesktopApp => self.desktop_app,
            ClientKind::MobileApp => self.mobile_app,
            ClientKind::Cli => self.cli,
            ClientKind::ThirdParty => self.third_party,
            ClientKind::ConnectedApp => self.connected_app,
        }
    }

    fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let read = |idle: &'static str, absolute: &'static str, d: Lifetime| -> Result<Lifetime, ConfigError> {
            let lifetime = Lifetime {
                idle_secs: number(idle, d.idle_secs, 60)?,
                absolute_secs: number(absolute, d.absolute_secs, 60)?,
            };
            if lifetime.idle_secs > lifetime.absolute_secs {
                return Err(ConfigError::Invalid { name: idle, reason: format!("must not exceed {absolute}") });
            }
            Ok(lifetime)
        };
        Ok(Self {
            browser: read("BROWSER_IDLE_TIMEOUT_SECONDS", "BROWSER_MAX_LIFETIME_SECONDS", d.browser)?,
            desktop_app: read("DESKTOP_APP_IDLE_TIMEOUT_SECONDS", "DESKTOP_APP_MAX_LIFETIME_SECONDS", d.desktop_app)?,
            mobile_app: read("MOBILE_APP_IDLE_TIMEOUT_SECONDS", "MOBILE_APP_MAX_LIFETIME_SECONDS", d.mobile_app)?,
            cli: read("CLI_IDLE_TIMEOUT_SECONDS", "CLI_MAX_LIFETIME_SECONDS", d.cli)?,
            third_party: read("THIRD_PARTY_IDLE_TIMEOUT_SECONDS", "THIRD_PARTY_MAX_LIFETIME_SECONDS", d.third_party)?,
            connected_app: read(
                "CONNECTED_APP_IDLE_TIMEOUT_SECONDS",
                "CONNECTED_APP_MAX_LIFETIME_SECONDS",
                d.connected_app,
            )?,
        })
    }
}

/// The first-party apps a session may name (`FIRST_PARTY_APPS`, comma-separated app ids):
/// sign-in's `apps` and introspection's `app` must be among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstPartyApps(std::sync::Arc<[AppId]>);

impl Default for FirstPartyApps {
    fn default() -> Self {
        Self::parse("chatgpt,codex,api-console").expect("the default apps are valid ids")
    }
}

impl FirstPartyApps {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut apps =
            raw.split(',').map(str::trim).filter(|a| !a.is_empty()).map(AppId::parse).collect::<Result<Vec<_>, _>>()?;
        apps.sort();
        apps.dedup();
        if apps.is_empty() {
            return Err(InvalidValue("at least one app id".into()));
        }
        Ok(Self(apps.into()))
    }

    /// Whether `app` is one of them.
    pub fn contains(&self, app: &AppId) -> bool {
        self.0.binary_search(app).is_ok()
    }

    /// Checks an app id that came from outside: a `400` names the apps it could have been.
    pub fn check(&self, app: &AppId) -> Result<(), InvalidValue> {
        if self.contains(app) {
            return Ok(());
        }
        let known: Vec<&str> = self.0.iter().map(AppId::as_str).collect();
        Err(InvalidValue(format!("app {:?} is not a first-party app (one of: {})", app.as_str(), known.join(", "))))
    }
}

/// Session policy: lifetimes the services apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Default session lifetime when sign-in doesn't ask for one (`SESSION_TTL_SECONDS`).
    pub session_ttl_secs: i64,
    /// Longest lifetime sign-in may ask for (`MAX_SESSION_TTL_SECONDS`).
    pub max_session_ttl_secs: i64,
    /// How long a revoked session's tombstone stays before TTL removes it (`TOMBSTONE_TTL_SECONDS`).
    pub tombstone_secs: i64,
    /// How long audit events are kept (`AUDIT_TTL_SECONDS`, 400 days).
    pub audit_ttl_secs: i64,
    /// Active sessions a user may have; one more sign-in evicts the least recently active
    /// (`MAX_SESSIONS_PER_USER`, 100 as on GitLab).
    pub max_sessions: u32,
    /// Idle timeout and absolute lifetime per client kind.
    pub lifetimes: Lifetimes,
    /// Introspection writes a session's last activity at most this often
    /// (`LAST_ACTIVE_INTERVAL_SECONDS`, 300); the idle check allows for it.
    pub last_active_interval_secs: i64,
    /// The apps a session may name.
    pub apps: FirstPartyApps,
    /// Whether a member's own history names the admin who signed them out
    /// (`SHOW_ADMIN_ID_TO_MEMBERS`, false: "an admin of <workspace>"). The admin's IP never shows.
    pub admin_id_visible_to_members: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            session_ttl_secs: 30 * 86_400,
            max_session_ttl_secs: 400 * 86_400,
            tombstone_secs: 86_400,
            audit_ttl_secs: 400 * 86_400,
            max_sessions: 100,
            lifetimes: Lifetimes::default(),
            last_active_interval_secs: 300,
            apps: FirstPartyApps::default(),
            admin_id_visible_to_members: false,
        }
    }
}

/// How long a DynamoDB call may take. A stalled or unreachable DynamoDB becomes a `503` with
/// `Retry-After` within `operation`, never a request held until the Lambda timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTimeouts {
    /// Opening a connection (`DYNAMODB_CONNECT_TIMEOUT_MS`, 500).
    pub connect: std::time::Duration,
    /// One attempt, from sending to the whole answer (`DYNAMODB_ATTEMPT_TIMEOUT_MS`, 1000).
    pub attempt: std::time::Duration,
    /// The whole call, retries and their back-off included (`DYNAMODB_TIMEOUT_MS`, 2500).
    pub operation: std::time::Duration,
    /// Attempts at most, the first included (`DYNAMODB_MAX_ATTEMPTS`, 3).
    pub max_attempts: u32,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        Self {
            connect: std::time::Duration::from_millis(500),
            attempt: std::time::Duration::from_millis(1000),
            operation: std::time::Duration::from_millis(2500),
            max_attempts: 3,
        }
    }
}

impl StoreTimeouts {
    /// The AWS SDK's configuration loader, every call bounded by these timeouts (connect, each
    /// attempt, the whole call) with a bounded number of attempts: for DynamoDB, and for any
    /// other AWS call (the fan-out's Secrets Manager read at start).
    pub fn sdk_loader(&self) -> aws_config::ConfigLoader {
        let timeout_config = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build();
        let retry_config = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(std::time::Duration::from_millis(25))
            .with_max_backoff(std::time::Duration::from_millis(400));
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeout_config)
            .retry_config(retry_config);
        if system_roots_wanted() {
            loader
        } else {
            loader.http_client(aws_https_client())
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name, default: std::time::Duration| -> Result<std::time::Duration, ConfigError> {
            let default = i64::try_from(default.as_millis()).unwrap_or(i64::MAX);
            Ok(std::time::Duration::from_millis(number(name, default, 1)?.unsigned_abs()))
        };
        let timeouts = Self {
            connect: ms("DYNAMODB_CONNECT_TIMEOUT_MS", d.connect)?,
            attempt: ms("DYNAMODB_ATTEMPT_TIMEOUT_MS", d.attempt)?,
            operation: ms("DYNAMODB_TIMEOUT_MS", d.operation)?,
            max_attempts: u32::try_from(number("DYNAMODB_MAX_ATTEMPTS", i64::from(d.max_attempts), 1)?)
                .map_err(|_| ConfigError::Invalid { name: "DYNAMODB_MAX_ATTEMPTS", reason: "too large".into() })?,
        };
        if timeouts.attempt > timeouts.operation {
            return Err(ConfigError::Invalid {
                name: "DYNAMODB_ATTEMPT_TIMEOUT_MS",
                reason: "must not exceed DYNAMODB_TIMEOUT_MS".into(),
            });
        }
        Ok(timeouts)
    }
}

/// The roots AWS service endpoints chain to (Amazon Trust Services: Amazon Root CA 1-4, and the
/// Starfield Services root that cross-signs them), compiled in from `shared/certs/`.
pub const AWS_ROOTS: [&[u8]; 5] = [
    include_bytes!("../certs/Amazon_Root_CA_1.pem"),
    include_bytes!("../certs/Amazon_Root_CA_2.pem"),
    include_bytes!("../certs/Amazon_Root_CA_3.pem"),
    include_bytes!("../certs/Amazon_Root_CA_4.pem"),
    include_bytes!("../certs/Starfield_Services_Root_Certificate_Authority_-_G2.pem"),
];

/// Whether the SDK keeps its default client: the system's roots, and the proxy settings of the
/// environment. `AWS_TLS_SYSTEM_ROOTS=true` asks for it (a partition whose endpoints chain to
/// other roots, a TLS-inspecting egress, a root AWS adds after this build), and so does any
/// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, which the compiled-in client would ignore.
pub fn system_roots_wanted() -> bool {
    let set = |name: &str| env::var(name).is_ok_and(|v| !v.trim().is_empty());
    env::var("AWS_TLS_SYSTEM_ROOTS").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"].into_iter().any(set)
}

/// Makes aws-lc-rs the process's TLS crypto provider, once; later calls do nothing. Every TLS
/// client here takes it: the SDK's (which names it as well), Redis's, and reqwest's (back-channel
/// logout, the trace exporter), which is built without a provider of its own, so that ring is not
/// linked beside aws-lc-rs. Called by `telemetry::init` before anything connects, and by whatever
/// builds a client outside a function (the back-channel's, tests).
pub fn install_crypto_provider() {
    // An error means one is installed already: the same provider, by an earlier call.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The AWS SDK's HTTPS client (rustls, aws-lc) trusting `AWS_ROOTS` only. The SDK's default
/// trusts the system's roots, which it loads at start: on Lambda's image that is reading and
/// parsing well over a hundred certificate files, most of a function's cold start. The SDK only
/// ever talks to AWS endpoints, whose certificates chain to these roots.
pub fn aws_https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust =
        AWS_ROOTS.iter().fold(TrustStore::empty().with_native_roots(false), |t, pem| t.with_pem_certificate(*pem));
    let context = TlsContext::builder().with_trust_store(trust).build().expect("a TLS context of PEM roots");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the sessions table (required).
    pub table_name: String,
    pub policy: Policy,
    pub timeouts: StoreTimeouts,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let table_name =
            env::var("TABLE_NAME").ok().filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let d = Policy::default();
        let policy = Policy {
            session_ttl_secs: number("SESSION_TTL_SECONDS", d.session_ttl_secs, 60)?,
            max_session_ttl_secs: number("MAX_SESSION_TTL_SECONDS", d.max_session_ttl_secs, 60)?,
            tombstone_secs: number("TOMBSTONE_TTL_SECONDS", d.tombstone_secs, 0)?,
            audit_ttl_secs: number("AUDIT_TTL_SECONDS", d.audit_ttl_secs, 86_400)?,
            max_sessions: u32::try_from(number("MAX_SESSIONS_PER_USER", i64::from(d.max_sessions), 1)?)
                .map_err(|_| ConfigError::Invalid { name: "MAX_SESSIONS_PER_USER", reason: "too large".into() })?,
            lifetimes: Lifetimes::from_env()?,
            last_active_interval_secs: number("LAST_ACTIVE_INTERVAL_SECONDS", d.last_active_interval_secs, 1)?,
            apps: match env::var("FIRST_PARTY_APPS") {
                Err(_) => d.apps,
                Ok(raw) => FirstPartyApps::parse(&raw)
                    .map_err(|e| ConfigError::Invalid { name: "FIRST_PARTY_APPS", reason: e.0 })?,
            },
            admin_id_visible_to_members: flag("SHOW_ADMIN_ID_TO_MEMBERS")?,
        };
        if policy.session_ttl_secs > policy.max_session_ttl_secs {
            return Err(ConfigError::Invalid {
                name: "SESSION_TTL_SECONDS",
                reason: "must not exceed MAX_SESSION_TTL_SECONDS".into(),
            });
        }
        Ok(Self { table_name, policy, timeouts: StoreTimeouts::from_env()? })
    }
}

/// A Secrets Manager secret's string value (`name`: the variable holding its ARN), read with the
/// store's timeouts. Errors name the secret, never its value.
#[cfg(feature = "secrets")]
pub async fn read_secret(name: &'static str, arn: &str, timeouts: &StoreTimeouts) -> Result<String, ConfigError> {
    let config = timeouts.sdk_loader().load().await;
    let out =
        aws_sdk_secretsmanager::Client::new(&config).get_secret_value().secret_id(arn).send().await.map_err(|e| {
            ConfigError::Invalid {
                name,
                reason: format!("reading {arn} failed: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)),
            }
        })?;
    out.secret_string()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::Invalid { name, reason: format!("{arn} has no string value") })
}

/// `WEB_ORIGIN`: the origin the pages are served from (`https://sessions.example.com`), which a
/// cookie-authenticated change may name in `Origin` when the browser sends no Fetch Metadata.
/// Unset: only `Sec-Fetch-Site: same-origin` is accepted.
pub fn web_origin() -> Option<&'static str> {
    static ORIGIN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| {
            // `null` (an opaque origin: sandboxed frames, file:) never identifies this site.
            env::var("WEB_ORIGIN")
                .ok()
                .map(|v| v.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|v| !v.is_empty() && v != "null")
        })
        .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn the_aws_roots_are_certificates_and_the_client_builds() {
        // rustls parses them only when the first connection is made: parse them here, as it will.
        let mut store = rustls::RootCertStore::empty();
        for pem in AWS_ROOTS {
            let text = std::str::from_utf8(pem).unwrap();
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text:.40}");
            let der = base64::engine::general_purpose::STANDARD.decode(body).expect("base64");
            store.add(rustls::pki_types::CertificateDer::from(der)).expect("a root rustls accepts");
        }
        assert_eq!(store.len(), AWS_ROOTS.len());
        let _client = aws_https_client();
    }
}
