//! The second line of defence before anything is posted: the guard rails redact their events at
//! the source, and the notifier scrubs every text it renders once more
//! ([`safeship::telemetry::scrub`]: in every URL the userinfo, query values and fragment; Slack
//! webhook paths, passwords in URLs and secret-looking keys anywhere).

use crate::message::Message;

/// `text` with whatever looks like a secret masked: the shared scrubber, nothing of its own.
pub use safeship::telemetry::scrub as text;

/// The message with every text it renders redacted (the console links it builds itself are
/// left as they are: they hold identifiers only).
#[must_use]
pub fn message(mut m: Message) -> Message {
    let fix = |s: &mut String| *s = text(s);
    fix(&mut m.headline);
    fix(&mut m.trigger);
    for s in [
        &mut m.application,
        &mut m.deployment_group,
        &mut m.deployment_id,
        &mut m.environment,
        &mut m.reason,
        &mut m.snapshot_id,
        &mut m.account,
    ]
    .into_iter()
    .flatten()
    {
        fix(s);
    }
    m.details.iter_mut().for_each(fix);
    for link in &mut m.links {
        fix(&mut link.label);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_queries_and_userinfo_are_masked() {
        assert_eq!(
            text("GET https://api.example.com/health?version=4&access_token=abc123&X-Amz-Signature=f00d#top answered 500"),
            "GET https://api.example.com/health?version=***&access_token=[redacted]&X-Amz-Signature=***#*** answered 500"
        );
        assert_eq!(
            text("cloning https://ghp_s3cret@github.com/org/repo failed"),
            "cloning https://***@github.com/org/repo failed"
        );
        assert_eq!(
            text("\"https://app:hunter2@db.internal:5432/app\""),
            "\"https://***@db.internal:5432/app\""
        );
        let hook = text("posting to https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX");
        assert!(!hook.contains("XXXXSECRETXXXX"), "{hook}");
    }

    #[test]
    fn ordinary_text_and_urls_are_untouched() {
        for line in [
            "health: /version is \"3\", expected \"4\"",
            "see https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-1",
            "row count fell 4.2% (email@example.com told)",
        ] {
            assert_eq!(text(line), line);
        }
    }
}
