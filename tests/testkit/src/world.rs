//! The whole of safeship installed in an emulated account: moto (and wiremock for what moto
//! lacks), the checkout service and database, the notification channels, safeship's policy and
//! tables, and the five function binaries, each under a local Lambda Runtime API. The demo tells
//! its story in one; the reliability suite (`tests/e2e/tests/replay.rs`) replays the samples in
//! many, counting what each world's functions did at its endpoints ([`World::effects`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_config::SdkConfig;
use aws_sdk_ssm::types::ParameterType;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::appconfig::{flags_document, AppConfigLedger, FlagProfile};
use crate::checkout::{self, HealthService};
use crate::effects::Effects;
use crate::emulators::{
    create_idempotency_table, example_policy, function_binary, moto_endpoint, sdk_config, unique,
    REGION,
};
use crate::guard_inbox::GuardInbox;
use crate::integrity::{
    checkout_schema, create_history_table, database_secret_at, local_integrity, postgres,
};
use crate::lifecycle::{Completions, DeploymentLedger};
use crate::pg_proxy::PostgresProxy;
use crate::runtime::{Answer, LocalRuntime};
use crate::slack::Channels;
use crate::split::{Fault, Faults, Phase, SplitEndpoint, Tripwire};

pub const FUNCTIONS: [&str; 5] = [
    "traffic-hook",
    "alarm-rollback",
    "predeploy-snapshot",
    "deploy-notify",
    "integrity-check",
];

/// What an invocation is told it has: Lambda's deadline for safeship's functions.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One function: its Runtime API and the processes polling it.
pub struct Function {
    pub name: &'static str,
    pub runtime: LocalRuntime,
    processes: Vec<tokio::process::Child>,
    /// The processes' ids, for a crash armed at an endpoint.
    pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

/// The world the guard rails act in, and what keeps it running.
pub struct World {
    /// Declared first, so the function processes are dropped (and killed) first.
    functions: Vec<Function>,
    /// The checkout database's schema in the local PostgreSQL.
    pub shop: String,
    /// The RDS instance the pre-deploy snapshot takes (in moto).
    pub instance: String,
    /// The checkout service the hooks check; each deployment changes the version it answers.
    pub service: HealthService,
    /// CodeDeploy's hook-report and stop operations (wiremock).
    pub codedeploy: MockServer,
    /// CodeDeploy in moto, where the deployments are created.
    pub codedeploy_moto: aws_sdk_codedeploy::Client,
    /// Where each deployment stands (moto's never finish).
    pub ledger: DeploymentLedger,
    /// The bus guard events land on, read back for the notifier.
    pub inbox: GuardInbox,
    /// The feature-flag profile in moto, and AppConfig's operations moto lacks (wiremock).
    pub flags: FlagProfile,
    pub appconfig: MockServer,
    /// Where notifications land: the Slack Web API and the email topic's queue.
    pub channels: Channels,
    pub sdk: SdkConfig,
    /// The environment the functions run with, and so the operator's CLI.
    pub env: Vec<(String, String)>,
    /// The SSM parameter holding the policy, and the idempotency table.
    pub parameter: String,
    pub idempotency_table: String,
    /// Every call the functions make: to moto (`aws`), to CodeDeploy and to AppConfig.
    aws: SplitEndpoint,
    codedeploy_split: SplitEndpoint,
    appconfig_split: SplitEndpoint,
    slack_split: SplitEndpoint,
    /// The smoke target's and the database's way in (faults, no tripwire: they change nothing).
    service_split: SplitEndpoint,
    database: PostgresProxy,
    /// Shared by every endpoint above: a crash armed at the functions' calls, and faults.
    tripwire: Tripwire,
    faults: Faults,
    _lambda: MockServer,
}

impl World {
    /// The ids of the guard events the functions published, in order, re-publishes included.
    pub fn guard_events_published(&self) -> Vec<String> {
        self.aws
            .waits()
            .iter()
            .filter(|c| c.succeeded() && c.name() == "PutEvents")
            .flat_map(|c| crate::effects::guard_event_ids(&c.request))
            .collect()
    }

    /// Sets up a world whose database is the RDS instance `instance` (the demo's is the example
    /// policy's `checkout-prod-db`; a test's its own, so snapshots of worlds do not mix). No
    /// function runs yet: [`Self::start`].
    pub async fn build(instance: &str) -> anyhow::Result<World> {
        Self::build_with(instance, false).await
    }

