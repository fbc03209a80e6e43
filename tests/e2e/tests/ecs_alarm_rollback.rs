//! Alarm-to-rollback for ECS services that Amazon ECS deploys itself (issue 19): the alarm samples
//! of `events/` mapped to `ecs-services.<cluster>/checkout-api`. moto does not serve ECS service
//! deployments, so wiremock answers `ListServiceDeployments`, `DescribeServiceDeployments`,
//! `DescribeServiceRevisions` and `StopServiceDeployment` (ECS is JSON 1.1,
//! `x-amz-target: AmazonEC2ContainerServiceV20141113.<Operation>`), asserting the exact request;
//! moto serves the rest: the cluster, the task definitions and the service a revert updates
//! (`DescribeServices`, `UpdateService`), DynamoDB, EventBridge, CloudWatch.

use chrono::{DateTime, Duration, Utc};
use safeship::event::{normalise, AlarmStateChange, Inbound};
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::emulators::{
    common_with_policy, moto_endpoint, sample_event, sdk_config, unique,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, body_partial_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

const IN_FLIGHT: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/EZe5RNVLH6PPzHXINuP28";

/// The operations moto lacks, answered by wiremock.
const NOT_IN_MOTO: &[&str] = &[
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "DescribeServiceRevisions",
    "StopServiceDeployment",
];

fn ecs(operation: &str) -> wiremock::MockBuilder {
    Mock::given(header(
        "x-amz-target",
        format!("AmazonEC2ContainerServiceV20141113.{operation}").as_str(),
    ))
}

fn json_11(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/x-amz-json-1.1")
        .set_body_json(body)
}

struct World {
    deps: alarm_rollback::Deps,
    /// The cluster (unique to the test, in moto and in the policy).
    cluster: String,
    ecs: MockServer,
    moto_ecs: aws_sdk_ecs::Client,
    inbox: GuardInbox,
    appconfig_mock: MockServer,
    _splits: [SplitEndpoint; 2],
}

async fn world() -> World {
    world_with_flags(None).await
}

/// As [`world`], with the service's rollback switching `flags`' `new-checkout-flow` and
/// `one-click-pay` off in `prod-env` (AppConfig's operations moto lacks answered by wiremock).
async fn world_with_flags(flags: Option<&FlagProfile>) -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let cluster = unique("checkout");
    let flag_section = flags.map_or(String::new(), |f| {
        format!(
            "      feature-flags:
        - application: {}
          environment: prod-env
          profile: {}
          flags: [new-checkout-flow, one-click-pay]
",
            f.application, f.profile
        )
    });
    let policy = format!(
        "version: 1
ecs-services:
  {cluster}/checkout-api:
    environment: prod
    rollback:
      alarms: [{{name: checkout-prod-5xx-rate}}]
{flag_section}"
    );
    let mut common = common_with_policy(&sdk, &policy).await;
    let inbox = GuardInbox::create(&sdk).await;
    common.guard = inbox.publisher();
    let mock = MockServer::start().await;
    let split = SplitEndpoint::json_operations(&moto_endpoint(), &mock.uri(), NOT_IN_MOTO).await;
    let appconfig_mock = MockServer::start().await;
    let appconfig_split = appconfig::split_endpoint(&moto_endpoint(), &appconfig_mock).await;
    if let Some(f) = flags {
        f.mount_version_list(&appconfig_mock).await;
    }
    let deps = alarm_rollback::Deps {
        common,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk),
        appconfig: aws_sdk_appconfig::Client::new(&sdk_config(&appconfig_split.uri()).await),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&split.uri()).await),
    };
    // A service with no successes in its past unless a test says otherwise.
    ecs("ListServiceDeployments")
        .and(body_partial_json(json!({"status": ["SUCCESSFUL"]})))
        .respond_with(json_11(json!({"serviceDeployments": []})))
        .with_priority(10)
        .mount(&mock)
        .await;
    World {
        deps,
        cluster,
        ecs: mock,
        moto_ecs: aws_sdk_ecs::Client::new(&sdk),
        inbox,
        appconfig_mock,
        _splits: [split, appconfig_split],
    }
}

