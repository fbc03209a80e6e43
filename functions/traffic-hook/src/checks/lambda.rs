//! Lambda invoke checks: the deployment's target version, invoked directly, before (or after)
//! the alias shifts traffic to it.

use aws_sdk_lambda::primitives::Blob;
use safeship::policy::LambdaCheck;

use crate::deployment::Target;
use crate::expect::{check_json, parse_body, Placeholders};

/// The version to invoke: the policy's own `qualifier`, else the deployment's target version when
/// the check names the function being deployed, else none (`$LATEST`).
pub fn qualifier(check: &LambdaCheck, target: &Target) -> Option<String> {
    if let Some(q) = &check.qualifier {
        return Some(q.clone());
    }
    let deployed = target.lambda_function.as_deref()?;
    names_same_function(&check.function, deployed)
        .then(|| target.target_version.clone())
        .flatten()
}

/// `checkout-api`, `arn:aws:lambda:eu-west-1:1:function:checkout-api` and `…:function:checkout-api:live`
/// all name the same function.
fn names_same_function(a: &str, b: &str) -> bool {
    fn bare(name: &str) -> &str {
        match name.split_once(":function:") {
            Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
            None => name,
        }
    }
    bare(a) == bare(b)
}

pub async fn run(
    client: aws_sdk_lambda::Client,
    check: LambdaCheck,
    qualifier: Option<String>,
    vars: Placeholders,
) -> Result<String, String> {
    let payload = serde_json::to_vec(&check.payload).expect("a JSON value serialises");
    let shown = match &qualifier {
        Some(q) => format!("{}:{q}", check.function),
        None => check.function.clone(),
    };
    let out = client
        .invoke()
        .function_name(&check.function)
        .set_qualifier(qualifier)
        .payload(Blob::new(payload))
        .send()
        .await
        .map_err(|e| {
            format!(
                "lambda:Invoke {shown} failed: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            )
        })?;
    let body = out.payload.map(Blob::into_inner).unwrap_or_default();
    if let Some(kind) = out.function_error {
        return Err(format!(
            "{shown} returned a function error ({kind}): {}",
            function_error_summary(&body)
        ));
    }
    if !check.expect_json.is_empty() {
        let json = parse_body(&body)?;
        check_json(&json, &check.expect_json, &vars)?;
    }
    Ok(format!(
        "invoked {shown} (executed version {})",
        out.executed_version.as_deref().unwrap_or("unknown")
    ))
}

/// What a function error says, for people: its `errorType` and `errorMessage` (at most 200
/// characters, redacted), never the rest of the payload (a stack trace, the event, values of the
/// function's environment).
pub fn function_error_summary(body: &[u8]) -> String {
    let Ok(serde_json::Value::Object(payload)) = serde_json::from_slice(body) else {
        return format!(
            "a {}-byte payload that is not a JSON object (not shown)",
            body.len()
        );
    };
    let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let text = match (field("errorType"), field("errorMessage")) {
        ("", "") => "no errorType or errorMessage in the payload (not shown)".to_owned(),
        (kind, "") => kind.to_owned(),
        ("", message) => message.to_owned(),
        (kind, message) => format!("{kind}: {message}"),
    };
    let shown: String = text.chars().take(200).collect();
    safeship::telemetry::scrub(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(function: &str, qualifier: Option<&str>) -> LambdaCheck {
        LambdaCheck {
            name: "ping".into(),
            function: function.into(),
            qualifier: qualifier.map(str::to_owned),
            payload: serde_json::Value::Null,
            expect_json: Default::default(),
            timeout_ms: 1000,
        }
    }

    fn target() -> Target {
        Target {
            deployment_id: "d-1".into(),
            application: "checkout".into(),
            deployment_group: "checkout-prod".into(),
            compute_platform: Some("Lambda".into()),
            target_version: Some("4".into()),
            lambda_function: Some("checkout-api".into()),
            description: None,
        }
    }

    #[test]
    fn the_deployed_function_is_invoked_at_its_target_version() {
        assert_eq!(
            qualifier(&check("checkout-api", None), &target()),
            Some("4".into())
        );
        let arn = "arn:aws:lambda:eu-west-1:111122223333:function:checkout-api";
        assert_eq!(qualifier(&check(arn, None), &target()), Some("4".into()));
    }

    #[test]
    fn a_function_error_shows_its_type_and_message_only() {
        let body = br#"{"errorType":"TypeError","errorMessage":"db is undefined (token=abc123)","stackTrace":["at handler (DB_PASSWORD=hunter2)"]}"#;
        assert_eq!(
            function_error_summary(body),
            "TypeError: db is undefined (token=[redacted]"
        );
        assert_eq!(
            function_error_summary(b"Task timed out; DB_PASSWORD=hunter2"),
            "a 35-byte payload that is not a JSON object (not shown)"
        );
    }

    #[test]
    fn another_function_is_invoked_unqualified_unless_the_policy_says() {
        assert_eq!(qualifier(&check("pricing", None), &target()), None);
        assert_eq!(
            qualifier(&check("pricing", Some("live")), &target()),
            Some("live".into())
        );
    }
}
