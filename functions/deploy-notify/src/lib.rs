//! Deployment notifications: CodeDeploy state changes and safeship's guard events, to the
//! channels the policy routes them to.
//!
//! The routing and the messages are pure functions of the event, the policy and the region
//! ([`message`], [`render`]); [`deliver`] posts to Slack and publishes to SNS. Each channel is
//! claimed separately in the idempotency table, so a duplicate delivery sends nothing and a retry
//! after one channel failed does not repeat the one that succeeded.
//!
//! The channels are sent to side by side, each by the invocation's deadline less
//! `SAFESHIP_NOTIFY_MARGIN_MS` (the time kept to record the outcome and answer); how Slack's
//! failures are retried or given up is in [`deliver`]. The answer says `duplicate: true` only
//! when every routed channel's message was provably sent by an earlier delivery; a channel
//! another live invocation is sending is an error (`InProgressElsewhere`), so Lambda retries.
//! Every text posted is redacted once more ([`redact`]). The notifier publishes no guard events.
//!
//! safeship's own alarms (named `SAFESHIP_OWN_ALARM_PREFIX…`) are announced too, to Slack only:
//! their alarm action already emails the topic. The stack never routes the notifier's own alarms
//! here (a failing notifier cannot announce that it fails; email does).

use std::time::Duration;

use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{AlarmStateChange, DeploymentStateChange};
use safeship::event::{DeploymentState, EventError, Inbound};
use safeship::guard::GuardEvent;
use safeship::guard::Outcome;
use safeship::idempotency::Once;
use safeship::policy::{Channel, Site};
use safeship::runtime::{accept, invocation_deadline, Common, Failure};
use serde_json::{json, Value};

pub mod deliver;
pub mod history;
pub mod message;
pub mod redact;
pub mod render;

pub use message::deployment_severity;

pub const FUNCTION: &str = "deploy-notify";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error("posting to Slack channel {channel}: {problem}")]
    Slack { channel: String, problem: String },
    #[error("{event}: {} of {total} channels failed: {}", failed.len(), failed.join("; "))]
    ChannelsFailed {
        event: String,
        total: usize,
        failed: Vec<String>,
    },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Slack { .. } => "Slack",
            Error::ChannelsFailed { .. } => "ChannelsFailed",
        }
    }
}

/// What the notifier announces.
enum Notifiable {
    Deployment(DeploymentStateChange),
    /// A service Amazon ECS deploys itself.
    EcsDeployment(safeship::event::EcsDeploymentStateChange),
    Guard(Box<GuardEvent>),
    /// One of safeship's own alarms (see [`Deps::own_alarm_prefix`]).
    OwnAlarm(AlarmStateChange),
}

pub struct Deps {
    pub common: Common,
    /// Set when the policy routes anything to Slack.
    pub slack: Option<deliver::Slack>,
    pub sns: aws_sdk_sns::Client,
    /// Set when the policy routes anything to email.
    pub email_topic: Option<String>,
    /// Why a deployment failed or stopped (`GetDeployment`'s error and rollback information).
    pub codedeploy: aws_sdk_codedeploy::Client,
    /// Time kept back from the Lambda deadline to record each channel's outcome and answer
    /// (`SAFESHIP_NOTIFY_MARGIN_MS`, default [`DEFAULT_MARGIN`]).
    pub margin: Duration,
    /// The names of safeship's own alarms begin with this (`SAFESHIP_OWN_ALARM_PREFIX`: the
    /// stack's name and a hyphen, as CloudFormation names them); unset, alarms are ignored.
    pub own_alarm_prefix: Option<String>,
    /// Where each guard event handled is recorded for `safeship status`
    /// (`SAFESHIP_GUARD_HISTORY_TABLE`); unset, none is.
    pub history: Option<GuardHistory>,
}

