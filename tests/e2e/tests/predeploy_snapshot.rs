//! The pre-deploy snapshot against moto's RDS (instances, clusters, snapshots and their tags) and
//! CodeDeploy (the hook's deployment); wiremock takes the hook's status report, which moto lacks.
//!
//! moto's snapshots are `available` at once and it never refuses one, so the cases that need a
//! snapshot still `creating` (the wait, its continuation, the budget running out) or an RDS fault
//! (`SnapshotQuotaExceeded`, `InvalidDBInstanceState`, throttling) use a wiremock RDS that answers
//! in RDS's own query protocol (XML), and a wiremock Lambda that takes the continuation.

use std::sync::Arc;

use chrono::{Duration, Utc};
use predeploy_snapshot::{Deps, HookStatus, Job, SnapshotSettings, SnapshotStatus};
use safeship::guard::Outcome;
use safeship_testkit::codedeploy;
use safeship_testkit::ecs::{note_revert_of_checkout_api, serve_target_revision, TARGET_REVISION};
use safeship_testkit::emulators::{
    common_with_policy, create_db_instance, create_idempotency_table, function_binary,
    manual_snapshot_ids, moto_endpoint, sample_event, sdk_config, unique, REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::runtime::{Answer, LocalRuntime};
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{any, body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct World {
    /// Makes this world's deployment ids its own: moto keeps snapshots between runs.
    run: String,
    deps: Deps,
    sdk: aws_config::SdkConfig,
    rds: aws_sdk_rds::Client,
    database: String,
    identifier: String,
    app: String,
    group: String,
    codedeploy_mock: MockServer,
    inbox: GuardInbox,
    /// The policy document the world's functions run with.
    policy: String,
    /// moto's CodeDeploy with the hook report split off to `codedeploy_mock`.
    split: SplitEndpoint,
}

async fn world(kind: &str, quota: u32) -> World {
    world_with(kind, quota, "block").await
}

async fn world_with(kind: &str, quota: u32, on_failure: &str) -> World {
    let moto = moto_endpoint();
    let sdk = sdk_config(&moto).await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let identifier = unique("checkout-db");
    match kind {
        "instance" => {
            create_db_instance(&rds, &identifier)
                .await
                .expect("moto CreateDBInstance");
        }
        _ => {
            rds.create_db_cluster()
                .db_cluster_identifier(&identifier)
                .engine("aurora-postgresql")
                .master_username("checkout")
                .master_user_password("not-a-secret-in-moto")
                .send()
                .await
                .expect("moto CreateDBCluster");
        }
    }
    let (app, group) = codedeploy::fresh_group(
        &aws_sdk_codedeploy::Client::new(&sdk),
        aws_sdk_codedeploy::types::ComputePlatform::Ecs,
    )
    .await;
    let database = "checkout-db".to_string();
    let policy = format!(
        "version: 1
applications:
  {app}:
    deployment-groups:
      {group}:
        environment: prod
        snapshot: {{database: {database}, on-failure: {on_failure}}}
      {group}-unguarded:
        environment: prod
ecs-services:
  checkout/checkout-api:
    environment: prod
    snapshot: {{database: {database}, on-failure: {on_failure}}}
databases:
  {database}:
    kind: {kind}
    identifier: {identifier}
    environment: prod
    snapshot: {{prefix: safeship, retention-days: 30, keep-newest: 2, quota-warning-percent: 90}}
"
    );
    let codedeploy_mock = MockServer::start().await;
    let split = SplitEndpoint::json_operations(
        &moto,
        &codedeploy_mock.uri(),
        &["PutLifecycleEventHookExecutionStatus"],
    )
    .await;
    let inbox = GuardInbox::create(&sdk).await;
    let mut common = common_with_policy(&sdk, &policy).await;
    let policy = policy.clone();
    common.guard = inbox.publisher();
    let deps = Deps {
        common,
        rds: rds.clone(),
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk_config(&split.uri()).await),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&moto_endpoint()).await),
        lambda: aws_sdk_lambda::Client::new(&sdk),
        settings: SnapshotSettings {
            quota,
            cluster_quota: quota,
            hook_budget: std::time::Duration::from_secs(3000),
            margin: std::time::Duration::from_millis(500),
            function_name: None,
            first_poll: std::time::Duration::from_millis(50),
            traffic_hook_function: None,
        },
        clock: Arc::new(Utc::now),
    };
    World {
        run: format!("{:X}", {
            let u = unique("r");
            u.bytes().fold(0xcbf2_9ce4_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            })
        }),
        deps,
        sdk,
        rds,
        database,
        identifier,
        app,
        group,
        codedeploy_mock,
        inbox,
        policy,
        split,
    }
}

/// A quota the shared moto's manual snapshots (every run's) never near: no quota warning in
/// tests about something else.
const ROOMY_QUOTA: u32 = 1_000_000;

fn job(w: &World, deployment: &str) -> Job {
    Job {
        database: w.database.clone(),
        reason: "migration 042 drops column".into(),
        deployment_id: Some(deployment.into()),
        request_id: None,
        application: Some(w.app.clone()),
        git_sha: Some("9f8e7d6c".into()),
    }
}

fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(20)
}

/// The instance's manual snapshots (moto also makes an automated one when an instance is created).
async fn instance_snapshot_ids(w: &World) -> Vec<String> {
    manual_snapshot_ids(&w.rds, &w.identifier).await
}

/// An instance snapshot's tags, sorted.
async fn instance_snapshot_tags(w: &World, id: &str) -> Vec<(String, String)> {
    let arn = w
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
        .unwrap()
        .db_snapshots
        .unwrap()
        .remove(0)
        .db_snapshot_arn
        .unwrap();
    let mut tags: Vec<(String, String)> = w
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .unwrap()
        .tag_list
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    tags.sort();
    tags
}

fn tag(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

#[tokio::test]
async fn an_instance_snapshot_is_taken_tagged_and_found_again_on_a_repeat() {
    let w = world("instance", ROOMY_QUOTA).await;
    let first = predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-ABCDEF123")), soon())
        .await
        .unwrap();
    assert_eq!(first.status, SnapshotStatus::Available, "{first:?}");
    assert_eq!(
        first.snapshot_id.as_deref(),
        Some(w.sid("d-ABCDEF123").as_str())
    );
    let again = predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-ABCDEF123")), soon())
        .await
        .unwrap();
    assert_eq!(again.snapshot_id, first.snapshot_id);
    assert_eq!(instance_snapshot_ids(&w).await, [w.sid("d-ABCDEF123")]);

    let tags = instance_snapshot_tags(&w, &w.sid("d-ABCDEF123")).await;
    assert!(
        tags.contains(&("safeship:deployment-id".into(), w.d("d-ABCDEF123"))),
        "{tags:?}"
    );
    assert!(tags.contains(&(
        "safeship:reason".into(),
        "migration 042 drops column".into()
    )));
    assert!(tags.contains(&("safeship:application".into(), w.app.clone())));
    assert!(tags.contains(&("safeship:git-sha".into(), "9f8e7d6c".into())));

    let events = w.inbox.events().await;
    let kinds: Vec<_> = events.iter().map(|e| e.outcome.kind()).collect();
    assert_eq!(
        kinds,
        // The repeat says both again under their stable ids (a dead attempt may have started
        // the snapshot without saying so); the notifier recognises them.
        [
            "snapshot-started",
            "snapshot-available",
            "snapshot-started",
            "snapshot-available"
        ]
    );
    assert_eq!(events[0].id, events[2].id, "the same start, the same id");
    assert_eq!(events[1].id, events[3].id);
}

#[tokio::test]
async fn a_cluster_snapshot_is_taken_for_an_aurora_database() {
    let w = world("cluster", ROOMY_QUOTA).await;
    let answer = predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-CLUSTER01")), soon())
        .await
        .unwrap();
    assert_eq!(answer.status, SnapshotStatus::Available, "{answer:?}");
    let clusters = w
        .rds
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(&w.identifier)
        .snapshot_type("manual")
        .send()
        .await
        .unwrap()
        .db_cluster_snapshots
        .unwrap_or_default();
    assert_eq!(clusters.len(), 1);
    assert_eq!(
        clusters[0].db_cluster_snapshot_identifier.as_deref(),
        Some(w.sid("d-CLUSTER01").as_str())
    );
}

#[tokio::test]
async fn the_hook_reports_succeeded_only_with_an_available_snapshot() {
    let w = world("instance", ROOMY_QUOTA).await;
    let deployment = w.deployment().await;
    let hook_id = unique("hook");
    Mock::given(header(
        "x-amz-target",
        "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
    ))
    .and(body_json(json!({"deploymentId": deployment, "lifecycleEventHookExecutionId": hook_id, "status": "Succeeded"})))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
    .expect(1)
    .mount(&w.codedeploy_mock)
    .await;
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook_id});
    let mut context = lambda_runtime::Context::default();
    context.deadline = u64::try_from(Utc::now().timestamp_millis()).unwrap() + 20_000;
    let answer = w.invoke(event.clone(), context.clone()).await.unwrap();
    assert_eq!(
        answer.hook_status,
        Some(HookStatus::Succeeded),
        "{answer:?}"
    );
    // A redelivery of the hook event neither snapshots nor reports again.
    let again = w.invoke(event, context).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(instance_snapshot_ids(&w).await.len(), 1);
}

