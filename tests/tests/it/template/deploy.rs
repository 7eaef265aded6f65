//! The deploy: aliases and rollback, traces, the dashboard, the lint rules, the retry queue.

use super::*;

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
