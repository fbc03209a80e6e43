//! A local Slack: an incoming webhook and the Web API's `chat.postMessage` (with a bot token). It
//! records every body it receives and answers from a script (once the script is used up: the
//! webhook's 200 `ok`, the Web API's `{"ok": true, "ts": …}` with a new `ts` each time), so a test
//! can play Slack being rate-limited, down, refusing a channel, or taking a request and never
//! answering it. What the Web API posted can be read back as Slack's `conversations.history` and
//! `conversations.replies` show it (with each message's `metadata` when asked for).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
enum Reply {
    /// Status, optional `Retry-After` seconds, body.
    Answer(u16, Option<u64>, String),
    /// Read the request, then never answer (the connection stays open until the client drops it).
    Hang,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Value>>,
    /// How many requests were answered 2xx: messages Slack would have posted.
    accepted: Mutex<usize>,
    /// The `Authorization` header of each Web API request.
    authorizations: Mutex<Vec<String>>,
    /// What the Web API posted, oldest first, each with its `ts`: the channel's history.
    posted: Mutex<Vec<Value>>,
}

/// The bot token the Web API's secret holds in the tests.
pub const BOT_TOKEN: &str = "xoxb-0000-SECRETBOTTOKEN";

pub struct SlackWebhook {
    pub url: String,
    shared: Arc<Shared>,
}

impl SlackWebhook {
    pub async fn start() -> SlackWebhook {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/services/T000/B000/XXXXSECRETXXXX", post(hook))
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/conversations.history", axum::routing::get(history))
            .route("/api/conversations.replies", axum::routing::get(replies))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        SlackWebhook {
            url: format!("http://{addr}/services/T000/B000/XXXXSECRETXXXX"),
            shared,
        }
    }

    /// The next answers: status, optional `Retry-After` seconds, body.
    pub fn answer(&self, status: u16, retry_after: Option<u64>, body: &str, times: usize) {
        let mut script = self.shared.script.lock().unwrap();
        for _ in 0..times {
            script.push_back(Reply::Answer(status, retry_after, body.to_owned()));
        }
    }

    /// The next `times` requests are read and never answered.
    pub fn hang(&self, times: usize) {
        let mut script = self.shared.script.lock().unwrap();
        for _ in 0..times {
            script.push_back(Reply::Hang);
        }
    }

    /// Where the Web API is (`SAFESHIP_SLACK_API_URL`).
    pub fn api_url(&self) -> String {
        self.url
            .replace("/services/T000/B000/XXXXSECRETXXXX", "/api")
    }

    /// The `Authorization` header of each Web API request so far.
    pub fn authorizations(&self) -> Vec<String> {
        self.shared.authorizations.lock().unwrap().clone()
    }

    /// Every body received, answered or not.
    pub fn received(&self) -> Vec<Value> {
        self.shared.received.lock().unwrap().clone()
    }

    /// What the Web API posted, oldest first, each with the `ts` it was answered.
    pub fn posted(&self) -> Vec<Value> {
        self.shared.posted.lock().unwrap().clone()
    }