#[tokio::test]
async fn retention_prunes_old_safeship_snapshots_keeps_the_newest_and_never_touches_others() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    // Someone's own manual snapshot, without safeship's tag.
    w.rds
        .create_db_snapshot()
        .db_snapshot_identifier(format!("{}-manual", w.identifier))
        .db_instance_identifier(&w.identifier)
        .send()
        .await
        .unwrap();
    for d in ["d-AAAAAAAA1", "d-AAAAAAAA2", "d-AAAAAAAA3"].map(|d| w.d(d)) {
        predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &d), soon())
            .await
            .unwrap();
    }
    // Forty days later (retention 30, keep the newest 2), one more deployment.
    w.deps.clock = Arc::new(|| Utc::now() + Duration::days(40));
    let answer = predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-AAAAAAAA4")), soon())
        .await
        .unwrap();
    let mut pruned = answer.pruned.clone();
    pruned.sort();
    assert_eq!(pruned, [w.sid("d-AAAAAAAA1"), w.sid("d-AAAAAAAA2")]);
    let mut left = instance_snapshot_ids(&w).await;
    left.sort();
    assert_eq!(
        left,
        [
            format!("{}-manual", w.identifier),
            w.sid("d-AAAAAAAA3"),
            w.sid("d-AAAAAAAA4"),
        ]
    );
    let events = w.inbox.events().await;
    assert!(events.iter().any(|e| matches!(&e.outcome,
        Outcome::SnapshotsPruned { snapshot_ids, .. } if snapshot_ids.len() == 2)));
}

#[tokio::test]
async fn nearing_the_snapshot_quota_warns() {
    // A quota of 1: this account's manual snapshots (moto is shared by the tests) are over 90%.
    let w = world("instance", 1).await;
    predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-QUOTA0001")), soon())
        .await
        .unwrap();
    let events = w.inbox.events().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.outcome, Outcome::SnapshotQuotaWarning { quota: 1, .. })),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_freshness_gate_answers_fresh_or_stale() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    assert_eq!(ask_fresh(&w).await.unwrap().status, SnapshotStatus::Stale);
    predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-FRESH0001")), soon())
        .await
        .unwrap();
    let fresh = ask_fresh(&w).await.unwrap();
    assert_eq!(fresh.status, SnapshotStatus::Fresh);
    assert_eq!(
        fresh.snapshot_id.as_deref(),
        Some(w.sid("d-FRESH0001").as_str())
    );
    w.deps.clock = Arc::new(|| Utc::now() + Duration::minutes(61));
    assert_eq!(ask_fresh(&w).await.unwrap().status, SnapshotStatus::Stale);
}

