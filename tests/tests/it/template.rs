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
        .put_profile(&user, &ProfileUpdate { workspace_id: None, role: Role::Member, sso_linked: false })
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

/// Every function is published behind the alias `live` and deployed by CodeDeploy
/// (DeploymentType: all at once for dev, a canary for prod) with automatic rollback on its alias's
/// errors alarm (API functions: and the API's 5xx alarm); the routes, the stream mapping and the
/// schedule invoke the alias, never `$LATEST`; every function is actively traced.
#[test]
fn deploys_shift_the_live_alias_with_rollback_and_everything_invokes_it() {
    let doc = template();
    let globals = &doc["Globals"]["Function"];
    assert_eq!(globals["AutoPublishAlias"].as_str(), Some("live"));
    assert_eq!(globals["Tracing"].as_str(), Some("Active"));
    let functions = resources_of(&doc, "AWS::Serverless::Function");
    for (id, f) in &functions {
        let pref = &f["Properties"]["DeploymentPreference"];
        let Value::Tagged(kind) = &pref["Type"] else { panic!("{id}: DeploymentPreference.Type: !Ref DeploymentType") };
        assert_eq!(kind.value.as_str(), Some("DeploymentType"), "{id}");
    }
    let samconfig = repo_file("samconfig.toml");
    assert!(samconfig.contains(r#"DeploymentType=\"Canary10Percent5Minutes\""#), "prod deploys as a canary");

    let t = transformed();
    let res = t["Resources"].as_object().expect("Resources");
    let of = |kind: &'static str| res.iter().filter(move |(_, r)| r["Type"] == kind);
    let aliases: BTreeSet<&str> = of("AWS::Lambda::Alias").map(|(id, _)| id.as_str()).collect();
    assert_eq!(aliases.len(), functions.len(), "an alias per function");
    for id in functions.keys() {
        let alias = format!("{id}Aliaslive");
        assert!(aliases.contains(alias.as_str()), "{alias}");
        let group = &res[&format!("{id}DeploymentGroup")]["Properties"];
        let rollback = &group["AutoRollbackConfiguration"];
        assert_eq!(rollback["Enabled"], true, "{id}");
        assert!(rollback["Events"].as_array().unwrap().iter().any(|e| e == "DEPLOYMENT_STOP_ON_ALARM"), "{id}");
        let alarms: Vec<String> = group["AlarmConfiguration"]["Alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["Name"]["Ref"].as_str().unwrap().to_owned())
            .collect();
        let own = format!("{}AliasErrorsAlarm", id.trim_end_matches("Function"));
        assert!(alarms.contains(&own), "{id} rolls back on {own}: {alarms:?}");
        let api = functions[id]["Properties"]["Events"]
            .as_mapping()
            .is_some_and(|e| e.values().any(|ev| ev["Type"].as_str() == Some("HttpApi")));
        assert_eq!(alarms.contains(&"Api5xxAlarm".to_owned()), api, "{id}: the API's 5xx alarm iff it serves routes");
        let alarm = &resources_of(&doc, "AWS::CloudWatch::Alarm")[&own]["Properties"];
        assert_eq!(alarm["MetricName"].as_str(), Some("Errors"), "{own}");
        assert!(format!("{:?}", alarm["Dimensions"]).contains(":live"), "{own} watches the alias");
    }
    // Every route's integration, the stream mapping and the schedule name an alias.
    let api = of("AWS::ApiGatewayV2::Api").next().expect("the HTTP API").1;
    let mut integrations = 0;
    for (path, ops) in api["Properties"]["Body"]["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(uri) = op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"].as_str() else { continue };
            integrations += 1;
            assert!(uri.contains("Aliaslive}"), "{method} {path} invokes {uri}, not the alias");
        }
    }
    assert!(integrations >= 20, "{integrations}");
    let mappings: BTreeMap<String, &serde_json::Value> =
        of("AWS::Lambda::EventSourceMapping").map(|(id, m)| (id.clone(), m)).collect();
    assert_eq!(mappings.len(), 2, "the stream's and the retry queue's");
    assert_eq!(
        mappings["RevocationStreamMapping"]["Properties"]["FunctionName"]["Ref"],
        "RevocationFanoutFunctionAliaslive"
    );
    assert_eq!(
        mappings["LogoutRetryQueueMapping"]["Properties"]["FunctionName"]["Ref"],
        "LogoutRetryFunctionAliaslive"
    );
    // No generated role carries AWSLambdaBasicExecutionRole (logs on `*`).
    for (id, role) in of("AWS::IAM::Role") {
        assert!(!role.to_string().contains("AWSLambdaBasicExecutionRole"), "{id}");
    }
    assert!(of("AWS::Scheduler::Schedule").next().is_none(), "no schedule: the queue drives logout-retry");
}

/// With `TraceCollectorLayerArn`, every function (after SAM's transform) carries the
/// collector layer and the exporter's endpoint on localhost, the variable the code reads; without
/// it, neither (the condition). Every role may write X-Ray segments, which the collector sends.
#[test]
fn every_function_exports_its_spans_to_the_collector_layer_when_one_is_given() {
    let doc = template();
    let param = &doc["Parameters"]["TraceCollectorLayerArn"];
    assert_eq!(param["Default"].as_str(), Some(""), "off unless a layer is given");
    let pattern = param["AllowedPattern"].as_str().unwrap();
    assert!(pattern.contains("arm64"), "an x86_64 collector would stop every arm64 function: {pattern}");
    let condition = format!("{:?}", doc["Conditions"]["ExportTraces"]);
    assert!(condition.contains("Not") && condition.contains("TraceCollectorLayerArn"), "{condition}");
    let t = transformed();
    let functions: Vec<(&String, &serde_json::Value)> =
        t["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function").collect();
    assert_eq!(functions.len(), resources_of(&doc, "AWS::Serverless::Function").len());
    let layer =
        serde_json::json!({"Fn::If": ["ExportTraces", {"Ref": "TraceCollectorLayerArn"}, {"Ref": "AWS::NoValue"}]});
    let endpoint = serde_json::json!({"Fn::If": ["ExportTraces", "http://localhost:4318", {"Ref": "AWS::NoValue"}]});
    let var = active_sessions::telemetry::traces::ENDPOINT_VAR;
    for (id, f) in functions {
        let p = &f["Properties"];
        assert_eq!(p["TracingConfig"]["Mode"], "Active", "{id}");
        assert_eq!(p["Layers"], serde_json::json!([layer]), "{id}: the collector layer, and no other");
        assert_eq!(p["Environment"]["Variables"][var], endpoint, "{id}: {var}");
    }
    for (id, role) in resources_of(&doc, "AWS::IAM::Role") {
        assert!(format!("{role:?}").contains("xray:PutTraceSegments"), "{id} may write segments");
    }
}

/// One dashboard: API p50, p99 and 5xx by route; function errors, throttles and
/// concurrency; the stream's IteratorAge; propagation lag; the DLQ's depth; deliveries by status.
#[test]
fn the_dashboard_shows_the_service() {
    let doc = template();
    let dashboards = resources_of(&doc, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let Value::Tagged(body) = &dashboards.values().next().unwrap()["Properties"]["DashboardBody"] else {
        panic!("DashboardBody: !Sub")
    };
    let body = body.value.as_str().unwrap();
    for needle in [
        r#"MetricName=\"Latency\""#,
        "'p50'",
        "'p99'",
        r#"MetricName=\"5xx\""#,
        "ApiId,Route,Stage",
        r#"MetricName=\"Errors\""#,
        r#"MetricName=\"Throttles\""#,
        r#"MetricName=\"ConcurrentExecutions\""#,
        "IteratorAge",
        "PropagationLagMs",
        "ApproximateNumberOfMessagesVisible",
        r#"MetricName=\"LogoutDelivered\""#,
        r#"MetricName=\"LogoutDeliveryFailed\""#,
    ] {
        assert!(body.contains(needle), "the dashboard has no {needle}");
    }
    // The body is JSON once CloudFormation substitutes the references.
    let mut plain = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        plain.push('X');
        rest = &rest[start + rest[start..].find('}').unwrap() + 1..];
    }
    plain.push_str(rest);
    let json: serde_json::Value = serde_json::from_str(&plain).expect("the dashboard body is JSON");
    assert!(json["widgets"].as_array().unwrap().len() >= 8);
}

/// AWS's serverless rules run clean in `infra/test.sh`; a rule silenced is silenced on
/// the resource it concerns, with its reason written beside it, never for the whole template.
#[test]
fn serverless_rules_are_silenced_only_per_resource_with_a_reason() {
    let doc = template();
    assert!(doc["Metadata"]["cfn-lint"].is_null(), "no template-wide cfn-lint configuration");
    let text = repo_file("template.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let mut silenced = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains("ignore_checks") {
            silenced += 1;
            let reason = lines[i.saturating_sub(8)..i].iter().any(|l| l.trim_start().starts_with("# "));
            assert!(reason, "line {}: a silenced rule without its reason beside it", i + 1);
            assert!(line.starts_with("          "), "line {}: cfn-lint metadata on a resource only", i + 1);
        }
    }
    assert!(silenced >= 1);
    let test_sh = repo_file("infra/test.sh");
    assert!(test_sh.contains("-a cfn_lint_serverless.rules"), "infra/test.sh runs the serverless rules");
}

