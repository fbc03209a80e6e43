//! The policy document: per CodeDeploy application and deployment group, what each guard rail does.
//!
//! One YAML (or JSON, which is YAML too) document, validated strictly at cold start: unknown keys
//! are errors, references between sections must resolve, and numbers must be in range. A policy
//! that loads is one every guard rail can act on without further checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::model::{Environment, Severity};

mod accounts;
mod index;
mod integrity;
mod notifications;
mod rollback;
#[cfg(feature = "schema")]
pub mod schema;
mod snapshot;
mod source;
mod traffic_hook;
mod unique;
mod validate;

pub use self::accounts::{member_role_arn, AccountPolicy, Hub, Place, Placement, Site};
pub use self::integrity::{DbConnection, IntegrityPolicy, SslMode, TableRules, ZeroQuery};
pub use self::notifications::{Channel, NotificationPolicy, NotificationRoute, Routing};
pub use self::rollback::{AlarmMatcher, FeatureFlagTarget, RollbackPolicy};
pub use self::snapshot::{
    DatabaseKind, DatabasePolicy, GroupSnapshotPolicy, SnapshotFailureMode, SnapshotRetention,
};
pub use self::traffic_hook::{AlarmCheck, HttpCheck, LambdaCheck, Soak, TrafficHookPolicy};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only `1` exists.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1)))]
    pub version: u32,
    /// Member accounts a hub guards, by 12-digit id (see README, "Guarding an organisation").
    /// Without them, safeship guards the account and region its stack runs in.
    #[serde(default, deserialize_with = "unique::keys")]
    pub accounts: BTreeMap<String, AccountPolicy>,
    /// CodeDeploy applications by name.
    #[serde(default, deserialize_with = "unique::keys")]
    pub applications: BTreeMap<String, ApplicationPolicy>,
    /// ECS services that Amazon ECS deploys itself (deployment controller `ECS`: blue/green,
    /// canary, linear), by `<cluster>/<service>` or the service's ARN: the same sections as a
    /// deployment group's.
    #[serde(default, deserialize_with = "unique::keys")]
    pub ecs_services: BTreeMap<String, GroupPolicy>,
    /// Databases by a name the policy chooses (referenced by groups and direct invocations).
    #[serde(default, deserialize_with = "unique::keys")]
    pub databases: BTreeMap<String, DatabasePolicy>,
    #[serde(default)]
    pub notifications: NotificationPolicy,
    /// Alarm → groups, built on first use (see [`index`]).
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    index: index::IndexCell,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApplicationPolicy {
    /// The member accounts (ids or aliases from `accounts`) the application is deployed in;
    /// none: the hub's own account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Of those accounts' regions, the ones the application is deployed in; none: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Deployment groups by name.
    #[serde(deserialize_with = "unique::keys")]
    pub deployment_groups: BTreeMap<String, GroupPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct GroupPolicy {
    pub environment: Environment,
    /// Where this group (or ECS service) is deployed, when not where its application is: member
    /// accounts by id or alias. An ECS service keyed by its ARN is in the ARN's account and
    /// region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Of those accounts' regions, the ones it is deployed in; none: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default)]
    pub traffic_hook: Option<TrafficHookPolicy>,
    #[serde(default)]
    pub rollback: Option<RollbackPolicy>,
    #[serde(default)]
    pub snapshot: Option<GroupSnapshotPolicy>,
}

/// An ECS service's policy with the names it is filed under.
#[derive(Debug, Clone, Copy)]
pub struct EcsServiceRef<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub policy: &'a GroupPolicy,
}

impl<'a> EcsServiceRef<'a> {
    /// The service as a guarded group: its cluster for application, the service for group.
    #[must_use]
    pub fn as_group(self) -> GroupRef<'a> {
        GroupRef {
            application: self.cluster,
            deployment_group: self.service,
            policy: self.policy,
            deployer: Deployer::Ecs,
            placement: Placement {
                accounts: &self.policy.accounts,
                regions: &self.policy.regions,
            },
        }
    }
}

/// Who deploys a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployer {
    /// A CodeDeploy deployment group (`applications`).
    CodeDeploy,
    /// An ECS service that Amazon ECS deploys itself (`ecs-services`): the group's application
    /// is its cluster, its deployment group the service.
    Ecs,
}

