//! Alarm-to-rollback: a CloudWatch alarm going to `ALARM` undoes the change that caused it — the
//! group's deployment in flight is stopped with rollback, or a deployment that succeeded within
//! the bake window is reverted to the revision before it — and switches the mapped feature flags
//! off, each step once however often the transition is delivered.

use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{AlarmStateChange, Inbound};
use safeship::guard::ActionResult;
use safeship::runtime::{accept, Common, Failure};
use serde::Serialize;
use serde_json::Value;

mod appconfig;
mod cloudwatch;
mod codedeploy;
mod decide;
mod events;
mod flags;
mod plan;
mod rollback;
mod steps;

pub use decide::Decision;

use decide::{decide, group_name};

pub const FUNCTION: &str = "alarm-rollback";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error("switching flags off in {profile}: the configuration {problem}")]
    Flags { profile: String, problem: String },
    /// Some actions failed; the others were carried out. A retry redoes only the failed ones.
    #[error("alarm {alarm}: {} of {total} rollback actions failed: {}", failed.len(), failed.join("; "))]
    ActionsFailed {
        alarm: String,
        total: usize,
        failed: Vec<String>,
    },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Flags { .. } => "Flags",
            Error::ActionsFailed { .. } => "ActionsFailed",
        }
    }
}

pub struct Deps {
    pub common: Common,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub appconfig: aws_sdk_appconfig::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let common = Common::load(FUNCTION, env).await?;
        Ok(Deps {
            codedeploy: aws_sdk_codedeploy::Client::new(&common.sdk),
            appconfig: aws_sdk_appconfig::Client::new(&common.sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&common.sdk),
            common,
        })
    }
}

/// What the invocation returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RollbackReport {
    pub alarm: String,
    pub transition: String,
    pub outcome: Decision,
    pub dry_run: bool,
    pub actions: Vec<ActionResult>,
    /// Every step had been done by an earlier delivery of this transition: nothing was done now.
    pub duplicate: bool,
}

pub async fn handler(deps: &Deps, event: LambdaEvent<Value>) -> Result<RollbackReport, Error> {
    let alarm = accept(FUNCTION, &event.payload, |e| match e {
        Inbound::AlarmStateChange(alarm) => Some(alarm),
        _ => None,
    })?
    .event;
    handle_alarm(deps, &alarm).await
}

/// One alarm transition: decide, then carry out each group's rollback and flag switch once.
pub async fn handle_alarm(deps: &Deps, alarm: &AlarmStateChange) -> Result<RollbackReport, Error> {
    let policy = &deps.common.policy;
    let tags = cloudwatch::alarm_tags(&deps.cloudwatch, policy, alarm).await?;
    let decision = decide(policy, alarm, &tags);
    let transition = alarm.transition_key();
    tracing::info!(alarm = %alarm.alarm_name, %transition, ?decision, "alarm evaluated");
    let mut report = RollbackReport {
        alarm: alarm.alarm_name.clone(),
        transition: transition.clone(),
        outcome: decision.clone(),
        dry_run: false,
        actions: vec![],
        duplicate: false,
    };
    let Decision::RollBack { groups } = &decision else {
        return Ok(report);
    };
    let mut ran_any = false;
    let mut steps = 0;
    let mut failed = Vec::new();
    for group in policy.groups_for_alarm(&alarm.alarm_name, &tags) {
        if !groups.contains(&group_name(&group)) {
            continue;
        }
        let settings = group
            .policy
            .rollback
            .as_ref()
            .expect("mapped groups have a rollback section");
        let dry_run = deps.common.config.dry_run || settings.dry_run;
        report.dry_run |= dry_run;
        let done = rollback::roll_back_group(deps, alarm, &transition, &group, dry_run).await;
        ran_any |= done.ran;
        for step in done.steps {
            steps += 1;
            if !step.result.succeeded {
                failed.push(format!(
                    "{}: {}",
                    step.result.action,
                    step.result.detail.clone().unwrap_or_default()
                ));
            }
            report.actions.push(step.result);
        }
        for event in done.events {
            events::publish(deps, event).await;
        }
    }
    report.duplicate = steps > 0 && !ran_any && !report.dry_run && failed.is_empty();
    if report.duplicate {
        tracing::info!(%transition, "duplicate delivery: every step was done by an earlier delivery");
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(Error::ActionsFailed {
            alarm: alarm.alarm_name.clone(),
            total: report.actions.len(),
            failed,
        })
    }
}
