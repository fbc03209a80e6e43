//! The example policy's application (`checkout`, group `checkout-prod`) as the demo and the
//! benchmark emulate it: CodeDeploy in moto, its 5xx alarm, and its health endpoint.

use anyhow::Context as _;
use serde_json::json;

/// The example policy's application and group, as CodeDeploy would hold them (reused if a
/// running moto already has them).
pub async fn register_in_codedeploy(codedeploy: &aws_sdk_codedeploy::Client) -> anyhow::Result<()> {
    use aws_sdk_codedeploy::types::ComputePlatform;
    let app = codedeploy
        .create_application()
        .application_name("checkout")
        .compute_platform(ComputePlatform::Lambda)
        .send()
        .await;
    if let Err(e) = app {
        if !e
            .as_service_error()
            .is_some_and(|s| s.is_application_already_exists_exception())
        {
            return Err(anyhow::anyhow!(
                aws_sdk_codedeploy::error::DisplayErrorContext(e)
            ))
            .context("moto CreateApplication checkout");
        }
    }
    let group = codedeploy
        .create_deployment_group()
        .application_name("checkout")
        .deployment_group_name("checkout-prod")
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .send()
        .await;
    if let Err(e) = group {
        if !e
            .as_service_error()
            .is_some_and(|s| s.is_deployment_group_already_exists_exception())
        {
            return Err(anyhow::anyhow!(
                aws_sdk_codedeploy::error::DisplayErrorContext(e)
            ))
            .context("moto CreateDeploymentGroup checkout-prod");
        }
    }
    Ok(())
}

/// A Lambda deployment of `checkout-api` to `target_version`, with the AppSpec CodeDeploy keeps.
pub async fn lambda_deployment(
    codedeploy: &aws_sdk_codedeploy::Client,
    target_version: &str,
) -> anyhow::Result<String> {
    crate::codedeploy::deployment(
        codedeploy,
        "checkout",
        "checkout-prod",
        &crate::codedeploy::lambda_appspec(target_version),
    )
    .await
}

/// The alarm the hook's alarm check reads, in `OK`.
pub async fn quiet_alarm(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> anyhow::Result<()> {
    crate::codedeploy::metric_alarm(
        cloudwatch,
        name,
        aws_sdk_cloudwatch::types::StateValue::Ok,
        "demo: quiet",
    )
    .await
}

/// The checkout service's health endpoint, answering as version `version`.
pub async fn serve_health(version: &str) -> String {
    HealthService::start(version).await.url
}

/// The checkout service's health endpoint, whose version a story changes as it deploys.
pub struct HealthService {
    pub url: String,
    version: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HealthService {
    pub async fn start(version: &str) -> HealthService {
        use axum::routing::get;
        let current = std::sync::Arc::new(std::sync::Mutex::new(version.to_owned()));
        let answering = current.clone();
        let app = axum::Router::new().route(
            "/health",
            get(move || {
                let version = answering.lock().unwrap().clone();
                async move { axum::Json(json!({"version": version, "db": "ok"})) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        HealthService {
            url: format!("http://{addr}"),
            version: current,
        }
    }

    /// From now on the service answers as `version` (a new version took the traffic).
    pub fn answer_as(&self, version: &str) {
        *self.version.lock().unwrap() = version.to_owned();
    }
}

/// The example policy's `checkout-db`: the RDS instance `identifier` (the policy's is
/// `checkout-prod-db`), reused if present.
pub async fn create_database(rds: &aws_sdk_rds::Client, identifier: &str) -> anyhow::Result<()> {
    match crate::emulators::create_db_instance(rds, identifier).await {
        Ok(()) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_db_instance_already_exists_fault()) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(aws_sdk_rds::error::DisplayErrorContext(e)))
            .with_context(|| format!("moto CreateDBInstance {identifier}")),
    }
}

/// An alarm the rollback finds by its tag (`safeship:rollback` = `group`), as the example policy
/// matches alarms it does not name; in `OK` until a story sets it.
pub async fn tagged_alarm(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    group: &str,
) -> anyhow::Result<()> {
    use aws_sdk_cloudwatch::types::Tag;
    crate::codedeploy::target_5xx_alarm(cloudwatch, name)
        .tags(Tag::builder().key("safeship:rollback").value(group).build())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_cloudwatch::error::DisplayErrorContext(e)))
        .with_context(|| format!("moto PutMetricAlarm {name}"))?;
    Ok(())
}
