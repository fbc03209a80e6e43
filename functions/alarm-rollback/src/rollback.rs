//! Rolling one deployment group back: plan the code rollback (stored before it is carried out,
//! so a retry carries out the same plan), carry out the stop or the redeploy, and switch the
//! mapped feature flags off — each step once however often the transition is delivered.

use safeship::event::AlarmStateChange;
use safeship::idempotency::Once;
use safeship::policy::{Deployer, FeatureFlagTarget, GroupRef, RollbackPolicy};

use crate::decide::group_name;
use crate::events::{Announcement, GroupEvents};
use crate::plan::{self, CodePlan};
use crate::steps::{once, run_step, Step};
use crate::{appconfig, codedeploy, ecs, Deps, Error};

/// What rolling one group back did: its steps, whether anything was done (or decided) in this
/// invocation, and the guard events that tell people.
pub(crate) struct GroupOutcome {
    pub(crate) steps: Vec<Step>,
    pub(crate) ran: bool,
    pub(crate) events: Vec<Announcement>,
}

/// One group's rollback in one transition: what each of its steps needs.
struct Ctx<'a> {
    deps: &'a Deps,
    alarm: &'a AlarmStateChange,
    transition: &'a str,
    group: &'a GroupRef<'a>,
    /// `application/deployment-group`.
    name: String,
    dry_run: bool,
}

/// What the code side of a group's rollback came to.
struct CodeOutcome {
    steps: Vec<Step>,
    /// The plan was made in this invocation, not read back from an earlier delivery's.
    planned_now: bool,
    /// Why the code was left alone, when the plan is to do nothing.
    nothing: Option<String>,
    /// The deployment stopped (the first of several) or reverted.
    deployment_id: Option<String>,
}

/// Flags switched off in a new version of their profile.
struct SwitchedOff {
    flags: Vec<String>,
    version: Option<i32>,
}

pub(crate) async fn roll_back_group(
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
    let cx = Ctx {
        deps,
        alarm,
        transition,
        group,
        name: group_name(group),
        dry_run,
    };
    // The code's steps and the flags' steps are kept apart: the guard events tell each. They
    // run side by side, so a slow or hanging CodeDeploy never keeps the flags on (nor a slow
    // AppConfig the code).
    let (code, (flag_steps, switched)) = tokio::join!(
        roll_back_code(&cx, rollback),
        switch_all_flags(&cx, rollback)
    );
    let events = GroupEvents::new(
        alarm,
        transition,
        &cx.name,
        group,
        code.deployment_id.clone(),
        dry_run,
    );
    let flag_events = switched
        .into_iter()
        .map(|(profile, SwitchedOff { flags, version })| {
            events.flags_switched_off(profile, flags, version)
        })
        .collect();
    conclude(&cx, code, flag_steps, flag_events, &events)
}

/// The group's steps (code, then flags) and the guard events that tell them. Each event is
/// published once per id (see [`crate::events::announce`]), so a repeated delivery computes the
/// same events and publishes none again, and a retry after a failed publication publishes it.
fn conclude(
    cx: &Ctx<'_>,
    code: CodeOutcome,
    flag_steps: Vec<Step>,
    flag_events: Vec<Announcement>,
    events: &GroupEvents<'_>,
) -> GroupOutcome {
    let acted = code.steps.iter().chain(&flag_steps).any(|s| s.ran);
    let held_elsewhere = code
        .steps
        .iter()
        .chain(&flag_steps)
        .any(|s| s.held_elsewhere);
    let flag_failed = flag_steps.iter().any(|s| !s.result.succeeded);
    let code_acted = !code.steps.is_empty();
    let mut steps = code.steps;
    steps.extend(flag_steps);
    let mut announcements = Vec::new();
    // The code's outcome always reaches people: why it was left alone, or what was done.
    if let Some(reason) = code.nothing.as_deref() {
        announcements.push(events.nothing(reason));
    }
    announcements.extend(flag_events);
    // `rollback-performed` when code was stopped or reverted (every action, flags included), or
    // when a flag switch failed: a failure is never left out of the guard events. Not while
    // another live invocation holds a step: that one tells what it did.
    if (code_acted || flag_failed) && !held_elsewhere {
        announcements.push(events.performed(steps.iter().map(|s| s.result.clone()).collect()));
    }
    // Not an action, but the report says why the code was left alone.
    if let Some(reason) = code.nothing {
        steps.insert(
            0,
            Step::not_run(
                &format!("roll back {}", cx.name),
                format!("nothing to roll back: {reason}"),
            ),
        );
    }
    GroupOutcome {
        steps,
        ran: acted || code.planned_now,
        events: announcements,
    }
}