/// A deployment group's policy with the names it is filed under.
#[derive(Debug, Clone, Copy)]
pub struct GroupRef<'a> {
    pub application: &'a str,
    pub deployment_group: &'a str,
    pub policy: &'a GroupPolicy,
    pub deployer: Deployer,
    /// The accounts and regions it is deployed in (none: the hub's).
    pub placement: Placement<'a>,
}

impl Policy {
    /// Parses and validates a document; `origin` names where it came from, for messages.
    pub fn parse(document: &str, origin: &str) -> Result<Policy> {
        let locate = |e: String| Error::policy(origin, unique::locate(document, e));
        // JSON is YAML too, but a JSON parser reads it about ten times faster: a policy of
        // thousands of groups starts fast given as JSON (see README, "Benchmarks").
        // A document that is not JSON after all (a YAML flow mapping, `{version: 1, …}`) is
        // read as the YAML it is.
        let as_json = document
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str::<Policy>(document))
            .filter(|parsed| !parsed.as_ref().is_err_and(serde_json::Error::is_syntax));
        let mut policy: Policy = match as_json {
            Some(parsed) => parsed.map_err(|e| locate(e.to_string()))?,
            None => serde_yaml_ng::from_str(document).map_err(|e| locate(e.to_string()))?,
        };
        let mut problems = policy.file_ecs_services_by_name();
        problems.extend(policy.problems());
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(Error::policy(origin, problems.join("; ")))
        }
    }

    /// `ecs-services` may name a service by its ARN
    /// (`arn:<partition>:ecs:<region>:<account>:service/<cluster>/<service>`); it is filed under
    /// `<cluster>/<service>`, as ECS's events and hooks name it. The same service named twice
    /// (by ARN and by name) is a problem naming both.
    fn file_ecs_services_by_name(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut filed = BTreeMap::new();
        let guards_members = self.guards_members();
        for (key, mut policy) in std::mem::take(&mut self.ecs_services) {
            let by_arn = key
                .strip_prefix("arn:")
                .and_then(|rest| rest.split_once(":service/"));
            let name = by_arn.map_or_else(|| key.clone(), |(_, name)| name.to_owned());
            // arn:<partition>:ecs:<region>:<account>:service/…: a hub guarding members places
            // the service where its ARN says, unless the service names its accounts itself.
            if let Some((head, _)) = by_arn {
                if let [_, _, region, account] = head.split(':').collect::<Vec<_>>()[..] {
                    if guards_members && policy.accounts.is_empty() {
                        policy.accounts = vec![account.to_owned()];
                        policy.regions = vec![region.to_owned()];
                    }
                }
            }
            if filed.contains_key(&name) {
                problems.push(format!(
                    "ecs-services.{key}: service {name} is given twice (by its ARN and by its name)"
                ));
            }
            filed.insert(name, policy);
        }
        self.ecs_services = filed;
        problems
    }

    pub fn group(&self, application: &str, deployment_group: &str) -> Option<GroupRef<'_>> {
        let (application, app) = self.applications.get_key_value(application)?;
        let (deployment_group, policy) = app.deployment_groups.get_key_value(deployment_group)?;
        Some(GroupRef {
            application,
            deployment_group,
            policy,
            deployer: Deployer::CodeDeploy,
            placement: Placement::of(
                (&policy.accounts, &policy.regions),
                (&app.accounts, &app.regions),
            ),
        })
    }

    /// The policy of ECS service `service` in `cluster` (names, as the service's ARN ends).
    pub fn ecs_service(&self, cluster: &str, service: &str) -> Option<EcsServiceRef<'_>> {
        let (key, policy) = self
            .ecs_services
            .get_key_value(format!("{cluster}/{service}").as_str())?;
        let (cluster, service) = key.split_once('/')?;
        Some(EcsServiceRef {
            cluster,
            service,
            policy,
        })
    }

    /// The ECS services, each with its cluster and name (a key without its `/` is refused at
    /// validation, so every listed one has both).
    pub fn ecs_services(&self) -> impl Iterator<Item = EcsServiceRef<'_>> {
        self.ecs_services.iter().filter_map(|(key, policy)| {
            key.split_once('/').map(|(cluster, service)| EcsServiceRef {
                cluster,
                service,
                policy,
            })
        })
    }

    pub fn groups(&self) -> impl Iterator<Item = GroupRef<'_>> {
        self.applications.iter().flat_map(|(application, app)| {
            app.deployment_groups
                .iter()
                .map(move |(deployment_group, policy)| GroupRef {
                    application,
                    deployment_group,
                    policy,
                    deployer: Deployer::CodeDeploy,
                    placement: Placement::of(
                        (&policy.accounts, &policy.regions),
                        (&app.accounts, &app.regions),
                    ),
                })
        })
    }

    /// Every group safeship guards: the CodeDeploy groups, then the ECS services (as groups of
    /// `Deployer::Ecs`, cluster and service for application and group).
    pub fn guarded_groups(&self) -> impl Iterator<Item = GroupRef<'_>> {
        self.groups()
            .chain(self.ecs_services().map(EcsServiceRef::as_group))
    }

    /// The groups (CodeDeploy's and ECS services) whose rollback section names this alarm, in
    /// policy order: looked up in the policy's alarm index, not scanned.
    pub fn groups_for_alarm<'a>(
        &'a self,
        alarm_name: &str,
        alarm_tags: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = GroupRef<'a>> + 'a {
        self.index
            .get_or_build(self)
            .groups_for_alarm(self, alarm_name, alarm_tags)
            .into_iter()
    }

    /// The groups that map some alarm by tag, in policy order.
    pub fn groups_mapping_by_tag(&self) -> impl Iterator<Item = GroupRef<'_>> {
        self.index
            .get_or_build(self)
            .tag_mapping_groups(self)
            .into_iter()
    }

    /// Builds the alarm index now (alarm-rollback calls it at cold start, so that the first
    /// alarm does not pay for it).
    pub fn build_index(&self) {
        self.index.get_or_build(self);
    }

    /// The groups whose deployments the integrity check of `database` ties changes to.
    pub fn integrity_groups<'a>(&'a self, database: &str) -> Vec<GroupRef<'a>> {
        let Some(integrity) = self
            .databases
            .get(database)
            .and_then(|d| d.integrity.as_ref())
        else {
            return Vec::new();
        };
        if integrity.deployment_groups.is_empty() {
            self.groups()
                .filter(|g| {
                    g.policy
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.database == database)
                })
                .collect()
        } else {
            integrity
                .deployment_groups
                .iter()
                .filter_map(|g| g.split_once('/'))
                .filter_map(|(app, group)| self.group(app, group))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/policy.yaml");

    #[test]
    fn example_policy_is_valid_and_complete() {
        let p = Policy::parse(EXAMPLE, "examples/policy.yaml").unwrap();
        let g = p.group("checkout", "checkout-prod").expect("group");
        assert_eq!(g.policy.environment, Environment::Prod);
        let hook = g.policy.traffic_hook.as_ref().unwrap();
        assert!(hook.check_count() >= 2);
        let rb = g.policy.rollback.as_ref().unwrap();
        assert_eq!(rb.bake_window_minutes, 60);
        assert_eq!(rb.feature_flags[0].strategy, "AppConfig.AllAtOnce");
        assert!(p
            .databases
            .contains_key(&g.policy.snapshot.as_ref().unwrap().database));
    }

    #[test]
    fn a_json_document_is_the_same_policy_as_its_yaml_and_a_name_given_twice_is_refused() {
        let yaml: serde_json::Value = serde_yaml_ng::from_str(EXAMPLE).unwrap();
        let json = serde_json::to_string_pretty(&yaml).unwrap();
        assert_eq!(
            Policy::parse(&json, "json").unwrap(),
            Policy::parse(EXAMPLE, "yaml").unwrap()
        );
        let twice = r#"{"version": 1, "applications": {"checkout": {"deployment-groups": {"prod": {"environment": "prod"}, "prod": {"environment": "dev"}}}}}"#;
        let err = Policy::parse(twice, "inline").unwrap_err().to_string();
        assert!(err.contains("\"prod\" is given twice"), "{err}");
        // A YAML flow mapping starts as JSON does, and is read as YAML.
        let flow = "{version: 1, applications: {checkout: {deployment-groups: {prod: {environment: prod}}}}}";
        assert!(Policy::parse(flow, "inline")
            .unwrap()
            .group("checkout", "prod")
            .is_some());
        let unknown = r#"{"version": 1, "applicatons": {}}"#;
        let err = Policy::parse(unknown, "inline").unwrap_err().to_string();
        assert!(err.contains("applicatons"), "{err}");
    }

    #[test]
    fn a_name_given_twice_is_an_error_naming_both_places() {
        // YAML lets a key repeat and serde keeps the last: one group's policy silently gone.
        let doc = "version: 1\napplications:\n  checkout:\n    deployment-groups:\n      prod: {environment: prod}\n      prod: {environment: dev}\n";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(err.contains("\"prod\" is given twice"), "{err}");
        assert!(err.contains("lines 5 and 6"), "{err}");
        let doc = "version: 1\napplications:\n  checkout:\n    deployment-groups: {}\ndatabases:\n  orders: {kind: instance, identifier: a, environment: prod}\n  orders: {kind: instance, identifier: b, environment: prod}\n";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(
            err.contains("\"orders\" is given twice") && err.contains("lines 6 and 7"),
            "{err}"
        );
        let doc = "version: 1\napplications:\n  checkout:\n    deployment-groups: {}\n  checkout:\n    deployment-groups: {}\n";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(
            err.contains("\"checkout\" is given twice") && err.contains("lines 3 and 5"),
            "{err}"
        );
    }

    #[test]
    fn the_example_services_policy_is_valid() {
        let p = Policy::parse(
            include_str!("../../../examples/checkout-service/policy.yaml"),
            "examples/checkout-service/policy.yaml",
        )
        .unwrap();
        let g = p
            .group(
                "checkout-service-ServerlessDeploymentApplication-EXAMPLE",
                "checkout-service-CheckoutApiDeploymentGroup-EXAMPLE",
            )
            .expect("the service's group");
        assert_eq!(g.policy.traffic_hook.as_ref().unwrap().check_count(), 1);
        assert!(g.policy.rollback.is_some());
        // Its PreTraffic hook is the snapshot hook, handing over to the traffic hook.
        let snapshot = g.policy.snapshot.as_ref().unwrap();
        assert!(snapshot.then_traffic_hook);
        assert!(p.databases.contains_key(&snapshot.database));
    }

    #[test]
    fn ecs_services_are_found_by_cluster_and_service_and_validated_like_groups() {
        let doc = "version: 1\necs-services:\n  checkout/checkout-api:\n    environment: prod\n    traffic-hook:\n      http-checks:\n        - {name: health, url: 'http://test/health', production-url: 'http://prod/health'}\n";
        let p = Policy::parse(doc, "inline").unwrap();
        let s = p
            .ecs_service("checkout", "checkout-api")
            .expect("the service");
        assert_eq!((s.cluster, s.service), ("checkout", "checkout-api"));
        let check = &s.policy.traffic_hook.as_ref().unwrap().http_checks[0];
        assert_eq!(check.production_url.as_deref(), Some("http://prod/health"));
        assert!(p.ecs_service("checkout", "payments-api").is_none());
        assert!(
            p.groups().next().is_none(),
            "an ECS service is no deployment group"
        );

        // By its ARN: filed under its cluster and name; named both ways, it is given twice.
        let by_arn = "version: 1\necs-services:\n  arn:aws:ecs:eu-west-1:123456789012:service/checkout/checkout-api: {environment: prod}\n";
        let p = Policy::parse(by_arn, "inline").unwrap();
        assert!(p.ecs_service("checkout", "checkout-api").is_some());
        let twice = format!("{by_arn}  checkout/checkout-api: {{environment: dev}}\n");
        let err = Policy::parse(&twice, "inline").unwrap_err().to_string();
        assert!(
            err.contains("service checkout/checkout-api is given twice"),
            "{err}"
        );

        let unnamed = "version: 1\necs-services:\n  checkout-api: {environment: prod}\n  a/b/c: {environment: prod}\n";
        let err = Policy::parse(unnamed, "inline").unwrap_err().to_string();
        assert!(
            err.contains("ecs-services.checkout-api: a service is named <cluster>/<service>")
                && err.contains("ecs-services.a/b/c: a service is named"),
            "{err}"
        );
        let bad = "version: 1\necs-services:\n  c/s:\n    environment: prod\n    traffic-hook:\n      http-checks: [{name: h, url: 'http://t/h', production-url: 'ftp://p/h'}]\n    rollback: {alarms: [{prefix: c-}], bake-window-minutes: 2000}\n    snapshot: {database: db, then-traffic-hook: true}\ndatabases:\n  db: {kind: instance, identifier: db-1, environment: prod}\n";
        let err = Policy::parse(bad, "inline").unwrap_err().to_string();
        for named in [
            "ecs-services.c/s.traffic-hook.http-checks[0].production-url: must start with http:// or https://",
            "ecs-services.c/s.rollback.bake-window-minutes: must be 1..=1440",
            "ecs-services.c/s.snapshot.then-traffic-hook: ECS runs the snapshot gate and the checks as hooks of their own stages",
        ] {
            assert!(err.contains(named), "{named} not in {err}");
        }
    }

    #[test]
    fn a_soak_is_for_ecs_services_with_alarms_and_bounded() {
        let ecs = "version: 1\necs-services:\n  c/s:\n    environment: prod\n    traffic-hook:\n      alarm-checks: {alarms: [a]}\n      soak: {minutes: 10}\n";
        let p = Policy::parse(ecs, "inline").unwrap();
        let soak = p
            .ecs_service("c", "s")
            .unwrap()
            .policy
            .traffic_hook
            .as_ref()
            .unwrap()
            .soak
            .unwrap();
        assert_eq!((soak.minutes, soak.every_seconds), (10, 60));
        let bad = "version: 1\necs-services:\n  c/s:\n    environment: prod\n    traffic-hook:\n      http-checks: [{name: h, url: 'http://t/h'}]\n      soak: {minutes: 2000, every-seconds: 1}\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: prod\n        traffic-hook:\n          alarm-checks: {alarms: [a]}\n          soak: {minutes: 5}\n";
        let err = Policy::parse(bad, "inline").unwrap_err().to_string();
        for named in [
            "ecs-services.c/s.traffic-hook.soak.minutes: must be 1..=1440",
            "ecs-services.c/s.traffic-hook.soak.every-seconds: must be 10..=900",
            "ecs-services.c/s.traffic-hook.soak: a soak watches the alarm checks; the section has none",
            "applications.a.deployment-groups.g.traffic-hook.soak: only ECS services soak",
        ] {
            assert!(err.contains(named), "{named} not in {err}");
        }
    }

    #[test]
    fn the_example_ecs_services_policy_is_valid() {
        let p = Policy::parse(
            include_str!("../../../examples/ecs-service/policy.yaml"),
            "examples/ecs-service/policy.yaml",
        )
        .unwrap();
        let s = p
            .ecs_service("checkout-ecs-Cluster-EXAMPLE", "checkout-api")
            .expect("the service");
        let hook = s.policy.traffic_hook.as_ref().unwrap();
        assert!(hook.soak.is_some() && hook.http_checks[0].production_url.is_some());
        assert!(p
            .databases
            .contains_key(&s.policy.snapshot.as_ref().unwrap().database));
    }

    #[test]
    fn json_documents_parse_too() {
        let p = Policy::parse(r#"{"version": 1, "applications": {}}"#, "inline").unwrap();
        assert!(p.applications.is_empty());
        assert_eq!(p.notifications, NotificationPolicy::default());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let doc = "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: prod\n        rollbak: {}\n";
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(err.contains("rollbak"), "{err}");
    }

    #[test]
    fn cross_references_and_ranges_are_checked() {
        let doc = r#"
version: 1
applications:
  checkout:
    deployment-groups:
      checkout-prod:
        environment: prod
        traffic-hook: {}
        rollback:
          alarms: [{prefix: checkout-}]
          bake-window-minutes: 2000
        snapshot: {database: nowhere}
"#;
        let err = Policy::parse(doc, "inline").unwrap_err().to_string();
        assert!(
            err.contains("bake-window-minutes: must be 1..=1440"),
            "{err}"
        );
        assert!(
            err.contains("snapshot.database: \"nowhere\" is not a key of databases"),
            "{err}"
        );
        let two = "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: dev\n        rollback: {alarms: [{name: x, prefix: y}]}\n";
        let err = Policy::parse(two, "inline").unwrap_err().to_string();
        assert!(
            err.contains("rollback.alarms: an alarm matcher takes exactly one"),
            "{err}"
        );
        // Handing the hook to a traffic hook with no checks to run is a mistake, named.
        let bare = "version: 1\napplications:\n  a:\n    deployment-groups:\n      g:\n        environment: dev\n        snapshot: {database: db, then-traffic-hook: true}\ndatabases:\n  db: {kind: instance, identifier: db-1, environment: dev}\n";
        let err = Policy::parse(bare, "inline").unwrap_err().to_string();
        assert!(
            err.contains("applications.a.deployment-groups.g.snapshot.then-traffic-hook: the group has no traffic-hook section"),
            "{err}"
        );
        let with_checks = bare.replace(
            "        snapshot:",
            "        traffic-hook: {allow-unchecked: true}\n        snapshot:",
        );
        assert!(Policy::parse(&with_checks, "inline")
            .unwrap()
            .groups()
            .any(|g| g
                .policy
                .snapshot
                .as_ref()
                .is_some_and(|s| s.then_traffic_hook)));
    }
}