/// The guard-history table and its client.
pub struct GuardHistory {
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// The default of `SAFESHIP_NOTIFY_MARGIN_MS`.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(3);

/// `SAFESHIP_NOTIFY_MARGIN_MS`, in [`safeship::runtime::MARGIN_RANGE_MS`].
pub fn margin_from_env(env: &Env) -> Result<Duration, safeship::Error> {
    let default = u64::try_from(DEFAULT_MARGIN.as_millis()).unwrap_or(3_000);
    env.millis_in(
        "SAFESHIP_NOTIFY_MARGIN_MS",
        default,
        safeship::runtime::MARGIN_RANGE_MS,
    )
}

/// `SAFESHIP_OWN_ALARM_PREFIX`, when set (blank is unset: it would make every alarm "ours").
pub fn own_alarm_prefix_from_env(env: &Env) -> Result<Option<String>, safeship::Error> {
    Ok(env.optional("SAFESHIP_OWN_ALARM_PREFIX").map(str::to_owned))
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let margin = margin_from_env(env)?;
        let common = Common::load(FUNCTION, env).await?;
        let routes = &common.policy.notifications.routes;
        let routed = |c: Channel| routes.iter().any(|r| r.channel == c);
        let slack = if routed(Channel::Slack) {
            let arn = env.required("SAFESHIP_SLACK_WEBHOOK_SECRET_ARN")?;
            let client = safeship::tls::web_client(
                env,
                concat!("safeship-deploy-notify/", env!("CARGO_PKG_VERSION")),
            )?;
            Some(
                deliver::Slack::new(
                    client,
                    safeship::aws_client!(aws_sdk_secretsmanager, &common.sdk),
                    arn,
                    env.optional("SAFESHIP_SLACK_CHANNEL").unwrap_or("slack"),
                )
                .with_api(
                    env.optional("SAFESHIP_SLACK_API_URL")
                        .unwrap_or(deliver::SLACK_API),
                ),
            )
        } else {
            None
        };
        let email_topic = if routed(Channel::Email) {
            Some(env.required("SAFESHIP_EMAIL_TOPIC_ARN")?.to_owned())
        } else {
            None
        };
        let common_sdk = common.sdk.clone();
        Ok(Deps {
            sns: safeship::aws_client!(aws_sdk_sns, &common.sdk),
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, &common.sdk),
            common,
            slack,
            email_topic,
            margin,
            own_alarm_prefix: own_alarm_prefix_from_env(env)?,
            history: env
                .optional("SAFESHIP_GUARD_HISTORY_TABLE")
                .map(|table| GuardHistory {
                    ddb: safeship::aws_client!(aws_sdk_dynamodb, &common_sdk),
                    table: table.to_owned(),
                }),
        })
    }
}

/// The longest wait for CodeDeploy's reason; never more than a quarter of the time left.
const REASON_TIMEOUT: Duration = Duration::from_secs(5);