/// The code rollback the group's deployments call for; stored (unless a dry run) before it is
/// carried out.
async fn plan_code(cx: &Ctx<'_>, rollback: &RollbackPolicy) -> Result<Once<CodePlan>, Error> {
    let bake_window = chrono::Duration::minutes(i64::from(rollback.bake_window_minutes));
    let (client, application, group) = (
        &cx.deps.codedeploy,
        cx.group.application,
        cx.group.deployment_group,
    );
    let compute = || async {
        if cx.group.deployer == Deployer::Ecs {
            let at = cx.alarm.state_changed_at;
            let (mut ongoing, mut succeeded) = tokio::try_join!(
                ecs::ongoing(&cx.deps.ecs, application, group),
                ecs::succeeded(
                    &cx.deps.ecs,
                    application,
                    group,
                    at - bake_window - ecs::LONGEST_DEPLOYMENT
                )
            )?;
            let wanted = ecs::to_describe(&ongoing, &succeeded, at, bake_window);
            let mut all: Vec<&mut ecs::ServiceDeployment> =
                ongoing.iter_mut().chain(succeeded.iter_mut()).collect();
            ecs::describe(&cx.deps.ecs, &wanted, &mut all).await?;
            return Ok::<_, Error>(ecs::plan(&ongoing, &succeeded, at, bake_window));
        }
        let in_flight = codedeploy::in_flight(client, application, group).await?;
        let succeeded = if in_flight.is_empty() {
            codedeploy::succeeded(
                client,
                application,
                group,
                cx.alarm.state_changed_at,
                bake_window,
            )
            .await?
        } else {
            vec![]
        };
        Ok::<_, Error>(plan::plan_code(
            &in_flight,
            &succeeded,
            cx.alarm.state_changed_at,
            bake_window,
        ))
    };
    if cx.dry_run {
        compute().await.map(Once::Ran)
    } else {
        let key = format!("{}:plan:{}", cx.transition, cx.name);
        once(cx.deps, key, compute).await
    }
}

/// Plans the code rollback and carries it out: stop what is in flight, or redeploy.
async fn roll_back_code(cx: &Ctx<'_>, rollback: &RollbackPolicy) -> CodeOutcome {
    let mut code = CodeOutcome {
        steps: Vec::new(),
        planned_now: false,
        nothing: None,
        deployment_id: None,
    };
    let (plan, planned_now) = match plan_code(cx, rollback).await {
        Err(e) => {
            let action = format!("plan rollback of {}", cx.name);
            code.steps.push(Step::failed(&action, &e));
            return code;
        }
        Ok(Once::Ran(plan)) => (plan, true),
        Ok(Once::AlreadyDone(plan)) => (plan, false),
    };
    code.planned_now = planned_now;
    match plan {
        CodePlan::Nothing { reason } => {
            tracing::info!(group = %cx.name, %reason, "nothing to roll back");
            code.nothing = Some(reason);
        }
        CodePlan::Stop { deployments } => {
            code.deployment_id = deployments.first().cloned();
            code.steps = stop(cx, deployments.clone()).await;
            if let Some(step) = revert_what_finished(cx, rollback, &deployments, &code.steps).await
            {
                code.steps.push(step);
            }
        }
        CodePlan::Redeploy {
            reverted,
            revision_of,
        } => {
            code.steps.push(redeploy(cx, &reverted, &revision_of).await);
            code.deployment_id = Some(reverted);
        }
        CodePlan::RevertService {
            reverted,
            task_definition,
        } => {
            code.steps
                .push(revert_service(cx, &reverted, &task_definition).await);
            code.deployment_id = Some(reverted);
        }
    }
    code
}

