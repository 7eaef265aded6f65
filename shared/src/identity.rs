//! A workspace's identity provider and how it names users: the provider's configuration (issuer,
//! keys, audience, subject format), the identifiers a user is matched by (email; issuer and
//! subject), the subject identifiers of RFC 9493 its signals carry, and which addresses a JWKS URL
//! may reach.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::WorkspaceId;

/// Longest issuer, audience or JWKS URL accepted.
pub const MAX_URL_LEN: usize = 512;
/// Longest email address (RFC 5321's path limit, less the brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest subject (`sub`) accepted.
pub const MAX_SUB_LEN: usize = 255;

/// How a workspace's provider names the user a signal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectFormat {
    /// By the user's email address.
    Email,
    /// By the provider's issuer and the user's subject there (`iss_sub`).
    IssSub,
}

/// A workspace's identity provider, as `PUT /v1/internal/workspaces/{id}/identity-provider`
/// stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentityProvider {
    pub workspace_id: WorkspaceId,
    /// `iss` of what it signs.
    pub issuer: String,
    /// Where its public keys are (JWKS).
    pub jwks_url: String,
    /// `aud` it must name: this service, for this workspace.
    pub audience: String,
    pub subject_format: SubjectFormat,
    /// Epoch ms.
    pub updated_at: i64,
}

/// What a user is matched by when a provider names them, each stored under its own key so that a
/// lookup is one read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserIdentifier {
    /// Lower-cased.
    Email(String),
    IssSub {
        iss: String,
        sub: String,
    },
}

fn plain(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_control() || crate::domain::is_misleading(c))
}

impl UserIdentifier {
    /// An email address, checked (one `@`, something either side, no space or control character,
    /// at most 254 bytes) and lower-cased: providers compare addresses without case.
    pub fn email(raw: &str) -> Result<Self, String> {
        let ok = raw.chars().count() <= MAX_EMAIL_LEN
            && plain(raw)
            && !raw.chars().any(char::is_whitespace)
            && matches!(raw.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if !ok {
            return Err(format!("email must be an address of at most {MAX_EMAIL_LEN} characters"));
        }
        Ok(Self::Email(raw.to_lowercase()))
    }

    /// An issuer and a subject there, each plain text (issuer: at most 512, subject: 255).
    pub fn iss_sub(iss: &str, sub: &str) -> Result<Self, String> {
        if iss.chars().count() > MAX_URL_LEN || !plain(iss) || sub.chars().count() > MAX_SUB_LEN || !plain(sub) {
            return Err(format!(
                "iss and sub must be plain text of at most {MAX_URL_LEN} and {MAX_SUB_LEN} characters"
            ));
        }
        Ok(Self::IssSub { iss: iss.to_owned(), sub: sub.to_owned() })
    }

    pub fn format(&self) -> SubjectFormat {
        match self {
            Self::Email(_) => SubjectFormat::Email,
            Self::IssSub { .. } => SubjectFormat::IssSub,
        }
    }
}

/// The users an RFC 9493 subject identifier names, as far as this service can match them: `email`
/// and `iss_sub` name one; `aliases` each of its identifiers; a complex subject (CAEP: `user`,
/// `session`, `tenant`, ... members, with or without `"format": "complex"`) its `user`. Formats
/// that name no user here (`opaque`, `phone_number`, `account`, `did`, `uri`) are well formed and
/// name nobody. `Err`: the subject is malformed.
pub fn subject_users(subject: &Value) -> Result<Vec<UserIdentifier>, String> {
    subject_users_at(subject, 0)
}

fn subject_users_at(subject: &Value, depth: u8) -> Result<Vec<UserIdentifier>, String> {
    let obj = subject.as_object().ok_or("a subject identifier must be an object")?;
    let text = |name: &str| -> Result<&str, String> {
        obj.get(name).and_then(Value::as_str).ok_or_else(|| format!("the subject's {name} must be a string"))
    };
    // Senders of the drafts before RFC 9493 (Google's RISC among them) name it `subject_type`, in
    // kebab case.
    let format = match (obj.get("format"), obj.get("subject_type")) {
        (Some(Value::String(f)), _) => Some(f.clone()),
        (None, Some(Value::String(f))) => Some(f.replace('-', "_")),
        (None, None) => None,
        _ => return Err("a subject identifier's format must be a string".into()),
    };
    match format {
        Some(format) => match format.as_str() {
            "email" => Ok(vec![UserIdentifier::email(text("email")?)?]),
            "iss_sub" => Ok(vec![UserIdentifier::iss_sub(text("iss")?, text("sub")?)?]),
            "aliases" if depth == 0 => {
                let ids = obj.get("identifiers").and_then(Value::as_array).ok_or("aliases need identifiers")?;
                if ids.is_empty() || ids.len() > 10 {
                    return Err("aliases need 1 to 10 identifiers".into());
                }
                let mut users = Vec::new();
                for id in ids {
                    users.extend(subject_users_at(id, depth + 1)?);
                }
                Ok(users)
            }
            "complex" if depth == 0 => complex_user(obj, depth),
            "opaque" | "phone_number" | "account" | "did" | "uri" => Ok(Vec::new()),
            _ => Err("unknown subject identifier format".into()),
        },
        None if depth == 0 && obj.contains_key("user") => complex_user(obj, depth),
        None => Err("a subject identifier needs a format".into()),
    }
}

fn complex_user(obj: &serde_json::Map<String, Value>, depth: u8) -> Result<Vec<UserIdentifier>, String> {
    match obj.get("user") {
        Some(user) => subject_users_at(user, depth + 1),
        None => Ok(Vec::new()),
    }
}

/// Whether an address is one a service on the internet may have: not loopback, private, shared
/// (CGNAT), link-local (the instance metadata service among them), unspecified, broadcast,
/// multicast, documentation or reserved, in IPv4 or IPv6 (IPv4-mapped addresses as their IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64: an IPv4 address inside
                || first == 0x0000) // IPv4-compatible and other reserved
        }
    }
}

