//! The OpenAPI document and the local router describe the same routes.

use std::collections::BTreeSet;

use integration_tests::{openapi_routes, watch_routes};

#[test]
fn openapi_routes_are_exactly_the_local_router_routes() {
    let documented: BTreeSet<(String, String)> = openapi_routes().into_keys().collect();
    let served = watch_routes();
    assert!(!served.is_empty());
    assert_eq!(documented, served, "infra/openapi.yaml and [workspace.metadata.lambda.watch.router] differ");
}

#[test]
fn every_documented_route_has_an_error_status() {
    for ((method, path), statuses) in openapi_routes() {
        assert!(statuses.iter().any(|s| *s >= 400), "{method} {path} documents no error");
        // `GET /` answers a redirect to the page: its success is a 303.
        assert!(statuses.iter().any(|s| *s < 400), "{method} {path} documents no success");
    }
}