#[tokio::test]
async fn an_unknown_database_is_an_error_without_an_rds_call() {
    // RDS is a wiremock that must not be called at all, by any operation.
    let rds_mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(rds_fault("InternalFailure", "no RDS call was expected"))
        .expect(0)
        .mount(&rds_mock)
        .await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    for event in [
        json!({"database": "orders-db", "reason": "migration"}),
        json!({"fresh": {"database": "orders-db", "max-age-minutes": 60}}),
    ] {
        let err = w
            .invoke(event, lambda_runtime::Context::default())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "database \"orders-db\" is not in the policy's databases (known: checkout-db)"
        );
    }
    rds_mock.verify().await;
    assert!(rds_mock.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_direct_invocation_through_the_handler_answers_the_snapshot_and_tags_it() {
    let w = world("instance", ROOMY_QUOTA).await;
    // The sample a pipeline sends, with this test's own deployment id.
    let deployment = w.deployment().await;
    let mut event = sample_event("predeploy-snapshot-direct.json");
    assert_eq!(event["database"], "checkout-db");
    event["deployment_id"] = json!(deployment);
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    assert_eq!(answer.database, "checkout-db");
    assert_eq!(answer.snapshot_id.as_deref(), Some(id.as_str()));
    assert_eq!(answer.status, SnapshotStatus::Available, "{answer:?}");
    assert_eq!(answer.hook_status, None);
    assert!(!answer.duplicate);
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    // A direct invocation knows no application and no commit: those tags are absent.
    assert_eq!(
        instance_snapshot_tags(&w, &id).await,
        [
            tag("safeship:deployment-id", &deployment),
            tag("safeship:reason", "migration 042 drops column"),
        ]
    );
}

/// The sample deployment `START` event, for this world's application, `group` and `deployment`.
fn start_event(w: &World, group: &str, deployment: &str) -> serde_json::Value {
    let mut event = sample_event("codedeploy-deployment-start.json");
    assert_eq!(event["detail"]["state"], "START");
    event["detail"]["application"] = json!(w.app);
    event["detail"]["deploymentGroup"] = json!(group);
    event["detail"]["deploymentId"] = json!(deployment);
    event
}

#[tokio::test]
async fn a_deployment_start_event_snapshots_the_groups_database_and_tags_it() {
    let w = world("instance", ROOMY_QUOTA).await;
    let deployment = w.deployment().await;
    let event = start_event(&w, &w.group, &deployment);
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    assert_eq!(answer.database, "checkout-db");
    assert_eq!(answer.snapshot_id.as_deref(), Some(id.as_str()));
    assert_eq!(answer.status, SnapshotStatus::Available, "{answer:?}");
    assert_eq!(answer.hook_status, None, "a START event is no hook");
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    assert_eq!(
        instance_snapshot_tags(&w, &id).await,
        [
            tag("safeship:application", &w.app),
            tag("safeship:deployment-id", &deployment),
            tag(
                "safeship:reason",
                &format!("deployment {deployment} of {}/{} started", w.app, w.group)
            ),
        ]
    );
    let kinds: Vec<_> = w
        .inbox
        .events()
        .await
        .into_iter()
        .map(|e| e.outcome.kind())
        .collect();
    assert_eq!(kinds, ["snapshot-started", "snapshot-available"]);
    // Nothing reported to CodeDeploy: there is no hook to report for.
    assert!(w
        .codedeploy_mock
        .received_requests()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_deployment_start_event_for_a_group_without_a_snapshot_section_says_so_without_an_rds_call(
) {
    let rds_mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(rds_fault("InternalFailure", "no RDS call was expected"))
        .expect(0)
        .mount(&rds_mock)
        .await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let group = format!("{}-unguarded", w.group);
    let event = start_event(&w, &group, "d-UNGUARD01");
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    assert_eq!(answer.status, SnapshotStatus::NoneConfigured);
    assert_eq!(answer.snapshot_id, None);
    assert_eq!(
        answer.detail,
        Some(format!("{}/{group} has no snapshot section", w.app))
    );
    rds_mock.verify().await;
    assert!(rds_mock.received_requests().await.unwrap().is_empty());
    assert!(w.inbox.events().await.is_empty());
}

async fn ask_fresh(
    w: &World,
) -> Result<predeploy_snapshot::SnapshotAnswer, predeploy_snapshot::Error> {
    let event = json!({"fresh": {"database": w.database, "max-age-minutes": 60}});
    w.invoke(event, lambda_runtime::Context::default()).await
}

// ---- a wiremock RDS, for what moto cannot show ------------------------------------------------

const RDS_NS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

fn rds_snapshot_xml(id: &str, status: &str) -> String {
    format!(
        "<DBSnapshot><DBSnapshotIdentifier>{id}</DBSnapshotIdentifier><Status>{status}</Status><SnapshotType>manual</SnapshotType><SnapshotCreateTime>2026-11-23T06:00:00Z</SnapshotCreateTime></DBSnapshot>"
    )
}

fn rds_answer(action: &str, result: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/xml")
        .set_body_string(format!(
            "<{action}Response xmlns=\"{RDS_NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></{action}Response>"
        ))
}

fn rds_fault(code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("content-type", "text/xml")
        .set_body_string(format!(
            "<ErrorResponse xmlns=\"{RDS_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
        ))
}

/// RDS answering `status` for the snapshot, however often it is asked.
async fn mount_rds(mock: &MockServer, id: &str, status: &str) {
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_answer(
            "CreateDBSnapshot",
            &rds_snapshot_xml(id, status),
        ))
        .mount(mock)
        .await;
    Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
        .respond_with(rds_answer(
            "DescribeDBSnapshots",
            &format!(
                "<DBSnapshots>{}</DBSnapshots>",
                rds_snapshot_xml(id, status)
            ),
        ))
        .mount(mock)
        .await;
}

impl World {
    /// A deployment id of this world's own, from a readable stem.
    fn d(&self, stem: &str) -> String {
        format!("{stem}{}", self.run)
    }

    /// The snapshot identifier of this world's deployment `stem`.
    fn sid(&self, stem: &str) -> String {
        format!("safeship-checkout-db-{}", self.d(stem).to_lowercase())
    }

    /// The handler, as Lambda invokes it, with `context`'s deadline.
    async fn invoke(
        &self,
        event: serde_json::Value,
        context: lambda_runtime::Context,
    ) -> Result<predeploy_snapshot::SnapshotAnswer, predeploy_snapshot::Error> {
        predeploy_snapshot::snapshot_handler(
            &self.deps,
            lambda_runtime::LambdaEvent::new(event, context),
        )
        .await
    }

    async fn with_rds(mut self, mock: &MockServer) -> Self {
        self.deps.rds = aws_sdk_rds::Client::new(&sdk_config(&mock.uri()).await);
        self
    }

    async fn deployment(&self) -> String {
        codedeploy::deployment(
            &aws_sdk_codedeploy::Client::new(&self.sdk),
            &self.app,
            &self.group,
            "version: 0.0",
        )
        .await
        .expect("moto CreateDeployment")
    }

    async fn expect_report(&self, deployment: &str, hook: &str, status: &str, times: u64) {
        Mock::given(header(
            "x-amz-target",
            "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
        ))
        .and(body_json(json!({"deploymentId": deployment, "lifecycleEventHookExecutionId": hook, "status": status})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(times)
        .mount(&self.codedeploy_mock)
        .await;
    }
}

fn context_with(ms_left: i64) -> lambda_runtime::Context {
    let mut context = lambda_runtime::Context::default();
    context.deadline = u64::try_from(Utc::now().timestamp_millis() + ms_left).unwrap();
    context
}

#[tokio::test]
async fn a_slow_snapshot_is_waited_for_in_a_continuation_and_the_hook_reports_at_the_end() {
    let rds_mock = MockServer::start().await;
    let lambda_mock = MockServer::start().await;
    let mut w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    w.deps.lambda = aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await);
    w.deps.settings.function_name = Some("CodeDeployHook_safeship-predeploy-snapshot".into());
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    mount_rds(&rds_mock, &id, "creating").await;
    Mock::given(method("POST"))
        .and(path(
            "/2015-03-31/functions/CodeDeployHook_safeship-predeploy-snapshot/invocations",
        ))
        .and(header("x-amz-invocation-type", "Event"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&lambda_mock)
        .await;
    // Nothing is reported while the snapshot is still being made.
    w.expect_report(&deployment, &hook, "Succeeded", 1).await;

    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
    let first = w.invoke(event, context_with(1_500)).await.unwrap();
    assert_eq!(first.status, SnapshotStatus::Continued, "{first:?}");
    assert_eq!(first.hook_status, None);
    let handed: serde_json::Value =
        serde_json::from_slice(&lambda_mock.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(handed["safeship-continuation"]["snapshot-id"], id.as_str());
    assert_eq!(handed["safeship-continuation"]["attempt"], 1);

    // The continuation runs; meanwhile the snapshot became available.
    rds_mock.reset().await;
    mount_rds(&rds_mock, &id, "available").await;
    let second = w.invoke(handed, context_with(10_000)).await.unwrap();
    assert_eq!(second.status, SnapshotStatus::Available, "{second:?}");
    assert_eq!(second.hook_status, Some(HookStatus::Succeeded));
}

#[tokio::test]
async fn a_snapshot_still_creating_when_the_budget_is_spent_fails_the_hook() {
    let rds_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    mount_rds(&rds_mock, &id, "creating").await;
    w.expect_report(&deployment, &hook, "Failed", 1).await;
    let state = json!({"safeship-continuation": {
        "deployment-id": deployment, "lifecycle-event-hook-execution-id": hook,
        "application": w.app, "deployment-group": w.group, "database": "checkout-db",
        "snapshot-id": id, "started-at": (Utc::now() - Duration::seconds(3_001)).to_rfc3339(),
        "attempt": 5}});
    let answer = w.invoke(state, context_with(1_000)).await.unwrap();
    assert_eq!(answer.hook_status, Some(HookStatus::Failed));
    assert!(answer.detail.unwrap().contains("the hook's whole budget"));
}

#[tokio::test]
async fn rds_refusals_fail_the_hook_with_the_rds_error() {
    for (code, message) in [
        (
            "SnapshotQuotaExceeded",
            "Cannot create more than 100 manual snapshots",
        ),
        (
            "InvalidDBInstanceState",
            "Instance checkout-db is not currently in the available state",
        ),
    ] {
        let rds_mock = MockServer::start().await;
        let w = world("instance", ROOMY_QUOTA)
            .await
            .with_rds(&rds_mock)
            .await;
        Mock::given(body_string_contains("Action=CreateDBSnapshot"))
            .respond_with(rds_fault(code, message))
            .expect(1)
            .mount(&rds_mock)
            .await;
        let deployment = w.deployment().await;
        let hook = unique("hook");
        w.expect_report(&deployment, &hook, "Failed", 1).await;
        let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
        let answer = w.invoke(event, context_with(10_000)).await.unwrap();
        assert_eq!(answer.status, SnapshotStatus::Failed);
        assert_eq!(answer.hook_status, Some(HookStatus::Failed));
        let detail = answer.detail.unwrap();
        assert!(
            detail.contains("rds:CreateDBSnapshot") && detail.contains(code),
            "{detail}"
        );
        let events = w.inbox.events().await;
        assert!(
            events.iter().any(|e| matches!(&e.outcome,
            Outcome::SnapshotFailed { error, .. } if error.contains(code))),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn throttled_snapshot_creation_is_retried_into_one_snapshot() {
    let rds_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let id = "safeship-checkout-db-d-throttle1";
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_fault("Throttling", "Rate exceeded"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&rds_mock)
        .await;
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_answer(
            "CreateDBSnapshot",
            &rds_snapshot_xml(id, "available"),
        ))
        .expect(1)
        .mount(&rds_mock)
        .await;
    Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
        .respond_with(rds_answer(
            "DescribeDBSnapshots",
            "<DBSnapshots></DBSnapshots>",
        ))
        .mount(&rds_mock)
        .await;
    let answer = predeploy_snapshot::take_and_wait(&w.deps, &job(&w, "d-THROTTLE1"), soon())
        .await
        .unwrap();
    assert_eq!(answer.status, SnapshotStatus::Available, "{answer:?}");
    assert_eq!(answer.snapshot_id.as_deref(), Some(id));
}

#[tokio::test]
async fn with_on_failure_warn_a_failed_snapshot_lets_the_deployment_go_on() {
    let rds_mock = MockServer::start().await;
    let w = world_with("instance", 100, "warn")
        .await
        .with_rds(&rds_mock)
        .await;
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_fault(
            "SnapshotQuotaExceeded",
            "Cannot create more than 100 manual snapshots",
        ))
        .mount(&rds_mock)
        .await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    w.expect_report(&deployment, &hook, "Succeeded", 1).await;
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
    let answer = w.invoke(event, context_with(10_000)).await.unwrap();
    assert_eq!(answer.status, SnapshotStatus::Failed);
    assert_eq!(answer.hook_status, Some(HookStatus::Succeeded));
}

/// A continuation's state for `hook`, started `spent` ago.
fn continuation(
    w: &World,
    deployment: &str,
    hook: &str,
    id: &str,
    spent: std::time::Duration,
) -> serde_json::Value {
    json!({"safeship-continuation": {
        "deployment-id": deployment, "lifecycle-event-hook-execution-id": hook,
        "application": w.app, "deployment-group": w.group, "database": "checkout-db",
        "snapshot-id": id,
        "started-at": (Utc::now() - Duration::from_std(spent).unwrap()).to_rfc3339(),
        "attempt": 3}})
}

/// A Lambda (wiremock) that must not be invoked: no continuation may follow.
async fn lambda_never_invoked(w: &mut World) -> MockServer {
    let lambda_mock = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&lambda_mock)
        .await;
    w.deps.lambda = aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await);
    w.deps.settings.function_name = Some("CodeDeployHook_safeship-predeploy-snapshot".into());
    lambda_mock
}

#[tokio::test]
async fn a_continuation_near_the_end_of_the_budget_reports_when_the_budget_ends_not_at_its_deadline(
) {
    let rds_mock = MockServer::start().await;
    let mut w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let lambda_mock = lambda_never_invoked(&mut w).await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    mount_rds(&rds_mock, &id, "creating").await;
    w.expect_report(&deployment, &hook, "Failed", 1).await;
    // Two seconds of the 3000 s budget are left; the invocation itself has 20 s.
    let budget_left = std::time::Duration::from_secs(2);
    let state = continuation(
        &w,
        &deployment,
        &hook,
        &id,
        w.deps.settings.hook_budget - budget_left,
    );
    let started = std::time::Instant::now();
    let answer = w.invoke(state, context_with(20_000)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.hook_status, Some(HookStatus::Failed), "{answer:?}");
    assert_eq!(answer.status, SnapshotStatus::Creating);
    assert!(
        answer
            .detail
            .as_deref()
            .unwrap()
            .contains("the hook's whole budget"),
        "{answer:?}"
    );
    // It waited out what was left of the budget, and reported then, not at the Lambda deadline.
    assert!(
        took >= budget_left - std::time::Duration::from_millis(300)
            && took < budget_left + std::time::Duration::from_secs(2),
        "reported after {took:?}, the budget ended after {budget_left:?}"
    );
    w.codedeploy_mock.verify().await;
    lambda_mock.verify().await;
    let events = w.inbox.events().await;
    assert!(
        events.iter().any(|e| matches!(&e.outcome,
            Outcome::SnapshotFailed { error, .. } if error.contains("the hook's whole budget"))),
        "{events:?}"
    );
}

#[tokio::test]
async fn faults_while_waiting_for_the_snapshot_are_reported_failed_naming_the_error() {
    // (DescribeDBSnapshots answer, how often it is asked, what the failure names)
    let throttled = rds_fault("Throttling", "Rate exceeded");
    let gone = rds_answer("DescribeDBSnapshots", "<DBSnapshots></DBSnapshots>");
    for (describe, asked, named) in [
        // Throttled beyond the SDK's standard retry (4 attempts).
        (throttled, 4, "Throttling"),
        // The snapshot was deleted while being made.
        (gone, 1, "the snapshot disappeared while being made"),
    ] {
        let rds_mock = MockServer::start().await;
        let mut w = world("instance", ROOMY_QUOTA)
            .await
            .with_rds(&rds_mock)
            .await;
        let lambda_mock = lambda_never_invoked(&mut w).await;
        let deployment = w.deployment().await;
        let hook = unique("hook");
        let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
        Mock::given(body_string_contains("Action=CreateDBSnapshot"))
            .respond_with(rds_answer(
                "CreateDBSnapshot",
                &rds_snapshot_xml(&id, "creating"),
            ))
            .expect(1)
            .mount(&rds_mock)
            .await;
        Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
            .respond_with(describe)
            .expect(asked)
            .mount(&rds_mock)
            .await;
        w.expect_report(&deployment, &hook, "Failed", 1).await;
        let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
        let answer = w.invoke(event, context_with(20_000)).await.unwrap();
        assert_eq!(answer.status, SnapshotStatus::Failed, "{answer:?}");
        assert_eq!(answer.hook_status, Some(HookStatus::Failed));
        assert_eq!(answer.snapshot_id.as_deref(), Some(id.as_str()));
        let detail = answer.detail.unwrap();
        assert!(
            detail.starts_with(&format!(
                "waiting for snapshot {id}: rds:DescribeDBSnapshots"
            )) && detail.contains(named),
            "{detail}"
        );
        rds_mock.verify().await;
        w.codedeploy_mock.verify().await;
        lambda_mock.verify().await;
        let events = w.inbox.events().await;
        assert!(
            events.iter().any(|e| matches!(&e.outcome,
                Outcome::SnapshotFailed { error, .. } if error.contains(named))),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_continuation_invoke_reports_now_failed_or_warned_per_on_failure() {
    for (on_failure, reported, hook_status) in [
        ("block", "Failed", HookStatus::Failed),
        ("warn", "Succeeded", HookStatus::Succeeded),
    ] {
        let rds_mock = MockServer::start().await;
        let lambda_mock = MockServer::start().await;
        let mut w = world_with("instance", 100, on_failure)
            .await
            .with_rds(&rds_mock)
            .await;
        w.deps.lambda = aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await);
        w.deps.settings.function_name = Some("CodeDeployHook_safeship-predeploy-snapshot".into());
        let deployment = w.deployment().await;
        let hook = unique("hook");
        let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
        mount_rds(&rds_mock, &id, "creating").await;
        Mock::given(method("POST"))
            .and(path(
                "/2015-03-31/functions/CodeDeployHook_safeship-predeploy-snapshot/invocations",
            ))
            .and(header("x-amz-invocation-type", "Event"))
            .respond_with(
                ResponseTemplate::new(404)
                    .insert_header("x-amzn-errortype", "ResourceNotFoundException")
                    .set_body_json(json!({"Type": "User", "message": "Function not found: CodeDeployHook_safeship-predeploy-snapshot"})),
            )
            .expect(1)
            .mount(&lambda_mock)
            .await;
        w.expect_report(&deployment, &hook, reported, 1).await;
        let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
        let answer = w.invoke(event, context_with(1_500)).await.unwrap();
        assert_eq!(answer.hook_status, Some(hook_status), "{answer:?}");
        assert_eq!(answer.status, SnapshotStatus::Creating);
        let detail = answer.detail.unwrap();
        assert!(
            detail.starts_with(&format!(
                "continuing the wait for snapshot {id}: lambda:Invoke of CodeDeployHook_safeship-predeploy-snapshot failed: "
            )) && detail.contains("ResourceNotFoundException"),
            "{detail}"
        );
        lambda_mock.verify().await;
        w.codedeploy_mock.verify().await;
        let events = w.inbox.events().await;
        assert!(
            events.iter().any(|e| matches!(&e.outcome,
                Outcome::SnapshotFailed { error, .. } if error.contains("lambda:Invoke"))),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_status_poll_that_never_answers_ends_at_the_deadline_and_the_wait_is_handed_over() {
    let rds_mock = MockServer::start().await;
    let lambda_mock = MockServer::start().await;
    let mut w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    w.deps.lambda = aws_sdk_lambda::Client::new(&sdk_config(&lambda_mock.uri()).await);
    w.deps.settings.function_name = Some("CodeDeployHook_safeship-predeploy-snapshot".into());
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_answer(
            "CreateDBSnapshot",
            &rds_snapshot_xml(&id, "creating"),
        ))
        .mount(&rds_mock)
        .await;
    // RDS takes the status poll and never answers (within the SDK's 30 s operation timeout).
    Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
        .respond_with(
            rds_answer(
                "DescribeDBSnapshots",
                &format!(
                    "<DBSnapshots>{}</DBSnapshots>",
                    rds_snapshot_xml(&id, "creating")
                ),
            )
            .set_delay(std::time::Duration::from_secs(60)),
        )
        .mount(&rds_mock)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/2015-03-31/functions/CodeDeployHook_safeship-predeploy-snapshot/invocations",
        ))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&lambda_mock)
        .await;
    w.expect_report(&deployment, &hook, "Succeeded", 0).await;
    w.expect_report(&deployment, &hook, "Failed", 0).await;
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(40),
        w.invoke(event, context_with(3_000)),
    )
    .await
    .expect("the hook answers")
    .unwrap();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "answered after {took:?}, past its 3 s deadline"
    );
    assert_eq!(answer.status, SnapshotStatus::Continued, "{answer:?}");
    let handed: serde_json::Value =
        serde_json::from_slice(&lambda_mock.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(handed["safeship-continuation"]["snapshot-id"], id.as_str());
    lambda_mock.verify().await;
    w.codedeploy_mock.verify().await;
}

#[tokio::test]
async fn a_direct_request_with_a_request_id_keeps_its_snapshot_and_event_ids_across_invoke_again() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    let request = |id: &str| json!({"database": "checkout-db", "reason": "migration 042 drops column", "request_id": id});
    let run = w.d("pipeline-run-");
    let first = w.invoke(request(&run), context_with(20_000)).await.unwrap();
    assert_eq!(first.status, SnapshotStatus::Available, "{first:?}");
    let id = format!("safeship-checkout-db-request-{}", run.to_lowercase());
    assert_eq!(first.snapshot_id.as_deref(), Some(id.as_str()));
    // "Invoke again with the same request", minutes later: the same snapshot.
    w.deps.clock = Arc::new(|| Utc::now() + Duration::minutes(5));
    let again = w.invoke(request(&run), context_with(20_000)).await.unwrap();
    assert_eq!(again.snapshot_id, first.snapshot_id);
    // Another request of the same database is another snapshot, with events of its own.
    let other_run = w.d("pipeline-other-");
    let other = w
        .invoke(request(&other_run), context_with(20_000))
        .await
        .unwrap();
    assert_ne!(other.snapshot_id, first.snapshot_id);
    let mut ids = instance_snapshot_ids(&w).await;
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(instance_snapshot_tags(&w, &id)
        .await
        .contains(&tag("safeship:request-id", &run)));
    let events = w.inbox.events().await;
    let available: Vec<&str> = events
        .iter()
        .filter(|e| e.outcome.kind() == "snapshot-available")
        .map(|e| e.id.as_str())
        .collect();
    let mine = format!("predeploy-snapshot:checkout-db:{id}:snapshot-available");
    let theirs = format!(
        "predeploy-snapshot:checkout-db:{}:snapshot-available",
        other.snapshot_id.unwrap()
    );
    // One id per request (the repeat re-announces under the same id): never a shared "direct".
    assert_eq!(available, [mine.as_str(), mine.as_str(), theirs.as_str()]);
}

#[tokio::test]
async fn a_direct_request_without_ids_never_gets_a_finished_snapshot_back() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    let request = json!({"database": "checkout-db", "reason": "manual migration"});
    let first = w
        .invoke(request.clone(), context_with(20_000))
        .await
        .unwrap();
    assert_eq!(first.status, SnapshotStatus::Available, "{first:?}");
    // Half an hour later the same request asks for a restore point from now: the one that
    // finished half an hour ago (it would lose half an hour of writes) is not it.
    w.deps.clock = Arc::new(|| Utc::now() + Duration::minutes(30));
    let again = w
        .invoke(request.clone(), context_with(20_000))
        .await
        .unwrap();
    assert_eq!(again.status, SnapshotStatus::Available, "{again:?}");
    assert_ne!(again.snapshot_id, first.snapshot_id);
    assert_eq!(instance_snapshot_ids(&w).await.len(), 2);
    // With its own request id, "invoke again" keeps its one snapshot.
    let keyed =
        json!({"database": "checkout-db", "reason": "manual migration", "request_id": w.d("run-")});
    let once = w.invoke(keyed.clone(), context_with(20_000)).await.unwrap();
    let twice = w.invoke(keyed, context_with(20_000)).await.unwrap();
    assert_eq!(once.snapshot_id, twice.snapshot_id);
    assert_eq!(instance_snapshot_ids(&w).await.len(), 3);
}

#[tokio::test]
async fn under_dry_run_no_snapshot_is_taken_none_is_pruned_and_the_answer_says_what_would_be() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    for d in ["d-DRYOLD001", "d-DRYOLD002", "d-DRYOLD003"].map(|d| w.d(d)) {
        predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &d), soon())
            .await
            .unwrap();
    }
    w.inbox.events().await;
    // Forty days later (retention 30, keep 2), under SAFESHIP_DRY_RUN.
    w.deps.clock = Arc::new(|| Utc::now() + Duration::days(40));
    w.deps.common.config.dry_run = true;
    let deployment = w.d("d-DRYRUN001");
    let mut event = sample_event("predeploy-snapshot-direct.json");
    event["deployment_id"] = json!(deployment);
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    assert_eq!(answer.status, SnapshotStatus::DryRun, "{answer:?}");
    assert!(answer.pruned.is_empty());
    let detail = answer.detail.unwrap();
    assert_eq!(
        detail,
        format!(
            "dry run (SAFESHIP_DRY_RUN): would snapshot DB instance {} as {}, then prune {}; nothing was created or deleted",
            w.identifier,
            w.sid("d-DRYRUN001"),
            w.sid("d-DRYOLD001")
        )
    );
    assert_eq!(
        instance_snapshot_ids(&w).await.len(),
        3,
        "nothing created, nothing deleted"
    );
    assert!(w.inbox.events().await.is_empty());
}