    /// The `ts` of the `n`th message the Web API posted (0: the first).
    pub fn posted_ts(&self, n: usize) -> String {
        self.posted()[n]["ts"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// How many messages were accepted (answered 2xx): what the channel shows.
    pub fn accepted(&self) -> usize {
        *self.shared.accepted.lock().unwrap()
    }

    /// Waits until `n` bodies have been received (or `timeout` passes); returns how many were.
    pub async fn wait_for_received(&self, n: usize, timeout: std::time::Duration) -> usize {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.shared.received.lock().unwrap().len();
            if got >= n || tokio::time::Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

async fn hook(State(shared): State<Arc<Shared>>, body: Bytes) -> (StatusCode, HeaderMap, String) {
    answer(&shared, &body, || "ok".into()).await
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    shared.authorizations.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    let message = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let channel = message["channel"].clone();
    let n = shared.received.lock().unwrap().len() + 1;
    // Slack's `ts` is the posting time in epoch seconds (unique per channel by its fraction).
    let ts = format!("{}.{n:06}", chrono::Utc::now().timestamp());
    let answered = answer(&shared, &body, || {
        serde_json::json!({"ok": true, "channel": channel, "ts": ts}).to_string()
    })
    .await;
    let took = serde_json::from_str::<Value>(&answered.2).is_ok_and(|a| a["ok"] == true);
    if (200..300).contains(&answered.0.as_u16()) && took {
        let mut kept = message;
        kept["ts"] = Value::from(ts);
        shared.posted.lock().unwrap().push(kept);
    }
    answered
}

/// `conversations.history`: the channel's messages (not thread replies, unless broadcast) at or
/// after `oldest`, newest first.
async fn history(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    let oldest: f64 = q.get("oldest").and_then(|o| o.parse().ok()).unwrap_or(0.0);
    let posted = shared.posted.lock().unwrap().clone();
    let mut messages: Vec<Value> = posted
        .into_iter()
        .filter(|m| m["channel"].as_str() == q.get("channel").map(String::as_str))
        .filter(|m| m.get("thread_ts").is_none() || m["reply_broadcast"] == true)
        .filter(|m| ts_of(m) >= oldest)
        .map(|m| shown(m, &q))
        .collect();
    messages.reverse();
    axum::Json(serde_json::json!({"ok": true, "messages": messages, "has_more": false}))
}

/// `conversations.replies`: the thread of `ts`, its parent first.
async fn replies(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    let parent = q.get("ts").cloned().unwrap_or_default();
    let posted = shared.posted.lock().unwrap().clone();
    let messages: Vec<Value> = posted
        .into_iter()
        .filter(|m| m["channel"].as_str() == q.get("channel").map(String::as_str))
        .filter(|m| m["ts"] == parent.as_str() || m["thread_ts"] == parent.as_str())
        .map(|m| shown(m, &q))
        .collect();
    axum::Json(serde_json::json!({"ok": true, "messages": messages, "has_more": false}))
}

fn ts_of(message: &Value) -> f64 {
    message["ts"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

/// A message as a read shows it: its metadata only with `include_all_metadata`.
fn shown(mut message: Value, q: &std::collections::HashMap<String, String>) -> Value {
    if q.get("include_all_metadata").map(String::as_str) != Some("true") {
        if let Some(m) = message.as_object_mut() {
            m.remove("metadata");
        }
    }
    message
}

/// Records `body` and answers the script's next reply, or `otherwise` with 200.
async fn answer(
    shared: &Shared,
    body: &[u8],
    otherwise: impl FnOnce() -> String,
) -> (StatusCode, HeaderMap, String) {
    shared
        .received
        .lock()
        .unwrap()
        .push(serde_json::from_slice(body).unwrap_or(Value::Null));
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::Answer(200, None, otherwise()));
    let (status, retry_after, text) = match reply {
        Reply::Answer(status, retry_after, text) => (status, retry_after, text),
        Reply::Hang => std::future::pending().await,
    };
    if (200..300).contains(&status) {
        *shared.accepted.lock().unwrap() += 1;
    }
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after {
        headers.insert("retry-after", HeaderValue::from(s));
    }
    (StatusCode::from_u16(status).unwrap(), headers, text)
}

/// Where notifications land in the tests, the demo and the benchmark: the local Slack webhook
/// (its URL kept in moto's Secrets Manager) and an SNS topic whose SQS subscription shows what an
/// email subscriber would get.
pub struct Channels {
    pub slack: SlackWebhook,
    /// The secret holds a bot token for the Web API (which threads), not the webhook's URL.
    pub bot: bool,
    pub secret_arn: String,
    pub topic_arn: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl Channels {
    pub async fn create(sdk: &aws_config::SdkConfig) -> Channels {
        Self::create_with(sdk, false).await
    }

    /// As [`Self::create`], with the Slack secret holding a bot token and channel id for the
    /// Web API (`SAFESHIP_SLACK_API_URL` pointed at the local one).
    pub async fn create_with_bot(sdk: &aws_config::SdkConfig) -> Channels {
        Self::create_with(sdk, true).await
    }

    async fn create_with(sdk: &aws_config::SdkConfig, bot: bool) -> Channels {
        use crate::emulators::{unique, ACCOUNT, REGION};
        let slack = SlackWebhook::start().await;
        let secret = if bot {
            serde_json::json!({"bot_token": BOT_TOKEN, "channel": "C0DEPLOYS1"})
        } else {
            serde_json::json!({"webhook_url": slack.url})
        };
        let secret_arn = aws_sdk_secretsmanager::Client::new(sdk)
            .create_secret()
            .name(unique("safeship/slack-webhook"))
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("moto CreateSecret")
            .arn
            .expect("a secret ARN");
        let sns = aws_sdk_sns::Client::new(sdk);
        let topic_arn = sns
            .create_topic()
            .name(unique("deploys"))
            .send()
            .await
            .expect("moto CreateTopic")
            .topic_arn
            .expect("a topic ARN");
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue = unique("email");
        let queue_url = sqs
            .create_queue()
            .queue_name(&queue)
            .send()
            .await
            .expect("moto CreateQueue")
            .queue_url
            .expect("a queue URL");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"))
            .send()
            .await
            .expect("moto Subscribe");
        Channels {
            slack,
            bot,
            secret_arn,
            topic_arn,
            queue_url,
            sqs,
        }
    }

    /// The notifier's configuration for these channels.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SAFESHIP_SLACK_WEBHOOK_SECRET_ARN".into(),
                self.secret_arn.clone(),
            ),
            ("SAFESHIP_SLACK_CHANNEL".into(), "#deploys".into()),
            ("SAFESHIP_EMAIL_TOPIC_ARN".into(), self.topic_arn.clone()),
        ];
        if self.bot {
            env.push(("SAFESHIP_SLACK_API_URL".into(), self.slack.api_url()));
        }
        env
    }

    /// The SNS notifications that reached the email queue since the last call.
    pub async fn emails(&self) -> Vec<Value> {
        let mut found = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("moto ReceiveMessage");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return found;
            }
            for m in messages {
                found.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap_or(Value::Null));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("moto DeleteMessage");
            }
        }
    }
}
