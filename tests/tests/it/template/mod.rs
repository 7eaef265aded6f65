//! `template.yaml` held to the local stack: the table it deploys is the one `shared/src/table.rs`
//! creates on DynamoDB Local, its routes are the router's and the OpenAPI document's, every
//! function is built the same way, and the stream filter lets through every record the fan-out
//! acts on (checked on fixtures and on real records from DynamoDB Local).

use std::collections::{BTreeMap, BTreeSet};

use active_sessions::domain::{ClientKind, Role, UserId};
use active_sessions::model::{Actor, Revocation, RevokeReason};
use active_sessions::store::{DirectoryStore, SessionsStore};
use active_sessions::store::{ProfileUpdate, ReadSet};
use active_sessions::testing::{parts, request, sign_in, with_path};
use active_sessions::{service, Policy};
use aws_lambda_events::event::dynamodb::EventRecord;
use integration_tests::{openapi, openapi_routes, repo_file, watch_router, watch_routes, TestTable};
use local_stack::filter::{self, Pattern};
use revocation_fanout::classify::{classify, Action};
use yaml_serde::Value;

mod deploy;
mod permissions;

fn template() -> Value {
    yaml_serde::from_str(&repo_file("template.yaml")).expect("template.yaml parses")
}

fn resources_of(doc: &Value, kind: &str) -> BTreeMap<String, Value> {
    doc["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().expect("logical id").to_owned(), r.clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().expect("a list").iter().map(|x| x.as_str().expect("a string").to_owned()).collect()
}

/// (method, path) → (binary, authorizer) for every HttpApi event of every function.
fn template_routes(doc: &Value) -> BTreeMap<(String, String), (String, Option<String>)> {
    let mut routes = BTreeMap::new();
    for (id, f) in resources_of(doc, "AWS::Serverless::Function") {
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().expect("Binary").to_owned();
        let Some(events) = f["Properties"]["Events"].as_mapping() else { continue };
        for (name, event) in events {
            assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{id}.{name:?}: only HttpApi events here");
            let p = &event["Properties"];
            assert_eq!(p["PayloadFormatVersion"].as_str(), Some("2.0"), "{id}.{name:?}: payload format 2.0");
            assert!(refs_http_api(&p["ApiId"]), "{id}.{name:?} must name the stack's HttpApi (ApiId: !Ref HttpApi)");
            let method = p["Method"].as_str().expect("Method").to_uppercase();
            let path = p["Path"].as_str().expect("Path").to_owned();
            let auth = p["Auth"]["Authorizer"].as_str().map(str::to_owned);
            let previous = routes.insert((method.clone(), path.clone()), (binary.clone(), auth));
            assert!(previous.is_none(), "{method} {path} is routed twice");
        }
    }
    routes
}

/// `!Ref HttpApi`, the stack's own API.
fn refs_http_api(v: &Value) -> bool {
    matches!(v, Value::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("HttpApi"))
}

#[test]
fn template_routes_are_the_router_and_the_openapi_routes() {
    let doc = template();
    let all_routes = template_routes(&doc);
    // `ANY` on a documented path sends every other method to a function of that path, which
    // answers 405 with the path's `Allow` (API Gateway itself would answer 404). Never on a path
    // of its own: no catch-all.
    let (any, routes): (BTreeMap<_, _>, BTreeMap<_, _>) = all_routes.into_iter().partition(|((m, _), _)| m == "ANY");
    for ((_, path), (function, auth)) in &any {
        let owners: BTreeSet<&String> = routes.iter().filter(|((_, p), _)| p == path).map(|(_, (f, _))| f).collect();
        assert!(owners.contains(function), "ANY {path} goes to {function}, which serves none of its methods");
        let iam = routes.iter().filter(|((_, p), _)| p == path).all(|(_, (_, a))| a == auth);
        assert!(iam, "ANY {path} must be authorised as the path's other routes are");
    }
    let paths: BTreeSet<&String> = routes.keys().map(|(_, p)| p).collect();
    assert_eq!(any.keys().map(|(_, p)| p).collect::<BTreeSet<_>>(), paths, "every path answers other methods with 405");
    let deployed: BTreeSet<(String, String)> = routes.keys().cloned().collect();
    assert!(!deployed.is_empty());
    assert_eq!(deployed, watch_routes(), "template.yaml routes vs the cargo lambda watch router (Cargo.toml)");
    let documented: BTreeSet<(String, String)> = openapi_routes().into_keys().collect();
    assert_eq!(deployed, documented, "template.yaml routes vs infra/openapi.yaml");

    // The same function serves a route locally and deployed.
    for (route, function) in watch_router() {
        assert_eq!(routes[&route].0, function, "{route:?} is served by another function");
    }

    // Internal routes need SigV4 (IAM); every other route has no API Gateway authorizer and
    // relies on the function's bearer check. No catch-all route exists (`ANY` only as above).
    for ((method, path), (_, auth)) in &routes {
        if path.starts_with("/v1/internal/") {
            assert_eq!(auth.as_deref(), Some("AWS_IAM"), "{method} {path} must require IAM");
        } else {
            assert_eq!(auth.as_deref(), None, "{method} {path}: user routes authenticate in the function");
        }
        assert!(!path.contains("$default") && !path.contains("{proxy+}") && method != "ANY", "{method} {path}");
    }
    // The OpenAPI document says the same: SigV4 exactly on the IAM routes.
    let openapi = openapi();
    for ((method, path), (_, auth)) in &routes {
        let op = &openapi["paths"][path.as_str()][method.to_lowercase().as_str()];
        let sigv4 = op["security"].as_sequence().is_some_and(|s| s.iter().any(|r| !r["sigv4"].is_null()));
        assert_eq!(sigv4, auth.as_deref() == Some("AWS_IAM"), "infra/openapi.yaml security of {method} {path}");
    }
    let api = &resources_of(&doc, "AWS::Serverless::HttpApi")["HttpApi"]["Properties"];
    assert!(api["Auth"]["DefaultAuthorizer"].is_null(), "no default authorizer: it would apply to user routes");
    assert!(api["Auth"]["Authorizers"].is_null(), "no Lambda authorizer: its cache could outlive a revocation");
    for limit in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        assert!(!api["DefaultRouteSettings"][limit].is_null(), "throttling default {limit} is set");
    }
}

