//! Alarm-to-rollback: a CloudWatch alarm going to `ALARM` undoes the change that caused it — the
//! group's deployment in flight is stopped with rollback, or a deployment that succeeded within
//! the bake window is reverted to the revision before it — and switches the mapped feature flags
//! off, each step once however often the transition is delivered.

use lambda_runtime::LambdaEvent;
use safeship::env::Env;
use safeship::event::{AlarmStateChange, Inbound};
use safeship::guard::{ActionResult, GuardEvent};
use safeship::policy::Site;
use safeship::runtime::{accept, invocation_deadline, Common, Failure};
use serde::Serialize;
use serde_json::Value;

mod appconfig;
mod cloudwatch;
mod codedeploy;
mod decide;
mod ecs;
mod events;
mod flags;
mod plan;
mod revert;
mod rollback;
mod steps;

pub use decide::Decision;

/// Which groups an alarm transition rolls back, and whether its tags must be read first: the
/// pure decision, without any AWS call (the benchmark times it at policy scale). `hub` is the
/// stack's own account and region, to place the alarm.
pub fn decide_alarm(
    policy: &safeship::policy::Policy,
    hub: &safeship::policy::Hub,
    alarm: &AlarmStateChange,
    alarm_tags: &std::collections::BTreeMap<String, String>,
) -> (bool, Decision) {
    match policy.site_of(hub, alarm.account.as_deref(), alarm.region.as_deref()) {
        Err(reason) => (false, Decision::Ignore { reason }),
        Ok(site) => (
            decide::needs_tags(policy, &site, alarm),
            decide::decide(policy, &site, alarm, alarm_tags),
        ),
    }
}
pub use plan::IN_FLIGHT;

use decide::{decide, group_name, mapped_at};

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
    /// Another live invocation holds some of the transition's work: this delivery did the rest
    /// and fails, so Lambda delivers it again (never a success that did nothing).
    #[error("alarm {alarm}: another live invocation holds {}; failing this delivery so it is retried", held.join("; "))]
    HeldElsewhere { alarm: String, held: Vec<String> },
    /// What was done was done, but its only record, a guard event, could not be published: the
    /// retry (whose steps are already done) publishes it again, with the same id.
    #[error("alarm {alarm}: could not publish {} guard event(s) that are the only record of what was done: {}", failed.len(), failed.join("; "))]
    Unannounced { alarm: String, failed: Vec<String> },
    /// Acting in a member account failed: which account, as which role, and what.
    #[error("in {site} (as {role}): {source}")]
    AtSite {
        site: String,
        role: String,
        source: Box<Error>,
    },
    /// A rollback asked for by hand names a group the policy does not roll back.
    #[error("rolling back {group}: it {problem}")]
    NotGuarded { group: String, problem: String },
}

impl Failure for Error {
    fn kind(&self) -> &'static str {
        match self {
            Error::Safeship(e) => e.kind(),
            Error::Flags { .. } => "Flags",
            Error::ActionsFailed { .. } => "ActionsFailed",
            Error::HeldElsewhere { .. } => "InProgressElsewhere",
            Error::Unannounced { .. } => "Unannounced",
            Error::NotGuarded { .. } => "NotGuarded",
            Error::AtSite { source, .. } => source.kind(),
        }
    }
}

#[derive(Clone)]
pub struct Deps {
    pub common: Common,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub appconfig: aws_sdk_appconfig::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// For the services Amazon ECS deploys itself (`ecs-services`).
    pub ecs: aws_sdk_ecs::Client,
}

impl Deps {
    pub async fn from_env(env: &Env) -> Result<Deps, Error> {
        let common = Common::load(FUNCTION, env).await?;
        // At cold start, so that the first alarm does not pay for it.
        common.policy.build_index();
        Ok(Deps {
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, &common.sdk),
            appconfig: safeship::aws_client!(aws_sdk_appconfig, &common.sdk),
            cloudwatch: safeship::aws_client!(aws_sdk_cloudwatch, &common.sdk),
            ecs: safeship::aws_client!(aws_sdk_ecs, &common.sdk),
            common,
        })
    }
}

