//! The function's own settings, read once at cold start.

use std::time::Duration;

use safeship::env::Env;

/// The function's own settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// The account's manual DB instance snapshot quota (RDS default: 100 per region).
    pub quota: u32,
    /// The account's manual DB cluster snapshot quota, which RDS counts apart from instance
    /// snapshots (default: the same as `quota`).
    pub cluster_quota: u32,
    /// How long a hook may wait in all, across continuations (CodeDeploy gives a hook an hour).
    pub hook_budget: Duration,
    /// Kept back from each invocation's deadline to hand over to a continuation or report.
    pub margin: Duration,
    /// This function's own name, to invoke itself for a continuation (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: Option<String>,
    /// First wait between status polls; it doubles up to 20 s.
    pub first_poll: Duration,
    /// The traffic hook a group's `then-traffic-hook` hands its hook execution to, once the
    /// snapshot is available (`SAFESHIP_TRAFFIC_HOOK_FUNCTION`: a name or an ARN).
    pub traffic_hook_function: Option<String>,
}

impl SnapshotSettings {
    pub fn from_env(env: &Env) -> Result<Self, safeship::Error> {
        let budget_s: u64 = env.parse_or("SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS", 3_000)?;
        if !(60..=3_500).contains(&budget_s) {
            return Err(safeship::Error::config(
                "SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS",
                format!(
                    "must be 60..=3500 (CodeDeploy waits an hour for a hook), found {budget_s}"
                ),
            ));
        }
        let quota = env.parse_or("SAFESHIP_RDS_SNAPSHOT_QUOTA", 100)?;
        Ok(SnapshotSettings {
            quota,
            cluster_quota: env.parse_or("SAFESHIP_RDS_CLUSTER_SNAPSHOT_QUOTA", quota)?,
            hook_budget: Duration::from_secs(budget_s),
            margin: env.millis_in(
                "SAFESHIP_SNAPSHOT_MARGIN_MS",
                5_000,
                safeship::runtime::MARGIN_RANGE_MS,
            )?,
            function_name: env.optional("AWS_LAMBDA_FUNCTION_NAME").map(str::to_owned),
            // Not 0: the pause doubles from here, and 0 would poll RDS in a busy loop.
            first_poll: env.millis_in("SAFESHIP_SNAPSHOT_POLL_MS", 2_000, 100..=60_000)?,
            traffic_hook_function: env
                .optional("SAFESHIP_TRAFFIC_HOOK_FUNCTION")
                .map(str::to_owned),
        })
    }

    /// At cold start: a policy whose groups hand their hook over to the traffic hook needs to
    /// know which function that is; without it, every such hook would fail at its end.
    pub fn check_against(&self, policy: &safeship::policy::Policy) -> Result<(), safeship::Error> {
        if self.traffic_hook_function.is_some() {
            return Ok(());
        }
        let handing: Vec<String> = policy
            .groups()
            .filter(|g| {
                g.policy
                    .snapshot
                    .as_ref()
                    .is_some_and(|s| s.then_traffic_hook)
            })
            .map(|g| format!("{}/{}", g.application, g.deployment_group))
            .collect();
        if handing.is_empty() {
            return Ok(());
        }
        Err(safeship::Error::config(
            "SAFESHIP_TRAFFIC_HOOK_FUNCTION",
            format!(
                "is not set, but the policy's groups {} hand their hook to the traffic hook (snapshot.then-traffic-hook)",
                handing.join(", ")
            ),
        ))
    }
}

impl SnapshotSettings {
    /// The quota snapshots of a database of `kind` count against.
    #[must_use]
    pub fn quota_for(&self, kind: safeship::policy::DatabaseKind) -> u32 {
        match kind {
            safeship::policy::DatabaseKind::Instance => self.quota,
            safeship::policy::DatabaseKind::Cluster => self.cluster_quota,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_a_bad_budget() {
        let err = SnapshotSettings::from_env(&Env::from_pairs([(
            "SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS",
            "7200",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SAFESHIP_SNAPSHOT_HOOK_BUDGET_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn a_margin_below_the_stores_cut_off_and_a_zero_poll_are_refused() {
        // With no margin, the store would stop the wait before the hook could report.
        for (name, value) in [
            ("SAFESHIP_SNAPSHOT_MARGIN_MS", "0"),
            ("SAFESHIP_SNAPSHOT_POLL_MS", "0"),
        ] {
            let err = SnapshotSettings::from_env(&Env::from_pairs([(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name) && err.contains("found 0"), "{err}");
        }
    }

    #[test]
    fn a_policy_that_hands_hooks_over_needs_the_traffic_hooks_name() {
        let document = |then: bool| {
            format!(
                "version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
        traffic-hook: {{allow-unchecked: true}}
        snapshot: {{database: db, then-traffic-hook: {then}}}
databases:
  db: {{kind: instance, identifier: db-1, environment: prod}}
"
            )
        };
        let handing = safeship::policy::Policy::parse(&document(true), "test").unwrap();
        let plain = safeship::policy::Policy::parse(&document(false), "test").unwrap();
        let unset =
            SnapshotSettings::from_env(&Env::from_pairs([("SAFESHIP_UNRELATED", "x")])).unwrap();
        let err = unset.check_against(&handing).unwrap_err().to_string();
        assert!(
            err.contains("SAFESHIP_TRAFFIC_HOOK_FUNCTION")
                && err.contains("checkout/checkout-prod"),
            "{err}"
        );
        assert!(unset.check_against(&plain).is_ok());
        let set = SnapshotSettings::from_env(&Env::from_pairs([(
            "SAFESHIP_TRAFFIC_HOOK_FUNCTION",
            "CodeDeployHook_safeship-traffic",
        )]))
        .unwrap();
        assert!(set.check_against(&handing).is_ok());
    }
}
