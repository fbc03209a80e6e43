//! Delivering a message: Slack (an incoming webhook, or the Web API's `chat.postMessage` with a
//! bot token, which can thread; either from Secrets Manager, cached, never printed) and email
//! through an SNS topic, each bounded by the invocation's deadline.
//!
//! The secret holds `{"webhook_url": "https://hooks.slack.com/…"}` (or the bare URL), or
//! `{"bot_token": "xoxb-…", "channel": "C0123456789"}`. An incoming webhook answers `ok` and no
//! message id, so nothing can reply to what it posted: only the bot token threads a deployment's
//! messages. The Web API answers HTTP 200 with `{"ok": false, "error": …}` for most errors; those
//! are read as the table's rows below (`ratelimited` as 429, `service_unavailable` as a 5xx,
//! `internal_error`/`fatal_error`/`request_timeout` as "maybe posted", the rest as refused).
//!
//! # Slack: retry or give up, per failure
//!
//! An incoming webhook has no idempotency key and nothing to read back, so the only safe retry
//! is one Slack cannot already have posted. After each attempt [`next_step`] decides (Slack's
//! answers as its incoming-webhook and rate-limit documentation gives them):
//!
//! | attempt came to | Slack has the message? | next |
//! |---|---|---|
//! | 2xx | yes | done |
//! | no connection (refused, DNS, TLS, connect timeout) | no | retry after a back-off (200 ms, doubling) |
//! | 5xx (`rollup_error`, a proxy's 502/503) | no | retry after a back-off |
//! | 504 (a gateway stopped waiting for Slack's server) | maybe | as a timeout, below |
//! | 429 with `Retry-After` | no | wait it out and retry, if the wait and one more attempt fit before the deadline and the wait is at most 30 s; else fail now naming the wait |
//! | other 4xx (`invalid_payload`, `user_not_found` 400, `action_prohibited` 403, `channel_not_found` / `no_service` 404, `channel_is_archived` 410) | no, and it will not take it | give up at once with Slack's error text |
//! | no request possible (the secret holds no usable URL) | no | give up at once naming the secret |
//! | timeout or a broken connection after the request went out | maybe | **no retry in this invocation**: fail, saying Slack may have posted it |
//!
//! At most [`SLACK_ATTEMPTS`] attempts, none started with less than [`MIN_ATTEMPT`] before the
//! deadline, each cut at [`ATTEMPT_TIMEOUT`] or the deadline, whichever comes first; no wait
//! after the last attempt. A failure fails the invocation and releases the channel's claim, so
//! Lambda's retry of the event posts it then: after a maybe-sent timeout that retry may give the
//! channel the message twice, which is better than never.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::Error;