fn alarm_of(sample: &str) -> AlarmStateChange {
    let Inbound::AlarmStateChange(alarm) = normalise(&sample_event(sample)).unwrap().event else {
        panic!("{sample} is not an alarm")
    };
    alarm
}

impl World {
    /// `ListServiceDeployments` of the service's ongoing deployments, as ECS is asked it.
    async fn ongoing(&self, deployments: Value) {
        ecs("ListServiceDeployments")
            .and(body_json(json!({
                "cluster": self.cluster, "service": "checkout-api",
                "status": ["PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"]
            })))
            .respond_with(json_11(json!({"serviceDeployments": deployments})))
            .mount(&self.ecs)
            .await;
    }

    /// `ListServiceDeployments` of the service's successes, as ECS is asked it: created since a
    /// day before the bake window before the alarm.
    async fn succeeded(&self, alarm: &AlarmStateChange, deployments: Value) {
        let after = alarm.state_changed_at - Duration::minutes(60) - Duration::hours(24);
        ecs("ListServiceDeployments")
            .and(body_json(json!({
                "cluster": self.cluster, "service": "checkout-api",
                "status": ["SUCCESSFUL"],
                "createdAt": {"after": after.timestamp()}
            })))
            .respond_with(json_11(json!({"serviceDeployments": deployments})))
            .with_priority(1)
            .mount(&self.ecs)
            .await;
    }

    /// `DescribeServiceDeployments` and `DescribeServiceRevisions` answering for `deployments`
    /// (arn, source revision, target revision) and `revisions` (arn, task definition).
    async fn described(&self, deployments: &[(&str, &str, &str)], revisions: &[(&str, &str)]) {
        let deployments: Vec<Value> = deployments
            .iter()
            .map(|(arn, source, target)| {
                json!({
                    "serviceDeploymentArn": arn, "status": "SUCCESSFUL",
                    "sourceServiceRevisions": [{"arn": source, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}],
                    "targetServiceRevision": {"arn": target, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}
                })
            })
            .collect();
        ecs("DescribeServiceDeployments")
            .respond_with(json_11(
                json!({"serviceDeployments": deployments, "failures": []}),
            ))
            .mount(&self.ecs)
            .await;
        let revisions: Vec<Value> = revisions
            .iter()
            .map(|(arn, task_definition)| {
                json!({"serviceRevisionArn": arn, "taskDefinition": task_definition})
            })
            .collect();
        ecs("DescribeServiceRevisions")
            .respond_with(json_11(
                json!({"serviceRevisions": revisions, "failures": []}),
            ))
            .mount(&self.ecs)
            .await;
    }

