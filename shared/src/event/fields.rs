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
        .map_err(|e| {
            malformed(
                shape,
                field,
                format!("not a timestamp ({}): {e}", quoted(raw)),
            )
        })
}

pub(super) fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
}

/// The region code and partition of a region's long name, as CloudWatch's SNS notifications
/// write it (`"EU (Ireland)"`; newer names say `Europe`): the notification may lack `AlarmArn`,
/// and the alarm's ARN is then built from the account, the region and the name.
pub(super) fn region_of_long_name(long: &str) -> Option<(&'static str, &'static str)> {
    const REGIONS: &[(&str, &str)] = &[
        ("US East (N. Virginia)", "us-east-1"),
        ("US East (Ohio)", "us-east-2"),
        ("US West (N. California)", "us-west-1"),
        ("US West (Oregon)", "us-west-2"),
        ("Africa (Cape Town)", "af-south-1"),
        ("Asia Pacific (Hong Kong)", "ap-east-1"),
        ("Asia Pacific (Hyderabad)", "ap-south-2"),
        ("Asia Pacific (Jakarta)", "ap-southeast-3"),
        ("Asia Pacific (Malaysia)", "ap-southeast-5"),
        ("Asia Pacific (Melbourne)", "ap-southeast-4"),
        ("Asia Pacific (Mumbai)", "ap-south-1"),
        ("Asia Pacific (Osaka)", "ap-northeast-3"),
        ("Asia Pacific (Seoul)", "ap-northeast-2"),
        ("Asia Pacific (Singapore)", "ap-southeast-1"),
        ("Asia Pacific (Sydney)", "ap-southeast-2"),
        ("Asia Pacific (Thailand)", "ap-southeast-7"),
        ("Asia Pacific (Tokyo)", "ap-northeast-1"),
        ("Canada (Central)", "ca-central-1"),
        ("Canada West (Calgary)", "ca-west-1"),
        ("EU (Frankfurt)", "eu-central-1"),
        ("EU (Ireland)", "eu-west-1"),
        ("EU (London)", "eu-west-2"),
        ("EU (Milan)", "eu-south-1"),
        ("EU (Paris)", "eu-west-3"),
        ("EU (Spain)", "eu-south-2"),
        ("EU (Stockholm)", "eu-north-1"),
        ("EU (Zurich)", "eu-central-2"),
        ("Israel (Tel Aviv)", "il-central-1"),
        ("Mexico (Central)", "mx-central-1"),
        ("Middle East (Bahrain)", "me-south-1"),
        ("Middle East (UAE)", "me-central-1"),
        ("South America (Sao Paulo)", "sa-east-1"),
        ("South America (São Paulo)", "sa-east-1"),
    ];
    const OTHER_PARTITIONS: &[(&str, &str, &str)] = &[
        ("China (Beijing)", "cn-north-1", "aws-cn"),
        ("China (Ningxia)", "cn-northwest-1", "aws-cn"),
        ("AWS GovCloud (US-East)", "us-gov-east-1", "aws-us-gov"),
        ("AWS GovCloud (US-West)", "us-gov-west-1", "aws-us-gov"),
        ("AWS GovCloud (US)", "us-gov-west-1", "aws-us-gov"),
    ];
    let long = long.trim();
    // "Europe (Ireland)" is the newer wording of "EU (Ireland)".
    let eu = long
        .strip_prefix("Europe (")
        .map(|rest| format!("EU ({rest}"));
    let long = eu.as_deref().unwrap_or(long);
    REGIONS
        .iter()
        .find(|(name, _)| *name == long)
        .map(|(_, code)| (*code, "aws"))
        .or_else(|| {
            OTHER_PARTITIONS
                .iter()
                .find(|(name, _, _)| *name == long)
                .map(|(_, code, partition)| (*code, *partition))
        })
}

pub(super) fn malformed(
    shape: &'static str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> EventError {
    EventError::Malformed {
        shape,
        field: capped(field.into()),
        problem: capped(problem.into()),
    }
}

/// The longest field name or problem an error keeps: serde's messages quote the offending
/// value whole, and a hostile payload's value can be a megabyte.
const ERROR_TEXT_CHARS: usize = 400;

/// A payload's free text as the event model keeps it: at most [`ERROR_TEXT_CHARS`] characters.
pub(super) fn capped_text(text: &str) -> String {
    capped(text.to_owned())
}

fn capped(text: String) -> String {
    if text.chars().count() <= ERROR_TEXT_CHARS {
        return text;
    }
    let head: String = text.chars().take(ERROR_TEXT_CHARS).collect();
    format!("{head}… ({} bytes in all)", text.len())
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

/// A value from the payload as an error quotes it: at most [`QUOTED_CHARS`] characters, so a
/// hostile payload's megabyte string is not repeated into logs and answers.
pub(super) fn quoted(raw: &str) -> String {
    let mut chars = raw.chars();
    let head: String = chars.by_ref().take(QUOTED_CHARS).collect();
    if chars.next().is_none() {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({} bytes)", raw.len())
    }
}

/// How much of a payload's value an error quotes.
pub(super) const QUOTED_CHARS: usize = 64;

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
