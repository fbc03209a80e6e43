//! A [`Message`] as Slack Block Kit (incoming webhook payload) and as an email (SNS subject and
//! plain-text body). Pure functions: the senders only deliver what these build.

use serde_json::{json, Value};

use crate::message::Message;

/// SNS `Subject`: "less than 100 characters long", printable ASCII, no line breaks.
pub const SUBJECT_MAX: usize = 99;

/// The one-line summary: Slack's fallback `text` (notifications, screen readers) and the basis
/// of the email subject.
pub fn summary(m: &Message) -> String {
    let mut parts = vec![m.headline.clone()];
    if let (Some(app), Some(group)) = (&m.application, &m.deployment_group) {
        parts.push(format!("{app}/{group}"));
    }
    if let Some(d) = &m.deployment_id {
        parts.push(d.clone());
    }
    let mut text = parts.join(" · ");
    if m.dry_run {
        text = format!("[dry run] {text}");
    }
    text
}

fn facts(m: &Message) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    if let Some(a) = &m.application {
        f.push(("Application", a.clone()));
    }
    if let Some(g) = &m.deployment_group {
        f.push(("Deployment group", g.clone()));
    }
    if let Some(d) = &m.deployment_id {
        f.push(("Deployment", d.clone()));
    }
    if let Some(e) = &m.environment {
        f.push(("Environment", e.clone()));
    }
    if let Some(a) = &m.account {
        f.push(("Account", a.clone()));
    }
    f.push(("Trigger", m.trigger.clone()));
    if let Some(s) = &m.snapshot_id {
        f.push(("Snapshot", s.clone()));
    }
    f
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in text that is not markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack section text is limited to 3000 characters.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The incoming-webhook payload: a header with the emoji and state, the facts, the why, what was
/// done, and links to the console; `text` is always set.
pub fn slack(m: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&format!("{} {}", m.emoji, m.headline), 150), "emoji": true}
    })];
    let fields: Vec<Value> = facts(m)
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", escape(&v))}))
        .collect();
    // A section holds at most 10 fields.
    for chunk in fields.chunks(10) {
        blocks.push(json!({"type": "section", "fields": chunk}));
    }
    if let Some(reason) = &m.reason {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&format!("*Why*\n{}", escape(reason)), 3000)}
        }));
    }
    if !m.details.is_empty() {
        let lines: Vec<String> = m
            .details
            .iter()
            .map(|d| format!("• {}", escape(d)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&lines.join("\n"), 3000)}
        }));
    }
    if !m.links.is_empty() {
        let buttons: Vec<Value> = m
            .links
            .iter()
            .map(|l| json!({"type": "button", "text": {"type": "plain_text", "text": clip(&l.label, 75)}, "url": l.url}))
            .collect();
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    let mut context = format!("safeship · severity {:?}", m.severity).to_lowercase();
    if m.dry_run {
        context.push_str(" · dry run: nothing was changed");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({"text": summary(m), "blocks": blocks})
}

/// Adds `note` to a rendered Slack message as a context line under its header (a message sent
/// again after a crash says so).
pub fn mark_repeated(payload: &mut Value, note: &str) {
    if let Some(blocks) = payload["blocks"].as_array_mut() {
        let at = blocks.len().min(1);
        blocks.insert(
            at,
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(note)}]}),
        );
    }
}

/// The email subject: the summary made printable ASCII on one line, within SNS's limit.
pub fn email_subject(m: &Message) -> String {
    let ascii: String = summary(m)
        .replace(" · ", " - ")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let one_line = ascii.split_whitespace().collect::<Vec<_>>().join(" ");
    let prefixed = format!("[safeship] {one_line}");
    if prefixed.len() <= SUBJECT_MAX {
        prefixed
    } else {
        format!("{}...", &prefixed[..SUBJECT_MAX - 3])
    }
}

/// The email body: the same facts, the why, what was done, and the links, as plain text.
pub fn email_body(m: &Message) -> String {
    let mut out = format!("{}\n\n", summary(m));
    for (k, v) in facts(m) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(reason) = &m.reason {
        out.push_str(&format!("\nWhy:\n{reason}\n"));
    }
    if !m.details.is_empty() {
        out.push('\n');
        for d in &m.details {
            out.push_str(&format!("- {d}\n"));
        }
    }
    if !m.links.is_empty() {
        out.push('\n');
        for l in &m.links {
            out.push_str(&format!("{}: {}\n", l.label, l.url));
        }
    }
    if m.dry_run {
        out.push_str("\nDry run: nothing was changed.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Link;
    use safeship::policy::Severity;

    fn message() -> Message {
        Message {
            severity: Severity::Failure,
            emoji: ":x:",
            headline: "Deployment failed".into(),
            application: Some("checkout".into()),
            deployment_group: Some("checkout-prod".into()),
            deployment_id: Some("d-ABCDEF123".into()),
            environment: Some("prod".into()),
            trigger: "CodeDeploy state change FAILURE".into(),
            reason: Some("health: /version is \"3\", expected \"4\" <request 1>".into()),
            details: vec![],
            snapshot_id: None,
            account: None,
            links: vec![Link {
                label: "Deployment d-ABCDEF123".into(),
                url: "https://eu-west-1.console.aws.amazon.com/x".into(),
            }],
            dry_run: false,
        }
    }

    #[test]
    fn slack_has_fallback_text_and_escapes_markup() {
        let v = slack(&message());
        assert_eq!(
            v["text"],
            "Deployment failed · checkout/checkout-prod · d-ABCDEF123"
        );
        let why = v["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(why.contains("&lt;request 1&gt;"), "{why}");
    }

    #[test]
    fn the_subject_is_short_printable_ascii_on_one_line() {
        let mut m = message();
        m.headline = format!("Integrity anomaly in {}\n✓ done", "x".repeat(200));
        let s = email_subject(&m);
        assert!(s.len() <= SUBJECT_MAX, "{}", s.len());
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s}");
        assert_eq!(
            email_subject(&message()),
            "[safeship] Deployment failed - checkout/checkout-prod - d-ABCDEF123"
        );
    }

    #[test]
    fn the_body_carries_the_facts_the_why_and_the_links() {
        let body = email_body(&message());
        assert!(body.contains("Deployment: d-ABCDEF123\n"));
        assert!(body.contains("Why:\nhealth: /version is \"3\""));
        assert!(body.contains("Deployment d-ABCDEF123: https://eu-west-1.console.aws.amazon.com/x"));
    }
}