/// The event says only that a deployment failed or stopped; CodeDeploy's `GetDeployment` says why.
/// A notification is never held back for this: if the call fails or is slow, the message says so.
async fn add_deployment_reason(
    codedeploy: &aws_sdk_codedeploy::Client,
    deployment_id: &str,
    m: &mut message::Message,
    deadline: tokio::time::Instant,
) {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let wait = REASON_TIMEOUT.min(left / 4);
    let asked = tokio::time::timeout(
        wait,
        safeship::aws::codedeploy::get_deployment(codedeploy, deployment_id),
    )
    .await;
    match asked {
        Ok(Ok(info)) => {
            let (reason, details) = message::deployment_reason(&info);
            m.reason = reason;
            m.details.extend(details);
        }
        Ok(Err(e)) => {
            tracing::warn!(deployment = deployment_id, error = %e, "could not read why the deployment ended");
            m.details
                .push(format!("CodeDeploy's reason could not be read: {e}"));
        }
        Err(_) => {
            tracing::warn!(
                deployment = deployment_id,
                "CodeDeploy did not say in time why the deployment ended"
            );
            m.details.push(format!(
                "CodeDeploy's reason could not be read: codedeploy:GetDeployment on deployment {deployment_id} gave no answer within {:.1} s",
                wait.as_secs_f64()
            ));
        }
    }
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let accepted = match accept(FUNCTION, &event.payload, |e| match e {
        Inbound::DeploymentStateChange(d) => Some(Notifiable::Deployment(d)),
        Inbound::EcsDeploymentStateChange(d) => Some(Notifiable::EcsDeployment(d)),
        Inbound::Guard(g) => Some(Notifiable::Guard(g)),
        Inbound::AlarmStateChange(a) => Some(Notifiable::OwnAlarm(a)),
        _ => None,
    }) {
        Ok(accepted) => accepted.event,
        // Another EventBridge detail-type on the bus is not ours to announce: a log line, no error.
        Err(safeship::Error::Event(
            e @ (EventError::Unrecognised(_) | EventError::NotHandled { .. }),
        )) if event.payload.get("detail-type").is_some() => {
            tracing::info!(reason = %e, "not a notification: ignored");
            return Ok(json!({"ignored": e.to_string()}));
        }
        Err(e) => return Err(e.into()),
    };
    // A guard event of a kind a newer safeship writes: announcing it wrongly is worse than not.
    if let Notifiable::Guard(g) = &accepted {
        if g.outcome == Outcome::Unknown {
            tracing::warn!(guard_event = %g.id, version = g.version,
                "a guard event of a kind this notifier does not know: ignored");
            return Ok(
                json!({"ignored": format!("guard event {} is of a kind this notifier does not know", g.id)}),
            );
        }
    }
    // Only safeship's own alarms: any other alarm is the rollback's business, not a message.
    if let Notifiable::OwnAlarm(a) = &accepted {
        if !deps
            .own_alarm_prefix
            .as_deref()
            .is_some_and(|p| a.alarm_name.starts_with(p))
        {
            let why = match &deps.own_alarm_prefix {
                Some(p) => format!(
                    "alarm {} is not one of safeship's own (named {p}…)",
                    a.alarm_name
                ),
                None => format!(
                    "alarm {}: SAFESHIP_OWN_ALARM_PREFIX is not set, so no alarm is safeship's own",
                    a.alarm_name
                ),
            };
            tracing::info!(reason = %why, "not a notification: ignored");
            return Ok(json!({"ignored": why}));
        }
    }
    // Every channel is done by then, with the margin left to record its outcome and answer.
    let deadline = invocation_deadline(event.context.deadline, deps.margin);
    let region = deps
        .common
        .sdk
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
    let policy = &deps.common.policy;
    // Where the event happened: the hub's own account, or a member account of the policy (named
    // in the message); an account the policy does not know is not announced.
    let (account, event_region) = match &accepted {
        Notifiable::Deployment(d) => (d.account.as_deref(), d.region.as_deref()),
        Notifiable::EcsDeployment(d) => (Some(d.account.as_str()), Some(d.region.as_str())),
        Notifiable::Guard(g) => (g.account.as_deref(), g.region.as_deref()),
        Notifiable::OwnAlarm(_) => (None, None),
    };
    let site = match policy.site_of(&deps.common.hub, account, event_region) {
        Ok(site) => site,
        Err(why) => {
            tracing::info!(reason = %why, "not a notification: ignored");
            return Ok(json!({ "ignored": why }));
        }
    };
    let in_account = match &site {
        Site::Hub => None,
        Site::Member { place, account } => Some(match &account.alias {
            Some(alias) => format!("{alias} ({}), {}", place.account, place.region),
            None => format!("{}, {}", place.account, place.region),
        }),
    };
    let region = event_region.map_or(region, str::to_owned);
    let environment = |app: Option<&str>, group: Option<&str>| {
        app.zip(group)
            .and_then(|(a, g)| policy.group(a, g))
            .map(|g| format!("{:?}", g.policy.environment).to_lowercase())
    };
    let message = match &accepted {
        Notifiable::Deployment(d) => {
            let mut m = message::from_deployment(
                d,
                environment(Some(&d.application), Some(&d.deployment_group)).as_deref(),
                &region,
            );
            if matches!(d.state, DeploymentState::Failure | DeploymentState::Stop) {
                // Asked where the deployment is: a member account's, through its role.
                let codedeploy = match &site {
                    Site::Hub => deps.codedeploy.clone(),
                    Site::Member { .. } => safeship::aws_client!(
                        aws_sdk_codedeploy,
                        &deps.common.members.sdk_for(&site).await
                    ),
                };
                add_deployment_reason(&codedeploy, &d.deployment_id, &mut m, deadline).await;
            }
            m
        }
        Notifiable::EcsDeployment(d) => message::from_ecs_deployment(
            d,
            policy
                .ecs_service(&d.cluster, &d.service)
                .map(|s| format!("{:?}", s.policy.environment).to_lowercase())
                .as_deref(),
        ),
        Notifiable::Guard(g) => message::from_guard(
            g,
            environment(g.application.as_deref(), g.deployment_group.as_deref()).as_deref(),
            &region,
        ),
        Notifiable::OwnAlarm(a) => message::from_own_alarm(a, &region),
    };
    let mut message = message;
    message.account = in_account;
    // A second line of defence: nothing secret is posted, whatever the event carried.
    let message = redact::message(message);
    let mut routing = policy
        .notifications
        .route(message.application.as_deref(), message.severity);
    if matches!(accepted, Notifiable::OwnAlarm(_)) {
        // The alarm's own action emails the topic already: Slack only, never a second email.
        routing.channels.retain(|c| *c == Channel::Slack);
        if routing.channels.is_empty() && routing.dropped.is_none() {
            routing.dropped = Some(
                "safeship's own alarms go to email by their alarm action; no route sends this one to Slack"
                    .into(),
            );
        }
    }
    let what = render::summary(&message);
    if let Some(why) = &routing.dropped {
        tracing::warn!(%what, severity = ?message.severity, application = ?message.application,
            reason = %why, "no route takes this event: dropped");
        remember(deps, &accepted, &message, deadline).await?;
        return Ok(json!({
            "event": what,
            "severity": message.severity,
            "channels": [],
            "dropped": why,
            "preview": preview(&message),
        }));
    }
    let routed = routing.channels;
    // One notification per event: the same deployment state, or the same guard event, however
    // often and by whichever route it arrives.
    let event_key = match &accepted {
        Notifiable::Deployment(d) => {
            format!("{}:{}", d.deployment_id, message::state_name(d.state))
        }
        Notifiable::EcsDeployment(d) => format!(
            "ecs:{}/{}:{}:{}",
            d.cluster,
            d.service,
            d.deployment_id,
            if d.rolling_back {
                "ROLLING_BACK"
            } else {
                d.state.event_name()
            }
        ),
        Notifiable::Guard(g) => g.id.clone(),
        // One transition, by EventBridge or SNS or redelivered: its name, state and time.
        Notifiable::OwnAlarm(a) => format!(
            "alarm:{}:{}:{}",
            a.alarm_name,
            a.state.name(),
            a.state_changed_at.timestamp_millis()
        ),
    };
    // Each channel once, side by side: a slow Slack does not leave email no time.
    let outcomes = futures_util::future::join_all(routed.iter().map(|channel| {
        let key = format!("{event_key}:{channel:?}").to_lowercase();
        let message = &message;
        let event_key = &event_key;
        async move {
            let once = deps
                .common
                .idempotency
                .once_resuming(&key, |held| {
                    send(
                        deps,
                        *channel,
                        message,
                        event_key,
                        &key,
                        held.taken_over,
                        deadline,
                    )
                })
                .await;
            (*channel, once)
        }
    }))
    .await;
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    let mut elsewhere = Vec::new();
    // A duplicate only when every channel's message is recorded as sent by an earlier delivery.
    let mut duplicate = true;
    for (channel, once) in outcomes {
        match once {
            Ok(Once::Ran(detail)) => {
                duplicate = false;
                sent.push(json!({"channel": channel, "detail": detail}));
            }
            Ok(Once::AlreadyDone(_)) => {}
            Err(e) => {
                duplicate = false;
                tracing::error!(?channel, error = %e, "a channel failed");
                failed.push(e.to_string());
                if let Error::Safeship(held @ safeship::Error::InProgressElsewhere { .. }) = e {
                    elsewhere.push(held);
                }
            }
        }
    }
    tracing::info!(%what, severity = ?message.severity, ?routed, sent = sent.len(), duplicate, "notification handled");
    if !failed.is_empty() {
        // Only held by another live invocation: say so in the error's kind; Lambda retries.
        if elsewhere.len() == failed.len() {
            return Err(Error::Safeship(elsewhere.swap_remove(0)));
        }
        return Err(Error::ChannelsFailed {
            event: what,
            total: routed.len(),
            failed,
        });
    }
    remember(deps, &accepted, &message, deadline).await?;
    Ok(json!({
        "event": what,
        "severity": message.severity,
        "channels": routed,
        "sent": sent,
        "duplicate": duplicate,
        "preview": preview(&message),
    }))
}

