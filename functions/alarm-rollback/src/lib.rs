//! Alarm-to-rollback: a CloudWatch alarm going to `ALARM` undoes the change that caused it — the
//! group's deployment in flight is stopped with rollback, or a deployment that succeeded within
//! the bake window is reverted to the revision before it — and switches the mapped feature flags
//! off, each step once however often the transition is delivered.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::Utc;
use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{AlarmState, AlarmStateChange, EventError, Inbound};
use safeship::guard::{ActionResult, AlarmSummary, Guard, GuardEvent, Outcome};
use safeship::idempotency::Once;
use safeship::policy::{AlarmMatcher, FeatureFlagTarget, GroupRef, Policy};
use safeship::runtime::{accept, Common, Failure};
use serde::Serialize;
use serde_json::Value;

pub mod appconfig;
pub mod codedeploy;
pub mod flags;
pub mod plan;

use plan::CodePlan;

pub const FUNCTION: &str = "alarm-rollback";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Safeship(#[from] safeship::Error),
    #[error(transparent)]
    Event(#[from] EventError),
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
            Error::Event(e) => e.kind(),
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

/// What an alarm transition asks of us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Nothing to do, and why.
    Ignore { reason: String },
    /// Roll back these `application/deployment-group`s.
    RollBack { groups: Vec<String> },
}

/// Which groups an alarm transition rolls back. `alarm_tags` are the alarm's tags where looked up.
pub fn decide(
    policy: &Policy,
    alarm: &AlarmStateChange,
    alarm_tags: &BTreeMap<String, String>,
) -> Decision {
    let mapped: Vec<_> = policy
        .groups_for_alarm(&alarm.alarm_name, alarm_tags)
        .collect();
    if mapped.is_empty() {
        return Decision::Ignore {
            reason: format!(
                "alarm {} is mapped to no deployment group",
                alarm.alarm_name
            ),
        };
    }
    let acting: Vec<String> = mapped
        .iter()
        .filter(|g| match alarm.state {
            AlarmState::Alarm => true,
            AlarmState::InsufficientData => g
                .policy
                .rollback
                .as_ref()
                .is_some_and(|r| r.act_on_insufficient_data),
            AlarmState::Ok => false,
        })
        .map(|g| format!("{}/{}", g.application, g.deployment_group))
        .collect();
    if acting.is_empty() {
        Decision::Ignore {
            reason: format!(
                "alarm {} went to {:?}, which rolls nothing back",
                alarm.alarm_name, alarm.state
            ),
        }
    } else {
        Decision::RollBack { groups: acting }
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
    let tags = alarm_tags(deps, alarm).await?;
    let policy = &deps.common.policy;
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
        if !groups.contains(&format!("{}/{}", group.application, group.deployment_group)) {
            continue;
        }
        let rollback = group
            .policy
            .rollback
            .as_ref()
            .expect("mapped groups have a rollback section");
        let dry_run = deps.common.config.dry_run || rollback.dry_run;
        report.dry_run |= dry_run;
        let done = roll_back_group(deps, alarm, &transition, &group, dry_run).await;
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
            publish(deps, event).await;
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

/// The alarm's tags, looked up only when the policy maps some alarm by tag.
async fn alarm_tags(
    deps: &Deps,
    alarm: &AlarmStateChange,
) -> Result<BTreeMap<String, String>, Error> {
    let by_tag = deps.common.policy.groups().any(|g| {
        g.policy.rollback.as_ref().is_some_and(|r| {
            r.alarms
                .iter()
                .any(|m| matches!(m, AlarmMatcher::Tag { .. }))
        })
    });
    let (true, Some(arn)) = (by_tag, alarm.alarm_arn.as_deref()) else {
        return Ok(BTreeMap::new());
    };
    let out = match deps
        .cloudwatch
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
    {
        // Deleted since it fired: it still counts by name and prefix.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            tracing::warn!(alarm = %arn, "the alarm no longer exists: matching it without tags");
            return Ok(BTreeMap::new());
        }
        other => other,
    }
    .map_err(|e| {
        safeship::Error::aws("cloudwatch:ListTagsForResource", format!("alarm {arn}"), e)
    })?;
    Ok(out
        .tags
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| Some((t.key?, t.value?)))
        .collect())
}

/// One step's result, and whether it ran in this invocation (not an earlier delivery's).
struct Step {
    result: ActionResult,
    ran: bool,
}

/// What rolling one group back did: its steps, whether anything was done (or decided) in this
/// invocation, and the guard events that tell people.
struct GroupOutcome {
    steps: Vec<Step>,
    ran: bool,
    events: Vec<GuardEvent>,
}

async fn roll_back_group(
    deps: &Deps,
    alarm: &AlarmStateChange,
    transition: &str,
    group: &GroupRef<'_>,
    dry_run: bool,
) -> GroupOutcome {
    let rollback = group
        .policy
        .rollback
        .as_ref()
        .expect("mapped groups have a rollback section");
    let name = format!("{}/{}", group.application, group.deployment_group);
    let summary = summary(alarm);

    // The plan is stored before it is carried out: a retry carries out the same plan.
    let bake_window = chrono::Duration::minutes(i64::from(rollback.bake_window_minutes));
    let compute = || async {
        let in_flight =
            codedeploy::in_flight(&deps.codedeploy, group.application, group.deployment_group)
                .await?;
        let succeeded = if in_flight.is_empty() {
            codedeploy::succeeded(&deps.codedeploy, group.application, group.deployment_group)
                .await?
        } else {
            vec![]
        };
        Ok::<_, Error>(plan::plan_code(
            &in_flight,
            &succeeded,
            alarm.state_changed_at,
            bake_window,
        ))
    };
    let plan = if dry_run {
        compute().await.map(Once::Ran)
    } else {
        once(deps, format!("{transition}:plan:{name}"), compute).await
    };
    // The code's steps and the flags' steps are kept apart: the guard events tell each.
    let mut code_steps = Vec::new();
    let mut planned_now = false;
    let mut nothing = None;
    // The deployment the guard events link to: the one stopped (the first of several; the
    // actions name all) or reverted.
    let mut deployment_id = None;
    match plan {
        Err(e) => code_steps.push(failed_step(&format!("plan rollback of {name}"), &e)),
        Ok(Once::InProgressElsewhere) => {}
        Ok(once_plan) => {
            let (plan, now) = match once_plan {
                Once::Ran(p) => (p, true),
                Once::AlreadyDone(p) => (p, false),
                Once::InProgressElsewhere => unreachable!("matched above"),
            };
            planned_now = now;
            match plan {
                CodePlan::Nothing { reason } => {
                    tracing::info!(group = %name, %reason, "nothing to roll back");
                    nothing = Some(reason);
                }
                CodePlan::Stop { deployments } => {
                    deployment_id = deployments.first().cloned();
                    for id in deployments {
                        let action = format!("stop-deployment {id} (with rollback)");
                        code_steps.push(if dry_run {
                            dry(&action)
                        } else {
                            run_step(deps, format!("{transition}:stop:{id}"), &action, || {
                                codedeploy::stop(&deps.codedeploy, &id)
                            })
                            .await
                        });
                    }
                }
                CodePlan::Redeploy {
                    reverted,
                    revision_of,
                } => {
                    deployment_id = Some(reverted.clone());
                    let action =
                        format!("redeploy the revision of {revision_of}, reverting {reverted}");
                    code_steps.push(if dry_run {
                        dry(&action)
                    } else {
                        run_step(
                            deps,
                            format!("{transition}:redeploy:{name}"),
                            &action,
                            || async {
                                let id = codedeploy::redeploy(
                                    &deps.codedeploy,
                                    group.application,
                                    group.deployment_group,
                                    &reverted,
                                    &revision_of,
                                    &alarm.alarm_name,
                                )
                                .await?;
                                Ok(format!("created deployment {id}"))
                            },
                        )
                        .await
                    });
                }
            }
        }
    }

    // One event per outcome and group, and per flag target: its id is stable for the decision
    // and unique within the transition, so the notifier drops only true re-publications.
    let event = |outcome: Outcome, target: Option<&str>| GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: match target {
            Some(target) => format!("{FUNCTION}:{transition}:{name}:{}:{target}", outcome.kind()),
            None => format!("{FUNCTION}:{transition}:{name}:{}", outcome.kind()),
        },
        time: Utc::now(),
        guard: Guard::AlarmRollback,
        application: Some(group.application.to_owned()),
        deployment_group: Some(group.deployment_group.to_owned()),
        deployment_id: deployment_id.clone(),
        dry_run,
        outcome,
    };

    let mut flag_steps = Vec::new();
    let mut flag_events = Vec::new();
    for target in &rollback.feature_flags {
        let (step, switched) = switch_flags(deps, alarm, transition, target, dry_run).await;
        if let Some((flags, version)) = switched {
            let profile = format!(
                "{}/{}/{}",
                target.application, target.environment, target.profile
            );
            flag_events.push(event(
                Outcome::FlagsSwitchedOff {
                    alarm: summary.clone(),
                    profile: profile.clone(),
                    flags,
                    version,
                },
                Some(&profile),
            ));
        }
        flag_steps.push(step);
    }

    let acted = code_steps.iter().chain(&flag_steps).any(|s| s.ran);
    let tell = acted || planned_now || dry_run;
    let mut events = Vec::new();
    if tell {
        // The code's outcome always reaches people: why it was left alone, or what was done.
        if let Some(reason) = &nothing {
            events.push(event(
                Outcome::NothingToRollBack {
                    alarm: summary.clone(),
                    reason: reason.clone(),
                },
                None,
            ));
        }
    }
    events.extend(flag_events);
    let flag_failed = flag_steps.iter().any(|s| !s.result.succeeded);
    let mut steps = code_steps;
    let code_acted = !steps.is_empty();
    steps.extend(flag_steps);
    // `rollback-performed` when code was stopped or reverted (every action, flags included), or
    // when a flag switch failed: a failure is never left out of the guard events.
    if tell && (code_acted || flag_failed) {
        events.push(event(
            Outcome::RollbackPerformed {
                alarm: summary,
                actions: steps.iter().map(|s| s.result.clone()).collect(),
            },
            None,
        ));
    }
    // Not an action, but the report says why the code was left alone.
    if let Some(reason) = nothing {
        steps.insert(
            0,
            Step {
                result: ActionResult {
                    action: format!("roll back {name}"),
                    succeeded: true,
                    detail: Some(format!("nothing to roll back: {reason}")),
                },
                ran: false,
            },
        );
    }
    GroupOutcome {
        steps,
        ran: acted || planned_now,
        events,
    }
}

