//! Reading fields of a JSON payload, with errors that name the shape and the field.

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;

use super::EventError;

/// CloudWatch writes `2019-10-02T17:04:40.985+0000` (no colon in the offset), which RFC 3339
/// parsers refuse; EventBridge's envelope uses RFC 3339 proper. Accept both.
pub fn parse_time(
    shape: &'static str,
    field: &str,
    raw: &str,
) -> Result<DateTime<Utc>, EventError> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::<FixedOffset>::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| malformed(shape, field, format!("not a timestamp ({raw:?}): {e}")))
}

pub(super) fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

pub(super) fn malformed(
    shape: &'static str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> EventError {
    EventError::Malformed {
        shape,
        field: field.into(),
        problem: problem.into(),
    }
}

pub(super) fn string_at(v: &Value, shape: &'static str, key: &str) -> Result<String, EventError> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(malformed(shape, key, "is empty")),
        Some(other) => Err(malformed(
            shape,
            key,
            format!("expected a string, found {}", json_type(other)),
        )),
        None => Err(malformed(shape, key, "missing")),
    }
}

pub(super) fn optional_str(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