/// Records a guard event in the history, once its channels are done: a failure fails the
/// invocation, and the retry (its channels recorded as sent) records it then.
async fn remember(
    deps: &Deps,
    accepted: &Notifiable,
    message: &message::Message,
    deadline: tokio::time::Instant,
) -> Result<(), Error> {
    let (Notifiable::Guard(g), Some(h)) = (accepted, &deps.history) else {
        return Ok(());
    };
    tokio::time::timeout_at(
        deadline,
        history::record(&h.ddb, &h.table, g, &message.headline),
    )
    .await
    .map_err(|_| {
        safeship::Error::unexpected(
            "dynamodb:PutItem",
            format!("guard history table {} (event {})", h.table, g.id),
            "no answer before the deadline",
        )
    })?
}

/// A test message to every configured channel (the CLI's `safeship notify test`), each channel
/// on its own: one that fails does not keep the other from being tried. Not once-only: asking
/// again sends again, which is the point of a test.
pub async fn send_test(
    deps: &Deps,
    requested_by: &str,
    deadline: tokio::time::Instant,
) -> Vec<(Channel, Result<String, Error>)> {
    let message = message::Message {
        severity: safeship::policy::Severity::Info,
        emoji: ":wave:",
        headline: "safeship test message".into(),
        application: None,
        deployment_group: None,
        deployment_id: None,
        environment: None,
        trigger: format!("safeship notify test, by {requested_by}"),
        reason: Some("If you can read this, safeship's notifications reach this channel.".into()),
        details: vec![],
        snapshot_id: None,
        account: None,
        links: vec![],
        dry_run: false,
    };
    let mut channels = Vec::new();
    if deps.slack.is_some() {
        channels.push(Channel::Slack);
    }
    if deps.email_topic.is_some() {
        channels.push(Channel::Email);
    }
    let message = &message;
    futures_util::future::join_all(channels.into_iter().map(|c| async move {
        (
            c,
            send(deps, c, message, "test", "test", false, deadline).await,
        )
    }))
    .await
}