async fn switch_flags(
    deps: &Deps,
    alarm: &AlarmStateChange,
    transition: &str,
    target: &FeatureFlagTarget,
    dry_run: bool,
) -> (Step, Option<(Vec<String>, Option<i32>)>) {
    let where_ = format!(
        "{}/{}/{}",
        target.application, target.environment, target.profile
    );
    let action = format!("flags off {where_}: {}", target.flags.join(", "));
    if dry_run {
        return match appconfig::read_switch(&deps.appconfig, target).await {
            Ok((version, switch)) => (
                Step {
                    result: ActionResult {
                        action,
                        succeeded: true,
                        detail: Some(format!(
                            "dry run: would switch off [{}] from version {version}; already off [{}]",
                            switch.switched_off.join(", "),
                            switch.already_off.join(", ")
                        )),
                    },
                    ran: false,
                },
                None,
            ),
            Err(e) => (failed_step(&action, &e), None),
        };
    }
    let description = format!("safeship: alarm {} switched flags off", alarm.alarm_name);
    let work = || async {
        let (version, switch) = appconfig::read_switch(&deps.appconfig, target).await?;
        let Some(document) = &switch.document else {
            return Ok((
                switch.switched_off,
                None,
                format!("already off in version {version}: nothing deployed"),
            ));
        };
        let (new_version, deployment) =
            appconfig::write_and_deploy(&deps.appconfig, target, version, document, &description)
                .await?;
        Ok((
            switch.switched_off,
            Some(new_version),
            format!("version {new_version} (from {version}) deployed as deployment {deployment}"),
        ))
    };
    match once(deps, format!("{transition}:flags:{where_}"), work).await {
        Ok(Once::Ran((flags, version, detail))) => {
            let switched = (!flags.is_empty()).then_some((flags, version));
            (
                Step {
                    result: ActionResult {
                        action,
                        succeeded: true,
                        detail: Some(detail),
                    },
                    ran: true,
                },
                switched,
            )
        }
        Ok(Once::AlreadyDone((_, _, detail))) => (
            Step {
                result: ActionResult {
                    action,
                    succeeded: true,
                    detail: Some(format!("{detail} (by an earlier delivery)")),
                },
                ran: false,
            },
            None,
        ),
        Ok(Once::InProgressElsewhere) => (in_progress(&action), None),
        Err(e) => (failed_step(&action, &e), None),
    }
}

