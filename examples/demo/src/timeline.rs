//! The printed timeline: one line per thing seen or done, and how each function's answer reads.

use std::time::Instant;

use safeship_testkit::runtime::Answer;
use serde_json::{json, Value};

pub struct Timeline {
    start: Instant,
}

impl Timeline {
    pub fn start() -> Timeline {
        Timeline {
            start: Instant::now(),
        }
    }
    pub fn line(&self, who: &str, what: impl std::fmt::Display) {
        println!(
            "[{:>7.3}s] {who:<18} {what}",
            self.start.elapsed().as_secs_f64()
        );
    }
    /// The start of an act of the story.
    pub fn act(&self, title: &str) {
        println!("\n── {title}");
    }
    pub fn detail(&self, what: impl std::fmt::Display) {
        println!("{:>29} {what}", "");
    }
}

pub fn show(t: &Timeline, who: &str, answer: &Answer, describe: impl Fn(&Value) -> String) {
    match answer {
        Answer::Response(body) => t.line(who, describe(body)),
        Answer::Error { error_message, .. } => t.line(who, format!("rejected: {error_message}")),
    }
}

/// A run report in a line or a few: what was counted, and what is wrong.
pub fn describe_integrity(b: &Value) -> String {
    let Some(run) = b["runs"].get(0) else {
        return b.to_string();
    };
    let mut lines = vec![format!(
        "{}: {} — {} table(s), {} quer(ies) in {} ms{}",
        run["database"].as_str().unwrap_or("?"),
        run["status"].as_str().unwrap_or("?"),
        run["tables"].as_array().map_or(0, Vec::len),
        run["queries"].as_array().map_or(0, Vec::len),
        run["duration-ms"],
        if run["baseline"] == true {
            " (the baseline)"
        } else {
            ""
        }
    )];
    if let Some(since) = run["deployments-since"]
        .as_array()
        .filter(|d| !d.is_empty())
    {
        let ids: Vec<&str> = since.iter().filter_map(|d| d["id"].as_str()).collect();
        lines.push(format!("since deployment(s) {}", ids.join(", ")));
    }
    for f in run["findings"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{} {}{}: {}",
            f["severity"].as_str().unwrap_or("?"),
            f["table"].as_str().unwrap_or("?"),
            f["column"]
                .as_str()
                .map(|c| format!(".{c}"))
                .unwrap_or_default(),
            f["description"].as_str().unwrap_or("")
        ));
    }
    lines.join(&format!("\n{:>31}", ""))
}

/// A notification as its channels show it: Slack's header and fallback text, the email subject.
pub fn describe_notification(b: &Value) -> String {
    let mut lines = vec![format!("{} → {}", b["severity"], b["channels"])];
    let slack = &b["preview"]["slack"];
    lines.push(format!(
        "Slack:  {} | {}",
        slack["blocks"][0]["text"]["text"].as_str().unwrap_or(""),
        slack["text"].as_str().unwrap_or("")
    ));
    if b["channels"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c == "email"))
    {
        lines.push(format!(
            "email:  {}",
            b["preview"]["email"]["subject"].as_str().unwrap_or("")
        ));
    }
    lines.join(&format!("\n{:>31}", ""))
}

/// A hook's report to CodeDeploy, and each of its checks on a line of its own.
pub fn describe_hook(b: &Value) -> String {
    let checks: Vec<String> = b["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} in {} ms ({})",
                c["name"].as_str().unwrap_or("?"),
                if c["passed"] == json!(true) {
                    "passed"
                } else {
                    "FAILED"
                },
                c["duration-ms"],
                c["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "reported {} — {}\n{:>31}{}",
        b["status"],
        b["reason"].as_str().unwrap_or(""),
        "",
        checks.join(&format!("\n{:>31}", ""))
    )
}

/// What the alarm rollback made of an alarm: ignored, already handled, or rolled back (and how).
pub fn describe_alarm_rollback(b: &Value) -> String {
    let o = &b["outcome"];
    if o["decision"] != "roll-back" {
        return format!(
            "{}: ignored — {}",
            b["alarm"],
            o["reason"].as_str().unwrap_or("")
        );
    }
    if b["duplicate"] == true {
        return format!("{}: already handled — nothing done twice", b["alarm"]);
    }
    let actions: Vec<String> = b["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} → {}",
                a["action"].as_str().unwrap_or("?"),
                a["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "{}: rolled back {}\n{:>31}{}",
        b["alarm"],
        o["groups"],
        "",
        actions.join(&format!("\n{:>31}", ""))
    )
}

/// The pre-deployment snapshot: which database, which snapshot, in what state.
pub fn describe_snapshot(b: &Value) -> String {
    format!(
        "database {}: snapshot {} {}{}",
        b["database"].as_str().unwrap_or("?"),
        b["snapshot-id"].as_str().unwrap_or("-"),
        b["status"].as_str().unwrap_or("?"),
        b["detail"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    )
}

/// The snapshot freshness gate's answer to the migration step.
pub fn describe_freshness(b: &Value) -> String {
    format!(
        "freshness gate before the migration: {} — {}",
        b["status"].as_str().unwrap_or("?"),
        b["detail"].as_str().unwrap_or("")
    )
}
