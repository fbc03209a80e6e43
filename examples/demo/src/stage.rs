//! Setting up the world the story plays in: emulated AWS (moto, and wiremock for what moto
//! lacks), the checkout service and database, the notification channels, safeship's policy and
//! tables, and the five function binaries, each under a local Lambda Runtime API.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_config::SdkConfig;
use aws_sdk_ssm::types::ParameterType;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::checkout;
use safeship_testkit::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sdk_config, unique,
    REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::integrity::{
    checkout_schema, create_history_table, database_secret, local_integrity,
    mount_completed_deployments, postgres,
};
use safeship_testkit::runtime::{Answer, LocalRuntime};
use safeship_testkit::slack::Channels;
use safeship_testkit::split::SplitEndpoint;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::timeline::Timeline;

const FUNCTIONS: [&str; 5] = [
    "traffic-hook",
    "alarm-rollback",
    "predeploy-snapshot",
    "deploy-notify",
    "integrity-check",
];

struct Function {
    name: &'static str,
    runtime: LocalRuntime,
    _process: tokio::process::Child,
}

/// What the acts need from the world, and what keeps the rest of it running.
pub struct Stage {
    /// Declared first, so the function processes are dropped (and killed) first.
    functions: Vec<Function>,
    pub t: Timeline,
    /// The checkout database's schema in the local PostgreSQL.
    pub shop: String,
    /// CodeDeploy's hook-report and stop operations (wiremock).
    pub codedeploy: MockServer,
    /// CodeDeploy in moto, where the deployments are created.
    pub codedeploy_moto: aws_sdk_codedeploy::Client,
    /// The bus guard events land on, read back for the notifier.
    pub inbox: GuardInbox,
    /// The feature-flag profile in moto, and the SDK configuration to read it with.
    flags: FlagProfile,
    sdk: SdkConfig,
    _servers: (
        MockServer,
        SplitEndpoint,
        MockServer,
        SplitEndpoint,
        MockServer,
    ),
    _channels: Channels,
}

