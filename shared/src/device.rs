//! User agent → the device shown on a session row ("Chrome on macOS"), parsed with `woothee`
//! when signing in (feature `sign-in`); every other function only reads the stored `Device`.

use serde::{Deserialize, Serialize};

#[cfg(feature = "sign-in")]
use crate::domain::ClientKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// What the row shows, e.g. "Chrome on macOS" or "Desktop app on Windows".
    pub label: String,
    pub browser: Option<String>,
    pub os: Option<String>,
    /// `desktop`, `mobile` or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[cfg(feature = "sign-in")]
fn known(v: &str) -> Option<String> {
    (!v.is_empty() && v != woothee::woothee::VALUE_UNKNOWN).then(|| v.to_owned())
}

#[cfg(feature = "sign-in")]
fn os_name(os: &str) -> Option<String> {
    let name = match os {
        "Mac OSX" | "Mac OS" => "macOS",
        "iPhone" | "iPad" | "iPod" => "iOS",
        w if w.starts_with("Windows") => "Windows",
        other => return known(other),
    };
    Some(name.to_owned())
}

#[cfg(feature = "sign-in")]
impl Device {
    pub fn from_user_agent(user_agent: &str, client: ClientKind) -> Self {
        let parsed = woothee::parser::Parser::new().parse(user_agent);
        let (browser, os, category) = match &parsed {
            Some(r) => (known(r.name), os_name(r.os), r.category),
            None => (None, None, ""),
        };
        let kind = match (client, category) {
            (ClientKind::MobileApp, _) | (_, "smartphone" | "mobilephone") => "mobile",
            (ClientKind::DesktopApp, _) | (_, "pc") => "desktop",
            _ => "unknown",
        };
        let what = match client {
            ClientKind::Browser => browser.clone().unwrap_or_else(|| "Browser".to_owned()),
            ClientKind::DesktopApp => "Desktop app".to_owned(),
            ClientKind::MobileApp => "Mobile app".to_owned(),
            ClientKind::Cli => "Command line".to_owned(),
            ClientKind::ThirdParty => "Third-party app".to_owned(),
            ClientKind::ConnectedApp => "Connected app".to_owned(),
        };
        let label = match &os {
            Some(os) => format!("{what} on {os}"),
            None => what,
        };
        Self { label, browser, os, kind: kind.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const FIREFOX_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

    #[test]
    fn browser_labels() {
        let d = Device::from_user_agent(CHROME_MAC, ClientKind::Browser);
        assert_eq!(d.label, "Chrome on macOS");
        assert_eq!(d.browser.as_deref(), Some("Chrome"));
        assert_eq!(d.kind, "desktop");
        assert_eq!(Device::from_user_agent(FIREFOX_WIN, ClientKind::Browser).label, "Firefox on Windows");
        let phone = Device::from_user_agent(SAFARI_IPHONE, ClientKind::Browser);
        assert_eq!(phone.label, "Safari on iOS");
        assert_eq!(phone.kind, "mobile");
    }

    #[test]
    fn apps_are_named_by_client_kind() {
        let d = Device::from_user_agent(CHROME_MAC, ClientKind::DesktopApp);
        assert_eq!(d.label, "Desktop app on macOS");
        assert_eq!(d.kind, "desktop");
        let m = Device::from_user_agent("ChatGPT/1.2025.1 CFNetwork/1490 Darwin/23.2.0", ClientKind::MobileApp);
        assert!(m.label.starts_with("Mobile app"), "{}", m.label);
        assert_eq!(m.kind, "mobile");
    }

    #[test]
    fn unknown_agents_get_a_plain_label() {
        let d = Device::from_user_agent("", ClientKind::Browser);
        assert_eq!(d.label, "Browser");
        assert_eq!(d.browser, None);
        assert_eq!(d.os, None);
        assert_eq!(d.kind, "unknown");
        assert_eq!(Device::from_user_agent("curl/8.5.0", ClientKind::Cli).label, "Command line");
    }
}