/// At most this many attempts at one Slack post.
pub const SLACK_ATTEMPTS: u32 = 4;
/// A `Retry-After` longer than this is not waited for: the invocation fails and is retried.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// One attempt's longest wait for Slack's answer (it also ends at the deadline).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// No attempt is started with less time than this before the deadline.
pub const MIN_ATTEMPT: Duration = Duration::from_secs(1);
/// The first back-off after a connection failure or a 5xx; it doubles after each.
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// What one attempt at posting came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: Slack posted it.
    Accepted,
    /// No connection was made (refused, DNS, TLS, connect timeout): Slack has nothing.
    NotSent(String),
    /// The request went out and no answer came (timeout, connection broken): Slack may have it.
    MaybeSent(String),
    /// 429, with `Retry-After` when Slack gave one.
    RateLimited(Option<Duration>),
    /// 5xx: Slack did not take it.
    ServerError { status: u16, body: String },
    /// Any other answer (4xx): Slack will not take this message as it is.
    Refused { status: u16, body: String },
    /// The request could not even be made (the secret holds no usable URL).
    Unusable(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Wait this long, then attempt again.
    Retry(Duration),
    /// Stop: the error's text.
    GiveUp(String),
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The decision after attempt number `made` came to `attempt`, with `pause` the back-off due now
/// and `left` the time before the deadline. Pure: the table in this module's documentation.
pub fn next_step(attempt: &Attempt, made: u32, pause: Duration, left: Duration) -> Next {
    let (wait, last) = match attempt {
        Attempt::Accepted => return Next::Done,
        Attempt::Refused { status, body } => {
            return Next::GiveUp(format!(
                "Slack refused the message ({status}): {}",
                body.trim()
            ))
        }
        Attempt::Unusable(why) => return Next::GiveUp(why.clone()),
        Attempt::MaybeSent(why) => {
            return Next::GiveUp(format!(
                "{why} after the message was sent ({}): Slack may have posted it, so it is not \
                 sent again in this invocation (Lambda's retry sends it, perhaps a second time)",
                attempts(made)
            ))
        }
        Attempt::RateLimited(Some(wait))
            if *wait > MAX_RETRY_AFTER || *wait + MIN_ATTEMPT > left =>
        {
            return Next::GiveUp(format!(
                "rate limited (429): Slack asked to wait {} s and {} are left before the deadline \
                 ({}); not waited for, Lambda's retry sends it",
                wait.as_secs(),
                seconds(left),
                attempts(made)
            ))
        }
        Attempt::RateLimited(Some(wait)) => (
            *wait,
            format!("rate limited (429, Retry-After {} s)", wait.as_secs()),
        ),
        Attempt::RateLimited(None) => (pause, "rate limited (429)".to_owned()),
        Attempt::ServerError { status, body } if body.trim().is_empty() => {
            (pause, format!("Slack answered {status}"))
        }
        Attempt::ServerError { status, body } => {
            (pause, format!("Slack answered {status}: {}", body.trim()))
        }
        Attempt::NotSent(why) => (pause, why.clone()),
    };
    if made >= SLACK_ATTEMPTS {
        Next::GiveUp(format!("gave up after {}: {last}", attempts(made)))
    } else if wait + MIN_ATTEMPT > left {
        Next::GiveUp(format!(
            "gave up after {} with {} left before the deadline: {last}",
            attempts(made),
            seconds(left)
        ))
    } else {
        Next::Retry(wait)
    }
}

/// `Retry-After` as Slack sends it: whole seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Where Slack's Web API is, unless `SAFESHIP_SLACK_API_URL` says otherwise.
pub const SLACK_API: &str = "https://slack.com/api";

/// What the secret says to post to.
enum Target {
    Webhook(SecretString),
    /// `chat.postMessage` into `channel` with a bot token.
    Api {
        token: SecretString,
        channel: String,
    },
}

/// A message Slack took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub attempts: u32,
    /// The message's id in its channel (the Web API's `ts`); an incoming webhook gives none.
    pub ts: Option<String>,
}

/// Where in the channel a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// A message of its own.
    Channel,
    /// A reply in the thread of the message `ts`; `broadcast` shows it in the channel too.
    Reply { ts: &'a str, broadcast: bool },
}

pub struct Slack {
    client: reqwest::Client,
    secrets: aws_sdk_secretsmanager::Client,
    secret_arn: String,
    /// How errors name the destination: a channel name, never the URL or the token.
    pub channel: String,
    api: String,
    target: OnceCell<Target>,
}

impl Slack {
    pub fn new(
        client: reqwest::Client,
        secrets: aws_sdk_secretsmanager::Client,
        secret_arn: impl Into<String>,
        channel: impl Into<String>,
    ) -> Self {
        Slack {
            client,
            secrets,
            secret_arn: secret_arn.into(),
            channel: channel.into(),
            api: SLACK_API.to_owned(),
            target: OnceCell::new(),
        }
    }

    /// Slack's Web API at `base` instead of [`SLACK_API`] (a proxy, or a local server in tests).
    pub fn with_api(mut self, base: &str) -> Self {
        self.api = base.trim_end_matches('/').to_owned();
        self
    }

    /// Whether this channel can thread (the secret holds a bot token), reading the secret once.
    pub async fn threads(&self, deadline: Instant) -> Result<bool, Error> {
        Ok(matches!(
            self.target_by(deadline).await?,
            Target::Api { .. }
        ))
    }

    fn error(&self, problem: impl Into<String>) -> Error {
        Error::Slack {
            channel: self.channel.clone(),
            problem: problem.into(),
        }
    }