/// A mutating step, once per key.
async fn run_step<F, Fut>(deps: &Deps, key: String, action: &str, work: F) -> Step
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, Error>>,
{
    match once(deps, key, work).await {
        Ok(Once::Ran(detail)) => Step {
            result: ActionResult {
                action: action.to_owned(),
                succeeded: true,
                detail: Some(detail),
            },
            ran: true,
        },
        Ok(Once::AlreadyDone(detail)) => Step {
            result: ActionResult {
                action: action.to_owned(),
                succeeded: true,
                detail: Some(format!("{detail} (by an earlier delivery)")),
            },
            ran: false,
        },
        Ok(Once::InProgressElsewhere) => in_progress(action),
        Err(e) => failed_step(action, &e),
    }
}

async fn once<T, F, Fut>(deps: &Deps, key: String, work: F) -> Result<Once<T>, Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    deps.common.idempotency.once(&key, work).await
}

fn dry(action: &str) -> Step {
    Step {
        result: ActionResult {
            action: action.to_owned(),
            succeeded: true,
            detail: Some("dry run: not performed".into()),
        },
        ran: false,
    }
}

fn in_progress(action: &str) -> Step {
    Step {
        result: ActionResult {
            action: action.to_owned(),
            succeeded: true,
            detail: Some("another delivery of this transition is carrying it out".into()),
        },
        ran: false,
    }
}

