//! Newtypes parsed once at the edge. Past `parse`, a value can't be invalid.

use std::fmt;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Why a value from outside was refused. The text is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// Whether a character may mislead a reader of text shown to users, so free text refuses it:
/// control characters (Cc), bidirectional controls (which reorder what follows: "moc.elgoog"
/// shown as "google.com"), zero-width characters (which hide text or split look-alikes), and line
/// and paragraph separators (which fake a new row), and the other invisible characters of the
/// Basic Multilingual Plane (fillers, joiners, variation selectors). `infra/openapi.yaml` states
/// the same set as a pattern. Astral invisibles (tag characters) are not refused: an ECMA-262
/// pattern cannot name them without the `u` flag.
pub fn is_misleading(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{034F}'                  // combining grapheme joiner
            | '\u{061C}'                // Arabic letter mark
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers (blank)
            | '\u{180B}'..='\u{180F}'   // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // bidi isolates
            | '\u{206A}'..='\u{206F}'   // deprecated format characters
            | '\u{FE00}'..='\u{FE0F}'   // variation selectors
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{00AD}'                // soft hyphen
            | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation
        )
}

/// Whether free text shown to users is safe to show: nothing `is_misleading`.
pub fn is_plain_text(s: &str) -> bool {
    !s.chars().any(is_misleading)
}

/// Serde helpers for request bodies, so that they accept exactly what `infra/openapi.yaml` says.
pub mod body {
    use serde::{Deserialize, Deserializer};

    /// An optional field that, when present, must not be `null` (the contract types it, and does
    /// not make it nullable): `#[serde(default, deserialize_with = "body::not_null")]`.
    pub fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }

    /// An optional JSON Schema `integer`: a number with no fractional part (`60` or `60.0`), never
    /// `null`.
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        let whole = n.as_i64().or_else(|| {
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f <= i64::MAX as f64).map(|f| f as i64)
        });
        whole.map(Some).ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}")))
    }
}

/// A page size (`limit`): 1 to 100, 20 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub const MAX: u32 = 100;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(invalid(format!("limit must be a whole number from 1 to {}", Self::MAX))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(20)
    }
}

