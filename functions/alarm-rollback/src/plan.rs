//! Which code rollback an alarm calls for: a pure function of the group's deployments.

use chrono::{DateTime, Duration, Utc};
use safeship::revert::is_revert;
use serde::{Deserialize, Serialize};

/// CodeDeploy statuses of a deployment still in flight: stopping it rolls it back.
pub const IN_FLIGHT: [&str; 5] = ["Created", "Queued", "InProgress", "Ready", "Baking"];

/// What is known of a succeeded deployment (from `BatchGetDeployments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Succeeded {
    pub(crate) id: String,
    pub(crate) create_time: Option<DateTime<Utc>>,
    pub(crate) complete_time: Option<DateTime<Utc>>,
    pub(crate) description: Option<String>,
}

/// What is known of a deployment in flight (from `BatchGetDeployments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InFlight {
    pub(crate) id: String,
    /// CodeDeploy's own rollback of another deployment (`creator` `autoRollback` or
    /// `codeDeployRollback`, or `rollbackInfo.rollbackTriggeringDeploymentId`): the one it rolls
    /// back, when known.
    pub(crate) codedeploy_rollback: Option<Option<String>>,
    pub(crate) description: Option<String>,
}

impl InFlight {
    /// Why this deployment must never be stopped: it is itself a rollback or a revert, and
    /// stopping it would keep the change the alarm blames.
    fn undoes(&self) -> Option<String> {
        if let Some(of) = &self.codedeploy_rollback {
            return Some(match of {
                Some(of) => format!("{} is CodeDeploy's rollback of {of}", self.id),
                None => format!("{} is a CodeDeploy rollback", self.id),
            });
        }
        self.description
            .as_deref()
            .filter(|d| is_revert(d))
            .map(|d| format!("{} is safeship's revert (\"{d}\")", self.id))
    }
}

impl Succeeded {
    fn finished(&self) -> Option<DateTime<Utc>> {
        self.complete_time.or(self.create_time)
    }
}

/// The code rollback for one deployment group. Stored before it is carried out, so a retried
/// delivery carries out the same plan rather than re-deciding on a changed world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum CodePlan {
    /// `StopDeployment` with automatic rollback, for each.
    Stop {
        deployments: Vec<String>,
    },
    /// Deploy again the revision of `revision_of`, reverting `reverted`.
    Redeploy {
        reverted: String,
        revision_of: String,
    },
    /// `UpdateService` of an ECS service back to `task_definition` (what ran before
    /// `reverted`, a service deployment that finished inside the bake window).
    RevertService {
        reverted: String,
        task_definition: String,
    },
    Nothing {
        reason: String,
    },
}