impl Deps {
    /// The clients to act at `site` with: these, at the hub; at a member site, the same
    /// functions' clients in the member account and region, through its role, with once-only
    /// keys of their own (two accounts may well both have a `checkout` profile).
    pub async fn at(&self, site: &Site<'_>) -> std::borrow::Cow<'_, Deps> {
        let Site::Member { place, .. } = site else {
            return std::borrow::Cow::Borrowed(self);
        };
        let sdk = self.common.members.sdk_for(site).await;
        let mut common = self.common.clone();
        common.idempotency = common
            .idempotency
            .namespace(&format!("{FUNCTION}@{}/{}", place.account, place.region));
        std::borrow::Cow::Owned(Deps {
            codedeploy: safeship::aws_client!(aws_sdk_codedeploy, &sdk),
            appconfig: safeship::aws_client!(aws_sdk_appconfig, &sdk),
            cloudwatch: safeship::aws_client!(aws_sdk_cloudwatch, &sdk),
            ecs: safeship::aws_client!(aws_sdk_ecs, &sdk),
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
    // A backstop for what no step bounds (the decision's reads, a dry run's reads): the answer
    // goes out before the deadline. Steps themselves stop earlier, releasing their claims.
    let deadline = invocation_deadline(event.context.deadline, ANSWER_MARGIN);
    tokio::time::timeout_at(deadline, handle_alarm(deps, &alarm))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Safeship(safeship::Error::Unfinished {
                resource: format!("alarm {} ({})", alarm.alarm_name, alarm.transition_key()),
                waiting: safeship::aws::in_flight::waiting(),
            }))
        })
}

/// One group's share of a transition: held back (and whether that was told), or what was done —
/// whether anything ran now, the steps, and each guard event's id with how telling it went.
enum GroupRun {
    HeldBack(Result<bool, Error>),
    Done(bool, Vec<steps::Step>, Vec<(String, Result<bool, Error>)>),
}

/// What the handler keeps of the invocation's time to answer.
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

/// One alarm transition: decide, then carry out each group's rollback and flag switch once.
pub async fn handle_alarm(deps: &Deps, alarm: &AlarmStateChange) -> Result<RollbackReport, Error> {
    let policy = &deps.common.policy;
    // Where the alarm is decides whose groups it concerns and which account is acted in; an
    // account the policy does not know is ignored here, before any AWS call.
    let site = match policy.site_of(
        &deps.common.hub,
        alarm.account.as_deref(),
        alarm.region.as_deref(),
    ) {
        Ok(site) => site,
        Err(reason) => {
            tracing::warn!(alarm = %alarm.alarm_name, %reason, "alarm ignored");
            return carry_out(deps, alarm, Decision::Ignore { reason }, &[]).await;
        }
    };
    let here = deps.at(&site).await;
    let tags = cloudwatch::alarm_tags(&here.cloudwatch, policy, &site, alarm)
        .await
        .map_err(|e| at_site(e, &deps.common, &site))?;
    let decision = decide(policy, &site, alarm, &tags);
    tracing::info!(alarm = %alarm.alarm_name, transition = %alarm.transition_key(), site = %site.describe(), ?decision, "alarm evaluated");
    let groups = match &decision {
        Decision::Ignore { .. } => vec![],
        Decision::RollBack { groups } | Decision::HeldBack { groups, .. } => groups.clone(),
    };
    let mapped: Vec<_> = mapped_at(policy, &site, alarm, &tags)
        .into_iter()
        .filter(|group| groups.contains(&group_name(group)))
        .collect();
    carry_out(&here, alarm, decision, &mapped)
        .await
        .map_err(|e| at_site(e, &deps.common, &site))
}

/// An error at a member site names the account and the role acted as: "AccessDenied" alone
/// does not say which of a hundred accounts refused, nor as whom.
fn at_site(error: Error, common: &Common, site: &Site<'_>) -> Error {
    let Some(role) = common.members.role_at(site) else {
        return error;
    };
    match error {
        Error::ActionsFailed {
            alarm,
            total,
            failed,
        } => Error::ActionsFailed {
            alarm: format!("{alarm} in {} (as {role})", site.describe()),
            total,
            failed,
        },
        other @ (Error::HeldElsewhere { .. } | Error::Unannounced { .. }) => other,
        other => Error::AtSite {
            site: site.describe(),
            role,
            source: Box::new(other),
        },
    }
}

/// A rollback a person asks for (the CLI's `safeship rollback`): the group's deployment is
/// stopped or reverted and its flags switched off exactly as an alarm would, through the same
/// steps, the same guard events and the same once-only keys — a deployment is stopped or
/// reverted once, whether an alarm, a person, or both at once ask for it.
///
/// `at` is the member account and region to act in, for a group deployed in member accounts;
/// `None` is the hub's own.
pub async fn roll_back_by_hand(
    deps: &Deps,
    application: &str,
    deployment_group: &str,
    at: Option<&safeship::policy::Place>,
    requested_by: &str,
    reason: &str,
) -> Result<RollbackReport, Error> {
    let Some(group) = deps.common.policy.group(application, deployment_group) else {
        return Err(Error::NotGuarded {
            group: format!("{application}/{deployment_group}"),
            problem: "is not a deployment group of the policy".into(),
        });
    };
    if group.policy.rollback.is_none() {
        return Err(Error::NotGuarded {
            group: group_name(&group),
            problem: "has no rollback section in the policy (its flags and bake window)".into(),
        });
    }
    let site = deps
        .common
        .policy
        .site_of(
            &deps.common.hub,
            at.map(|p| p.account.as_str()),
            at.map(|p| p.region.as_str()),
        )
        .map_err(|problem| Error::NotGuarded {
            group: group_name(&group),
            problem,
        })?;
    if !group.is_at(&deps.common.policy, &site) {
        return Err(Error::NotGuarded {
            group: group_name(&group),
            problem: format!(
                "is not deployed in {}: it is in {}",
                site.describe(),
                if group.placement.accounts.is_empty() {
                    "the hub's own account".to_owned()
                } else {
                    format!(
                        "accounts {} (name one, and its region)",
                        group.placement.accounts.join(", ")
                    )
                }
            ),
        });
    }
    // The request, in the alarm's place: the guard events and the revert's description name
    // the person and the reason, and the bake window counts back from now.
    let now = chrono::Utc::now();
    let request = AlarmStateChange {
        alarm_name: format!("safeship rollback by {requested_by}"),
        alarm_arn: None,
        account: at.map(|p| p.account.clone()),
        region: at.map(|p| p.region.clone()),
        kind: safeship::event::AlarmKind::Metric,
        state: safeship::event::AlarmState::Alarm,
        previous_state: None,
        reason: format!("requested by {requested_by} from a terminal: {reason}"),
        state_changed_at: now,
        muted: None,
        suppressed: None,
    };
    let decision = Decision::RollBack {
        groups: vec![group_name(&group)],
    };
    let here = deps.at(&site).await;
    carry_out(&here, &request, decision, &[group])
        .await
        .map_err(|e| at_site(e, &deps.common, &site))
}

/// What `set_flags` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FlagsSet {
    /// The flags whose state changed (none when they were all so already).
    pub switched: Vec<String>,
    /// The hosted version written and deployed, if any.
    pub version: Option<i32>,
    pub detail: String,
    /// Why the switch's guard event (`flags-switched-by-hand`) could not be published, if so:
    /// the switch stands, but nobody was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unannounced: Option<String>,
}

