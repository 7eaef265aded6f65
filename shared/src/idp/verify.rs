//! The verification rules of an identity provider's JWT, in the order they are applied:
//! the algorithm (ES256 or RS256 only, read before anything else, so `none` and HMAC never reach a
//! key), the type (`global-token-revocation+jwt` for a GTR bearer token, `secevent+jwt` for a SET:
//! an ID token or access token of the same issuer and audience is neither), the key (by `kid`, of
//! the algorithm's family), the signature, then issuer, audience and times against `now_secs`
//! (with `SKEW_SECS`), and the `jti`, which the caller records once (`Verified::once`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::identity::IdentityProvider;

/// How far the provider's clock may be from ours (seconds), either way.
pub const SKEW_SECS: i64 = 60;
/// A bearer token that claims to live longer than this (`exp - iat`) is refused: its `jti` is kept
/// until it expires.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// A SET carries no `exp`: one issued (`iat`) longer ago than this is refused, and its `jti` is
/// kept this long. A day: an RFC 8935 transmitter retries for hours after an outage, and a
/// revocation refused as too old would be lost.
pub const SET_MAX_AGE_SECS: i64 = 86_400;
/// Longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// What the token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Global Token Revocation's `Authorization: Bearer` JWT (`typ` `global-token-revocation+jwt`,
    /// as Okta signs it): `exp` required.
    Bearer,
    /// A Security Event Token (RFC 8417), `typ` `secevent+jwt`: no `exp`; `iat` within
    /// `SET_MAX_AGE_SECS`.
    SecurityEvent,
}

/// Why a token was refused. Never shown with the token, and never with a claim's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWS compact serialisation with JSON header and claims.
    Malformed,
    /// An algorithm outside ES256 and RS256 (`none`, HMAC, ...).
    Algorithm,
    /// Not the route's `typ` (`global-token-revocation+jwt`, `secevent+jwt`).
    Type,
    /// No `kid`, or none of the provider's keys has it.
    UnknownKey,
    /// The key named is not of the algorithm's family, or not a signing key.
    KeyMismatch,
    Signature,
    Issuer,
    Audience,
    /// `exp` passed.
    Expired,
    /// `iat` (or `nbf`) in the future.
    NotYetValid,
    /// A SET issued too long ago.
    TooOld,
    /// A bearer token whose lifetime is over `MAX_LIFETIME_SECS`.
    Lifetime,
    /// A claim the kind requires is absent or not of its type (`iat`, `exp`, `jti`, `iss`, `aud`).
    Claim(&'static str),
}

impl Rejection {
    /// What was wrong, in words safe to send back (no value from the token).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Malformed => "not a signed JWT",
            Self::Algorithm => "its algorithm is not ES256 or RS256",
            Self::Type => "its type (typ) is not the one this route takes",
            Self::UnknownKey => "no key of the provider's JWKS has its kid",
            Self::KeyMismatch => "its key is not one for its algorithm",
            Self::Signature => "its signature does not verify",
            Self::Issuer => "its issuer is not the workspace's provider",
            Self::Audience => "its audience is not this workspace's",
            Self::Expired => "it has expired",
            Self::NotYetValid => "it was issued in the future",
            Self::TooOld => "it was issued too long ago",
            Self::Lifetime => "it lives longer than an hour",
            Self::Claim(_) => "a claim it needs (iat, exp, jti, iss, aud) is missing or malformed",
        }
    }

    /// The RFC 8935 error code a SET receiver answers with.
    pub fn set_error(&self) -> &'static str {
        match self {
            Self::Algorithm | Self::UnknownKey | Self::KeyMismatch | Self::Signature => "invalid_key",
            Self::Issuer => "invalid_issuer",
            Self::Audience => "invalid_audience",
            Self::Malformed
            | Self::Type
            | Self::Expired
            | Self::NotYetValid
            | Self::TooOld
            | Self::Lifetime
            | Self::Claim(_) => "invalid_request",
        }
    }
}

/// A token that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub jti: String,
    /// Until when (epoch seconds) its `jti` must be remembered: past it, the token is refused on
    /// its times alone.
    pub keep_until_secs: i64,
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The record that this signal of `provider` was acted on, written with what it does.
    pub fn once(&self, provider: &IdentityProvider) -> crate::store::Once {
        crate::store::Once {
            workspace: provider.workspace_id.clone(),
            issuer: provider.issuer.clone(),
            jti: self.jti.clone(),
            keep_until_secs: self.keep_until_secs,
        }
    }
}