/// A user id issued by the identity system: 1–128 characters of `[A-Za-z0-9._@:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | ':' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(ok_char) {
            return Err(invalid("user_id must be 1-128 characters of letters, digits and . _ @ : -"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A workspace id: 1–64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if raw.is_empty() || raw.len() > 64 || !raw.chars().all(ok_char) {
            return Err(invalid("workspace_id must be 1-64 characters of letters, digits and . _ -"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkspaceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A user's role in their workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
}

/// A ULID minted at `at_ms`, with 80 random bits from the OS generator: session ids, and the
/// ids of audit events.
pub fn mint_ulid(at_ms: i64) -> Result<Ulid, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let at = u64::try_from(at_ms).unwrap_or(0);
    let random = u128::from_le_bytes(bytes) & ((1u128 << 80) - 1);
    Ok(Ulid::from_parts(at, random))
}

/// A session id: a ULID, so ids sort by sign-in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Ulid);

impl SessionId {
    /// A fresh id minted at `at_ms` (`mint_ulid`).
    pub fn generate(at_ms: i64) -> Result<Self, getrandom::Error> {
        mint_ulid(at_ms).map(Self)
    }

    /// A fresh id for now (tests and fixtures). No `Default`: an id is minted, never defaulted.
    #[cfg(any(test, feature = "test-utils"))]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Self::generate(now as i64).expect("OS random generator")
    }

    pub fn from_ulid(ulid: Ulid) -> Self {
        Self(ulid)
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() != 26 {
            return Err(invalid("session id must be a 26-character ULID"));
        }
        Ulid::from_string(raw).map(Self).map_err(|_| invalid("session id must be a 26-character ULID"))
    }

    /// Milliseconds since the epoch at which the id was minted (the sign-in time).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }

    pub fn ulid(&self) -> Ulid {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A first-party app id such as `chatgpt` or `codex`: 1–32 of `[a-z0-9_-]`, starting alphanumeric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AppId(String);

impl AppId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !first_ok || !rest_ok || raw.len() > 32 {
            return Err(invalid(format!("app id {raw:?} must be 1-32 characters of a-z, 0-9, _ and -")));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What kind of client holds the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Browser,
    DesktopApp,
    MobileApp,
    Cli,
    ThirdParty,
    ConnectedApp,
}

impl ClientKind {
    /// Whether the session listing shows this kind. Third-party and connected (OAuth) app
    /// sessions never appear; CLI sessions appear only when asked for, as in the reference product.
    pub fn is_listed(self, include_cli: bool) -> bool {
        match self {
            Self::Browser | Self::DesktopApp | Self::MobileApp => true,
            Self::Cli => include_cli,
            Self::ThirdParty | Self::ConnectedApp => false,
        }
    }
}

/// Coarse location, as resolved by the sign-in service from the IP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "body::not_null")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "body::not_null")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "body::not_null")]
    pub country: Option<String>,
}

impl Location {
    /// Characters (not bytes) per field.
    pub const MAX_FIELD_LEN: usize = 100;

    /// Trims fields, drops empty ones, and refuses over-long or misleading text (`is_plain_text`).
    pub fn validated(self) -> Result<Option<Self>, InvalidValue> {
        fn clean(field: &str, v: Option<String>) -> Result<Option<String>, InvalidValue> {
            let Some(v) = v else { return Ok(None) };
            // Checked as sent, then trimmed: what the contract refuses is refused.
            if v.chars().count() > Location::MAX_FIELD_LEN || !is_plain_text(&v) {
                return Err(invalid(format!("location.{field} must be at most 100 characters of printable text")));
            }
            let v = v.trim();
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
        let loc = Self {
            city: clean("city", self.city)?,
            region: clean("region", self.region)?,
            country: clean("country", self.country)?,
        };
        Ok((loc != Self::default()).then_some(loc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_usual_ids_and_refuses_key_separators() {
        assert!(UserId::parse("user-123").is_ok());
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("a#b").is_err(), "# would forge a key");
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn session_id_is_a_ulid() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(&id.to_string()), Ok(id));
        assert!(SessionId::parse("01JD2Z5R8B3W4K9Q7N6M5X4Y3").is_err(), "25 chars");
        assert!(SessionId::parse("01JD2Z5R8B3W4K9Q7N6M5X4Y3!").is_err());
        assert!(SessionId::parse("").is_err());
        assert!(SessionId::parse("../../etc/passwd__________").is_err());
    }

    #[test]
    fn session_id_carries_its_sign_in_time() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp() as u64 * 1000;
        let id = SessionId::new();
        assert!(id.timestamp_ms() >= before && id.timestamp_ms() < before + 60_000);
        let at = SessionId::generate(1_700_000_000_123).unwrap();
        assert_eq!(at.timestamp_ms(), 1_700_000_000_123, "randomness must not spill into the time");
        assert!(SessionId::generate(1_000).unwrap() < SessionId::generate(2_000).unwrap());
    }

    #[test]
    fn workspace_ids_and_roles() {
        assert!(WorkspaceId::parse("acme-corp").is_ok());
        assert!(WorkspaceId::parse("").is_err());
        assert!(WorkspaceId::parse("a#b").is_err());
        assert!(WorkspaceId::parse(&"w".repeat(65)).is_err());
        assert_eq!(serde_json::from_str::<Role>("\"admin\"").unwrap(), Role::Admin);
        assert!(serde_json::from_str::<Role>("\"owner\"").is_err());
    }

    #[test]
    fn app_ids() {
        assert!(AppId::parse("chatgpt").is_ok());
        assert!(AppId::parse("api-console").is_ok());
        assert!(AppId::parse("ChatGPT").is_err());
        assert!(AppId::parse("").is_err());
        assert!(AppId::parse("-x").is_err());
        assert!(AppId::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn client_kinds_listed() {
        assert!(ClientKind::Browser.is_listed(false));
        assert!(!ClientKind::Cli.is_listed(false));
        assert!(ClientKind::Cli.is_listed(true));
        assert!(!ClientKind::ThirdParty.is_listed(true));
        assert!(!ClientKind::ConnectedApp.is_listed(true));
        let k: ClientKind = serde_json::from_str("\"desktop_app\"").unwrap();
        assert_eq!(k, ClientKind::DesktopApp);
        assert!(serde_json::from_str::<ClientKind>("\"toaster\"").is_err());
    }

    #[test]
    fn location_is_cleaned() {
        let loc = Location { city: Some(" Paris ".into()), region: Some(String::new()), country: Some("FR".into()) };
        let loc = loc.validated().unwrap().unwrap();
        assert_eq!(loc.city.as_deref(), Some("Paris"));
        assert_eq!(loc.region, None);
        assert_eq!(Location::default().validated().unwrap(), None);
        let long = Location { city: Some("x".repeat(101)), ..Default::default() };
        assert!(long.validated().is_err());
        let wide = Location { city: Some("é".repeat(100)), ..Default::default() };
        assert!(wide.validated().is_ok(), "100 characters, 200 bytes: within the limit the spec states");
    }

    #[test]
    fn text_that_misleads_the_reader_is_refused() {
        // Right-to-left override, isolates, zero-width and separators: each refused in a location.
        for bad in [
            "Paris\u{202E}gnp.exe",
            "Pa\u{200B}ris",
            "Lyon\u{2028}Signed in: you",
            "\u{2067}Nice\u{2069}",
            "\u{FEFF}Oslo",
            "Se\u{3164}oul",
            "Na\u{FE0F}ples",
            "A\u{206A}B",
            "Ber\u{200D}lin",
            "Ro\u{2029}me",
            "A\u{061C}B",
            "Lil\nle",
        ] {
            let loc = Location { city: Some(bad.into()), ..Default::default() };
            assert!(loc.validated().is_err(), "{bad:?} should be refused");
        }
        for good in ["São Paulo", "Zürich", "東京", "القاهرة", "Île-de-France", "Kraków 🙂"] {
            let loc = Location { city: Some(good.into()), ..Default::default() };
            assert!(loc.validated().is_ok(), "{good:?} is ordinary text");
        }
    }
}