/// Which addresses a provider's JWKS URL may reach: `https` to public addresses when deployed;
/// with the local-stack flag (`IDP_ALLOW_LOOPBACK`), loopback over `http` or `https` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Egress {
    pub allow_loopback: bool,
}

impl Egress {
    /// `IDP_ALLOW_LOOPBACK` (`false`): `true` only on the local stack, where the stand-in
    /// identity provider serves its keys over http on 127.0.0.1.
    pub fn from_env() -> Result<Self, crate::env::ConfigError> {
        Ok(Self { allow_loopback: crate::env::flag("IDP_ALLOW_LOOPBACK")? })
    }

    /// Whether the JWKS fetch may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.allow_loopback && ip.is_loopback())
    }

    /// The host and port a JWKS URL names, checked for its form: `https` (or, with the flag,
    /// `http` to a loopback host), no credentials, no fragment, at most 512 characters. The host's
    /// addresses are checked where they are resolved.
    pub fn check_url(&self, raw: &str) -> Result<(String, u16), String> {
        use lambda_http::http::Uri;
        if raw.len() > MAX_URL_LEN || !plain(raw) || raw.contains('#') {
            return Err(format!("jwks_url must be a URL of at most {MAX_URL_LEN} characters"));
        }
        let uri: Uri = raw.parse().map_err(|_| "jwks_url is not a URL".to_string())?;
        let authority = uri.authority().ok_or("jwks_url needs a host")?;
        if authority.as_str().contains('@') {
            return Err("credentials do not belong in jwks_url".into());
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let loopback_host = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let port = match uri.scheme_str() {
            Some("https") => authority.port_u16().unwrap_or(443),
            Some("http") if self.allow_loopback && loopback_host => authority.port_u16().unwrap_or(80),
            _ => return Err("jwks_url must be https".into()),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.allows(ip) {
                return Err("jwks_url must not name a private, loopback or link-local address".into());
            }
        } else if host == "localhost" && !self.allow_loopback {
            return Err("jwks_url must not name a private, loopback or link-local address".into());
        }
        Ok((host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subjects_resolve_to_the_users_they_name() {
        let email = UserIdentifier::Email("ann@acme.example".into());
        assert_eq!(subject_users(&json!({"format": "email", "email": "Ann@Acme.example"})), Ok(vec![email.clone()]));
        let iss_sub = UserIdentifier::IssSub { iss: "https://idp.example".into(), sub: "00u1".into() };
        assert_eq!(
            subject_users(&json!({"format": "iss_sub", "iss": "https://idp.example", "sub": "00u1"})),
            Ok(vec![iss_sub.clone()])
        );
        // CAEP's complex subject, as Okta sends it, with or without the format member.
        let complex = json!({"user": {"format": "email", "email": "ann@acme.example"},
            "session": {"format": "opaque", "id": "s1"}, "tenant": {"format": "opaque", "id": "t"}});
        assert_eq!(subject_users(&complex), Ok(vec![email.clone()]));
        let mut formatted = complex.clone();
        formatted["format"] = json!("complex");
        assert_eq!(subject_users(&formatted), Ok(vec![email.clone()]));
        let aliases = json!({"format": "aliases", "identifiers": [
            {"format": "email", "email": "ann@acme.example"},
            {"format": "iss_sub", "iss": "https://idp.example", "sub": "00u1"}]});
        assert_eq!(subject_users(&aliases), Ok(vec![email, iss_sub]));
        assert_eq!(subject_users(&json!({"format": "opaque", "id": "x"})), Ok(vec![]));
        assert_eq!(
            subject_users(&json!({"subject_type": "iss-sub", "iss": "https://idp.example", "sub": "00u1"})),
            Ok(vec![UserIdentifier::IssSub { iss: "https://idp.example".into(), sub: "00u1".into() }])
        );
        for bad in [
            json!("ann@acme.example"),
            json!({"email": "ann@acme.example"}),
            json!({"format": "email"}),
            json!({"format": "email", "email": "no-at-sign"}),
            json!({"format": "email", "email": "a@b@c"}),
            json!({"format": "email", "email": "ann @acme.example"}),
            json!({"format": "iss_sub", "iss": "https://idp.example"}),
            json!({"format": "iss_sub", "iss": "x", "sub": "a\u{202E}b"}),
            json!({"format": "carrier-pigeon"}),
            json!({"format": "aliases", "identifiers": []}),
            json!({"format": "aliases", "identifiers": [{"format": "aliases", "identifiers": []}]}),
        ] {
            assert!(subject_users(&bad).is_err(), "{bad} should be malformed");
        }
    }

    #[test]
    fn only_public_addresses_are_reachable_when_deployed() {
        let deployed = Egress::default();
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!deployed.allows(private.parse().unwrap()), "{private} must be refused");
        }
        for public in ["8.8.8.8", "52.94.1.1", "2606:4700::1111"] {
            assert!(deployed.allows(public.parse().unwrap()), "{public}");
        }
        let local = Egress { allow_loopback: true };
        assert!(local.allows("127.0.0.1".parse().unwrap()));
        assert!(!local.allows("10.0.0.1".parse().unwrap()), "the flag allows loopback, nothing else");
    }

    #[test]
    fn a_jwks_url_must_be_https_to_a_public_host() {
        let deployed = Egress::default();
        assert_eq!(deployed.check_url("https://acme.okta.com/oauth2/v1/keys"), Ok(("acme.okta.com".into(), 443)));
        for bad in [
            "http://acme.okta.com/keys",
            "https://127.0.0.1/keys",
            "https://localhost/keys",
            "http://127.0.0.1:9400/jwks.json",
            "https://169.254.169.254/latest",
            "https://[::1]/keys",
            "https://user:pw@acme.okta.com/keys",
            "ftp://acme.okta.com/keys",
            "https://acme.okta.com/keys#frag",
            "not a url",
        ] {
            assert!(deployed.check_url(bad).is_err(), "{bad} must be refused");
        }
        let local = Egress { allow_loopback: true };
        assert_eq!(local.check_url("http://127.0.0.1:9400/jwks.json"), Ok(("127.0.0.1".into(), 9400)));
        assert!(local.check_url("http://10.0.0.1/jwks.json").is_err());
        assert!(local.check_url("http://acme.okta.com/keys").is_err(), "http only to loopback");
    }
}