    /// As [`Self::build`]; with `webhook`, the notifier's Slack is an incoming webhook (its
    /// URL in the secret, reached through the world's endpoint) instead of the Web API.
    pub async fn build_with(instance: &str, webhook: bool) -> anyhow::Result<World> {
        let moto = moto_endpoint();
        let sdk = sdk_config(&moto).await;

        // The service under smoke test: version 3 is live. The hooks reach it through an
        // endpoint of the world's, so a fault can be met there as a web server answers it.
        let service = HealthService::start("3").await;
        let service_split = SplitEndpoint::web(&service.url).await;
        // The checkout database, through a proxy that can meet a fault at a connection's start.
        let pg = postgres();
        let database = PostgresProxy::start(format!("{}:{}", pg.host, pg.port)).await;

        // The feature flags the rollback switches off: a profile in moto, its version 1 served
        // in `prod` (AppConfig's version listing and deployments, which moto lacks, by
        // wiremock, from what was done).
        let flags = FlagProfile::create(&sdk, &flags_document(true)).await;
        let appconfig_mock = MockServer::start().await;
        let appconfig_ledger = AppConfigLedger::default();
        appconfig_ledger.serve(&flags.application, "prod", &flags.profile, 1);
        let appconfig_split = appconfig_ledger.endpoint(&moto, &appconfig_mock).await;

        // Where notifications land: a local Slack (its Web API, with a bot token, so a
        // deployment's messages are one thread) and an SNS email topic read through SQS.
        let channels = if webhook {
            Channels::create(&sdk).await
        } else {
            Channels::create_with_bot(&sdk).await
        };

        // The checkout database, in the local PostgreSQL (a schema of its own), as the nightly
        // check sees it.
        let shop = checkout_schema().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let history = create_history_table(&ddb).await;
        // Guard events land on a bus of their own, read back for the notifier.
        let inbox = GuardInbox::create(&sdk).await;

        // The account as an installation of safeship leaves it.
        let table = unique("safeship-idempotency");
        create_idempotency_table(&ddb, &table).await;
        let parameter = format!("/{}/policy", unique("safeship"));
        let policy = example_policy()
            .replace("http://127.0.0.1:8081", &service_split.uri())
            .replace(
                "identifier: checkout-prod-db",
                &format!("identifier: {instance}"),
            );
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(&parameter)
            .value(
                flags.into_policy(
                    // Through the proxy, in plain text: it meets a fault as the server's first
                    // answer, which under TLS would be the handshake's.
                    &local_integrity(
                        &policy,
                        &shop,
                        &database_secret_at(&sdk, &pg.user, &pg.host, database.port).await,
                    )
                    .replace(
                        &format!("port: {}\n", pg.port),
                        &format!("port: {}\n", database.port),
                    )
                    .replace("sslmode: require", "sslmode: disable"),
                ),
            )
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .context("storing the policy in SSM")?;

        // CodeDeploy's hook reports and stops (wiremock, answering as CodeDeploy does: once),
        // the rest (GetDeployment & co.) to moto, through the ledger of where each deployment
        // stands, on one endpoint.
        let ledger = DeploymentLedger::default();
        let codedeploy = MockServer::start().await;
        let completions = Completions::new(&ledger);
        for operation in ["PutLifecycleEventHookExecutionStatus", "StopDeployment"] {
            Mock::given(header(
                "x-amz-target",
                format!("CodeDeploy_20141006.{operation}").as_str(),
            ))
            .respond_with(completions.clone())
            .mount(&codedeploy)
            .await;
        }
        let codedeploy_split = ledger
            .endpoint(
                &moto,
                &codedeploy.uri(),
                &["PutLifecycleEventHookExecutionStatus", "StopDeployment"],
            )
            .await;
        let codedeploy_moto = aws_sdk_codedeploy::Client::new(&sdk);
        checkout::register_in_codedeploy(&codedeploy_moto).await?;
        checkout::create_database(&aws_sdk_rds::Client::new(&sdk), instance).await?;
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
        checkout::quiet_alarm(&cloudwatch, "checkout-prod-5xx-rate").await?;
        // The sample metric-math alarm, which the policy's rollback finds by its tag.
        checkout::tagged_alarm(&cloudwatch, "checkout-prod-error-ratio", "checkout-prod").await?;

        // Lambda's Invoke for the hook's Lambda check (moto runs function code only in Docker),
        // and the snapshot's own continuation (an asynchronous Invoke of itself, taken).
        let lambda = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/2015-03-31/functions/predeploy-snapshot/invocations"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&lambda)
            .await;
        Mock::given(method("POST"))
            .and(path("/2015-03-31/functions/checkout-api/invocations"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})))
            .mount(&lambda)
            .await;

