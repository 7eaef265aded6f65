//! Roles and permissions: each function's own log group, named and scoped statements, the cache's reach, the JWKS secret.

use super::*;

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
        let joins_vpc = [
            "IntrospectToken",
            "RevocationFanout",
            "RevokeSession",
            "RevokeAllSessions",
            "GlobalTokenRevocation",
            "SsfReceiver",
        ]
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
    let table_actions = [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ];
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
                    o if o.contains("RevokeSession")
                        || o.contains("RevokeAllSessions")
                        || o.contains("GlobalTokenRevocation")
                        || o.contains("SsfReceiver") =>
                    {
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
    for (f, role) in [
        ("RevokeSessionFunction", "RevokeSessionRole"),
        ("RevokeAllSessionsFunction", "RevokeAllSessionsRole"),
        ("GlobalTokenRevocationFunction", "GlobalTokenRevocationRole"),
        ("SsfReceiverFunction", "SsfReceiverRole"),
    ] {
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
    let talk = [
        "introspect-token",
        "revocation-fanout",
        "revoke-session",
        "revoke-all-sessions",
        "global-token-revocation",
        "ssf-receiver",
    ];
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