/// The local sign-in link (the local gateway's `/local/sign-in`, which sets the session
/// cookie for any token) exists only on the local stack: no deployed route, no document.
#[test]
fn the_local_sign_in_route_is_not_deployed() {
    let doc = template();
    for (method, path) in template_routes(&doc).keys() {
        assert!(!path.starts_with("/local"), "{method} {path} is deployed");
    }
    assert!(!repo_file("template.yaml").contains("/local/"), "template.yaml names a /local/ path");
    assert!(openapi()["paths"].as_mapping().unwrap().keys().all(|p| !p.as_str().unwrap().starts_with("/local")));
    assert!(!watch_routes().iter().any(|(_, p)| p.starts_with("/local")), "nor in the cargo lambda watch router");
}

/// The retry queue: SQS, consumed by logout-retry through an event source mapping with partial
/// batch failures and a maximum concurrency; poison messages go to a dead-letter queue; the
/// dead-letter queue's depth and the oldest message's age alarm; no schedule and no reserved
/// concurrency are left; the local queues are made with the deployed settings.
#[test]
fn retries_run_on_an_sqs_queue_with_its_alarms() {
    let doc = template();
    let functions = resources_of(&doc, "AWS::Serverless::Function");
    let retry = &functions["LogoutRetryFunction"]["Properties"];
    assert!(retry["Events"].is_null(), "no schedule: {:?}", retry["Events"]);
    assert!(retry["ReservedConcurrentExecutions"].is_null(), "no reserved concurrency");
    let timeout = retry["Timeout"].as_i64().unwrap();
    let queues = resources_of(&doc, "AWS::SQS::Queue");
    let queue = &queues["LogoutRetryQueue"]["Properties"];
    assert_eq!(queue["VisibilityTimeout"].as_i64(), Some(i64::from(local_stack::sqs::VISIBILITY_TIMEOUT_SECS)));
    assert!(queue["VisibilityTimeout"].as_i64().unwrap() >= 6 * timeout, "AWS: at least six times the timeout");
    assert_eq!(queue["MessageRetentionPeriod"].as_i64(), Some(i64::from(local_stack::sqs::RETENTION_SECS)));
    let horizon_max = doc["Parameters"]["LogoutRetryHorizonSeconds"]["MaxValue"].as_i64().unwrap();
    assert!(queue["MessageRetentionPeriod"].as_i64().unwrap() > horizon_max, "a message outlives any horizon");
    let redrive = &queue["RedrivePolicy"];
    assert_eq!(redrive["maxReceiveCount"].as_i64(), Some(i64::from(local_stack::sqs::MAX_RECEIVE_COUNT)));
    let Value::Tagged(dlq) = &redrive["deadLetterTargetArn"] else { panic!("!GetAtt the dead-letter queue") };
    assert_eq!(dlq.value.as_str(), Some("LogoutRetryDeadLetterQueue.Arn"));
    let mapping = &resources_of(&doc, "AWS::Lambda::EventSourceMapping")["LogoutRetryQueueMapping"]["Properties"];
    let Value::Tagged(source) = &mapping["EventSourceArn"] else { panic!("!GetAtt the queue") };
    assert_eq!(source.value.as_str(), Some("LogoutRetryQueue.Arn"));
    assert_eq!(strings(&mapping["FunctionResponseTypes"]), ["ReportBatchItemFailures"]);
    assert_eq!(mapping["BatchSize"].as_i64(), Some(10));
    let Value::Tagged(max) = &mapping["ScalingConfig"]["MaximumConcurrency"] else { panic!("a parameter") };
    assert_eq!(max.value.as_str(), Some("LogoutRetryMaximumConcurrency"));
    assert!(doc["Parameters"]["LogoutRetryMaximumConcurrency"]["MinValue"].as_i64() >= Some(2), "SQS's minimum");
    // Both functions know the queue.
    for f in ["LogoutRetryFunction", "RevocationFanoutFunction"] {
        let env = &functions[f]["Properties"]["Environment"]["Variables"];
        let Value::Tagged(url) = &env["LOGOUT_RETRY_QUEUE_URL"] else { panic!("{f}: LOGOUT_RETRY_QUEUE_URL") };
        assert_eq!(url.value.as_str(), Some("LogoutRetryQueue"), "{f}");
        assert!(!env["LOGOUT_RETRY_HORIZON_SECONDS"].is_null(), "{f}");
    }
    // The alarms: dead letters at all, and a message older than the longest backoff step.
    let alarms = resources_of(&doc, "AWS::CloudWatch::Alarm");
    let on_queue = |alarm: &str, queue: &str, metric: &str| {
        let a = &alarms[alarm]["Properties"];
        assert_eq!((a["Namespace"].as_str(), a["MetricName"].as_str()), (Some("AWS/SQS"), Some(metric)), "{alarm}");
        let Value::Tagged(q) = &a["Dimensions"][0]["Value"] else { panic!("{alarm}: !GetAtt <queue>.QueueName") };
        assert_eq!(q.value.as_str(), Some(format!("{queue}.QueueName").as_str()), "{alarm}");
        assert!(!a["AlarmActions"].is_null(), "{alarm} notifies");
        a["Threshold"].as_i64().unwrap()
    };
    assert_eq!(on_queue("RetryDeadLetterAlarm", "LogoutRetryDeadLetterQueue", "ApproximateNumberOfMessagesVisible"), 0);
    let age = on_queue("RetryQueueAgeAlarm", "LogoutRetryQueue", "ApproximateAgeOfOldestMessage");
    let longest_step = active_sessions::queue::MAX_DELAY.as_secs() as i64;
    assert!(
        age > longest_step,
        "the age alarm ({age} s) must not fire on a message merely held back ({longest_step} s)"
    );
    // Messages the consumer could not handle roll a deploy back (partial batch failures are not
    // Lambda errors, which the alias alarm watches).
    let failed = &alarms["LogoutRetryMessagesFailedAlarm"]["Properties"];
    assert_eq!(
        (failed["Namespace"].as_str(), failed["MetricName"].as_str(), failed["Threshold"].as_i64()),
        (Some("ActiveSessions"), Some("RetryMessagesFailed"), Some(0))
    );
    let rollback = format!("{:?}", functions["LogoutRetryFunction"]["Properties"]["DeploymentPreference"]["Alarms"]);
    assert!(rollback.contains("LogoutRetryMessagesFailedAlarm"), "{rollback}");
    // A product given up on alarms, from either function that can give up.
    let alarm = &alarms["LogoutDeliveryFailedAlarm"]["Properties"];
    let mut watched = Vec::new();
    for m in alarm["Metrics"].as_sequence().expect("metric math") {
        let stat = &m["MetricStat"]["Metric"];
        if stat.is_null() {
            continue;
        }
        assert_eq!(
            (stat["Namespace"].as_str(), stat["MetricName"].as_str()),
            (Some("ActiveSessions"), Some("LogoutDeliveryFailed"))
        );
        let Value::Tagged(dim) = &stat["Dimensions"][0]["Value"] else { panic!("a !Ref dimension") };
        watched.push(dim.value.as_str().unwrap().to_owned());
    }
    watched.sort();
    assert_eq!(watched, ["LogoutRetryFunction", "RevocationFanoutFunction"]);
    assert_eq!(
        (alarm["Threshold"].as_i64(), alarm["ComparisonOperator"].as_str()),
        (Some(0), Some("GreaterThanThreshold"))
    );
}