/// What each channel shows (or would show) of the message.
fn preview(message: &message::Message) -> Value {
    json!({
        "slack": render::slack(message),
        "email": {"subject": render::email_subject(message), "body": render::email_body(message)},
    })
}

/// What a message sent again after a crash says first, where the channel cannot be read back
/// to see whether the delivery that died had sent it (SNS email, a Slack incoming webhook).
pub const MAYBE_REPEATED: &str =
    "(Sent again: the notifier was interrupted around sending this, and may have sent it already.)";

/// How far back a resumed delivery looks in the channel for the message it may have posted.
const LOOK_BACK: chrono::Duration = chrono::Duration::hours(6);

/// Whether the message of once-only `key` is already at `place` in the channel: its `ts` if so.
/// A channel that cannot be read back gets the message again, marked (`payload`).
async fn already_posted(
    slack: &deliver::Slack,
    key: &str,
    place: deliver::Placement<'_>,
    since: chrono::DateTime<chrono::Utc>,
    deadline: tokio::time::Instant,
    payload: &mut serde_json::Value,
) -> Result<Option<String>, Error> {
    match slack.find_posted(key, place, since, deadline).await? {
        deliver::Found::Posted(ts) => Ok(Some(ts)),
        deliver::Found::NotPosted => Ok(None),
        deliver::Found::CannotTell => {
            render::mark_repeated(payload, MAYBE_REPEATED);
            Ok(None)
        }
    }
}