#[test]
fn every_function_is_a_cargo_lambda_binary_of_this_workspace_on_arm64() {
    let doc = template();
    let globals = &doc["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
    assert_eq!(strings(&globals["Architectures"]), ["arm64"]);
    assert_eq!(globals["CodeUri"].as_str(), Some("./"), "one CodeUri, so every function shares one target dir");
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));

    let manifest: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let members: BTreeSet<String> = manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str()?.strip_prefix("functions/").map(str::to_owned))
        .collect();
    let mut binaries = BTreeSet::new();
    for (id, f) in resources_of(&doc, "AWS::Serverless::Function") {
        assert_eq!(f["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{id}");
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().expect("Binary").to_owned();
        for overridden in ["Runtime", "Handler", "Architectures", "CodeUri"] {
            assert!(f["Properties"][overridden].is_null(), "{id} overrides {overridden}");
        }
        // Its log group, with a retention period.
        let Value::Tagged(group) = &f["Properties"]["LoggingConfig"]["LogGroup"] else {
            panic!("{id} has no LoggingConfig.LogGroup: !Ref ...")
        };
        let group = group.value.as_str().unwrap();
        let groups = resources_of(&doc, "AWS::Logs::LogGroup");
        assert!(!groups[group]["Properties"]["RetentionInDays"].is_null(), "{group} keeps logs forever");
        assert!(binaries.insert(binary.clone()), "{binary} is deployed twice");
    }
    assert_eq!(binaries, members, "every function crate is deployed, and only those");
}