/// A deployment planned to be stopped may have completed before its stop: if it *succeeded*,
/// the change the alarm blames is live, so the group is planned again as if nothing were in
/// flight, and a success inside the bake window that is one of those deployments is reverted
/// (its revert once-only like any other). One that failed or stopped needs nothing more.
async fn revert_what_finished(
    cx: &Ctx<'_>,
    rollback: &RollbackPolicy,
    deployments: &[String],
    steps: &[Step],
) -> Option<Step> {
    let finished: Vec<&String> = deployments
        .iter()
        .zip(steps)
        .filter(|(_, s)| {
            s.result.succeeded
                && s.result
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(codedeploy::ALREADY_COMPLETED))
        })
        .map(|(d, _)| d)
        .collect();
    if finished.is_empty() || cx.dry_run {
        return None;
    }
    let bake_window = chrono::Duration::minutes(i64::from(rollback.bake_window_minutes));
    let succeeded = match codedeploy::succeeded(
        &cx.deps.codedeploy,
        cx.group.application,
        cx.group.deployment_group,
        cx.alarm.state_changed_at,
        bake_window,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            let action = format!(
                "plan again after {} completed before its stop",
                finished
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Some(Step::failed(&action, &e));
        }
    };
    match plan::plan_code(&[], &succeeded, cx.alarm.state_changed_at, bake_window) {
        CodePlan::Redeploy {
            reverted,
            revision_of,
        } if finished.contains(&&reverted) => Some(redeploy(cx, &reverted, &revision_of).await),
        _ => None,
    }
}

/// `StopDeployment` with rollback, for each deployment in flight.
async fn stop(cx: &Ctx<'_>, deployments: Vec<String>) -> Vec<Step> {
    let mut steps = Vec::new();
    for id in deployments {
        let action = match cx.group.deployer {
            Deployer::CodeDeploy => format!("stop-deployment {id} (with rollback)"),
            Deployer::Ecs => format!("stop-service-deployment {id} (with rollback)"),
        };
        steps.push(if cx.dry_run {
            Step::dry(&action)
        } else {
            // Keyed by the deployment, not the transition: two alarms, or an alarm and a
            // person, stop it once.
            let key = format!("stop:{id}");
            match cx.group.deployer {
                Deployer::CodeDeploy => {
                    run_step(cx.deps, key, &action, || {
                        codedeploy::stop(&cx.deps.codedeploy, &id)
                    })
                    .await
                }
                Deployer::Ecs => {
                    run_step(cx.deps, key, &action, || ecs::stop(&cx.deps.ecs, &id)).await
                }
            }
        });
    }
    steps
}

/// A new deployment of the revision of `revision_of`, reverting `reverted`.
async fn redeploy(cx: &Ctx<'_>, reverted: &str, revision_of: &str) -> Step {
    let action = format!("redeploy the revision of {revision_of}, reverting {reverted}");
    if cx.dry_run {
        return Step::dry(&action);
    }
    // Keyed by the deployment reverted: however many transitions (or people) ask at once,
    // one revert.
    let key = format!("revert:{reverted}");
    run_step(cx.deps, key, &action, || async {
        let id = codedeploy::redeploy(
            &cx.deps.codedeploy,
            cx.group.application,
            cx.group.deployment_group,
            reverted,
            revision_of,
            cx.alarm,
        )
        .await?;
        Ok(format!("created deployment {id}"))
    })
    .await
}