/// Snapshots in RDS's answer to a `Describe…` of the account's manual snapshots.
fn many(element: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("<{element}><{element}Identifier>s-{i}</{element}Identifier><Status>available</Status><SnapshotType>manual</SnapshotType></{element}>"))
        .collect()
}

#[tokio::test]
async fn instance_and_cluster_snapshots_count_against_their_own_quotas() {
    // The account: 95 manual instance snapshots, 1 manual cluster snapshot; each quota is 100.
    for (kind, warned) in [("cluster", false), ("instance", true)] {
        let rds_mock = MockServer::start().await;
        let w = world(kind, 100).await.with_rds(&rds_mock).await;
        let id = w.sid("d-QUOTAKIND");
        let (create, element) = match kind {
            "instance" => ("CreateDBSnapshot", "DBSnapshot"),
            _ => ("CreateDBClusterSnapshot", "DBClusterSnapshot"),
        };
        Mock::given(body_string_contains(format!("Action={create}")))
            .respond_with(rds_answer(
                create,
                &format!("<{element}><{element}Identifier>{id}</{element}Identifier><Status>available</Status><SnapshotType>manual</SnapshotType></{element}>"),
            ))
            .mount(&rds_mock)
            .await;
        // The database's own snapshots (retention): none of safeship's.
        for (action, list, by) in [
            (
                "DescribeDBSnapshots",
                "DBSnapshots",
                "DBInstanceIdentifier=",
            ),
            (
                "DescribeDBClusterSnapshots",
                "DBClusterSnapshots",
                "DBClusterIdentifier=",
            ),
        ] {
            Mock::given(body_string_contains(format!("Action={action}")))
                .and(body_string_contains(by))
                .respond_with(rds_answer(action, &format!("<{list}></{list}>")))
                .with_priority(1)
                .mount(&rds_mock)
                .await;
        }
        Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
            .respond_with(rds_answer(
                "DescribeDBSnapshots",
                &format!("<DBSnapshots>{}</DBSnapshots>", many("DBSnapshot", 95)),
            ))
            .mount(&rds_mock)
            .await;
        Mock::given(body_string_contains("Action=DescribeDBClusterSnapshots"))
            .respond_with(rds_answer(
                "DescribeDBClusterSnapshots",
                &format!(
                    "<DBClusterSnapshots>{}</DBClusterSnapshots>",
                    many("DBClusterSnapshot", 1)
                ),
            ))
            .mount(&rds_mock)
            .await;
        let answer =
            predeploy_snapshot::take_and_wait(&w.deps, &job(&w, &w.d("d-QUOTAKIND")), soon())
                .await
                .unwrap();
        assert_eq!(
            answer.status,
            SnapshotStatus::Available,
            "{kind}: {answer:?}"
        );
        let warnings: Vec<_> = w
            .inbox
            .events()
            .await
            .into_iter()
            .filter_map(|e| match e.outcome {
                Outcome::SnapshotQuotaWarning {
                    manual_snapshots, ..
                } => Some(manual_snapshots),
                _ => None,
            })
            .collect();
        if warned {
            assert_eq!(warnings, [95], "{kind}");
        } else {
            assert!(
                warnings.is_empty(),
                "{kind}: one cluster snapshot of 100 warns nobody: {warnings:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_hook_whose_available_event_cannot_be_published_reports_then_fails_and_the_retry_announces_it_with_the_same_id(
) {
    let mut w = world("instance", ROOMY_QUOTA).await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    // CodeDeploy hears both attempts (the second is CodeDeploy's "already completed" in life).
    w.expect_report(&deployment, &hook, "Succeeded", 2).await;
    let inbox = w.deps.common.guard.clone();
    w.deps.common.guard = safeship::guard::GuardPublisher::new(
        aws_sdk_eventbridge::Client::new(&w.sdk),
        unique("no-such-bus"),
    );
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
    let err = w
        .invoke(event.clone(), context_with(20_000))
        .await
        .expect_err("a snapshot nobody hears of is no success")
        .to_string();
    assert!(err.contains("events:PutEvents"), "{err}");
    // Lambda delivers the hook again: it finds its snapshot, reports, and announces it.
    w.deps.common.guard = inbox;
    let retry = w.invoke(event, context_with(20_000)).await.unwrap();
    assert_eq!(retry.hook_status, Some(HookStatus::Succeeded), "{retry:?}");
    assert!(!retry.duplicate);
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    let events = w.inbox.events().await;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert!(
        ids.contains(&format!("predeploy-snapshot:checkout-db:{id}:snapshot-available").as_str()),
        "{ids:?}"
    );
    w.codedeploy_mock.verify().await;
}

/// The real binary under the local Runtime API, RDS (wiremock, `AWS_ENDPOINT_URL_RDS`) taking
/// the status poll and never answering, and Lambda refusing the continuation: the hook still
/// reports `Failed` to CodeDeploy and answers before its deadline.
#[tokio::test]
async fn the_binary_reports_before_its_deadline_when_rds_never_answers_the_status_poll() {
    let rds_mock = MockServer::start().await;
    let lambda_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA).await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    Mock::given(body_string_contains("Action=CreateDBSnapshot"))
        .respond_with(rds_answer(
            "CreateDBSnapshot",
            &rds_snapshot_xml(&id, "creating"),
        ))
        .expect(1)
        .mount(&rds_mock)
        .await;
    Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
        .respond_with(
            rds_answer("DescribeDBSnapshots", "<DBSnapshots></DBSnapshots>")
                .set_delay(std::time::Duration::from_secs(120)),
        )
        .mount(&rds_mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-amzn-errortype", "TooManyRequestsException")
                .set_body_json(json!({"Type": "User", "message": "Rate exceeded", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})),
        )
        .mount(&lambda_mock)
        .await;
    w.expect_report(&deployment, &hook, "Failed", 1).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY", w.split.uri()),
        ("AWS_ENDPOINT_URL_RDS", rds_mock.uri()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda_mock.uri()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SAFESHIP_POLICY", w.policy.clone()),
        ("SAFESHIP_IDEMPOTENCY_TABLE", table),
        ("SAFESHIP_EVENT_BUS", w.inbox.bus.clone()),
        ("SAFESHIP_SNAPSHOT_MARGIN_MS", "2000".into()),
        ("SAFESHIP_SNAPSHOT_POLL_MS", "100".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let runtime = LocalRuntime::start().await;
    let _process = runtime.spawn_function(
        &function_binary("predeploy-snapshot"),
        "predeploy-snapshot",
        &env,
    );
    runtime
        .ready(std::time::Duration::from_secs(20))
        .await
        .expect("predeploy-snapshot started");
    let deadline = std::time::Duration::from_secs(6);
    let started = std::time::Instant::now();
    let answer = runtime
        .invoke(
            json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook}),
            deadline,
        )
        .await;
    let took = started.elapsed();
    assert!(took < deadline, "answered after {took:?}");
    let Answer::Response(body) = answer else {
        panic!("no answer: {answer:?}")
    };
    assert_eq!(body["hook-status"], "Failed", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "continuing the wait for snapshot {id}: lambda:Invoke"
        )),
        "{detail}"
    );
    w.codedeploy_mock.verify().await;
    let events = w.inbox.events().await;
    assert!(
        events.iter().any(|e| matches!(&e.outcome,
            Outcome::SnapshotFailed { error, .. } if error.contains("lambda:Invoke"))),
        "{events:?}"
    );
}