/// Sends `message` (of the event `event_key`, once-only as `key`) on `channel`. `resumed`: a
/// delivery that died held `key` before, and may have sent the message: a Slack channel that can
/// be read back is looked at first; one that cannot (and email) sends again, saying so.
async fn send(
    deps: &Deps,
    channel: Channel,
    message: &message::Message,
    event_key: &str,
    key: &str,
    resumed: bool,
    deadline: tokio::time::Instant,
) -> Result<String, Error> {
    match channel {
        Channel::Slack => {
            let slack = deps.slack.as_ref().ok_or_else(|| {
                safeship::Error::config(
                    "SAFESHIP_SLACK_WEBHOOK_SECRET_ARN",
                    "is required when the policy routes to Slack",
                )
            })?;
            let since = chrono::Utc::now() - LOOK_BACK;
            let mut payload = render::slack(message);
            let attempt = |posted: &deliver::Posted| {
                if posted.attempts > 1 {
                    format!(" (attempt {})", posted.attempts)
                } else {
                    String::new()
                }
            };
            let found_earlier = |ts: &str| {
                format!(
                    "posted to {} (message {ts}) by a delivery that died before recording it",
                    slack.channel
                )
            };
            let deployment = match &message.deployment_id {
                Some(d) if slack.threads(deadline).await? => d,
                _ => {
                    if resumed {
                        if let Some(ts) = already_posted(
                            slack,
                            key,
                            deliver::Placement::Channel,
                            since,
                            deadline,
                            &mut payload,
                        )
                        .await?
                        {
                            return Ok(found_earlier(&ts));
                        }
                    }
                    let posted = slack
                        .post(&payload, deliver::Placement::Channel, key, deadline)
                        .await?;
                    return Ok(format!("posted to {}{}", slack.channel, attempt(&posted)));
                }
            };
            // A deployment's first message opens its thread; the rest reply in it, so an
            // incident reads as one story in the channel. Failures are also shown in the channel.
            // The thread's record names the event that opened it: a retry of that event (its
            // post done, its own record not) is not posted again as a reply; one whose opening
            // post may be done (a delivery died holding the thread) looks for it first.
            let mut opened = None;
            let thread = deps
                .common
                .idempotency
                .once_resuming(&format!("thread:{deployment}:slack"), |thread_held| {
                    let payload = &payload;
                    let opened = &mut opened;
                    async move {
                        if thread_held.taken_over || resumed {
                            let mut unused = payload.clone();
                            if let Some(ts) = already_posted(
                                slack,
                                key,
                                deliver::Placement::Channel,
                                since,
                                deadline,
                                &mut unused,
                            )
                            .await?
                            {
                                return Ok::<_, Error>(json!({"ts": ts, "event": event_key}));
                            }
                        }
                        let posted = slack
                            .post(payload, deliver::Placement::Channel, key, deadline)
                            .await?;
                        let record = json!({"ts": posted.ts, "event": event_key});
                        *opened = Some(posted);
                        Ok(record)
                    }
                })
                .await?;
            let parent = match thread {
                Once::Ran(record) => {
                    return Ok(match opened {
                        Some(posted) => format!(
                            "posted to {}, opening deployment {deployment}'s thread{}",
                            slack.channel,
                            attempt(&posted)
                        ),
                        None => found_earlier(record["ts"].as_str().unwrap_or("?")),
                    });
                }
                Once::AlreadyDone(record) if record["event"] == event_key => {
                    return Ok(format!(
                        "posted to {} as deployment {deployment}'s first message by an earlier delivery",
                        slack.channel
                    ))
                }
                Once::AlreadyDone(record) => record["ts"].as_str().map(str::to_owned),
            };
            let place = match &parent {
                Some(ts) => deliver::Placement::Reply {
                    ts,
                    broadcast: message.severity >= safeship::policy::Severity::Failure,
                },
                None => deliver::Placement::Channel,
            };
            if resumed {
                if let Some(ts) =
                    already_posted(slack, key, place, since, deadline, &mut payload).await?
                {
                    return Ok(found_earlier(&ts));
                }
            }
            let posted = slack.post(&payload, place, key, deadline).await?;
            Ok(format!(
                "posted to {}{}{}",
                slack.channel,
                match place {
                    deliver::Placement::Reply {
                        broadcast: true, ..
                    } => format!(" in deployment {deployment}'s thread, and to the channel"),
                    deliver::Placement::Reply { .. } =>
                        format!(" in deployment {deployment}'s thread"),
                    deliver::Placement::Channel => String::new(),
                },
                attempt(&posted)
            ))
        }
        Channel::Email => {
            let topic = deps.email_topic.as_deref().ok_or_else(|| {
                safeship::Error::config(
                    "SAFESHIP_EMAIL_TOPIC_ARN",
                    "is required when the policy routes to email",
                )
            })?;
            // SNS keeps no record a retry could read: a resumed delivery sends again, saying so.
            let mut body = render::email_body(message);
            if resumed {
                body = format!("{MAYBE_REPEATED}\n\n{body}");
            }
            let id = deliver::email(
                &deps.sns,
                topic,
                &render::email_subject(message),
                &body,
                deadline,
            )
            .await?;
            Ok(if resumed {
                format!("published as SNS message {id}, marked as maybe repeated")
            } else {
                format!("published as SNS message {id}")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_bounded_and_named() {
        assert_eq!(
            margin_from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            DEFAULT_MARGIN
        );
        let err = margin_from_env(&Env::from_pairs([("SAFESHIP_NOTIFY_MARGIN_MS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SAFESHIP_NOTIFY_MARGIN_MS"), "{err}");
    }

    #[test]
    fn a_blank_own_alarm_prefix_takes_no_alarm_for_safeships() {
        let blank =
            own_alarm_prefix_from_env(&Env::from_pairs([("SAFESHIP_OWN_ALARM_PREFIX", " ")]));
        assert_eq!(blank.unwrap(), None);
        assert_eq!(
            own_alarm_prefix_from_env(&Env::from_pairs([("SAFESHIP_OWN_ALARM_PREFIX", "s-")]))
                .unwrap(),
            Some("s-".into())
        );
    }
}
