//! ECS where moto does not serve it, for the hooks' side of safeship's revert: the note
//! alarm-rollback leaves, and `DescribeServiceRevisions` answered by wiremock.

use serde_json::json;
use wiremock::matchers::{body_json, header};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The target service revision of the ECS hook samples in `events/`.
pub const TARGET_REVISION: &str =
    "arn:aws:ecs:eu-west-1:123456789012:service-revision/checkout/checkout-api/9313423515462893900";

/// alarm-rollback's note of a revert of `checkout/checkout-api` to `task_definition`, now.
pub async fn note_revert_of_checkout_api(
    store: &safeship::idempotency::IdempotencyStore,
    task_definition: &str,
) {
    safeship::revert::note_ecs_revert(
        store,
        "checkout",
        "checkout-api",
        &safeship::revert::EcsRevertNote {
            task_definition: task_definition.into(),
            reverted:
                "arn:aws:ecs:eu-west-1:123456789012:service-deployment/checkout/checkout-api/rel1"
                    .into(),
            alarm: "checkout-prod-5xx-rate".into(),
            noted_at: chrono::Utc::now(),
        },
    )
    .await
    .expect("the revert note is written");
}

/// ECS (`mock`) answering `DescribeServiceRevisions` of exactly [`TARGET_REVISION`]: it runs
/// `task_definition`.
pub async fn serve_target_revision(mock: &MockServer, task_definition: &str) {
    Mock::given(header(
        "x-amz-target",
        "AmazonEC2ContainerServiceV20141113.DescribeServiceRevisions",
    ))
    .and(body_json(json!({"serviceRevisionArns": [TARGET_REVISION]})))
    .respond_with(
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/x-amz-json-1.1")
            .set_body_json(json!({"serviceRevisions": [
                {"serviceRevisionArn": TARGET_REVISION, "taskDefinition": task_definition}
            ], "failures": []})),
    )
    .mount(mock)
    .await;
}
