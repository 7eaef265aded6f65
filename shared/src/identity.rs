//! A workspace's identity provider and how it names users: the provider's configuration (issuer,
//! keys, audience, subject format), the identifiers a user is matched by (email; issuer and
//! subject), and the subject identifiers of RFC 9493 its signals carry. Which addresses its JWKS
//! URL may reach is `egress`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::WorkspaceId;
pub use crate::egress::MAX_URL_LEN;

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
    /// at most 254 characters) and lower-cased in ASCII only: providers compare addresses without
    /// case, and a Unicode lower-casing would make look-alikes equal (the Kelvin sign `K` is `k`).
    pub fn email(raw: &str) -> Result<Self, String> {
        let ok = raw.chars().count() <= MAX_EMAIL_LEN
            && plain(raw)
            && !raw.chars().any(char::is_whitespace)
            && matches!(raw.split_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if !ok {
            return Err(format!("email must be an address of at most {MAX_EMAIL_LEN} characters"));
        }
        Ok(Self::Email(raw.to_ascii_lowercase()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subjects_resolve_to_the_users_they_name() {
        let email = UserIdentifier::Email("ann@acme.example".into());
        assert_eq!(subject_users(&json!({"format": "email", "email": "Ann@Acme.example"})), Ok(vec![email.clone()]));
        assert_ne!(UserIdentifier::email("\u{212A}im@acme.example"), UserIdentifier::email("kim@acme.example"));
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
}
