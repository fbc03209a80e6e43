//! The guard events published for what rolling a group back came to, and their publication:
//! once per event id (recorded in the idempotency table), and — for the events that are the only
//! record of what was done — a failure that fails the invocation, so Lambda retries and the retry
//! publishes the same event (same id) again.

use chrono::Utc;
use safeship::event::AlarmStateChange;
use safeship::guard::{ActionResult, AlarmSummary, Guard, GuardEvent, Outcome};
use safeship::idempotency::Once;
use safeship::policy::GroupRef;

use crate::{Deps, Error, FUNCTION};

/// A guard event to publish, and whether it is the only record of something done (a rollback
/// performed, flags switched off): then a failed publication fails the invocation.
pub(crate) struct Announcement {
    pub(crate) event: GuardEvent,
    pub(crate) essential: bool,
}

/// The guard events of one group's rollback in one transition.
///
/// One event per outcome and group, and per flag target: its id is stable for the decision and
/// unique within the transition, so the notifier drops only true re-publications. A
/// `rollback-performed` with failed actions has an id of its own (the failed actions' digest),
/// so the retry's success is news, not a duplicate of the failure.
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
    /// The member account and region of the group, when it is a member account's.
    account: Option<String>,
    region: Option<String>,
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
        let member = !group.placement.accounts.is_empty();
        GroupEvents {
            transition,
            name,
            application: group.application,
            deployment_group: group.deployment_group,
            deployment_id,
            dry_run,
            alarm: summary(alarm),
            // A member account's group: the events say where it is, so people read which one.
            account: member.then(|| alarm.account.clone()).flatten(),
            region: member.then(|| alarm.region.clone()).flatten(),
        }
    }

    fn event(&self, outcome: Outcome, suffix: Option<&str>) -> GuardEvent {
        let (transition, name) = (self.transition, self.name);
        GuardEvent {
            version: safeship::guard::GUARD_EVENT_VERSION,
            id: match suffix {
                Some(suffix) => {
                    format!("{FUNCTION}:{transition}:{name}:{}:{suffix}", outcome.kind())
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
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }

    /// Flags of `profile` (`application/environment/profile`) switched off in a new `version`.
    pub(crate) fn flags_switched_off(
        &self,
        profile: String,
        flags: Vec<String>,
        version: Option<i32>,
    ) -> Announcement {
        Announcement {
            event: self.event(
                Outcome::FlagsSwitchedOff {
                    alarm: self.alarm.clone(),
                    profile: profile.clone(),
                    flags,
                    version,
                },
                Some(&profile),
            ),
            essential: !self.dry_run,
        }
    }

    /// Why the code was left alone (or the whole transition ignored: muted, suppressed).
    pub(crate) fn nothing(&self, reason: &str) -> Announcement {
        Announcement {
            event: self.event(
                Outcome::NothingToRollBack {
                    alarm: self.alarm.clone(),
                    reason: reason.to_owned(),
                },
                None,
            ),
            essential: false,
        }
    }

    /// What was done: every action with its result.
    pub(crate) fn performed(&self, actions: Vec<ActionResult>) -> Announcement {
        let failed: Vec<&str> = actions
            .iter()
            .filter(|a| !a.succeeded)
            .map(|a| a.action.as_str())
            .collect();
        let suffix = (!failed.is_empty()).then(|| failed_digest(&failed));
        Announcement {
            event: self.event(
                Outcome::RollbackPerformed {
                    alarm: self.alarm.clone(),
                    actions,
                },
                suffix.as_deref(),
            ),
            essential: !self.dry_run,
        }
    }
}

/// `failed-<16 hex digits>`: FNV-1a of the failed actions' names, sorted — the same for the same
/// failures (a repeated failure is one message), different from the success's id.
fn failed_digest(failed: &[&str]) -> String {
    let mut names = failed.to_vec();
    names.sort_unstable();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in names.join("\n").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("failed-{hash:016x}")
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

/// Publishes the event once per id: `Ok(true)` when published now, `Ok(false)` when an earlier
/// delivery did (or a non-essential one could not be: logged). An essential event that could
/// not be published is an error: the invocation fails and its retry publishes it again, with
/// the same id. A dry run's events are not recorded (a dry run writes nothing).
pub(crate) async fn announce(deps: &Deps, a: Announcement, dry_run: bool) -> Result<bool, Error> {
    let Announcement { event, essential } = a;
    let published = if dry_run {
        deps.common
            .guard
            .publish(&event)
            .await
            .map(|()| true)
            .map_err(Error::from)
    } else {
        let key = format!("told:{}", event.id);
        deps.common
            .idempotency
            .once(&key, || async {
                deps.common.guard.publish(&event).await.map_err(Error::from)
            })
            .await
            .map(|once| matches!(once, Once::Ran(())))
    };
    match published {
        Ok(now) => Ok(now),
        Err(e) if essential => {
            tracing::error!(error = %e, id = %event.id, "could not publish a guard event that is the only record of what was done: failing the invocation");
            Err(e)
        }
        Err(e) => {
            tracing::error!(error = %e, id = %event.id, "could not publish a guard event");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_failures_have_one_digest_and_others_another() {
        let a = failed_digest(&["stop-deployment d-1 (with rollback)", "flags off x"]);
        assert_eq!(
            a,
            failed_digest(&["flags off x", "stop-deployment d-1 (with rollback)"])
        );
        assert_ne!(a, failed_digest(&["flags off x"]));
        assert!(
            a.starts_with("failed-") && a.len() == "failed-".len() + 16,
            "{a}"
        );
    }
}