/// No function has a SAM-generated role (it would carry AWSLambdaBasicExecutionRole,
/// logs on `*`): each has its own role, which writes logs only to the function's own log group.
#[test]
fn every_function_writes_logs_only_to_its_own_group() {
    let doc = template();
    let roles = resources_of(&doc, "AWS::IAM::Role");
    for (id, f) in resources_of(&doc, "AWS::Serverless::Function") {
        let Value::Tagged(role) = &f["Properties"]["Role"] else { panic!("{id}: Role: !GetAtt <its role>.Arn") };
        let role = role.value.as_str().unwrap().trim_end_matches(".Arn");
        assert!(f["Properties"]["Policies"].is_null(), "{id}: its permissions belong on {role}");
        let Value::Tagged(group) = &f["Properties"]["LoggingConfig"]["LogGroup"] else { panic!("{id}: LogGroup") };
        let group = group.value.as_str().unwrap();
        let role = &roles[role]["Properties"];
        // The one managed policy: the VPC access role, for the functions that join the cache's VPC.
        let joins_vpc = ["IntrospectToken", "RevocationFanout", "RevokeSession", "RevokeAllSessions"]
            .iter()
            .any(|name| id.starts_with(name) && !f["Properties"]["VpcConfig"].is_null());
        assert!(
            role["ManagedPolicyArns"].as_sequence().is_none_or(|arns| arns.is_empty())
                || (joins_vpc
                    && yaml_serde::to_string(&role["ManagedPolicyArns"])
                        .unwrap()
                        .contains("AWSLambdaVPCAccessExecutionRole")),
            "{id}: a managed policy"
        );
        let mut logs = 0;
        for policy in role["Policies"].as_sequence().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
                let st = unconditional(st);
                let actions = match &st["Action"] {
                    Value::String(a) => vec![a.clone()],
                    other => strings(other),
                };
                if actions.iter().any(|a| a.starts_with("logs:")) {
                    logs += 1;
                    let Value::Tagged(res) = &st["Resource"] else { panic!("{id}: logs on {:?}", st["Resource"]) };
                    assert_eq!(
                        res.value.as_str(),
                        Some(format!("{group}.Arn").as_str()),
                        "{id}: logs beyond its group"
                    );
                }
            }
        }
        assert_eq!(logs, 1, "{id}: one logs statement, on its own group");
    }
}