/// An ECS service back to `task_definition`, reverting the service deployment `reverted`.
async fn revert_service(cx: &Ctx<'_>, reverted: &str, task_definition: &str) -> Step {
    let action = format!("update-service to {task_definition}, reverting {reverted}");
    if cx.dry_run {
        return Step::dry(&action);
    }
    // Keyed by the deployment reverted, as a CodeDeploy revert is.
    let key = format!("revert:{reverted}");
    let (cluster, service) = (cx.group.application, cx.group.deployment_group);
    run_step(cx.deps, key, &action, || async {
        // Noted before the update: the revert's hooks, which may come at once, know it by this
        // and never hold it (safeship::revert).
        let note = safeship::revert::EcsRevertNote {
            task_definition: task_definition.to_owned(),
            reverted: reverted.to_owned(),
            alarm: cx.alarm.alarm_name.clone(),
            noted_at: chrono::Utc::now(),
        };
        safeship::revert::note_ecs_revert(&cx.deps.common.idempotency, cluster, service, &note)
            .await?;
        ecs::revert(&cx.deps.ecs, cluster, service, task_definition).await
    })
    .await
}

/// `application/environment/profile`.
fn profile_path(target: &FeatureFlagTarget) -> String {
    format!(
        "{}/{}/{}",
        target.application, target.environment, target.profile
    )
}

/// Each flag target's step, and (profile, what was switched off) for each that switched flags
/// off (now, or in an earlier delivery whose event may not have gone out: the event's record
/// says); the caller turns those into guard events.
async fn switch_all_flags(
    cx: &Ctx<'_>,
    rollback: &RollbackPolicy,
) -> (Vec<Step>, Vec<(String, SwitchedOff)>) {
    let mut steps = Vec::new();
    let mut switched_off = Vec::new();
    for target in &rollback.feature_flags {
        let (step, switched) = switch_flags(cx, target).await;
        if let Some(switched) = switched {
            switched_off.push((profile_path(target), switched));
        }
        steps.push(step);
    }
    (steps, switched_off)
}

/// What a flag switch's once-only record keeps: what it switched, and which transition did it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FlagSwitchRecord {
    flags: Vec<String>,
    version: Option<i32>,
    detail: String,
    /// The transition (or person's request) whose step made the switch.
    by: String,
}

/// Switches a target's flags off, once per version the environment serves: the step, and the
/// flags it switched off (none when they were all off already, or when another transition
/// switched them and so announces them).
///
/// Keyed by the target and the version judged, not by the transition: two alarms at once, or an
/// alarm flapping back before AppConfig has finished, judge the same served version and switch
/// once; after a person switched the flags back on (a new served version) an alarm switches
/// them off again.
async fn switch_flags(cx: &Ctx<'_>, target: &FeatureFlagTarget) -> (Step, Option<SwitchedOff>) {
    let where_ = profile_path(target);
    let action = format!("flags off {where_}: {}", target.flags.join(", "));
    if cx.dry_run {
        return (dry_switch(cx.deps, target, &action).await, None);
    }
    let judged = match appconfig::read_switch(&cx.deps.appconfig, target, false).await {
        Ok(plan) => plan.judged,
        Err(e) => return (Step::failed(&action, &e), None),
    };
    // Names the transition, so that its retry knows the version it finds served as its own.
    let description = format!(
        "safeship: alarm {} switched flags off ({})",
        cx.alarm.alarm_name, cx.transition
    );
    let work = || async {
        let (flags, version, detail) =
            switch_and_deploy(cx.deps, target, &description, false, Earlier::IsThisSwitch).await?;
        Ok(FlagSwitchRecord {
            flags,
            version,
            detail,
            by: cx.transition.to_owned(),
        })
    };
    let switched =
        |flags: Vec<String>, version| (!flags.is_empty()).then_some(SwitchedOff { flags, version });
    match once(cx.deps, format!("flags:{where_}@{judged}"), work).await {
        Ok(Once::Ran(r)) => (Step::done(&action, r.detail), switched(r.flags, r.version)),
        // This transition's own earlier delivery: its event may not have gone out yet.
        Ok(Once::AlreadyDone(r)) if r.by == cx.transition => (
            Step::done_earlier(&action, &r.detail),
            switched(r.flags, r.version),
        ),
        Ok(Once::AlreadyDone(r)) => (Step::done_by(&action, &r.detail, &r.by), None),
        Err(e) => (Step::failed(&action, &e), None),
    }
}