impl Stage {
    /// Sets up the world and starts the five functions in it, printing the header and the
    /// functions' cold starts.
    pub async fn build() -> anyhow::Result<Stage> {
        let t = Timeline::start();
        let moto = moto_endpoint();
        let sdk = sdk_config(&moto).await;
        println!("safeship demo: one deployment of checkout/checkout-prod, through the real function binaries");
        println!(
            "AWS emulated by moto at {moto}; CodeDeploy's hook and stop operations by wiremock\n"
        );

        // The service under smoke test: it answers as version 4.
        let service = checkout::serve_health("4").await;

        // The feature flags the rollback switches off: a profile in moto (AppConfig's version
        // listing and StartDeployment, which moto lacks, by wiremock).
        let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
        let appconfig_mock = MockServer::start().await;
        flags.mount_accepting_deployments(&appconfig_mock).await;
        let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;

        // Where notifications land: a local Slack webhook and an SNS email topic read through SQS.
        let channels = Channels::create(&sdk).await;

        // The checkout database, in the local PostgreSQL (a schema of its own), as the nightly
        // check sees it; CodeDeploy's record of the day's deployment for the check (wiremock:
        // moto's deployments never complete).
        let shop = checkout_schema().await;
        let integrity_codedeploy = MockServer::start().await;
        mount_completed_deployments(
            &integrity_codedeploy,
            &[(
                "d-ABCDEF123",
                "Succeeded",
                "2026-11-20T10:21:47Z".parse().expect("a time"),
            )],
        )
        .await;
        let history = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
        // Guard events land on a bus of their own, read back for the notifier.
        let inbox = GuardInbox::create(&sdk).await;

        // The account as an installation of safeship leaves it.
        let table = unique("safeship-idempotency");
        create_idempotency_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
        let parameter = format!("/{}/policy", unique("safeship"));
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(&parameter)
            .value(flags.into_policy(&local_integrity(
                &example_policy().replace("http://127.0.0.1:8081", &service),
                &shop,
                &database_secret(&sdk, &postgres().user).await,
            )))
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .context("storing the policy in SSM")?;
        t.line(
            "setup",
            format!("policy in SSM {parameter}, idempotency table {table}"),
        );

        let codedeploy = MockServer::start().await;
        Mock::given(header(
            "x-amz-target",
            "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&codedeploy)
        .await;
        Mock::given(header("x-amz-target", "CodeDeploy_20141006.StopDeployment"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"status": "Pending", "statusMessage": "Stop requested; rolling back"}),
            ))
            .mount(&codedeploy)
            .await;
        // One CodeDeploy endpoint: the report to wiremock, GetDeployment & co. to moto.
        let codedeploy_split = SplitEndpoint::json_operations(
            &moto,
            &codedeploy.uri(),
            &["PutLifecycleEventHookExecutionStatus", "StopDeployment"],
        )
        .await;
        let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
        checkout::register_in_codedeploy(&codedeploy_moto).await?;
        checkout::create_database(&aws_sdk_rds::Client::new(&sdk)).await?;
        checkout::quiet_alarm(
            &aws_sdk_cloudwatch::Client::new(&sdk),
            "checkout-prod-5xx-rate",
        )
        .await?;

        // Lambda's Invoke for the hook's Lambda check (moto runs function code only in Docker).
        let lambda = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/2015-03-31/functions/checkout-api/invocations"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
            .mount(&lambda)
            .await;

        let mut env: Vec<(String, String)> = vec![
            ("AWS_ENDPOINT_URL".into(), moto.clone()),
            ("AWS_ENDPOINT_URL_CODEDEPLOY".into(), codedeploy_split.uri()),
            ("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.uri()),
            ("AWS_ENDPOINT_URL_APPCONFIG".into(), appconfig_split.uri()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_LAMBDA_LOG_LEVEL".into(), "WARN".into()),
            ("SAFESHIP_POLICY_SSM_PARAMETER".into(), parameter.clone()),
            ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table.clone()),
        ];
        env.push(("SAFESHIP_INTEGRITY_TABLE".into(), history.clone()));
        env.push(("SAFESHIP_EVENT_BUS".into(), inbox.bus.clone()));
        env.extend(channels.env());
        let functions = start_functions(&t, &env, &integrity_codedeploy.uri()).await?;
        println!();

        Ok(Stage {
            functions,
            t,
            shop,
            codedeploy,
            codedeploy_moto,
            inbox,
            flags,
            sdk,
            _servers: (
                appconfig_mock,
                appconfig_split,
                integrity_codedeploy,
                codedeploy_split,
                lambda,
            ),
            _channels: channels,
        })
    }

    /// One invocation of function `name` through its local Runtime API.
    pub async fn invoke(&self, name: &str, event: Value) -> Answer {
        let f = self
            .functions
            .iter()
            .find(|f| f.name == name)
            .expect("known function");
        f.runtime.invoke(event, Duration::from_secs(30)).await
    }

    /// AppConfig's hosted version `version` of the flag profile, if there is one.
    pub async fn flag_version(&self, version: i32) -> Option<Value> {
        self.flags.hosted_version(&self.sdk, version).await
    }
}

/// Starts the five function binaries with `env` (the integrity check with its own CodeDeploy),
/// each under a Runtime API of its own, and prints each one's cold start.
async fn start_functions(
    t: &Timeline,
    env: &[(String, String)],
    integrity_codedeploy: &str,
) -> anyhow::Result<Vec<Function>> {
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let mut env = env.to_vec();
        if name == "integrity-check" {
            env.push((
                "AWS_ENDPOINT_URL_CODEDEPLOY".into(),
                integrity_codedeploy.to_owned(),
            ));
        }
        let process = runtime.spawn_function(&function_binary(name), name, &env);
        match runtime.ready(Duration::from_secs(30)).await {
            Ok(at) => t.line(
                name,
                format!("cold start {} ms", at.duration_since(started).as_millis()),
            ),
            Err(e) => bail!("{name} did not start: {e:?}"),
        }
        functions.push(Function {
            name,
            runtime,
            _process: process,
        });
    }
    Ok(functions)
}