#[test]
fn every_permission_is_named_and_scoped() {
    let doc = template();
    let all = statements(&doc);
    assert!(all.len() >= 10, "statements found: {}", all.len());
    let table_actions =
        ["dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"];
    let fanout_only =
        ["dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream", "dynamodb:ListStreams"];
    let retry_consumer_only =
        ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"];
    for (owner, st) in all {
        let st = unconditional(&st);
        assert_eq!(st["Effect"].as_str(), Some("Allow"), "{owner}");
        let actions: Vec<String> = match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            other => strings(other),
        };
        // The one wildcard: the table's own stream labels (unknown until it exists), for ListStreams.
        let resource = st["Resource"].as_str().unwrap_or_default();
        let within_table = resource.starts_with("${SessionsTable.Arn}/stream/");
        let xray_only = !actions.is_empty() && actions.iter().all(|a| a.starts_with("xray:"));
        assert!(!resource.contains('*') || within_table || xray_only, "{owner}: a wildcard resource in {st:?}");
        for action in &actions {
            assert!(!action.contains('*'), "{owner}: wildcard action {action}");
            if action == "secretsmanager:GetSecretValue" {
                // The fan-out reads the back-channel and cache secrets; introspection the cache's.
                let secret = st["Resource"].as_str().or_else(|| match &st["Resource"] {
                    Value::Tagged(t) => t.value.as_str(),
                    _ => None,
                });
                let allowed = match owner.as_str() {
                    o if o.contains("RevocationFanout") => ["BackchannelSecretArn", "CacheSecretArn"].as_slice(),
                    o if o.contains("IntrospectToken") => ["CacheSecretArn"].as_slice(),
                    // The write-through: the cache's secret, never the back-channel key.
                    o if o.contains("RevokeSession") || o.contains("RevokeAllSessions") => {
                        ["CacheSecretArn"].as_slice()
                    }
                    // The public function reads the published public keys, never the signing key.
                    o if o.contains("GetJwks") || o == "get-jwks" => ["BackchannelJwksSecretArn"].as_slice(),
                    // It signs the logout tokens it retries.
                    o if o.contains("LogoutRetry") || o == "logout-retry" => ["BackchannelSecretArn"].as_slice(),
                    _ => [].as_slice(),
                };
                assert!(secret.is_some_and(|s| allowed.contains(&s)), "{owner} may not read the secret {secret:?}");
            } else if action.starts_with("xray:") {
                // Active tracing: X-Ray's write actions only, which take no resource but `*`.
                assert!(
                    ["xray:PutTraceSegments", "xray:PutTelemetryRecords"].contains(&action.as_str()),
                    "{owner}: {action}"
                );
            } else if fanout_only.contains(&action.as_str()) {
                assert!(owner.contains("RevocationFanout") || owner == "revocation-fanout", "{owner} may not {action}");
            } else if action == "sqs:SendMessage" {
                // The fan-out to its dead-letter queue and both to the retry queue.
                let queue = match &st["Resource"] {
                    Value::Tagged(t) => t.value.as_str().unwrap_or_default().to_owned(),
                    other => panic!("{owner}: {action} on {other:?}"),
                };
                let fanout = owner.contains("RevocationFanout");
                let retry = owner.contains("LogoutRetry");
                assert!(
                    (queue == "LogoutRetryQueue.Arn" && (fanout || retry))
                        || (queue == "FanoutDeadLetterQueue.Arn" && fanout),
                    "{owner} may not send to {queue}"
                );
            } else if retry_consumer_only.contains(&action.as_str()) {
                assert!(owner.contains("LogoutRetry"), "{owner} may not {action}");
                let Value::Tagged(res) = &st["Resource"] else { panic!("{owner}: {action} on {:?}", st["Resource"]) };
                assert_eq!(res.value.as_str(), Some("LogoutRetryQueue.Arn"), "{owner}: {action} beyond its queue");
            } else if action.starts_with("dynamodb:") {
                assert!(table_actions.contains(&action.as_str()), "{owner}: {action} is not an action the store calls");
                let Value::Tagged(res) = &st["Resource"] else { panic!("{owner}: {action} on {:?}", st["Resource"]) };
                assert_eq!(res.value.as_str(), Some("SessionsTable.Arn"), "{owner}: {action} beyond the table");
            } else {
                assert!(action.starts_with("logs:"), "{owner}: unexpected {action}");
            }
        }
    }
}