    /// In moto: the cluster, two task definitions (the one before, the one released) and the
    /// service running the released one. Their ARNs: (before, released).
    async fn service_on_its_second_task_definition(&self) -> (String, String) {
        let c = &self.moto_ecs;
        c.create_cluster()
            .cluster_name(&self.cluster)
            .send()
            .await
            .unwrap();
        let mut arns = Vec::new();
        for image in ["checkout:1.4.0", "checkout:1.5.0"] {
            let registered = c
                .register_task_definition()
                .family(&self.cluster)
                .container_definitions(
                    aws_sdk_ecs::types::ContainerDefinition::builder()
                        .name("app")
                        .image(image)
                        .memory(512)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            arns.push(
                registered
                    .task_definition
                    .unwrap()
                    .task_definition_arn
                    .unwrap(),
            );
        }
        c.create_service()
            .cluster(&self.cluster)
            .service_name("checkout-api")
            .task_definition(&arns[1])
            .desired_count(2)
            .deployment_controller(
                aws_sdk_ecs::types::DeploymentController::builder()
                    .r#type(aws_sdk_ecs::types::DeploymentControllerType::Ecs)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        (arns[0].clone(), arns[1].clone())
    }

    /// The task definition moto's service runs.
    async fn running(&self) -> String {
        self.moto_ecs
            .describe_services()
            .cluster(&self.cluster)
            .services("checkout-api")
            .send()
            .await
            .unwrap()
            .services
            .unwrap()[0]
            .task_definition
            .clone()
            .unwrap()
    }

    async fn deliver(&self, sample: &str) -> Result<alarm_rollback::RollbackReport, String> {
        alarm_rollback::handle_alarm(&self.deps, &alarm_of(sample))
            .await
            .map_err(|e| e.to_string())
    }

    async fn calls(&self, operation: &str) -> usize {
        let target = format!("AmazonEC2ContainerServiceV20141113.{operation}");
        self.ecs
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.headers.get("x-amz-target").unwrap().to_str().unwrap() == target)
            .count()
    }

    async fn stops(&self) -> usize {
        self.calls("StopServiceDeployment").await
    }

    async fn kinds(&self) -> Vec<String> {
        self.inbox
            .events()
            .await
            .iter()
            .map(|e| e.outcome.kind().to_owned())
            .collect()
    }
}

fn brief(arn: &str, status: &str) -> Value {
    json!({"serviceDeploymentArn": arn, "status": status,
           "serviceArn": "arn:aws:ecs:eu-west-1:123456789012:service/checkout/checkout-api",
           "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/checkout",
           "targetServiceRevisionArn": "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/9313423515462893900",
           "createdAt": 1_795_860_000.0})
}

#[tokio::test]
async fn an_alarm_stops_the_services_deployment_in_flight_with_rollback_once() {
    let w = world().await;
    w.ongoing(json!([brief(IN_FLIGHT, "IN_PROGRESS")])).await;
    ecs("StopServiceDeployment")
        .and(body_json(
            json!({"serviceDeploymentArn": IN_FLIGHT, "stopType": "ROLLBACK"}),
        ))
        .respond_with(json_11(json!({"serviceDeploymentArn": IN_FLIGHT})))
        .expect(1)
        .mount(&w.ecs)
        .await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let stop = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("stop-service-deployment"))
        .unwrap_or_else(|| panic!("{:?}", report.actions));
    assert!(stop.succeeded, "{stop:?}");
    assert_eq!(
        stop.action,
        format!("stop-service-deployment {IN_FLIGHT} (with rollback)")
    );
    // The same transition by SNS, and again: nothing is stopped twice.
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
    assert!(
        w.deliver("alarm-eventbridge-metric.json")
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(w.stops().await, 1);
    let events = w.inbox.events().await;
    let performed = events
        .iter()
        .find(|e| e.outcome.kind() == "rollback-performed")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        (
            performed.application.as_deref(),
            performed.deployment_group.as_deref(),
            performed.deployment_id.as_deref()
        ),
        (
            Some(w.cluster.as_str()),
            Some("checkout-api"),
            Some(IN_FLIGHT)
        )
    );
}

#[tokio::test]
async fn a_rollback_already_under_way_is_never_stopped() {
    let w = world().await;
    w.ongoing(json!([brief(IN_FLIGHT, "ROLLBACK_IN_PROGRESS")]))
        .await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert_eq!(w.stops().await, 0);
    let said = format!("{:?}", report.actions);
    assert!(said.contains("is ROLLBACK_IN_PROGRESS already"), "{said}");
    let kinds: Vec<String> = w
        .inbox
        .events()
        .await
        .iter()
        .map(|e| e.outcome.kind().to_owned())
        .collect();
    assert_eq!(kinds, ["nothing-to-roll-back"]);
}