        // Everything else the functions call goes to moto through this endpoint, which keeps a
        // record of each call for [`Self::effects`].
        let aws = SplitEndpoint::recording(&moto).await;
        let guard_history = create_history_table(&ddb).await;
        let mut env: Vec<(String, String)> = vec![
            ("AWS_ENDPOINT_URL".into(), aws.uri()),
            ("AWS_ENDPOINT_URL_CODEDEPLOY".into(), codedeploy_split.uri()),
            ("AWS_ENDPOINT_URL_LAMBDA".into(), lambda.uri()),
            ("AWS_ENDPOINT_URL_APPCONFIG".into(), appconfig_split.uri()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_LAMBDA_LOG_LEVEL".into(), "WARN".into()),
            ("SAFESHIP_POLICY_SSM_PARAMETER".into(), parameter.clone()),
            ("SAFESHIP_IDEMPOTENCY_TABLE".into(), table.clone()),
            ("SAFESHIP_INTEGRITY_TABLE".into(), history),
            // The guard events' history the notifier keeps and `safeship status` reads.
            ("SAFESHIP_GUARD_HISTORY_TABLE".into(), guard_history),
            ("SAFESHIP_EVENT_BUS".into(), inbox.bus.clone()),
            // The emulated account's snapshot limit is the one scripts/env.sh starts moto with
            // (every test sharing this moto counts against it); the quota warning has tests of
            // its own.
            ("SAFESHIP_RDS_SNAPSHOT_QUOTA".into(), "100000".into()),
        ];
        // The Slack Web API through an endpoint of its own too, so a crash can be armed there.
        let slack_api = channels.slack.api_url();
        let slack_split = SplitEndpoint::recording(slack_api.trim_end_matches("/api")).await;
        env.extend(channels.env().into_iter().map(|(k, v)| {
            if k == "SAFESHIP_SLACK_API_URL" {
                (k, format!("{}/api", slack_split.uri()))
            } else {
                (k, v)
            }
        }));
        if webhook {
            // The webhook's URL through the world's endpoint, so a crash or a fault can be met
            // at the post.
            let path = channels
                .slack
                .url
                .split_once("/services/")
                .map(|(_, p)| p)
                .unwrap_or_default();
            aws_sdk_secretsmanager::Client::new(&sdk)
                .put_secret_value()
                .secret_id(&channels.secret_arn)
                .secret_string(
                    json!({"webhook_url": format!("{}/services/{path}", slack_split.uri())})
                        .to_string(),
                )
                .send()
                .await
                .context("pointing the Slack webhook secret at the world's endpoint")?;
        }
        let tripwire = Tripwire::default();
        let faults = Faults::default();
        for endpoint in [&aws, &codedeploy_split, &appconfig_split, &slack_split] {
            endpoint.share_tripwire(&tripwire);
            endpoint.share_faults(&faults);
        }
        // Reads of the service and connections to the database change nothing: faults only.
        service_split.share_faults(&faults);
        database.share_faults(&faults);

        Ok(World {
            functions: Vec::new(),
            shop,
            instance: instance.to_owned(),
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
            parameter,
            idempotency_table: table,
            aws,
            codedeploy_split,
            appconfig_split,
            slack_split,
            service_split,
            database,
            tripwire,
            faults,
            _lambda: lambda,
        })
    }

    /// Starts function `name`'s binary, `processes` copies of it polling one Runtime API (as
    /// Lambda runs concurrent invocations in environments of their own). Returns how long the
    /// first took to start (its cold start).
    pub async fn start(
        &mut self,
        name: &'static str,
        processes: usize,
    ) -> anyhow::Result<Duration> {
        let runtime = LocalRuntime::start().await;
        let started = Instant::now();
        let processes: Vec<_> = (0..processes)
            .map(|_| runtime.spawn_function(&function_binary(name), name, &self.env))
            .collect();
        let cold_start = match runtime.ready(Duration::from_secs(30)).await {
            Ok(at) => at.duration_since(started),
            Err(e) => bail!("{name} did not start: {e:?}"),
        };
        if !runtime
            .polled_since(started, processes.len(), Duration::from_secs(30))
            .await
        {
            bail!("not all {} processes of {name} started", processes.len());
        }
        let pids = processes.iter().filter_map(|p| p.id()).collect();
        self.functions.push(Function {
            name,
            runtime,
            processes,
            pids: std::sync::Arc::new(std::sync::Mutex::new(pids)),
        });
        Ok(cold_start)
    }