/// The revoke functions tell the caches before they answer: with a cache, they join its VPC
/// (with the role that lets Lambda attach them), are given its URL, its secret and the budget, and
/// read no other secret; the read-only functions stay out of the VPC and know no cache. The
/// subnets' description names what they must reach (DynamoDB, Secrets Manager, X-Ray).
#[test]
fn the_revoke_functions_reach_the_cache_and_nothing_more() {
    let doc = template();
    let text = |v: &Value| yaml_serde::to_string(v).unwrap();
    let functions = resources_of(&doc, "AWS::Serverless::Function");
    let roles = resources_of(&doc, "AWS::IAM::Role");
    for (f, role) in
        [("RevokeSessionFunction", "RevokeSessionRole"), ("RevokeAllSessionsFunction", "RevokeAllSessionsRole")]
    {
        let props = &functions[f]["Properties"];
        let vpc = text(&props["VpcConfig"]);
        assert!(
            vpc.contains("JoinVpc") && vpc.contains("CacheSubnetIds") && vpc.contains("CacheSecurityGroupIds"),
            "{f}: {vpc}"
        );
        let env = text(&props["Environment"]);
        for var in ["REDIS_URL", "CACHE_SECRET_ARN", "WRITE_THROUGH_BUDGET_MS"] {
            assert!(env.contains(var), "{f} lacks {var}: {env}");
        }
        assert!(!env.contains("BACKCHANNEL"), "{f}: {env}");
        let role = text(&roles[role]);
        assert!(role.contains("AWSLambdaVPCAccessExecutionRole"), "{f} cannot attach to the VPC: {role}");
        assert!(!role.contains("Backchannel"), "{f} may read the back-channel key: {role}");
    }
    for f in ["ListSessionsFunction", "ListSessionEventsFunction", "GetRevocationFunction", "ListMembersFunction"] {
        let props = text(&functions[f]["Properties"]);
        assert!(!props.contains("VpcConfig") && !props.contains("REDIS_URL"), "{f} joins the cache: {props}");
    }
    let params = &doc["Parameters"];
    let subnets = text(&params["CacheSubnetIds"]);
    for needed in ["DynamoDB", "Secrets Manager", "X-Ray", "revoke"] {
        assert!(subnets.contains(needed), "CacheSubnetIds does not say {needed}: {subnets}");
    }
    let budget = &params["WriteThroughBudgetMs"];
    assert_eq!((budget["Default"].as_u64(), budget["MinValue"].as_u64()), (Some(50), Some(0)), "{budget:?}");
}