#[tokio::test]
async fn a_refused_stop_fails_naming_it_and_the_retry_stops_once() {
    let w = world().await;
    w.ongoing(json!([brief(IN_FLIGHT, "IN_PROGRESS")])).await;
    ecs("StopServiceDeployment")
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_json(json!({"__type": "ServerException", "message": "internal error"})),
        )
        // ServerException is HTTP 500: the SDK tries three times, then the delivery fails.
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&w.ecs)
        .await;
    let err = w
        .deliver("alarm-eventbridge-metric.json")
        .await
        .unwrap_err();
    assert!(
        err.contains("ecs:StopServiceDeployment") && err.contains(IN_FLIGHT),
        "{err}"
    );
    ecs("StopServiceDeployment")
        .and(body_json(
            json!({"serviceDeploymentArn": IN_FLIGHT, "stopType": "ROLLBACK"}),
        ))
        .respond_with(json_11(json!({"serviceDeploymentArn": IN_FLIGHT})))
        .mount(&w.ecs)
        .await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(
        report.actions.iter().all(|a| a.succeeded),
        "{:?}",
        report.actions
    );
    assert!(
        w.deliver("alarm-eventbridge-metric.json")
            .await
            .unwrap()
            .duplicate
    );
    let accepted = w.ecs.received_requests().await.unwrap().len();
    assert!(
        accepted >= 3,
        "the list, the refused stop(s) and the one that went through"
    );
}

const RELEASE: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/rel1RNVLH6PPzHXINuP28";
const EARLIER: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/old1RNVLH6PPzHXINuP28";
const REVERT: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/rev1RNVLH6PPzHXINuP28";
const REV_BEFORE: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/1920498462936580504";
const REV_RELEASED: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/9313423515462893900";
const REV_BACK: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/5550498462936580111";
const REV_OLDEST: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/7770498462936580222";
const OLDEST_TASK_DEFINITION: &str =
    "arn:aws:ecs:eu-west-1:123456789012:task-definition/checkout-legacy:3";

/// A successful service deployment as `ListServiceDeployments` lists it.
fn done(arn: &str, target_revision: &str, finished: DateTime<Utc>) -> Value {
    let started = finished - Duration::minutes(15);
    json!({"serviceDeploymentArn": arn, "status": "SUCCESSFUL",
           "serviceArn": "arn:aws:ecs:eu-west-1:123456789012:service/checkout/checkout-api",
           "clusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/checkout",
           "targetServiceRevisionArn": target_revision,
           "createdAt": started.timestamp(), "startedAt": started.timestamp(),
           "finishedAt": finished.timestamp()})
}