/// The real binary killed mid-hook (after its snapshot was made, while its report was on the
/// wire, as Lambda's timeout kills it), then the hook delivered again to a fresh process: the
/// retry takes over the dead invocation's claim, finds the snapshot the dead attempt created
/// and reports; there is still one snapshot.
#[tokio::test]
async fn a_hook_killed_mid_way_is_resumed_by_the_next_delivery_without_a_second_snapshot() {
    let w = world("instance", ROOMY_QUOTA).await;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    let report = |delay: u64| {
        Mock::given(header(
            "x-amz-target",
            "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
        ))
        .and(body_json(json!({"deploymentId": deployment, "lifecycleEventHookExecutionId": hook, "status": "Succeeded"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(std::time::Duration::from_secs(delay)),
        )
    };
    // The first report hangs: the process is killed while it waits.
    report(60).up_to_n_times(1).mount(&w.codedeploy_mock).await;
    let table = unique("idem");
    create_idempotency_table(&aws_sdk_dynamodb::Client::new(&w.sdk), &table).await;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto_endpoint()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY", w.split.uri()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("SAFESHIP_POLICY", w.policy.clone()),
        ("SAFESHIP_IDEMPOTENCY_TABLE", table),
        ("SAFESHIP_EVENT_BUS", w.inbox.bus.clone()),
        ("SAFESHIP_SNAPSHOT_MARGIN_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});

    let first = LocalRuntime::start().await;
    let mut dying = first.spawn_function(
        &function_binary("predeploy-snapshot"),
        "predeploy-snapshot",
        &env,
    );
    first
        .ready(std::time::Duration::from_secs(20))
        .await
        .expect("predeploy-snapshot started");
    let first_deadline = std::time::Duration::from_secs(4);
    let first_started = std::time::Instant::now();
    let pending = {
        let event = event.clone();
        tokio::spawn(async move { first.invoke(event, first_deadline).await })
    };
    // Killed once its report is on the wire: the snapshot exists, nothing was recorded.
    let reported = async {
        loop {
            let requests = w.codedeploy_mock.received_requests().await.unwrap();
            if !requests.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reported)
        .await
        .expect("the first attempt reports");
    dying.start_kill().unwrap();
    dying.wait().await.unwrap();
    pending.abort();
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    // The dead invocation's claim ends with its deadline; Lambda's retry comes after that.
    tokio::time::sleep(
        first_deadline.saturating_sub(first_started.elapsed())
            + std::time::Duration::from_millis(300),
    )
    .await;

    report(0).expect(1).mount(&w.codedeploy_mock).await;
    let second = LocalRuntime::start().await;
    let _process = second.spawn_function(
        &function_binary("predeploy-snapshot"),
        "predeploy-snapshot",
        &env,
    );
    second
        .ready(std::time::Duration::from_secs(20))
        .await
        .expect("predeploy-snapshot started again");
    let answer = second
        .invoke(event, std::time::Duration::from_secs(20))
        .await;
    let Answer::Response(body) = answer else {
        panic!("the retry did not finish the hook: {answer:?}")
    };
    assert_eq!(body["hook-status"], "Succeeded", "{body}");
    assert_eq!(body["snapshot-id"], id.as_str());
    assert_eq!(
        body["duplicate"], false,
        "the retry did the work, it did not answer a record"
    );
    assert_eq!(
        instance_snapshot_ids(&w).await,
        [id.as_str()],
        "one snapshot: the retry found the dead attempt's"
    );
    let kinds: Vec<String> = w
        .inbox
        .events()
        .await
        .iter()
        .map(|e| e.outcome.kind().to_owned())
        .collect();
    assert!(
        kinds.contains(&"snapshot-available".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn under_dry_run_a_hook_takes_no_snapshot_and_reports_succeeded_saying_so() {
    // A dry run must not hold deployments: the hook reports, with nothing created.
    let mut w = world("instance", ROOMY_QUOTA).await;
    w.deps.common.config.dry_run = true;
    let deployment = w.deployment().await;
    let hook_id = unique("hook");
    w.expect_report(&deployment, &hook_id, "Succeeded", 1).await;
    let before = instance_snapshot_ids(&w).await.len();
    let answer = w
        .invoke(
            json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook_id}),
            context_with(20_000),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, SnapshotStatus::DryRun, "{answer:?}");
    assert_eq!(
        answer.hook_status,
        Some(HookStatus::Succeeded),
        "{answer:?}"
    );
    assert!(
        answer
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("dry run") && d.contains("nothing was created or deleted")),
        "{answer:?}"
    );
    assert_eq!(
        instance_snapshot_ids(&w).await.len(),
        before,
        "nothing created"
    );
}

#[tokio::test]
async fn a_hook_retried_after_a_crash_goes_on_with_what_is_left_of_its_budget() {
    let rds_mock = MockServer::start().await;
    let mut w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let budget = std::time::Duration::from_secs(4);
    w.deps.settings.hook_budget = budget;
    let deployment = w.deployment().await;
    let hook = unique("hook");
    let id = format!("safeship-checkout-db-{}", deployment.to_lowercase());
    mount_rds(&rds_mock, &id, "creating").await;
    w.expect_report(&deployment, &hook, "Failed", 1).await;
    // A first delivery claimed the hook and died; its lease ran out 3 s of the 4 s budget ago.
    let dead = w
        .deps
        .common
        .idempotency
        .clone()
        .with_lease(std::time::Duration::from_millis(200));
    assert!(matches!(
        dead.claim(&format!("hook:{hook}")).await.unwrap(),
        safeship::idempotency::Claim::Acquired { .. }
    ));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Lambda's retry: 20 s of invocation, but only about 1 s of the hook's budget is left.
    let started = std::time::Instant::now();
    let event = json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": hook});
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.hook_status, Some(HookStatus::Failed), "{answer:?}");
    assert!(
        answer
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("the hook's whole budget"),
        "{answer:?}"
    );
    assert!(
        took < std::time::Duration::from_millis(2_500),
        "the retry waited {took:?}: it started the 4 s budget again instead of going on with the first delivery's"
    );
}

/// RDS refuses the listing that retention needs: the snapshot stands and says so, the pruning
/// is not recorded as done, and the repeat of the request lists again (once recorded as "nothing
/// to prune", its repeat never did).
#[tokio::test]
async fn a_failed_retention_listing_is_not_recorded_as_pruned_and_the_repeat_lists_again() {
    let rds_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let request_id = w.d("run-");
    let id = format!("safeship-checkout-db-request-{}", request_id.to_lowercase());
    mount_rds(&rds_mock, &id, "available").await;
    // The retention listing: this instance's manual snapshots (the wait asks by identifier, the
    // quota count names no instance).
    let listing = || {
        Mock::given(body_string_contains("Action=DescribeDBSnapshots"))
            .and(body_string_contains("DBInstanceIdentifier="))
            .and(body_string_contains("SnapshotType=manual"))
    };
    listing()
        .respond_with(rds_fault(
            "AccessDenied",
            "not authorized to perform: rds:DescribeDBSnapshots",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rds_mock)
        .await;
    let request =
        json!({"database": "checkout-db", "reason": "migration", "request_id": request_id});

    let first = w
        .invoke(request.clone(), context_with(20_000))
        .await
        .unwrap();
    assert_eq!(
        first.status,
        SnapshotStatus::Available,
        "the snapshot stands: {first:?}"
    );
    assert_eq!(first.snapshot_id.as_deref(), Some(id.as_str()));
    let detail = first.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("pruning did not finish")
            && detail.contains("rds:DescribeDBSnapshots")
            && detail.contains("AccessDenied"),
        "{first:?}"
    );

    let again = w.invoke(request, context_with(20_000)).await.unwrap();
    assert_eq!(again.status, SnapshotStatus::Available);
    assert_eq!(again.detail, None, "the repeat pruned: {again:?}");
    let listings = rds_mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            let body = String::from_utf8_lossy(&r.body);
            body.contains("Action=DescribeDBSnapshots")
                && body.contains("DBInstanceIdentifier=")
                && body.contains("SnapshotType=manual")
        })
        .count();
    assert_eq!(listings, 2, "the repeat listed again");
}

/// An ECS lifecycle hook of `sample` (`events/`) for a service deployment of this world's own
/// (moto keeps snapshots between runs), with `hook_details` as ECS passes them back.
fn ecs_hook(w: &World, sample: &str, hook_details: Value) -> Value {
    let mut payload = sample_event(sample);
    payload["resourceArn"] = json!(format!(
        "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/{}",
        w.d("EZe5")
    ));
    if hook_details.as_object().is_some_and(|d| !d.is_empty()) {
        payload["hookDetails"] = hook_details;
    }
    payload
}

impl World {
    /// The function as Lambda invokes it for ECS: the answer ECS reads.
    async fn ecs(&self, payload: Value) -> Value {
        let reply = predeploy_snapshot::handler(
            &self.deps,
            lambda_runtime::LambdaEvent::new(payload, context_with(5_000)),
        )
        .await
        .expect("an ECS hook is always answered");
        assert!(
            matches!(reply, predeploy_snapshot::SnapshotReply::Ecs(_)),
            "{reply:?}"
        );
        serde_json::to_value(reply).unwrap()
    }
}

#[tokio::test]
async fn the_ecs_gate_snapshots_the_services_database_before_scale_up_once() {
    let w = world("instance", ROOMY_QUOTA).await;
    let id = w.sid("EZe5");
    let hook = ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", json!({}));
    let answer = w.ecs(hook.clone()).await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("snapshot {id} of checkout-db is available")),
        "{answer}"
    );
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    let tags = instance_snapshot_tags(&w, &id).await;
    assert!(
        tags.contains(&tag("safeship:deployment-id", &w.d("EZe5"))),
        "{tags:?}"
    );
    assert!(
        tags.contains(&tag("safeship:application", "checkout/checkout-api")),
        "{tags:?}"
    );
    // ECS invoking the hook again (a retry) finds the one snapshot.
    let again = w.ecs(hook).await;
    assert_eq!(again["hookStatus"], "SUCCEEDED", "{again}");
    assert_eq!(instance_snapshot_ids(&w).await, [id.as_str()]);
    let kinds: std::collections::BTreeSet<String> = w
        .inbox
        .events()
        .await
        .iter()
        .map(|e| e.outcome.kind().to_owned())
        .collect();
    assert!(kinds.contains("snapshot-available"), "{kinds:?}");
}