/// The header, read by hand before any library sees the token, so that only an allowed `alg` is
/// ever handed to one.
fn header(token: &str) -> Result<Map<String, Value>, Rejection> {
    let first = token.split('.').next().ok_or(Rejection::Malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(first).map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(h)) => Ok(h),
        _ => Err(Rejection::Malformed),
    }
}

/// Whether `typ` names `media` (case-insensitive, with or without `application/`, RFC 7515).
fn is_type(typ: Option<&str>, media: &str) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == media || t.strip_prefix("application/") == Some(media)
    })
}

/// The rules read from the header alone (shape, algorithm, type, a `kid`), before anything else
/// is read or fetched: the algorithm and the `kid` to look for.
pub fn precheck(token: &str, kind: Kind) -> Result<(Algorithm, String), Rejection> {
    if token.split('.').count() != 3 {
        return Err(Rejection::Malformed);
    }
    let h = header(token)?;
    let alg = match h.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("RS256") => Algorithm::RS256,
        _ => return Err(Rejection::Algorithm),
    };
    let typ = h.get("typ").and_then(Value::as_str);
    let wanted = match kind {
        Kind::Bearer => "global-token-revocation+jwt",
        Kind::SecurityEvent => "secevent+jwt",
    };
    if !is_type(typ, wanted) {
        return Err(Rejection::Type);
    }
    let kid = h.get("kid").and_then(Value::as_str).ok_or(Rejection::UnknownKey)?;
    Ok((alg, kid.to_owned()))
}

