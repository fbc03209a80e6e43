//! Setting up the world the story plays in: emulated AWS (moto, and wiremock for what moto
//! lacks), the checkout service and database, the notification channels, safeship's policy and
//! tables, and the five function binaries, each under a local Lambda Runtime API.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_config::SdkConfig;
use aws_sdk_ssm::types::ParameterType;
use safeship_testkit::appconfig::{self, flags_document, FlagProfile};
use safeship_testkit::checkout::{self, HealthService};
use safeship_testkit::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sdk_config, unique,
    REGION,
};
use safeship_testkit::guard_inbox::GuardInbox;
use safeship_testkit::integrity::{
    checkout_schema, create_history_table, database_secret, local_integrity, postgres,
};
use safeship_testkit::lifecycle::DeploymentLedger;
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
    /// The checkout service the hooks check; each deployment changes the version it answers.
    pub service: HealthService,
    /// CodeDeploy's hook-report and stop operations (wiremock).
    pub codedeploy: MockServer,
    /// CodeDeploy in moto, where the deployments are created.
    pub codedeploy_moto: aws_sdk_codedeploy::Client,
    /// Where each deployment of the story stands (moto's never finish).
    pub ledger: DeploymentLedger,
    /// The bus guard events land on, read back for the notifier.
    pub inbox: GuardInbox,
    /// The feature-flag profile in moto, and AppConfig's operations moto lacks (wiremock).
    pub flags: FlagProfile,
    pub appconfig: MockServer,
    /// Where notifications land: the Slack webhook and the email topic's queue.
    pub channels: Channels,
    pub sdk: SdkConfig,
    /// The environment the functions run with, and so the operator's CLI.
    pub env: Vec<(String, String)>,
    _servers: (SplitEndpoint, SplitEndpoint, MockServer),
}

impl Stage {
    /// Sets up the world and starts the five functions in it, printing the header and the
    /// functions' cold starts.
    pub async fn build() -> anyhow::Result<Stage> {
        let t = Timeline::start();
        let moto = moto_endpoint();
        let sdk = sdk_config(&moto).await;
        println!("safeship demo: three deployments of checkout/checkout-prod, a night and an operator, through the real function binaries and CLI");
        println!("AWS emulated by moto at {moto}; by wiremock what moto lacks (CodeDeploy's hook report and StopDeployment,");
        println!("AppConfig's StartDeployment and deployment listing); deployments finishing (moto's never do) applied by the demo\n");

        // The service under smoke test: version 3 is live.
        let service = HealthService::start("3").await;

        // The feature flags the rollback switches off: a profile in moto (AppConfig's version
        // listing and StartDeployment, which moto lacks, by wiremock).
        let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
        let appconfig_mock = MockServer::start().await;
        flags.mount_accepting_deployments(&appconfig_mock).await;
        let appconfig_split = appconfig::split_endpoint(&moto, &appconfig_mock).await;

        // Where notifications land: a local Slack (its Web API, with a bot token, so a
        // deployment's messages are one thread) and an SNS email topic read through SQS.
        let channels = Channels::create_with_bot(&sdk).await;

        // The checkout database, in the local PostgreSQL (a schema of its own), as the nightly
        // check sees it.
        let shop = checkout_schema().await;
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
                &example_policy().replace("http://127.0.0.1:8081", &service.url),
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
        // One CodeDeploy endpoint: the report and the stop to wiremock, GetDeployment & co. to
        // moto, through the ledger of where each deployment stands.
        let ledger = DeploymentLedger::default();
        let codedeploy_split = ledger
            .endpoint(
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
        // The guard events' history the notifier keeps and `safeship status` reads.
        let guard_history = create_history_table(&aws_sdk_dynamodb::Client::new(&sdk)).await;
        env.push(("SAFESHIP_GUARD_HISTORY_TABLE".into(), guard_history));
        env.push(("SAFESHIP_EVENT_BUS".into(), inbox.bus.clone()));
        env.extend(channels.env());
        let functions = start_functions(&t, &env).await?;
        println!();

        Ok(Stage {
            functions,
            t,
            shop,
            service,
            codedeploy,
            codedeploy_moto,
            ledger,
            inbox,
            flags,
            appconfig: appconfig_mock,
            channels,
            sdk,
            env,
            _servers: (appconfig_split, codedeploy_split, lambda),
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

    /// The bodies of the requests for `operation` CodeDeploy (wiremock) has received so far.
    pub async fn received(&self, operation: &str) -> Vec<Value> {
        safeship_testkit::codedeploy::received(&self.codedeploy, operation).await
    }

    /// The operator's `safeship` binary with `args`, in the functions' environment (from a
    /// terminal with no stdin): its exit code and what it printed.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let out = tokio::process::Command::new(function_binary("safeship"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().cloned())
            .env("USER", "the on-call engineer")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running safeship")?;
        let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
        said.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(-1), said))
    }
}

/// Starts the five function binaries with `env`, each under a Runtime API of its own, and prints
/// each one's cold start.
async fn start_functions(t: &Timeline, env: &[(String, String)]) -> anyhow::Result<Vec<Function>> {
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let process = runtime.spawn_function(&function_binary(name), name, env);
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