/// The table `create_table` makes on DynamoDB Local is the table the template deploys.
#[tokio::test]
async fn the_local_table_is_the_deployed_table() {
    let doc = template();
    let tables = resources_of(&doc, "AWS::DynamoDB::Table");
    let [(_, deployed)] = tables.iter().collect::<Vec<_>>()[..] else { panic!("one table") };
    assert_eq!(deployed["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(deployed["UpdateReplacePolicy"].as_str(), Some("Retain"));
    let d = &deployed["Properties"];

    let t = TestTable::new().await;
    let client = t.store.client();
    let local = client.describe_table().table_name(&t.name).send().await.unwrap().table.unwrap();
    let ttl = client.describe_time_to_live().table_name(&t.name).send().await.unwrap();

    let pairs = |v: &Value, a: &str, b: &str| -> BTreeSet<(String, String)> {
        v.as_sequence()
            .unwrap_or(&vec![])
            .iter()
            .map(|x| (x[a].as_str().unwrap().to_owned(), x[b].as_str().unwrap().to_owned()))
            .collect()
    };
    let local_keys: BTreeSet<(String, String)> =
        local.key_schema().iter().map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned())).collect();
    assert_eq!(pairs(&d["KeySchema"], "AttributeName", "KeyType"), local_keys, "key schema");
    let local_attrs: BTreeSet<(String, String)> = local
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name().to_owned(), a.attribute_type().as_str().to_owned()))
        .collect();
    assert_eq!(pairs(&d["AttributeDefinitions"], "AttributeName", "AttributeType"), local_attrs, "attributes");
    assert_eq!(
        d["BillingMode"].as_str(),
        local.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()),
        "billing mode"
    );
    assert_eq!(
        d["StreamSpecification"]["StreamViewType"].as_str(),
        local.stream_specification().and_then(|s| s.stream_view_type()).map(|v| v.as_str()),
        "stream view type"
    );
    assert_eq!(d["TimeToLiveSpecification"]["Enabled"].as_bool(), Some(true));
    assert_eq!(
        d["TimeToLiveSpecification"]["AttributeName"].as_str(),
        ttl.time_to_live_description().and_then(|t| t.attribute_name()),
        "TTL attribute"
    );
    // Indexes: none locally means none deployed, and the other way round.
    let gsi = |v: &Value| -> BTreeSet<String> {
        v.as_sequence().unwrap_or(&vec![]).iter().map(|g| g["IndexName"].as_str().unwrap().to_owned()).collect()
    };
    let local_gsi: BTreeSet<String> =
        local.global_secondary_indexes().iter().filter_map(|g| g.index_name().map(str::to_owned)).collect();
    assert_eq!(gsi(&d["GlobalSecondaryIndexes"]), local_gsi, "global secondary indexes");
    assert!(d["LocalSecondaryIndexes"].is_null() && local.local_secondary_indexes().is_empty());

    // What only the deployed table has: recovery, protection, encryption.
    assert_eq!(d["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
    assert_eq!(d["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(d["SSESpecification"]["SSEEnabled"].as_bool(), Some(true));
}

#[test]
fn the_stream_mapping_is_bounded_and_reports_partial_failures() {
    let doc = template();
    let mappings = resources_of(&doc, "AWS::Lambda::EventSourceMapping");
    let p = &mappings["RevocationStreamMapping"]["Properties"];
    let Value::Tagged(source) = &p["EventSourceArn"] else { panic!("!GetAtt the table's stream") };
    assert_eq!(source.value.as_str(), Some("SessionsTable.StreamArn"));
    assert_eq!(strings(&p["FunctionResponseTypes"]), ["ReportBatchItemFailures"]);
    assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true));
    let retries = p["MaximumRetryAttempts"].as_i64().expect("MaximumRetryAttempts");
    let age = p["MaximumRecordAgeInSeconds"].as_i64().expect("MaximumRecordAgeInSeconds");
    assert!((0..=10_000).contains(&retries), "bounded retries, never -1");
    assert!((60..=604_800).contains(&age), "bounded record age, never -1");
    assert!(!p["DestinationConfig"]["OnFailure"]["Destination"].is_null(), "an on-failure destination");
    let Value::Tagged(fanout) = &p["FunctionName"] else { panic!("FunctionName: !Ref ...") };
    // `!Ref RevocationFanoutFunction.Alias`: the function's `live` alias.
    let fanout = fanout.value.as_str().unwrap().trim_end_matches(".Alias");
    let functions = resources_of(&doc, "AWS::Serverless::Function");
    assert_eq!(functions[fanout]["Metadata"]["BuildProperties"]["Binary"].as_str(), Some("revocation-fanout"));
}

fn fanout_filters() -> Vec<Pattern> {
    filter::from_template(&repo_file("template.yaml")).expect("the template's filter patterns")
}

/// What the fan-out does with a record, and whether the mapping's filter would let it through.
fn verdict(filters: &[Pattern], record: &serde_json::Value) -> (Result<Action, String>, bool) {
    let parsed: EventRecord = serde_json::from_value(record.clone()).expect("a Lambda DynamoDB record");
    (classify(&parsed).map_err(|e| e.to_string()), filter::passes(filters, record))
}

fn is_profile(record: &serde_json::Value) -> bool {
    record["dynamodb"]["Keys"]["SK"]["S"] == "PROFILE"
}

#[test]
fn the_stream_filter_passes_every_fixture_the_fanout_acts_on() {
    let filters = fanout_filters();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/revocation-fanout/tests/fixtures");
    let (mut acted, mut dropped) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for record in event["Records"].as_array().unwrap() {
            let (action, passes) = verdict(&filters, record);
            match action {
                Ok(Action::Ignore) if passes => {
                    assert!(is_profile(record), "{path:?}: an ignored non-profile record would invoke the fan-out")
                }
                Ok(Action::Ignore) => dropped += 1,
                Ok(action) => {
                    assert!(passes, "{path:?}: the filter drops a record the fan-out acts on: {action:?}");
                    acted += 1;
                }
                // Malformed records that the filter lets through are the fan-out's to report.
                Err(_) => {}
            }
        }
    }
    assert!(acted >= 3 && dropped >= 3, "the fixtures cover both sides ({acted} acted on, {dropped} dropped)");
}