#[tokio::test]
async fn a_snapshot_being_made_is_waited_for_by_in_progress_answers_within_the_budget() {
    let rds_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let id = w.sid("EZe5");
    mount_rds(&rds_mock, &id, "creating").await;
    let waiting = w
        .ecs(ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", json!({})))
        .await;
    assert_eq!(waiting["hookStatus"], "IN_PROGRESS", "{waiting}");
    assert_eq!(waiting["callBackDelay"], 30);
    let started = waiting["hookDetails"]["safeship-snapshot-started"].clone();
    assert!(started.is_string(), "{waiting}");
    // ECS comes back with the gate's start; meanwhile the snapshot became available.
    rds_mock.reset().await;
    mount_rds(&rds_mock, &id, "available").await;
    let details = json!({"safeship-snapshot-started": started, "team": "checkout"});
    let done = w
        .ecs(ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", details))
        .await;
    assert_eq!(done["hookStatus"], "SUCCEEDED", "{done}");
    // A gate that started longer ago than its budget and is still waiting fails, naming it.
    rds_mock.reset().await;
    mount_rds(&rds_mock, &id, "creating").await;
    let long_ago = (Utc::now() - Duration::seconds(3_001)).to_rfc3339();
    let over = w
        .ecs(ecs_hook(
            &w,
            "ecs-lifecycle-pre-scale-up.json",
            json!({"safeship-snapshot-started": long_ago}),
        ))
        .await;
    assert_eq!(over["hookStatus"], "FAILED", "{over}");
    assert!(
        over["reason"]
            .as_str()
            .unwrap()
            .contains("the gate's whole budget"),
        "{over}"
    );
}

#[tokio::test]
async fn the_gate_fails_naming_a_service_it_does_not_guard_and_never_holds_a_rollback() {
    let rds_mock = MockServer::start().await;
    let w = world("instance", ROOMY_QUOTA)
        .await
        .with_rds(&rds_mock)
        .await;
    let mut other = ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", json!({}));
    other["executionDetails"]["serviceArn"] =
        json!("arn:aws:ecs:eu-west-1:123456789012:service/checkout/payments-api");
    let answer = w.ecs(other).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("ECS service checkout/payments-api has no snapshot section"),
        "{answer}"
    );
    let rollback = w
        .ecs(ecs_hook(
            &w,
            "ecs-lifecycle-production-traffic-shift-rollback.json",
            json!({}),
        ))
        .await;
    assert_eq!(rollback["hookStatus"], "SUCCEEDED", "{rollback}");
    let mut damaged = ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", json!({}));
    damaged["hookDetails"] = json!({"safeship-snapshot-started": 7});
    let answer = w.ecs(damaged).await;
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("hookDetails.safeship-snapshot-started is not a time"),
        "{answer}"
    );
    assert!(
        rds_mock.received_requests().await.unwrap().is_empty(),
        "no RDS call for what the gate refuses or lets pass"
    );
}

