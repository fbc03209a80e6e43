//! `safeship notify test`: a message to every channel the notifier is configured with, through
//! the notifier's own delivery (its retries, its redaction of what it prints).

use std::time::Duration;

use safeship::env::Env;
use serde_json::json;

use crate::{Error, Exit, Outcome};

pub async fn test(env: &Env) -> Result<Outcome, Error> {
    let deps = deploy_notify::Deps::from_env(env).await?;
    let by = env.optional("USER").unwrap_or("an operator");
    let sent = deploy_notify::send_test(
        &deps,
        by,
        tokio::time::Instant::now() + Duration::from_secs(60),
    )
    .await;
    if sent.is_empty() {
        return Err(Error::Usage(
            "no channel is configured: the policy's notifications.routes name none (and SAFESHIP_SLACK_WEBHOOK_SECRET_ARN / SAFESHIP_EMAIL_TOPIC_ARN say where)".into(),
        ));
    }
    let mut lines = Vec::new();
    let mut results = Vec::new();
    let mut failed = false;
    for (channel, result) in sent {
        let name = format!("{channel:?}").to_lowercase();
        match result {
            Ok(detail) => {
                lines.push(format!("{name}: {detail}"));
                results.push(json!({"channel": name, "sent": true, "detail": detail}));
            }
            Err(e) => {
                failed = true;
                lines.push(format!("{name}: FAILED {e}"));
                results.push(json!({"channel": name, "sent": false, "error": e.to_string()}));
            }
        }
    }
    Ok(Outcome {
        exit: if failed { Exit::Remote } else { Exit::Ok },
        summary: lines.join("\n"),
        json: json!({"channels": results}),
    })
}
