//! The repository's files: the template's routes, the OpenAPI document, the local folder.

use crate::table::required_env;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The base URL of the `cargo lambda watch` under test, e.g. `http://127.0.0.1:9011`.
pub fn e2e_base_url() -> String {
    required_env("E2E_BASE_URL")
}

/// The repository this test runs in. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for the
/// test it runs): this library's compiled path could be another clone's, since cargo shares
/// artifacts between identical workspaces on one target directory (CI's clone and a checkout).
pub fn repo_root() -> String {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    format!("{manifest}/..")
}

/// The clone's local tools and state (`infra/local-dir.sh`): `ACTIVE_SESSIONS_LOCAL`, which the
/// scripts export, else the same default they compute (under the user's cache, by the clone's
/// path), for a `cargo test` run by hand.
pub fn local_dir() -> String {
    if let Ok(dir) = std::env::var("ACTIVE_SESSIONS_LOCAL") {
        return dir;
    }
    use sha2::Digest;
    let root = std::fs::canonicalize(repo_root()).expect("the repository");
    let root = root.to_str().expect("a UTF-8 path");
    let cache =
        std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").expect("HOME")));
    let name = root.rsplit('/').next().unwrap_or("repo");
    let hash = hex::encode(sha2::Sha256::digest(root.as_bytes()));
    format!("{cache}/active-sessions/{name}-{}", &hash[..8])
}

pub fn repo_file(path: &str) -> String {
    let root = repo_root();
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// (METHOD, path) → function, as `cargo lambda watch` routes them locally (the workspace router).
pub fn watch_router() -> BTreeMap<(String, String), String> {
    let manifest: toml::Table = repo_file("Cargo.toml").parse().expect("Cargo.toml parses");
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"].as_table().expect("router table");
    let mut routes = BTreeMap::new();
    for (path, targets) in router {
        for target in targets.as_array().expect("route targets") {
            let method = target["method"].as_str().expect("method").to_owned();
            let function = target["function"].as_str().expect("function").to_owned();
            routes.insert((method, path.clone()), function);
        }
    }
    routes
}

/// (METHOD, path) pairs served locally by `cargo lambda watch`.
pub fn watch_routes() -> BTreeSet<(String, String)> {
    watch_router().into_keys().collect()
}

/// `infra/openapi.yaml`, parsed.
pub fn openapi() -> yaml_serde::Value {
    yaml_serde::from_str(&repo_file("infra/openapi.yaml")).expect("openapi.yaml parses")
}

/// An operation's documented statuses. `default` (the problem document for anything else) is not
/// one; any other key must be a status, quoted (`"200"`) or not (`200`, which YAML reads as a
/// number): nothing is dropped silently.
pub fn statuses(op: &yaml_serde::Value) -> BTreeSet<u16> {
    op["responses"]
        .as_mapping()
        .expect("responses")
        .keys()
        .filter(|k| k.as_str() != Some("default"))
        .map(|k| {
            let status = match k {
                yaml_serde::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                yaml_serde::Value::String(s) => s.parse::<u16>().ok(),
                _ => None,
            };
            status.unwrap_or_else(|| panic!("response key {k:?} is not a status"))
        })
        .collect()
}

/// (METHOD, path) → documented statuses, from `infra/openapi.yaml`.
pub fn openapi_routes() -> HashMap<(String, String), BTreeSet<u16>> {
    let doc = openapi();
    let mut routes = HashMap::new();
    let paths = doc["paths"].as_mapping().expect("paths");
    for (path, ops) in paths {
        let path = path.as_str().expect("path").to_owned();
        for (method, op) in ops.as_mapping().expect("operations") {
            let method = method.as_str().expect("method").to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            routes.insert((method, path.clone()), statuses(op));
        }
    }
    routes
}
