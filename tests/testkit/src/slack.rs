//! A local Slack: an incoming webhook and the Web API's `chat.postMessage` (with a bot token). It
//! records every body it receives and answers from a script (once the script is used up: the
//! webhook's 200 `ok`, the Web API's `{"ok": true, "ts": …}` with a new `ts` each time), so a test
//! can play Slack being rate-limited, down, refusing a channel, or taking a request and never
//! answering it.

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
    let channel = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)["channel"].clone();
    let n = shared.received.lock().unwrap().len() + 1;
    answer(&shared, &body, || {
        serde_json::json!({"ok": true, "channel": channel, "ts": format!("1764700000.{n:06}")})
            .to_string()
    })
    .await
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
