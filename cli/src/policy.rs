//! `safeship policy check|explain`: what a policy says, before it reaches a function. Pure:
//! no AWS call.

use std::path::Path;

use safeship::policy::{AlarmMatcher, Policy};
use serde::Serialize;
use serde_json::json;

use crate::{Error, Exit, Outcome};

fn read(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|source| Error::Read {
        path: file.to_owned(),
        source,
    })
}

fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Valid: a count of what it covers. Invalid: every problem, exit 1.
pub fn check(file: &Path) -> Result<Outcome, Error> {
    let text = read(file)?;
    Ok(match Policy::parse(&text, &file.display().to_string()) {
        Ok(policy) => {
            let groups = policy.groups().count();
            let summary = format!(
                "{}: valid ({}, {}, {})",
                file.display(),
                counted(policy.applications.len(), "application"),
                counted(groups, "deployment group"),
                counted(policy.databases.len(), "database")
            );
            Outcome {
                exit: Exit::Ok,
                summary,
                json: json!({"file": file, "valid": true, "applications": policy.applications.len(),
                    "deployment-groups": groups, "databases": policy.databases.len()}),
            }
        }
        Err(e) => Outcome {
            exit: Exit::Refused,
            summary: format!("invalid: {e}"),
            json: json!({"file": file, "valid": false, "error": e.to_string()}),
        },
    })
}

/// What one deployment group gets from the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupExplained {
    /// `codedeploy`, or `ecs` for a service Amazon ECS deploys itself (its cluster and service
    /// in `application` and `deployment-group`).
    pub deployer: &'static str,
    pub application: String,
    pub deployment_group: String,
    pub environment: String,
    /// The smoke checks its traffic hooks run (`http name`, `lambda name`, `alarms a, b`).
    pub smoke_checks: Vec<String>,
    /// A hook with no checks: what it reports.
    pub unchecked: Option<String>,
    /// The alarms that roll it back, as matched.
    pub rollback_alarms: Vec<String>,
    pub bake_window_minutes: Option<u32>,
    /// `application/environment/profile: flag, flag`.
    pub feature_flags: Vec<String>,
    /// The database snapshotted before it deploys, and how a failure is taken.
    pub snapshot: Option<String>,
    /// The databases whose nightly integrity check names this group's deployments.
    pub integrity: Vec<String>,
    /// The member accounts and regions it is deployed in (`payments-prod (111111111111):
    /// eu-west-1, us-east-1`); none: the hub's own account.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployed_in: Vec<String>,
}

