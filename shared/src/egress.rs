//! Where this service may connect on a tenant's word: an identity provider's JWKS URL names a
//! host on the internet, and nothing here may let it name the instance metadata service, the VPC
//! or this machine instead (SSRF). One rule, applied when the provider is set and again at every
//! connection: `https` to a host named by name or by a plain address, whose every address is
//! public (`Egress::resolve`); locally, with `IDP_ALLOW_LOOPBACK`, loopback too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 512;

/// Whether an address is one a service on the internet may have: not loopback, private, shared
/// (CGNAT), link-local (the instance metadata service among them), unspecified, broadcast,
/// multicast, documentation, benchmarking or reserved; in IPv6 also not unique-local, site-local,
/// discard-only, or a form that carries an IPv4 address (mapped, NAT64, 6to4, Teredo), which is
/// judged as that IPv4 address, or refused when it cannot be read back.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            match seg[0] {
                // NAT64 (64:ff9b::/96): the IPv4 address in the last 32 bits.
                0x0064 if seg[1] == 0xff9b => is_public_v4(embedded(seg[6], seg[7])),
                // 6to4 (2002::/16): the IPv4 address in bits 16-48.
                0x2002 => is_public_v4(embedded(seg[1], seg[2])),
                // Teredo (2001::/32): tunnels reach anything; documentation (2001:db8::/32).
                0x2001 if seg[1] == 0 || seg[1] == 0x0db8 => false,
                // Discard-only (100::/64).
                0x0100 if seg[1..4] == [0, 0, 0] => false,
                // IPv4-compatible and the other reserved forms under ::/8.
                0x0000..=0x00ff => false,
                // Site-local (fec0::/10, deprecated but routable in some networks).
                first if first & 0xffc0 == 0xfec0 => false,
                _ => {
                    !(v6.is_loopback()
                        || v6.is_unspecified()
                        || v6.is_multicast()
                        || v6.is_unique_local()
                        || v6.is_unicast_link_local())
                }
            }
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

/// Whether a host name would be read as an IPv4 address by a URL parser (WHATWG: a last label
/// that is a number, decimal, octal or `0x` hex, as in `2130706433`, `0x7f.1` or `127.1`). Such a
/// host never reaches a resolver, so it is refused unless it is a plain dotted quad.
fn looks_numeric(host: &str) -> bool {
    let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.chars().all(|c| c.is_ascii_hexdigit()),
        None => !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()),
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

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.allow_loopback && ip.is_loopback())
    }

    /// The host and port a URL names, checked for its form: `https` (or, with the flag, `http` to
    /// a loopback host), at most 512 characters, no credentials, no fragment, a host given by name
    /// or as a plain IPv4 or IPv6 address (never a numeric form a URL parser would turn into one),
    /// and an address host only if it is allowed. A name's addresses are checked by `resolve`.
    pub fn check_url(&self, raw: &str) -> Result<(String, u16), String> {
        use lambda_http::http::Uri;
        if raw.chars().count() > MAX_URL_LEN || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("the URL must be at most {MAX_URL_LEN} characters, without spaces"));
        }
        if raw.contains('#') {
            return Err("the URL must have no fragment".into());
        }
        let uri: Uri = raw.parse().map_err(|_| "not a URL".to_string())?;
        let authority = uri.authority().ok_or("the URL needs a host")?;
        if authority.as_str().contains('@') {
            return Err("credentials do not belong in the URL".into());
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let address = host.parse::<IpAddr>().ok();
        let loopback_host = host == "localhost" || address.is_some_and(|ip| ip.is_loopback());
        let port = match uri.scheme_str() {
            Some("https") => authority.port_u16().unwrap_or(443),
            Some("http") if self.allow_loopback && loopback_host => authority.port_u16().unwrap_or(80),
            _ => return Err("the URL must be https".into()),
        };
        let refused = || "the URL must not name a private, loopback or link-local address".to_string();
        match address {
            Some(ip) if !self.allows(ip) => return Err(refused()),
            Some(_) => {}
            None if looks_numeric(&host) => return Err("name the host by name or as a plain address".into()),
            None if (host == "localhost" || host.ends_with(".localhost")) && !self.allow_loopback => {
                return Err(refused())
            }
            None => {}
        }
        Ok((host, port))
    }

    /// The addresses of `host` (a name or an address), each one allowed: a name that resolves to
    /// any address the egress does not allow is refused whole, so DNS cannot mix one in.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.allows(ip) {
                Ok(vec![SocketAddr::new(ip, port)])
            } else {
                Err("address not allowed".into())
            };
        }
        let found: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|_| "the host does not resolve".to_string())?.collect();
        if found.is_empty() {
            return Err("the host does not resolve".into());
        }
        if found.iter().any(|a| !self.allows(a.ip())) {
            return Err("the host resolves to a private, loopback or link-local address".into());
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "192.88.99.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "100::1",
            "::7f00:1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!deployed.allows(private.parse().unwrap()), "{private} must be refused");
        }
        for public in ["8.8.8.8", "52.94.1.1", "2606:4700::1111", "2002:808:808::1", "64:ff9b::808:808"] {
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
            "https://a.localhost/keys",
            "http://127.0.0.1:9400/jwks.json",
            "https://169.254.169.254/latest",
            "https://[::1]/keys",
            "https://[::ffff:a9fe:a9fe]/keys",
            // Numeric forms a URL parser reads as 127.0.0.1 or 10.0.0.1, never resolved.
            "https://2130706433/keys",
            "https://0x7f.1/keys",
            "https://127.1/keys",
            "https://10.0.0.1./keys",
            "https://user:pw@acme.okta.com/keys",
            "ftp://acme.okta.com/keys",
            "https://acme.okta.com/keys#frag",
            "https://acme.okta.com/k eys",
            "not a url",
        ] {
            assert!(deployed.check_url(bad).is_err(), "{bad} must be refused");
        }
        let local = Egress { allow_loopback: true };
        assert_eq!(local.check_url("http://127.0.0.1:9400/jwks.json"), Ok(("127.0.0.1".into(), 9400)));
        assert!(local.check_url("http://10.0.0.1/jwks.json").is_err());
        assert!(local.check_url("http://acme.okta.com/keys").is_err(), "http only to loopback");
    }

    #[tokio::test]
    async fn a_name_resolving_to_any_refused_address_is_refused() {
        let deployed = Egress::default();
        assert!(deployed.resolve("localhost", 443).await.is_err());
        assert!(deployed.resolve("10.0.0.1", 443).await.is_err());
        assert!(deployed.resolve("no-such-host.invalid", 443).await.is_err());
        let local = Egress { allow_loopback: true };
        assert!(local.resolve("localhost", 9).await.unwrap().iter().all(|a| a.ip().is_loopback()));
    }
}