/// Flags off, or back on after the fix, by hand (the CLI's `safeship flags`): judged on the
/// version the environment serves; a new hosted version built on the latest, deployed with the
/// target's strategy; nothing when they are all so already (so a repeat does nothing).
pub async fn set_flags(
    deps: &Deps,
    target: &safeship::policy::FeatureFlagTarget,
    enabled: bool,
    requested_by: &str,
) -> Result<FlagsSet, Error> {
    let description = format!(
        "safeship: {requested_by} switched flags {} from a terminal",
        if enabled { "on" } else { "off" }
    );
    let (switched, version, detail) = rollback::switch_and_deploy(
        deps,
        target,
        &description,
        enabled,
        rollback::Earlier::IsAnother,
    )
    .await?;
    let mut unannounced = None;
    if !switched.is_empty() {
        let event = flags_by_hand_event(deps, target, &switched, enabled, version, requested_by);
        if let Err(e) = deps.common.guard.publish(&event).await {
            unannounced = Some(e.to_string());
        }
    }
    Ok(FlagsSet {
        switched,
        version,
        detail,
        unannounced,
    })
}

/// The guard event of flags switched by hand: about the one group whose rollback names this
/// flag target, when exactly one does; its id stable per version written, so a re-publish is
/// recognised.
fn flags_by_hand_event(
    deps: &Deps,
    target: &safeship::policy::FeatureFlagTarget,
    switched: &[String],
    enabled: bool,
    version: Option<i32>,
    by: &str,
) -> GuardEvent {
    let profile = format!(
        "{}/{}/{}",
        target.application, target.environment, target.profile
    );
    let owners: Vec<_> = deps
        .common
        .policy
        .groups()
        .filter(|g| {
            g.policy.rollback.as_ref().is_some_and(|r| {
                r.feature_flags.iter().any(|f| {
                    (&f.application, &f.environment, &f.profile)
                        == (&target.application, &target.environment, &target.profile)
                })
            })
        })
        .collect();
    let owner = match owners.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    let state = if enabled { "on" } else { "off" };
    GuardEvent {
        version: safeship::guard::GUARD_EVENT_VERSION,
        id: format!(
            "{FUNCTION}:flags-by-hand:{profile}:{}:{state}",
            version.map_or_else(|| "unversioned".to_owned(), |v| v.to_string())
        ),
        time: chrono::Utc::now(),
        guard: safeship::guard::Guard::AlarmRollback,
        application: owner.map(|g| g.application.to_owned()),
        deployment_group: owner.map(|g| g.deployment_group.to_owned()),
        deployment_id: None,
        dry_run: false,
        account: None,
        region: None,
        outcome: safeship::guard::Outcome::FlagsSwitchedByHand {
            profile,
            flags: switched.to_vec(),
            enabled,
            version,
            by: by.to_owned(),
        },
    }
}

