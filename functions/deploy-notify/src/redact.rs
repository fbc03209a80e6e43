//! The second line of defence before anything is posted: the guard rails redact their events at
//! the source, and the notifier redacts every text it renders once more — the log redaction
//! ([`safeship::telemetry::redact`]: Slack webhook paths, passwords in URLs, secret-looking keys)
//! and, in every URL, the userinfo and the values of secret-looking query parameters.

use crate::message::Message;

const REDACTED: &str = "[redacted]";

/// Query parameter names (ASCII-lowercased) containing one of these have their value masked.
const SECRET_PARAMS: [&str; 12] = [
    "token",
    "key",
    "secret",
    "sig",
    "pass",
    "pwd",
    "auth",
    "credential",
    "code",
    "session",
    "jwt",
    "otp",
];

/// `text` with whatever looks like a secret masked.
#[must_use]
pub fn text(text: &str) -> String {
    urls(&safeship::telemetry::redact(text))
}

/// Masks the userinfo (`user:password@`, `token@`) and secret-looking query values of every
/// `scheme://` URL in `text`.
fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '|'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        out.push_str(&clean(url));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// One URL after its `scheme://`.
fn clean(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    let mut out = match authority.rfind('@') {
        Some(at) => format!("{REDACTED}@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let (path, fragment) = match path.find('#') {
        Some(h) => path.split_at(h),
        None => (path, ""),
    };
    match path.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if !v.is_empty() && secret_param(k) => format!("{k}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(path),
    }
    out.push_str(fragment);
    out
}

fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|w| name.contains(w))
}

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
            "GET https://api.example.com/health?version=4&access_token=[redacted]&X-Amz-Signature=[redacted]#top answered 500"
        );
        assert_eq!(
            text("cloning https://ghp_s3cret@github.com/org/repo failed"),
            "cloning https://[redacted]@github.com/org/repo failed"
        );
        assert_eq!(
            text("\"https://app:hunter2@db.internal:5432/app\""),
            "\"https://[redacted]@db.internal:5432/app\""
        );
        let hook = text("posting to https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX");
        assert!(!hook.contains("XXXXSECRETXXXX"), "{hook}");
    }

    #[test]
    fn ordinary_text_and_urls_are_untouched() {
        for line in [
            "health: /version is \"3\", expected \"4\"",
            "see https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-1?region=eu-west-1",
            "row count fell 4.2% (email@example.com told)",
        ] {
            assert_eq!(text(line), line);
        }
    }
}