fn failed_step(action: &str, error: &Error) -> Step {
    tracing::error!(action, error = %error, "rollback action failed");
    Step {
        result: ActionResult {
            action: action.to_owned(),
            succeeded: false,
            detail: Some(error.to_string()),
        },
        ran: false,
    }
}

fn summary(alarm: &AlarmStateChange) -> AlarmSummary {
    AlarmSummary {
        name: alarm.alarm_name.clone(),
        arn: alarm.alarm_arn.clone(),
        kind: alarm.kind,
        state: alarm.state,
        reason: alarm.reason.clone(),
        state_changed_at: alarm.state_changed_at,
    }
}

/// Guard events are news for people; failing to publish one is logged, never a second rollback.
async fn publish(deps: &Deps, event: GuardEvent) {
    if let Err(e) = deps.common.guard.publish(&event).await {
        tracing::error!(error = %e, id = %event.id, "could not publish a guard event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::event::{normalise, AlarmKind};

    const POLICY: &str = include_str!("../../../examples/policy.yaml");

    fn alarm(name: &str, state: AlarmState) -> AlarmStateChange {
        AlarmStateChange {
            alarm_name: name.into(),
            alarm_arn: None,
            account: None,
            region: None,
            kind: AlarmKind::Metric,
            state,
            previous_state: None,
            reason: String::new(),
            state_changed_at: chrono_now(),
        }
    }

    fn chrono_now() -> safeship::event::DateTimeUtc {
        safeship::event::parse_time("t", "t", "2026-11-20T10:00:00Z").unwrap()
    }

    #[test]
    fn alarm_state_rolls_back_the_mapped_group() {
        let p = Policy::parse(POLICY, "example").unwrap();
        assert_eq!(
            decide(
                &p,
                &alarm("checkout-prod-5xx-rate", AlarmState::Alarm),
                &BTreeMap::new()
            ),
            Decision::RollBack {
                groups: vec!["checkout/checkout-prod".into()]
            }
        );
    }

    #[test]
    fn ok_insufficient_data_and_unmapped_are_ignored() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let none = BTreeMap::new();
        assert!(matches!(
            decide(&p, &alarm("checkout-prod-5xx-rate", AlarmState::Ok), &none),
            Decision::Ignore { .. }
        ));
        assert!(matches!(
            decide(
                &p,
                &alarm("checkout-prod-5xx-rate", AlarmState::InsufficientData),
                &none
            ),
            Decision::Ignore { .. }
        ));
        let Decision::Ignore { reason } =
            decide(&p, &alarm("billing-errors", AlarmState::Alarm), &none)
        else {
            panic!("unmapped alarm acted on")
        };
        assert!(reason.contains("mapped to no deployment group"), "{reason}");
    }

    #[test]
    fn sample_events_decide_as_expected() {
        let p = Policy::parse(POLICY, "example").unwrap();
        let raw = include_str!("../../../events/alarm-eventbridge-metric.json");
        let Inbound::AlarmStateChange(a) = normalise(&serde_json::from_str(raw).unwrap())
            .unwrap()
            .event
        else {
            panic!("not an alarm")
        };
        assert!(matches!(
            decide(&p, &a, &BTreeMap::new()),
            Decision::RollBack { .. }
        ));
    }
}