/// In-flight deployments are stopped; else the last success is reverted when it finished within
/// `bake_window` of the alarm (or after it: the alarm caught it mid-flight) and is not itself
/// safeship's revert; else nothing.
///
/// Only succeeded deployments count. A newer deployment that `Failed` or was `Stopped` does not
/// change what is live: CodeDeploy leaves (or rolls back to) the last successful revision, so the
/// last success is still the change the alarm may blame, and reverting it is still right.
///
/// A rollback or a revert in flight is never stopped — not CodeDeploy's own rollback deployment
/// (an earlier transition's stop asked for it), nor safeship's revert: a second or flapping alarm
/// would otherwise undo the rollback. With only such deployments in flight there is nothing more
/// to do: the rollback is under way.
pub(crate) fn plan_code(
    in_flight: &[InFlight],
    succeeded: &[Succeeded],
    alarm_at: DateTime<Utc>,
    bake_window: Duration,
) -> CodePlan {
    let (undoing, to_stop): (Vec<&InFlight>, Vec<&InFlight>) =
        in_flight.iter().partition(|d| d.undoes().is_some());
    if !to_stop.is_empty() {
        let mut deployments: Vec<String> = to_stop.iter().map(|d| d.id.clone()).collect();
        deployments.sort();
        deployments.dedup();
        return CodePlan::Stop { deployments };
    }
    if !undoing.is_empty() {
        let why: Vec<String> = undoing.iter().filter_map(|d| d.undoes()).collect();
        return CodePlan::Nothing {
            reason: format!(
                "only a rollback is in flight ({}): a rollback is never stopped",
                why.join("; ")
            ),
        };
    }
    let mut by_finish: Vec<&Succeeded> = succeeded.iter().collect();
    by_finish.sort_by_key(|d| std::cmp::Reverse(d.finished()));
    let Some(last) = by_finish.first() else {
        return CodePlan::Nothing {
            reason: "no deployment in flight and none succeeded".into(),
        };
    };
    let Some(finished) = last.finished() else {
        return CodePlan::Nothing {
            reason: format!(
                "the last successful deployment {} has no completion time",
                last.id
            ),
        };
    };
    // safeship's own revert is the last success when an earlier transition (of this alarm or
    // another) already rolled back: reverting it would redeploy the revision just taken away.
    if let Some(description) = last.description.as_deref().filter(|d| is_revert(d)) {
        return CodePlan::Nothing {
            reason: format!(
                "no deployment in flight; the last success {} is already safeship's revert (\"{description}\"): reverting it would bring back the revision it removed",
                last.id
            ),
        };
    }
    let minutes = bake_window.num_minutes();
    if alarm_at - finished > bake_window {
        return CodePlan::Nothing {
            reason: format!(
                "no deployment in flight; the last success {} finished at {} — more than the {minutes}-minute bake window before the alarm",
                last.id,
                finished.to_rfc3339()
            ),
        };
    }
    match by_finish.get(1) {
        Some(previous) => CodePlan::Redeploy {
            reverted: last.id.clone(),
            revision_of: previous.id.clone(),
        },
        None => CodePlan::Nothing {
            reason: format!(
                "{} finished within the {minutes}-minute bake window, but no earlier successful deployment holds a revision to return to",
                last.id
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minute)
    }

    fn ok(id: &str, finished_minute: i64) -> Succeeded {
        Succeeded {
            id: id.into(),
            create_time: Some(at(finished_minute - 5)),
            complete_time: Some(at(finished_minute)),
            description: None,
        }
    }

    fn revert(id: &str, finished_minute: i64, reverted: &str, revision_of: &str) -> Succeeded {
        Succeeded {
            description: Some(format!(
                "safeship: alarm checkout-prod-5xx-rate reverts {reverted} to the revision of {revision_of}"
            )),
            ..ok(id, finished_minute)
        }
    }

    fn flying(id: &str) -> InFlight {
        InFlight {
            id: id.into(),
            codedeploy_rollback: None,
            description: None,
        }
    }

    #[test]
    fn in_flight_deployments_are_stopped() {
        let plan = plan_code(
            &[flying("d-2"), flying("d-1")],
            &[ok("d-0", 0)],
            at(10),
            Duration::minutes(60),
        );
        assert_eq!(
            plan,
            CodePlan::Stop {
                deployments: vec!["d-1".into(), "d-2".into()]
            }
        );
    }

    #[test]
    fn a_rollback_or_a_revert_in_flight_is_never_stopped() {
        // CodeDeploy's rollback of d-1 (an earlier transition stopped d-1), and safeship's
        // revert of d-3: a second alarm stops neither, and reverts nothing either.
        let rollback = InFlight {
            codedeploy_rollback: Some(Some("d-1".into())),
            ..flying("d-2")
        };
        let revert = InFlight {
            description: Some(
                "safeship: alarm checkout-prod-5xx-rate reverts d-3 to the revision of d-0".into(),
            ),
            ..flying("d-4")
        };
        let history = [ok("d-0", -300), ok("d-3", -10)];
        assert_eq!(
            plan_code(
                &[rollback.clone(), revert.clone()],
                &history,
                at(0),
                Duration::minutes(60)
            ),
            CodePlan::Nothing {
                reason: "only a rollback is in flight (d-2 is CodeDeploy's rollback of d-1; \
                         d-4 is safeship's revert (\"safeship: alarm checkout-prod-5xx-rate \
                         reverts d-3 to the revision of d-0\")): a rollback is never stopped"
                    .into()
            }
        );
        // A rollback without rollbackInfo, by its creator alone.
        let by_creator = InFlight {
            codedeploy_rollback: Some(None),
            ..flying("d-5")
        };
        assert!(matches!(
            plan_code(&[by_creator], &[], at(0), Duration::minutes(60)),
            CodePlan::Nothing { .. }
        ));
        // A new deployment beside a rollback is still stopped, and only it.
        assert_eq!(
            plan_code(
                &[rollback, revert, flying("d-9")],
                &history,
                at(0),
                Duration::minutes(60)
            ),
            CodePlan::Stop {
                deployments: vec!["d-9".into()]
            }
        );
    }

    #[test]
    fn a_success_inside_the_bake_window_is_reverted_to_the_one_before() {
        let history = [ok("d-1", -300), ok("d-3", 0), ok("d-2", -100)];
        assert_eq!(
            plan_code(&[], &history, at(45), Duration::minutes(60)),
            CodePlan::Redeploy {
                reverted: "d-3".into(),
                revision_of: "d-2".into()
            }
        );
        // an alarm stamped just before completion still blames that deployment
        assert!(matches!(
            plan_code(&[], &history, at(-1), Duration::minutes(60)),
            CodePlan::Redeploy { .. }
        ));
    }

    #[test]
    fn outside_the_window_nothing_is_rolled_back() {
        let history = [ok("d-1", -300), ok("d-2", 0)];
        let CodePlan::Nothing { reason } = plan_code(&[], &history, at(61), Duration::minutes(60))
        else {
            panic!("acted outside the window")
        };
        assert!(reason.contains("60-minute bake window"), "{reason}");
    }

    #[test]
    fn no_earlier_revision_means_nothing_to_do() {
        assert!(matches!(
            plan_code(&[], &[ok("d-1", 0)], at(5), Duration::minutes(60)),
            CodePlan::Nothing { .. }
        ));
        assert!(matches!(
            plan_code(&[], &[], at(5), Duration::minutes(60)),
            CodePlan::Nothing { .. }
        ));
    }

    #[test]
    fn safeships_own_revert_is_not_reverted() {
        // d-2 was bad; the first ALARM transition reverted it with d-3 (the revision of d-1). A
        // second transition inside the bake window must not redeploy d-2's revision.
        let history = [
            ok("d-1", -300),
            ok("d-2", -20),
            revert("d-3", -5, "d-2", "d-1"),
        ];
        let CodePlan::Nothing { reason } = plan_code(&[], &history, at(0), Duration::minutes(60))
        else {
            panic!("reverted safeship's own revert")
        };
        assert_eq!(
            reason,
            "no deployment in flight; the last success d-3 is already safeship's revert \
             (\"safeship: alarm checkout-prod-5xx-rate reverts d-2 to the revision of d-1\"): \
             reverting it would bring back the revision it removed"
        );
    }

    #[test]
    fn a_new_deployment_after_a_revert_is_reverted_to_the_revert() {
        // After safeship's revert d-3, someone deploys d-4 and it alarms: d-4 goes, back to the
        // revision d-3 deployed. Only the *last* success being a revert stops the plan.
        let history = [
            ok("d-1", -300),
            ok("d-2", -200),
            revert("d-3", -150, "d-2", "d-1"),
            ok("d-4", -10),
        ];
        assert_eq!(
            plan_code(&[], &history, at(0), Duration::minutes(60)),
            CodePlan::Redeploy {
                reverted: "d-4".into(),
                revision_of: "d-3".into()
            }
        );
        // Someone else's description is not safeship's.
        let mut other = ok("d-5", -5);
        other.description = Some("hotfix: safeship alarm tuning".into());
        assert_eq!(
            plan_code(&[], &[ok("d-1", -300), other], at(0), Duration::minutes(60)),
            CodePlan::Redeploy {
                reverted: "d-5".into(),
                revision_of: "d-1".into()
            }
        );
    }
}