/// Only the functions that talk to the cache link a Redis client (the `cache` feature of the shared
/// crate): the read-only ones start without it.
#[test]
fn only_the_functions_that_talk_to_the_cache_link_redis() {
    let talk = ["introspect-token", "revocation-fanout", "revoke-session", "revoke-all-sessions"];
    let root = integration_tests::repo_root();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(format!("{root}/functions")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let features = manifest["dependencies"]
            .get("active-sessions")
            .and_then(|d| d.get("features"))
            .and_then(|f| f.as_array())
            .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(features.iter().any(|f| f == "cache"), talk.contains(&name.as_str()), "{name}: {features:?}");
        seen.push(name);
    }
    assert!(seen.len() >= 13, "{seen:?}");
}

/// The public, unauthenticated, cacheable function never reads a private key. Its role may read the
/// published JWKS secret and nothing else, its environment names no signing secret, and it links no
/// token signing.
#[test]
fn the_public_jwks_function_cannot_read_the_signing_secret() {
    let doc = template();
    let text = |v: &Value| yaml_serde::to_string(v).unwrap();
    let role = &resources_of(&doc, "AWS::IAM::Role")["GetJwksRole"];
    assert!(!text(role).contains("BackchannelSecretArn"), "get-jwks's role reads the signing secret:\n{}", text(role));
    let reads: Vec<String> = statements(&doc)
        .into_iter()
        .filter(|(owner, _)| owner == "GetJwksRole")
        .filter(|(_, st)| text(unconditional(st)).contains("secretsmanager:"))
        .map(|(_, st)| text(&unconditional(&st)["Resource"]))
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(reads[0].contains("BackchannelJwksSecretArn"), "{reads:?}");
    let function = &resources_of(&doc, "AWS::Serverless::Function")["GetJwksFunction"];
    let env = text(&function["Properties"]["Environment"]);
    assert!(!env.contains("BACKCHANNEL_SECRET_ARN") && !env.contains("BackchannelSecretArn"), "{env}");
    // A function stuck on an old configuration alarms: every function that reloads one.
    let alarms = resources_of(&doc, "AWS::CloudWatch::Alarm");
    let reload = text(&alarms["ConfigReloadFailedAlarm"]["Properties"]);
    for f in ["RevocationFanoutFunction", "LogoutRetryFunction", "GetJwksFunction"] {
        assert!(reload.contains(f) && reload.contains("ConfigReloadFailed"), "{f}: {reload}");
    }
    // A deploy with back-channel logout but no published keys is refused (products would refuse
    // every logout), as is publishing the signing secret itself.
    let rule = text(&doc["Rules"]["BackchannelNeedsItsJwks"]);
    assert!(rule.contains("BackchannelJwksSecretArn") && rule.contains("BackchannelSecretArn"), "{rule}");
    let manifest = repo_file("functions/get-jwks/Cargo.toml");
    assert!(!manifest.contains("backchannel"), "get-jwks links the signing code:\n{manifest}");
}
