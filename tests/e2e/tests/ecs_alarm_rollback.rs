//! Alarm-to-rollback for ECS services that Amazon ECS deploys itself (issue 19): the alarm samples
//! of `events/` mapped to `ecs-services.checkout/checkout-api`. moto does not serve ECS service
//! deployments, so wiremock answers `ListServiceDeployments` and `StopServiceDeployment` (ECS is
//! JSON 1.1, `x-amz-target: AmazonEC2ContainerServiceV20141113.<Operation>`), asserting the exact
//! request; moto serves the rest (DynamoDB, EventBridge, CloudWatch).

use safeship::event::{normalise, Inbound};
use safeship_testkit::emulators::{common_with_policy, moto_endpoint, sample_event, sdk_config};
use safeship_testkit::guard_inbox::GuardInbox;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

const IN_FLIGHT: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/EZe5RNVLH6PPzHXINuP28";

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
    ecs: MockServer,
    inbox: GuardInbox,
}

async fn world() -> World {
    let sdk = sdk_config(&moto_endpoint()).await;
    let policy = "version: 1
ecs-services:
  checkout/checkout-api:
    environment: prod
    rollback:
      alarms: [{name: checkout-prod-5xx-rate}]
";
    let mut common = common_with_policy(&sdk, policy).await;
    let inbox = GuardInbox::create(&sdk).await;
    common.guard = inbox.publisher();
    let ecs = MockServer::start().await;
    let deps = alarm_rollback::Deps {
        common,
        codedeploy: aws_sdk_codedeploy::Client::new(&sdk),
        appconfig: aws_sdk_appconfig::Client::new(&sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk_config(&ecs.uri()).await),
    };
    World { deps, ecs, inbox }
}

impl World {
    /// `ListServiceDeployments` of the service's ongoing deployments, as ECS is asked it.
    async fn ongoing(&self, deployments: Value) {
        ecs("ListServiceDeployments")
            .and(body_json(json!({
                "cluster": "checkout", "service": "checkout-api",
                "status": ["PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"]
            })))
            .respond_with(json_11(json!({"serviceDeployments": deployments})))
            .mount(&self.ecs)
            .await;
    }

    async fn deliver(&self, sample: &str) -> Result<alarm_rollback::RollbackReport, String> {
        let Inbound::AlarmStateChange(alarm) = normalise(&sample_event(sample)).unwrap().event
        else {
            panic!("{sample} is not an alarm")
        };
        alarm_rollback::handle_alarm(&self.deps, &alarm)
            .await
            .map_err(|e| e.to_string())
    }

    async fn stops(&self) -> usize {
        self.ecs
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| {
                r.headers.get("x-amz-target").unwrap().to_str().unwrap()
                    == "AmazonEC2ContainerServiceV20141113.StopServiceDeployment"
            })
            .count()
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
        (Some("checkout"), Some("checkout-api"), Some(IN_FLIGHT))
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