/// A release of `released` over `before` that finished 20 minutes before the alarm, over an
/// earlier one five hours before: what ECS lists and describes of them.
async fn released_inside_the_bake_window(w: &World, before: &str, released: &str) {
    let alarm = alarm_of("alarm-eventbridge-metric.json");
    let t = alarm.state_changed_at;
    w.succeeded(
        &alarm,
        json!([
            done(EARLIER, REV_BEFORE, t - Duration::hours(5)),
            done(RELEASE, REV_RELEASED, t - Duration::minutes(20))
        ]),
    )
    .await;
    w.described(
        &[
            (RELEASE, REV_BEFORE, REV_RELEASED),
            (EARLIER, REV_OLDEST, REV_BEFORE),
        ],
        &[
            (REV_BEFORE, before),
            (REV_RELEASED, released),
            (REV_OLDEST, OLDEST_TASK_DEFINITION),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_release_finished_inside_the_bake_window_is_reverted_to_the_task_definition_it_replaced_once(
) {
    let w = world().await;
    let (before, released) = w.service_on_its_second_task_definition().await;
    w.ongoing(json!([])).await;
    released_inside_the_bake_window(&w, &before, &released).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let revert = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("update-service"))
        .unwrap_or_else(|| panic!("{:?}", report.actions));
    assert!(revert.succeeded, "{revert:?}");
    assert_eq!(
        revert.action,
        format!("update-service to {before}, reverting {RELEASE}")
    );
    assert_eq!(
        w.running().await,
        before,
        "moto's service runs what ran before the release"
    );
    // Noted before the update, so the revert's own hooks never hold it.
    let note =
        safeship::revert::ecs_revert_note(&w.deps.common.idempotency, &w.cluster, "checkout-api")
            .await
            .unwrap()
            .expect("the revert's note");
    assert_eq!(
        (
            note.task_definition.as_str(),
            note.reverted.as_str(),
            note.alarm.as_str()
        ),
        (before.as_str(), RELEASE, "checkout-prod-5xx-rate")
    );
    // What ECS was asked to describe: the last two successes, newest first.
    let described: Vec<Value> = w
        .ecs
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.headers.get("x-amz-target").unwrap().to_str().unwrap()
                == "AmazonEC2ContainerServiceV20141113.DescribeServiceDeployments"
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        described,
        [json!({"serviceDeploymentArns": [RELEASE, EARLIER]})]
    );
    // The same transition by SNS, and again: one revert.
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
    assert!(
        w.deliver("alarm-eventbridge-metric.json")
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(w.calls("DescribeServiceDeployments").await, 1);
    assert_eq!(w.stops().await, 0);
    let events = w.inbox.events().await;
    let performed: Vec<_> = events
        .iter()
        .filter(|e| e.outcome.kind() == "rollback-performed")
        .collect();
    assert_eq!(performed.len(), 1, "{events:?}");
    assert_eq!(performed[0].deployment_id.as_deref(), Some(RELEASE));
}

#[tokio::test]
async fn a_second_alarm_leaves_the_revert_alone_in_flight_and_once_it_finished() {
    // In flight: the revert goes back to the task definition that ran before the release.
    let w = world().await;
    let (before, released) = w.service_on_its_second_task_definition().await;
    let alarm = alarm_of("alarm-eventbridge-metric.json");
    let t = alarm.state_changed_at;
    w.ongoing(json!([brief(REVERT, "IN_PROGRESS")])).await;
    released_inside_the_bake_window(&w, &before, &released).await;
    ecs("DescribeServiceDeployments")
        .respond_with(json_11(json!({"serviceDeployments": [
            {"serviceDeploymentArn": REVERT, "status": "IN_PROGRESS",
             "sourceServiceRevisions": [{"arn": REV_RELEASED, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}],
             "targetServiceRevision": {"arn": REV_BACK, "requestedTaskCount": 2, "runningTaskCount": 0, "pendingTaskCount": 2}},
            {"serviceDeploymentArn": RELEASE, "status": "SUCCESSFUL",
             "sourceServiceRevisions": [{"arn": REV_BEFORE, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}],
             "targetServiceRevision": {"arn": REV_RELEASED, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}},
            {"serviceDeploymentArn": EARLIER, "status": "SUCCESSFUL",
             "sourceServiceRevisions": [{"arn": REV_OLDEST, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}],
             "targetServiceRevision": {"arn": REV_BEFORE, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}}
        ], "failures": []})))
        .with_priority(1)
        .mount(&w.ecs)
        .await;
    ecs("DescribeServiceRevisions")
        .respond_with(json_11(json!({"serviceRevisions": [
            {"serviceRevisionArn": REV_BACK, "taskDefinition": before},
            {"serviceRevisionArn": REV_BEFORE, "taskDefinition": before},
            {"serviceRevisionArn": REV_RELEASED, "taskDefinition": released},
            {"serviceRevisionArn": REV_OLDEST, "taskDefinition": OLDEST_TASK_DEFINITION}
        ], "failures": []})))
        .with_priority(1)
        .mount(&w.ecs)
        .await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let said = format!("{:?}", report.actions);
    assert!(said.contains("only a rollback is in flight"), "{said}");
    assert_eq!(w.stops().await, 0);
    assert_eq!(w.running().await, released, "nothing updated");
    assert_eq!(w.kinds().await, ["nothing-to-roll-back"]);

    // Finished: the last success is the revert, which returned to what ran before the release.
    let w = world().await;
    let (before, released) = w.service_on_its_second_task_definition().await;
    w.ongoing(json!([])).await;
    w.succeeded(
        &alarm,
        json!([
            done(EARLIER, REV_BEFORE, t - Duration::hours(5)),
            done(RELEASE, REV_RELEASED, t - Duration::minutes(20)),
            done(REVERT, REV_BACK, t - Duration::minutes(5))
        ]),
    )
    .await;
    w.described(
        &[
            (REVERT, REV_RELEASED, REV_BACK),
            (RELEASE, REV_BEFORE, REV_RELEASED),
        ],
        &[
            (REV_BACK, &before),
            (REV_BEFORE, &before),
            (REV_RELEASED, &released),
        ],
    )
    .await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let said = format!("{:?}", report.actions);
    assert!(said.contains("already returned the service to"), "{said}");
    assert_eq!(w.running().await, released, "the revert was not reverted");
}

#[tokio::test]
async fn a_revert_resumed_after_the_service_was_updated_is_not_updated_again() {
    let w = world().await;
    let (before, released) = w.service_on_its_second_task_definition().await;
    w.ongoing(json!([])).await;
    released_inside_the_bake_window(&w, &before, &released).await;
    // An earlier delivery updated the service and died before it recorded so.
    w.moto_ecs
        .update_service()
        .cluster(&w.cluster)
        .service("checkout-api")
        .task_definition(&before)
        .send()
        .await
        .unwrap();
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    let revert = report
        .actions
        .iter()
        .find(|a| a.action.starts_with("update-service"))
        .unwrap_or_else(|| panic!("{:?}", report.actions));
    assert!(revert.succeeded, "{revert:?}");
    assert!(
        revert
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("not updated again")),
        "{revert:?}"
    );
    assert_eq!(w.running().await, before);
    assert_eq!(w.kinds().await, ["rollback-performed"]);
}

#[tokio::test]
async fn an_alarm_stops_the_service_and_switches_its_flags_off_once_each() {
    let sdk = sdk_config(&moto_endpoint()).await;
    let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
    let w = world_with_flags(Some(&flags)).await;
    w.ongoing(json!([brief(IN_FLIGHT, "IN_PROGRESS")])).await;
    ecs("StopServiceDeployment")
        .and(body_json(
            json!({"serviceDeploymentArn": IN_FLIGHT, "stopType": "ROLLBACK"}),
        ))
        .respond_with(json_11(json!({"serviceDeploymentArn": IN_FLIGHT})))
        .expect(1)
        .mount(&w.ecs)
        .await;
    // The switch's new version 2, deployed once with the profile's strategy.
    flags.expect_deployment(&w.appconfig_mock, "2", 1).await;
    let report = w.deliver("alarm-eventbridge-metric.json").await.unwrap();
    assert!(
        report.actions.iter().all(|a| a.succeeded) && report.actions.len() == 2,
        "{:?}",
        report.actions
    );
    // Redelivered by SNS and again: nothing stopped or switched a second time.
    assert!(w.deliver("alarm-sns-metric.json").await.unwrap().duplicate);
    assert!(
        w.deliver("alarm-eventbridge-metric.json")
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(w.stops().await, 1);
    let mut off = flags_document(true);
    off["values"]["new-checkout-flow"]["enabled"] = json!(false);
    assert_eq!(flags.hosted_version(&sdk, 2).await, Some(off));
    assert_eq!(
        flags.hosted_version(&sdk, 3).await,
        None,
        "one new version only"
    );
    let events = w.inbox.events().await;
    let mut kinds: Vec<&str> = events.iter().map(|e| e.outcome.kind()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["flags-switched-off", "rollback-performed"]);
    let switched = events
        .iter()
        .find(|e| e.outcome.kind() == "flags-switched-off")
        .unwrap();
    assert_eq!(
        switched.application.as_deref(),
        Some(w.cluster.as_str()),
        "the service's flags event names its cluster"
    );
}