/// Verifies `token` as the provider's `kind` of token at `now_secs`, with `keys` (its JWKS).
pub fn verify(
    token: &str,
    provider: &IdentityProvider,
    keys: &JwkSet,
    kind: Kind,
    now_secs: i64,
) -> Result<Verified, Rejection> {
    let (alg, kid) = precheck(token, kind)?;
    let kid = kid.as_str();
    let family_ok = |jwk: &&jsonwebtoken::jwk::Jwk| match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        _ => false,
    };
    // Of the keys with that kid (a set may hold one per family), the one of the algorithm's.
    let mut named = keys.keys.iter().filter(|k| k.common.key_id.as_deref() == Some(kid)).peekable();
    if named.peek().is_none() {
        return Err(Rejection::UnknownKey);
    }
    let jwk = named.find(family_ok).ok_or(Rejection::KeyMismatch)?;
    let alg_named = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(_) => false,
    };
    let for_signing =
        jwk.common.public_key_use.as_ref().is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
    if !alg_named || !for_signing {
        return Err(Rejection::KeyMismatch);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Rejection::KeyMismatch)?;
    let mut validation = Validation::new(alg);
    validation.leeway = SKEW_SECS.unsigned_abs();
    validation.set_issuer(&[&provider.issuer]);
    validation.set_audience(&[&provider.audience]);
    // The times are checked below against `now_secs`, not the library's own clock.
    validation.validate_nbf = false;
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => match c.as_str() {
            "iss" => Rejection::Claim("iss"),
            "aud" => Rejection::Claim("aud"),
            _ => Rejection::Malformed,
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat | ErrorKind::InvalidEcdsaKey => {
            Rejection::KeyMismatch
        }
        _ => Rejection::Malformed,
    })?;
    let claims = data.claims;
    let time = |name: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(Rejection::Claim(name)),
    };
    let iat = time("iat")?.ok_or(Rejection::Claim("iat"))?;
    let nbf = time("nbf")?;
    if iat > now_secs + SKEW_SECS || nbf.is_some_and(|nbf| nbf > now_secs + SKEW_SECS) {
        return Err(Rejection::NotYetValid);
    }
    let keep_until_secs = match kind {
        Kind::Bearer => {
            let exp = time("exp")?.ok_or(Rejection::Claim("exp"))?;
            if exp + SKEW_SECS <= now_secs {
                return Err(Rejection::Expired);
            }
            if exp - iat > MAX_LIFETIME_SECS {
                return Err(Rejection::Lifetime);
            }
            exp + SKEW_SECS
        }
        Kind::SecurityEvent => {
            if iat < now_secs - SET_MAX_AGE_SECS - SKEW_SECS {
                return Err(Rejection::TooOld);
            }
            iat + SET_MAX_AGE_SECS + SKEW_SECS
        }
    };
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => j.to_owned(),
        _ => return Err(Rejection::Claim("jti")),
    };
    Ok(Verified { jti, keep_until_secs, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::WorkspaceId;
    use crate::identity::SubjectFormat;
    use crate::testing::{idp_jwks, idp_token, IDP_KEY, IDP_OTHER_KEY};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const AUD: &str = "https://api.example/v1/workspaces/acme/global-token-revocation";

    fn provider() -> IdentityProvider {
        IdentityProvider {
            workspace_id: WorkspaceId::parse("acme").unwrap(),
            issuer: ISS.into(),
            jwks_url: "https://idp.example/keys".into(),
            audience: AUD.into(),
            subject_format: SubjectFormat::Email,
            updated_at: 0,
        }
    }

    fn now() -> i64 {
        crate::clock::now_ms() / 1000
    }

    fn claims() -> Value {
        let now = now();
        json!({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": "j-1", "sub": "client-1"})
    }

    fn with(mut c: Value, key: &str, v: Value) -> Value {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(key);
        } else {
            c[key] = v;
        }
        c
    }

    fn check(token: &str, kind: Kind) -> Result<Verified, Rejection> {
        verify(token, &provider(), &idp_jwks(&[(IDP_KEY, "k1")]), kind, now())
    }

    fn bearer(claims: &Value) -> String {
        idp_token(IDP_KEY, json!({"kid": "k1", "typ": "global-token-revocation+jwt"}), claims)
    }

    #[test]
    fn a_good_bearer_token_verifies_and_its_jti_is_kept_until_it_expires() {
        let c = claims();
        let v = check(&bearer(&c), Kind::Bearer).unwrap();
        assert_eq!(v.jti, "j-1");
        assert_eq!(v.keep_until_secs, c["exp"].as_i64().unwrap() + SKEW_SECS);
    }

    #[test]
    fn a_bearer_token_must_say_it_is_one() {
        // An ID token or access token of the same issuer and audience offboards nobody.
        for typ in [json!("JWT"), json!("at+jwt"), Value::Null] {
            let mut header = json!({"kid": "k1"});
            if !typ.is_null() {
                header["typ"] = typ.clone();
            }
            assert_eq!(check(&idp_token(IDP_KEY, header, &claims()), Kind::Bearer), Err(Rejection::Type), "{typ}");
        }
    }

    #[test]
    fn the_key_is_the_one_of_the_algorithms_family_among_those_with_its_kid() {
        let mut both = idp_jwks(&[(IDP_OTHER_KEY, "k1"), (IDP_KEY, "k1")]);
        let other_family: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "k1"})).unwrap();
        both.keys.insert(0, other_family);
        // The first EC key named k1 is not the signer's: the signature fails, not the lookup.
        assert_eq!(verify(&bearer(&claims()), &provider(), &both, Kind::Bearer, now()), Err(Rejection::Signature));
        let only_oct: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]})).unwrap();
        assert_eq!(
            verify(&bearer(&claims()), &provider(), &only_oct, Kind::Bearer, now()),
            Err(Rejection::KeyMismatch)
        );
    }

    #[test]
    fn the_times_are_checked_against_the_given_clock() {
        let token = bearer(&claims());
        let at = |offset: i64| verify(&token, &provider(), &idp_jwks(&[(IDP_KEY, "k1")]), Kind::Bearer, now() + offset);
        assert!(at(0).is_ok());
        assert_eq!(at(300 + SKEW_SECS + 1), Err(Rejection::Expired));
        assert_eq!(at(-SKEW_SECS - 1), Err(Rejection::NotYetValid));
        let not_before = with(claims(), "nbf", json!(now() + SKEW_SECS + 30));
        assert_eq!(check(&bearer(&not_before), Kind::Bearer), Err(Rejection::NotYetValid));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let typ = "global-token-revocation+jwt";
        let forged = idp_token(IDP_OTHER_KEY, json!({"kid": "k1", "typ": typ}), &claims());
        assert_eq!(check(&forged, Kind::Bearer), Err(Rejection::Signature));
        let unknown = idp_token(IDP_OTHER_KEY, json!({"kid": "k2", "typ": typ}), &claims());
        assert_eq!(check(&unknown, Kind::Bearer), Err(Rejection::UnknownKey));
        let no_kid = idp_token(IDP_KEY, json!({"typ": typ}), &claims());
        assert_eq!(check(&no_kid, Kind::Bearer), Err(Rejection::UnknownKey));
    }

    #[test]
    fn a_token_of_another_issuer_is_refused() {
        let c = with(claims(), "iss", json!("https://evil.example"));
        assert_eq!(check(&bearer(&c), Kind::Bearer), Err(Rejection::Issuer));
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let c = with(claims(), "aud", json!("https://api.example/v1/workspaces/globex/global-token-revocation"));
        assert_eq!(check(&bearer(&c), Kind::Bearer), Err(Rejection::Audience));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let now = now();
        let c = with(with(claims(), "iat", json!(now - 600)), "exp", json!(now - SKEW_SECS - 5));
        assert_eq!(check(&bearer(&c), Kind::Bearer), Err(Rejection::Expired));
        assert_eq!(check(&bearer(&with(claims(), "exp", Value::Null)), Kind::Bearer), Err(Rejection::Claim("exp")));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let now = now();
        let c = with(with(claims(), "iat", json!(now + SKEW_SECS + 30)), "exp", json!(now + 600));
        assert_eq!(check(&bearer(&c), Kind::Bearer), Err(Rejection::NotYetValid));
        assert_eq!(check(&bearer(&with(claims(), "iat", Value::Null)), Kind::Bearer), Err(Rejection::Claim("iat")));
    }

    #[test]
    fn a_token_that_lives_too_long_is_refused() {
        let c = with(claims(), "exp", json!(now() + MAX_LIFETIME_SECS + 60));
        assert_eq!(check(&bearer(&c), Kind::Bearer), Err(Rejection::Lifetime));
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": "none", "kid": "k1", "typ": "global-token-revocation+jwt"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        assert_eq!(check(&format!("{header}.{body}."), Kind::Bearer), Err(Rejection::Algorithm));
    }

    #[test]
    fn an_hmac_token_keyed_with_the_public_key_is_refused() {
        // The classic confusion: HS256 with the provider's public key as the secret.
        let public = serde_json::to_string(&idp_jwks(&[(IDP_KEY, "k1")]).keys[0]).unwrap();
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": "HS256", "kid": "k1", "typ": "global-token-revocation+jwt"}).to_string());
        let signing = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims().to_string()));
        let key = jsonwebtoken::EncodingKey::from_secret(public.as_bytes());
        let sig = jsonwebtoken::crypto::sign(signing.as_bytes(), &key, Algorithm::HS256).unwrap();
        assert_eq!(check(&format!("{signing}.{sig}"), Kind::Bearer), Err(Rejection::Algorithm));
    }

    #[test]
    fn a_token_without_a_jti_is_refused() {
        assert_eq!(check(&bearer(&with(claims(), "jti", Value::Null)), Kind::Bearer), Err(Rejection::Claim("jti")));
        assert_eq!(check(&bearer(&with(claims(), "jti", json!(""))), Kind::Bearer), Err(Rejection::Claim("jti")));
    }

    #[test]
    fn security_event_tokens_are_typed_and_dated_by_iat() {
        let now = now();
        let set_claims = with(claims(), "exp", Value::Null);
        let set = idp_token(IDP_KEY, json!({"kid": "k1", "typ": "secevent+jwt"}), &set_claims);
        let v = check(&set, Kind::SecurityEvent).unwrap();
        assert_eq!(v.keep_until_secs, now + SET_MAX_AGE_SECS + SKEW_SECS);
        // A SET is never a bearer token, and a plain JWT is never a SET.
        assert_eq!(check(&set, Kind::Bearer), Err(Rejection::Type));
        assert_eq!(check(&bearer(&set_claims), Kind::SecurityEvent), Err(Rejection::Type));
        let typed = idp_token(IDP_KEY, json!({"kid": "k1", "typ": "application/SECEVENT+JWT"}), &set_claims);
        assert!(check(&typed, Kind::SecurityEvent).is_ok(), "typ is a media type: case and prefix");
        let old = with(set_claims, "iat", json!(now - SET_MAX_AGE_SECS - SKEW_SECS - 5));
        let old = idp_token(IDP_KEY, json!({"kid": "k1", "typ": "secevent+jwt"}), &old);
        assert_eq!(check(&old, Kind::SecurityEvent), Err(Rejection::TooOld));
    }

    #[test]
    fn garbage_is_malformed() {
        for t in ["", "a.b", "a.b.c", "....", "eyJ9.e30.x"] {
            assert!(matches!(check(t, Kind::Bearer), Err(Rejection::Malformed)), "{t}");
        }
    }
}