/// A dry run's flag step: what would be switched off, judged on the deployed version.
async fn dry_switch(deps: &Deps, target: &FeatureFlagTarget, action: &str) -> Step {
    match appconfig::read_switch(&deps.appconfig, target, false).await {
        Ok(plan) => Step::not_run(
            action,
            format!(
                "dry run: would switch off [{}] from version {}; already off [{}]",
                plan.switch.switched.join(", "),
                plan.judged,
                plan.switch.already.join(", ")
            ),
        ),
        Err(e) => Step::failed(action, &e),
    }
}

/// What a served version written with the same description, whose flags are already so, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Earlier {
    /// This switch, by an attempt that died after deploying it before it could record so (an
    /// alarm transition's: the description names the transition). Its flags are reported as
    /// switched, so the retry announces them.
    IsThisSwitch,
    /// Another switch (a person repeating a command): nothing to do, nothing to announce.
    IsAnother,
}

/// Deploys a version with the flags off (`enabled` false) or on, unless the version the
/// environment serves has them all so already: the flags switched, the version deployed, and the
/// step's detail (stored as the step's outcome). Safe to resume: a version an interrupted attempt
/// wrote but did not deploy is deployed, not written again; one it deployed is this switch when
/// `earlier` says so.
pub(crate) async fn switch_and_deploy(
    deps: &Deps,
    target: &FeatureFlagTarget,
    description: &str,
    enabled: bool,
    earlier: Earlier,
) -> Result<(Vec<String>, Option<i32>, String), Error> {
    let plan = appconfig::read_switch(&deps.appconfig, target, enabled).await?;
    let state = if enabled { "on" } else { "off" };
    let judged = plan.judged;
    let own_interrupted = earlier == Earlier::IsThisSwitch
        && plan.deployed
        && plan.judged_description.as_deref() == Some(description);
    if plan.switch.document.is_none() && own_interrupted {
        // Found by the crash suite: killed after StartDeployment, the retry found the flags off
        // and announced nothing.
        return Ok((
            plan.switch.already.clone(),
            Some(judged),
            format!(
                "version {judged} (written and deployed by an interrupted delivery of this transition) serves the flags {state}"
            ),
        ));
    }
    let Some(document) = &plan.switch.document else {
        let which = if plan.deployed {
            format!(", the version deployed to {}", target.environment)
        } else {
            String::new()
        };
        return Ok((
            plan.switch.switched,
            None,
            format!("already {state} in version {judged}{which}: nothing deployed"),
        ));
    };
    let (version, detail) = if plan.deploy_latest_as_is {
        let deployment =
            appconfig::deploy(&deps.appconfig, target, plan.latest, description).await?;
        (
            plan.latest,
            format!(
                "version {} (already written with the flags {state}; {judged} deployed) deployed as deployment {deployment}",
                plan.latest
            ),
        )
    } else {
        let version =
            appconfig::write(&deps.appconfig, target, plan.latest, document, description).await?;
        let deployment = appconfig::deploy(&deps.appconfig, target, version, description).await?;
        (
            version,
            format!(
                "version {version} (from {}) deployed as deployment {deployment}",
                plan.latest
            ),
        )
    };
    Ok((plan.switch.switched, Some(version), detail))
}
