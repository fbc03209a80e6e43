//! The guard events published for what rolling a group back came to.

use chrono::Utc;
use safeship::event::AlarmStateChange;
use safeship::guard::{ActionResult, AlarmSummary, Guard, GuardEvent, Outcome};
use safeship::policy::GroupRef;

use crate::{Deps, FUNCTION};

/// The guard events of one group's rollback in one transition.
///
/// One event per outcome and group, and per flag target: its id is stable for the decision and
/// unique within the transition, so the notifier drops only true re-publications.
pub(crate) struct GroupEvents<'a> {
    transition: &'a str,
    name: &'a str,
    application: &'a str,
    deployment_group: &'a str,
    /// The deployment the events link to: the one stopped (the first of several; the actions
    /// name all) or reverted.
    deployment_id: Option<String>,
    dry_run: bool,
    alarm: AlarmSummary,
}

impl<'a> GroupEvents<'a> {
    pub(crate) fn new(
        alarm: &AlarmStateChange,
        transition: &'a str,
        name: &'a str,
        group: &GroupRef<'a>,
        deployment_id: Option<String>,
        dry_run: bool,
    ) -> GroupEvents<'a> {
        GroupEvents {
            transition,
            name,
            application: group.application,
            deployment_group: group.deployment_group,
            deployment_id,
            dry_run,
            alarm: summary(alarm),
        }
    }

    fn event(&self, outcome: Outcome, target: Option<&str>) -> GuardEvent {
        let (transition, name) = (self.transition, self.name);
        GuardEvent {
            version: safeship::guard::GUARD_EVENT_VERSION,
            id: match target {
                Some(target) => {
                    format!("{FUNCTION}:{transition}:{name}:{}:{target}", outcome.kind())
                }
                None => format!("{FUNCTION}:{transition}:{name}:{}", outcome.kind()),
            },
            time: Utc::now(),
            guard: Guard::AlarmRollback,
            application: Some(self.application.to_owned()),
            deployment_group: Some(self.deployment_group.to_owned()),
            deployment_id: self.deployment_id.clone(),
            dry_run: self.dry_run,
            outcome,
        }
    }

    /// Flags of `profile` (`application/environment/profile`) switched off in a new `version`.
    pub(crate) fn flags_switched_off(
        &self,
        profile: String,
        flags: Vec<String>,
        version: Option<i32>,
    ) -> GuardEvent {
        self.event(
            Outcome::FlagsSwitchedOff {
                alarm: self.alarm.clone(),
                profile: profile.clone(),
                flags,
                version,
            },
            Some(&profile),
        )
    }

    /// The group's events, in order: why the code was left alone (`nothing`), the flag switches,
    /// and what was done (`performed`: every action, when code was stopped or reverted or a flag
    /// switch failed). Unless `tell`, an earlier delivery told the code's outcome already.
    pub(crate) fn for_outcome(
        &self,
        tell: bool,
        nothing: Option<&str>,
        flag_events: Vec<GuardEvent>,
        performed: Option<Vec<ActionResult>>,
    ) -> Vec<GuardEvent> {
        let mut events = Vec::new();
        // The code's outcome always reaches people: why it was left alone, or what was done.
        if let (true, Some(reason)) = (tell, nothing) {
            events.push(self.event(
                Outcome::NothingToRollBack {
                    alarm: self.alarm.clone(),
                    reason: reason.to_owned(),
                },
                None,
            ));
        }
        events.extend(flag_events);
        // A failure is never left out of the guard events.
        if let (true, Some(actions)) = (tell, performed) {
            events.push(self.event(
                Outcome::RollbackPerformed {
                    alarm: self.alarm.clone(),
                    actions,
                },
                None,
            ));
        }
        events
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
pub(crate) async fn publish(deps: &Deps, event: GuardEvent) {
    if let Err(e) = deps.common.guard.publish(&event).await {
        tracing::error!(error = %e, id = %event.id, "could not publish a guard event");
    }
}
