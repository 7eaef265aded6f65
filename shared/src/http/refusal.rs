//! Why a request was not answered with success: refused at the edge, for the request's shape,
//! before any service code runs (`EdgeRefusal`), or by the service (`ServiceError`).

use crate::error::{Problem, ServiceError, PROBLEM_TYPE_BASE};
use crate::store::StoreError;

/// What the HTTP edge refuses before any service code runs: a method the path does not take, a
/// body too large or of the wrong media type, a cookie-authenticated change from another site,
/// and the CORS preflight, which is not a failure (`204` with `Allow`). A type of its own, apart
/// from the service's failures: a route whose error bodies are not problem+json (RFC 8935's JSON
/// codes, for a Shared Signals receiver) says these its own way, from `status` and `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeRefusal {
    MethodNotAllowed {
        allow: &'static str,
    },
    Preflight {
        allow: &'static str,
    },
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType {
        expected: &'static str,
    },
    /// A cookie-authenticated change that did not come from this site's own pages (CSRF).
    CrossSite,
}

impl EdgeRefusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed { .. } => 405,
            Self::Preflight { .. } => 204,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::CrossSite => 403,
        }
    }

    /// The methods the path takes, for the `Allow` header.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Self::MethodNotAllowed { allow } | Self::Preflight { allow } => Some(allow),
            _ => None,
        }
    }

    /// The RFC 9457 problem document, as the API's routes answer it.
    pub fn problem(&self) -> Problem {
        let (slug, title, detail) = match self {
            Self::MethodNotAllowed { allow } | Self::Preflight { allow } => {
                ("method-not-allowed", "Method not allowed", format!("This resource allows {allow}."))
            }
            Self::PayloadTooLarge { limit } => {
                ("payload-too-large", "Payload too large", format!("The request body is larger than {limit} bytes."))
            }
            Self::UnsupportedMediaType { expected } => {
                ("unsupported-media-type", "Unsupported media type", format!("Send the body as {expected}."))
            }
            Self::CrossSite => (
                "cross-site-request",
                "Cross-site request refused",
                "A change made with the session cookie must come from this site's own pages.".into(),
            ),
        };
        Problem { kind: format!("{PROBLEM_TYPE_BASE}{slug}"), title, status: self.status(), detail, workspace: None }
    }
}

/// A request's refusal, from the edge or from the service; `http::problem` answers either as
/// problem+json.
#[derive(Debug)]
pub enum Refusal {
    Edge(EdgeRefusal),
    Service(ServiceError),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::Edge(e) => e.status(),
            Self::Service(s) => s.status(),
        }
    }
}

impl From<EdgeRefusal> for Refusal {
    fn from(e: EdgeRefusal) -> Self {
        Self::Edge(e)
    }
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_statuses_and_problems() {
        assert_eq!(EdgeRefusal::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(EdgeRefusal::UnsupportedMediaType { expected: "application/json" }.status(), 415);
        let not_allowed = EdgeRefusal::MethodNotAllowed { allow: "GET" };
        assert_eq!((not_allowed.status(), not_allowed.allow()), (405, Some("GET")));
        assert!(not_allowed.problem().kind.ends_with("method-not-allowed"));
        assert_eq!(EdgeRefusal::CrossSite.status(), 403);
        assert!(EdgeRefusal::CrossSite.problem().kind.ends_with("cross-site-request"));
        assert_eq!(Refusal::from(StoreError::Throttled("slow down".into())).status(), 503);
    }
}