/// Carries out `decision` for the `mapped` groups of one transition (an alarm's, or a person's
/// request): each group's rollback and flag switch once, side by side.
async fn carry_out(
    deps: &Deps,
    alarm: &AlarmStateChange,
    decision: Decision,
    mapped: &[safeship::policy::GroupRef<'_>],
) -> Result<RollbackReport, Error> {
    let transition = alarm.transition_key();
    let mut report = RollbackReport {
        alarm: alarm.alarm_name.clone(),
        transition: transition.clone(),
        outcome: decision.clone(),
        dry_run: false,
        actions: vec![],
        duplicate: false,
    };
    let held_back = match &decision {
        Decision::Ignore { .. } => return Ok(report),
        Decision::RollBack { .. } => None,
        Decision::HeldBack { reason, .. } => Some(reason.as_str()),
    };
    let mut ran_any = false;
    let mut steps = 0;
    let mut failed = Vec::new();
    let mut held = Vec::new();
    let mut unannounced = Vec::new();
    // Groups are rolled back side by side: one slow group never spends another's time.
    let runs = futures_util::future::join_all(mapped.iter().map(|group| {
        let transition = &transition;
        async move {
            let name = group_name(group);
            let settings = group
                .policy
                .rollback
                .as_ref()
                .expect("mapped groups have a rollback section");
            let dry_run = deps.common.config.dry_run || settings.dry_run;
            if let Some(reason) = held_back {
                // Muted or suppressed: nothing is done, and people hear why.
                let events =
                    events::GroupEvents::new(alarm, transition, &name, group, None, dry_run);
                let told = events::announce(deps, events.nothing(reason), dry_run).await;
                return (dry_run, GroupRun::HeldBack(told));
            }
            let done = rollback::roll_back_group(deps, alarm, transition, group, dry_run).await;
            let mut told = Vec::new();
            for announcement in done.events {
                let id = announcement.event.id.clone();
                told.push((id, events::announce(deps, announcement, dry_run).await));
            }
            (dry_run, GroupRun::Done(done.ran, done.steps, told))
        }
    }))
    .await;
    for (dry_run, run) in runs {
        report.dry_run |= dry_run;
        let (ran, done_steps, told) = match run {
            GroupRun::HeldBack(told) => {
                told?;
                continue;
            }
            GroupRun::Done(ran, steps, told) => (ran, steps, told),
        };
        ran_any |= ran;
        for step in done_steps {
            steps += 1;
            if step.held_elsewhere {
                held.push(step.result.action.clone());
            } else if !step.result.succeeded {
                failed.push(format!(
                    "{}: {}",
                    step.result.action,
                    step.result.detail.clone().unwrap_or_default()
                ));
            }
            report.actions.push(step.result);
        }
        for (id, result) in told {
            match result {
                Ok(now) => ran_any |= now,
                // Another delivery of the transition is publishing it right now: not a failed
                // announcement, the work of a live invocation (found by the replay suite, three
                // deliveries at once).
                Err(Error::Safeship(safeship::Error::InProgressElsewhere { .. })) => {
                    held.push(format!("the announcement {id}"))
                }
                Err(e) => unannounced.push(format!("{id}: {e}")),
            }
        }
    }
    report.duplicate = steps > 0
        && !ran_any
        && !report.dry_run
        && failed.is_empty()
        && held.is_empty()
        && unannounced.is_empty();
    if report.duplicate {
        tracing::info!(%transition, "duplicate delivery: every step was done by an earlier delivery");
    }
    let alarm_name = alarm.alarm_name.clone();
    if !failed.is_empty() {
        let total = report.actions.len();
        failed.extend(
            held.iter()
                .map(|h| format!("{h}: held by another live invocation")),
        );
        return Err(Error::ActionsFailed {
            alarm: alarm_name,
            total,
            failed,
        });
    }
    if !held.is_empty() {
        return Err(Error::HeldElsewhere {
            alarm: alarm_name,
            held,
        });
    }
    if !unannounced.is_empty() {
        return Err(Error::Unannounced {
            alarm: alarm_name,
            failed: unannounced,
        });
    }
    Ok(report)
}
