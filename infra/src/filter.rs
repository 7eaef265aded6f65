//! Lambda event filtering, for the patterns `template.yaml` gives the stream's event source
//! mapping. Locally the stream poller applies them, so the fan-out sees the records the deployed
//! one would; the tests hold them against every kind of record the table produces.
//!
//! The subset of the pattern syntax implemented: nested objects, lists of literal values (any
//! may match), and the `exists` and `prefix` operators. A pattern using anything else is
//! refused when it is read, never silently treated as "matches".

use serde_json::Value;

/// One filter of the mapping's `FilterCriteria`; a record passes a mapping when any filter matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Value);

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("template: {0}")]
    Template(String),
    #[error("pattern {pattern}: {reason}")]
    Pattern { pattern: String, reason: String },
}

impl Pattern {
    pub fn parse(raw: &str) -> Result<Self, FilterError> {
        let bad = |reason: String| FilterError::Pattern { pattern: raw.to_owned(), reason };
        let value: Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        check(&value).map_err(bad)?;
        Ok(Self(value))
    }

    pub fn matches(&self, record: &Value) -> bool {
        object_matches(&self.0, Some(record))
    }
}

/// Whether any of the filters lets the record through.
pub fn passes(filters: &[Pattern], record: &Value) -> bool {
    filters.iter().any(|f| f.matches(record))
}

/// The filter patterns of the (single) `AWS::Lambda::EventSourceMapping` that reads a table's
/// stream (`EventSourceArn: !GetAtt <table>.StreamArn`) in a SAM template.
pub fn from_template(yaml: &str) -> Result<Vec<Pattern>, FilterError> {
    let doc: yaml_serde::Value = yaml_serde::from_str(yaml).map_err(|e| FilterError::Template(e.to_string()))?;
    let resources = doc["Resources"].as_mapping().ok_or_else(|| FilterError::Template("no Resources".into()))?;
    let reads_a_stream = |r: &yaml_serde::Value| match &r["Properties"]["EventSourceArn"] {
        yaml_serde::Value::Tagged(t) => t.value.as_str().is_some_and(|v| v.ends_with(".StreamArn")),
        _ => false,
    };
    let mappings: Vec<_> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Lambda::EventSourceMapping") && reads_a_stream(r))
        .collect();
    let [mapping] = mappings.as_slice() else {
        return Err(FilterError::Template(format!(
            "expected one stream event source mapping, found {}",
            mappings.len()
        )));
    };
    let filters = mapping["Properties"]["FilterCriteria"]["Filters"]
        .as_sequence()
        .ok_or_else(|| FilterError::Template("the event source mapping has no FilterCriteria.Filters".into()))?;
    filters
        .iter()
        .map(|f| {
            let raw = f["Pattern"].as_str().ok_or_else(|| FilterError::Template("a filter without Pattern".into()))?;
            Pattern::parse(raw)
        })
        .collect()
}

/// Refuses what `matches` does not implement.
fn check(pattern: &Value) -> Result<(), String> {
    match pattern {
        Value::Object(fields) => fields.values().try_for_each(|v| match v {
            Value::Object(_) => check(v),
            Value::Array(options) => options.iter().try_for_each(check_option),
            other => Err(format!("a field must be an object or a list, not {other}")),
        }),
        other => Err(format!("a pattern must be an object, not {other}")),
    }
}

fn check_option(option: &Value) -> Result<(), String> {
    match option {
        Value::Object(op) => match op.iter().next() {
            Some((name, Value::Bool(_))) if name == "exists" && op.len() == 1 => Ok(()),
            Some((name, Value::String(_))) if name == "prefix" && op.len() == 1 => Ok(()),
            _ => Err(format!("unsupported operator {option}")),
        },
        Value::Array(_) => Err("nested lists are not patterns".into()),
        _ => Ok(()),
    }
}

fn object_matches(pattern: &Value, value: Option<&Value>) -> bool {
    let Value::Object(fields) = pattern else { return false };
    let Some(Value::Object(record)) = value else { return false };
    fields.iter().all(|(name, want)| match want {
        Value::Object(_) => object_matches(want, record.get(name)),
        Value::Array(options) => options.iter().any(|o| option_matches(o, record.get(name))),
        _ => false,
    })
}

fn option_matches(option: &Value, value: Option<&Value>) -> bool {
    match option {
        Value::Object(op) => match (op.get("exists"), op.get("prefix")) {
            (Some(Value::Bool(exists)), _) => value.is_some_and(|v| !v.is_object()) == *exists,
            (_, Some(Value::String(prefix))) => value.and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix)),
            _ => false,
        },
        literal => match value {
            Some(Value::Array(items)) => items.contains(literal),
            Some(v) => v == literal,
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_nesting_exists_and_prefix() {
        let p = Pattern::parse(
            r#"{"eventName": ["MODIFY", "INSERT"], "dynamodb": {"NewImage": {"RevokedBefore": {"N": [{"exists": true}]},
                "PK": {"S": [{"prefix": "USER#"}]}}}}"#,
        )
        .unwrap();
        let rec = |name: &str, new: Value| json!({"eventName": name, "dynamodb": {"NewImage": new}});
        let with = json!({"RevokedBefore": {"N": "1"}, "PK": {"S": "USER#a"}});
        assert!(p.matches(&rec("MODIFY", with.clone())));
        assert!(p.matches(&rec("INSERT", with.clone())));
        assert!(!p.matches(&rec("REMOVE", with)));
        assert!(!p.matches(&rec("MODIFY", json!({"PK": {"S": "USER#a"}}))));
        assert!(!p.matches(&rec("MODIFY", json!({"RevokedBefore": {"N": "1"}, "PK": {"S": "WORKSPACE#a"}}))));
        assert!(!p.matches(&json!({"eventName": "MODIFY"})));

        let absent = Pattern::parse(r#"{"userIdentity": {"type": [{"exists": false}]}}"#).unwrap();
        assert!(absent.matches(&json!({"userIdentity": {}})));
        assert!(!absent.matches(&json!({"userIdentity": {"type": "Service"}})));
    }

    #[test]
    fn what_is_not_implemented_is_refused() {
        for raw in [
            r#"{"eventName": [{"anything-but": "REMOVE"}]}"#,
            r#"{"size": [{"numeric": [">", 0]}]}"#,
            r#"{"eventName": "MODIFY"}"#,
            r#"["MODIFY"]"#,
            "not json",
        ] {
            assert!(Pattern::parse(raw).is_err(), "{raw}");
        }
    }
}
