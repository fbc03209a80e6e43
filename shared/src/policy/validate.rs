//! The rules the schema cannot express: each section checks itself; this walks the document and
//! holds the checks sections share.

use std::collections::BTreeMap;

use super::Policy;

impl Policy {
    /// Every rule the schema cannot express, as one message per problem, naming where it is.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.version != 1 {
            problems.push(format!(
                "version: only 1 is supported, found {}",
                self.version
            ));
        }
        for g in self.groups() {
            let at = format!(
                "applications.{}.deployment-groups.{}",
                g.application, g.deployment_group
            );
            if let Some(hook) = &g.policy.traffic_hook {
                hook.problems(&at, &mut problems);
            }
            if let Some(r) = &g.policy.rollback {
                r.problems(&at, &mut problems);
            }
            if let Some(s) = &g.policy.snapshot {
                s.problems(&at, &self.databases, &mut problems);
                if s.then_traffic_hook && g.policy.traffic_hook.is_none() {
                    // Handing over to a hook with nothing to check would report an unchecked
                    // Succeeded (or, without allow-unchecked, a Failed nobody asked for).
                    problems.push(format!(
                        "{at}.snapshot.then-traffic-hook: the group has no traffic-hook section with the smoke checks to run"
                    ));
                }
            }
        }
        for (key, service) in &self.ecs_services {
            let at = format!("ecs-services.{key}");
            let named = key
                .split_once('/')
                .is_some_and(|(c, s)| !c.is_empty() && !s.is_empty() && !s.contains('/'));
            if !named {
                problems.push(format!(
                    "{at}: a service is named <cluster>/<service> (as its ARN ends: arn:aws:ecs:<region>:<account>:service/<cluster>/<service>)"
                ));
            }
            if let Some(hook) = &service.traffic_hook {
                hook.problems(&at, &mut problems);
            }
            if let Some(r) = &service.rollback {
                r.problems(&at, &mut problems);
            }
            if let Some(s) = &service.snapshot {
                s.problems(&at, &self.databases, &mut problems);
                if s.then_traffic_hook {
                    // ECS invokes each stage's hooks itself: nothing is handed on.
                    problems.push(format!(
                        "{at}.snapshot.then-traffic-hook: ECS runs the snapshot gate and the checks as hooks of their own stages; there is nothing to hand over"
                    ));
                }
            }
        }
        super::accounts::problems(self, &mut problems);
        for (name, db) in &self.databases {
            db.snapshot
                .problems(&format!("databases.{name}.snapshot"), &mut problems);
            if let Some(integrity) = &db.integrity {
                integrity.problems(&format!("databases.{name}.integrity"), self, &mut problems);
            }
        }
        problems
    }
}

pub(super) fn check_pointers(
    at: &str,
    expect: &BTreeMap<String, serde_json::Value>,
    problems: &mut Vec<String>,
) {
    for pointer in expect.keys() {
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            problems.push(format!(
                "{at}.expect-json: {pointer:?} is not a JSON pointer (starts with /)"
            ));
        }
    }
}

pub(super) fn check_timeout(at: &str, timeout_ms: u64, problems: &mut Vec<String>) {
    // CodeDeploy waits at most an hour for a hook; a check longer than a Lambda run is a mistake.
    if !(1..=900_000).contains(&timeout_ms) {
        problems.push(format!(
            "{at}.timeout-ms: must be 1..=900000, found {timeout_ms}"
        ));
    }
}