#[tokio::test]
async fn the_ecs_gate_passes_safeships_revert_at_once_without_a_snapshot() {
    let mut w = world("instance", ROOMY_QUOTA).await;
    let revisions = wiremock::MockServer::start().await;
    note_revert_of_checkout_api(
        &w.deps.common.idempotency,
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:11",
    )
    .await;
    serve_target_revision(
        &revisions,
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout:11",
    )
    .await;
    w.deps.ecs = aws_sdk_ecs::Client::new(&sdk_config(&revisions.uri()).await);
    let answer = w
        .ecs(ecs_hook(&w, "ecs-lifecycle-pre-scale-up.json", json!({})))
        .await;
    assert_eq!(answer["hookStatus"], "SUCCEEDED", "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("PRE_SCALE_UP: no snapshot: safeship's revert of")
            && reason.contains("never held"),
        "{reason}"
    );
    assert!(instance_snapshot_ids(&w).await.is_empty(), "no snapshot");
    // What ECS was asked: the hook's target revision.
    let asked: Vec<Value> = revisions
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(asked, [json!({"serviceRevisionArns": [TARGET_REVISION]})]);
}

#[tokio::test]
async fn the_hook_of_safeships_codedeploy_revert_reports_succeeded_at_once_without_a_snapshot() {
    let w = world("instance", ROOMY_QUOTA).await;
    let description = safeship::revert::revert_description(
        "checkout-prod-5xx-rate",
        "d-RELEASE01",
        "d-EARLIER01",
    );
    let revert = aws_sdk_codedeploy::Client::new(&w.sdk)
        .create_deployment()
        .application_name(&w.app)
        .deployment_group_name(&w.group)
        .description(&description)
        .revision(
            aws_sdk_codedeploy::types::RevisionLocation::builder()
                .revision_type(aws_sdk_codedeploy::types::RevisionLocationType::AppSpecContent)
                .app_spec_content(
                    aws_sdk_codedeploy::types::AppSpecContent::builder()
                        .content("version: 0.0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .deployment_id
        .unwrap();
    let hook_id = unique("hook");
    w.expect_report(&revert, &hook_id, "Succeeded", 1).await;
    let event = json!({"DeploymentId": revert, "LifecycleEventHookExecutionId": hook_id});
    let answer = w.invoke(event, context_with(20_000)).await.unwrap();
    assert_eq!(
        answer.hook_status,
        Some(HookStatus::Succeeded),
        "{answer:?}"
    );
    assert_eq!(answer.status, predeploy_snapshot::SnapshotStatus::NotHeld);
    assert!(
        answer
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("never held") && d.contains(&description)),
        "{answer:?}"
    );
    assert!(instance_snapshot_ids(&w).await.is_empty(), "no snapshot");
}