    /// Arms a crash of function `name` (every process of it killed, as a host failure or a
    /// timeout ends it) at its `n`th call from now that changes something, before the call
    /// reaches the service or after the service carried it out ([`Tripwire`]).
    pub fn arm_crash(&self, name: &str, n: usize, phase: Phase) {
        let f = self.function(name);
        let pids = f.pids.clone();
        let exited = f.runtime.on_exit();
        self.tripwire.arm(
            n,
            phase,
            std::sync::Arc::new(move || {
                for pid in pids.lock().unwrap().iter() {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                exited();
            }),
        );
    }

    /// The operation the armed crash happened at, if it did.
    pub fn crashed_at(&self) -> Option<String> {
        self.tripwire.tripped()
    }

    /// Calls that changed something since the crash was armed.
    pub fn changes(&self) -> usize {
        self.tripwire.changes()
    }

    /// From now on the functions' calls of `operation` ([`crate::split::short_name`]) meet
    /// `fault`, `times` calls long (`None`: every one).
    pub fn arm_fault(&self, operation: &str, fault: Fault, times: Option<usize>) {
        self.faults.arm(operation, fault, times);
    }

    /// The smoke target's address as the policy names it (the world's endpoint in front of
    /// [`Self::service`]).
    pub fn smoke_target_url(&self) -> String {
        self.service_split.uri()
    }

    /// The statuses of the hook reports CodeDeploy took, in order (`Succeeded`, `Failed`).
    pub fn hook_statuses(&self) -> Vec<String> {
        let mut reports: Vec<crate::split::Wait> = self
            .codedeploy_split
            .waits()
            .into_iter()
            .filter(|c| c.succeeded() && c.name() == "PutLifecycleEventHookExecutionStatus")
            .collect();
        reports.sort_by_key(|c| c.start);
        reports
            .iter()
            .filter_map(|c| serde_json::from_slice::<serde_json::Value>(&c.request).ok())
            .filter_map(|body| body["status"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every call the functions made so far, through every endpoint of the world.
    fn calls(&self) -> Vec<crate::split::Wait> {
        [
            &self.aws,
            &self.codedeploy_split,
            &self.appconfig_split,
            &self.slack_split,
            &self.service_split,
        ]
        .iter()
        .flat_map(|endpoint| endpoint.waits())
        .chain(self.database.waits())
        .collect()
    }

    /// The operations the functions have called so far, by short name, in the order first
    /// called, each once.
    pub fn operations_called(&self) -> Vec<String> {
        let mut calls = self.calls();
        calls.sort_by_key(|c| c.start);
        let mut names: Vec<String> = Vec::new();
        for call in calls {
            let name = crate::split::short_name(&call.operation);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Every call the functions sent (operation and body), as one text to scan.
    pub fn calls_sent(&self) -> String {
        self.calls()
            .iter()
            // By short name: a webhook's path is its secret, and where it posts, not what.
            .map(|c| {
                format!(
                    "{} {}\n",
                    crate::split::short_name(&c.operation),
                    String::from_utf8_lossy(&c.request)
                )
            })
            .collect()
    }

    /// Function `name` with every process of it ended (killed if still running).
    async fn stopped(&mut self, name: &str) -> &mut Function {
        let f = self
            .functions
            .iter_mut()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} was not started in this world"));
        for p in &mut f.processes {
            let _ = p.start_kill();
            let _ = p.wait().await;
        }
        f
    }

    /// Stops function `name`'s processes and returns everything they wrote (their logs).
    pub async fn stop_and_read_output(&mut self, name: &str) -> String {
        self.stopped(name).await.runtime.output_after_exit().await
    }

    /// Starts function `name` again after a crash: one new process (a cold start).
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        let env = self.env.clone();
        let f = self.stopped(name).await;
        let started = Instant::now();
        let process = f
            .runtime
            .spawn_function(&function_binary(f.name), f.name, &env);
        *f.pids.lock().unwrap() = process.id().into_iter().collect();
        f.processes = vec![process];
        if !f
            .runtime
            .polled_since(started, 1, Duration::from_secs(30))
            .await
        {
            bail!("{name} did not start again");
        }
        Ok(())
    }

    /// The running function `name`.
    pub fn function(&self, name: &str) -> &Function {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} was not started in this world"))
    }

    /// One invocation of function `name` through its local Runtime API.
    pub async fn invoke(&self, name: &str, event: Value) -> Answer {
        self.function(name).runtime.invoke(event, DEADLINE).await
    }

    /// A deployment of checkout/checkout-prod to `version`, created in moto and in flight; the
    /// service answers as `version` from now on.
    pub async fn deploy(&self, version: &str) -> anyhow::Result<String> {
        let d = checkout::lambda_deployment(&self.codedeploy_moto, version).await?;
        self.ledger.track(&d);
        self.service.answer_as(version);
        Ok(d)
    }

    /// AppConfig's hosted version `version` of the flag profile, if there is one.
    pub async fn flag_version(&self, version: i32) -> Option<Value> {
        self.flags.hosted_version(&self.sdk, version).await
    }

    /// The bodies of the requests for `operation` CodeDeploy (wiremock) has received so far.
    pub async fn received(&self, operation: &str) -> Vec<Value> {
        crate::codedeploy::received(&self.codedeploy, operation).await
    }

    /// What the functions have done so far, counted where it landed.
    pub async fn effects(&self) -> Effects {
        Effects::of(&self.calls(), &self.channels.slack.received())
    }
}