    /// The webhook URL, read once per cold start. The secret is the URL itself or JSON with a
    /// `webhook_url` key.
    async fn target(&self) -> Result<&Target, Error> {
        self.target
            .get_or_try_init(|| async {
                let out = self
                    .secrets
                    .get_secret_value()
                    .secret_id(&self.secret_arn)
                    .send()
                    .await
                    .map_err(|e| {
                        safeship::Error::aws(
                            "secretsmanager:GetSecretValue",
                            format!("Slack webhook secret {}", self.secret_arn),
                            e,
                        )
                    })?;
                let text = out.secret_string.unwrap_or_default();
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    return Ok(Target::Webhook(SecretString::from(text.trim().to_owned())));
                };
                match (
                    v["webhook_url"].as_str(),
                    v["bot_token"].as_str(),
                    v["channel"].as_str(),
                ) {
                    (Some(url), _, _) => Ok(Target::Webhook(SecretString::from(url.to_owned()))),
                    (None, Some(token), Some(channel)) if !channel.trim().is_empty() => {
                        Ok(Target::Api {
                            token: SecretString::from(token.to_owned()),
                            channel: channel.trim().to_owned(),
                        })
                    }
                    (None, Some(_), _) => Err(self.error(format!(
                        "secret {} holds a bot_token without the channel (id) to post to",
                        self.secret_arn
                    ))),
                    (None, None, _) => Err(self.error(format!(
                        "secret {} is JSON without a webhook_url or bot_token key",
                        self.secret_arn
                    ))),
                }
            })
            .await
    }

    async fn target_by(&self, deadline: Instant) -> Result<&Target, Error> {
        match tokio::time::timeout_at(deadline, self.target()).await {
            Ok(target) => target,
            Err(_) => Err(self.error(format!(
                "secretsmanager:GetSecretValue of the Slack secret {} did not answer before the deadline",
                self.secret_arn
            ))),
        }
    }

    async fn attempt(
        &self,
        target: &Target,
        payload: &Value,
        place: Placement<'_>,
        key: &str,
        timeout: Duration,
    ) -> (Attempt, Option<String>) {
        let request = match target {
            Target::Webhook(url) => self.client.post(url.expose_secret()).json(payload),
            Target::Api { token, channel } => {
                let mut body = payload.clone();
                body["channel"] = Value::from(channel.as_str());
                // The message carries its once-only key, so a retry after a crash can find it.
                body["metadata"] = serde_json::json!({
                    "event_type": METADATA_EVENT_TYPE,
                    "event_payload": {"key": key},
                });
                if let Placement::Reply { ts, broadcast } = place {
                    body["thread_ts"] = Value::from(ts);
                    if broadcast {
                        body["reply_broadcast"] = Value::from(true);
                    }
                }
                self.client
                    .post(format!("{}/chat.postMessage", self.api))
                    .bearer_auth(token.expose_secret())
                    .json(&body)
            }
        };
        let sent = request.timeout(timeout).send().await;
        match sent {
            Ok(r) if r.status().is_success() => match target {
                Target::Webhook(_) => (Attempt::Accepted, None),
                Target::Api { .. } => {
                    let headers = r.headers().clone();
                    let answer: Value = r.json().await.unwrap_or(Value::Null);
                    web_api_answer(&answer, retry_after(&headers))
                }
            },
            Ok(r) if r.status().as_u16() == 429 => {
                (Attempt::RateLimited(retry_after(r.headers())), None)
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                let body: String = body.chars().take(200).collect();
                let attempt = if status == 504 {
                    Attempt::MaybeSent("a gateway timeout (504)".into())
                } else if (500..600).contains(&status) {
                    Attempt::ServerError { status, body }
                } else {
                    Attempt::Refused { status, body }
                };
                (attempt, None)
            }
            Err(e) if e.is_builder() => (
                Attempt::Refused {
                    status: 0,
                    body: format!(
                        "the webhook URL in secret {} is not a valid URL",
                        self.secret_arn
                    ),
                },
                None,
            ),
            Err(e) if e.is_connect() => (
                Attempt::NotSent(if e.is_timeout() {
                    "could not connect (timed out)".into()
                } else {
                    "could not connect".into()
                }),
                None,
            ),
            Err(e) if e.is_timeout() => (
                Attempt::MaybeSent(format!("no answer within {}", seconds(timeout))),
                None,
            ),
            Err(_) => (Attempt::MaybeSent("the connection failed".into()), None),
        }
    }

    /// Posts `payload` at `place`, the message of once-only `key` (carried in the message's
    /// metadata by the Web API, for [`Self::find_posted`]).
    pub async fn post(
        &self,
        payload: &Value,
        place: Placement<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Posted, Error> {
        let target = self.target_by(deadline).await?;
        let mut pause = FIRST_PAUSE;
        let mut made = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_ATTEMPT {
                return Err(self.error(format!(
                    "no time left before the deadline to post ({} made, {} left)",
                    attempts(made),
                    seconds(left)
                )));
            }
            made += 1;
            let (attempt, ts) = self
                .attempt(target, payload, place, key, left.min(ATTEMPT_TIMEOUT))
                .await;
            let left = deadline.saturating_duration_since(Instant::now());
            match next_step(&attempt, made, pause, left) {
                Next::Done => return Ok(Posted { attempts: made, ts }),
                Next::GiveUp(problem) => return Err(self.error(problem)),
                Next::Retry(wait) => {
                    tracing::warn!(channel = %self.channel, attempt = made, ?attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "Slack did not take the message; trying again");
                    if !matches!(attempt, Attempt::RateLimited(Some(_))) {
                        pause *= 2;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// The metadata event type of safeship's messages (Slack: lowercase letters and underscores).
pub const METADATA_EVENT_TYPE: &str = "safeship_notification";

/// What a look for an earlier post found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The message of that key is in the channel (or the thread), with its `ts`.
    Posted(String),
    /// It is not there.
    NotPosted,
    /// This channel cannot be read back (an incoming webhook).
    CannotTell,
}

impl Slack {
    /// Whether the message of once-only `key` is already in the channel at `place` (a thread's
    /// replies, or the channel since `since`): what a delivery that resumes after one that died
    /// looks for before it posts. Slack's `conversations.history` / `conversations.replies`
    /// with `include_all_metadata`.
    pub async fn find_posted(
        &self,
        key: &str,
        place: Placement<'_>,
        since: chrono::DateTime<chrono::Utc>,
        deadline: Instant,
    ) -> Result<Found, Error> {
        let Target::Api { token, channel } = self.target_by(deadline).await? else {
            return Ok(Found::CannotTell);
        };
        let (method, mut query) = match place {
            Placement::Reply { ts, .. } => ("conversations.replies", vec![("ts", ts.to_owned())]),
            Placement::Channel => (
                "conversations.history",
                vec![("oldest", format!("{}.000000", since.timestamp()))],
            ),
        };
        query.extend([
            ("channel", channel.clone()),
            ("include_all_metadata", "true".to_owned()),
            ("limit", "200".to_owned()),
        ]);
        let left = deadline.saturating_duration_since(Instant::now());
        let url = reqwest::Url::parse_with_params(&format!("{}/{method}", self.api), &query)
            .map_err(|e| self.error(format!("{method}: the API's URL: {e}")))?;
        let answer = self
            .client
            .get(url)
            .bearer_auth(token.expose_secret())
            .timeout(left.min(ATTEMPT_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.error(format!("{method}: {}", e.without_url())))?;
        let status = answer.status();
        let answer: Value = answer
            .json()
            .await
            .map_err(|e| self.error(format!("{method}: HTTP {status}: {}", e.without_url())))?;
        if answer["ok"] != true {
            return Err(self.error(format!(
                "{method} answered {}",
                answer["error"].as_str().unwrap_or("no error given")
            )));
        }
        Ok(found_in(&answer, key))
    }
}

/// The message of `key` among a history's or a thread's `messages`.
fn found_in(answer: &Value, key: &str) -> Found {
    answer["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| {
            m["metadata"]["event_type"] == METADATA_EVENT_TYPE
                && m["metadata"]["event_payload"]["key"] == key
        })
        .and_then(|m| m["ts"].as_str())
        .map_or(Found::NotPosted, |ts| Found::Posted(ts.to_owned()))
}

/// The Web API's answer to `chat.postMessage` (HTTP 200), as an attempt, with the message's `ts`.
fn web_api_answer(answer: &Value, retry_after: Option<Duration>) -> (Attempt, Option<String>) {
    if answer["ok"] == true {
        return (Attempt::Accepted, answer["ts"].as_str().map(str::to_owned));
    }
    let error = answer["error"]
        .as_str()
        .unwrap_or("no error given")
        .to_owned();
    let attempt = match error.as_str() {
        "ratelimited" => Attempt::RateLimited(retry_after),
        "service_unavailable" => Attempt::ServerError {
            status: 200,
            body: error,
        },
        // Slack says some of the operation may have succeeded.
        "internal_error" | "fatal_error" | "request_timeout" => {
            Attempt::MaybeSent(format!("Slack answered {error}"))
        }
        _ => Attempt::Refused {
            status: 200,
            body: error,
        },
    };
    (attempt, None)
}

pub async fn email(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    subject: &str,
    body: &str,
    deadline: Instant,
) -> Result<String, Error> {
    if deadline <= Instant::now() {
        return Err(safeship::Error::unexpected(
            "sns:Publish",
            format!("email topic {topic_arn}"),
            "no time left before the deadline to publish",
        )
        .into());
    }
    let publish = sns
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(body)
        .send();
    let out = tokio::time::timeout_at(deadline, publish)
        .await
        .map_err(|_| {
            safeship::Error::unexpected(
                "sns:Publish",
                format!("email topic {topic_arn}"),
                "no answer before the deadline (SNS may have taken it)",
            )
        })?
        .map_err(|e| safeship::Error::aws("sns:Publish", format!("email topic {topic_arn}"), e))?;
    Ok(out.message_id.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_apis_answers_are_read_as_the_webhooks_are() {
        let (ok, ts) = web_api_answer(
            &serde_json::json!({"ok": true, "channel": "C1", "ts": "1700000000.000100"}),
            None,
        );
        assert_eq!(
            (ok, ts.as_deref()),
            (Attempt::Accepted, Some("1700000000.000100"))
        );
        let read = |error: &str| {
            web_api_answer(
                &serde_json::json!({"ok": false, "error": error}),
                Some(Duration::from_secs(3)),
            )
            .0
        };
        assert_eq!(
            read("ratelimited"),
            Attempt::RateLimited(Some(Duration::from_secs(3)))
        );
        assert!(matches!(
            read("service_unavailable"),
            Attempt::ServerError { .. }
        ));
        assert!(matches!(read("internal_error"), Attempt::MaybeSent(_)));
        assert_eq!(
            read("channel_not_found"),
            Attempt::Refused {
                status: 200,
                body: "channel_not_found".into()
            }
        );
        assert!(matches!(
            next_step(&read("not_in_channel"), 1, PAUSE, PLENTY),
            Next::GiveUp(text) if text == "Slack refused the message (200): not_in_channel"
        ));
    }

    const PAUSE: Duration = Duration::from_millis(200);
    const PLENTY: Duration = Duration::from_secs(50);

    fn give_up(next: Next) -> String {
        match next {
            Next::GiveUp(text) => text,
            other => panic!("expected to give up, got {other:?}"),
        }
    }

    #[test]
    fn what_slack_cannot_have_posted_is_retried_after_a_back_off() {
        let not_sent = Attempt::NotSent("could not connect".into());
        assert_eq!(next_step(&not_sent, 1, PAUSE, PLENTY), Next::Retry(PAUSE));
        let down = Attempt::ServerError {
            status: 500,
            body: "rollup_error".into(),
        };
        assert_eq!(
            next_step(&down, 2, PAUSE * 2, PLENTY),
            Next::Retry(PAUSE * 2)
        );
        assert_eq!(next_step(&Attempt::Accepted, 1, PAUSE, PLENTY), Next::Done);
    }

    #[test]
    fn attempts_are_counted_as_made_and_none_follows_the_last() {
        let down = Attempt::ServerError {
            status: 503,
            body: String::new(),
        };
        assert_eq!(
            give_up(next_step(&down, SLACK_ATTEMPTS, PAUSE, PLENTY)),
            "gave up after 4 attempts: Slack answered 503"
        );
        // Too little time for the back-off and one more attempt: stop now, say how many were made.
        let text = give_up(next_step(&down, 1, PAUSE, Duration::from_millis(900)));
        assert_eq!(
            text,
            "gave up after 1 attempt with 0.9 s left before the deadline: Slack answered 503"
        );
    }

    #[test]
    fn a_timeout_after_sending_is_never_retried_blind() {
        let text = give_up(next_step(
            &Attempt::MaybeSent("no answer within 10.0 s".into()),
            1,
            PAUSE,
            PLENTY,
        ));
        assert!(text.starts_with("no answer within 10.0 s after the message was sent (1 attempt): Slack may have posted it"), "{text}");
    }

    #[test]
    fn retry_after_is_waited_only_when_it_fits_before_the_deadline() {
        let five = Attempt::RateLimited(Some(Duration::from_secs(5)));
        assert_eq!(
            next_step(&five, 1, PAUSE, PLENTY),
            Next::Retry(Duration::from_secs(5))
        );
        let text = give_up(next_step(&five, 1, PAUSE, Duration::from_secs(5)));
        assert_eq!(
            text,
            "rate limited (429): Slack asked to wait 5 s and 5.0 s are left before the deadline (1 attempt); not waited for, Lambda's retry sends it"
        );
        let long = Attempt::RateLimited(Some(Duration::from_secs(31)));
        assert!(
            give_up(next_step(&long, 1, PAUSE, Duration::from_secs(600)))
                .contains("asked to wait 31 s")
        );
        // Without Retry-After, the back-off.
        assert_eq!(
            next_step(&Attempt::RateLimited(None), 1, PAUSE, PLENTY),
            Next::Retry(PAUSE)
        );
    }

    #[test]
    fn a_refusal_gives_up_at_once_with_slacks_reason() {
        let refused = Attempt::Refused {
            status: 400,
            body: "invalid_payload\n".into(),
        };
        assert_eq!(
            give_up(next_step(&refused, 1, PAUSE, PLENTY)),
            "Slack refused the message (400): invalid_payload"
        );
    }
}