/// Every group, in the policy's order (applications, then groups, by name), then the ECS
/// services (by `<cluster>/<service>`).
#[must_use]
pub fn explained(policy: &Policy) -> Vec<GroupExplained> {
    policy
        .guarded_groups()
        .map(|g| {
            let hook = g.policy.traffic_hook.as_ref();
            let mut smoke_checks = Vec::new();
            if let Some(h) = hook {
                smoke_checks.extend(h.http_checks.iter().map(|c| {
                    let production = c
                        .production_url
                        .as_deref()
                        .map(|p| format!(" (production listener {p})"))
                        .unwrap_or_default();
                    format!(
                        "http {}: {} {}{production} → {}",
                        c.name, c.method, c.url, c.expect_status
                    )
                }));
                smoke_checks.extend(
                    h.lambda_checks
                        .iter()
                        .map(|c| format!("lambda {}: invoke {}", c.name, c.function)),
                );
                if let Some(a) = &h.alarm_checks {
                    smoke_checks.push(format!("alarms not in ALARM: {}", a.alarms.join(", ")));
                }
                if let Some(soak) = h.soak {
                    smoke_checks.push(format!(
                        "soak: the alarms watched {} min after the production shift, every {} s",
                        soak.minutes, soak.every_seconds
                    ));
                }
            }
            let unchecked = match hook {
                Some(_) if !smoke_checks.is_empty() => None,
                Some(h) if h.allow_unchecked => {
                    Some("hooks report Succeeded unchecked (allow-unchecked)".into())
                }
                _ => Some("hooks report Failed: no smoke checks".into()),
            };
            let rollback = g.policy.rollback.as_ref();
            let rollback_alarms = rollback
                .map(|r| {
                    r.alarms
                        .iter()
                        .map(|m| match m {
                            AlarmMatcher::Name(n) => format!("alarm {n}"),
                            AlarmMatcher::Prefix(p) => format!("alarms named {p}…"),
                            AlarmMatcher::Tag { key, value } => {
                                format!("alarms tagged {key}={value}")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let feature_flags = rollback
                .map(|r| {
                    r.feature_flags
                        .iter()
                        .map(|f| {
                            format!(
                                "{}/{}/{}: {}",
                                f.application,
                                f.environment,
                                f.profile,
                                f.flags.join(", ")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let snapshot = g.policy.snapshot.as_ref().map(|s| {
                let mode = match s.on_failure {
                    safeship::policy::SnapshotFailureMode::Block => "no snapshot, no deployment",
                    safeship::policy::SnapshotFailureMode::Warn => "a failure only warns",
                };
                let then = if s.then_traffic_hook {
                    "; then the traffic hook checks and reports"
                } else {
                    ""
                };
                format!("{} ({mode}{then})", s.database)
            });
            let group_name = format!("{}/{}", g.application, g.deployment_group);
            let integrity = policy
                .databases
                .keys()
                .filter(|db| {
                    policy
                        .integrity_groups(db)
                        .iter()
                        .any(|i| format!("{}/{}", i.application, i.deployment_group) == group_name)
                })
                .cloned()
                .collect();
            let deployed_in = g
                .placement
                .accounts
                .iter()
                .filter_map(|named| policy.member_account(named))
                .map(|(id, account)| {
                    let regions = if g.placement.regions.is_empty() {
                        &account.regions
                    } else {
                        g.placement.regions
                    };
                    let name = account
                        .alias
                        .as_ref()
                        .map_or_else(|| id.to_owned(), |alias| format!("{alias} ({id})"));
                    format!("{name}: {}", regions.join(", "))
                })
                .collect();
            let ecs = g.deployer == safeship::policy::Deployer::Ecs;
            GroupExplained {
                deployer: if ecs { "ecs" } else { "codedeploy" },
                application: g.application.to_owned(),
                deployment_group: g.deployment_group.to_owned(),
                environment: format!("{:?}", g.policy.environment).to_lowercase(),
                smoke_checks,
                unchecked,
                rollback_alarms,
                bake_window_minutes: rollback.map(|r| r.bake_window_minutes),
                feature_flags,
                snapshot,
                integrity,
                deployed_in,
            }
        })
        .collect()
}

/// The explanation as people read it.
#[must_use]
pub fn render(groups: &[GroupExplained]) -> String {
    let mut out = String::new();
    let none = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join("; ")
        }
    };
    for g in groups {
        let kind = if g.deployer == "ecs" {
            "ECS service "
        } else {
            ""
        };
        out.push_str(&format!(
            "{kind}{}/{} ({})\n",
            g.application, g.deployment_group, g.environment
        ));
        if !g.deployed_in.is_empty() {
            out.push_str(&format!("  deployed in: {}\n", g.deployed_in.join("; ")));
        }
        out.push_str(&format!(
            "  traffic hooks: {}\n",
            g.unchecked.clone().unwrap_or_else(|| none(&g.smoke_checks))
        ));
        let bake = g
            .bake_window_minutes
            .map(|m| format!("; reverts a deployment that succeeded in the last {m} min"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  rolled back by: {}{bake}\n",
            none(&g.rollback_alarms)
        ));
        out.push_str(&format!(
            "  flags switched off: {}\n",
            none(&g.feature_flags)
        ));
        out.push_str(&format!(
            "  snapshot before deploying: {}\n",
            g.snapshot.as_deref().unwrap_or("none")
        ));
        out.push_str(&format!("  integrity checked: {}\n", none(&g.integrity)));
    }
    out
}

pub fn explain(file: &Path) -> Result<Outcome, Error> {
    let text = read(file)?;
    let policy = match Policy::parse(&text, &file.display().to_string()) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Outcome {
                exit: Exit::Refused,
                summary: format!("invalid: {e}"),
                json: json!({"file": file, "valid": false, "error": e.to_string()}),
            })
        }
    };
    let groups = explained(&policy);
    Ok(Outcome {
        exit: Exit::Ok,
        summary: render(&groups),
        json: json!({"file": file, "groups": groups}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_accounts_group_says_where_it_is_deployed() {
        let policy = Policy::parse(
            "version: 1
accounts:
  '111111111111': {alias: payments-prod, regions: [eu-west-1, us-east-1]}
  '222222222222': {regions: [eu-west-1]}
applications:
  ledger:
    accounts: [payments-prod, '222222222222']
    deployment-groups:
      prod: {environment: prod}
      us: {environment: prod, accounts: [payments-prod], regions: [us-east-1]}
  intranet:
    deployment-groups:
      prod: {environment: prod}
",
            "inline",
        )
        .unwrap();
        let text = render(&explained(&policy));
        assert!(
            text.contains("ledger/prod (prod)\n  deployed in: payments-prod (111111111111): eu-west-1, us-east-1; 222222222222: eu-west-1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ledger/us (prod)\n  deployed in: payments-prod (111111111111): us-east-1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("intranet/prod (prod)\n  traffic hooks:"),
            "{text}"
        );
    }

    #[test]
    fn the_example_policy_is_explained_group_by_group() {
        let policy = Policy::parse(
            include_str!("../../examples/policy.yaml"),
            "examples/policy.yaml",
        )
        .unwrap();
        let groups = explained(&policy);
        let prod = groups
            .iter()
            .find(|g| g.application == "checkout" && g.deployment_group == "checkout-prod")
            .unwrap();
        assert_eq!(prod.environment, "prod");
        assert_eq!(prod.unchecked, None);
        assert!(prod
            .smoke_checks
            .iter()
            .any(|c| c.starts_with("http health: GET ")));
        assert!(prod
            .smoke_checks
            .iter()
            .any(|c| c == "lambda ping: invoke checkout-api"));
        assert_eq!(
            prod.rollback_alarms,
            vec![
                "alarm checkout-prod-5xx-rate".to_owned(),
                "alarms named checkout-prod-latency-…".to_owned(),
                "alarms tagged safeship:rollback=checkout-prod".to_owned()
            ]
        );
        assert_eq!(prod.bake_window_minutes, Some(60));
        assert_eq!(
            prod.feature_flags,
            vec!["checkout-flags/prod/release-flags: new-checkout-flow, one-click-pay".to_owned()]
        );
        assert_eq!(
            prod.snapshot.as_deref(),
            Some("checkout-db (no snapshot, no deployment)")
        );
        assert_eq!(prod.integrity, vec!["checkout-db".to_owned()]);
        let text = render(&groups);
        assert!(
            text.contains("checkout/checkout-prod (prod)\n  traffic hooks: http health"),
            "{text}"
        );
    }
}