/// Real records from DynamoDB Local, made by the real code: sign-in, profile writes, trust,
/// revoke one, revoke all, the sweep. The filter passes each one the fan-out acts on and drops
/// what it ignores (profile writes aside: a filter cannot compare old and new watermarks).
#[tokio::test]
async fn the_stream_filter_passes_every_real_revocation_record() {
    let t = TestTable::new().await;
    let policy = Policy::default();
    let user = UserId::parse("filter-user").unwrap();
    t.store
        .put_profile(
            &user,
            &ProfileUpdate { workspace_id: None, role: Role::Member, sso_linked: false, identifiers: vec![] },
        )
        .await
        .unwrap();
    let me = sign_in(&t.store, "filter-user", ClientKind::Browser).await;
    let phone = sign_in(&t.store, "filter-user", ClientKind::MobileApp).await;
    let laptop = sign_in(&t.store, "filter-user", ClientKind::DesktopApp).await;
    let now = service::now_ms();
    t.store.set_trusted(&user, laptop.session_id, true, now).await.unwrap();
    t.store.touch_session(&user, laptop.session_id, now + 1, now + 1).await.unwrap();

    let id = phone.session_id.to_string();
    let req = with_path(request("DELETE", &format!("/v1/sessions/{id}"), Some(&me.token)), &[("id", &id)]);
    assert_eq!(parts(&revoke_session::handle(&t.store, &policy, req).await).0, 204);
    let req = request("DELETE", "/v1/sessions", Some(&me.token));
    assert_eq!(parts(&revoke_all_sessions::handle(&t.store, &policy, req).await).0, 200);
    let read = t.store.read(&ReadSet { profiles: vec![user.clone()], ..Default::default() }).await.unwrap();
    let watermark = read.profiles[&user].watermark.expect("revoke-all wrote a watermark");
    let revocation = Revocation {
        at_ms: now,
        actor: Actor::User,
        actor_id: "filter-user".into(),
        reason: RevokeReason::UserLogoutAll,
        source_ip: None,
    };
    assert_eq!(service::sweep_watermark(&t.store, &policy, &user, watermark, &revocation, None).await.unwrap(), 2);

    let filters = fanout_filters();
    let records = t.lambda_stream_records().await;
    let (mut revoked, mut watermarks, mut dropped) = (0, 0, 0);
    for record in &records {
        let (action, passes) = verdict(&filters, record);
        match action.expect("real records classify") {
            Action::Ignore => {
                if passes {
                    assert!(is_profile(record), "an ignored record would invoke the fan-out: {record}");
                } else {
                    dropped += 1;
                }
            }
            action => {
                assert!(passes, "the filter drops a revocation: {action:?} from {record}");
                match action {
                    Action::SessionRevoked { .. } => revoked += 1,
                    Action::Watermark { .. } => watermarks += 1,
                    _ => {}
                }
            }
        }
    }
    // Revoke-one, then the sweep's two (me and laptop); one watermark; and the sign-ins, trust,
    // activity and audit inserts all dropped.
    assert_eq!((revoked, watermarks), (3, 1), "records: {records:#?}");
    assert!(dropped >= 6, "only {dropped} records were filtered out");
}

/// Every IAM statement the template writes: (owner binary or role, statement).
fn statements(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, f) in resources_of(doc, "AWS::Serverless::Function") {
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned();
        for policy in f["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            assert!(policy.is_mapping(), "{id}: a named SAM policy template; write the statement out");
            for st in policy["Statement"].as_sequence().expect("Statement") {
                out.push((binary.clone(), st.clone()));
            }
        }
    }
    for (id, role) in resources_of(doc, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().expect("Statement") {
                out.push((id.clone(), st.clone()));
            }
        }
    }
    out
}

/// `!If [cond, statement, !Ref AWS::NoValue]` → the statement.
fn unconditional(st: &Value) -> &Value {
    match st {
        Value::Tagged(t) if t.tag == "If" => &t.value[1],
        other => other,
    }
}

/// The template after SAM's transform (samtranslator, offline: `infra/sam_transform.py`, with the
/// venv `infra/setup.sh` installs).
fn transformed() -> serde_json::Value {
    let root = std::path::PathBuf::from(integration_tests::repo_root());
    let python = std::path::PathBuf::from(integration_tests::local_dir()).join("venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(root.join("infra/sam_transform.py"))
        .arg(root.join("template.yaml"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap_or_else(|e| panic!("{} (run infra/setup.sh): {e}", python.display()));
    assert!(out.status.success(), "samtranslator: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the transformed template as JSON")
}
